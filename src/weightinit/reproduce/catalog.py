"""Every reproduction, in the order of the list: each module of this package that holds an
experiment defines ``REPRODUCTION``; this module collects them."""

from __future__ import annotations

import importlib

from weightinit.reproduce.core import Reproduction

__all__ = ["MODULES", "get", "reproductions"]

#: the modules that define a ``REPRODUCTION``, in the order of the list
MODULES = ("symmetry", "he_xavier")


def reproductions() -> list[Reproduction]:
    """Every reproduction, ordered by number.

    Example:
        >>> [r.name for r in reproductions()][:2]
        ['symmetry', 'he-xavier']
    """
    found = [importlib.import_module(f"weightinit.reproduce.{m}").REPRODUCTION for m in MODULES]
    return sorted(found, key=lambda r: r.number)


def get(name: str) -> Reproduction:
    """The reproduction called ``name`` (or numbered ``name``); ValueError naming the known
    ones otherwise."""
    for r in reproductions():
        if name in (r.name, str(r.number)):
            return r
    known = ", ".join(r.name for r in reproductions())
    raise ValueError(f"unknown reproduction {name!r}; known: {known} (or 'all')")
