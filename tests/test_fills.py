"""Constant, uniform, normal and truncated-normal fills."""

import math

import pytest
import torch
from conftest import N, var_tolerance
from scipy import stats

import weightinit as wi


def test_constants():
    t = torch.empty(3, 4)
    assert torch.equal(wi.zeros_(t), torch.zeros(3, 4))
    assert torch.equal(wi.ones_(t), torch.ones(3, 4))
    assert torch.equal(wi.constant_(t, 0.25), torch.full((3, 4), 0.25))


def test_constants_accept_complex_tensors():
    t = torch.empty(2, dtype=torch.complex64)
    assert torch.equal(wi.constant_(t, 1 + 2j), torch.full((2,), 1 + 2j, dtype=torch.complex64))


@pytest.mark.parametrize("a, b", [(0.0, 1.0), (-0.3, 0.1)])
def test_uniform_moments_and_range(gen, a, b):
    w = wi.uniform_(torch.empty(N), a, b, generator=gen)
    assert a <= w.min() and w.max() <= b
    var = (b - a) ** 2 / 12
    assert abs(w.var().item() - var) < var_tolerance(var, kurtosis=1.8)
    assert abs(w.mean().item() - (a + b) / 2) < 5 * math.sqrt(var / N)


def test_normal_moments(gen):
    w = wi.normal_(torch.empty(N), 0.5, 0.02, generator=gen)
    assert abs(w.mean().item() - 0.5) < 5 * 0.02 / math.sqrt(N)
    assert abs(w.var().item() - 0.02**2) < var_tolerance(0.02**2)


