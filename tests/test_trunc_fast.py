"""Truncated normal without a rejection pass where nothing can fall outside (issue 14).

Bounds beyond the largest |z| torch's CPU normal_ can produce skip the rejection pass; the
values must be exactly those of one ``normal_`` draw (which the rejection pass would have kept
whole), and bounds within reach must still go through rejection."""

import math

import pytest
import torch
from conftest import N, var_tolerance
from scipy import stats

import weightinit as wi
from weightinit.initializers import fills

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def plain_normal(shape, dtype, mean, sigma, seed, transposed):
    """The oracle: what the rejection path writes when nothing falls outside, one normal_
    draw into a contiguous buffer of the tensor's size, copied into the tensor's layout; and
    the generator afterwards."""
    g = torch.Generator().manual_seed(seed)
    flat = torch.empty(math.prod(shape), dtype=dtype).normal_(mean, sigma, generator=g)
    target = empty(shape, dtype, transposed)
    return target.copy_(flat.view(shape)), g


def empty(shape, dtype, transposed):
    return (
        torch.empty(shape[::-1], dtype=dtype).t() if transposed else torch.empty(shape, dtype=dtype)
    )


@pytest.fixture
def rejections(monkeypatch):
    """Count the calls of the rejection pass."""
    calls = []
    real = fills._fill_by_rejection

    def spy(*args):
        calls.append(args[0].numel())
        return real(*args)

    monkeypatch.setattr(fills, "_fill_by_rejection", spy)
    return calls


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape, transposed", [((4096,), False), ((7,), False), ((33, 5), True), ((1000, 3), False)]
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_far_bounds_write_exactly_one_normal_draw(rejections, dtype, shape, transposed, seed):
    """torchtitan's +-2 absolute at std 0.02 (z = +-100): bit-identical to one normal_ draw
    (what the rejection pass, finding nothing, left), the generator in the same state
    afterwards, and no rejection pass run."""
    expected, g_expected = plain_normal(shape, dtype, 0.0, 0.02, seed, transposed)
    t = empty(shape, dtype, transposed)
    assert t.is_contiguous() != transposed
    g = torch.Generator().manual_seed(seed)
    out = wi.trunc_normal_(t, 0.0, 0.02, -2.0, 2.0, bounds="absolute", generator=g)
    assert out is t
    assert torch.equal(t, expected)
    assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=g_expected))
    assert rejections == []


@pytest.mark.parametrize("dtype", DTYPES)
def test_far_bounds_in_std_units_and_with_a_mean(rejections, dtype):
    """Bounds at -9/+9.5 std beyond every path's reach (8.58 at most), mean 0.5: one normal_."""
    shape = (257,)
    expected, _ = plain_normal(shape, dtype, 0.5, 0.1, 5, False)
    g = torch.Generator().manual_seed(5)
    t = wi.trunc_normal_(torch.empty(shape, dtype=dtype), 0.5, 0.1, -9.0, 9.5, generator=g)
    assert torch.equal(t, expected)
    assert rejections == []


@pytest.mark.parametrize(
    "dtype, numel, rejected",
    [
        (torch.float32, 4096, False),  # float uniforms: reach 5.77 < 6
        (torch.bfloat16, 16, False),
        (torch.float32, 15, True),  # fewer than 16 elements: double uniforms, reach 8.58 > 6
        (torch.float64, 4096, True),  # double uniforms
    ],
)
def test_bounds_at_6_std_depend_on_the_path_torch_takes(rejections, dtype, numel, rejected):
    """+-6 std lies beyond float uniforms' reach but within double uniforms': the rejection
    pass runs only for the latter; either way the values are one plain normal_ draw (a z of
    6 has probability 2e-9)."""
    expected, _ = plain_normal((numel,), dtype, 0.0, 1.0, 11, False)
    g = torch.Generator().manual_seed(11)
    t = wi.trunc_normal_(torch.empty(numel, dtype=dtype), 0.0, 1.0, -6.0, 6.0, generator=g)
    assert torch.equal(t, expected)
    assert rejections == ([numel] if rejected else [])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("numel", [16, 15])
