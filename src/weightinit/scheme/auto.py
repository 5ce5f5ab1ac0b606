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

Residual streams (option ``residual``; see :class:`Residual`): by default ("unit") a residual
branch's output layer is at the target variance like every other layer, so the stream
x_l = x_(l-1) + F_l(x_(l-1)) gains that variance at every block, its std growing as sqrt(L):
a 50-block residual MLP ends at std sqrt(51) = 7.1. ``residual="stable"`` (Hayou et al. 2021) gives each
branch's output Var(x_(l-1)) / L, so Var(x_L) = Var(x_0) (1 + 1/L)^L < e Var(x_0) at any depth;
``residual="zero"`` (SkipInit-style, De & Smith 2020) starts each branch's output layer at 0,
so the stream equals its input.

The plan records the predicted output (mean, std) of every weighted layer;
``weightinit.diagnose(model, x, plan=plan)`` shows them next to what it measures.

This module holds the scheme: its options, the layer and recurrent rules, and the moment maps
every framework shares (activations, dropout, pooling). Which op of a trace is which is the
front end's knowledge: for torch, :mod:`weightinit.frontends.torch.propagation` walks the
execution trace, applies these maps and measures the rest, called through ``Survey.frontend``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from weightinit.initializers.activations import moments, quadrature_nodes
from weightinit.initializers.layout import Layout
from weightinit.initializers.structured import orthogonal_
from weightinit.plans.plan import SKIP, Plan, Row
from weightinit.scheme.classic import HE, classic
from weightinit.scheme.protocol import EXAMPLE_INPUT, Choice, Scheme, Survey
from weightinit.scheme.registry import register_scheme
from weightinit.understanding.branches import residual_branches
from weightinit.understanding.graph import Graph
from weightinit.understanding.knowledge import Roles

__all__ = [
    "INPUT_SHARE", "RESIDUAL", "Analysis", "AutoOptions", "Prediction", "Residual", "Signal",
    "recurrent_rule", "through_activation", "through_average", "through_dropout",
    "through_maximum",
]  # fmt: skip