@pytest.mark.parametrize(
    "ours, theirs, args",
    [
        (wi.uniform_, torch.nn.init.uniform_, (-0.5, 2.0)),
        (wi.normal_, torch.nn.init.normal_, (0.1, 3.0)),
    ],
)
def test_plain_fills_equal_torch_for_the_same_generator_state(ours, theirs, args):
    a = ours(torch.empty(1000), *args, generator=torch.Generator().manual_seed(7))
    b = theirs(torch.empty(1000), *args, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


# --- truncated normal --------------------------------------------------------------------------


def test_truncated_std_constant_from_keras_and_jax():
    assert wi.truncated_std(-2.0, 2.0) == pytest.approx(0.8796256610342398, abs=1e-15)


@pytest.mark.parametrize("a, b", [(-2.0, 2.0), (-1.0, 3.0), (0.0, math.inf), (-0.5, 0.5)])
def test_truncated_std_matches_scipy(a, b):
    assert wi.truncated_std(a, b) == pytest.approx(stats.truncnorm(a, b).std(), rel=1e-12)


@pytest.mark.parametrize(
    "a, b", [(-2.0, 2.0), (-1.0, 3.0), (0.0, math.inf), (2.5, 4.0), (-6.0, -5.0)]
)
def test_trunc_normal_distribution_matches_scipy(gen, a, b):
    """Mean and variance within a few standard errors of scipy's truncated normal, in both the
    rejection regime and the inverse-CDF regime (intervals with little mass)."""
    mean, std = 0.3, 2.0
    w = wi.trunc_normal_(torch.empty(N, dtype=torch.float64), mean, std, a, b, generator=gen)
    ref = stats.truncnorm(a, b, loc=mean, scale=std)
    assert w.min() >= mean + a * std and w.max() <= mean + b * std
    assert abs(w.mean().item() - ref.mean()) < 5 * ref.std() / math.sqrt(N)
    assert abs(w.var().item() - ref.var()) < var_tolerance(ref.var(), kurtosis=ref.stats("k") + 3)
    # and the shape: a Kolmogorov-Smirnov test on a sub-sample
    assert stats.kstest(w[:20_000].numpy(), ref.cdf).pvalue > 1e-3


def test_trunc_normal_exact_std(gen):
    w = wi.trunc_normal_(torch.empty(N), 0.0, 0.02, exact_std=True, generator=gen)
    assert abs(w.var().item() - 0.02**2) < var_tolerance(0.02**2)
    assert w.abs().max() <= 2 * 0.02 / 0.8796256610342398


def test_trunc_normal_absolute_bounds(gen):
    w = wi.trunc_normal_(torch.empty(N), 1.0, 1.0, 0.0, 1.5, bounds="absolute", generator=gen)
    ref = stats.truncnorm(-1.0, 0.5, loc=1.0, scale=1.0)
    assert 0.0 <= w.min() and w.max() <= 1.5
    assert abs(w.mean().item() - ref.mean()) < 5 * ref.std() / math.sqrt(N)


def test_trunc_normal_default_bounds_are_in_std_units(gen):
    w = wi.trunc_normal_(torch.empty(N), std=0.02, generator=gen)
    assert w.abs().max() <= 0.04
    assert w.abs().max() > 0.039  # the tails are there, just cut at 2 std


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("std", [1.0, 0.02, 0.0123])
def test_trunc_normal_never_leaves_the_bounds_in_any_dtype(gen, dtype, std):
    """The bounds +-2 std are not representable in bf16/fp16 in general; rounding them to
    nearest (torch's clamp does) can put values outside. Checked in float64."""
    lo, hi = -2 * std, 2 * std
    w = wi.trunc_normal_(torch.empty(N, dtype=dtype), 0.0, std, generator=gen).double()
    assert lo <= w.min().item() and w.max().item() <= hi
    assert abs(w.std().item() / std - wi.truncated_std()) < 0.01  # coarse dtypes still right


def test_trunc_normal_far_tail_in_half_precision(gen):
    w = wi.trunc_normal_(
        torch.empty(10_000, dtype=torch.float16), 0.0, 0.01, 5.0, 6.0, generator=gen
    )
    assert 0.05 <= w.double().min() and w.double().max() <= 0.06


def test_trunc_normal_fills_non_contiguous_tensors(gen):
    base = torch.zeros(100, 200)
    view = base.t()
    wi.trunc_normal_(view, 0.0, 1.0, generator=gen)
    assert base.abs().max() <= 2.0 and (base != 0).float().mean() > 0.99


def test_trunc_normal_does_not_redraw_the_whole_tensor():
    """Elements already inside the bounds are kept: a run with bounds that exclude almost
    nothing leaves the first normal draw unchanged in all but the few outliers."""
    a = wi.trunc_normal_(
        torch.empty(N), 0.0, 1.0, -4.0, 4.0, generator=torch.Generator().manual_seed(3)
    )
    b = torch.empty(N).normal_(0.0, 1.0, generator=torch.Generator().manual_seed(3))
    changed = (a != b).sum().item()
    assert 0 < changed < 200  # P(|z| > 4) * N = 63


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(std=0.0), "`std` must be > 0"),
        (dict(std=-1.0), "`std` must be > 0"),
        (dict(a=1.0, b=-1.0), "`a` must be < `b`"),
        (dict(a=float("nan")), "`a` must be a number"),
        (dict(bounds="sigma"), "`bounds` must be one of"),
        (dict(a=0.0, b=1.0, bounds="absolute", exact_std=True), "needs bounds in std units"),
        (dict(mean=100.0, std=1.0, a=0.0, b=1.0, bounds="absolute"), "no mass"),
    ],
)
def test_trunc_normal_errors(kwargs, match):
    t = torch.zeros(10)
    with pytest.raises(ValueError, match=match):
        wi.trunc_normal_(t, **kwargs)
    assert torch.equal(t, torch.zeros(10))


def test_bounds_with_no_representable_value():
    with pytest.raises(ValueError, match="no torch.float16 value"):
        wi.trunc_normal_(
            torch.empty(4, dtype=torch.float16),
            1e-4,
            1e-4,
            1.00017e-4,
            1.0002e-4,
            bounds="absolute",
        )


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda t: wi.uniform_(t, 1.0, 0.0), "`a` must be <= `b`"),
        (lambda t: wi.uniform_(t, float("inf"), 1.0), "`a` must be a finite number"),
        (lambda t: wi.normal_(t, 0.0, -1.0), "`std` must be >= 0"),
        (lambda t: wi.normal_(t, float("nan")), "`mean` must be a finite number"),
        (lambda t: wi.constant_(t, float("nan")), "`val` must be a finite number"),
    ],
)
def test_fill_argument_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call(torch.empty(3))


def test_block_constant_fills_each_gate():
    gru = torch.nn.GRU(3, 2)
    b = wi.block_constant_(gru.bias_hh_l0, [1.0, -1.0, 0.5], layout=(gru, "bias_hh_l0"))
    assert b.tolist() == [1.0, 1.0, -1.0, -1.0, 0.5, 0.5]


def test_block_constant_needs_one_value_per_block():
    lstm = torch.nn.LSTM(3, 2)
    with pytest.raises(ValueError, match="`values` has 2 entries but the layout has 4 blocks"):
        wi.block_constant_(lstm.bias_ih_l0, [0.0, 1.0], layout=(lstm, "bias_ih_l0"))
