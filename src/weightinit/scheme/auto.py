"""The "auto" scheme: analytic signal propagation, data-free.

In the spirit of AutoInit (Bingham & Miikkulainen, "AutoInit: Analytic Signal-Preserving
Weight Initialization for Neural Networks", AAAI 2023): the (mean, variance) of the signal is
carried through the traced graph in execution order, from the input's statistics, and every
weighted layer gets the weight variance that gives its output the target variance:

    Var(W) = target / (fan_in * E[x^2]),   E[x^2] = Var(x) + E[x]^2,

where x is the layer's input and fan_in the number of inputs each output sums (for convs the
exact mean count over output positions, padding included). Between layers, every op maps
(mean, var) to (mean, var):

- elementwise activations: Gaussian moments by quadrature (:func:`weightinit.moments`), for
  built-ins, torch.nn activation modules and any elementwise callable;
- dropout (training mode): mean kept, E[y^2] = E[x^2] / (1 - p), exact;
- average pooling over k inputs: mean kept, variance / k (exact for independent inputs); max
  pooling: the moments of the maximum of k independent normals, by quadrature;
- residual add and subtraction: means add, variances add (independent branches); products of
  independent signals: E[xy] = E[x]E[y], E[(xy)^2] = E[x^2]E[y^2]; scaling by constants;
- concatenation: the size-weighted mixture of the parts;
- normalization layers: reset to their affine output (shift, scale^2), RMSNorm to second
  moment scale^2;
- attention: q and k at unit variance, so the logits have variance 1; the values are averaged
  by the softmax weights, which multiplies their variance by E[sum_j a_j^2] (computed for the
  traced key count and mask); the output projection restores the target;
- recurrent layers: see :func:`recurrent_rule`;
- flatten, reshape, permute, indexing: pass-through;
- comparisons, argmax, ``.item()`` and other statistics computed for Python control flow: no
  signal (a bool or integer result carries none; what reaches no layer is not propagated);
- anything else is *measured*: run on Gaussian inputs with the current statistics (fixed seed,
  state restored), additive-mask entries of its inputs kept, non-finite outputs left out, and
  the plan's reason column says so.

A model on the meta device gets its analytic plan without memory (an op measured there runs on
a CPU stand-in, tensors without values taken as zeros); the stabilizing sweep then awaits the
weights (``pending_calibration``).

The plan records the predicted output (mean, std) of every weighted layer;
``weightinit.diagnose(model, x, plan=plan)`` shows them next to what it measures.

This module holds the scheme: its options, the layer and recurrent rules, and the moment maps
every framework shares (activations, dropout, pooling). Which op of a trace is which is the
front end's knowledge: for torch, :mod:`weightinit.frontends.torch.propagation` walks the
execution trace, applies these maps and measures the rest, called through ``Survey.frontend``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from weightinit.initializers.activations import moments, quadrature_nodes
from weightinit.initializers.layout import Layout
from weightinit.initializers.structured import orthogonal_
from weightinit.plans.plan import Plan
from weightinit.scheme.classic import HE, classic
from weightinit.scheme.protocol import EXAMPLE_INPUT, Choice, Scheme, Survey
from weightinit.scheme.registry import register_scheme
from weightinit.understanding.knowledge import Roles

__all__ = [
    "INPUT_SHARE", "Analysis", "AutoOptions", "Prediction", "Signal", "recurrent_rule",
    "through_activation", "through_average", "through_dropout", "through_maximum",
]  # fmt: skip

#: share of a recurrent gate's pre-activation variance that comes from the input (the rest
#: comes from the hidden state); see :func:`recurrent_rule`
INPUT_SHARE = 0.5


@dataclass(frozen=True)
class Signal:
    """Mean and variance of a signal, over all its elements, and the share of the variance
    common to all positions of a sequence (``shared``: 0 for independent tokens, 1 when every
    token is the same), which attention needs."""

    mean: float
    var: float
    shared: float = 0.0

    @property
    def second(self) -> float:
        """E[x^2] = Var(x) + E[x]^2."""
        return self.var + self.mean * self.mean

    @property
    def std(self) -> float:
        return math.sqrt(max(self.var, 0.0))


@dataclass
class Prediction:
    """The predicted output of one weighted layer (first call)."""

    layer: str
    module: str
    mean: float
    std: float
    input_mean: float | None
    input_std: float | None
    how: str  # "analytic", or what had to be measured on the way


@dataclass(frozen=True)
class AutoOptions:
    """Options of the "auto" scheme.

    target_var: the variance every weighted layer's output gets (pre-activations; for
    recurrent layers, the gates' pre-activations); or target_std, not both.
    distribution: "truncated_normal" (default), "normal", "uniform" or "orthogonal".
    input_mean / input_std: the input's statistics (default: measured on
    ``example_input``). stabilize: after the analytic plan, one calibration sweep on a
    Gaussian batch with the input's shape and statistics (no data needed) corrects what the
    drawn weights deviate from their expected scale; see :func:`gaussian_like`. With
    ``data=`` the sweep runs on the data instead.
    """

    target_var: float | None = None
    target_std: float | None = None
    distribution: str | None = None
    input_mean: float | None = None
    input_std: float | None = None
    stabilize: bool = True

    def __post_init__(self) -> None:
        if self.target_std is not None and self.target_var is not None:
            raise ValueError("pass option `target_std` or `target_var`, not both")
        var = self.target_var
        if self.target_std is not None:
            var = float(self.target_std) ** 2
        var = 1.0 if var is None else float(var)
        if not (math.isfinite(var) and var > 0):
            raise ValueError(f"option `target_var` must be finite and > 0, got {var}")
        allowed = ("truncated_normal", "normal", "uniform", "orthogonal")
        distribution = self.distribution or "truncated_normal"
        if distribution not in allowed:
            raise ValueError(
                f"option `distribution` must be one of {', '.join(map(repr, allowed))}, "
                f"got {distribution!r}"
            )
        if self.input_std is not None and not self.input_std > 0:
            raise ValueError(f"option `input_std` must be > 0, got {self.input_std}")
        object.__setattr__(self, "target_var", var)
        object.__setattr__(self, "target_std", None)  # one of the two, as a variance
        object.__setattr__(self, "distribution", distribution)
        object.__setattr__(self, "stabilize", bool(self.stabilize))

    def recorded(self) -> dict[str, Any]:
        """What the plan records: every option, the target as a variance."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "target_std"}


