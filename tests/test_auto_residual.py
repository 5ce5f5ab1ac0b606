"""Residual streams under "auto" (option ``residual``): the stream's variance against the formulas
of :class:`weightinit.scheme.auto.Residual`, measured on residual MLPs without normalization
(``zoo.residual_mlp``: an input Linear, L blocks x + fc2(relu(fc1(x))), a head).

With zero-mean weights the branches are uncorrelated with the stream in expectation over the
weights, so Var(x_L) / Var(x_0) is 1 + L ("unit": every branch output at the target 1, the
stream starting at it) or (1 + 1/L)^L < e ("stable"); one network's drawn weights deviate from
it (the stream and a branch correlate by O(1/sqrt(width)) in each block), so each check
averages over several seeds and allows four standard errors of that mean, the standard error
estimated from the seeds' spread.
"""

from __future__ import annotations

import math
import statistics

import pytest
import torch

import weightinit as wi
from weightinit import zoo


@pytest.fixture(autouse=True)
def _one_thread():
    """Width-64 layers gain nothing from a second thread, and on a busy machine lose much."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _ratios(depth: int, residual: str, seeds: int) -> list[float]:
    """Var(x_L) / Var(x_0) (the head's input over the input layer's output) of one network
    per seed, on its own Gaussian batch ("auto" as it comes: with its stabilizing sweep)."""
    found = []
    for seed in range(seeds):
        net, x = zoo.residual_mlp(depth, width=64, in_features=64, batch=256, seed=seed)
        wi.init(net, "auto", example_input=x, seed=seed, residual=residual)
        with torch.no_grad():
            found.append(float(net[:-1](x).var() / net[0](x).var()))
    return found


def _mean_and_error(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) / math.sqrt(len(values))


@pytest.mark.parametrize(("depth", "seeds"), [(50, 6), (200, 4)])
def test_stable_keeps_the_stream_below_e_times_its_start(depth, seeds):
    bound = (1 + 1 / depth) ** depth  # Var(x_L) / Var(x_0), exact in expectation
    assert bound < math.e
    mean, error = _mean_and_error(_ratios(depth, "stable", seeds))
    assert abs(mean - bound) <= 4 * error, (mean, error, bound)
    assert mean <= bound + 4 * error < math.e + 4 * error
    # against "unit" at the same depth (1 + L): an order of magnitude apart
    assert mean < (1 + depth) / 10


def test_unit_stream_grows_as_sqrt_depth():
    depth = 50
    mean, error = _mean_and_error(_ratios(depth, "unit", 6))
    assert abs(mean - (1 + depth)) <= 4 * error, (mean, error)
    # the std ratio, sqrt(1 + L): 7.1 at 50 blocks
    assert abs(math.sqrt(mean) - math.sqrt(1 + depth)) <= 4 * error / (2 * math.sqrt(1 + depth))


def test_zero_makes_every_block_the_identity():
    net, x = zoo.residual_mlp(20, width=32, in_features=16, batch=64)
    plan = wi.init(net, "auto", example_input=x, seed=0, residual="zero")
    with torch.no_grad():
        x0 = net[0](x)
        assert torch.equal(net[:-1](x), x0)  # exactly: every branch adds 0
        assert abs(float(x0.std()) - 1) < 0.1  # the stream still starts at unit variance
    assert plan["3.fc2.weight"].init == "zeros"
    assert "residual='zero'" in plan["3.fc2.weight"].reason
    assert plan.notes["residual"] == {
        "rule": "zero", "branches": 20, "outputs": [f"{k}.fc2" for k in range(1, 21)]
    }  # fmt: skip
    # the branches learn from the first step: fc2's gradient is not 0
    net(x).square().mean().backward()
    assert net[3].fc2.weight.grad.abs().sum() > 0


def test_stable_plan_draws_the_same_values_again():
    """The sweep leaves the branches' output layers out and draws them last: applying the plan
    again, or its JSON, writes exactly what was calibrated."""
    net, x = zoo.residual_mlp(4, width=16, in_features=8, batch=64)
    plan = wi.plan(net, "auto", example_input=x, seed=3, residual="stable")
    assert [r.name for r in plan.rows][-4:] == [f"{k}.fc2.weight" for k in range(1, 5)]
    assert {c["layer"] for c in plan.calibration}.isdisjoint({f"{k}.fc2" for k in range(1, 5)})
    assert plan["1.fc2.weight"].scale is None
    # block 2's fc2 gets Var(stream) / L: the stream after block 1 is 1 + 1/4
    assert "Var(stream) 1.25 / L 4" in plan["2.fc2.weight"].reason
    plan.apply(net)
    first = {k: v.clone() for k, v in net.state_dict().items()}
    for again in (plan, wi.Plan.from_json(plan.to_json())):
        again.apply(net)
        assert all(torch.equal(first[k], v) for k, v in net.state_dict().items())


def test_stable_leaves_a_parametrized_output_layer_out_of_the_sweep():
    net, x = zoo.residual_mlp(3, width=16, in_features=8, batch=64)
    for block in net[1:-1]:
        torch.nn.utils.parametrizations.weight_norm(block.fc2)
    plan = wi.plan(net, "auto", example_input=x, seed=0, residual="stable")
    held = [r for r in plan.rows if ".fc2.parametrizations." in r.name]
    assert len(held) == 6 and plan.rows[-6:] == held  # g and v of each, drawn last
    assert all(r.scale is None for r in held)
    assert "Var(stream) 1.33 / L 3" in plan["2.fc2.parametrizations.weight.original1"].reason


def test_stable_on_the_meta_device_calibrates_to_the_same_values():
    """Planned without memory, the analytic plan keeps which layers to leave out of the sweep
    in its notes; calibrated once the model is materialized, it writes what a plan of the
    materialized model writes."""
    net, x = zoo.residual_mlp(4, width=16, in_features=8, batch=64)
    with torch.device("meta"):
        meta, _ = zoo.residual_mlp(4, width=16, in_features=8, batch=64)
    plan = wi.plan(meta, "auto", example_input=x, seed=3, residual="stable")
    assert plan.pending_calibration
    meta = meta.to_empty(device="cpu")
    wi.calibrate(plan, meta, example_input=x).apply(meta)
    wi.plan(net, "auto", example_input=x, seed=3, residual="stable").apply(net)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(),
                                                 meta.state_dict().values()))  # fmt: skip


def test_stable_scales_attention_and_feed_forward_outputs():
    net, x = zoo.transformer_encoder(2, d_model=16, seq=6, batch=8)
    plan = wi.plan(net, "auto", example_input=x, seed=0, residual="stable")
    assert plan.notes["residual"]["outputs"] == [
        "1.self_attn.out_proj", "1.linear2", "2.self_attn.out_proj", "2.linear2"
    ]  # fmt: skip
    assert "Var(stream) 1 / L 4" in plan["1.self_attn.out_proj.weight"].reason


def test_a_bad_residual_option_names_the_choices_and_changes_nothing():
    net, x = zoo.residual_mlp(2, width=8, in_features=4, batch=8)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match=r"option `residual` must be one of 'unit', 'stable', "
                       r"'zero', got 'bounded'") as err:  # fmt: skip
        wi.init(net, "auto", example_input=x, residual="bounded")
    assert "'auto'" in str(err.value)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_a_branch_ending_in_a_norm_is_an_error_under_stable():
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.norm = torch.nn.Linear(8, 8), torch.nn.LayerNorm(8)

        def forward(self, x):
            return x + self.norm(self.fc(x))

    net = torch.nn.Sequential(torch.nn.Linear(4, 8), Block(), Block())
    x = torch.randn(16, 4)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match=r"passes 1\.norm after '1\.fc'.*residual='unit'"):
        wi.init(net, "auto", example_input=x, residual="stable")
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    wi.plan(net, "auto", example_input=x)  # "unit" (the default) plans it
