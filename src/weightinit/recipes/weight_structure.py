"""Structured recipes: "looks_linear" (CReLU nets that are linear at init), "sparse" (k
incoming weights per unit) and "random_walk" (gains that make the log signal norm an unbiased
random walk across depth).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from weightinit._checks import finite, positive
from weightinit.scheme.classic import FOLLOWERS, HE, classic, orthogonal_weight
from weightinit.scheme.protocol import Choice, Options, Param, Scheme, Survey
from weightinit.scheme.registry import register_scheme
from weightinit.understanding.crelu import crelu_fed
from weightinit.understanding.knowledge import Kinds, Roles

__all__ = ["SparseOptions"]

# --- looks-linear --------------------------------------------------------------------------


def _looks_linear_survey(s: Survey) -> dict[str, Choice]:
    fed = crelu_fed(s.graph)
    choices = {}
    for p in s.params:
        layer = p.module
        if p.info.role == Roles.WEIGHT and layer in fed:
            reason = (
                f"fed by CReLU {fed[layer]!r}: W = [W0, -W0], W0 orthogonal, so the layer "
                "computes W0 x (looks-linear, Balduzzi et al. 2017)"
            )
            choices[p.name] = Choice("looks_linear", {}, reason)
    s.notes["looks_linear_layers"] = list(fed)  # in execution order
    return choices


register_scheme(
    Scheme(
        "looks_linear",
        "looks-linear (Balduzzi et al. 2017): layers fed by a CReLU get W = [W0, -W0], W0 "
        "orthogonal; other layers orthogonal; biases 0: the net is linear at init",
        classic(orthogonal_weight),
        needs=FOLLOWERS,
        survey=_looks_linear_survey,
    )
)

# --- sparse --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SparseOptions:
    """The options of the "sparse" scheme (Martens 2010).

    k: non-zero incoming weights per unit (the paper's 15); a layer with fewer inputs gets
    all of them (k = fan_in), and the plan's notes list those layers. std: the std of the
    non-zero weights (the paper's unit Gaussian: 1, whatever the activation).
    tanh_bias: the bias of units followed by tanh (the paper's 0.5; other biases: the shared
    ``bias`` option, 0).

    Example:
        >>> SparseOptions(k=10).std
        1.0
    """

    k: int = 15
    std: float = 1.0
    tanh_bias: float = 0.5

    def __post_init__(self):
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"option `k` must be a positive int (e.g. 15), got {self.k!r}")
        positive("", "std", self.std)
        finite("", "tanh_bias", self.tanh_bias)


def _sparse_choose(extra: SparseOptions) -> Callable[[Param, Options], Choice]:
    def weight(p: Param, o: Options, g2: float, why: str) -> Choice:
        fan_in = p.fans[0]
        k = min(extra.k, fan_in)
        capped = f" (capped at fan_in {fan_in})" if k < extra.k else ""
        reason = (
            f"sparse: {k} non-zero incoming weights{capped} ~ N(0, {extra.std:g}^2) (Martens 2010)"
        )
        return Choice("sparse", {"k": k, "std": extra.std}, reason)

    fallback = classic(weight)

    def choose(p: Param, o: Options) -> Choice:
        act = p.follower.activation if p.follower is not None else None
        if p.info.role == Roles.BIAS and act is not None and act.name == "tanh":
            return Choice(
                "constant",
                {"val": extra.tanh_bias},
                f"bias before tanh: {extra.tanh_bias:g} (Martens 2010)",
            )
        return fallback(p, o)

    return choose


def _sparse_survey(s: Survey) -> dict[str, Choice]:
    choose = _sparse_choose(s.extra)
    choices = {p.name: choose(p, s.options) for p in s.params}
    s.notes["k"] = s.extra.k
    s.notes["k_capped"] = {
        name: c.args["k"]
        for name, c in choices.items()
        if c.init == "sparse" and c.args["k"] < s.extra.k
    }
    return choices


register_scheme(
    Scheme(
        "sparse",
        "sparse (Martens 2010): k = 15 non-zero N(0, 1) incoming weights per unit, biases 0 "
        "(0.5 before tanh)",
        _sparse_choose(SparseOptions()),
        needs=FOLLOWERS,
        survey=_sparse_survey,
        extra=SparseOptions,
    )
)

# --- random walk ---------------------------------------------------------------------------


def _random_walk_weight(p: Param, o: Options, g2: float, why: str) -> Choice:
    act = p.follower.activation if p.follower is not None else None
    own_gain = p.kind in (Kinds.RECURRENT, Kinds.ATTENTION)
    name = None if act is None else act.name
    if own_gain or name not in (None, "relu"):
        return HE(p, o, g2, f"{why}; the paper's g is for linear and ReLU layers only")
    nonlinearity = "relu" if name == "relu" else "linear"
    formula = "sqrt(2) exp(1.2 / (max(N, 6) - 2.4))" if name == "relu" else "exp(1 / 2N)"
    args = {"nonlinearity": nonlinearity, "distribution": o.distribution or "normal"}
    reason = f"{why}; random walk: Var = g^2 / N, g = {formula} (Sussillo & Abbott 2014)"
    return Choice("random_walk", args, reason)


register_scheme(
    Scheme(
        "random_walk",
        "random walk (Sussillo & Abbott 2014): Var(W) = g^2 / N with g = exp(1/2N) (linear) or "
        "sqrt(2) exp(1.2/(max(N,6)-2.4)) (ReLU), so log |signal| does an unbiased walk",
        classic(_random_walk_weight),
        needs=FOLLOWERS,
    )
)
