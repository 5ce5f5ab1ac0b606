"""Writing a plan into a built Keras 3 model, against Keras re-drawing the same model itself.

On the same built model, interleaved over ``--repeats`` rounds (after one warm-up of each, the
order rotating from round to round), times
- the peer: Keras re-initializing every weight with the layer's own initializers, for each layer
  and each of its weights ``variable.assign(initializer(variable.shape, variable.dtype))``
  (``kernel_initializer``, ``bias_initializer``, ``gamma_initializer``, ...; a depthwise
  kernel's ``depthwise_initializer``; ``Zeros()`` for a weight without one), which is what a
  user would otherwise write to re-draw a model;
- ``wk.init(model, "he", seed=0)``: a classic plan, drawn on the CPU with torch, then assigned;
- ``wk.apply(model, seed=0)``: the data-free "auto" scheme (the torch twin of the Keras graph,
  a N(0, 1) stand-in input, the stabilizing sweep), then assigned.

Models: keras.applications MobileNetV2(alpha=0.35) and ResNet50 at 32 x 32 x 3, 10 classes,
built with ``weights=None`` (nothing is downloaded), and a 30-layer Dense(256) ReLU MLP. Ratios
are ours / peer per round (lower is better): the median and the min-max over the rounds. One
thread (torch and XLA), set before Keras is imported.

    KERAS_BACKEND=torch python benchmarks/bench_keras.py    # about 2 minutes
    KERAS_BACKEND=jax python benchmarks/bench_keras.py
    KERAS_BACKEND=torch python benchmarks/bench_keras.py --profile   # cProfile one wk.init
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
).strip()

import keras
import torch

import weightinit
import weightinit.keras as wk

torch.set_num_threads(1)

#: a variable whose initializer attribute is not ``<variable name>_initializer``
ALIASES = {("DepthwiseConv2D", "kernel"): "depthwise_initializer"}


def mlp() -> keras.Model:
    layers = [keras.layers.Dense(256, activation="relu") for _ in range(30)]
    return keras.Sequential([keras.Input((256,)), *layers])


MODELS: dict[str, Callable[[], keras.Model]] = {
    "MobileNetV2 (alpha 0.35, 32x32)": lambda: keras.applications.MobileNetV2(
        alpha=0.35, input_shape=(32, 32, 3), classes=10, weights=None
    ),
    "ResNet50 (32x32)": lambda: keras.applications.ResNet50(
        input_shape=(32, 32, 3), classes=10, weights=None
    ),
    "MLP, 30 x Dense(256)": mlp,
}


def keras_reinit(model: keras.Model) -> None:
    """The peer: every weight re-drawn by its layer's own initializer, then assigned."""
    for layer in model.layers:
        for variable in layer.weights:
            key = (type(layer).__name__, variable.name)
            attr = ALIASES.get(key, f"{variable.name}_initializer")
            initializer = getattr(layer, attr, None) or keras.initializers.Zeros()
            variable.assign(initializer(variable.shape, variable.dtype))


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(model: keras.Model, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each side, interleaved: one warm-up each, then ``repeats`` rounds,
    the order of the three rotating from round to round."""
    sides: dict[str, Callable[[], Any]] = {
        "peer": lambda: keras_reinit(model),
        "init": lambda: wk.init(model, "he", seed=0),
        "apply": lambda: wk.apply(model, seed=0),
    }
    names = list(sides)
    for fn in sides.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % 3 :] + names[: r % 3]:
            times[name].append(timed(sides[name]))
    return times


def ratio(ours: list[float], peer: list[float]) -> str:
    per_round = [o / p for o, p in zip(ours, peer)]
    return f"{statistics.median(per_round):.2f}x ({min(per_round):.2f}-{max(per_round):.2f})"


def profile(lines: int) -> None:
    """cProfile of one ``wk.init(model, "he", seed=0)`` of ResNet50, after a warm-up."""
    model = MODELS["ResNet50 (32x32)"]()
    wk.init(model, "he", seed=0)
    profiler = cProfile.Profile()
    profiler.runcall(wk.init, model, "he", seed=0)
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(lines)
    stats.sort_stats("tottime").print_stats(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--profile", action="store_true", help="cProfile one wk.init instead")
    parser.add_argument("--lines", type=int, default=25, help="profile lines (default 25)")
    args = parser.parse_args()
    if args.profile:
        profile(args.lines)
        return
    print(
        f"keras {keras.__version__} ({keras.backend.backend()} backend), torch "
        f"{torch.__version__}, weightinit {weightinit.__version__}, Python "
        f"{platform.python_version()}; 1 thread (torch {torch.get_num_threads()}, XLA "
        f"intra-op 1); median of {args.repeats} interleaved rounds after 1 warm-up each\n"
    )
    print(
        "| model | params | Keras re-init ms | wk.init he ms | init / Keras (min-max) "
        "| wk.apply auto ms | apply / Keras (min-max) |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|")
    for label, build in MODELS.items():
        model = build()
        t = measure(model, args.repeats)
        peer, init, auto = (statistics.median(t[k]) * 1e3 for k in ("peer", "init", "apply"))
        print(
            f"| {label} | {model.count_params():,} | {peer:.1f} | {init:.1f} | "
            f"{ratio(t['init'], t['peer'])} | {auto:.0f} | {ratio(t['apply'], t['peer'])} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