@dataclass
class Analysis:
    """What :func:`propagate` found: a choice per weight it sets, and the predictions."""

    choices: dict[str, Choice] = field(default_factory=dict)
    predictions: list[Prediction] = field(default_factory=list)


# What the plan already fixed for a parameter that auto does not choose (rules, skip, frozen,
# tied): (mean, second moment) of its values, or None when auto chooses it.
Fixed = Callable[[str], "tuple[float, float] | None"]


def recurrent_rule(
    mode: str,
    pre_var: float,
    gate_bias: dict[str, float],
    hidden: int,
    fan_in: int,
    share: float = INPUT_SHARE,
) -> tuple[float, float, float]:
    """(gain, E[h], E[h^2]) of a recurrent layer: the orthogonal recurrent weights' gain and
    the hidden state's stationary moments, when every gate's pre-activation has variance v =
    ``pre_var``.

    The rule behind "auto" for RNN, LSTM and GRU layers (and cells): each gate's
    pre-activation z = W_ih x + W_hh h + b gets variance v, a share s from the input
    (Var(W_ih) = s v / (fan_in E[x^2])) and the rest from the hidden state, through
    orthogonal recurrent weights per gate with gain g: g^2 E[h^2] = (1 - s) v. E[h^2] is the
    stationary point of the recurrence, so the hidden state's variance is the same at every
    time step once past the first few:

    - RNN: z ~ N(b, v) at every step, so E[h^2] = E[phi(z)^2] (phi tanh or relu), exactly;
    - LSTM and GRU: the cell state sums correlated steps (c = f c + i g with g persistent
      through h), which the independent-steps closed form E[c^2] = E[i^2 g^2] / (1 - E[f^2])
      underestimates about 7-fold at v = 1. So g solves g^2 E[h^2](g) = (1 - s) v by bisection
      on log g, E[h^2](g) measured by running the gates' recurrence (orthogonal recurrent
      weights of the layer's size, input weights of its fan-in fed white input, the plan's
      gate biases; a small fan-in correlates the gates' input drive, which raises E[h^2]) for
      120 steps on 32 sequences from a fixed seed (the last 40 steps averaged: the cell
      state takes tens of steps to settle).
    """
    v = pre_var
    if mode in ("RNN_TANH", "RNN_RELU"):
        m = moments("tanh" if mode == "RNN_TANH" else "relu", gate_bias.get("h", 0.0), v)
        return math.sqrt((1 - share) * v / m.second_moment), m.mean, m.second_moment
    if mode not in ("LSTM", "GRU"):
        raise ValueError(f"auto: unknown recurrent mode {mode!r}")
    gates = 4 if mode == "LSTM" else 3
    gen = torch.Generator().manual_seed(0)
    size = min(hidden, 128)  # the stationary point barely depends on the size beyond that
    # Haar-orthogonal per gate, as the plan draws them (a bare QR is not Haar: its eigenvalues,
    # and so the hidden state's persistence, differ)
    w_hh = orthogonal_(torch.empty(gates * size, size, dtype=torch.float64),
                       layout=Layout(blocks=gates), generator=gen)  # fmt: skip
    fan = min(fan_in, 1024)
    w_ih = torch.randn(gates * size, fan, generator=gen, dtype=torch.float64)
    w_ih *= math.sqrt(share * v / fan)
    noise = torch.randn(120, 32, fan, generator=gen, dtype=torch.float64) @ w_ih.T
    order = "ifgo" if mode == "LSTM" else "rzn"
    bias = torch.tensor([gate_bias.get(k, 0.0) for k in order], dtype=torch.float64)
    bias = bias.repeat_interleave(size)

    def stationary(gain: float) -> float:
        h = torch.zeros(noise.shape[1], size, dtype=torch.float64)
        c = torch.zeros_like(h)
        seen = []
        for t in range(noise.shape[0]):
            x_part = noise[t] + bias
            if mode == "LSTM":
                i, f, g, o = (x_part + gain * h @ w_hh.T).chunk(4, 1)
                c = f.sigmoid() * c + i.sigmoid() * g.tanh()
                h = o.sigmoid() * c.tanh()
            else:
                xr, xz, xn = x_part.chunk(3, 1)
                hr, hz, hn = (gain * h @ w_hh.T).chunk(3, 1)
                r, z = (xr + hr).sigmoid(), (xz + hz).sigmoid()
                h = (1 - z) * (xn + r * hn).tanh() + z * h
            if t >= noise.shape[0] - 40:
                seen.append(h)
        return float(torch.stack(seen).pow(2).mean())

    lo, hi = math.log(1e-2), math.log(1e2)
    for _ in range(16):  # g^2 E[h^2](g) increases with g; 16 halvings: g to 0.01%
        mid = (lo + hi) / 2
        g = math.exp(mid)
        lo, hi = (mid, hi) if g * g * stationary(g) < (1 - share) * v else (lo, mid)
    g = math.exp((lo + hi) / 2)
    return g, 0.0, stationary(g)


