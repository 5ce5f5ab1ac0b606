"""Variance scaling and its presets: variances against their formulas, parity with torch."""

import math

import pytest
import torch
from conftest import N, var_tolerance
from torch import nn

import weightinit as wi

KURTOSIS = {"normal": 3.0, "uniform": 1.8, "truncated_normal": 3.0}  # 3 bounds the truncated one


def fan_of(mode, fan_in, fan_out):
    return {
        "fan_in": fan_in,
        "fan_out": fan_out,
        "fan_avg": (fan_in + fan_out) / 2,
        "fan_geo_avg": math.sqrt(fan_in * fan_out),
    }[mode]


@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg", "fan_geo_avg"])
@pytest.mark.parametrize("distribution", ["truncated_normal", "normal", "uniform"])
def test_variance_scaling_variance_matches_formula(gen, mode, distribution):
    t = torch.empty(500, 250, 2, 4)  # fan_in 2000, fan_out 4000: 1e6 elements
    w = wi.variance_scaling_(t, 3.0, mode, distribution, generator=gen)
    expected = 3.0 / fan_of(mode, 2000, 4000)
    assert abs(w.var().item() - expected) < var_tolerance(expected, kurtosis=KURTOSIS[distribution])
    assert abs(w.mean().item()) < 5 * math.sqrt(expected / N)


def test_variance_scaling_support_of_each_distribution(gen):
    std = math.sqrt(2.0 / 1000)
    u = wi.variance_scaling_(torch.empty(1000, 1000), 2.0, distribution="uniform", generator=gen)
    assert u.abs().max() <= math.sqrt(3) * std
    t = wi.variance_scaling_(torch.empty(1000, 1000), 2.0, generator=gen)
    assert t.abs().max() <= 2 * std / wi.truncated_std()


def test_variance_scaling_uses_the_layout_fans(gen):
    """An LSTM weight's fan_out is per gate (20), not the stacked 80."""
    lstm = nn.LSTM(1000, 250)  # weight_ih_l0: (1000, 1000)
    w = lstm.weight_ih_l0
    wi.variance_scaling_(w, 1.0, "fan_out", "normal", layout=(lstm, "weight_ih_l0"), generator=gen)
    assert abs(w.var().item() - 1 / 250) < var_tolerance(1 / 250)


def test_depthwise_conv_fan_out_is_not_multiplied_by_groups(gen):
    conv = nn.Conv2d(64, 64, 5, groups=64, bias=False)  # fan_in = fan_out = 25
    w = wi.he_normal_(conv.weight, mode="fan_out", layout=(conv, "weight"), generator=gen)
    assert abs(w.var().item() - 2 / 25) < var_tolerance(2 / 25, n=w.numel())


@pytest.mark.parametrize(
    "ours, kwargs, expected_var",
    [
        (wi.lecun_normal_, {}, 1 / 2000),
        (wi.lecun_normal_, {"gain": 2.0, "distribution": "truncated_normal"}, 4 / 2000),
        (wi.lecun_uniform_, {}, 1 / 2000),
        (wi.glorot_normal_, {}, 2 / 2500),
        (wi.glorot_uniform_, {"gain": 0.5}, 0.25 * 2 / 2500),
        (wi.he_normal_, {"nonlinearity": "relu"}, 2 / 2000),
        (wi.he_normal_, {"a": 0.2}, 2 / (1.04 * 2000)),
        (wi.he_normal_, {"mode": "fan_out", "nonlinearity": "relu"}, 2 / 500),
        (wi.he_normal_, {"nonlinearity": "linear"}, 1 / 2000),
        (wi.he_uniform_, {"nonlinearity": "relu"}, 2 / 2000),
        (wi.random_walk_, {"nonlinearity": "relu"}, 2 * math.exp(2.4 / (2000 - 2.4)) / 2000),
        (wi.random_walk_, {"nonlinearity": "linear"}, math.exp(1 / 2000) / 2000),
    ],
)
def test_presets_variance(gen, ours, kwargs, expected_var):
    w = ours(torch.empty(500, 2000), generator=gen, **kwargs)
    assert abs(w.var().item() - expected_var) < var_tolerance(expected_var)


