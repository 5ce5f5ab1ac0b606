"""Golden plans: every scheme's plan (JSON) and applied values on small zoo models, recorded
before the package was restructured (issue 11). A plan that changes, or values that change for
the same seed, fail here; regenerate only for an intended change:

    python tests/test_golden_plans.py --write

Two records: ``plans.json``, what ``seed=0`` draws (the keyed generator "philox-v1", recorded
when it became the default), and ``plans_rng_torch.json``, what ``rng="torch"`` draws: torch's
generator seeded once, row after row, as every seed drew before "philox-v1". The second is the
issue-11 record itself, with only ``"rng": "torch"`` added to each plan: plans made with
``rng="torch"`` still draw exactly what they drew before.

The comparison is exact for everything but floating-point numbers, which agree to a relative
1e-6 (``RTOL``): the last bits of a float32 forward pass (auto's and LSUV's measurements), of a
QR decomposition (orthogonal) and of numpy's vectorized ``exp`` (the quadrature behind every
gain) depend on the CPU's instruction set (AVX2 or AVX-512), while any change of a rule moves a
scale or a value by far more. The applied values are recorded per tensor as (sum, sum of
squares, first and last entries) in float64.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import sys
import warnings
from pathlib import Path

import pytest
import torch

import weightinit as wi
from weightinit import zoo
from weightinit.recipes import add_fixup_scalars, add_residual_gains

GOLDEN = {  # the rng asked for (None: the default) -> its record
    None: Path(__file__).parent / "golden" / "plans.json",
    "torch": Path(__file__).parent / "golden" / "plans_rng_torch.json",
}

MODELS = {
    "mlp_relu": functools.partial(zoo.mlp, 5, "relu", width=12, in_features=10, batch=32),
    "mlp_tanh": functools.partial(zoo.mlp, 5, "tanh", width=12, in_features=10, batch=32),
    "mlp_swish": functools.partial(zoo.mlp, 4, zoo.swish_1_5, width=12, in_features=10, batch=32),
    "cnn1d": functools.partial(zoo.cnn1d, 4, channels=6, length=12, batch=16),
    "residual_mlp": functools.partial(zoo.residual_mlp, 3, width=12, in_features=10, batch=32),
    "transformer": functools.partial(zoo.transformer_encoder, 2, d_model=16, seq=6, batch=8),
    "lstm": functools.partial(zoo.lstm, 2, hidden=8, seq=5, in_features=6, batch=8),
}
# model transformations some schemes are written for (the plan is of the transformed model)
PREPARE = {"fixup": add_fixup_scalars, "skipinit": add_residual_gains, "rezero": add_residual_gains}
SCHEMES = sorted(wi.schemes())


RTOL = 1e-6
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def _values(model: torch.nn.Module) -> dict[str, list[float]]:
    """Per state-dict tensor: sum, sum of squares, first and last entries (float64)."""
    out = {}
    for name, tensor in model.state_dict().items():
        t = tensor.detach().double().flatten()
        out[name] = [t.sum().item(), t.square().sum().item(), t[0].item(), t[-1].item()]
    return out


def _digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def same(now, recorded, where: str = "") -> None:
    """``now`` is ``recorded``: dicts with the same keys in the same order, lists of the same
    length, floats within ``RTOL`` (and 1e-9 absolute, for the zeros), everything else equal."""
    if isinstance(recorded, dict):
        assert isinstance(now, dict) and sorted(now) == sorted(recorded), (where, now, recorded)
        for key in recorded:
            same(now[key], recorded[key], f"{where}/{key}")
    elif isinstance(recorded, list):
        assert isinstance(now, list) and len(now) == len(recorded), (where, now, recorded)
        for k, (a, b) in enumerate(zip(now, recorded)):
            same(a, b, f"{where}[{k}]")
    elif isinstance(recorded, float) and not isinstance(now, bool):
        assert isinstance(now, (int, float)), (where, now, recorded)
        assert now == pytest.approx(recorded, rel=RTOL, abs=1e-9), where
    elif isinstance(recorded, str) and isinstance(now, str):
        # reasons quote measured numbers with 3 or 4 digits: the words exactly, the numbers
        # to their last printed digit (a mean of 1e-17 is 0)
        words, numbers = _NUMBER.split(now), _NUMBER.findall(now)
        assert words == _NUMBER.split(recorded), (where, now, recorded)
        for a, b in zip(numbers, _NUMBER.findall(recorded)):
            assert float(a) == pytest.approx(float(b), rel=2e-3, abs=1e-9), (where, now, recorded)
    else:
        assert now == recorded, where


def outcome(model_name: str, scheme: str, rng: str | None) -> dict:
    """The plan's JSON and the digest of the applied values, or the error's type. One thread:
    the last bits of a measured moment (auto, lsuv) depend on how sums are split."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _outcome(model_name, scheme, rng)
    finally:
        torch.set_num_threads(threads)


def _outcome(model_name: str, scheme: str, rng: str | None) -> dict:
    torch.manual_seed(0)
    model, x = MODELS[model_name]()
    if scheme in PREPARE:
        try:
            PREPARE[scheme](model, example_input=x)
        except ValueError as err:
            return {"error": type(err).__name__, "at": "prepare"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        before = _digest(model)
        try:
            plan = wi.plan(model, scheme, example_input=x, data=x, seed=0, rng=rng)
        except (ValueError, TypeError) as err:
            return {"error": type(err).__name__}
        if _digest(model) != before:
            return {"error": "planning wrote to the model"}
        plan.apply(model)
    return {"plan": json.loads(plan.to_json()), "values": _values(model)}


@functools.cache
def _recorded(rng: str | None) -> dict:
    return json.loads(GOLDEN[rng].read_text())


@pytest.mark.parametrize("rng", list(GOLDEN))
@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("scheme", SCHEMES)
def test_plan_and_values_are_as_recorded(scheme, model_name, rng):
    recorded = _recorded(rng)[f"{model_name}/{scheme}"]
    now = outcome(model_name, scheme, rng)
    if "error" in recorded or "error" in now:
        assert now == recorded
        return
    same(now["plan"], recorded["plan"], "plan")
    same(now["values"], recorded["values"], "values")


@pytest.mark.parametrize("rng", list(GOLDEN))
def test_every_scheme_is_recorded(rng):
    recorded = {key.split("/")[1] for key in _recorded(rng)}
    assert recorded == set(SCHEMES)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    for rng, path in GOLDEN.items():
        results = {f"{m}/{s}": outcome(m, s, rng) for s in SCHEMES for m in MODELS}
        path.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        ok = sum("plan" in r for r in results.values())
        print(f"{ok} plans and {len(results) - ok} errors written to {path}")
