"""Every reproduction, in the order of the list: each module of
:mod:`weightinit.reproduce.papers` defines one ``REPRODUCTION``; this module finds them."""

from __future__ import annotations

import difflib
import importlib
import pkgutil

from weightinit.reproduce import papers
from weightinit.reproduce.core import Reproduction

__all__ = ["get", "modules", "reproductions"]


def modules() -> list[str]:
    """The modules of :mod:`weightinit.reproduce.papers`, by name."""
    return sorted(m.name for m in pkgutil.iter_modules(papers.__path__))


def reproductions() -> list[Reproduction]:
    """Every reproduction, ordered by number.

    Example:
        >>> [r.name for r in reproductions()][:2]
        ['symmetry', 'he-xavier']
    """
    found = [importlib.import_module(f"{papers.__name__}.{m}").REPRODUCTION for m in modules()]
    return sorted(found, key=lambda r: r.number)


def get(name: str) -> Reproduction:
    """The reproduction called ``name`` (or numbered ``name``); ValueError naming the known
    ones otherwise.

    Example:
        >>> get("2").name, get("he-xavier").number
        ('he-xavier', 2)
    """
    for r in reproductions():
        if name in (r.name, str(r.number)):
            return r
    names = [r.name for r in reproductions()]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(f"unknown reproduction {name!r}; {hint}known: {', '.join(names)} (or 'all')")
