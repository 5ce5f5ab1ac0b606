"""Schemes: policies that choose an initializer for each parameter from its role and the
activation after its layer. A scheme returns choices; it never writes a parameter.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from weightinit.activations import gain_squared
from weightinit.graph import Follower, Graph
from weightinit.knowledge import ParamInfo, Roles

__all__ = [
    "Choice",
    "Options",
    "Param",
    "Scheme",
    "Survey",
    "get_scheme",
    "register_scheme",
    "schemes",
    "take_options",
]

RELU_FAMILY = {"relu", "leaky_relu", "relu6", "elu", "celu", "selu", "gelu", "gelu_tanh", "silu"}


@dataclass(frozen=True)
class Choice:
    """An initializer from the catalog, its arguments and the reason for them."""

    init: str
    args: dict[str, Any]
    reason: str


@dataclass(frozen=True)
class Param:
    """What a scheme sees of one parameter."""

    name: str  # qualified name in the model
    leaf: str  # name inside its module
    owner: nn.Module
    tensor: torch.Tensor
    info: ParamInfo
    follower: Follower | None  # what follows the layer that holds it (None: not traced)


@dataclass(frozen=True)
class Options:
    """Options every classic scheme honours (``None``: the scheme's own default).

    distribution: "normal", "uniform" or "truncated_normal" for variance-scaling weights.
    mode: "fan_in" (forward signal) or "fan_out" (backward signal), for "he".
    bias: constant for biases. relu_bias: constant for the biases of layers followed by a
    ReLU-family activation (e.g. 0.01 or 0.1), keeping units alive at the start.
    forget_bias: the LSTM forget gate's bias (Jozefowicz et al. 2015; the forget slices of
    bias_ih and bias_hh sum to it). recurrent: "orthogonal" (per gate), "unitary" (per gate:
    Haar orthogonal, unitary for complex weights; Arjovsky et al. 2016), "identity" (IRNN,
    Le et al. 2015) or "scheme" (like input weights). embedding_std: embeddings ~ N(0, std^2).
    norm_scale: the scale of normalization layers.
    """

    distribution: str | None = None
    mode: str = "fan_in"
    bias: float = 0.0
    relu_bias: float | None = None
    forget_bias: float | None = 1.0
    recurrent: str = "orthogonal"
    embedding_std: float | None = None
    norm_scale: float = 1.0

    @classmethod
    def build(cls, options: dict[str, Any], extra: type | None = None) -> Options:
        """The shared options from keywords; ``extra``: the scheme's own options dataclass,
        already taken out, named in the error for unknown keywords."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            own = {f.name for f in dataclasses.fields(extra)} if extra is not None else set()
            raise TypeError(
                f"unknown scheme option(s) {', '.join(unknown)}; the options are "
                f"{', '.join(sorted(names | own))}"
            )
        opts = cls(**options)
        checks = {
            "distribution": (opts.distribution, (None, "normal", "uniform", "truncated_normal")),
            "mode": (opts.mode, ("fan_in", "fan_out")),
            "recurrent": (opts.recurrent, ("orthogonal", "unitary", "identity", "scheme")),
        }
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                shown = ", ".join(repr(a) for a in allowed if a is not None)
                raise ValueError(f"option `{name}` must be one of {shown}, got {value!r}")
        return opts


WeightRule = Callable[[Param, Options, float, str], Choice]  # (param, options, gain^2, why)


@dataclass
class Survey:
    """What a model-level scheme (an architecture recipe) sees of the whole model.

    ``params`` are the parameters the scheme chooses for (not skipped, frozen, tied or covered
    by a user rule), in the model's order. ``extra`` holds the scheme's own options (an
    instance of :attr:`Scheme.extra`). A survey writes what it established about the model
    (residual branches found, depth, a critical point) into ``notes``, which the plan keeps.
    """

    model: nn.Module
    graph: Graph | None
    options: Options
    extra: Any
    params: list[Param]
    example_input: Any = None
    notes: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class Scheme:
    """A named initialization policy.

    ``choose`` gives one parameter its :class:`Choice`. Recipes that need the whole model
    (residual branches, layer depth, roles) also have ``survey``: it sees every parameter at
    once and returns choices by qualified parameter name, which take precedence over
    ``choose`` (parameters it leaves out fall back to ``choose``). ``extra`` is the dataclass of
    the scheme's own options, taken out of the keyword options by :func:`take_options`.
    """

    name: str
    description: str
    choose: Callable[[Param, Options], Choice]
    needs_graph: bool  # does it read the activations after layers?
    own_fans: bool = True  # False: torch's fans (dim 1 in, dim 0 out), as its defaults use
    survey: Callable[[Survey], dict[str, Choice]] | None = None
    extra: type | None = None


