"""Activations, their Gaussian moments and the gains that keep signals at unit scale.

For z ~ N(mean, var) and an elementwise activation phi, :func:`moments` gives E[phi(z)],
E[phi(z)^2] and E[phi'(z)^2]; :func:`gain` is 1 / sqrt(E[phi(z)^2]) at z ~ N(0, 1). The
expectations are integrals against the Gaussian density, computed by Gauss-Legendre quadrature
on panels whose edges include the inputs where common activations bend (0 for the ReLU family,
+-1 for hardtanh, +-3 for hardswish, 6 for ReLU6), so kinks cost no accuracy: about 1e-12
absolute, where plain Gauss-Hermite quadrature loses four digits at a ReLU kink off the centre.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Activation",
    "ActivationLike",
    "Moments",
    "activation",
    "gain",
    "gain_squared",
    "moments",
]

ActivationLike = Union[str, nn.Module, Callable[[torch.Tensor], torch.Tensor]]


@dataclass(frozen=True)
class Activation:
    """A resolved activation: its name, the function, its parameter, and (where known) the
    closed form of E[phi(z)^2] for z ~ N(0, 1)."""

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    param: float | None = None
    unit_second_moment: float | None = None


def _lecun_tanh(x: torch.Tensor) -> torch.Tensor:
    return 1.7159 * torch.tanh(2.0 * x / 3.0)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


_PHI_1 = math.exp(-0.5) / math.sqrt(2 * math.pi)

# name -> (default parameter, fn(param), closed-form E[phi(z)^2] at z ~ N(0, 1) or None)
_NAMED: dict[str, tuple[float | None, Callable, Callable[[float | None], float] | None]] = {
    "linear": (None, lambda p: _identity, lambda p: 1.0),
    "sigmoid": (None, lambda p: torch.sigmoid, None),
    "tanh": (None, lambda p: torch.tanh, None),
    "relu": (None, lambda p: F.relu, lambda p: 0.5),
    "leaky_relu": (
        0.01,
        lambda p: functools.partial(F.leaky_relu, negative_slope=p),
        lambda p: (1.0 + p * p) / 2.0,
    ),
    "elu": (1.0, lambda p: functools.partial(F.elu, alpha=p), None),
    "celu": (1.0, lambda p: functools.partial(F.celu, alpha=p), None),
    # SELU's constants make E[selu(z)^2] = 1 the fixed point (Klambauer et al. 2017).
    "selu": (None, lambda p: F.selu, lambda p: 1.0),
    "gelu": (None, lambda p: F.gelu, None),
    "gelu_tanh": (None, lambda p: functools.partial(F.gelu, approximate="tanh"), None),
    "silu": (None, lambda p: F.silu, None),
    "mish": (None, lambda p: F.mish, None),
    "softplus": (1.0, lambda p: functools.partial(F.softplus, beta=p), None),
    "softsign": (None, lambda p: F.softsign, None),
    # E[min(z^2, 1)] = 1 - 2 phi(1): the clipped part adds P(|z| > 1).
    "hardtanh": (None, lambda p: F.hardtanh, lambda p: 1.0 - 2.0 * _PHI_1),
    "relu6": (None, lambda p: F.relu6, None),
    "hardswish": (None, lambda p: F.hardswish, None),
    "hardsigmoid": (None, lambda p: F.hardsigmoid, None),
    "lecun_tanh": (None, lambda p: _lecun_tanh, None),
}
_ALIASES = {
    "identity": "linear",
    "swish": "silu",
    # torch.nn.init.calculate_gain's names for linear maps
    **{k: "linear" for k in ("conv1d", "conv2d", "conv3d")},
    **{f"conv_transpose{d}d": "linear" for d in (1, 2, 3)},
}
_PARAMETRIZED_MODULES: dict[type, Callable[[nn.Module], tuple[str, float | None]]] = {
    nn.Identity: lambda m: ("linear", None),
    nn.ReLU: lambda m: ("relu", None),
    nn.LeakyReLU: lambda m: ("leaky_relu", m.negative_slope),
    nn.SELU: lambda m: ("selu", None),
    nn.Tanh: lambda m: ("tanh", None),
    nn.Sigmoid: lambda m: ("sigmoid", None),
    nn.ELU: lambda m: ("elu", m.alpha),
    nn.CELU: lambda m: ("celu", m.alpha),
    nn.GELU: lambda m: ("gelu_tanh" if m.approximate == "tanh" else "gelu", None),
    nn.SiLU: lambda m: ("silu", None),
    nn.Mish: lambda m: ("mish", None),
    nn.ReLU6: lambda m: ("relu6", None),
    nn.Hardswish: lambda m: ("hardswish", None),
    nn.Hardsigmoid: lambda m: ("hardsigmoid", None),
    nn.Softsign: lambda m: ("softsign", None),
}
_FUNCTIONS = {
    F.relu: "relu",
    torch.relu: "relu",
    F.selu: "selu",
    torch.selu: "selu",
    torch.tanh: "tanh",
    F.tanh: "tanh",
    torch.sigmoid: "sigmoid",
    F.sigmoid: "sigmoid",
    F.leaky_relu: "leaky_relu",
}


@functools.lru_cache(maxsize=256)
def _named(name: str, param: float | None) -> Activation:
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in _NAMED:
        import difflib

        close = difflib.get_close_matches(key, [*_NAMED, *_ALIASES], n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"unknown activation {name!r}.{hint} Known: {', '.join(sorted(_NAMED))}; "
            "or pass a torch.nn module or an elementwise callable"
        )
    default, make, closed = _NAMED[key]
    if param is not None and default is None:
        raise ValueError(f"activation {key!r} takes no parameter, got param={param!r}")
    p = default if param is None else float(param)
    return Activation(key, make(p), p, None if closed is None else closed(p))


def activation(spec: ActivationLike, param: float | None = None) -> Activation:
    """Resolve a name ("tanh", "leaky_relu" with ``param`` as slope), a torch.nn activation
    module or an elementwise callable to an :class:`Activation`. A module of your own can name
    the activation it computes with a class attribute ``activation_name`` (and
    ``activation_param``), as :class:`weightinit.modules.LeCunTanh` does.

    Example:
        >>> import torch, weightinit
        >>> weightinit.activation(torch.nn.LeakyReLU(0.2)).param
        0.2
    """
    if isinstance(spec, Activation):
        return spec
    if isinstance(spec, str):
        return _named(spec, param)
    if isinstance(spec, nn.Module) and type(spec) in _PARAMETRIZED_MODULES:
        return _named(*_PARAMETRIZED_MODULES[type(spec)](spec))
    if isinstance(spec, nn.Module) and isinstance(getattr(spec, "activation_name", None), str):
        # modules that name the activation they compute (weightinit.modules.LeCunTanh)
        return _named(spec.activation_name, getattr(spec, "activation_param", None))
    if callable(spec):
        try:
            name = None if isinstance(spec, nn.Module) else _FUNCTIONS.get(spec)
        except TypeError:  # an unhashable callable object
            name = None
        if name is not None:
            return _named(name, param)
        label = getattr(spec, "__name__", type(spec).__name__)
        return Activation(label, spec, param)
    raise TypeError(
        f"`activation` must be a name, a torch.nn module or a callable, got {type(spec).__name__}"
    )


_resolve = activation  # gain() and moments() name their argument `activation`


@dataclass(frozen=True)
class Moments:
    """Moments of phi(z) for z ~ N(mean, var)."""

    mean: float  # E[phi(z)]
    second_moment: float  # E[phi(z)^2]
    derivative_second_moment: float  # E[phi'(z)^2]

    @property
    def var(self) -> float:
        return self.second_moment - self.mean**2


_GL_X, _GL_W = np.polynomial.legendre.leggauss(16)
_KINKS = (0.0, -1.0, 1.0, -3.0, 3.0, 6.0)
_HALF_WIDTH = 12.0  # in std units: the Gaussian mass beyond is 4e-33


def quadrature_nodes(mean: float, std: float) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature inputs x and weights w with sum(w * f(x)) ~= E[f(z)], z ~ N(mean, std^2)."""
    edges = np.linspace(-_HALF_WIDTH, _HALF_WIDTH, 97)
    kinks = [(k - mean) / std for k in _KINKS if abs(k - mean) < _HALF_WIDTH * std]
    edges = np.unique(np.concatenate([edges, kinks]))
    lo, hi = edges[:-1], edges[1:]
    z = ((lo + hi) / 2 + np.outer(_GL_X, hi - lo) / 2).ravel()
    w = (np.outer(_GL_W, hi - lo) / 2).ravel() * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return mean + std * z, w


