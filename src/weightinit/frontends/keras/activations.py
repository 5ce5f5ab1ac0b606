"""Keras 3's activations in weightinit's words: the :class:`~weightinit.Activation` of a Keras
activation function or layer (what a scheme's gain reads), and the torch function that
computes it (what the torch twin of a Keras model runs, :mod:`.twin`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import keras
import torch
import torch.nn.functional as F

from weightinit.initializers.activations import Activation, activation

__all__ = ["keras_activation", "torch_activation"]

# Keras's activation names -> weightinit's (name, parameter); "linear" is none
_ACTIVATIONS: dict[str, tuple[str, float | None]] = {
    "relu": ("relu", None), "selu": ("selu", None), "tanh": ("tanh", None),
    "sigmoid": ("sigmoid", None), "elu": ("elu", 1.0), "gelu": ("gelu", None),
    "silu": ("silu", None), "swish": ("silu", None), "mish": ("mish", None),
    "softsign": ("softsign", None), "hard_sigmoid": ("hardsigmoid", None),
    "hard_silu": ("hardswish", None), "hard_swish": ("hardswish", None),
    "relu6": ("relu6", None), "celu": ("celu", 1.0),
    "leaky_relu": ("leaky_relu", 0.2),  # keras.activations.leaky_relu's default slope
}  # fmt: skip
# activations that end a network (no gain to choose for): their torch functions
_OUTPUTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "softmax": functools.partial(torch.softmax, dim=-1),
    "log_softmax": functools.partial(torch.log_softmax, dim=-1),
    "exponential": torch.exp,
    "softplus": F.softplus,
}
_LAYERS = ("ReLU", "LeakyReLU", "ELU", "Softmax", "Activation")


def _name(spec: Any) -> str | None:
    """A Keras activation function's registered name (None: not a known function)."""
    name = keras.activations.serialize(spec) if callable(spec) else spec
    name = name.get("config", name) if isinstance(name, dict) else name
    return name if isinstance(name, str) else None


def keras_activation(spec: Any) -> Activation | None:
    """weightinit's Activation for a Keras activation function, its name, or an activation
    layer (``Activation``, ``ReLU``, ``LeakyReLU``, ``ELU``); None for "linear", an output
    activation (softmax) or one weightinit does not know.

    Example:
        >>> keras_activation(keras.layers.LeakyReLU(negative_slope=0.1)).name
        'leaky_relu'
    """
    kind = type(spec).__name__
    if kind == "Activation":
        return keras_activation(spec.activation)
    if kind == "LeakyReLU":
        return activation("leaky_relu", float(spec.negative_slope))
    if kind == "ELU":
        return activation("elu", float(getattr(spec, "alpha", 1.0)))
    if kind == "ReLU":
        plain = not spec.negative_slope and spec.max_value is None and not spec.threshold
        return activation("relu") if plain else None
    if kind in _LAYERS:
        return None
    name = _name(spec)
    return activation(*_ACTIVATIONS[name]) if name in _ACTIVATIONS else None


def torch_activation(spec: Any, where: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The torch function that computes the Keras activation ``spec`` (a function, its name or
    an activation layer); ``where`` names the layer in the error for one it cannot compute."""
    kind = type(spec).__name__
    if kind == "Activation":
        return torch_activation(spec.activation, where)
    if kind == "ReLU":
        slope, top, threshold = spec.negative_slope, spec.max_value, spec.threshold
        if top is None and not threshold:
            return functools.partial(F.leaky_relu, negative_slope=float(slope)) if slope else F.relu
        if not slope and not threshold and float(top) == 6.0:
            return F.relu6
    if kind == "Softmax":
        axis = spec.axis if isinstance(spec.axis, int) else -1
        return functools.partial(torch.softmax, dim=axis)
    found = keras_activation(spec)
    if found is not None:
        return found.fn
    name = _name(spec) if kind not in _LAYERS else None
    if name == "linear":
        return _identity
    if name in _OUTPUTS:
        return _OUTPUTS[name]
    raise ValueError(
        f"{where}: weightinit cannot compute the activation {name or kind!r} in torch; the "
        f"schemes that run the model know {', '.join(sorted([*_ACTIVATIONS, *_OUTPUTS]))}; "
        "the classic schemes need no forward pass"
    )


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x
