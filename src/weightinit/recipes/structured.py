"""Structured recipes: "looks_linear" (CReLU nets that are linear at init), "sparse" (k
incoming weights per unit) and "random_walk" (gains that make the log signal norm an unbiased
random walk across depth).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from weightinit._checks import finite, positive
from weightinit.graph import Graph, Node
from weightinit.knowledge import Roles
from weightinit.layout import geometry
from weightinit.modules import CReLU
from weightinit.schemes import (
    HE,
    Choice,
    Options,
    Param,
    Scheme,
    Survey,
    classic,
    orthogonal_weight,
    register_scheme,
)

__all__ = ["SparseOptions", "crelu_fed"]

# --- looks-linear --------------------------------------------------------------------------

# ops between a CReLU and the next layer that keep [relu(x), relu(-x)] as it is (the halves
# stay the halves of the feature axis): dropout (identity at eval, a mask during training),
# identity, copies and dtype casts
_KEEPING_MODULES = (nn.modules.dropout._DropoutNd, nn.Identity)
_KEEPING_FUNCTIONS = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d}
_KEEPING_METHODS = {"contiguous", "clone", "to", "float", "double", "type_as"}


def _keeps_halves(node: Node) -> bool:
    if node.kind == "module":
        return isinstance(node.target, _KEEPING_MODULES)
    if node.kind != "function" or node.target is None or len(node.inputs) != 1:
        return False
    is_method = node.target is getattr(torch.Tensor, node.name, None)
    return node.target in _KEEPING_FUNCTIONS or (is_method and node.name in _KEEPING_METHODS)


def _feature_axis(layer: nn.Module) -> int | None:
    """The axis a layer reads its input features from, counted from the end (Linear: -1;
    ConvNd: the channel axis, -(N + 1)); None for layers looks-linear does not pair."""
    if isinstance(layer, nn.Linear):
        return -1
    if isinstance(layer, nn.modules.conv._ConvNd) and layer.groups == 1:
        return -(layer.weight.ndim - 1)
    return None


def crelu_fed(graph: Graph) -> dict[str, str]:
    """The layers whose input comes straight from a :class:`~weightinit.modules.CReLU` module
    (through dropout, identity or copies only), by module name, with the CReLU's name.

    A Linear qualifies when the CReLU concatenates along the last axis (``dim=-1``), a
    (non-grouped) conv when it concatenates along the channels (``dim=1``): then the layer's
    input is [relu(x), relu(-x)] split in halves of its input features, which
    :func:`~weightinit.looks_linear_` (W = [W0, -W0]) turns into W0 x (Balduzzi et al. 2017,
    "The Shattered Gradients Problem"). Other ops in between (norms, pooling, reshapes) would
    mix or shift the halves, so such layers are not paired.

    Example:
        >>> import torch
        >>> from weightinit.graph import trace
        >>> from weightinit.modules import CReLU
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 4), CReLU(), torch.nn.Linear(8, 4))
        >>> crelu_fed(trace(net))
        {'2': '1'}
    """
    found: dict[str, str] = {}
    for node in graph.nodes:
        if node.kind != "module" or not node.inputs or node.name in found:
            continue
        axis = _feature_axis(node.target)
        if axis is None:
            continue
        source = graph.nodes[node.inputs[0]]
        while _keeps_halves(source) and source.inputs:
            source = graph.nodes[source.inputs[0]]
        is_crelu = source.kind == "module" and isinstance(source.target, CReLU)
        if is_crelu and _concatenates_along(source, axis, node.target):
            found[node.name] = source.name
    return found


def _concatenates_along(crelu: Node, axis: int, layer: nn.Module) -> bool:
    """Does the CReLU concatenate along ``axis`` (from the end) of the layer's input? A
    non-negative ``dim`` is resolved with the traced input's number of axes (execution
    traces), or for convs with a batched input's (the fx trace has no shapes)."""
    dim = crelu.target.dim
    if dim < 0:
        return dim == axis
    traced = [a for a in crelu.args if isinstance(a, torch.Tensor)]
    ndim = traced[0].ndim if traced else None
    if ndim is None and not isinstance(layer, nn.Linear):
        ndim = layer.weight.ndim  # (batch, channels, *spatial)
    return ndim is not None and dim - ndim == axis


def _looks_linear_survey(s: Survey) -> dict[str, Choice]:
    fed = crelu_fed(s.graph)
    choices = {}
    names = {id(m): name for name, m in s.model.named_modules()}
    for p in s.params:
        layer = names[id(p.owner)]
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
        needs_graph=True,
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
        fan_in = geometry(p.tensor, p.info.layout).fan_in
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
        needs_graph=True,
        survey=_sparse_survey,
        extra=SparseOptions,
    )
)

# --- random walk ---------------------------------------------------------------------------


def _random_walk_weight(p: Param, o: Options, g2: float, why: str) -> Choice:
    act = p.follower.activation if p.follower is not None else None
    own_gain = isinstance(p.owner, (nn.RNNBase, nn.RNNCellBase, nn.MultiheadAttention))
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
        needs_graph=True,
    )
)
