"""The automatic schemes on the depth-100 zoo, measured by diagnose on the real model: "lsuv"
keeps every layer's std within [0.8, 1.25] and "auto" within [0.5, 2] (issue 5)."""

import pytest

import weightinit as wi
from weightinit import zoo

SEED = 0


BANDS = {"auto": (0.5, 2.0), "lsuv": (0.8, 1.25)}


@pytest.mark.parametrize("name", list(zoo.ZOO))
@pytest.mark.parametrize("scheme", list(BANDS))
def test_automatic_schemes_keep_every_layer_in_their_band(scheme, name):
    model, x = zoo.ZOO[name]()
    data = {"example_input": x} if scheme == "auto" else {"data": x}
    wi.init(model, scheme, seed=SEED, **data)
    scales = zoo.layer_scales(wi.diagnose(model, x, exact_limit=0, probes=2))
    low, high = BANDS[scheme]
    assert all(low <= s <= high for s in scales), (min(scales), max(scales))
