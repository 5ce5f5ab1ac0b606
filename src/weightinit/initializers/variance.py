"""Variance scaling, the one core behind LeCun, Glorot/Xavier, He/Kaiming and random-walk init.

Every initializer here draws zero-mean weights with Var(W) = scale / fan, where fan is chosen by
``mode`` from the layout's fans, and differs only in ``scale`` and ``mode``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Literal

import torch

from weightinit._checks import check_tensor, choice, finite, nothing_to_fill, positive
from weightinit.initializers.activations import activation, gain_squared
from weightinit.initializers.catalog import register
from weightinit.initializers.fills import Draw, report_std, truncated_std
from weightinit.initializers.layout import Geometry, LayoutLike, _as_layout, geometry

__all__ = [
    "glorot_normal_",
    "glorot_uniform_",
    "he_normal_",
    "he_uniform_",
    "kaiming_normal_",
    "kaiming_uniform_",
    "lecun_normal_",
    "lecun_uniform_",
    "packed_variance_scaling_",
    "random_walk_",
    "random_walk_gain",
    "variance_scaling_",
    "xavier_normal_",
    "xavier_uniform_",
]

Mode = Literal["fan_in", "fan_out", "fan_avg", "fan_geo_avg"]
Distribution = Literal["truncated_normal", "normal", "uniform"]
_MODES = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
_DISTRIBUTIONS = ("truncated_normal", "normal", "uniform")


def _fan(g: Geometry, mode: str) -> float:
    return {
        "fan_in": g.fan_in,
        "fan_out": g.fan_out,
        "fan_avg": (g.fan_in + g.fan_out) / 2,
        "fan_geo_avg": math.sqrt(g.fan_in * g.fan_out),
    }[mode]


def _draw(std: float, distribution: str) -> Draw:
    """Zero-mean draws with standard deviation ``std`` from ``distribution``."""
    if distribution == "normal":
        return Draw("normal", 0.0, std)
    if distribution == "uniform":
        bound = math.sqrt(3.0) * std
        return Draw("uniform", low=-bound, high=bound)
    sigma = std / truncated_std(-2.0, 2.0)  # so that the truncated values have std `std`
    return Draw("truncated_normal", 0.0, sigma, -2.0 * sigma, 2.0 * sigma)


@torch.no_grad()
def _scaled(fn, tensor, scale, mode, distribution, layout, generator) -> torch.Tensor:
    """variance_scaling_'s body, with errors worded for the public function ``fn``."""
    check_tensor(tensor, fn)
    scale = positive(fn, "scale", scale)
    choice(fn, "mode", mode, _MODES)
    choice(fn, "distribution", distribution, _DISTRIBUTIONS)
    g = geometry(tensor, layout)
    if nothing_to_fill(tensor) and _fan(g, mode) == 0:
        return tensor
    return _draw(math.sqrt(scale / _fan(g, mode)), distribution).fill(tensor, generator, fn=fn)