# --- moments through the ops every framework has -------------------------------------------


def through_activation(act, x: Signal | None) -> Signal | None:
    if x is None:
        return None
    m = moments(act, x.mean, max(x.var, 0.0))
    return Signal(m.mean, max(m.second_moment - m.mean**2, 0.0), x.shared)


def through_dropout(x: Signal | None, p: float) -> Signal | None:
    """Inverted dropout: y = x m / (1 - p), m ~ Bernoulli(1 - p): E[y] = E[x], E[y^2] =
    E[x^2] / (1 - p)."""
    if x is None or p == 0:
        return x
    second = x.second / (1.0 - p)
    var = second - x.mean**2  # the masks differ by position: the shared covariance stays
    return Signal(x.mean, var, x.shared * x.var / var if var > 0 else 0.0)


def through_average(x: Signal | None, k: int) -> Signal | None:
    """The mean of k independent copies."""
    return None if x is None else Signal(x.mean, x.var / max(k, 1))


def through_maximum(x: Signal | None, k: int) -> Signal | None:
    """The maximum of k independent N(mean, var): density k phi(z) Phi(z)^(k-1), by
    quadrature on the same panels as the activation moments."""
    if x is None or k <= 1 or x.var <= 0:
        return x
    z, w = quadrature_nodes(0.0, 1.0)
    cdf = 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0)))
    weight = w * k * cdf ** (k - 1)
    values = x.mean + x.std * z
    mean = float(weight @ values)
    return Signal(mean, float(weight @ values**2) - mean * mean)


