"""The Keras front end's tests, in their own pytest processes: once with ``KERAS_BACKEND=torch``
and once with ``jax`` (Keras fixes its backend at import; see the root conftest.py)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _keras_paths() -> list[str]:
    """What the root conftest.py leaves out unless KERAS_BACKEND is set: one list of them."""
    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.KERAS_PATHS


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_the_keras_front_end_on_each_backend(backend):
    if importlib.util.find_spec("keras") is None or importlib.util.find_spec(backend) is None:
        pytest.skip(f"keras or {backend} is not installed (the test extra installs both)")
    env = {**os.environ, "KERAS_BACKEND": backend}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *_keras_paths()]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1], done.stdout[-2000:]


def test_keras_without_a_backend_it_can_load_says_what_to_set():
    if importlib.util.find_spec("keras") is None or importlib.util.find_spec("tensorflow"):
        pytest.skip("needs keras without tensorflow (its default backend)")
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    done = subprocess.run(
        [sys.executable, "-c", "import weightinit.keras"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "ImportError: weightinit.keras: Keras could not load its backend tensorflow" in last
    assert "set KERAS_BACKEND=torch or KERAS_BACKEND=jax" in last