def eval_dtype(fn: Callable) -> torch.dtype:
    if isinstance(fn, nn.Module):
        for p in fn.parameters():
            if p.is_floating_point():
                return p.dtype
    return torch.float64


def moments(
    activation: ActivationLike, mean: float = 0.0, var: float = 1.0, param: float | None = None
) -> Moments:
    """E[phi(z)], E[phi(z)^2] and E[phi'(z)^2] for z ~ N(mean, var).

    These drive signal propagation: a layer with Var(W) = s / fan_in fed by phi(z) has
    pre-activation variance s E[phi(z)^2] (forward), and the backward gradient variance is
    multiplied by s E[phi'(z)^2] (Poole et al. 2016; Schoenholz et al. 2017). Computed by
    quadrature (see the module docstring); phi' by autograd, so phi must be differentiable by
    torch for the third moment.

    Example:
        >>> import weightinit
        >>> m = weightinit.moments("relu")
        >>> round(m.mean, 6), round(m.second_moment, 6), round(m.derivative_second_moment, 6)
        (0.398942, 0.5, 0.5)
    """
    act = _resolve(activation, param)
    if not (math.isfinite(mean) and math.isfinite(var)) or var < 0:
        raise ValueError(
            f"moments: need a finite `mean` and a finite `var` >= 0, got {mean}, {var}"
        )
    std = math.sqrt(var)
    x_np, w_np = quadrature_nodes(mean, std) if std > 0 else (np.array([mean]), np.array([1.0]))
    dtype = eval_dtype(act.fn)
    x = torch.tensor(x_np, dtype=dtype).requires_grad_(True)
    w = torch.tensor(w_np, dtype=torch.float64)
    with torch.enable_grad():
        y = act.fn(x)
        if not isinstance(y, torch.Tensor) or y.shape != x.shape:
            raise ValueError(
                f"activation {act.name!r} is not elementwise: a tensor of shape {tuple(x.shape)} "
                f"gave {getattr(y, 'shape', type(y).__name__)}"
            )
        if not y.requires_grad:
            raise ValueError(
                f"activation {act.name!r} is not differentiable by torch autograd; "
                "pass a torch-differentiable callable"
            )
        (dy,) = torch.autograd.grad(y.sum(), x)
    y, dy = y.detach().double(), dy.double()
    if not (torch.isfinite(y).all() and torch.isfinite(dy).all()):
        raise ValueError(f"activation {act.name!r} gave non-finite values on N({mean}, {var})")
    return Moments(
        mean=float(w @ y), second_moment=float(w @ y**2), derivative_second_moment=float(w @ dy**2)
    )


