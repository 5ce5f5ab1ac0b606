"""Networks held at the edge of chaos, and self-normalizing networks.

- :func:`critical_point` and the "critical" scheme: the mean-field order-to-chaos boundary
  (Poole et al. 2016; Schoenholz et al. 2017) with orthogonal / delta-orthogonal weights
  (Pennington et al. 2017; Xiao et al. 2018).
- "selu" and :func:`use_alpha_dropout`: self-normalizing networks (Klambauer et al. 2017).
- "lecun_tanh": LeCun's scaled tanh with Var(W) = 1 / fan_in (LeCun et al. 1998).
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from weightinit._checks import subject
from weightinit.initializers.activations import (
    Activation,
    ActivationLike,
    eval_dtype,
    moments,
    quadrature_nodes,
)
from weightinit.initializers.activations import activation as resolve_activation
from weightinit.scheme.classic import FOLLOWERS, classic, orthogonal_weight, scaled
from weightinit.scheme.protocol import Choice, Param, Scheme, Survey
from weightinit.scheme.registry import register_scheme
from weightinit.understanding.knowledge import Kinds, Roles

__all__ = ["CriticalPoint", "critical_point", "use_alpha_dropout"]

DEFAULT_Q_STAR = 1.0 / 64.0


class CriticalPoint(NamedTuple):
    """A point on the order-to-chaos boundary: (sigma_w2, sigma_b2, chi_1, xi).

    ``xi`` is the depth scale xi_q of the pre-activation variance: a perturbation of q away
    from q* decays like exp(-l / xi_q). ``math.inf`` when it does not decay: the q-map's slope
    at q* is 1 (marginal: ReLU, linear, hardtanh at small q*) or above 1 (q* repels: GELU and
    SiLU, where q drifts away from q* over depth). The correlation depth scale
    xi_c = -1 / log(chi_1) is infinite at criticality by definition; :attr:`xi_c` gives it.
    """

    sigma_w2: float  # weight variance times fan_in (orthogonal: gain^2)
    sigma_b2: float  # bias variance
    chi_1: float  # sigma_w^2 E[phi'(u)^2], u ~ N(0, q*): 1 at criticality
    xi: float  # xi_q = -1 / log(sigma_w^2 E[phi'(u)^2 + phi''(u) phi(u)])

    @property
    def xi_c(self) -> float:
        """The correlation depth scale -1 / log(chi_1): infinite at chi_1 = 1."""
        return math.inf if self.chi_1 >= 1.0 else -1.0 / math.log(self.chi_1)


def _check_q_star(q_star: float, where: str) -> float:
    """``where``: the function taking it; empty for the "critical" scheme's option."""
    if isinstance(q_star, bool) or not isinstance(q_star, numbers.Real):
        raise TypeError(f"{subject(where, 'q_star')} must be a positive float, got {q_star!r}")
    if not (math.isfinite(q_star) and q_star > 0):
        raise ValueError(
            f"{subject(where, 'q_star')} (the fixed-point pre-activation variance) must be "
            f"finite and > 0, got {q_star!r}; e.g. q_star={DEFAULT_Q_STAR}"
        )
    return float(q_star)


def _q_map_slope(act: Activation, q_star: float, sigma_w2: float) -> float:
    """d q_{l+1} / d q_l at q*: sigma_w^2 E[phi'(u)^2 + phi''(u) phi(u)], u ~ N(0, q*).

    Computed as sigma_w^2 E[z phi(u) phi'(u)] / sqrt(q*) with u = sqrt(q*) z (Gaussian
    integration by parts, Stein's lemma), which needs phi' only: exact also where phi' jumps
    (hardtanh's corners put Dirac masses into phi'' that autograd would miss).
    """
    x_np, w_np = quadrature_nodes(0.0, math.sqrt(q_star))
    x = torch.tensor(x_np, dtype=eval_dtype(act.fn)).requires_grad_(True)
    with torch.enable_grad():
        y = act.fn(x)
        (dy,) = torch.autograd.grad(y.sum(), x)
    z = torch.tensor(x_np / math.sqrt(q_star), dtype=torch.float64)
    w = torch.tensor(w_np, dtype=torch.float64)
    return sigma_w2 * float(w @ (z * y.detach().double() * dy.double())) / math.sqrt(q_star)


def _feasible_q_star(act: Activation) -> float | None:
    """The smallest q* on a grid from 1e-4 to 1e4 (8 a decade) where sigma_b^2 >= 0, if any."""
    for q in np.logspace(-4, 4, 33):
        m = moments(act, 0.0, float(q))
        if m.derivative_second_moment > 0 and q >= m.second_moment / m.derivative_second_moment:
            return float(q)
    return None


