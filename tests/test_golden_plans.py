"""Golden plans: every scheme's plan (JSON) and applied values on small zoo models, recorded
before the package was restructured (issue 11). A plan that changes, or values that change for
the same seed, fail here; regenerate only for an intended change:

    python tests/test_golden_plans.py --write
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
import warnings
from pathlib import Path

import pytest
import torch

import weightinit as wi
from weightinit import zoo
from weightinit.recipes import add_fixup_scalars, add_residual_gains

GOLDEN = Path(__file__).parent / "golden" / "plans.json"

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


def _digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def outcome(model_name: str, scheme: str) -> dict:
    """The plan's JSON and the digest of the applied values, or the error's type. One thread:
    the last bits of a measured moment (auto, lsuv) depend on how sums are split."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _outcome(model_name, scheme)
    finally:
        torch.set_num_threads(threads)


def _outcome(model_name: str, scheme: str) -> dict:
    torch.manual_seed(0)
    model, x = MODELS[model_name]()
    if scheme in PREPARE:
        try:
            PREPARE[scheme](model, example_input=x)
        except ValueError as err:
            return {"error": type(err).__name__, "at": "prepare"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            plan = wi.plan(model, scheme, example_input=x, data=x, seed=0)
        except (ValueError, TypeError) as err:
            return {"error": type(err).__name__}
        before = _digest(model)
        plan.apply(model)
    text = hashlib.sha256(plan.to_json().encode()).hexdigest()  # key order included
    return {
        "plan": json.loads(plan.to_json()),
        "text": text,
        "values": _digest(model),
        "before": before,
    }


def _recorded() -> dict:
    return json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("scheme", SCHEMES)
def test_plan_and_values_are_as_recorded(scheme, model_name):
    recorded = _recorded()[f"{model_name}/{scheme}"]
    now = outcome(model_name, scheme)
    if "error" in recorded:
        assert now == recorded
        return
    assert now["plan"] == recorded["plan"]
    assert now["text"] == recorded["text"]  # the same JSON, byte for byte
    assert now["values"] == recorded["values"]
    assert now["before"] == recorded["before"]  # planning wrote nothing


def test_every_scheme_is_recorded():
    recorded = {key.split("/")[1] for key in _recorded()}
    assert recorded == set(SCHEMES)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    results = {f"{m}/{s}": outcome(m, s) for s in SCHEMES for m in MODELS}
    GOLDEN.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    ok = sum("plan" in r for r in results.values())
    print(f"{ok} plans and {len(results) - ok} errors written to {GOLDEN}")
