"""Structured recipes: "looks_linear" (Balduzzi et al. 2017), "sparse" (Martens 2010) and
"random_walk" (Sussillo & Abbott 2014)."""

import math

import pytest
import torch
from torch import nn

import weightinit as wi
from weightinit.modules import CReLU
from weightinit.recipes import SparseOptions, crelu_fed
from weightinit.understanding.graph import trace

torch.set_num_threads(1)

# --- looks-linear ------------------------------------------------------------------------------


def _crelu_net(d: int, depth: int, out: int) -> nn.Sequential:
    layers = [nn.Linear(d, d)]
    for _ in range(depth):
        layers += [CReLU(), nn.Dropout(0.0), nn.Linear(2 * d, d)]
    layers += [CReLU(), nn.Linear(2 * d, out)]
    return nn.Sequential(*layers).double()


def _relu_net(d: int, depth: int) -> nn.Sequential:
    layers = [nn.Linear(d, d)]
    for _ in range(depth):
        layers += [nn.ReLU(), nn.Linear(d, d)]
    layers += [nn.ReLU(), nn.Linear(d, 1)]
    return nn.Sequential(*layers).double()


def test_looks_linear_deep_crelu_net_is_an_orthogonal_linear_map_at_init():
    d = 12
    net = _crelu_net(d, depth=20, out=d)
    plan = wi.init(net, "looks_linear", seed=0)
    fed = [str(3 * i + 3) for i in range(20)] + [str(3 * 20 + 2)]  # every Linear after a CReLU
    assert plan.notes["looks_linear_layers"] == fed
    assert all(plan[f"{name}.weight"].init == "looks_linear" for name in fed)
    assert plan["0.weight"].init == "orthogonal" and plan["0.bias"].init == "zeros"
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(2, 7, d, dtype=torch.float64, generator=g)
    a, b = 0.7, -2.3
    with torch.no_grad():
        A = net(torch.eye(d, dtype=torch.float64)).T  # f(e_i) = A e_i: the columns of A
        assert torch.allclose(net(x), x @ A.T, atol=1e-12)  # f(x) = A x
        assert torch.allclose(net(a * x + b * y), a * net(x) + b * net(y), atol=1e-12)
        # a product of square orthogonal matrices: A^T A = I, so norms are kept
        assert torch.allclose(A.T @ A, torch.eye(d, dtype=torch.float64), atol=1e-12)
        assert torch.allclose(net(x).norm(dim=1), x.norm(dim=1), rtol=1e-12)


def _gradient_correlations(net: nn.Module, plan, d: int, seeds: range) -> torch.Tensor:
    """cos(grad f(x), grad f(x')) with |x' - x| = 0.1 |x|, one network draw per seed."""
    found = []
    for seed in seeds:
        plan.apply(net, seed=seed)
        g = torch.Generator().manual_seed(1000 + seed)
        x, u = torch.randn(2, d, dtype=torch.float64, generator=g)
        xs = torch.stack([x, x + 0.1 * x.norm() * u / u.norm()]).requires_grad_()
        net(xs).sum().backward()
        found.append(torch.cosine_similarity(xs.grad[0], xs.grad[1], dim=0))
    return torch.stack(found)


def test_looks_linear_gradients_do_not_shatter_where_he_relu_gradients_decorrelate():
    d, seeds = 16, range(100)
    for depth in (2, 30):
        net = _crelu_net(d, depth, out=1)
        kept = _gradient_correlations(net, wi.plan(net, "looks_linear"), d, seeds)
        assert torch.allclose(kept, torch.ones_like(kept), atol=1e-12)  # a linear map
    # Balduzzi et al.: the gradients of a deep ReLU net at nearby inputs decorrelate with depth
    shallow, deep = (
        _gradient_correlations(net, wi.plan(net, "he"), d, seeds)
        for net in (_relu_net(d, 2), _relu_net(d, 30))
    )
    se = math.sqrt(shallow.var() / len(seeds) + deep.var() / len(seeds))
    assert shallow.mean() - deep.mean() > 3 * se
    assert 1 - deep.mean() > 3 * deep.std() / math.sqrt(len(seeds))


def test_looks_linear_finds_crelu_before_convs_with_both_traces():
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), CReLU(dim=1), nn.Conv2d(8, 4, 3, padding=1),
        CReLU(dim=-3), nn.Conv2d(8, 4, 1),
        CReLU(dim=-1), nn.Conv2d(4, 4, 1),  # concatenates along the width: not the channels
        nn.Flatten(), CReLU(), nn.Linear(2 * 4 * 5 * 10, 2),
    )  # fmt: skip
    x = torch.randn(2, 3, 5, 5)
    for example in (None, x):
        assert crelu_fed(trace(net, example)) == {"2": "1", "4": "3", "9": "8"}
    wi.init(net, "looks_linear", seed=0)
    w = net[2].weight
    assert torch.equal(w[:, :4], -w[:, 4:])


def test_looks_linear_needs_the_crelu_next_to_the_layer():
    # a norm between them breaks [relu(x), relu(-x)] (it shifts the halves differently)
    net = nn.Sequential(nn.Linear(4, 4), CReLU(), nn.LayerNorm(8), nn.Linear(8, 4))
    plan = wi.plan(net, "looks_linear")
    assert plan.notes["looks_linear_layers"] == [] and plan["3.weight"].init == "orthogonal"


