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
            f"{fn}: {what} ({extent:.3g}) is beyond the largest {dtype} value "
            f"({largest:.3g}): the values would overflow to inf; use a smaller scale or a "
            "wider dtype"
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
