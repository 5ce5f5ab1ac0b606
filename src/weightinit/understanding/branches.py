"""Residual branches, found in a traced :class:`~weightinit.understanding.graph.Graph` or declared by name.

A residual add is a call of ``+`` (``operator.add``/``iadd``, ``torch.add``, ``Tensor.add``,
``add_``, ``__add__``, ``__iadd__``) on two traced signals that share an ancestor. The layers
behind each input that are not behind the other are that side's own; the side with more
weighted layers (modules holding a weight: Linear, Conv, ...; norms do not count) is the
branch, the other the skip. An identity skip has no layers of its own; a projection shortcut
(ResNet's downsample conv + norm) has fewer than the branch. Works on fx and execution traces.

A layer is a module that holds a weight itself: an ``nn.MultiheadAttention`` is two layers, the
attention (its ``in_proj``) and its ``out_proj``, though the trace calls it once.
"""

from __future__ import annotations

import fnmatch
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from weightinit.understanding.graph import Graph, Node
from weightinit.understanding.knowledge import Roles, describe

__all__ = ["Branch", "check_branches", "classifier", "residual_branches", "weighted"]

_ADDS = {operator.add, operator.iadd, torch.add, torch.Tensor.add, torch.Tensor.add_,
         torch.Tensor.__add__, torch.Tensor.__iadd__, torch.Tensor.__radd__}  # fmt: skip


_DIVIDES = {"div", "__truediv__", "true_divide", "div_", "__itruediv__"}


@dataclass(frozen=True)
class Branch:
    """One residual branch: its weighted layers (module names, in execution order), the
    module whose output is the branch's output (None when a function produces it), the
    graph node of its residual add (None for declared branches) and the weighted layers of
    its skip side (a projection shortcut; empty for an identity skip and declared branches)."""

    layers: tuple[str, ...]
    output: str | None
    add: int | None = None
    skip: tuple[str, ...] = ()


def weighted(module: nn.Module) -> bool:
    """Does ``module`` (or a module inside it) hold a feed-forward weight?"""
    for name, _ in module.named_parameters():
        info = describe(module, name)
        if info is not None and info.role == Roles.WEIGHT:
            return True
    return False


def _layers(module: nn.Module, name: str) -> list[str]:
    """The weighted layers at or inside ``module`` (named ``name``): the modules that hold a
    weight themselves (also behind a parametrization), in registration order."""
    found: list[str] = []
    for param, _ in module.named_parameters():
        info = describe(module, param)
        if info is None or info.role != Roles.WEIGHT:
            continue
        parts = param.split(".")
        owner = (
            parts[: parts.index("parametrizations")] if "parametrizations" in parts else parts[:-1]
        )
        layer = ".".join([name, *owner] if name else owner)
        if layer not in found:
            found.append(layer)
    return found


def _is_add(node: Node) -> bool:
    if node.kind != "function" or node.target is None or len(node.inputs) != 2:
        return False
    try:
        return node.target in _ADDS
    except TypeError:  # unhashable targets
        return False


def _ancestors(graph: Graph) -> list[int]:
    """For every node, a bit mask of itself and every node it depends on (nodes come in
    execution order, so inputs precede their users)."""
    masks: list[int] = []
    for i, node in enumerate(graph.nodes):
        mask = 1 << i
        for j in node.inputs:
            mask |= masks[j]
        masks.append(mask)
    return masks


def _bits(mask: int) -> list[int]:
    """The positions of the set bits, lowest first."""
    found = []
    while mask:
        low = mask & -mask
        found.append(low.bit_length() - 1)
        mask ^= low
    return found


def _names(graph: Graph, nodes: list[int]) -> tuple[str, ...]:
    """The weighted layers of these module nodes, in order, each once."""
    found = [n for i in nodes for n in _layers(graph.nodes[i].target, graph.nodes[i].name)]
    return tuple(dict.fromkeys(found))


def _traced(graph: Graph) -> list[Branch]:
    behind = _ancestors(graph)
    layers = sum(
        1 << i for i, n in enumerate(graph.nodes) if n.kind == "module" and weighted(n.target)
    )
    branches = []
    for add, node in enumerate(graph.nodes):
        if not _is_add(node):
            continue
        a, b = node.inputs
        if not behind[a] & behind[b]:  # unrelated signals (e.g. a learned position embedding)
            continue
        own_a = _bits(layers & behind[a] & ~behind[b])
        own_b = _bits(layers & behind[b] & ~behind[a])
        if len(own_a) == len(own_b):  # no skip to tell from the branch
            continue
        (own, end), skip = ((own_a, a), own_b) if len(own_a) > len(own_b) else ((own_b, b), own_a)
        out = graph.nodes[end]
        output = out.name if out.kind == "module" else None
        branches.append(Branch(_names(graph, own), output, add, _names(graph, skip)))
    return branches


