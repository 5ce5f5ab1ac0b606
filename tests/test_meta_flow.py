"""The meta-device flow: build on the meta device, plan (no memory), ``to_empty``, apply.
``to_empty`` unties tied parameters and leaves every buffer uninitialized; apply ties again
what the plan saw tied, resets norm layers' running statistics, and names what it cannot
set (a buffer it cannot compute, a parameter the plan has no row for)."""

from __future__ import annotations

import json
import math
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


@pytest.mark.parametrize("scheme", ["he", "orthogonal", "gpt2", "lsuv"])
def test_seeded_draws_do_not_depend_on_the_registration_order(scheme):
    """seed= keys each parameter by its name ("philox-v1"): two modules registered in the other
    order get the same values; torch's generator, drawn row after row (rng="torch", and the
    "torch" scheme, which reproduces reset_parameters), swaps them."""
    first, second = Pair("ab"), Pair("ba")
    data = {"data": torch.randn(64, 8)} if scheme == "lsuv" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the presets' note on a model without blocks
        for model in (first, second):
            assert wi.init(model, scheme, seed=0, **data).rng == "philox-v1"
    for name, param in first.named_parameters():
        assert torch.equal(param, second.get_parameter(name)), name
    for how in ({"scheme": "he", "rng": "torch"}, {"scheme": "torch"}):
        torch_first, torch_second = Pair("ab"), Pair("ba")
        assert wi.init(torch_first, **how, seed=0).rng == "torch"
        wi.init(torch_second, **how, seed=0)
        assert not torch.equal(torch_first.a.weight, torch_second.a.weight), how


def test_seeded_values_are_the_keyed_generators_draws_of_the_name():
    from weightinit.initializers import counter

    model = nn.Linear(6, 4)
    plan = wi.init(model, "glorot", seed=5)  # U(-b, b), b = sqrt(6 / (6 + 4))
    bound = plan["weight"].bound
    assert bound == pytest.approx(math.sqrt(6 / 10))
    want = counter.uniform(counter.philox_key(5, "weight"), range(24), -bound, bound)
    assert torch.equal(model.weight.detach().view(-1), want)


def test_rng_torch_is_a_torch_generator_seeded_once_and_so_is_generator():
    """rng="torch" with seed=s draws exactly what generator=torch.Generator().manual_seed(s)
    draws from a keyed plan: torch's generator, row after row, as seed= did before."""
    first, second, third = nn.Linear(5, 7), nn.Linear(5, 7), nn.Linear(5, 7)
    wi.init(first, "he", seed=3, rng="torch")
    plan = wi.plan(second, "he")
    assert plan.rng == "philox-v1"
    plan.apply(second, generator=torch.Generator().manual_seed(3))
    std = math.sqrt(1 / 5)  # He, gain 1: nothing follows the layer
    assert plan["weight"].std == pytest.approx(std)
    want = torch.empty(7, 5).normal_(0, std, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first.weight, second.weight)
    assert torch.equal(first.weight.detach(), want)
    wi.init(third, "he", seed=3)  # keyed: other values
    assert not torch.equal(third.weight, first.weight)


def test_the_plan_records_its_generator_in_json():
    model = nn.Linear(4, 4)
    keyed, old = wi.plan(model, "he", seed=0), wi.plan(model, "he", seed=0, rng="torch")
    for plan in (keyed, old):
        assert json.loads(plan.to_json())["rng"] == plan.rng
        assert wi.Plan.from_json(plan.to_json()) == plan
    written_before = json.loads(keyed.to_json())
    del written_before["rng"]  # JSON of a plan written before rng was recorded: torch's draws
    assert wi.Plan.from_json(json.dumps(written_before)).rng == "torch"
    a, b = nn.Linear(4, 4), nn.Linear(4, 4)
    wi.Plan.from_json(json.dumps(written_before)).apply(a)
    old.apply(b)
    assert torch.equal(a.weight, b.weight)
    with pytest.raises(ValueError, match="key 'rng' must be one of 'torch', 'philox-v1'"):
        wi.Plan.from_json(json.dumps({**written_before, "rng": "philox"}))


def test_a_bad_rng_is_refused_before_anything_is_written():
    model = nn.Linear(4, 4)
    before = model.weight.detach().clone()
    with pytest.raises(ValueError, match="`rng` must be one of 'torch', 'philox-v1'"):
        wi.init(model, "he", seed=0, rng="philox")
    with pytest.raises(ValueError, match="scheme 'torch' draws from the 'torch' generator only"):
        wi.init(model, "torch", seed=0, rng="philox-v1")
    assert torch.equal(model.weight, before)


@pytest.mark.parametrize("rng", ["philox-v1", "torch"])
def test_a_calibrated_plan_applies_what_it_calibrated_with_its_generator(rng):
    model, batch = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4)), torch.randn(64, 8)
    plan = wi.plan(model, "lsuv", data=batch, seed=1, rng=rng)
    assert plan.rng == rng
    for _ in range(2):  # the computed values, then drawn again from the plan's seed and rng
        plan.apply(model)
        with torch.no_grad():
            assert model[:1](batch).std().item() == pytest.approx(1.0, abs=1e-4)
            assert model(batch).std().item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("wrap", ["compile", "checkpoint"])
def test_a_wrapped_block_gets_the_values_of_the_unwrapped_one(wrap):
    """The key is the canonical name: a compiled block's ``_orig_mod.`` or a checkpointed one's
    ``_checkpoint_wrapped_module.`` is not part of it."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    from weightinit.understanding.knowledge import canonical_name

    plain = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
    wrapped = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
    if wrap == "compile":
        wrapped[2] = torch.compile(wrapped[2])
    else:
        wrapped[0] = checkpoint_wrapper(wrapped[0])
    x = torch.randn(4, 8)
    for model in (plain, wrapped):
        wi.init(model, "he", seed=0, example_input=x)
    names = [n for n, _ in wrapped.named_parameters()]
    assert any("_orig_mod" in n or "_checkpoint_wrapped_module" in n for n in names)
    for name, param in wrapped.named_parameters():
        assert torch.equal(param, plain.get_parameter(canonical_name(name))), name
