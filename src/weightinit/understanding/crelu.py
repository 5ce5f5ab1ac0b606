"""Where CReLU halves reach a layer unmixed: the layers looks-linear initialization pairs
(Balduzzi et al. 2017)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from weightinit.modules import CReLU
from weightinit.understanding.graph import Graph, Node

__all__ = ["crelu_fed"]

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
        >>> from weightinit.understanding.graph import trace
        >>> from weightinit.modules import CReLU
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 4), CReLU(), torch.nn.Linear(8, 4))
        >>> from weightinit.understanding.crelu import crelu_fed
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
