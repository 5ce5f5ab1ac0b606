import copy
import math

import pytest
import torch
from hypothesis import settings

# Deterministic property tests: the same examples on every run and every machine.
settings.register_profile("weightinit", derandomize=True, deadline=None, max_examples=60)
settings.load_profile("weightinit")

N = 1_000_000  # draws per statistical test


def var_tolerance(var: float, n: int = N, kurtosis: float = 3.0, k: float = 5.0) -> float:
    """k standard errors of a sample variance of n draws: SE = var sqrt((kurtosis - 1) / n).

    kurtosis 3 (the normal's) bounds the uniform's 1.8 and the truncated normal's 2.4."""
    return k * var * math.sqrt((kurtosis - 1.0) / n)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def isolated_schemes(monkeypatch):
    """Schemes registered in a test are gone after it."""
    from weightinit.scheme import registry

    names = copy.copy(registry._NAMES)
    names._by_key, names._labels = dict(names._by_key), list(names._labels)
    names._seen = dict(names._seen)
    monkeypatch.setattr(registry, "_SCHEMES", dict(registry._SCHEMES))
    monkeypatch.setattr(registry, "_NAMES", names)


# weightinit reproduce: each reproduction runs once per test session, in quick mode with its
# default seed, into a temporary folder; the tests of every module under tests/reproduce/ read
# the same result. (Here and not in tests/reproduce/conftest.py: two conftest modules would
# shadow each other's `from conftest import ...`.)
_QUICK_RESULTS: dict = {}


@pytest.fixture(scope="session")
def quick(tmp_path_factory):
    """``quick(name)``: the ``Result`` of ``weightinit reproduce name --quick``."""
    from weightinit.reproduce.runner import run

    out = tmp_path_factory.mktemp("reproduce")

    def result(name: str):
        if name not in _QUICK_RESULTS:
            [_QUICK_RESULTS[name]] = run([name], quick=True, out=out, console=False)
        return _QUICK_RESULTS[name]

    return result