def test_random_walk_gain_constants_from_the_paper():
    # Sussillo & Abbott 2014: g_linear = exp(1/(2N)), g_ReLU = sqrt(2) exp(1.2/(max(N,6)-2.4))
    assert wi.random_walk_gain("linear", 100) == pytest.approx(math.exp(0.005))
    assert wi.random_walk_gain("relu", 100) == pytest.approx(math.sqrt(2) * math.exp(1.2 / 97.6))
    assert wi.random_walk_gain("relu", 3) == pytest.approx(math.sqrt(2) * math.exp(1.2 / 3.6))


@pytest.mark.parametrize(
    "ours, theirs, kwargs",
    [
        (wi.xavier_uniform_, nn.init.xavier_uniform_, {"gain": 1.3}),
        (wi.xavier_normal_, nn.init.xavier_normal_, {"gain": 0.7}),
        (wi.kaiming_uniform_, nn.init.kaiming_uniform_, {"a": math.sqrt(5)}),  # nn.Linear's
        (wi.kaiming_normal_, nn.init.kaiming_normal_, {"mode": "fan_out", "nonlinearity": "relu"}),
        (wi.kaiming_normal_, nn.init.kaiming_normal_, {"a": 0.1}),
        (wi.kaiming_normal_, nn.init.kaiming_normal_, {"nonlinearity": "linear"}),
    ],
)
@pytest.mark.parametrize("shape", [(30, 50), (8, 4, 3, 3)])
def test_parity_with_torch_nn_init(ours, theirs, kwargs, shape):
    a = ours(torch.empty(shape), generator=torch.Generator().manual_seed(0), **kwargs)
    b = theirs(torch.empty(shape), generator=torch.Generator().manual_seed(0), **kwargs)
    torch.testing.assert_close(a, b, rtol=1e-6, atol=0)


def test_aliases_are_the_same_functions():
    assert wi.xavier_normal_ is wi.glorot_normal_ and wi.xavier_uniform_ is wi.glorot_uniform_
    assert wi.kaiming_normal_ is wi.he_normal_ and wi.kaiming_uniform_ is wi.he_uniform_


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda t: wi.variance_scaling_(t, 0.0), "`scale` must be > 0"),
        (lambda t: wi.variance_scaling_(t, mode="fan"), "`mode` must be one of"),
        (lambda t: wi.variance_scaling_(t, distribution="gauss"), "`distribution` must be one of"),
        (lambda t: wi.glorot_normal_(t, gain=-1.0), "`gain` must be > 0"),
        (lambda t: wi.he_normal_(t, nonlinearity="relux"), "unknown activation 'relux'"),
        (lambda t: wi.he_normal_(t, a=float("nan")), "`a` must be a finite number"),
        (lambda t: wi.random_walk_(t, "tanh"), "`nonlinearity` must be one of"),
    ],
)
def test_argument_errors_leave_the_tensor_alone(call, match):
    t = torch.zeros(4, 5)
    with pytest.raises(ValueError, match=match):
        call(t)
    assert torch.equal(t, torch.zeros(4, 5))


@pytest.mark.parametrize("spelling", ["leaky_relu", "LEAKY_RELU", "Leaky_ReLU"])
def test_he_slope_counts_for_any_spelling_of_leaky_relu(gen, spelling):
    w = wi.he_normal_(torch.empty(500, 2000), a=1.0, nonlinearity=spelling, generator=gen)
    assert abs(w.var().item() - 1 / 2000) < var_tolerance(1 / 2000)


def test_lecun_embedding_reproduces_torchs_unit_normal(gen):
    """An embedding row is reached by one one-hot input: fan_in 1, so LeCun gives N(0, 1)."""
    emb = nn.Embedding(1000, 1000)
    w = wi.lecun_normal_(emb.weight, layout=(emb, "weight"), generator=gen)
    assert abs(w.var().item() - 1.0) < var_tolerance(1.0)
