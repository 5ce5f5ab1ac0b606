"""Diagnostics against known answers, and the promise that diagnosing changes nothing."""

import math
import warnings

import pytest
import torch
from torch import nn

import weightinit as wi


def mlp(depth, width, act, *, out=10, bias=True):
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width, bias=bias), act()]
    return nn.Sequential(*layers, nn.Linear(width, out, bias=bias))


def deep_linear(depth=20, width=32):
    net = nn.Sequential(*[nn.Linear(width, width) for _ in range(depth)])
    wi.init(net, "orthogonal", seed=0)
    return net


def test_deep_linear_orthogonal_net_is_an_exact_isometry():
    report = wi.diagnose(
        deep_linear(), torch.randn(16, 32, generator=torch.Generator().manual_seed(0))
    )
    assert report.jacobian == "exact" and len(report.singular_values) == 32
    assert max(abs(s - 1) for s in report.singular_values) < 1e-4
    assert report.verdict == "healthy"
    assert all(abs(layer.std_ratio - 1) < 0.5 for layer in report.layers)


def test_estimated_singular_values_of_an_isometry_are_one():
    """Rademacher probes measure |J v|^2 = |v|^2 = n exactly for orthogonal J, and Lanczos on
    J^T J = I finds the eigenvalue 1 at once."""
    report = wi.diagnose(deep_linear(), torch.randn(4, 32), exact_limit=0)
    assert report.jacobian == "estimated"
    assert report.singular_values == pytest.approx([1.0, 1.0, 1.0], abs=1e-4)