def critical_point(activation: ActivationLike, q_star: float = DEFAULT_Q_STAR) -> CriticalPoint:
    """The mean-field critical point of ``activation`` at pre-activation variance ``q_star``.

    A deep network with weights of variance sigma_w^2 / fan_in and biases N(0, sigma_b^2) maps
    the pre-activation variance as q_{l+1} = sigma_w^2 E[phi(sqrt(q_l) z)^2] + sigma_b^2 and
    multiplies small perturbations by chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2] per layer
    (Poole et al. 2016; Schoenholz, Gilmer, Ganguli & Sohl-Dickstein 2017, "Deep Information
    Propagation"). Criticality, chi_1 = 1 with q* a fixed point, gives::

        sigma_w^2 = 1 / E[phi'(sqrt(q*) z)^2]
        sigma_b^2 = q* - sigma_w^2 E[phi(sqrt(q*) z)^2]
        xi_q = -1 / log(sigma_w^2 E[phi'(u)^2 + phi''(u) phi(u)]),  u ~ N(0, q*)

    There the input-output Jacobian's mean squared singular value stays 1 at any depth, and
    with orthogonal weights its spectrum stays concentrated for small q* (Pennington,
    Schoenholz & Ganguli 2017, "Resurrecting the sigmoid"). ``xi`` is xi_q, the depth over
    which q settles at q*; xi_c (correlations) is infinite here (:attr:`CriticalPoint.xi_c`).
    Expectations by the quadrature of :func:`weightinit.moments` (about 1e-12 accurate, so
    chi_1 = 1 to well below 1e-6); phi'' enters only through E[z phi phi'] / sqrt(q*), so
    kinks are handled.

    Raises ValueError when sigma_b^2 would be negative: the activation has no critical point at
    this q* (sigmoid below q* = 56: its mean makes E[phi^2] too large); the message names a q*
    that has one, if any.

    Example:
        >>> import weightinit
        >>> sw2, sb2, chi_1, xi = weightinit.critical_point("tanh", q_star=0.0259)
        >>> round(sw2, 3), f"{sb2:.1e}", round(chi_1, 9), round(xi, 1)
        (1.05, '2.0e-05', 1.0, 20.3)
    """
    q_star = _check_q_star(q_star, "critical_point")
    act = resolve_activation(activation)
    try:
        m = moments(act, 0.0, q_star)
    except ValueError as err:
        raise ValueError(f"critical_point: {err}") from None
    if not m.derivative_second_moment > 0:
        raise ValueError(
            f"critical_point: activation {act.name!r} has phi' = 0 on N(0, {q_star:g}): no "
            "weight variance makes chi_1 = 1; pass a non-constant activation"
        )
    sigma_w2 = 1.0 / m.derivative_second_moment
    sigma_b2 = q_star - sigma_w2 * m.second_moment
    if sigma_b2 < -1e-9 * q_star:
        feasible = _feasible_q_star(act)
        hint = (
            f"try q_star={feasible:.4g}, where sigma_b^2 >= 0"
            if feasible is not None
            else "no q_star between 1e-4 and 1e4 has one"
        )
        raise ValueError(
            f"critical_point: activation {act.name!r} has no critical point at "
            f"q_star={q_star:g}: chi_1 = 1 needs sigma_w^2 = {sigma_w2:.4g}, and then the bias "
            f"variance sigma_b^2 = q* - sigma_w^2 E[phi^2] = {sigma_b2:.4g} < 0; {hint}. "
            "Zero-mean odd activations (tanh, erf-like) have one at every q*; otherwise use "
            "the 'he' or 'orthogonal' scheme"
        )
    sigma_b2 = max(sigma_b2, 0.0)  # ReLU-like: 0 exactly, up to rounding
    slope = _q_map_slope(act, q_star, sigma_w2)
    # slope >= 1: q* does not attract (marginal, as ReLU's linear q-map, or repelling); the
    # margin absorbs the quadrature's rounding (hardtanh at small q* is linear to 1e-13)
    xi = -1.0 / math.log(slope) if 0 < slope < 1 - 1e-9 else math.inf
    return CriticalPoint(sigma_w2, sigma_b2, sigma_w2 * m.derivative_second_moment, xi)


# ---------------------------------------------------------------- the "critical" scheme


@dataclass(frozen=True)
class CriticalOptions:
    """``q_star``: the pre-activation variance of the fixed point (default 1/64).

    Small q* keeps the Jacobian's spectrum concentrated: with orthogonal weights its squared
    singular values have variance about L Var(sigma_w^2 phi'(u)^2) at depth L (Pennington et
    al. 2017), about 8 L q*^2 for tanh at small q*: 0.34 at L = 200 for q* = 1/64.
    """

    q_star: float = DEFAULT_Q_STAR

    def __post_init__(self):
        _check_q_star(self.q_star, "")