def _gain(p: Param) -> tuple[float, str]:
    """gain^2 for a weight, from the activation after its layer, with the reason."""
    if isinstance(p.owner, nn.MultiheadAttention):
        return 1.0, "attention projection: gain 1"
    if isinstance(p.owner, (nn.RNNBase, nn.RNNCellBase)):
        return 1.0, "RNN input weights (the gates apply their own nonlinearities): gain 1"
    if p.follower is None or p.follower.activation is None:
        what = p.follower.describe() if p.follower is not None else "not traced"
        return 1.0, f"{what}: gain 1"
    g2 = gain_squared(p.follower.activation)
    return g2, f"{p.follower.describe()}: gain {math.sqrt(g2):.4g}"


def _follows_relu(p: Param) -> bool:
    act = p.follower.activation if p.follower is not None else None
    return act is not None and act.name in RELU_FAMILY


def classic(weight: WeightRule, *, embedding: Choice | None = None) -> Callable:
    """A scheme from its rule for weights; every other role follows the shared options."""

    def choose(p: Param, o: Options) -> Choice:
        role = p.info.role
        if role == Roles.WEIGHT:
            g2, why = _gain(p)
            return weight(p, o, g2, why)
        if role == Roles.PROJECTION:
            return weight(p, o, 1.0, "LSTM projection: gain 1")
        if role == Roles.RECURRENT:
            if o.recurrent == "identity":
                return Choice("identity", {}, "recurrent weights: identity per gate (IRNN)")
            if o.recurrent == "orthogonal":
                return Choice("orthogonal", {}, "recurrent weights: orthogonal per gate")
            if o.recurrent == "unitary":
                reason = "recurrent weights: Haar unitary per gate (Arjovsky et al. 2016)"
                return Choice("unitary", {}, reason)
            return weight(p, o, 1.0, "recurrent weights: gain 1")
        if role == Roles.BIAS:
            if o.relu_bias is not None and _follows_relu(p):
                reason = f"bias before {p.follower.activation.name}: small positive"
                return Choice("constant", {"val": o.relu_bias}, reason)
            return constant_choice(o.bias, "bias")
        if role == Roles.GATE_BIAS:
            return _gate_bias(p, o)
        if role == Roles.EMBEDDING:
            if o.embedding_std is not None:
                return Choice("normal", {"std": o.embedding_std}, "embedding: chosen std")
            return embedding or Choice("normal", {"std": 1.0}, "embedding: N(0, 1)")
        if role == Roles.NORM_SCALE:
            return constant_choice(o.norm_scale, "norm scale")
        if role == Roles.NORM_SHIFT:
            return constant_choice(0.0, "norm shift")
        if role == Roles.ATTENTION_BIAS:
            return Choice("glorot_normal", {}, "attention bias_k/v: Glorot normal")
        return Choice(*p.info.torch_default)  # PReLU slope: torch's 0.25

    return choose


def constant_choice(value: float, what: str) -> Choice:
    if value == 0:
        return Choice("zeros", {}, f"{what}: 0")
    if value == 1:
        return Choice("ones", {}, f"{what}: 1")
    return Choice("constant", {"val": value}, f"{what}: {value}")


def _gate_bias(p: Param, o: Options) -> Choice:
    gates = p.info.gates
    first = p.leaf.startswith("bias_ih")  # bias_hh gets zeros, so that the slices sum right
    values = [o.bias if first else 0.0] * len(gates)
    reason = "gate bias"
    if gates == "ifgo" and o.forget_bias is not None:
        values[1] = o.forget_bias if first else 0.0
        reason = f"LSTM gate bias; forget gate {o.forget_bias} (sum of bias_ih and bias_hh)"
    if not any(values):
        return Choice("zeros", {}, reason)
    return Choice("block_constant", {"values": values}, reason)


def scaled(scale_of: Callable[[float], float], mode: str, default_dist: str, label: str):
    def weight(p: Param, o: Options, g2: float, why: str) -> Choice:
        chosen_mode = o.mode if mode == "option" else mode
        args = {
            "scale": scale_of(g2),
            "mode": chosen_mode,
            "distribution": o.distribution or default_dist,
        }
        return Choice("variance_scaling", args, f"{why}; {label}")

    return weight


HE = scaled(lambda g2: g2, "option", "normal", "He: Var = gain^2 / fan")  # He et al. 2015