def test_the_jacobian_is_estimated_when_its_exact_cost_is_large_and_exact_when_small():
    """The switch is by cost (outputs x one backward pass, and the SVD), not by size: a 1000-way
    head on a small conv net makes 1000 backward passes through a 16 M multiply-add layer,
    though both sides of its Jacobian (3072 x 1000) are within ``exact_limit``."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    conv = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 32 * 32, 1000)
    )
    report = wi.diagnose(conv, torch.randn(8, 3, 32, 32, generator=gen))
    assert report.jacobian_summary["how"] == "estimated" and len(report.singular_values) == 3
    small = wi.diagnose(mlp(2, 16, nn.ReLU), torch.randn(8, 16, generator=gen))
    assert small.jacobian_summary["how"] == "exact" and len(small.singular_values) == 10


def test_jacobian_method_weighs_the_exact_cost_against_the_estimate():
    method = wi.diagnostics.jacobian_method
    # few outputs of a large net: 10 backward passes are over the fixed limit but cheaper than
    # 8 probes of the estimate, about 80 passes
    assert method(d_in=3 * 64 * 64, d_out=10, work=3e8) == "exact"
    # 1000 outputs of the same net: 1000 passes against 80
    assert method(d_in=3 * 64 * 64, d_out=1000, work=3e8) == "estimated"
    # a cheap net with 1000 outputs: under EXACT_COST_LIMIT, exact
    assert method(d_in=64, d_out=1000, work=1e5) == "exact"
    # a 200-layer, width-256 MLP (about 2.5e7 per pass with the per-call cost): 6.4e9, exact
    # although the estimate is cheaper (test_critical judges its exact spectrum)
    assert method(d_in=256, d_out=256, work=2.5e7) == "exact"
    # the MobileNet-size CNN of bench_diagnose (1000 classes): 6e10, estimated
    assert method(d_in=3 * 64 * 64, d_out=1000, work=6e7) == "estimated"
    # exact_limit still caps the smaller side; a Jacobian over 16 M entries is never formed
    assert method(d_in=64, d_out=1000, work=1e5, exact_limit=63) == "estimated"
    assert method(d_in=5000, d_out=4000, work=1.0) == "estimated"


def test_estimators_agree_with_the_exact_jacobian_on_a_small_net():
    net = mlp(4, 12, nn.Tanh, out=12)
    x = torch.randn(3, 12, generator=torch.Generator().manual_seed(1))
    exact, how = wi.diagnostics.jacobian_singular_values(net, (x,))
    assert how == "exact"
    probes = 400
    est, how = wi.diagnostics.jacobian_singular_values(net, (x,), probes=probes, exact_limit=0)
    assert how == "estimated"
    # Lanczos with as many steps as dimensions is exact for the extremes
    assert est[0] == pytest.approx(max(exact), rel=1e-6)
    # through J^T J in float32, sigma_min resolves only to about sqrt(eps) * sigma_max
    assert abs(est[2] - min(exact)) < 2 * math.sqrt(torch.finfo(torch.float32).eps) * max(exact)
    # Hutchinson with Rademacher probes: Var = 2 sum_{i != j} A_ij^2, A = J^T J
    jac = torch.autograd.functional.jacobian(lambda v: net(v.reshape(1, -1)).reshape(-1), x[0])
    a = (jac.T @ jac).double()
    var = 2 * (a.pow(2).sum() - a.diagonal().pow(2).sum()).item()
    n = 12
    exact_ms = sum(s * s for s in exact) / n
    assert abs(est[1] ** 2 - exact_ms) < 5 * math.sqrt(var / probes) / n


def test_he_relu_mlp_keeps_layer_stds_in_a_band():
    """Documented band: every layer's output std within [0.5, 2] x the first's, for 30 layers of
    width 256 (finite-width fluctuations grow like sqrt(depth / width))."""
    net = mlp(30, 256, nn.ReLU)
    wi.init(net, "he", seed=0)
    report = wi.diagnose(net, torch.randn(128, 256, generator=torch.Generator().manual_seed(0)))
    assert report.verdict == "healthy"
    assert all(0.5 <= layer.std_ratio <= 2.0 for layer in report.layers[:-1])


def test_torch_default_deep_tanh_mlp_collapses():
    torch.manual_seed(0)
    report = wi.diagnose(mlp(50, 64, nn.Tanh), torch.randn(64, 64))
    assert report.verdict == "collapsed"
    assert report.output_cosine > 0.99 and report.input_cosine < 0.1


def test_relu_net_with_large_negative_bias_has_dead_units():
    net = mlp(10, 64, nn.ReLU)
    wi.init(net, "he", seed=0, bias=-5.0)
    report = wi.diagnose(net, torch.randn(64, 64))
    assert report.verdict == "dead"
    assert all(layer.dead == 1.0 for layer in report.layers[1:-1])


def test_saturated_tanh_is_reported():
    net = mlp(5, 64, nn.Tanh)
    wi.init(net, "he", seed=0, distribution="normal")
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                m.weight.mul_(20)
    report = wi.diagnose(net, torch.randn(64, 64))
    assert report.verdict == "saturated"


def test_exploding_is_reported():
    net = nn.Sequential(*[nn.Linear(32, 32, bias=False) for _ in range(10)])
    wi.init(net, "lecun", seed=0)
    with torch.no_grad():
        for m in net:
            m.weight.mul_(3)
    assert wi.diagnose(net, torch.randn(8, 32)).verdict == "exploding"


def test_a_module_called_twice_gives_two_rows():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(8, 8)

        def forward(self, x):
            return self.lin(torch.relu(self.lin(x)))

    report = wi.diagnose(Twice(), torch.randn(8, 8))
    assert [layer.name for layer in report.layers] == ["lin", "lin"]


def test_targets_and_loss():
    net = mlp(2, 8, nn.ReLU, out=3)
    report = wi.diagnose(net, torch.randn(16, 8), targets=torch.randint(0, 3, (16,)))
    assert report.loss == "cross_entropy"
    assert all(layer.weight_grad_std is not None for layer in report.layers)


def test_diagnosing_changes_nothing():
    net = mlp(3, 8, nn.ReLU)
    net.append(nn.BatchNorm1d(10))
    net[0].weight.requires_grad_(False)
    net.eval()
    net[2].train()
    net[2].weight.grad = torch.ones_like(net[2].weight)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(16, 8)
    state = torch.random.get_rng_state()
    wi.diagnose(net, x)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert not net[0].weight.requires_grad and net[2].weight.requires_grad
    assert (
        torch.equal(net[2].weight.grad, torch.ones_like(net[2].weight))
        and net[4].weight.grad is None
    )
    assert not net.training and net[2].training and not net[0].training
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())


def test_report_table_and_json():
    import json

    report = wi.diagnose(deep_linear(depth=3), torch.randn(4, 32))
    text = str(report)
    assert "verdict: healthy" in text and "Jacobian singular values (exact)" in text
    data = json.loads(report.to_json())
    assert data["verdict"] == "healthy" and len(data["layers"]) == 3
    assert set(data["thresholds"]) == set(wi.diagnostics.THRESHOLDS)


def test_bad_inputs():
    net = mlp(2, 8, nn.ReLU)
    with pytest.raises(ValueError, match="NaN or inf"):
        wi.diagnose(net, torch.full((2, 8), float("nan")))
    with pytest.raises(ValueError, match=r"failed on inputs of shape \[\(2, 5\)\]"):
        wi.diagnose(net, torch.randn(2, 5))
    with pytest.raises(ValueError, match="no weighted layers"):
        wi.diagnose(nn.Sequential(nn.ReLU()), torch.randn(2, 8))

    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(8, 8)

        def forward(self, x):
            return x * 2

    with pytest.raises(ValueError, match="no weighted layer ran"):
        wi.diagnose(Unused(), torch.randn(2, 8))
    with pytest.raises(ValueError, match="names no weighted module"):
        wi.diagnose(net, torch.randn(2, 8), layers=["nope"])

    class Dict(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(8, 2)

        def forward(self, x):
            return {"logits": self.lin(x)}

    with pytest.raises(ValueError, match="output_fn"):
        wi.diagnose(Dict(), torch.randn(2, 8))
    report = wi.diagnose(Dict(), torch.randn(2, 8), output_fn=lambda out: out["logits"])
    assert report.layers[0].name == "lin"


def test_parametrized_layers_are_diagnosed_as_themselves():
    from torch.nn.utils import parametrizations as P

    net = nn.Sequential(P.weight_norm(nn.Linear(8, 8)), nn.ReLU(), P.spectral_norm(nn.Linear(8, 2)))
    report = wi.diagnose(net, torch.randn(8, 8))
    assert [layer.name for layer in report.layers] == ["0", "2"]
    assert report.layers[0].activation == "relu"


def diagonal(values: torch.Tensor) -> nn.Module:
    """A layer whose Jacobian is diag(values): its singular values are |values|."""
    layer = nn.Linear(len(values), len(values), bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.diag(values))
    return nn.Sequential(layer)


@pytest.mark.parametrize("exact_limit", [4096, 0])
def test_json_carries_the_jacobian_summary_the_report_prints(exact_limit):
    """Oracle: the singular values of diag(d) are |d|. Rademacher probes v give
    |J v|^2 = sum d_i^2 exactly for a diagonal J, so the estimated mean square is exact too."""
    import json

    d = torch.linspace(0.5, 2.0, 16)
    report = wi.diagnose(diagonal(d), torch.randn(8, 16), exact_limit=exact_limit)
    summary = json.loads(report.to_json())["jacobian_summary"]
    assert summary["how"] == report.jacobian == ("exact" if exact_limit else "estimated")
    assert summary["mean_square"] == pytest.approx(d.double().pow(2).mean().item(), rel=1e-6)
    if exact_limit:
        assert summary["max"] == pytest.approx(2.0, rel=1e-6)
        assert summary["min"] == pytest.approx(0.5, rel=1e-6)
    line = (
        f"Jacobian singular values ({summary['how']}): max {summary['max']:.3g}, "
        f"mean-square {summary['mean_square']:.3g}, min {summary['min']:.3g}"
    )
    assert line in str(report)
    assert json.loads(wi.Comparison(net=report).to_json())["net"]["jacobian_summary"] == summary


def test_no_jacobian_no_summary():
    import json

    net = nn.Sequential(nn.Embedding(10, 8), nn.Linear(8, 2))
    report = wi.diagnose(net, torch.randint(0, 10, (8, 3)))
    assert report.singular_values == [] and json.loads(report.to_json())["jacobian_summary"] is None
    assert "Jacobian" not in str(report)


def test_an_integer_parameter_is_left_alone():
    net = mlp(2, 8, nn.ReLU)
    steps = nn.Parameter(torch.arange(3), requires_grad=False)
    net[0].register_parameter("steps", steps)
    report = wi.diagnose(net, torch.randn(16, 8))
    assert [layer.name for layer in report.layers] == ["0", "2", "4"]
    assert net[0].steps is steps and torch.equal(steps, torch.arange(3))
    assert not steps.requires_grad and steps.grad is None


@pytest.mark.parametrize("batch", [1, 2, 4])
def test_a_healthy_relu_unit_looks_dead_on_a_small_batch_at_rate_two_to_the_minus_n(batch):
    """The reasoning behind DEAD_MIN_SAMPLES: a first-layer unit with symmetric pre-activations
    is never positive on n nearly orthogonal inputs with probability 2^-n. 4096 units: the
    fraction is within 5 binomial standard errors of 2^-n (plus the inputs' small overlaps,
    |cos| ~ 1/sqrt(1024), which move an orthant probability by about |cos| / (2 pi))."""
    gen = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(1024, 4096, bias=False), nn.ReLU(), nn.Linear(4096, 1))
    wi.init(net, "he", seed=0)
    x = torch.randn(batch, 1024, generator=gen)
    with pytest.warns(UserWarning, match=f"at least {wi.diagnostics.DEAD_MIN_SAMPLES} inputs"):
        report = wi.diagnose(net, x, exact_limit=0, probes=1)
    p, units = 2.0**-batch, 4096
    tolerance = 5 * math.sqrt(p * (1 - p) / units) + batch**2 / math.sqrt(1024) / (2 * math.pi)
    assert abs(report.layers[0].dead - p) < tolerance


def test_a_healthy_he_relu_mlp_is_not_called_dead_from_min_samples_on():
    net = mlp(4, 256, nn.ReLU)
    wi.init(net, "he", seed=0)
    x = torch.randn(
        wi.diagnostics.DEAD_MIN_SAMPLES, 256, generator=torch.Generator().manual_seed(0)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = wi.diagnose(net, x)
    assert report.verdict == "healthy"
    # the first layer at rate 2^-8 (5 binomial standard errors over 256 units); deeper layers
    # more (their values over the batch are correlated), far below the verdict's 1/2
    p = 2.0**-wi.diagnostics.DEAD_MIN_SAMPLES
    assert report.layers[0].dead < p + 5 * math.sqrt(p / 256)
    with pytest.warns(UserWarning, match=r"measured on 1 value\(s\) per unit .* \(50% here\)"):
        wi.diagnose(net, x[:1])


def test_dead_units_are_the_features_of_a_sequence_and_the_channels_of_a_conv():
    """Half the units get a bias of -1000 (dead), half +1000 (alive): 50% dead, whatever the
    number of positions."""
    signs = torch.tensor([-1.0, 1.0]).repeat_interleave(4)
    lin = nn.Linear(8, 8)
    conv = nn.Conv1d(3, 8, 1)
    for layer in (lin, conv):
        with torch.no_grad():
            layer.weight.mul_(1e-3)
            layer.bias.copy_(1e3 * signs)
    sequence = wi.diagnose(nn.Sequential(lin, nn.ReLU(), nn.Linear(8, 1)), torch.randn(8, 10, 8))
    assert sequence.layers[0].dead == 0.5
    channels = wi.diagnose(
        nn.Sequential(conv, nn.ReLU(), nn.Conv1d(8, 1, 1)), torch.randn(8, 3, 10)
    )
    assert channels.layers[0].dead == 0.5


@pytest.mark.parametrize("seed", ["0", 1.5, -1])
def test_diagnose_names_a_bad_seed(seed):
    with pytest.raises((TypeError, ValueError), match=r"^diagnose: `seed` must be"):
        wi.diagnose(mlp(2, 8, nn.ReLU), torch.randn(8, 8), seed=seed)
