"""The four motivating Keras examples, trained on whatever backend ``KERAS_BACKEND`` selects.

Each is a ``keras.Sequential`` for 784-feature inputs and 10 softmax classes (Adam, sparse
categorical cross-entropy): (a) SELU hidden layer with ``lecun_normal``, (b) tanh with
``glorot_normal``, (c) ReLU with ``he_normal``, and (d) ReLU with no initializer, set by
weightinit's data-free ``weightinit.keras.apply(model)`` ("auto"). It shows that the front end
runs on the backend chosen, and that each hidden kernel's std matches its formula (lecun
1/sqrt(784), glorot sqrt(2/(784+64)), he sqrt(2/784); auto 1/sqrt(784 E[x^2]) for its N(0, 1)
stand-in input, E[x^2] = 1, times its stabilizing sweep's gain, about 1).

Data: scikit-learn's digits, each 8x8 image upsampled to 28x28 (3x3 blocks, padded by 2),
flattened and scaled to [0, 1]; a fixed 75/25 train/test split (random_state=0).

    KERAS_BACKEND=tensorflow python benchmarks/keras_tensorflow_examples.py
    KERAS_BACKEND=torch python benchmarks/keras_tensorflow_examples.py --epochs 5 --seed 0

Needs Keras 3 and scikit-learn (``pip install -c constraints.txt -e ".[bench]"``).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

FORMULAS: dict[str, float] = {
    "lecun": 1 / math.sqrt(784),
    "glorot": math.sqrt(2 / (784 + 64)),
    "he": math.sqrt(2 / 784),
    "auto": 1 / math.sqrt(784),
}


def digits_784() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits upsampled to 28x28 = 784 features in [0, 1]: x_train, x_test, y_train, y_test."""
    digits = load_digits()
    images = np.stack([np.kron(image, np.ones((3, 3))) for image in digits.images])  # 24x24
    images = np.pad(images, ((0, 0), (2, 2), (2, 2)))  # 28x28
    x = (images.reshape(len(images), 784) / 16.0).astype("float32")  # pixel values are 0..16
    y = digits.target.astype("int32")
    return tuple(train_test_split(x, y, test_size=0.25, random_state=0))  # type: ignore[return-value]


def kernel_std(model: keras.Sequential) -> float:
    return float(keras.ops.convert_to_numpy(model.get_layer("hidden").kernel).std())


def mlp(activation: str, initializer: str | None) -> keras.Sequential:
    hidden = {"kernel_initializer": initializer} if initializer else {}
    return keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(64, activation=activation, name="hidden", **hidden),
            keras.layers.Dense(10, activation="softmax", name="out"),
        ],
        name=f"mlp_{activation}",
    )


def autoinit_model() -> tuple[keras.Sequential, str]:
    """Example (d): no initializer given; weightinit sets it. Returns the model and what ran."""
    import weightinit.keras as autoinit

    model = mlp("relu", None)
    autoinit.apply(model)
    return model, "weightinit.keras.apply"


EXAMPLES: list[tuple[str, str, Callable[[], tuple[keras.Sequential, str]]]] = [
    ("(a) selu", "lecun", lambda: (mlp("selu", "lecun_normal"), "lecun_normal")),
    ("(b) tanh", "glorot", lambda: (mlp("tanh", "glorot_normal"), "glorot_normal")),
    ("(c) relu", "he", lambda: (mlp("relu", "he_normal"), "he_normal")),
    ("(d) relu, autoinit", "auto", autoinit_model),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    x_train, x_test, y_train, y_test = digits_784()
    backend, version = keras.backend.backend(), keras.__version__
    rows = []
    for name, formula, build in EXAMPLES:
        keras.utils.set_random_seed(args.seed)
        model, initializer = build()
        std = kernel_std(model)
        model.compile(
            optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"]
        )
        model.fit(x_train, y_train, epochs=args.epochs, batch_size=32, verbose=0)
        _, accuracy = model.evaluate(x_test, y_test, verbose=0)
        rows.append(
            f"| {name} | {initializer} | {backend} | {version} | {accuracy:.4f} "
            f"| {std:.5f} | {formula} {FORMULAS[formula]:.5f} | {kernel_std(model):.5f} |"
        )

    print(f"\n{len(x_train)} train / {len(x_test)} test, {args.epochs} epochs, seed {args.seed}\n")
    print(
        "| example | initializer | backend | keras | test accuracy | hidden kernel std "
        "at init | formula | std after training |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