def check_branches(value: object) -> tuple[str, ...] | None:
    """A ``branches=`` declaration as a tuple of globs (None: find them by tracing)."""
    if value is None:
        return None
    if (
        isinstance(value, str)
        or not isinstance(value, (list, tuple))
        or not value
        or not all(isinstance(v, str) for v in value)
    ):
        raise ValueError(
            "option `branches` must be a non-empty list of module-name globs, each matching "
            f"one residual branch (e.g. ['blocks.*.mlp']), got {value!r}"
        )
    return tuple(value)


def _declared(model: nn.Module, graph: Graph | None, globs: Sequence[str]) -> list[Branch]:
    globs = check_branches(globs)
    order = {}
    if graph is not None:
        for node in graph.nodes:
            if node.kind == "module":
                order.setdefault(node.name, len(order))
    names = dict(model.named_modules())
    position = {name: i for i, name in enumerate(names)}
    matched: list[str] = []
    for glob in globs:
        found = [n for n in names if n and fnmatch.fnmatchcase(n, glob)]
        if not found:
            raise ValueError(
                f"branches: {glob!r} matches no module of {type(model).__name__}; module names "
                f"look like {', '.join([n for n in names if n][:6])}"
            )
        matched += [n for n in found if n not in matched]

    def called(layer: str) -> int:  # a layer inside a traced module (out_proj) runs with it
        parts = layer.split(".")
        for k in range(len(parts), 0, -1):
            if ".".join(parts[:k]) in order:
                return order[".".join(parts[:k])]
        return len(order)

    branches = []
    for name in matched:
        inside = _layers(names[name], name)
        if not inside:
            raise ValueError(f"branches: module {name!r} holds no weighted layer (Linear, Conv)")
        inside.sort(key=lambda n: (called(n), position[n]))
        branches.append(Branch(tuple(inside), name))
    return branches


def residual_branches(
    model: nn.Module, graph: Graph | None, branches: Sequence[str] | None = None
) -> list[Branch]:
    """The residual branches of ``model``: declared (``branches``, module-name globs, each
    matching module one branch) or found in its traced ``graph``, in execution order.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from weightinit.understanding.graph import trace
        >>> class Block(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.fc1, self.fc2 = nn.Linear(4, 4), nn.Linear(4, 4)
        ...     def forward(self, x):
        ...         return x + self.fc2(torch.relu(self.fc1(x)))
        >>> net = nn.Sequential(Block(), Block())
        >>> [b.layers for b in residual_branches(net, trace(net))]
        [('0.fc1', '0.fc2'), ('1.fc1', '1.fc2')]
    """
    if branches is not None:
        return _declared(model, graph, branches)
    if graph is None:
        raise ValueError("residual_branches: pass the traced graph, or declare branches=[...]")
    return _traced(graph)


def classifier(graph: Graph | None, found: Sequence[Branch]) -> str | None:
    """The classifier: the last weighted layer on the signal path after the last residual add
    (for declared branches: after the last call inside a branch), in no branch. None when no
    weighted layer follows the last branch, and without a graph.

    A projection shortcut (ResNet's downsample conv) runs after its block's branch but before
    the add, on the skip side: it is no classifier. Nor is a projection whose output is
    normalized, divided by its own norm (CLIP's text and image projections): zeroed, it
    would have no direction, and 0 / 0 is no output.
    """
    if graph is None:
        return None

    def end(branch: Branch) -> int:
        if branch.add is not None:
            return branch.add
        prefix = f"{branch.output}."
        calls = [i for i, n in enumerate(graph.nodes) if n.kind == "module"
                 and (n.name == branch.output or n.name.startswith(prefix))]  # fmt: skip
        return max(calls, default=-1)

    last = max((end(b) for b in found), default=-1)
    if last < 0:
        return None
    behind = _ancestors(graph)
    inside = {name for b in found for name in b.layers}
    after = [n.name for i, n in enumerate(graph.nodes[last + 1 :], last + 1)
             if behind[i] >> last & 1 and n.kind == "module" and weighted(n.target)
             and n.name not in inside]  # fmt: skip
    if not after:
        return None
    head = max(i for i, n in enumerate(graph.nodes) if n.name == after[-1])
    return None if _normalized(graph, behind, head) else after[-1]


def _normalized(graph: Graph, behind: list[int], index: int) -> bool:
    """Is node ``index``'s output normalized downstream: ``F.normalize`` on it, or a division
    whose numerator and denominator both depend on it (``x / x.norm(dim=-1, keepdim=True)``,
    CLIP's ``x / sqrt(sum(x ** 2))``)?"""
    for i in range(index + 1, len(graph.nodes)):
        node = graph.nodes[i]
        if not behind[i] >> index & 1 or node.kind != "function":
            continue
        if node.name == "normalize":
            return True
        sources = [j for j in node.sources if j is not None][:2] if node.sources else node.inputs
        if (
            node.name in _DIVIDES
            and len(sources) == 2
            and all(behind[j] >> index & 1 for j in sources)
        ):
            return True
    return False