_OWN_GATES = (Kinds.ATTENTION, Kinds.RECURRENT)  # their own nonlinearities, not the follower's


def _critical_survey(s: Survey) -> dict[str, Choice]:
    q_star = s.extra.q_star
    points: dict[Activation, CriticalPoint] = {}
    layers: dict[Activation, int] = {}
    choices: dict[str, Choice] = {}
    for p in s.params:
        if p.info.role not in (Roles.WEIGHT, Roles.BIAS) or p.kind in _OWN_GATES:
            continue  # the fallback: orthogonal with the next activation's gain
        act = p.follower.activation if p.follower is not None else None
        if act is None:
            if p.info.role == Roles.WEIGHT:
                what = p.follower.describe() if p.follower is not None else "not traced"
                reason = f"{what}: no activation (read-out), gain 1"
                choices[p.name] = _orthogonal(p, 1.0, reason)
            continue
        if act not in points:
            try:
                points[act] = critical_point(act, q_star)
            except ValueError as err:
                raise ValueError(f"scheme 'critical', layer of {p.name!r}: {err}") from None
        cp = points[act]
        where = f"critical point of {act.name} at q*={q_star:.4g}"
        if p.info.role == Roles.BIAS:
            if cp.sigma_b2 == 0:
                choices[p.name] = Choice("zeros", {}, f"{where}: sigma_b^2 = 0")
            else:
                std = math.sqrt(cp.sigma_b2)
                choices[p.name] = Choice("normal", {"std": std}, f"{where}: N(0, sigma_b^2)")
            continue
        layers[act] = layers.get(act, 0) + 1
        reason = f"{where}: sigma_w^2 = {cp.sigma_w2:.4g} (Schoenholz et al. 2017)"
        choices[p.name] = _orthogonal(p, cp.sigma_w2, reason)
    for act, cp in points.items():
        label = act.name if act.param is None else f"{act.name}({act.param:g})"
        s.notes[label] = {
            "q_star": q_star,
            "sigma_w2": cp.sigma_w2,
            "sigma_b2": cp.sigma_b2,
            "chi_1": cp.chi_1,
            "xi_q": cp.xi if math.isfinite(cp.xi) else "inf",
            "layers": layers.get(act, 0),
            # the input variance that starts the first layer at q* (scale standardized data)
            "input_var": (q_star - cp.sigma_b2) / cp.sigma_w2,
        }
    return choices


def _orthogonal(p: Param, sigma_w2: float, reason: str) -> Choice:
    """Orthogonal (dense) or delta-orthogonal (conv) weights whose pre-activations have variance
    sigma_w^2 times the input's second moment, as Var(W) = sigma_w^2 / fan_in gives.

    Rows of a wide Q are orthonormal (gain sqrt(sigma_w^2)); a tall Q has orthonormal columns
    and shrinks each output's variance by n_in / n_out, so its gain^2 is sigma_w^2 n_out / n_in.
    """
    g = p.geometry
    if g.receptive and g.receptive_size > 1:
        ratio, init = g.n_out / g.n_in, "delta_orthogonal"
        reason += "; delta-orthogonal (Xiao et al. 2018)"
    else:
        ratio, init = g.n_out / max(g.fan_in, 1), "orthogonal"
        reason += "; orthogonal"
    gain2 = sigma_w2 * max(1.0, ratio)
    if ratio > 1:
        reason += f", gain^2 x {ratio:.4g} for {g.n_out} outputs > inputs"
    return Choice(init, {"gain": math.sqrt(gain2)}, reason)


register_scheme(
    Scheme(
        "critical",
        "edge of chaos: orthogonal / delta-orthogonal weights and N(0, sigma_b^2) biases at the "
        "mean-field critical point of each activation, chi_1 = 1 (Schoenholz et al. 2017; "
        "Pennington et al. 2017; Xiao et al. 2018); option q_star",
        classic(orthogonal_weight),
        needs=FOLLOWERS,
        survey=_critical_survey,
        extra=CriticalOptions,
    )
)

# ---------------------------------------------------------------- SELU and AlphaDropout

_ALPHA_FOR = {
    nn.Dropout: nn.AlphaDropout,
    nn.Dropout1d: nn.FeatureAlphaDropout,
    nn.Dropout2d: nn.FeatureAlphaDropout,
    nn.Dropout3d: nn.FeatureAlphaDropout,
}