def orthogonal_weight(p: Param, o: Options, g2: float, why: str) -> Choice:
    return Choice("orthogonal", {"gain": math.sqrt(g2)}, f"{why}; orthogonal (Saxe et al. 2014)")


def _torch(p: Param, o: Options) -> Choice:
    init, args, reason = p.info.torch_default
    return Choice(init, args, reason)


_SCHEMES: dict[str, Scheme] = {
    s.name: s
    for s in [
        Scheme(
            "he",
            "activation-aware He: Var(W) = gain(next activation)^2 / fan (He et al. 2015)",
            classic(HE),
            needs_graph=True,
        ),
        Scheme(
            "orthogonal",
            "orthogonal weights times the gain of the next activation (Saxe et al. 2014)",
            classic(orthogonal_weight),
            needs_graph=True,
        ),
        Scheme(
            "lecun",
            "LeCun: Var(W) = 1 / fan_in for every weight (LeCun et al. 1998; SELU nets)",
            classic(scaled(lambda g2: 1.0, "fan_in", "normal", "LeCun: Var = 1 / fan_in")),
            needs_graph=False,
        ),
        Scheme(
            "glorot",
            "Glorot/Xavier: Var(W) = 2 / (fan_in + fan_out), uniform (Glorot & Bengio 2010)",
            classic(scaled(lambda g2: 1.0, "fan_avg", "uniform", "Glorot: Var = 2 / (in + out)")),
            needs_graph=False,
        ),
        Scheme(
            "torch",
            "PyTorch's own reset_parameters defaults, reproduced exactly",
            _torch,
            needs_graph=False,
            own_fans=False,
        ),
        Scheme(
            "keras",
            "Keras 3 defaults: glorot_uniform kernels, orthogonal recurrent, zero biases, forget 1",
            classic(
                scaled(lambda g2: 1.0, "fan_avg", "uniform", "Keras: glorot_uniform"),
                embedding=Choice("uniform", {"a": -0.05, "b": 0.05}, "Keras: U(-0.05, 0.05)"),
            ),
            needs_graph=False,
        ),
        Scheme(
            "flax",
            "Flax defaults: lecun_normal (truncated) kernels, zero biases, N(0, 1/dim) embeddings",
            classic(
                scaled(lambda g2: 1.0, "fan_in", "truncated_normal", "Flax: lecun_normal"),
                embedding=Choice(
                    "variance_scaling",
                    {"scale": 1.0, "mode": "fan_out", "distribution": "normal"},
                    "Flax: N(0, 1 / dim)",
                ),
            ),
            needs_graph=False,
        ),
    ]
}


def register_scheme(scheme: Scheme) -> Scheme:
    """Add ``scheme`` to the schemes reachable by name (recipe modules register theirs)."""
    if scheme.name in _SCHEMES or scheme.name in ("auto", "lsuv"):
        raise ValueError(f"a scheme named {scheme.name!r} is already registered")
    _SCHEMES[scheme.name] = scheme
    return scheme


def take_options(cls: type, options: dict[str, Any], scheme: str) -> Any:
    """Take the fields of the dataclass ``cls`` out of ``options`` and build it (its
    ``__post_init__`` validates them, its errors worded "option `name` ...", to which this
    adds the scheme's name); what is left are the shared :class:`Options`."""
    names = [f.name for f in dataclasses.fields(cls)]
    taken = {name: options.pop(name) for name in names if name in options}
    try:
        return cls(**taken)
    except (TypeError, ValueError) as err:  # the validators say "option `name` ..."
        raise type(err)(f"scheme {scheme!r}: {err}") from None


def schemes() -> dict[str, str]:
    """Every scheme name with its one-line description.

    Example:
        >>> import weightinit
        >>> "he" in weightinit.schemes() and "torch" in weightinit.schemes()
        True
    """
    return {
        **{name: s.description for name, s in _SCHEMES.items()},
        "auto": "analytic signal propagation (after AutoInit, Bingham & Miikkulainen 2023): every "
        "layer's output at unit variance from its input's moments, then one stabilizing sweep; "
        "needs example_input=batch",
        "lsuv": "data-dependent LSUV (Mishkin & Matas 2016): orthonormal, then each layer's output "
        "scaled to unit std on data=batch, calibrated inside one forward pass per sweep",
    }


def get_scheme(name: str) -> Scheme:
    scheme = _SCHEMES.get(name.lower() if isinstance(name, str) else name)
    if scheme is None:
        raise ValueError(f"unknown scheme {name!r}; the schemes are {', '.join(_SCHEMES)}")
    return scheme