@register(
    "variance_scaling",
    formula="Var(W) = scale / fan, fan = fan_in | fan_out | (in+out)/2 | sqrt(in*out)",
    activations="any (choose scale = gain^2)",
    paper="Keras/JAX VarianceScaling",
)
def variance_scaling_(
    tensor: torch.Tensor,
    scale: float = 1.0,
    mode: Mode = "fan_in",
    distribution: Distribution = "truncated_normal",
    *,
    layout: LayoutLike = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill ``tensor`` with zero-mean draws of variance ``scale / fan``.

    Formula: Var(W) = scale / n, with n = fan_in, fan_out, (fan_in + fan_out) / 2 or
    sqrt(fan_in * fan_out) for ``mode`` "fan_in", "fan_out", "fan_avg", "fan_geo_avg", and
    fans from ``layout`` (see :func:`weightinit.fans`). ``distribution``:
    "truncated_normal" (at +-2 std, rescaled so the std is exact, as Keras and JAX do),
    "normal", or "uniform" on [-sqrt(3 scale / n), sqrt(3 scale / n)].
    LeCun (scale 1, fan_in), Glorot (scale 1, fan_avg) and He (scale 2, fan_in) are presets.
    See the Keras/JAX ``VarianceScaling`` initializer; the fan_geo_avg mode keeps the
    geometric mean of the forward and backward gains at 1.

    Example:
        >>> import torch, weightinit
        >>> w = weightinit.variance_scaling_(torch.empty(256, 1024), scale=2.0)
        >>> round(w.var().item() * 1024, 1)
        2.0
    """
    return _scaled("variance_scaling_", tensor, scale, mode, distribution, layout, generator)


@register(
    "packed_variance_scaling",
    formula="Var(W[projection k]) = scales[k] / fan of one projection",
    activations="packed attention projections (q, k, v in one tensor)",
    paper="Huang et al. 2020 (T-Fixup scales v only); Raffel et al. 2020 (T5 scales q)",
)
@torch.no_grad()
def packed_variance_scaling_(
    tensor: torch.Tensor,
    scales: Sequence[float],
    mode: Mode = "fan_in",
    distribution: Distribution = "truncated_normal",
    *,
    layout: LayoutLike = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Variance scaling with its own scale for each of several projections packed in one tensor.

    Formula: Var(W[k]) = scales[k] / n, with n the fan (``mode``, as in
    :func:`variance_scaling_`) of one projection. The projections are the layout's blocks
    (``MultiheadAttention.in_proj_weight``: q, k, v); a layout without blocks (a Linear holding
    packed q, k, v, like GPT-2's ``c_attn``) has its first out axis split into ``len(scales)``
    equal projections. This is how one tensor gets T-Fixup (Huang et al. 2020, "Improving
    Transformer Optimization Through Better Initialization": only v is scaled) or T5's query
    scale (Raffel et al. 2020), with fans per projection as when q, k and v are separate.

    Example:
        >>> import torch, weightinit
        >>> w = weightinit.packed_variance_scaling_(torch.empty(600, 200), [1.0, 1.0, 0.5])
        >>> [round(w[i * 200:(i + 1) * 200].var().item() * 200, 1) for i in range(3)]  # q, k, v
        [1.0, 1.0, 0.5]
    """
    fn = "packed_variance_scaling_"
    check_tensor(tensor, fn)
    choice(fn, "mode", mode, _MODES)
    choice(fn, "distribution", distribution, _DISTRIBUTIONS)
    scales = [positive(fn, "scales", s, allow_zero=True) for s in scales]
    if not scales:
        raise ValueError(f"{fn}: `scales` needs one entry per packed projection, got none")
    g = _packed_geometry(fn, tensor, layout, len(scales))
    fan = _fan(g, mode)
    stds = [math.sqrt(s / fan) if fan else 0.0 for s in scales]
    report_std(math.sqrt(sum(s * s for s in stds) / len(stds)), tensor, fn)  # whole tensor
    if nothing_to_fill(tensor):
        return tensor
    _draw(1.0, distribution).write(tensor, generator)
    column = torch.tensor(stds, dtype=tensor.dtype, device=tensor.device)
    column = column.reshape(-1, *[1] * (len(g.block_shape) - 1))
    return tensor.mul_(g.from_blocks(column.expand(g.block_shape)))


def _packed_geometry(fn: str, tensor: torch.Tensor, layout: LayoutLike, count: int) -> Geometry:
    """The geometry with ``count`` blocks: the layout's own, or its first out axis split."""
    lay = _as_layout(layout, tensor.ndim)
    g = geometry(tensor, lay)
    if g.num_blocks == count:
        return g
    if lay.blocks != 1 or lay.groups != 1:
        raise ValueError(
            f"{fn}: `scales` has {count} entries but the layout has {g.num_blocks} blocks"
        )
    try:
        return geometry(tensor, dataclasses.replace(lay, blocks=count))
    except ValueError as err:
        raise ValueError(f"{fn}: {count} packed projections: {err}") from None


@register(
    "lecun_normal",
    formula="Var(W) = gain^2 / fan_in, normal",
    activations="linear, tanh (lecun_tanh), SELU (self-normalizing nets)",
    paper="LeCun et al. 1998, Efficient BackProp",
)
def lecun_normal_(
    tensor: torch.Tensor,
    gain: float = 1.0,
    *,
    distribution: Distribution = "normal",
    layout: LayoutLike = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """LeCun normal: Var(W) = gain^2 / fan_in (LeCun et al. 1998, "Efficient BackProp").

    The init SELU networks need (Klambauer et al. 2017). Keras and JAX draw it from a truncated
    normal; pass ``distribution="truncated_normal"`` for theirs (same variance).

    Example:
        >>> import torch, weightinit
        >>> w = weightinit.lecun_normal_(torch.empty(512, 400))
        >>> round(w.var().item() * 400, 1)
        1.0
    """
    scale = positive("lecun_normal_", "gain", gain) ** 2
    return _scaled("lecun_normal_", tensor, scale, "fan_in", distribution, layout, generator)


@register(
    "lecun_uniform",
    formula="W ~ U(-b, b), b = gain sqrt(3 / fan_in)",
    activations="linear, tanh, SELU",
    paper="LeCun et al. 1998, Efficient BackProp",
)
def lecun_uniform_(
    tensor: torch.Tensor,
    gain: float = 1.0,
    *,
    layout: LayoutLike = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """LeCun uniform: W ~ U(-b, b) with b = gain sqrt(3 / fan_in), so Var(W) = gain^2 / fan_in.

    From LeCun et al. 1998, "Efficient BackProp".

    Example:
        >>> import torch, weightinit
        >>> w = weightinit.lecun_uniform_(torch.empty(64, 300))
        >>> bool(w.abs().max() <= (3 / 300) ** 0.5)
        True
    """
    scale = positive("lecun_uniform_", "gain", gain) ** 2
    return _scaled("lecun_uniform_", tensor, scale, "fan_in", "uniform", layout, generator)


@register(
    "glorot_normal",
    aliases=("xavier_normal",),
    formula="Var(W) = gain^2 * 2 / (fan_in + fan_out), normal",
    activations="linear, tanh, sigmoid, softmax outputs",
    paper="Glorot & Bengio 2010",
)
def glorot_normal_(
    tensor: torch.Tensor,
    gain: float = 1.0,
    *,
    distribution: Distribution = "normal",
    layout: LayoutLike = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Glorot (Xavier) normal: Var(W) = gain^2 * 2 / (fan_in + fan_out).

    From Glorot & Bengio 2010, "Understanding the difficulty of training deep feedforward
    neural networks": the compromise between keeping forward activations and backward
    gradients at constant variance. Same as ``torch.nn.init.xavier_normal_`` (also exported as
    ``xavier_normal_``); Keras' ``GlorotNormal`` is ``distribution="truncated_normal"``.

    Example:
        >>> import torch, weightinit
        >>> w = weightinit.glorot_normal_(torch.empty(300, 500))
        >>> round(w.var().item() * 400, 1)
        1.0
    """
    scale = positive("glorot_normal_", "gain", gain) ** 2
    return _scaled("glorot_normal_", tensor, scale, "fan_avg", distribution, layout, generator)


@register(
    "glorot_uniform",
    aliases=("xavier_uniform",),
    formula="W ~ U(-b, b), b = gain sqrt(6 / (fan_in + fan_out))",
    activations="linear, tanh, sigmoid (Keras' default kernel init)",
    paper="Glorot & Bengio 2010",
)
def glorot_uniform_(
    tensor: torch.Tensor,
    gain: float = 1.0,
    *,
    layout: LayoutLike = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Glorot (Xavier) uniform: W ~ U(-b, b), b = gain sqrt(6 / (fan_in + fan_out)).

    From Glorot & Bengio 2010. Same as ``torch.nn.init.xavier_uniform_`` (also exported as
    ``xavier_uniform_``) and Keras' default kernel initializer.

    Example:
        >>> import torch, weightinit
        >>> w = weightinit.glorot_uniform_(torch.empty(100, 200))
        >>> bool(w.abs().max() <= (6 / 300) ** 0.5)
        True
    """
    scale = positive("glorot_uniform_", "gain", gain) ** 2
    return _scaled("glorot_uniform_", tensor, scale, "fan_avg", "uniform", layout, generator)


def _he_scale(fn: str, a: float, nonlinearity: str) -> float:
    """gain^2 as torch's kaiming_* compute it: ``a`` is the slope of a leaky ReLU only."""
    a = finite(fn, "a", a)
    leaky = activation(nonlinearity).name == "leaky_relu"  # any spelling or module
    return gain_squared(nonlinearity, a if leaky else None)


@register(
    "he_normal",
    aliases=("kaiming_normal",),
    formula="Var(W) = 2 / ((1 + a^2) fan), normal",
    activations="ReLU, leaky ReLU (slope a), PReLU",
    paper="He et al. 2015, Delving Deep into Rectifiers",
)
def he_normal_(
    tensor: torch.Tensor,
    a: float = 0.0,
    mode: Mode = "fan_in",
    nonlinearity: str = "leaky_relu",
    *,
    distribution: Distribution = "normal",
    layout: LayoutLike = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """He (Kaiming) normal: Var(W) = gain^2 / fan, gain^2 = 2 / (1 + a^2) for (leaky) ReLU.

    From He et al. 2015, "Delving Deep into Rectifiers". ``mode="fan_in"`` keeps forward
    activations at constant variance, ``"fan_out"`` backward gradients. The arguments follow
    ``torch.nn.init.kaiming_normal_`` (also exported as ``kaiming_normal_``), and so do the
    values for ReLU-family and linear nonlinearities; for others the gain comes from
    :func:`weightinit.gain`. Keras' ``HeNormal`` is ``distribution="truncated_normal"``.

    Example:
        >>> import torch, weightinit
        >>> w = weightinit.he_normal_(torch.empty(256, 512), nonlinearity="relu")
        >>> round(w.var().item() * 512, 1)
        2.0
    """
    scale = _he_scale("he_normal_", a, nonlinearity)
    return _scaled("he_normal_", tensor, scale, mode, distribution, layout, generator)


@register(
    "he_uniform",
    aliases=("kaiming_uniform",),
    formula="W ~ U(-b, b), b = sqrt(6 / ((1 + a^2) fan))",
    activations="ReLU, leaky ReLU (slope a), PReLU",
    paper="He et al. 2015, Delving Deep into Rectifiers",
)
def he_uniform_(
    tensor: torch.Tensor,
    a: float = 0.0,
    mode: Mode = "fan_in",
    nonlinearity: str = "leaky_relu",
    *,
    layout: LayoutLike = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """He (Kaiming) uniform: W ~ U(-b, b), b = gain sqrt(3 / fan), gain^2 = 2 / (1 + a^2).

    From He et al. 2015. Arguments as ``torch.nn.init.kaiming_uniform_`` (also exported as
    ``kaiming_uniform_``).

    Example:
        >>> import torch, weightinit
        >>> w = weightinit.he_uniform_(torch.empty(64, 600), nonlinearity="relu")
        >>> bool(w.abs().max() <= (6 / 600) ** 0.5)
        True
    """
    scale = _he_scale("he_uniform_", a, nonlinearity)
    return _scaled("he_uniform_", tensor, scale, mode, "uniform", layout, generator)


xavier_normal_ = glorot_normal_
xavier_uniform_ = glorot_uniform_
kaiming_normal_ = he_normal_
kaiming_uniform_ = he_uniform_


def random_walk_gain(nonlinearity: str, fan_in: int) -> float:
    """Sussillo & Abbott's gain g for a layer of width N = fan_in.

    Formula: g = exp(1 / (2N)) for linear layers and
    g = sqrt(2) exp(1.2 / (max(N, 6) - 2.4)) for ReLU layers (Sussillo & Abbott 2014, eqs. for
    g_linear and g_ReLU), which makes the log of the backpropagated gradient norm an unbiased
    random walk across depth.

    Example:
        >>> import weightinit
        >>> round(weightinit.random_walk_gain("relu", 100), 4)
        1.4317
    """
    choice("random_walk_", "nonlinearity", nonlinearity, ("linear", "relu"))
    if nonlinearity == "linear":
        return math.exp(1.0 / (2 * fan_in))
    return math.sqrt(2.0) * math.exp(1.2 / (max(fan_in, 6) - 2.4))


@register(
    "random_walk",
    formula="W ~ N(0, g^2 / N), g_lin = exp(1/2N), g_relu = sqrt(2) exp(1.2/(max(N,6)-2.4))",
    activations="linear, ReLU (very deep plain nets)",
    paper="Sussillo & Abbott 2014, Random Walk Initialization",
)
@torch.no_grad()
def random_walk_(
    tensor: torch.Tensor,
    nonlinearity: Literal["linear", "relu"] = "relu",
    *,
    distribution: Distribution = "normal",
    layout: LayoutLike = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random-walk init: W ~ N(0, g^2 / N) with N = fan_in and g from :func:`random_walk_gain`.

    From Sussillo & Abbott 2014, "Random Walk Initialization for Training Very Deep
    Feedforward Networks": the gain slightly above the mean-field value (1 or sqrt(2))
    compensates the finite-width drift of the gradient norm.

    Example:
        >>> import torch, weightinit
        >>> w = weightinit.random_walk_(torch.empty(400, 400), "relu")
        >>> round(w.std().item() * 400**0.5, 1)  # g = 1.418 for N = 400
        1.4
    """
    fn = "random_walk_"
    check_tensor(tensor, fn)
    choice(fn, "nonlinearity", nonlinearity, ("linear", "relu"))
    choice(fn, "distribution", distribution, _DISTRIBUTIONS)
    g = geometry(tensor, layout)
    if nothing_to_fill(tensor) and g.fan_in == 0:
        return tensor
    std = random_walk_gain(nonlinearity, g.fan_in) / math.sqrt(g.fan_in)
    return _draw(std, distribution).fill(tensor, generator, fn=fn)
