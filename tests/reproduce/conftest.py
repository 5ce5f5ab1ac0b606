"""Each reproduction runs once per test session, in quick mode with its default seed, into a
temporary folder; the tests of every module read the same result (``quick("name")``)."""

from __future__ import annotations

import pytest

from weightinit.reproduce.core import Result
from weightinit.reproduce.runner import run

_CACHE: dict[str, Result] = {}


@pytest.fixture(scope="session")
def quick(tmp_path_factory):
    """``quick(name)``: the :class:`Result` of ``weightinit reproduce name --quick``."""
    out = tmp_path_factory.mktemp("reproduce")

    def result(name: str) -> Result:
        if name not in _CACHE:
            [_CACHE[name]] = run([name], quick=True, out=out, console=False)
        return _CACHE[name]

    return result
