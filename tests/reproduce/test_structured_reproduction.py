"""11. Structured inits: each sub-claim's mechanism against an independent oracle, and the quick
run's qualitative results."""

import math

import pytest
import torch
from torch import nn

import weightinit as wi
from weightinit.modules import CReLU
from weightinit.reproduce.papers.structured import (
    adjacent_correlation,
    drift_theory,
    gradient_sweep,
    sweep_net,
)
from weightinit.zoo import mlp, residual_mlp


def _linearity_gap(f, x, y):
    """max |f(x + y) - f(x) - f(y)| and max |f(-2.5 x) + 2.5 f(x)|."""
    with torch.no_grad():
        return max((f(x + y) - f(x) - f(y)).abs().max().item(),
                   (f(-2.5 * x) + 2.5 * f(x)).abs().max().item())  # fmt: skip


def test_looks_linear_crelu_net_is_exactly_linear_at_init_and_relu_net_is_not():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), CReLU(), nn.Linear(16, 8), CReLU(), nn.Linear(16, 3))
    wi.init(net.double(), "looks_linear", seed=0)
    x, y = torch.randn(20, 6, dtype=torch.float64), torch.randn(20, 6, dtype=torch.float64)
    assert _linearity_gap(net, x, y) < 1e-12
    with torch.no_grad():  # the map is W x with W the product of the W0 halves
        w0 = [m.weight[:, : m.in_features // 2] for m in net if isinstance(m, nn.Linear)][1:]
        product = w0[1] @ w0[0] @ net[0].weight
        torch.testing.assert_close(net(x), x @ product.T)
    relu = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    wi.init(relu.double(), "he", seed=0)
    assert _linearity_gap(relu, x, y) > 1e-2


def test_sweep_nets_gradient_constant_for_looks_linear_and_matches_finite_differences():
    x = torch.linspace(-2, 2, 64, dtype=torch.float64)[:, None]
    torch.manual_seed(0)
    ll = sweep_net(6, 8, looks_linear=True)
    wi.init(ll, "looks_linear", seed=0)
    g = gradient_sweep(ll, x)
    assert g.abs().min() > 0 and (g - g[0]).abs().max() < 1e-10 * g.abs().max()
    torch.manual_seed(0)
    relu = sweep_net(6, 8, looks_linear=False)
    wi.init(relu, "he", seed=0)
    g, h = gradient_sweep(relu, x), 1e-6
    with torch.no_grad():  # eval mode on the sweep's statistics: central differences
        fd = (relu(x + h) - relu(x - h))[:, 0] / (2 * h)
    assert (g - fd).abs().le(1e-5 * (1 + g.abs())).float().mean() > 0.9  # kinks aside


def test_adjacent_correlation_of_white_noise_and_of_a_constant():
    noise = torch.randn(20000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert abs(adjacent_correlation(noise)) < 4 / math.sqrt(20000)
    assert adjacent_correlation(torch.full((100,), 3.0)) == pytest.approx(0.99)


def test_sparse_gives_exactly_k_incoming_weights_per_unit_and_tanh_biases_half():
    torch.manual_seed(0)
    net = mlp(4, "tanh", width=200, in_features=40)[0]
    wi.init(net, "sparse", seed=0)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    for m in linears:
        assert (m.weight != 0).sum(dim=1).tolist() == [15] * m.out_features
    for m in linears[:-1]:
        assert torch.equal(m.bias, torch.full_like(m.bias, 0.5))
    nonzero = torch.cat([m.weight[m.weight != 0] for m in linears])
    assert abs(nonzero.std().item() - 1) < 5 / math.sqrt(2 * len(nonzero))  # N(0, 1) values


def test_random_walk_gain_is_the_papers_formula_and_sets_the_weights():
    for n in (2, 6, 16, 100):
        expected = math.sqrt(2) * math.exp(1.2 / (max(n, 6) - 2.4))
        assert wi.random_walk_gain("relu", n) == pytest.approx(expected, rel=1e-12)
        assert wi.random_walk_gain("linear", n) == pytest.approx(math.exp(1 / (2 * n)))
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(400, 400), nn.ReLU(), nn.Linear(400, 400), nn.Linear(400, 1))
    wi.init(net, "random_walk", seed=0)
    for layer, kind in ((net[0], "relu"), (net[2], "linear")):
        std = wi.random_walk_gain(kind, 400) / 20
        assert layer.weight.std().item() == pytest.approx(std, rel=5 / math.sqrt(2 * 160000))


def test_drift_theory_matches_a_monte_carlo_of_the_chi_square_recursion():
    gen, n, g = torch.Generator().manual_seed(0), 16, math.sqrt(2)
    z = torch.randn(200000, n, generator=gen, dtype=torch.float64)
    mask = torch.rand(200000, n, generator=gen) < 0.5
    sq = (z.square() * mask).sum(1)
    sample = 0.5 * torch.log(g**2 / n * sq[sq > 0])
    se = sample.std().item() / math.sqrt(len(sample))
    assert drift_theory(n, g, relu=True) == pytest.approx(sample.mean().item(), abs=4 * se)
    assert drift_theory(100, 1.0, relu=False) == pytest.approx(-1 / 200, abs=1e-4)


def test_zero_init_is_identical_across_seeds_and_he_is_not():
    nets = {}
    for scheme in ("zero", "he"):
        for seed in (0, 1):
            torch.manual_seed(seed)
            nets[scheme, seed] = residual_mlp(3, width=32, in_features=40)[0]
            wi.init(nets[scheme, seed], scheme, seed=seed)
    pairs = {s: list(zip(nets[s, 0].parameters(), nets[s, 1].parameters())) for s in ("zero", "he")}
    assert all(torch.equal(a, b) for a, b in pairs["zero"])
    assert not all(torch.equal(a, b) for a, b in pairs["he"])
    for block in list(nets["zero", 0])[1:-1]:  # the residual branches start at 0
        assert block.fc2.weight.abs().sum() == 0


def test_quick_run_shows_each_effect(quick):
    data = quick("structured").outcome.data
    corr = data["correlation"]
    assert corr["looks-linear CReLU"][0] > 0.99
    assert corr["ReLU, 50 layers"][0] < 0.3
    assert corr["ReLU, 2 layers"][0] > 0.8
    sat, unit = data["saturation"], data["unit_correlation"]
    assert sat["sparse k=15"][0] < 0.75 * sat["dense N(0,1)"][0]
    assert unit["sparse k=15"][0] < 0.75 * unit["dense N(0,1/fan_in)"][0]
    drift, theory = data["drift"], data["drift_theory"]
    for key in drift:  # the measured drift is the chi-square prediction, within sampling noise
        assert drift[key][0] == pytest.approx(theory[key], abs=0.03)
    assert drift["relu, He"][0] < -0.05 and abs(drift["relu, random walk"][0]) < 0.03
    assert data["identical"]["zero"] == 0 < data["identical"]["he"]
    assert data["accuracy"]["zero"][0] > 0.3  # ZerO trains (chance is 10%)
