"""Calibration as a stage of its own: ``plan`` gives a data-dependent scheme's analytic plan (on
the meta device too) and ``wi.calibrate`` completes it once the model has storage, with the
same values as planning with the data in one call."""

import copy

import pytest
import torch
from torch import nn

import weightinit as wi

X = torch.randn(256, 8, generator=torch.Generator().manual_seed(0))


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2)
    )


def _values(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_lsuv_planned_on_meta_then_calibrated_writes_what_one_call_writes():
    reference = _net()
    wi.init(reference, "lsuv", data=X, seed=3, target_var=4.0)
    meta = _net().to("meta")
    analytic = wi.plan(meta, "lsuv", seed=3, target_var=4.0)
    assert analytic.pending_calibration and not analytic.calibration
    assert "awaiting calibration on data: weightinit.calibrate(" in str(analytic)
    assert all(p.is_meta for p in meta.parameters())
    again = wi.Plan.from_json(analytic.to_json())  # e.g. planned on one machine, saved
    assert again.pending_calibration and again.options == analytic.options
    model = meta.to_empty(device="cpu")
    with pytest.raises(ValueError, match=r"awaits calibration on data: .*weightinit.calibrate"):
        again.apply(model)
    calibrated = wi.calibrate(again, model, data=X)
    assert not calibrated.pending_calibration and len(calibrated.calibration) == 3
    calibrated.apply(model)
    assert all(torch.equal(a, b) for a, b in zip(_values(model), _values(reference)))
    assert abs(model(X).std().item() - 2.0) < 0.05 * 2.0  # target_var=4 was kept


def test_init_without_data_says_what_to_pass():
    model = _net()
    before = _values(model)
    with pytest.raises(ValueError, match="pass data=batch"):
        wi.init(model, "lsuv")
    assert all(torch.equal(a, b) for a, b in zip(_values(model), before))


def test_calibrate_needs_data_and_storage():
    plan = wi.plan(_net(), "lsuv")
    with pytest.raises(ValueError, match=r"calibrate: scheme 'lsuv' .*: pass data=batch"):
        wi.calibrate(plan, _net())
    with pytest.raises(ValueError, match="on the meta device"):
        wi.calibrate(plan, _net().to("meta"), data=X)


def test_a_scheme_without_calibration_is_returned_as_it_is():
    plan = wi.plan(_net(), "he")
    assert wi.calibrate(plan, _net(), data=X) is plan


def test_auto_calibrates_later_as_it_does_in_one_call():
    one_call = wi.plan(_net(), "auto", example_input=X, data=X, seed=0, stabilize=False)
    analytic = wi.plan(_net(), "auto", example_input=X, seed=0, stabilize=False)
    assert not analytic.calibration and analytic.predictions == one_call.predictions
    later = wi.calibrate(analytic, _net(), data=X)
    assert later.rows == one_call.rows and later.calibration == one_call.calibration
    model, reference = _net(), copy.deepcopy(_net())
    later.apply(model)
    one_call.apply(reference)
    assert all(torch.equal(a, b) for a, b in zip(_values(model), _values(reference)))


def test_a_calibrated_plan_is_not_calibrated_twice():
    """Its gains were measured on the values it draws; calibrating again would compound them."""
    for calibrated in (
        wi.plan(_net(), "auto", example_input=X, seed=0),  # auto's sweep ran in plan
        wi.plan(_net(), "lsuv", data=X, seed=0),
    ):
        with pytest.raises(ValueError, match="calibrated already"):
            wi.calibrate(calibrated, _net(), data=X)


def test_batchnorm_statistics_are_re_estimated_when_calibrating_later():
    """to_empty leaves running statistics uninitialized; calibrating re-estimates them on the
    data, so the two-step route writes what one call writes, buffers included."""

    def build() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 2))

    reference = build()
    one_call = wi.init(reference, "lsuv", data=X, seed=3)
    with torch.device("meta"):
        meta = build()
    analytic = wi.plan(meta, "lsuv", seed=3)
    assert analytic.buffers == {}  # nothing measured yet
    model = meta.to_empty(device="cpu")
    with torch.no_grad():
        model[1].running_var.fill_(float("nan"))  # what uninitialized memory may hold
    calibrated = wi.calibrate(analytic, model, data=X)
    assert calibrated.buffers == one_call.buffers and len(calibrated.buffers) == 3
    calibrated.apply(model)
    state, expected = model.state_dict(), reference.state_dict()
    assert all(torch.equal(state[k], expected[k]) for k in expected)