def gain(activation: ActivationLike, param: float | None = None) -> float:
    """The gain that keeps a layer's pre-activations at unit variance after ``activation``.

    Formula: gain = 1 / sqrt(E[phi(z)^2]), z ~ N(0, 1). With Var(W) = gain^2 / fan_in, a layer
    fed by phi(z) has unit pre-activation variance again (He et al. 2015 derive sqrt(2) for
    ReLU this way). Closed forms for linear (1), ReLU (sqrt 2), leaky ReLU with slope a
    (sqrt(2 / (1 + a^2))), SELU (1) and hardtanh (1 / sqrt(1 - 2 phi(1))); quadrature for
    every other name, torch.nn activation module or elementwise callable.

    Where this differs from ``torch.nn.init.calculate_gain``, on purpose:

    - tanh: 1.5925 (E[tanh(z)^2] = 0.3943, so unit variance is the fixed point), not torch's
      empirical 5/3, under which the pre-activation variance settles at 1.18 instead of 1,
      further into tanh's saturation.
    - selu: 1, the self-normalizing fixed point of Klambauer et al. 2017, not torch's 3/4.
    - sigmoid: 1.8462, since E[sigmoid(z)^2] = 0.2934 counts the mean 1/2; torch says 1.

    Example:
        >>> import torch, weightinit
        >>> round(weightinit.gain("relu"), 6), round(weightinit.gain("tanh"), 4)
        (1.414214, 1.5925)
        >>> round(weightinit.gain(torch.nn.LeakyReLU(0.2)), 6)
        1.38675
    """
    return math.sqrt(gain_squared(activation, param))


def gain_squared(activation: ActivationLike, param: float | None = None) -> float:
    """gain^2 = 1 / E[phi(z)^2], z ~ N(0, 1): the variance scale of :func:`gain`, exact where
    the closed form is (2.0 for ReLU, not 1.4142...^2).

    Example:
        >>> import weightinit
        >>> weightinit.gain_squared("relu")
        2.0
    """
    act = _resolve(activation, param)
    second = act.unit_second_moment
    if second is None:
        second = moments(act).second_moment
    if second <= 0:
        raise ValueError(f"activation {act.name!r} is zero on N(0, 1): no gain can rescale it")
    return 1.0 / second
