"""LSUV calibrated inside the forward pass: every layer at the target std, a handful of passes,
zero layers left alone, clear errors, and a plan that reproduces what was calibrated."""

import pytest
import torch
from torch import nn

import weightinit as wi

FORWARDS = {"count": 0}


class Counting(nn.Module):
    """Counts forward passes through the whole model (a global: deep copies share it)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        FORWARDS["count"] += 1
        return self.inner(x)


def mlp(depth, act, width=64):
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), act()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


class Cube(nn.Module):
    def forward(self, x):
        return x**3 / 3


X = torch.randn(256, 64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("act", [nn.ReLU, nn.Tanh, nn.GELU, nn.SiLU, nn.SELU, Cube])
def test_every_layer_reaches_the_target_std_after_apply(act):
    model = mlp(100, act)
    p = wi.init(model, "lsuv", data=X, seed=0, tol=0.05)
    report = wi.diagnose(model, X, exact_limit=0)  # measured on the real model, independently
    assert all(0.95 <= layer.std <= 1.05 for layer in report.layers)
    assert len(p.calibration) == 101 and all(
        c["std"] == pytest.approx(1, abs=0.05) for c in p.calibration
    )


def test_plain_cnn():
    layers = [nn.Conv1d(1, 16, 3, padding=1), nn.ReLU()]
    for _ in range(49):
        layers += [nn.Conv1d(16, 16, 3, padding=1), nn.ReLU()]
    model = nn.Sequential(*layers)
    x = torch.randn(32, 1, 40, generator=torch.Generator().manual_seed(0))
    wi.init(model, "lsuv", data=x, seed=0)
    report = wi.diagnose(model, x, exact_limit=0)
    assert all(0.9 <= layer.std <= 1.1 for layer in report.layers)


def test_one_sweep_costs_one_forward_pass():
    model = Counting(mlp(100, nn.Tanh))
    FORWARDS["count"] = 0
    wi.plan(model, "lsuv", data=X, seed=0)
    # one trace for the activations, one orthonormal pre-init, then the sweeps (1 + 1 to confirm)
    assert FORWARDS["count"] <= 4


def test_plan_reproduces_the_calibrated_values_and_guards_its_seed():
    a, b = mlp(10, nn.ReLU), mlp(10, nn.ReLU)
    p = wi.plan(a, "lsuv", data=X, seed=3)
    p.apply(a)
    wi.Plan.from_json(p.to_json()).apply(b)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    with pytest.raises(ValueError, match="calibrated on values drawn with seed 3"):
        p.apply(a, seed=4)


def test_zero_layers_stay_zero():
    model = mlp(5, nn.ReLU)
    p = wi.init(model, "lsuv", data=X, seed=0, rules={"10.*": "zeros"})
    assert not model[10].weight.any() and "LSUV" not in p["10.weight"].reason


def test_a_layer_with_all_zero_output_is_an_error_and_nothing_changes():
    model = nn.Sequential(nn.Linear(64, 8, bias=False), nn.ReLU(), nn.Linear(8, 2))
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match="layer '0' outputs all zeros"):
        wi.init(model, "lsuv", data=torch.zeros(16, 64), seed=0)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))


def test_lsuv_needs_data_and_valid_options():
    with pytest.raises(ValueError, match="pass data=batch"):
        wi.plan(mlp(2, nn.ReLU), "lsuv")
    with pytest.raises(ValueError, match="0 < tol < 1"):
        wi.plan(mlp(2, nn.ReLU), "lsuv", data=X, tol=2.0)
    assert "lsuv" in wi.schemes()