#: the choices of option ``residual`` of "auto" (see :class:`Residual`)
RESIDUAL = ("unit", "stable", "zero")

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
    residual: what a residual branch's output layer gets (see :class:`Residual`): "unit"
    (default: the target variance, so the stream's variance grows by it at every block),
    "stable" (Var(x_(l-1)) / L, Hayou et al. 2021: the stream's variance stays below e times
    its start at any depth) or "zero" (SkipInit-style: 0, so the stream equals its input).
    """

    target_var: float | None = None
    target_std: float | None = None
    distribution: str | None = None
    input_mean: float | None = None
    input_std: float | None = None
    stabilize: bool = True
    residual: str = "unit"

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
        if self.residual not in RESIDUAL:
            raise ValueError(
                f"option `residual` must be one of {', '.join(map(repr, RESIDUAL))}, "
                f"got {self.residual!r}"
            )
        object.__setattr__(self, "target_var", var)
        object.__setattr__(self, "target_std", None)  # one of the two, as a variance
        object.__setattr__(self, "distribution", distribution)
        object.__setattr__(self, "stabilize", bool(self.stabilize))

    def recorded(self) -> dict[str, Any]:
        """What the plan records: every option, the target as a variance."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "target_std"}


@dataclass(frozen=True)
class Residual:
    """What "auto" gives the output layer of each residual branch x_l = x_(l-1) + F_l(x_(l-1)),
    under option ``residual`` (the branches as :func:`~weightinit.understanding.branches.
    residual_branches` finds them in the trace; L of them in the model). With the branches
    uncorrelated with the stream (zero-mean weights), variances add:
    Var(x_l) = Var(x_(l-1)) + Var(F_l).

    - "unit" (default; no :class:`Residual`): Var(F_l) = target, as every layer:
      Var(x_L) = Var(x_0) + L target, the stream's std grows as sqrt(L).
    - "stable": Var(F_l) = Var(x_(l-1)) / L, the branch's output scaled by 1/sqrt(L) relative
      to the stream (Hayou, Clerico, He, Deligiannidis, Doucet & Rousseau, "Stable ResNet",
      AISTATS 2021). Then Var(x_l) = Var(x_(l-1)) (1 + 1/L), so
      Var(x_L) = Var(x_0) (1 + 1/L)^L, which increases with L towards e and stays below it
      (2.69 Var(x_0) at L = 50, 2.71 at L = 200). Every layer inside a branch still gets the
      target from its own input's moments; only the branch's last layer is scaled.
      Var(x_(l-1)) is the predicted variance of the skip input at the residual add; where the
      skip is computed after the branch (a projection shortcut), the target, which auto gives
      the shortcut's own layer.
    - "zero": Var(F_l) = 0, the output layer's weight 0 (SkipInit-style: De & Smith, "Batch
      Normalization Biases Residual Blocks Towards the Identity Function in Deep Networks",
      NeurIPS 2020, scale the branch by a scalar that starts at 0; here the layer itself is 0
      and the model needs no new parameter). At initialization every block is the identity:
      x_L = x_0 exactly (with zero biases); the gradient of the output layer is not 0, so the
      branches start learning at the first step.

    Only branches that end in a weighted layer (a Linear, a conv, attention's output
    projection) can be scaled this way: a branch whose output passes a norm or an activation
    after its last layer is an error under "stable" and "zero".

    ``outputs`` maps each branch's output layer (module name) to the graph node of its skip
    input (None: computed after it); ``count`` is L.

    Example:
        >>> import torch, weightinit as wi
        >>> from weightinit import zoo
        >>> net, x = zoo.residual_mlp(50, width=64, in_features=16, batch=512)
        >>> p = wi.init(net, "auto", example_input=x, residual="stable", seed=0)
        >>> p.notes["residual"]["rule"], p.notes["residual"]["branches"]
        ('stable', 50)
        >>> with torch.no_grad():
        ...     stream = net[:-1](x)
        >>> 1.2 < float(stream.std()) < 2.0   # sqrt((1 + 1/50)^50) = 1.64; "unit": sqrt(51) = 7.1
        True
    """

    rule: str
    count: int
    outputs: dict[str, int | None]

    def target(self, layer: str, signals: list[Signal | None], base: float) -> tuple[float, str]:
        """(the output variance of ``layer``, why) given the signal of every graph node so far
        and the target ``base`` of the other layers."""
        if layer not in self.outputs:
            return base, ""
        if self.rule == "zero":
            return 0.0, "; residual branch output, residual='zero' (SkipInit-style): 0"
        skip = self.outputs[layer]
        stream = signals[skip] if skip is not None and skip < len(signals) else None
        var = base if stream is None else stream.var
        why = (
            f"; residual branch output, residual='stable' (Hayou et al. 2021): Var(stream) "
            f"{var:.3g}{'' if stream is not None else ' (the target)'} / L {self.count}"
        )
        return var / self.count, why

    @classmethod
    def find(cls, model: Any, graph: Graph, auto: AutoOptions) -> Residual | None:
        """The residual branches of the traced ``model`` under ``auto.residual``; None for
        "unit"."""
        if auto.residual == "unit":
            return None
        found = residual_branches(model, graph)
        outputs: dict[str, int | None] = {}
        for branch in found:
            last = branch.layers[-1]
            inputs = graph.nodes[branch.add].inputs if branch.add is not None else []
            sides = [_through_tail(graph, k, last) for k in inputs]
            if sides.count(None) != 1 or len(sides) != 2:
                raise ValueError(
                    f"auto: option residual={auto.residual!r} scales the last layer of each "
                    f"residual branch, but the branch of layers {', '.join(branch.layers)} "
                    f"passes {branch.output or 'a function'} after {last!r} (a norm or an "
                    "activation?), which would undo it; use residual='unit', or a recipe "
                    'written for such blocks ("skipinit", "fixup")'
                )
            end = next(e for e in sides if e is not None)
            skip = inputs[sides.index(None)]
            outputs[last] = skip if skip < end else None
        return cls(auto.residual, len(found), outputs)


#: what may follow a residual branch's last layer before the add: its output's variance stays
#: proportional to the layer's (dropout, identity, taking an attention's output from its tuple)
_TAIL = (nn.modules.dropout._DropoutNd, nn.Identity)


def _through_tail(graph: Graph, node: int, layer: str) -> int | None:
    """The node of ``layer`` (module name; an attention's ``out_proj``: the attention) when
    ``node`` is its output, through dropout, identity and tuple indexing; else None."""
    while True:
        n = graph.nodes[node]
        if n.kind == "module" and (
            n.name == layer
            or (isinstance(n.target, nn.MultiheadAttention) and layer == f"{n.name}.out_proj")
        ):
            return node
        passes = (n.kind == "module" and isinstance(n.target, _TAIL)) or (
            n.kind == "function" and n.target is operator.getitem
        )
        if not passes or not n.inputs:
            return None
        node = n.inputs[0]


@dataclass
class Analysis:
    """What :func:`propagate` found: a choice per weight it sets, the predictions, and the
    residual branches it scaled (None: none, or option ``residual`` "unit")."""

    choices: dict[str, Choice] = field(default_factory=dict)
    predictions: list[Prediction] = field(default_factory=list)
    residual: Residual | None = None


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


def through_activation(act, x: Signal | None, cache: dict | None = None) -> Signal | None:
    """The signal after an elementwise activation phi: for x ~ N(mean, var),
    E[phi(x)] and Var(phi(x)) = E[phi(x)^2] - E[phi(x)]^2 by quadrature (:func:`moments`;
    Poole et al. 2016), the shared share kept. ``cache``: a dict that keeps the moments per
    (activation, mean, variance) across calls, for one model (a module activation is keyed by
    the module, whose state must not change meanwhile).

    Example:
        >>> import weightinit as wi
        >>> from weightinit.scheme.auto import Signal, through_activation
        >>> cache = {}
        >>> y = through_activation(wi.activation("relu"), Signal(0.0, 1.0), cache)
        >>> round(y.mean, 6), round(y.var, 6), len(cache)   # 1/sqrt(2 pi), 1/2 - 1/(2 pi)
        (0.398942, 0.340845, 1)
    """
    if x is None:
        return None
    var = max(x.var, 0.0)
    key = (act.name, act.param, act.fn, x.mean, var)
    try:
        m = None if cache is None else cache.get(key)
    except TypeError:  # an unhashable callable: not kept
        cache = None
        m = None
    if m is None:
        m = moments(act, x.mean, var)
        if cache is not None:
            cache[key] = m
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
    if analysis.residual is not None:
        found = analysis.residual
        s.notes["residual"] = {"rule": found.rule, "branches": found.count,
                               "outputs": list(found.outputs)}  # fmt: skip
    s.predictions.extend(dict(vars(p)) for p in analysis.predictions)  # asdict: numbers, str
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
    held = _held_out(plan)
    if not held:
        return s.frontend.calibrate(
            s.model, plan, batch, seed=seed, max_iter=1, target_var=s.extra.target_var
        )
    sharded = s.frontend.sharded(s.model)
    if sharded:
        raise ValueError(
            f"calibrate: residual='stable' sweeps a copy of the model, and {sharded[0]!r} is "
            "sharded; calibrate the unsharded model, or use residual='unit' or 'zero' here"
        )
    # the sweep brings every layer it calibrates to the target, so the residual branches'
    # output layers are left out of it: their rows become the plan's last, drawn after every
    # other row (a seed draws the rows in order), into a copy of the model that the sweep runs
    # on with them as "skip"; it draws the rest as apply will, and apply draws them as here
    rows = [r for r in plan.rows if r.name not in held] + list(held.values())
    plan = dataclasses.replace(plan, rows=rows)
    model = copy.deepcopy(s.model)
    dataclasses.replace(plan, pending_calibration=False).apply(model, seed=seed, atomic=False)
    out = [Row(r.name, r.module, r.role, SKIP, reason="residual branch output: not swept")
           if r.name in held else r for r in rows]  # fmt: skip
    swept = s.frontend.calibrate(
        model, dataclasses.replace(plan, rows=out), batch, seed=seed, max_iter=1,
        target_var=s.extra.target_var,
    )  # fmt: skip
    swept.rows = [held.get(r.name, r) for r in swept.rows]
    if swept.computed is not None:
        params = dict(model.named_parameters(remove_duplicate=False))
        swept.computed.update({n: params[n].detach() for n in held})
    return swept


def _held_out(plan: Plan) -> dict[str, Row]:
    """The weight rows of the residual branches' output layers that option ``residual``
    scaled ("stable"; "zero" rows are 0, which the sweep leaves as they are anyway)."""
    residual = plan.notes.get("residual")
    if not residual or residual.get("rule") != "stable":
        return {}
    outputs = set(residual["outputs"])

    def layer(name: str) -> str:  # the module holding the weight (behind a parametrization too)
        owner, parametrized, _ = name.partition(".parametrizations.")
        return owner if parametrized else name.rpartition(".")[0]

    return {
        r.name: r
        for r in plan.rows
        if layer(r.name) in outputs and r.role == Roles.WEIGHT and r.init != SKIP
    }


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