def _plain_dropouts(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every place that holds a plain dropout (a module shared by several places, at each)."""
    found = model.named_modules(remove_duplicate=False)
    return [(n, m) for n, m in found if type(m) in _ALPHA_FOR]


def use_alpha_dropout(model: nn.Module) -> dict[str, nn.Module]:
    """Replace every ``nn.Dropout`` in ``model`` by ``nn.AlphaDropout`` with the same ``p``
    (``Dropout1d/2d/3d`` by ``nn.FeatureAlphaDropout``); returns the replaced modules by name.

    Plain dropout zeroes units and scales the rest by 1 / (1 - p): the mean stays, but the
    variance grows, and 0 is not SELU's saturation value, so a SELU network loses its fixed
    point (mean 0, variance 1). Alpha dropout sets dropped units to SELU's negative saturation
    alpha' = -lambda alpha = -1.7581 and applies the affine map a x + b with
    a = ((1 - p)(1 + p alpha'^2))^(-1/2), b = -a alpha' p, which keeps mean 0 and variance 1
    (Klambauer, Unterthiner, Mayr & Hochreiter 2017, "Self-Normalizing Neural Networks").
    Training mode and ``inplace`` carry over. Validates everything first: on an error the
    model is unchanged.

    Example:
        >>> import torch
        >>> from weightinit.recipes import use_alpha_dropout
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.SELU(), torch.nn.Dropout(0.1))
        >>> use_alpha_dropout(net)
        {'2': Dropout(p=0.1, inplace=False)}
        >>> net[2]
        AlphaDropout(p=0.1, inplace=False)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"use_alpha_dropout: `model` must be a torch.nn.Module, got {model!r}")
    found = _plain_dropouts(model)
    for name, module in found:
        if name == "":
            raise ValueError(
                "use_alpha_dropout: `model` is itself a Dropout, which cannot be replaced in "
                "place; use torch.nn.AlphaDropout(p) directly"
            )
        if not 0.0 <= module.p < 1.0:
            raise ValueError(
                f"use_alpha_dropout: module {name!r} has p={module.p}; alpha dropout needs "
                "0 <= p < 1 (at p = 1 its scale a = ((1 - p)(1 + p alpha'^2))^(-1/2) is "
                "infinite): lower p or remove the module"
            )
    replaced: dict[str, nn.Module] = {}
    for name, module in found:
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        new = _ALPHA_FOR[type(module)](p=module.p, inplace=module.inplace)
        new.train(module.training)
        setattr(parent, leaf, new)
        replaced[name] = module
    return replaced


def _selu_survey(s: Survey) -> dict[str, Choice]:
    plain = [name for name, _ in _plain_dropouts(s.model)]
    if plain:
        s.notes["dropout"] = (
            f"plain Dropout in {', '.join(plain)} breaks self-normalization; "
            "weightinit.recipes.use_alpha_dropout(model) replaces it by AlphaDropout"
        )
        warnings.warn(f"scheme 'selu': {s.notes['dropout']}", UserWarning, stacklevel=4)
    s.notes["fixed_point"] = "SELU activations at mean 0, variance 1 (Klambauer et al. 2017)"
    return {}


register_scheme(
    Scheme(
        "selu",
        "self-normalizing networks: LeCun normal Var(W) = 1 / fan_in, zero biases; warns about "
        "plain Dropout (use_alpha_dropout) (Klambauer et al. 2017)",
        classic(scaled(lambda g2: 1.0, "fan_in", "normal", "SELU: LeCun normal, 1 / fan_in")),
        survey=_selu_survey,
    )
)

# ---------------------------------------------------------------- LeCun's tanh


@functools.cache
def _lecun_tanh_fixed_point() -> float:
    """The pre-activation variance v* = E[f(sqrt(v*) z)^2] of a LeCunTanh net under
    Var(W) = 1 / fan_in: where the forward signal settles (0.3824)."""
    v, previous = 1.0, 0.0
    while abs(v - previous) > 1e-12:
        v, previous = moments("lecun_tanh", 0.0, v).second_moment, v
    return v


def _lecun_tanh_survey(s: Survey) -> dict[str, Choice]:
    others = sorted(
        {
            p.follower.activation.name
            for p in s.params
            if p.follower is not None
            and p.follower.activation is not None
            and p.follower.activation.name != "lecun_tanh"
        }
    )
    if others:
        s.notes["other_activations"] = (
            f"{', '.join(others)}: this scheme is written for LeCunTanh (weightinit.modules)"
        )
    s.notes["inputs"] = "standardize each input to mean 0, variance 1 (LeCun et al. 1998, 4.3)"
    s.notes["variance_fixed_point"] = _lecun_tanh_fixed_point()
    return {}


register_scheme(
    Scheme(
        "lecun_tanh",
        "LeCun et al. 1998 for LeCunTanh nets (1.7159 tanh(2x/3)): Var(W) = 1 / fan_in, zero "
        "biases, standardized inputs",
        classic(scaled(lambda g2: 1.0, "fan_in", "normal", "LeCun 1998: Var = 1 / fan_in")),
        needs=FOLLOWERS,
        survey=_lecun_tanh_survey,
    )
)
