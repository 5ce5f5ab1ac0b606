"""Argument checks shared by the initializers: one wording for every error."""

from __future__ import annotations

import math
from numbers import Integral, Real

import torch


def check_tensor(tensor: object, fn: str, *, complex_ok: bool = False) -> None:
    """Raise TypeError unless ``tensor`` is a floating (or, if allowed, complex) tensor."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{fn}: `tensor` must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.is_floating_point() or (complex_ok and tensor.is_complex()):
        return
    wanted = "a floating-point or complex" if complex_ok else "a floating-point"
    hint = " (use unitary_ for complex tensors)" if tensor.is_complex() else ""
    raise TypeError(f"{fn}: `tensor` has dtype {tensor.dtype}; it must be {wanted} tensor{hint}")


def nothing_to_fill(tensor: torch.Tensor) -> bool:
    """Meta tensors have no storage and zero-size tensors no elements: initializers skip both."""
    return tensor.is_meta or tensor.numel() == 0


def subject(fn: str, name: str) -> str:
    """``fn: `name``` for a function's argument; ``option `name``` when ``fn`` is empty (a
    scheme's option: ``schemes.take_options`` names the scheme)."""
    return f"{fn}: `{name}`" if fn else f"option `{name}`"


def is_number(value: object) -> bool:
    """A real number: int, float or a numpy scalar such as ``np.float32(0.1)``; not a bool."""
    return isinstance(value, Real) and not isinstance(value, bool)


def is_integer(value: object) -> bool:
    """An int or a numpy integer; not a bool."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def finite(fn: str, name: str, value: float) -> float:
    if not is_number(value) or not math.isfinite(value):
        raise ValueError(f"{subject(fn, name)} must be a finite number, got {value!r}")
    return float(value)


def fits(fn: str, what: str, extent: float, dtype: torch.dtype) -> None:
    """Raise ValueError unless values as large as ``extent`` are finite in ``dtype``."""
    if not (dtype.is_floating_point or dtype.is_complex):
        return
    largest = torch.finfo(dtype).max
    if not extent <= largest:  # also catches inf and nan
        raise ValueError(
            f"{fn}: the values ({what}) reach {extent:.3g}, beyond the largest {dtype} value "
            f"({largest:.3g}), and would overflow to inf; use a smaller scale or a wider dtype"
        )


def positive(fn: str, name: str, value: float, *, allow_zero: bool = False) -> float:
    value = finite(fn, name, value)
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{subject(fn, name)} must be {bound}, got {value!r}")
    return value


def choice(fn: str, name: str, value: str, options: tuple[str, ...]) -> str:
    if value not in options:
        raise ValueError(
            f"{subject(fn, name)} must be one of {', '.join(map(repr, options))}, got {value!r}"
        )
    return value


def check_seed(seed: object, where: str) -> int | None:
    """``seed`` as an int, or None. Python and numpy integers in torch's seed range
    [0, 2**64) are seeds; a bool, float, str or negative number is an error naming ``where``
    (the public function)."""
    if seed is None:
        return None
    if not is_integer(seed):
        raise TypeError(
            f"{where}: `seed` must be an int (or None), got {seed!r} of type "
            f"{type(seed).__name__}; pass e.g. seed=0"
        )
    if not 0 <= seed < 2**64:
        raise ValueError(f"{where}: `seed` must be in [0, 2**64), got {seed}; pass e.g. seed=0")
    return int(seed)


def is_keras(model: object) -> bool:
    """Is ``model`` a Keras layer or model (asked without importing Keras)?"""
    return any(cls.__module__.split(".")[0] == "keras" for cls in type(model).__mro__)


def refuse_keras(model: object, where: str) -> None:
    """A Keras 3 model given to a torch function is a TypeError saying what to use: under
    Keras's torch backend it is an ``nn.Module`` too, but its variables are Keras's, in layers
    torch knows nothing of (asked without importing Keras)."""
    if is_keras(model):
        raise TypeError(
            f"{where}: `model` is a Keras model ({type(model).__name__}); these functions take "
            "torch models. For Keras use weightinit.keras, which takes the same arguments: "
            "apply(model) ('auto', data-free), plan(model, scheme), init(...), write(plan, "
            "model), diagnose(model, inputs), and its initializers per layer; see docs/keras.md"
        )
