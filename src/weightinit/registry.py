"""The catalog of tensor initializers: names users know (Keras, torch, papers) -> functions.

Each initializer registers itself where it is defined, with its formula, the activations it
suits and its paper; ``weightinit list`` prints this catalog and ``get`` looks names up in it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

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
_BY_KEY: dict[str, CatalogEntry] = {}


def _key(name: str) -> str:
    # "HeNormal", "he_normal", "he-normal" and "he_normal_" are the same name.
    return re.sub(r"[^a-z0-9]", "", name.lower())


def register(
    name: str, *, aliases: tuple[str, ...] = (), formula: str, activations: str, paper: str
) -> Callable[[F], F]:
    """Class the decorated initializer in the catalog under ``name`` and ``aliases``."""

    def decorate(function: F) -> F:
        entry = CatalogEntry(name, function, aliases, formula, activations, paper)
        for label in (name, *aliases):
            if _key(label) in _BY_KEY:
                raise RuntimeError(f"initializer name {label!r} is registered twice")
            _BY_KEY[_key(label)] = entry
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
    entry = _BY_KEY.get(_key(name))
    if entry is None:
        labels = [label for e in _ENTRIES for label in (e.name, *e.aliases)]
        close = difflib.get_close_matches(name.lower(), labels, n=4, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown initializer {name!r}.{hint} `weightinit list` shows every name.")
    return entry.function
