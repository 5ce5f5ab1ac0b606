"""The automatic schemes on the depth-100 zoo, measured by diagnose on the real model: "lsuv"
keeps every layer's std within [0.8, 1.25] and "auto" within [0.5, 2] (issue 5)."""

import pytest

import weightinit as wi
from weightinit import zoo

SEED = 0


@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_auto_keeps_every_layer_within_half_and_double(name):
    model, x = zoo.ZOO[name]()
    wi.init(model, "auto", example_input=x, seed=SEED)
    scales = zoo.layer_scales(wi.diagnose(model, x, exact_limit=0, probes=2))
    assert all(0.5 <= s <= 2.0 for s in scales), (min(scales), max(scales))


@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_lsuv_keeps_every_layer_within_tolerance(name):
    model, x = zoo.ZOO[name]()
    wi.init(model, "lsuv", data=x, seed=SEED)
    scales = zoo.layer_scales(wi.diagnose(model, x, exact_limit=0, probes=2))
    assert all(0.8 <= s <= 1.25 for s in scales), (min(scales), max(scales))
