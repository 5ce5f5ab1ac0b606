"""The automatic schemes on the depth-100 zoo, measured by diagnose on the real model: "lsuv"
keeps every layer's std within [0.8, 1.25] and "auto" within [0.5, 2] (issue 5)."""

import pytest

import weightinit as wi
from weightinit import zoo

SEED = 0


BANDS = {"auto": (0.5, 2.0), "lsuv": (0.8, 1.25)}


# A depth-100 SiLU MLP has no stable per-sample fixed point (docs/automatic.md, "Deep GELU and
# SiLU nets: the samples drift apart"): under "auto" about 99% of the samples decay to std
# 5e-14 to 3e-13 and the pooled std of a 128-sample batch is set by the few that survive.
# With torch's generator at seed 0 it happened to land in the band; with the keyed generator
# (seed= since philox-v1) it does not (min 0.18). Strict: a pass would mean the limitation is gone.
LIMITS = {
    ("auto", "mlp100_silu"): "depth-100 SiLU: the samples drift apart (docs/automatic.md)",
}


@pytest.mark.parametrize("name", list(zoo.ZOO))
@pytest.mark.parametrize("scheme", list(BANDS))
def test_automatic_schemes_keep_every_layer_in_their_band(scheme, name, request):
    if (scheme, name) in LIMITS:
        request.applymarker(pytest.mark.xfail(strict=True, reason=LIMITS[scheme, name]))
    model, x = zoo.ZOO[name]()
    data = {"example_input": x} if scheme == "auto" else {"data": x}
    wi.init(model, scheme, seed=SEED, **data)
    scales = zoo.layer_scales(wi.diagnose(model, x, exact_limit=0, probes=2))
    low, high = BANDS[scheme]
    assert all(low <= s <= high for s in scales), (min(scales), max(scales))
