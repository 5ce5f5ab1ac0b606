"""The classic schemes ("he", "orthogonal", "lecun", "glorot", "torch", "keras", "flax") and the
building blocks every scheme shares: a weight rule per scheme, the same treatment of biases,
gates, recurrent weights, embeddings and norms everywhere (:func:`classic`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from weightinit.initializers.activations import gain_squared
from weightinit.scheme.protocol import GRAPH, Choice, Options, Param, Scheme
from weightinit.scheme.registry import register_scheme
from weightinit.understanding.knowledge import Kinds, Roles

__all__ = [
    "FOLLOWERS",
    "HE",
    "RELU_FAMILY",
    "WeightRule",
    "classic",
    "constant_choice",
    "orthogonal_weight",
    "scaled",
]

RELU_FAMILY = {"relu", "leaky_relu", "relu6", "elu", "celu", "selu", "gelu", "gelu_tanh", "silu"}

#: the schemes whose weights follow the activation after their layer read the traced graph
FOLLOWERS = {GRAPH: "it scales each weight by the gain of the activation after its layer"}

WeightRule = Callable[[Param, Options, float, str], Choice]  # (param, options, gain^2, why)


def _gain(p: Param) -> tuple[float, str]:
    """gain^2 for a weight, from the activation after its layer, with the reason."""
    if p.kind == Kinds.ATTENTION:
        return 1.0, "attention projection: gain 1"
    if p.kind == Kinds.RECURRENT:
        return 1.0, "RNN input weights (the gates apply their own nonlinearities): gain 1"
    if p.follower is None or p.follower.activation is None:
        what = p.follower.describe() if p.follower is not None else "not traced"
        return 1.0, f"{what}: gain 1"
    g2 = gain_squared(p.follower.activation)
    return g2, f"{p.follower.describe()}: gain {math.sqrt(g2):.4g}"


def _gated_experts(p: Param, o: Options, weight: WeightRule) -> Choice:
    """The gate projections of a mixture of experts (``act(x W_gate) * (x W_up)`` inside the
    experts module, which the graph sees as one call): the gate takes the gain of the
    activation, the up projection gain 1, as a Llama MLP's separate gate_proj and up_proj do.
    For a packed ``gate_up_proj`` the two halves of every expert get their own variance
    (packed variance scaling, one scale per expert and half); a rule with one gain per tensor
    (orthogonal) keeps gain 1 on both and says so."""
    act = p.info.nonlinearity
    g2 = gain_squared(act)
    name = getattr(act, "name", act)
    why = f"expert gate projection, {name} inside the experts: gain {math.sqrt(g2):.4g}"
    gate = weight(p, o, g2, why)
    if p.info.layout.groups != 2:
        return gate
    up = weight(p, o, 1.0, "expert up projection (multiplies the gate): gain 1")
    if gate.args == up.args:
        return gate
    packed = gate.init == up.init == "variance_scaling" and all(
        gate.args[k] == up.args[k] for k in ("mode", "distribution")
    )
    if not packed:
        return up._replace(reason=f"{up.reason}; {gate.init} has one gain per tensor")
    scales = [gate.args["scale"], up.args["scale"]] * p.info.layout.blocks
    args = {"scales": scales, "mode": gate.args["mode"], "distribution": gate.args["distribution"]}
    why = (
        f"gate halves: {gate.reason}; up halves: gain 1 (they multiply the gate); "
        "per expert and half"
    )
    return Choice("packed_variance_scaling", args, why)


def _follows_relu(p: Param) -> bool:
    act = p.follower.activation if p.follower is not None else None
    return act is not None and act.name in RELU_FAMILY


def classic(weight: WeightRule, *, embedding: Choice | None = None) -> Callable:
    """A scheme from its rule for weights; every other role follows the shared options."""

    def choose(p: Param, o: Options) -> Choice:
        role = p.info.role
        if role == Roles.WEIGHT:
            if p.kind == Kinds.EXPERTS and p.info.nonlinearity is not None:
                return _gated_experts(p, o, weight)
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
            if embedding is None and p.info.head is not None:
                return read_back(p)
            return embedding or Choice("normal", {"std": 1.0}, "embedding: N(0, 1)")
        if role == Roles.NORM_SCALE:
            return constant_choice(o.norm_scale, "norm scale")
        if role == Roles.NORM_SHIFT:
            return constant_choice(0.0, "norm shift")
        if role == Roles.ATTENTION_BIAS:
            return Choice("glorot_normal", {}, "attention bias_k/v: Glorot normal")
        return Choice(*p.info.torch_default)  # PReLU slope: torch's 0.25

    return choose


def read_back(p: Param) -> Choice:
    """An embedding an output head reads back (``p.info.head``): N(0, 1/d), d its width.

    A matrix E tied to the output head serves two roles: the embedding's output is a row of
    E, of variance Var(E); the logits are E h, of variance d Var(E) E[h^2]. N(0, 1) (the
    embedding rule) starts the logits at std sqrt(d) (11.3 at d = 128): a confident, wrong
    softmax. N(0, 1/d) starts them at unit variance on the unit-variance features of the
    norm before the head, and each embedding vector at unit norm (E|e|^2 = 1), the scale
    the norm layers after the embedding (GPT-2's ln_1, BERT's embeddings.LayerNorm) bring
    any input to. Embeddings of the same width added to it (positions, token types) get the
    same scale, so that the token's own vector is not drowned. Press & Wolf 2017 ("Using the
    Output Embedding to Improve Language Models") tie the two; OLMo and Flax draw such
    embeddings N(0, 1/d) too.

    Example:
        >>> import torch, weightinit as wi
        >>> class LM(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.embed, self.head = torch.nn.Embedding(50, 64), torch.nn.Linear(64, 50)
        ...         self.head.weight = self.embed.weight  # tied
        ...     def forward(self, ids):
        ...         return self.head(torch.nn.functional.layer_norm(self.embed(ids), (64,)))
        >>> wi.plan(LM(), "he")["embed.weight"].args
        {'std': 0.125}
    """
    head, embedding = p.info.head
    d = p.shape[-1]
    if p.name == embedding or p.plain == embedding:
        what = f"embedding tied to the output head {head}"
    else:
        what = f"embedding of the width of {embedding}, which is tied to {head}"
    why = f"{what}: N(0, 1/d), d = {d}: logits at unit variance, embedding vectors of unit norm"
    return Choice("normal", {"std": d**-0.5}, why)


def constant_choice(value: float, what: str) -> Choice:
    if value == 0:
        return Choice("zeros", {}, f"{what}: 0")
    if value == 1:
        return Choice("ones", {}, f"{what}: 1")
    return Choice("constant", {"val": value}, f"{what}: {value}")


def _gate_bias(p: Param, o: Options) -> Choice:
    """The gate biases: ``bias``, the LSTM forget gate's ``forget_bias`` (gates named as the
    framework orders them: torch "ifgo", Keras "ifco"). torch's two biases are summed, so
    bias_hh gets zeros; Keras has one."""
    gates = p.info.gates
    two = p.leaf.startswith(("bias_ih", "bias_hh"))
    first = not p.leaf.startswith("bias_hh")
    values = [o.bias if first else 0.0] * len(gates)
    reason = "gate bias"
    if "f" in gates and o.forget_bias is not None:
        values[gates.index("f")] = o.forget_bias if first else 0.0
        both = " (sum of bias_ih and bias_hh)" if two else ""
        reason = f"LSTM gate bias; forget gate {o.forget_bias}{both}"
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


register_scheme(
    Scheme(
        "he",
        "activation-aware He: Var(W) = gain(next activation)^2 / fan (He et al. 2015)",
        classic(HE),
        needs=FOLLOWERS,
        aliases=("kaiming",),
    )
)
register_scheme(
    Scheme(
        "orthogonal",
        "orthogonal weights times the gain of the next activation (Saxe et al. 2014)",
        classic(orthogonal_weight),
        needs=FOLLOWERS,
    )
)
register_scheme(
    Scheme(
        "lecun",
        "LeCun: Var(W) = 1 / fan_in for every weight (LeCun et al. 1998; SELU nets)",
        classic(scaled(lambda g2: 1.0, "fan_in", "normal", "LeCun: Var = 1 / fan_in")),
    )
)
register_scheme(
    Scheme(
        "glorot",
        "Glorot/Xavier: Var(W) = 2 / (fan_in + fan_out), uniform (Glorot & Bengio 2010)",
        classic(scaled(lambda g2: 1.0, "fan_avg", "uniform", "Glorot: Var = 2 / (in + out)")),
        aliases=("xavier",),
    )
)
register_scheme(
    Scheme(
        "torch",
        "PyTorch's own reset_parameters defaults, reproduced exactly",
        _torch,
        own_fans=False,
        rng="torch",
    )
)
register_scheme(
    Scheme(
        "keras",
        "Keras 3 defaults: glorot_uniform kernels, orthogonal recurrent, zero biases, forget 1",
        classic(
            scaled(lambda g2: 1.0, "fan_avg", "uniform", "Keras: glorot_uniform"),
            embedding=Choice("uniform", {"a": -0.05, "b": 0.05}, "Keras: U(-0.05, 0.05)"),
        ),
    )
)
register_scheme(
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
    )
)