def test_reach_is_the_box_muller_radius_at_the_smallest_uniform(dtype, numel):
    """sqrt(-2 ln u_min) with u_min = 2^-24 (float uniforms) or 2^-53 (double uniforms), a
    0.1% margin on top; checked against scipy's chi distribution with 2 degrees of freedom
    (the Box-Muller radius), whose survival function at the reach is exactly u_min."""
    reach = fills._normal_reach(dtype, numel)
    bits = 53 if dtype == torch.float64 or numel < 16 else 24
    radius = reach / 1.001
    assert stats.chi(2).sf(radius) == pytest.approx(2.0**-bits, rel=1e-12)


def test_reach_is_unknown_off_cpu():
    assert fills._normal_reach(torch.float32, 4096, "meta") is None
    assert fills._normal_reach(torch.float32, 4096, torch.device("cuda", 0)) is None


def test_largest_draws_stay_below_the_reach():
    """Sanity check, not the proof: 2^22 float32 draws (largest |z| about 5.3 expected) and
    2^20 float64 ones stay below the reach."""
    g = torch.Generator().manual_seed(0)
    z32 = torch.empty(2**22).normal_(generator=g).abs().max().item()
    z64 = torch.empty(2**20, dtype=torch.float64).normal_(generator=g).abs().max().item()
    assert 4.5 < z32 < fills._normal_reach(torch.float32, 2**22)
    assert 4.5 < z64 < fills._normal_reach(torch.float64, 2**20)


def test_near_bounds_and_rounding_slack_keep_the_rejection_pass(rejections):
    """Bounds just inside the reach, or far in z but within float32's rounding of a large mean
    (mean 1000, sigma 1e-6, bounds +-1e-4: z = +-100, but float32's spacing at 1000 is 6e-5),
    still run the rejection pass, and the values stay inside."""
    reach = fills._normal_reach(torch.float32, 4096)
    g = torch.Generator().manual_seed(3)
    wi.trunc_normal_(torch.empty(4096), 0.0, 1.0, -reach * 0.999, reach * 0.999, generator=g)
    assert rejections == [4096]
    w = wi.trunc_normal_(
        torch.empty(4096), 1000.0, 1e-6, 1000 - 1e-4, 1000 + 1e-4, bounds="absolute", generator=g
    )
    assert rejections == [4096, 4096]
    assert 1000 - 1e-4 <= w.double().min() and w.double().max() <= 1000 + 1e-4
    wi.trunc_normal_(torch.empty(4096), 0.0, 1.0, -reach * 1.001, reach * 1.001, generator=g)
    assert rejections == [4096, 4096]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_two_std_still_rejects_and_matches_scipy(rejections, gen, dtype):
    """At +-2 std the rejection loop runs, and the result is scipy's truncated normal: mean
    and variance within 5 standard errors, and a Kolmogorov-Smirnov test. Mean 0, so that
    bfloat16's rounding (symmetric about 0) biases neither the mean nor, beyond 1e-5 of it,
    the variance; its steps (0.4% of a value) move the empirical CDF by under 0.002, far
    below the test's 0.014 at 20,000 draws."""
    std = 0.02
    w = wi.trunc_normal_(torch.empty(N, dtype=dtype), 0.0, std, generator=gen).double()
    assert rejections == [N]
    ref = stats.truncnorm(-2.0, 2.0, loc=0.0, scale=std)
    assert -2 * std <= w.min() and w.max() <= 2 * std
    assert abs(w.mean().item() - ref.mean()) < 5 * ref.std() / math.sqrt(N)
    tol = var_tolerance(ref.var(), kurtosis=ref.stats("k") + 3)
    assert abs(w.var().item() - ref.var()) < tol
    assert stats.kstest(w[:20_000].numpy(), ref.cdf).pvalue > 1e-3
