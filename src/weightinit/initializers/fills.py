"""Plain fills: constants, uniform, normal and truncated normal, in place under ``no_grad``.

They take ``layout=`` and ``generator=`` like every initializer (see :func:`check_fill`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

import torch

from weightinit._checks import (
    check_tensor,
    choice,
    finite,
    fits,
    is_number,
    nothing_to_fill,
    positive,
)
from weightinit.initializers.catalog import register
from weightinit.initializers.layout import Layout, LayoutLike, geometry

__all__ = [
    "block_constant_",
    "constant_",
    "normal_",
    "ones_",
    "trunc_normal_",
    "truncated_std",
    "uniform_",
    "zeros_",
]


def check_fill(tensor: torch.Tensor, fn: str, layout: LayoutLike, *, complex_ok: bool = False):
    """Fills ignore fans but share every initializer's signature, so that any initializer can
    be called as ``init(tensor, ..., layout=..., generator=...)``: a given layout is still
    checked against the tensor, and the constant fills draw nothing from ``generator``."""
    check_tensor(tensor, fn, complex_ok=complex_ok)
    if layout is not None:
        geometry(tensor, layout)


@dataclass(frozen=True)
class Draw:
    """The i.i.d. values an elementwise initializer writes, once its arguments and fans are
    known: a constant, U(low, high), N(mean, sigma^2), or N(mean, sigma^2) truncated to
    [low, high]. ``kind="structured"`` only reports the std of a structured initializer.

    Initializers build one and call :meth:`fill`; on a meta or empty tensor the fill is a
    no-op, and inside :func:`capture` it records the Draw instead, which is how plans learn
    the std of each row and how ``Plan.apply`` fills many small tensors fast.
    """

    kind: str  # "constant" | "uniform" | "normal" | "truncated_normal" | "structured"
    mean: float = 0.0  # the constant, or the (untruncated) mean
    sigma: float = 0.0
    low: float = -math.inf
    high: float = math.inf

    @property
    def std(self) -> float:
        """Std of the values written."""
        if self.kind == "uniform":
            return (self.high - self.low) / math.sqrt(12)
        if self.kind == "truncated_normal":
            za, zb = (self.low - self.mean) / self.sigma, (self.high - self.mean) / self.sigma
            return self.sigma * truncated_std(za, zb)
        return self.sigma if self.kind != "constant" else 0.0

    @property
    def bound(self) -> float | None:
        """Largest possible |value|, where finite."""
        if self.kind == "constant":
            return abs(self.mean)
        if self.kind in ("uniform", "truncated_normal"):
            return max(abs(self.low), abs(self.high))
        return None

    @property
    def reach(self) -> float:
        """The largest magnitude drawing these values computes with: the bounds (and, for a
        uniform, their distance, which torch computes), or 10 sigma from the mean, which a
        normal draw passes with probability 1.5e-23."""
        far = abs(self.mean) + 10 * self.sigma
        if self.kind == "constant":
            return abs(self.mean)
        if self.kind == "uniform":
            return max(abs(self.low), abs(self.high), self.high - self.low)
        if self.kind == "truncated_normal":
            lo = max(self.low, self.mean - 10 * self.sigma)
            hi = min(self.high, self.mean + 10 * self.sigma)
            return max(abs(lo), abs(hi))
        return far

    def fits(self, dtype: torch.dtype, fn: str) -> None:
        """Raise ValueError if the values would overflow ``dtype`` (``fn`` names the caller)."""
        if self.kind == "structured":
            what = f"std {self.sigma:.3g}, counted to 10 std"
        elif self.kind == "constant":
            what = f"the constant {self.mean:.3g}"
        elif self.kind == "uniform":
            what = f"U({self.low:.3g}, {self.high:.3g}), bounds and width"
        elif self.kind == "truncated_normal":
            what = (
                f"N({self.mean:.3g}, {self.sigma:.3g}^2) truncated to [{self.low:.3g}, "
                f"{self.high:.3g}], counted to 10 std"
            )
        else:
            what = f"N({self.mean:.3g}, {self.sigma:.3g}^2), counted to 10 std"
        fits(fn, what, self.reach, dtype)

    def fill(
        self, tensor: torch.Tensor, generator: torch.Generator | None = None, *, fn: str
    ) -> torch.Tensor:
        """Fill ``tensor`` in place (a no-op on meta and empty tensors; recorded by capture),
        after checking that the values fit its dtype (``fn`` names the initializer)."""
        self.fits(tensor.dtype, fn)
        recorder = _captured.get()
        if recorder is not None:
            recorder.append(self)
        if nothing_to_fill(tensor):
            return tensor
        return self.write(tensor, generator)

    def write(self, tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """:meth:`fill` without its checks, for a tensor known to have storage."""
        if self.kind == "normal":
            return tensor.normal_(self.mean, self.sigma, generator=generator)
        if self.kind == "uniform":
            return tensor.uniform_(self.low, self.high, generator=generator)
        if self.kind == "constant":
            return tensor.zero_() if self.mean == 0 else tensor.fill_(self.mean)
        if self.kind == "truncated_normal":
            return _truncated_fill(tensor, self.mean, self.sigma, self.low, self.high, generator)
        raise TypeError("a structured Draw only reports statistics; it cannot fill a tensor")


_captured: ContextVar[list[Draw] | None] = ContextVar("weightinit_captured", default=None)


def report_std(std: float, tensor: torch.Tensor, fn: str) -> None:
    """For structured initializers: check that values of this std fit ``tensor``'s dtype and
    tell a running :func:`capture` the std they produce."""
    draw = Draw("structured", sigma=std)
    draw.fits(tensor.dtype, fn)
    recorder = _captured.get()
    if recorder is not None:
        recorder.append(draw)


def capture(
    init: Callable, shape: Sequence[int], dtype: torch.dtype, args: dict, layout
) -> Draw | None:
    """Run ``init`` on a meta tensor (validating every argument against the shape, writing
    nothing) and return the Draw it reports, or None for initializers that report none."""
    recorded: list[Draw] = []
    token = _captured.set(recorded)
    try:
        init(torch.empty(tuple(shape), dtype=dtype, device="meta"), **args, layout=layout)
    finally:
        _captured.reset(token)
    return recorded[-1] if recorded else None


@register(
    "zeros",
    aliases=("zero",),
    formula="W = 0",
    activations="biases; last layer of residual branches",
    paper="-",
)
@torch.no_grad()
def zeros_(
    tensor: torch.Tensor, *, layout: LayoutLike = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Fill ``tensor`` with 0.

    Formula: W = 0. Zero weights leave every unit of a layer identical (no symmetry breaking),
    so use it for biases and for the last layer of residual branches (Fixup, SkipInit).

    Example:
        >>> import torch, weightinit
        >>> weightinit.zeros_(torch.empty(2, 3)).sum().item()
        0.0
    """
    check_fill(tensor, "zeros_", layout, complex_ok=True)
    return Draw("constant", 0.0).fill(tensor, fn="zeros_")


