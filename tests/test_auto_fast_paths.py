"""The fast paths behind planning "auto" (issue 14) do what the slow ones did: the sweep's model
copy is a deep copy, cached classifications and statistics equal fresh ones, the garbage
collector comes back, and a correction in place never touches memory someone else holds."""

from __future__ import annotations

import copy
import gc

import pytest
import torch
from torch import nn

import weightinit as wi
from weightinit._gc import collector_paused
from weightinit.frontends.torch.calibration import _copy, lsuv_plan
from weightinit.frontends.torch.propagation import _tensor_stats
from weightinit.plans.plan import SKIP
from weightinit.scheme.auto import Signal, through_activation
from weightinit.understanding.graph import _classify, _is_elementwise, trace


class _Holder(nn.Module):
    """Attributes deepcopy must copy (a list, a dict of tensors, a tuple) next to layers."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.norm = nn.BatchNorm1d(4)
        self.head = nn.Linear(4, 4, bias=False)
        self.head.weight = self.fc.weight  # tied
        self.seen = [1, 2]
        self.table = {"a": torch.arange(3.0)}
        self.size = (4, 4)

    def forward(self, x):
        return self.head(self.norm(self.fc(x)))


def test_the_sweeps_copy_is_a_deep_copy_with_the_planned_parameters_left_to_the_plan():
    torch.manual_seed(0)
    model = _Holder()
    plan = wi.plan(model, "he")
    rows = {r.name: r for r in plan.rows}
    assert rows["fc.weight"].init != SKIP  # written by the plan: its values need no copy
    copied, expected = _copy(model, rows), copy.deepcopy(model)
    assert copied.head.weight is copied.fc.weight  # still tied
    assert copied.fc.weight is not model.fc.weight
    assert copied.fc.weight.shape == model.fc.weight.shape
    for name, buffer in expected.named_buffers():  # what the plan does not write: the values
        assert torch.equal(dict(copied.named_buffers())[name], buffer)
    assert copied.norm.running_var.data_ptr() != model.norm.running_var.data_ptr()
    assert copied.seen == model.seen and copied.seen is not model.seen
    assert torch.equal(copied.table["a"], model.table["a"])
    assert copied.table["a"] is not model.table["a"]
    assert copied.size == (4, 4) and type(copied) is _Holder
    assert [n for n, _ in copied.named_modules()] == [n for n, _ in model.named_modules()]
    skipped = {**rows, "fc.weight": rows["fc.weight"].__class__("fc.weight", "", "", SKIP)}
    kept = _copy(model, skipped)  # a row that skips it: the values are copied
    assert torch.equal(kept.fc.weight, model.fc.weight)


def test_a_parametrized_model_is_copied_as_deepcopy_copies_it():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2))
    nn.utils.parametrizations.weight_norm(model[0])
    copied = _copy(model, {})  # no row: every value copied
    assert type(copied[0]).__name__ == type(model[0]).__name__ == "ParametrizedLinear"
    assert torch.equal(copied[0].weight, model[0].weight)
    for (name, got), (_, want) in zip(copied.named_parameters(), model.named_parameters()):
        assert torch.equal(got, want) and got.data_ptr() != want.data_ptr(), name


def test_the_copy_keeps_sharing_and_a_users_hook():
    calls = []
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    model[0].register_forward_hook(lambda m, i, o: calls.append(o.shape))
    copied = _copy(model, {})
    copied(torch.randn(2, 3))
    assert calls == [torch.Size([2, 3])]  # the hook came along, as deepcopy brings it


def test_cached_elementwise_tests_answer_per_configuration_and_skip_hooked_modules():
    relu, gelu, tanh_gelu = nn.ReLU(), nn.GELU(), nn.GELU(approximate="tanh")
    model = nn.Sequential(nn.Linear(2, 2), relu, nn.Linear(2, 2), gelu, nn.Linear(2, 2), tanh_gelu)
    graph = trace(model, torch.randn(3, 2))
    kinds = [_classify(n) for n in graph.nodes if n.name in ("1", "3", "5")]
    assert [k for k, _ in kinds] == ["activation"] * 3
    assert kinds[0][1].name == "relu"
    assert wi.moments(kinds[1][1], 0.0, 1.0) != wi.moments(kinds[2][1], 0.0, 1.0)
    # a ReLU whose hook makes it non-elementwise is tested itself, not answered from the cache
    hooked = nn.ReLU()
    hooked.register_forward_hook(lambda m, i, o: o.flip(-1))
    model = nn.Sequential(nn.Linear(2, 2), hooked, nn.Linear(2, 2))
    graph = trace(model, torch.randn(3, 2))
    node = next(n for n in graph.nodes if n.name == "1")
    assert _classify(node) == ("stop", None)
    assert not _is_elementwise(hooked)


def test_a_nodes_classification_is_computed_once():
    model = nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 2))
    graph = trace(model, torch.randn(3, 2))
    node = graph.nodes[2]
    first = _classify(node)
    assert _classify(node) is first


def test_activation_moments_from_the_cache_equal_fresh_ones():
    cache: dict = {}
    x = Signal(0.3, 1.7, 0.2)
    fresh = through_activation(wi.activation("gelu"), x)
    assert through_activation(wi.activation("gelu"), x, cache) == fresh
    assert len(cache) == 1
    assert through_activation(wi.activation("gelu"), x, cache) == fresh  # from the cache
    assert through_activation(wi.activation("gelu"), Signal(0.3, 1.7, 0.9), cache).shared == 0.9


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_tensor_statistics_are_those_of_the_finite_entries(dtype):
    g = torch.Generator().manual_seed(0)
    base = (3 * torch.randn(20, 30, generator=g) + 1).to(dtype)
    cases = [base, base.T, base.reshape(-1)[7:], base[:, ::2]]
    with_inf = base.clone()
    with_inf[2, 3] = float("inf")
    cases.append(with_inf)
    for t in cases:
        x = t.double()
        x = x[torch.isfinite(x)]  # the entries that count, copied out: the oracle
        got = _tensor_stats(t)
        assert got == Signal(float(x.mean()), float(x.var(unbiased=False)))


def test_the_collector_comes_back_after_an_error_and_stays_paused_inside_a_paused_caller():
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # it was paused before: left paused
    finally:
        gc.enable()


def test_a_correction_in_place_leaves_an_output_a_users_hook_kept_alone():
    torch.manual_seed(0)
    x = torch.randn(64, 6)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    base = wi.plan(model, "orthogonal")
    plain, _ = lsuv_plan(model, base, x, seed=0, max_iter=1)
    kept = []
    model[0].register_forward_hook(lambda m, i, o: kept.append(o.clone()) or kept.append(o))
    hooked, _ = lsuv_plan(model, base, x, seed=0, max_iter=1)
    assert [r.scale for r in hooked.rows] == [r.scale for r in plain.rows]
    assert torch.equal(kept[0], kept[1])  # corrected into a new tensor, not in place