# --- sparse --------------------------------------------------------------------------------------


def test_sparse_exactly_k_unit_gaussian_incoming_weights_per_unit():
    net = nn.Sequential(nn.Linear(200, 300), nn.Tanh(), nn.Linear(300, 400), nn.ReLU(),
                        nn.Linear(400, 10), nn.ReLU(), nn.Linear(10, 4))  # fmt: skip
    plan = wi.init(net, "sparse", seed=0)
    values = []
    for name in ("0", "2", "4"):
        w = net.get_submodule(name).weight
        assert (w != 0).sum(dim=1).tolist() == [15] * w.shape[0]
        values.append(w[w != 0])
    conv = nn.Conv1d(10, 6, 3)  # 10 channels x 3 taps = 30 inputs per output unit
    wi.init(conv, "sparse", seed=0)
    assert (conv.weight != 0).reshape(6, -1).sum(dim=1).tolist() == [15] * 6
    v = torch.cat(values)  # Martens: N(0, 1); 5 standard errors of the variance (kurtosis 3)
    assert abs(v.var().item() - 1.0) < 5 * math.sqrt(2 / len(v))
    assert abs(v.mean().item()) < 5 / math.sqrt(len(v))
    assert net[0].bias.eq(0.5).all()  # before tanh: Martens's 0.5
    assert net[2].bias.eq(0).all() and net[4].bias.eq(0).all()
    assert plan.notes == {"k": 15, "k_capped": {"6.weight": 10}}  # 10 inputs: all of them
    assert (net[6].weight != 0).all()


def test_sparse_options():
    net = nn.Sequential(nn.Linear(50, 20), nn.Tanh(), nn.Linear(20, 5))
    wi.init(net, "sparse", k=5, std=0.1, tanh_bias=0.0, seed=0)
    assert (net[0].weight != 0).sum(dim=1).tolist() == [5] * 20
    assert net[0].weight.abs().max() < 0.1 * 6 and net[0].bias.eq(0).all()
    for bad, match in (({"k": 0}, "`k`"), ({"k": 2.5}, "`k`"), ({"std": 0.0}, "`std`"),
                       ({"tanh_bias": float("inf")}, "`tanh_bias`")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            wi.plan(net, "sparse", **bad)
    assert SparseOptions().k == 15


# --- random walk --------------------------------------------------------------------------------


def _log_growth(scheme: str, act, width: int, depth: int, seeds: int) -> torch.Tensor:
    """log(|h_l| / |h_(l-1)|) of every layer (after its activation), for every seed."""
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width)] + ([act()] if act else [])
    net = nn.Sequential(*layers).double()
    plan = wi.plan(net, scheme)
    step = 2 if act else 1
    growth = []
    for seed in range(seeds):
        plan.apply(net, seed=seed)
        g = torch.Generator().manual_seed(10_000 + seed)
        h = torch.randn(1, width, dtype=torch.float64, generator=g)
        norms = [h.norm()]
        with torch.no_grad():
            for i in range(depth):
                h = net[step * i : step * (i + 1)](h)
                norms.append(h.norm())
        logs = torch.stack(norms).log()
        growth.append(logs[1:] - logs[:-1])
    return torch.cat(growth)


def _se(t: torch.Tensor) -> float:
    """The standard error of the mean: layers' growths are independent (a Gaussian W is
    rotation invariant, so |W h| / |h| does not depend on h)."""
    return t.std().item() / math.sqrt(len(t))


@pytest.mark.parametrize(("act", "width", "he_drift"), [
    (nn.ReLU, 32, -1.25 / 32),  # E[log] of a ReLU layer at gain sqrt(2): about -1.25 / N
    (None, 16, -0.5 / 16),  # of a linear layer at gain 1: E[log chi2_N / N] / 2 = about -1 / 2N
])  # fmt: skip
def test_random_walk_log_norm_has_no_drift_where_he_drifts_down(act, width, he_drift):
    walk = _log_growth("random_walk", act, width, depth=40, seeds=100)
    he = _log_growth("he", act, width, depth=40, seeds=100)
    assert abs(walk.mean().item()) < 3 * _se(walk)  # Sussillo & Abbott: an unbiased walk
    assert he.mean().item() < -5 * _se(he)  # He: a downward drift, shrinking as 1 / N
    assert abs(he.mean().item() - he_drift) < 3 * _se(he) + 0.2 * abs(he_drift)


def test_random_walk_gains_per_layer():
    net = nn.Sequential(nn.Linear(10, 100), nn.ReLU(), nn.Linear(100, 50), nn.Tanh(),
                        nn.Linear(50, 5))  # fmt: skip
    plan = wi.plan(net, "random_walk")
    assert plan["0.weight"].args["nonlinearity"] == "relu"
    assert plan["0.weight"].std == pytest.approx(wi.random_walk_gain("relu", 10) / math.sqrt(10))
    assert plan["4.weight"].args["nonlinearity"] == "linear"
    assert plan["4.weight"].std == pytest.approx(math.exp(1 / 100) / math.sqrt(50))
    # tanh: the paper derives g for linear and ReLU layers only; the "he" scheme's weight there
    he = wi.plan(net, "he")["2.weight"]
    assert (plan["2.weight"].init, plan["2.weight"].args) == (he.init, he.args)
