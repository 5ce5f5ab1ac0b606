"""The meta-device flow: build on the meta device, plan (no memory), ``to_empty``, apply.
``to_empty`` unties tied parameters and leaves every buffer uninitialized; apply ties again
what the plan saw tied, resets norm layers' running statistics, and names what it cannot
set (a buffer it cannot compute, a parameter the plan has no row for)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import weightinit as wi


class TiedLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.norm = nn.BatchNorm1d(8)
        self.head = nn.Linear(8, 20, bias=False)
        self.head.weight = self.embed.weight
        self.register_buffer("table", torch.arange(8.0), persistent=False)

    def forward(self, ids):
        return self.head(self.norm(self.embed(ids) + self.table))


def applied(model: nn.Module, plan: wi.Plan) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan.apply(model)
    return [str(w.message) for w in caught]


def test_apply_reties_resets_running_statistics_and_names_what_it_cannot_set():
    with torch.device("meta"):
        model = TiedLM()
    plan = wi.plan(model, "he", seed=0)
    meta = ["table", "norm.running_mean", "norm.running_var", "norm.num_batches_tracked"]
    assert plan.notes["meta_buffers"] == meta  # named_buffers' order
    model.to_empty(device="cpu")
    assert model.head.weight is not model.embed.weight  # what to_empty does
    with torch.no_grad():
        model.norm.running_var.fill_(-7.0)  # whatever memory held
    said = applied(model, plan)
    assert model.head.weight is model.embed.weight
    assert any("head.weight tied again" in s for s in said)
    assert torch.equal(model.norm.running_mean, torch.zeros(8))
    assert torch.equal(model.norm.running_var, torch.ones(8))  # as a freshly built layer
    assert any("uninitialized" in s and "table" in s and "norm" not in s for s in said), said
    eager = TiedLM()
    wi.init(eager, "he", seed=0)
    assert torch.equal(eager.embed.weight, model.embed.weight)


def test_a_parameter_the_plan_has_no_row_for_is_named():
    model = nn.Sequential(nn.Linear(4, 4))
    plan = wi.plan(model, "he")
    model.append(nn.Linear(4, 2))  # added after planning
    before = model[1].weight.detach().clone()
    said = applied(model, plan)
    assert any("no row in this plan" in s and "1.weight" in s for s in said), said
    assert torch.equal(model[1].weight, before)


def test_nothing_to_say_when_nothing_was_on_meta():
    model = TiedLM()
    plan = wi.plan(model, "he", seed=0)
    assert "meta_buffers" not in plan.notes
    assert applied(model, plan) == []
    assert model.head.weight is model.embed.weight


@pytest.mark.parametrize("scheme", ["he", "orthogonal", "torch"])
def test_the_meta_flow_gives_the_eager_values(scheme):
    eager = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.BatchNorm1d(8), nn.Linear(8, 3))
    wi.init(eager, scheme, seed=3)
    with torch.device("meta"):
        lazy = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.BatchNorm1d(8), nn.Linear(8, 3))
    plan = wi.plan(lazy, scheme, seed=3)
    lazy.to_empty(device="cpu")
    assert applied(lazy, plan) == []
    for (n, a), (_, b) in zip(eager.state_dict().items(), lazy.state_dict().items()):
        assert torch.equal(a, b), n


class Pair(nn.Module):
    def __init__(self, order: str):
        super().__init__()
        for name in order:
            setattr(self, name, nn.Linear(8, 8))

    def forward(self, x):
        return self.a(self.b(x))


@pytest.mark.parametrize("scheme", ["he", "torch", "orthogonal", "gpt2"])
def test_counter_based_draws_do_not_depend_on_the_registration_order(scheme):
    """rng='philox-v1' keys each parameter by its name: two modules registered in the other
    order get the same values; torch's generator, drawing row after row, swaps them."""
    first, second = Pair("ab"), Pair("ba")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the presets' note on a model without blocks
        for model in (first, second):
            wi.init(model, scheme, seed=0, rng="philox-v1")
    for name, param in first.named_parameters():
        assert torch.equal(param, second.get_parameter(name)), name
    torch_first, torch_second = Pair("ab"), Pair("ba")
    wi.init(torch_first, "he", seed=0)
    wi.init(torch_second, "he", seed=0)
    assert not torch.equal(torch_first.a.weight, torch_second.a.weight)


def test_counter_based_values_are_the_generators_draws_of_the_name():
    from weightinit.initializers import counter

    model = nn.Linear(6, 4)
    plan = wi.init(model, "torch", seed=5, rng="philox-v1")  # U(-1/sqrt(6), 1/sqrt(6))
    low, high = plan["weight"].args["a"], plan["weight"].args["b"]
    want = counter.uniform(counter.philox_key(5, "weight"), range(24), low, high)
    assert torch.equal(model.weight.detach().view(-1), want)


def test_counter_based_draws_refuse_what_they_cannot_key():
    model = nn.Linear(4, 4)
    plan = wi.plan(model, "he")
    with pytest.raises(ValueError, match="keyed by the seed: pass seed="):
        plan.apply(model, rng="philox-v1")
    with pytest.raises(ValueError, match="`rng` must be one of 'torch', 'philox-v1'"):
        plan.apply(model, seed=0, rng="philox")
    lsuv = wi.plan(model, "lsuv", data=torch.randn(32, 4), seed=0)
    with pytest.raises(ValueError, match="calibrated on values drawn by torch"):
        lsuv.apply(model, rng="philox-v1", seed=0)
