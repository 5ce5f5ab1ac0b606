"""Names users type: one normalization, aliases and close-match suggestions, shared by the
catalog of initializers and the registry of schemes."""

from __future__ import annotations

import difflib
import re
from typing import Generic, TypeVar

T = TypeVar("T")


def key(name: str) -> str:
    """ "HeNormal", "he_normal", "he-normal" and "he_normal_" are the same name."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


class NameTable(Generic[T]):
    """Values by canonical name and aliases, looked up by :func:`key`.

    ``what`` ("initializer", "scheme") and ``listing`` (the command that lists every name) word
    the errors.
    """

    def __init__(self, what: str, listing: str):
        self.what, self.listing = what, listing
        self._by_key: dict[str, T] = {}
        self._labels: list[str] = []
        self._seen: dict[str, T] = {}  # exact names already looked up

    def add(self, name: str, aliases: tuple[str, ...], value: T) -> None:
        """Register ``value`` under ``name`` and ``aliases``; a name taken twice is an error."""
        labels = (name, *aliases)
        for label in labels:
            if not isinstance(label, str) or not key(label):
                raise ValueError(f"a {self.what} name must be a non-empty string, got {label!r}")
            if key(label) in self._by_key:
                raise ValueError(f"a {self.what} named {label!r} is already registered")
        for label in labels:
            self._by_key[key(label)] = value
        self._labels.extend(labels)

    def get(self, name: str) -> T:
        """The value called ``name``, or a ValueError that suggests close names."""
        if not isinstance(name, str):
            raise TypeError(f"a {self.what} name must be a string, got {type(name).__name__}")
        value = self._seen.get(name)  # a plan looks the same few names up once per parameter
        if value is not None:
            return value
        value = self._by_key.get(key(name))
        if value is not None:
            self._seen[name] = value
        else:
            close = difflib.get_close_matches(name.lower(), self._labels, n=4, cutoff=0.5)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ValueError(
                f"unknown {self.what} {name!r}.{hint} `{self.listing}` shows every "
                f"{'name' if self.what == 'initializer' else self.what}."
            )
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and key(name) in self._by_key
