"""The catalog of tensor initializers: names users know (Keras, torch, papers) -> functions.

Each initializer registers itself where it is defined, with its formula, the activations it
suits and its paper; ``weightinit list`` prints this catalog and ``get`` looks names up in it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from weightinit._names import NameTable

__all__ = ["CatalogEntry", "catalog", "get", "register"]

F = TypeVar("F", bound=Callable)


@dataclass(frozen=True)
class CatalogEntry:
    """One initializer: its canonical name, aliases, formula, suited activations and paper."""

    name: str
    function: Callable
    aliases: tuple[str, ...]
    formula: str
    activations: str
    paper: str


_ENTRIES: list[CatalogEntry] = []
_NAMES: NameTable[CatalogEntry] = NameTable("initializer", "weightinit list")


def register(
    name: str, *, aliases: tuple[str, ...] = (), formula: str, activations: str, paper: str
) -> Callable[[F], F]:
    """Class the decorated initializer in the catalog under ``name`` and ``aliases``."""

    def decorate(function: F) -> F:
        entry = CatalogEntry(name, function, aliases, formula, activations, paper)
        _NAMES.add(name, aliases, entry)
        _ENTRIES.append(entry)
        return function

    return decorate


def catalog() -> list[CatalogEntry]:
    """Every registered initializer, in the order the library defines them."""
    return list(_ENTRIES)


def get(name: str | Callable) -> Callable:
    """The initializer called ``name``: Keras names, torch aliases, any case.

    ``"he_normal"``, ``"HeNormal"``, ``"kaiming_normal_"`` and ``"KAIMING_NORMAL"`` all give
    :func:`weightinit.he_normal_`. A callable is returned unchanged.

    Example:
        >>> import torch, weightinit
        >>> init = weightinit.get("GlorotUniform")
        >>> init.__name__
        'glorot_uniform_'
    """
    if callable(name):
        return name
    if not isinstance(name, str):
        raise TypeError(f"get: `name` must be a string or a callable, got {type(name).__name__}")
    return _NAMES.get(name).function
