"""A 30-layer Keras MLP on MNIST-1D: Keras's default initialization against weightinit's.

The same architecture (30 Dense(64) layers and a softmax Dense(10)) is initialized three ways:
Keras's default (glorot_uniform kernels, zero biases), ``wk.apply(model)`` ("auto", data-free)
and ``wk.apply(model, "lsuv", data=...)`` (calibrated on 512 training inputs). Each is
diagnosed before training (seed 0: verdict, and a figure of the per-layer output std for the
first activation), then trained with Adam (learning rate 1e-3, batch 128) for a few epochs on
each seed, and its test accuracy and final training loss reported as a markdown table.

    KERAS_BACKEND=torch python benchmarks/keras_deep_mlp.py      # about 75 s, one thread
    KERAS_BACKEND=torch python benchmarks/keras_deep_mlp.py --epochs 2 --seeds 0 --activations tanh

MNIST-1D is generated locally and cached on first use (``weightinit.commands.demo``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import matplotlib
import numpy as np
import torch

import weightinit.keras as wk
from weightinit.commands.demo import load_mnist1d

matplotlib.use("Agg")
import matplotlib.pyplot as plt

DEPTH, WIDTH = 30, 64
METHODS = ("keras default", "auto", "lsuv")


def build(activation: str, seed: int) -> keras.Sequential:
    """The 30-layer MLP, every layer named, under Keras's default initialization."""
    keras.utils.set_random_seed(seed)
    hidden = [
        keras.layers.Dense(WIDTH, activation=activation, name=f"dense{i}") for i in range(DEPTH)
    ]
    return keras.Sequential(
        [keras.Input((40,)), *hidden, keras.layers.Dense(10, activation="softmax", name="out")]
    )


def initialized(method: str, activation: str, seed: int, x: np.ndarray) -> keras.Sequential:
    """The MLP, initialized by ``method``: "keras default" leaves it as built."""
    model = build(activation, seed)
    if method == "auto":
        wk.apply(model, seed=seed)
    elif method == "lsuv":
        wk.apply(model, "lsuv", data=x[:512], seed=seed)
    return model


def standardized(data: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """``(x, y, x_test, y_test)``, inputs standardized with the training set's mean and std."""
    x, xt = data["x"].astype("float32"), data["x_test"].astype("float32")
    mean, std = x.mean(), x.std(ddof=1)
    return (
        (x - mean) / std,
        data["y"].astype("int64"),
        (xt - mean) / std,
        data["y_test"].astype("int64"),
    )


def train(
    model: keras.Sequential, data: tuple[np.ndarray, ...], epochs: int
) -> tuple[float, float]:
    """Adam (1e-3), batch 128; returns (test accuracy, final training loss)."""
    x, y, xt, yt = data
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = model.fit(x, y, batch_size=128, epochs=epochs, verbose=0)
    _, accuracy = model.evaluate(xt, yt, batch_size=1000, verbose=0)
    return float(accuracy), float(history.history["loss"][-1])


def plot(stds: dict[str, list[float]], activation: str, path: Path) -> None:
    """Per-layer output std of each method, log scale."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for method, values in stds.items():
        ax.plot(range(1, len(values) + 1), values, marker=".", label=method)
    ax.set_yscale("log")
    ax.set_xlabel("layer (dense0 ... dense29, out)")
    ax.set_ylabel("Dense output std, before the activation")
    ax.set_title(f"{DEPTH}-layer Keras MLP ({activation}, width {WIDTH}) on MNIST-1D, seed 0")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated")
    parser.add_argument("--activations", default="tanh,relu", help="comma-separated")
    parser.add_argument("--out", type=Path, default=Path("docs/images/keras_deep_mlp.png"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    activations = [a.strip() for a in args.activations.split(",") if a.strip()]
    start = time.perf_counter()
    data = standardized(load_mnist1d())
    rows = []
    for activation in activations:
        stds = {}
        for method in METHODS:
            report = wk.diagnose(initialized(method, activation, 0, data[0]), data[0][:256])
            stds[method] = [layer.std for layer in report.layers]
            print(f"{activation} / {method}: verdict {report.verdict}", flush=True)
            tic = time.perf_counter()
            results = [
                train(initialized(method, activation, s, data[0]), data, args.epochs) for s in seeds
            ]
            acc = [a for a, _ in results]
            loss = statistics.mean(l for _, l in results)
            rows.append(
                f"| {activation} | {method} | {statistics.mean(acc):.3f} ({min(acc):.3f}–{max(acc):.3f}) "
                f"| {loss:.3f} | {report.verdict} | {time.perf_counter() - tic:.0f} s |"
            )
        if activation == activations[0]:
            plot(stds, activation, args.out)
    print(f"\n{DEPTH} x Dense({WIDTH}), {args.epochs} epochs, seeds {seeds}\n")
    print(
        "| activation | init | test accuracy, mean (min–max) | final train loss | verdict | time |"
    )
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\ntotal {time.perf_counter() - start:.0f} s; figure: {args.out}")


if __name__ == "__main__":
    main()