@register("ones", aliases=("one",), formula="W = 1", activations="norm scales", paper="-")
@torch.no_grad()
def ones_(
    tensor: torch.Tensor, *, layout: LayoutLike = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Fill ``tensor`` with 1 (the scale of a freshly built normalization layer).

    Formula: W = 1.

    Example:
        >>> import torch, weightinit
        >>> weightinit.ones_(torch.empty(4)).tolist()
        [1.0, 1.0, 1.0, 1.0]
    """
    check_fill(tensor, "ones_", layout, complex_ok=True)
    return Draw("constant", 1.0).fill(tensor, fn="ones_")


@register("constant", formula="W = val", activations="biases (e.g. 0.01 before ReLU)", paper="-")
@torch.no_grad()
def constant_(
    tensor: torch.Tensor,
    val: float,
    *,
    layout: LayoutLike = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill ``tensor`` with ``val``.

    Formula: W = val. A small positive bias (0.01 or 0.1) before a ReLU keeps units alive at
    the start of training.

    Example:
        >>> import torch, weightinit
        >>> weightinit.constant_(torch.empty(2), 0.1).tolist()
        [0.10000000149011612, 0.10000000149011612]
    """
    check_fill(tensor, "constant_", layout, complex_ok=True)
    if not isinstance(val, complex):
        finite("constant_", "val", val)
    if isinstance(val, complex):
        return tensor if nothing_to_fill(tensor) else tensor.fill_(val)
    return Draw("constant", float(val)).fill(tensor, fn="constant_")


@register(
    "block_constant",
    formula="W[block k] = values[k]",
    activations="RNN gate biases (LSTM forget gate 1)",
    paper="Jozefowicz, Zaremba & Sutskever 2015 (forget bias 1)",
)
@torch.no_grad()
def block_constant_(
    tensor: torch.Tensor,
    values: Sequence[float],
    *,
    layout: LayoutLike = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill each block of ``tensor`` (a gate, a projection, a group) with its own constant.

    Formula: W[block k] = values[k], blocks as the layout says. The LSTM forget-gate bias of 1
    (Jozefowicz, Zaremba & Sutskever 2015, "An Empirical Exploration of Recurrent Network
    Architectures") is ``values=[0, 1, 0, 0]`` on ``bias_ih`` (torch's gate order i, f, g, o).

    Example:
        >>> import torch, weightinit
        >>> lstm = torch.nn.LSTM(3, 2)
        >>> b = weightinit.block_constant_(lstm.bias_ih_l0, [0, 1, 0, 0], layout=(lstm, "bias_ih_l0"))
        >>> b.tolist()
        [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    """
    fn = "block_constant_"
    check_tensor(tensor, fn)
    g = geometry(tensor, layout if layout is not None else Layout.elementwise(tensor.ndim))
    values = [finite(fn, "values", v) for v in values]
    if len(values) != g.num_blocks:
        raise ValueError(
            f"{fn}: `values` has {len(values)} entries but the layout has {g.num_blocks} blocks"
        )
    if nothing_to_fill(tensor):
        return tensor
    column = torch.tensor(values, dtype=tensor.dtype, device=tensor.device)
    column = column.reshape(-1, *[1] * (len(g.block_shape) - 1))
    return tensor.copy_(g.from_blocks(column.expand(g.block_shape)))


@register(
    "uniform",
    aliases=("random_uniform",),
    formula="W ~ U(a, b)",
    activations="any, with a chosen scale",
    paper="-",
)
@torch.no_grad()
def uniform_(
    tensor: torch.Tensor,
    a: float = 0.0,
    b: float = 1.0,
    *,
    layout: LayoutLike = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill ``tensor`` with draws from the uniform distribution U(a, b).

    Formula: W ~ U(a, b), so Var(W) = (b - a)^2 / 12.

    Example:
        >>> import torch, weightinit
        >>> w = weightinit.uniform_(torch.empty(1000), -0.1, 0.1)
        >>> bool(w.abs().max() <= 0.1)
        True
    """
    check_fill(tensor, "uniform_", layout)
    a, b = finite("uniform_", "a", a), finite("uniform_", "b", b)
    if a > b:
        raise ValueError(f"uniform_: `a` must be <= `b`, got a={a}, b={b}")
    return Draw("uniform", low=a, high=b).fill(tensor, generator, fn="uniform_")


@register(
    "normal",
    aliases=("random_normal",),
    formula="W ~ N(mean, std^2)",
    activations="any, with a chosen std (e.g. 0.02 in GPT-2)",
    paper="-",
)
@torch.no_grad()
def normal_(
    tensor: torch.Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    *,
    layout: LayoutLike = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill ``tensor`` with draws from the normal distribution N(mean, std^2).

    Formula: W ~ N(mean, std^2).

    Example:
        >>> import torch, weightinit
        >>> w = weightinit.normal_(torch.empty(100_000), std=0.02)
        >>> round(w.std().item(), 2)
        0.02
    """
    check_fill(tensor, "normal_", layout)
    mean = finite("normal_", "mean", mean)
    std = positive("normal_", "std", std, allow_zero=True)
    return Draw("normal", mean, std).fill(tensor, generator, fn="normal_")


def _phi(x: float) -> float:
    return 0.0 if math.isinf(x) else math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


def truncated_std(a: float = -2.0, b: float = 2.0) -> float:
    """Std of a standard normal truncated to [a, b] (bounds in units of std).

    Formula: with Z = Phi(b) - Phi(a),
    Var = 1 + (a phi(a) - b phi(b)) / Z - ((phi(a) - phi(b)) / Z)^2.
    At the usual +-2 std this is 0.8796256610342398, the constant Keras and JAX divide by.

    Example:
        >>> import weightinit
        >>> round(weightinit.truncated_std(-2.0, 2.0), 10)
        0.879625661
    """
    z = _cdf(b) - _cdf(a)
    if z <= 0:
        raise ValueError(f"truncated_std: the interval [{a}, {b}] has no probability mass")
    a_phi = 0.0 if math.isinf(a) else a * _phi(a)
    b_phi = 0.0 if math.isinf(b) else b * _phi(b)
    d = (_phi(a) - _phi(b)) / z
    return math.sqrt(1.0 + (a_phi - b_phi) / z - d * d)


def _representable_within(lo: float, hi: float, dtype: torch.dtype) -> tuple[float, float]:
    """The closest values of ``dtype`` inside [lo, hi] (rounding bounds inward, not to nearest)."""
    ends = torch.tensor([lo, hi], dtype=torch.float64).to(dtype)
    up, down = torch.tensor(math.inf, dtype=dtype), torch.tensor(-math.inf, dtype=dtype)
    if ends[0].item() < lo:
        ends[0] = torch.nextafter(ends[0], up)
    if ends[1].item() > hi:
        ends[1] = torch.nextafter(ends[1], down)
    low, high = ends.tolist()
    if low > high:
        raise ValueError(f"trunc_normal_: no {dtype} value lies in [{lo}, {hi}]; widen the bounds")
    return low, high


_REDRAWS = 8  # rounds of rejection before the rest is drawn by inverse CDF

# The largest |z| torch's CPU normal_ can write, read from its source (torch 2.13's headers and
# an older release's: aten/src/ATen/native/cpu/DistributionTemplates.h, and the uniforms of
# aten/src/ATen/core/DistributionsHelper.h and TransformationHelper.h). Every path is Box-Muller, z = sqrt(-2 ln u1) cos(2 pi u2) (or
# sin), so |z| <= sqrt(-2 ln u1_min), with u1 = 1 - u and u a uniform k 2^-d, 0 <= k < 2^d
# (uniform_real keeps the low d = digits bits of a random word), hence u1_min = 2^-d:
# - contiguous tensors of >= 16 elements in float32, float16 and bfloat16 (normal_fill):
#   float uniforms, d = 24 (older releases drew float16/bfloat16 ones with d = 11 / 8: less):
#   sqrt(48 ln 2) = 5.7683;
# - float64, and any tensor of < 16 elements or not contiguous (normal_distribution<double>):
#   double uniforms, d = 53: sqrt(106 ln 2) = 8.5717.
# The margin covers log, sqrt, sin and cos computed in float (a few ulp). CUDA draws through
# cuRAND (curand_normal4, curand_normal2_double), not read here: no shortcut there.
_Z_FLOAT_UNIFORMS = math.sqrt(48 * math.log(2))
_Z_DOUBLE_UNIFORMS = math.sqrt(106 * math.log(2))
_Z_MARGIN = 1.001
_BOX_MULLER_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _normal_reach(
    dtype: torch.dtype, numel: int, device: torch.device | str = "cpu"
) -> float | None:
    """The largest |z| that ``torch.empty(numel, dtype=dtype, device=device).normal_()`` can
    write, with a margin for rounding; None where it is not known (not CPU, other dtypes).

    Formula: sqrt(-2 ln 2^-d) x 1.001, the Box-Muller radius at the smallest uniform torch
    draws, d = 24 bits (float32, float16 and bfloat16 tensors of >= 16 elements, which torch
    fills vectorized from float uniforms) or d = 53 (float64, and tensors of < 16 elements);
    see the derivation above ``_Z_FLOAT_UNIFORMS`` in this module.

    Example:
        >>> import torch
        >>> from weightinit.initializers.fills import _normal_reach as reach
        >>> round(reach(torch.float32, 4096), 3), round(reach(torch.float64, 4096), 3)
        (5.774, 8.58)
    """
    if torch.device(device).type != "cpu" or dtype not in _BOX_MULLER_DTYPES:
        return None
    double_uniforms = dtype == torch.float64 or numel < 16
    return (_Z_DOUBLE_UNIFORMS if double_uniforms else _Z_FLOAT_UNIFORMS) * _Z_MARGIN


def _nothing_outside(flat: torch.Tensor, mean: float, sigma: float, lo: float, hi: float) -> bool:
    """Whether no value ``flat.normal_(mean, sigma)`` can write lies outside [lo, hi] (bounds
    of ``flat``'s dtype). Torch computes z sigma + mean with mean and sigma rounded to float
    (or the dtype), a few roundings of relative size eps; 4 eps of |mean| + z sigma, plus the
    smallest normal number for subnormal results, bounds them, and rounding the result to the
    dtype cannot cross a bound the dtype represents."""
    z = _normal_reach(flat.dtype, flat.numel(), flat.device)
    if z is None:
        return False
    info = torch.finfo(flat.dtype)
    spread = z * sigma
    slack = 4 * info.eps * (abs(mean) + spread) + info.tiny
    return lo <= mean - spread - slack and mean + spread + slack <= hi


def _fill_by_rejection(flat, mean, sigma, lo, hi, mass, generator):
    """Draw N(mean, sigma^2) once, then redraw only the elements that fell outside [lo, hi].

    Each round oversamples by 1.2 / mass, so a round leaves elements undrawn only with tiny
    probability; after ``_REDRAWS`` rounds (reached only if the dtype's rounding puts far
    less mass inside than computed) the rest comes from the inverse CDF: the loop is bounded."""
    flat.normal_(mean, sigma, generator=generator)
    bad = torch.nonzero((flat < lo) | (flat > hi)).squeeze(1)
    for _ in range(_REDRAWS):
        if not bad.numel():
            return
        n = bad.numel()
        draw = torch.empty(int(n / mass * 1.2) + 16, dtype=flat.dtype, device=flat.device)
        draw.normal_(mean, sigma, generator=generator)
        good = draw[(draw >= lo) & (draw <= hi)][:n]
        flat[bad[: good.numel()]] = good
        bad = bad[good.numel() :]
    if bad.numel():
        rest = torch.empty(bad.numel(), dtype=flat.dtype, device=flat.device)
        za, zb = (lo - mean) / sigma, (hi - mean) / sigma
        _fill_by_inverse_cdf(rest, mean, sigma, za, zb, generator)
        flat[bad] = rest.clamp_(lo, hi)


def _fill_by_inverse_cdf(flat, mean, sigma, za, zb, generator):
    """Inverse-CDF sampling in float64 for intervals with little mass (far tails)."""
    flip = za > 0  # sample the mirror interval: ndtri is accurate near 0, not near 1
    if flip:
        za, zb = -zb, -za
    u = torch.empty(flat.shape, dtype=torch.float64, device=flat.device)
    u.uniform_(_cdf(za), _cdf(zb), generator=generator)
    z = torch.special.ndtri(u).clamp_(za, zb)
    flat.copy_(mean + sigma * (-z if flip else z))


@register(
    "trunc_normal",
    aliases=("truncated_normal",),
    formula="W ~ N(mean, std^2) restricted to [mean + a std, mean + b std]",
    activations="any (transformers: std 0.02)",
    paper="-",
)
@torch.no_grad()
def trunc_normal_(
    tensor: torch.Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    *,
    bounds: Literal["std", "absolute"] = "std",
    exact_std: bool = False,
    layout: LayoutLike = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill ``tensor`` with a normal distribution truncated to an interval.

    Formula: W ~ N(mean, sigma^2) conditioned on lo <= W <= hi, where by default
    (``bounds="std"``, as in Keras and JAX) lo = mean + a sigma and hi = mean + b sigma, and with
    ``bounds="absolute"`` (as in ``torch.nn.init.trunc_normal_``) lo = a and hi = b.
    Truncation shrinks the std: at +-2 sigma the result's std is 0.8796256610342398 sigma
    (see :func:`truncated_std`). ``exact_std=True`` draws with sigma = std / truncated_std(a, b)
    so that the result's std is exactly ``std`` (Keras' variance scaling does this); it needs
    bounds in std units. For asymmetric bounds the result's mean is not ``mean``.

    Beware when porting torch code: ``torch.nn.init.trunc_normal_(w, std=0.02)`` truncates at
    +-2 *absolute* (no truncation at all); here the same call truncates at +-2 std = +-0.04.

    Values never leave [lo, hi], in every dtype: the bounds are rounded inward to the tensor's
    dtype (torch's version can return bf16 values outside its bounds). It draws the tensor
    once and redraws only the few out-of-bounds elements (4.6% at +-2 std); torch 2.13 redraws
    the whole tensor until none is out of bounds (about six full draws for 16M elements), and
    older releases used a slower inverse CDF. Intervals holding less than a quarter of the
    mass use the inverse CDF in float64 instead. Bounds beyond the largest |z| torch's CPU
    ``normal_`` can produce (5.77 std in float32, float16 and bfloat16, 8.57 in float64: the
    Box-Muller radius sqrt(-2 ln u) at its smallest uniform u, 2^-24 or 2^-53), such as
    torchtitan's +-2 absolute at std 0.02, cannot cut anything: the tensor is then one plain
    ``normal_`` draw, the same values the rejection pass would have kept, at its cost.

    Example:
        >>> import torch, weightinit
        >>> w = weightinit.trunc_normal_(torch.empty(100_000), std=0.02)
        >>> bool(w.abs().max() <= 0.04)
        True
        >>> w = weightinit.trunc_normal_(torch.empty(100_000), std=0.02, exact_std=True)
        >>> round(w.std().item(), 3)
        0.02
    """
    fn = "trunc_normal_"
    check_fill(tensor, fn, layout)
    mean = finite(fn, "mean", mean)
    std = positive(fn, "std", std)
    choice(fn, "bounds", bounds, ("std", "absolute"))
    for name, value in (("a", a), ("b", b)):
        if not is_number(value) or math.isnan(value):
            raise ValueError(f"{fn}: `{name}` must be a number (inf allowed), got {value!r}")
    if not a < b:
        raise ValueError(f"{fn}: `a` must be < `b`, got a={a}, b={b}")
    if bounds == "std":
        sigma = std / truncated_std(a, b) if exact_std else std
        za, zb = float(a), float(b)
        lo, hi = mean + za * sigma, mean + zb * sigma
    else:
        if exact_std:
            raise ValueError(f"{fn}: `exact_std=True` needs bounds in std units (bounds='std')")
        sigma, lo, hi = std, float(a), float(b)
        za, zb = (lo - mean) / sigma, (hi - mean) / sigma
    if _cdf(zb) - _cdf(za) <= 0:
        raise ValueError(f"{fn}: N({mean}, {sigma}^2) has no mass in [{lo}, {hi}]")
    _representable_within(lo, hi, tensor.dtype)  # raises if no value of the dtype fits
    return Draw("truncated_normal", mean, sigma, lo, hi).fill(tensor, generator, fn=fn)


def _truncated_fill(tensor, mean, sigma, lo, hi, generator) -> torch.Tensor:
    za, zb = (lo - mean) / sigma, (hi - mean) / sigma
    mass = _cdf(zb) - _cdf(za)
    lo, hi = _representable_within(lo, hi, tensor.dtype)
    work = (
        tensor
        if tensor.is_contiguous()
        else torch.empty_like(tensor, memory_format=torch.contiguous_format)
    )
    flat = work.view(-1)
    if _nothing_outside(flat, mean, sigma, lo, hi):
        flat.normal_(mean, sigma, generator=generator)  # the rejection pass would find nothing
    elif mass >= 0.25:
        _fill_by_rejection(flat, mean, sigma, lo, hi, mass, generator)
    else:
        _fill_by_inverse_cdf(flat, mean, sigma, za, zb, generator)
        flat.clamp_(lo, hi)  # rounding to a narrow dtype must not cross the bounds
    if work is not tensor:
        tensor.copy_(work)
    return tensor
