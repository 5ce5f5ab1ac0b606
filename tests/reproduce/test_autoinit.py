"""12. AutoInit: the mechanism (every layer's output at unit variance, from the architecture
alone) against torch's default, whose Var(W) = 1 / (3 fan_in) shrinks a tanh net's signal by at
least 3x per layer; and the quick run's comparison."""

from __future__ import annotations

import statistics

import pytest
import torch
from torch import nn

import weightinit as wi
from weightinit.reproduce.architectures import ARCHITECTURES
from weightinit.reproduce.data import mnist1d
from weightinit.reproduce.papers.autoinit import QUICK_SETUPS, hand_picked


def _output_variances(model: nn.Module, x: torch.Tensor) -> list[float]:
    found: list[float] = []
    hooks = [m.register_forward_hook(lambda mod, i, o: found.append(o.var().item()))
             for m in model.modules() if isinstance(m, nn.Linear)]  # fmt: skip
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return found


GELU_DRIFT = pytest.mark.xfail(
    strict=True,
    reason="known limit of auto, found here: on MNIST-1D inputs (examples correlated, not the "
    "i.i.d. Gaussian its moments assume) a 20-layer GELU MLP's output variance drifts up to "
    "1.5-3 by the last layer, depending on the seed; on Gaussian inputs it stays within 0.2",
)


@pytest.mark.parametrize(
    "name", ["mlp-relu", "mlp-tanh", pytest.param("mlp-gelu", marks=GELU_DRIFT)]
)
def test_auto_puts_every_layer_output_near_unit_variance_on_held_out_data(name):
    task = mnist1d()
    torch.manual_seed(0)
    model = ARCHITECTURES[name].build(20)
    wi.init(model, "auto", example_input=task.x[:256], seed=0)
    # held-out inputs, not the traced batch; 20% covers the finite-width drift of 19 layers of
    # 64 units (each layer's variance moves by about sqrt(2/64) / sqrt(batch-averaging) ~ 2%)
    variances = _output_variances(model, task.x[1000:2024])
    assert len(variances) == 20
    assert all(abs(v - 1) < 0.2 for v in variances), variances


def test_torch_default_collapses_a_tanh_net_to_the_bias_fixed_point():
    task = mnist1d()
    torch.manual_seed(0)
    model = ARCHITECTURES["mlp-tanh"].build(20)  # torch's own init: U(±1/sqrt(fan_in))
    variances = _output_variances(model, task.x[1000:2024])
    # Var(W) = Var(b) = 1/(3 n), n = 64 and tanh(z) ~ z when small: q -> q/3 + 1/(3 n), whose
    # fixed point is q* = 1/(2 n): the input is forgotten, only the biases' noise is left
    n = 64
    assert variances[1] > 10 / (2 * n)
    assert variances[-2] == pytest.approx(1 / (2 * n), rel=0.2)


def test_hand_picked_inits_are_the_ones_each_architecture_lists():
    assert hand_picked("transformer") == ["lecun", "glorot", "he", "orthogonal", "t-fixup"]
    assert "fixup" not in hand_picked("mlp-relu")


def test_quick_run_auto_beats_the_collapsing_default_on_plain_nets(quick):
    result = quick("autoinit")
    summary = result.outcome.data["summary"]
    assert set(summary) == set(QUICK_SETUPS)
    for name in ("mlp-relu", "mlp-tanh"):
        # torch's default collapses a 10-layer plain net: chance is 10%
        assert summary[name]["auto"] > summary[name]["torch"] + 0.03, summary[name]
    # the stated rule, from the raw accuracies: auto within 1 point of every other init
    raw = result.outcome.data["accuracy"]
    within = [
        statistics.fmean(runs["auto"]) >= statistics.fmean(runs[s]) - 0.01
        for runs in raw.values()
        for s in runs
    ]
    assert result.outcome.holds == all(within)