# --- the "auto" scheme ----------------------------------------------------------------------

_HE = classic(HE)  # for what the traced forward pass does not reach


def _survey(s: Survey) -> dict[str, Choice]:
    """Propagate the signal through the traced forward pass; choose every weight it reaches
    from its input's moments, the rest as "he" does."""
    if s.options.relu_bias is not None:
        raise ValueError(
            "`relu_bias` is not an option of 'auto' (it sets every scale from the signal, "
            "biases at `bias`); use rules={'*.bias': ('constant', {'val': 0.01})}"
        )
    analysis = s.frontend.propagate(s)
    s.predictions.extend(dataclasses.asdict(p) for p in analysis.predictions)
    choices = {}
    for p in s.params:
        choice = analysis.choices.get(p.plain)
        if choice is None:
            choice = _HE(p, s.options)
            if p.role in (Roles.WEIGHT, Roles.RECURRENT):
                reason = f"not reached by the traced forward pass: {choice.reason}"
                choice = Choice(choice.init, choice.args, reason)
        choices[p.name] = choice
    return choices


def _calibrate(plan: Plan, s: Survey) -> Plan:
    """One stabilizing sweep: on ``data``, or on a Gaussian stand-in for the input with its
    statistics (data-free; see :meth:`~weightinit.frontends.torch.TorchFrontend.stand_in`).

    The sweep runs the model, so it needs the weights in memory: on the meta device, without
    ``data``, the plan is the analytic one, awaiting calibration (as "lsuv"'s), which
    :func:`weightinit.calibrate` completes once the model is materialized."""
    if s.data is None and not s.extra.stabilize:
        return plan
    if s.data is None and s.frontend.on_meta_device(plan, s.model):
        return dataclasses.replace(plan, pending_calibration=True)
    if s.data is None and s.example_input is None:
        raise ValueError(
            "calibrate: scheme 'auto' runs its stabilizing sweep on a Gaussian stand-in for "
            "the input: pass example_input=batch (or data=batch)"
        )
    batch = s.data if s.data is not None else s.frontend.stand_in(s)
    seed = 0 if s.seed is None else s.seed
    return s.frontend.calibrate(
        s.model, plan, batch, seed=seed, max_iter=1, target_var=s.extra.target_var
    )


register_scheme(
    Scheme(
        "auto",
        "analytic signal propagation (after AutoInit, Bingham & Miikkulainen 2023): every "
        "layer's output at unit variance from its input's moments, then one stabilizing sweep; "
        "needs example_input=batch",
        None,  # the survey chooses every parameter
        needs={EXAMPLE_INPUT: "propagates the signal through an actual forward pass"},
        survey=_survey,
        calibrate=_calibrate,
        extra=AutoOptions,
    )
)
