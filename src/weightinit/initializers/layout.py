"""Layouts: which axes of a parameter hold outputs, inputs, the receptive field, groups and blocks.

Fans come from a layout, never from guessing that dim 0 is the output and dim 1 the input. The
default layout is torch's convention (dim 0 out, dim 1 in, the rest receptive field), so that
``fans(w)`` equals ``torch.nn.init._calculate_fan_in_and_fan_out(w)`` for ordinary weights.

Every initializer that needs fans or structure works on the *block form* of a tensor: the tensor
viewed as ``(blocks, n_out, n_in, *receptive_field)``, where ``blocks`` counts independent
matrices (conv groups times stacked gates or packed projections). :class:`Geometry` converts
between a tensor and its block form.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

import torch

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = [
    "Geometry", "Layout", "LayoutLike", "fans", "geometry", "resolve_owner_layouts", "shape_geometry",
]  # fmt: skip


def _axes(value: int | tuple[int, ...] | list[int], name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,)
    axes = tuple(value)
    if not all(isinstance(a, int) for a in axes):
        raise TypeError(f"Layout: `{name}` must be an int or a tuple of ints, got {value!r}")
    return axes


@dataclass(frozen=True)
class Layout:
    """Where the output, input, group and block structure of a parameter lives.

    Args:
        out_axes: axes indexing output units (a conv's out channels, a Linear's rows).
        in_axes: axes indexing input units. May be empty (biases, norm scales: fan_in is 1).
            Every other axis is receptive field and multiplies both fans.
        groups: number of groups the weight connects independently (grouped and depthwise
            convs). Fans and structured initializers are computed per group.
        group_axis: the axis whose length is ``groups`` times the per-group length
            (dim 0 for Conv and ConvTranspose weights). Default: the first out axis.
        blocks: number of independent matrices stacked along ``block_axis``: RNN gates
            (LSTM 4, GRU 3) or packed attention projections (q, k, v: 3). Fans are per block.
        block_axis: the stacking axis. Default: the first out axis.

    Example:
        >>> import torch, weightinit
        >>> w = torch.empty(80, 10)  # LSTM(10, 20).weight_ih_l0: 4 gates stacked on dim 0
        >>> weightinit.fans(w, weightinit.Layout(blocks=4))
        (10, 20)
    """

    out_axes: tuple[int, ...] = (0,)
    in_axes: tuple[int, ...] = (1,)
    groups: int = 1
    group_axis: int | None = None
    blocks: int = 1
    block_axis: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_axes", _axes(self.out_axes, "out_axes"))
        object.__setattr__(self, "in_axes", _axes(self.in_axes, "in_axes"))
        for name in ("groups", "blocks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Layout: `{name}` must be a positive int, got {value!r}")
        for name, count in (("group_axis", self.groups), ("block_axis", self.blocks)):
            axis = getattr(self, name)
            if axis is None and count > 1 and not self.out_axes:
                raise ValueError(f"Layout: `{name}` is needed when there are no out axes")
        object.__setattr__(self, "_hash", hash(self._fields()))

    def _fields(self) -> tuple:
        return (
            self.out_axes,
            self.in_axes,
            self.groups,
            self.group_axis,
            self.blocks,
            self.block_axis,
        )

    def __hash__(self) -> int:  # cached: layouts key the geometry cache on every fill
        return self._hash

    @classmethod
    @functools.lru_cache(maxsize=64)
    def elementwise(cls, ndim: int = 1, *, blocks: int = 1) -> Layout:
        """Layout of a bias, norm scale or other per-unit parameter: every axis is an output."""
        return cls(out_axes=tuple(range(ndim)), in_axes=(), blocks=blocks)


_TORCH_CONVENTION = Layout()  # dim 0 out, dim 1 in, the rest receptive field

LayoutLike = Union[Layout, "tuple[nn.Module, str]", None]


@dataclass(frozen=True)
class Geometry:
    """A layout resolved against a concrete shape (see the module docstring for block form)."""

    shape: tuple[int, ...]
    expanded: tuple[int, ...]  # shape with the group and block axes split off
    perm: tuple[int, ...]  # expanded axes -> (block axes, out axes, in axes, receptive axes)
    num_blocks: int
    n_out: int
    n_in: int
    receptive: tuple[int, ...]

    @property
    def receptive_size(self) -> int:
        return math.prod(self.receptive)

    @property
    def fan_in(self) -> int:
        """Inputs feeding one output unit: per-block input units times the receptive field."""
        return self.n_in * self.receptive_size

    @property
    def fan_out(self) -> int:
        """Outputs fed by one input unit: per-block output units times the receptive field."""
        return self.n_out * self.receptive_size

    @property
    def block_shape(self) -> tuple[int, ...]:
        return (self.num_blocks, self.n_out, self.n_in, *self.receptive)

    def to_blocks(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` (of ``self.shape``) in block form ``(blocks, n_out, n_in, *receptive)``."""
        return tensor.reshape(self.expanded).permute(self.perm).reshape(self.block_shape)

    def from_blocks(self, blocks: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_blocks`: a tensor of ``self.shape`` from its block form."""
        if self.perm == tuple(range(len(self.perm))):  # torch's convention: a plain reshape
            return blocks.reshape(self.shape)
        permuted = tuple(self.expanded[p] for p in self.perm)
        inverse = sorted(range(len(self.perm)), key=self.perm.__getitem__)
        return blocks.reshape(permuted).permute(inverse).reshape(self.shape)


# (module, "param_name") -> Layout: the model-understanding layer registers its resolver here
# (weightinit.understanding.knowledge.layout_for), so tensor math never imports upward
_owner_layouts: Callable[[object, str], Layout] | None = None


def resolve_owner_layouts(resolver: Callable[[object, str], Layout]) -> None:
    """Let ``layout=(module, "param_name")`` resolve through ``resolver``."""
    global _owner_layouts
    _owner_layouts = resolver


def _as_layout(layout: LayoutLike, ndim: int) -> Layout:
    if layout is None:
        if ndim < 2:
            raise ValueError(
                f"a tensor with {ndim} dimension(s) has no input axis under torch's convention "
                "(dim 0 out, dim 1 in), so its fans are undefined: pass "
                "layout=Layout(out_axes=..., in_axes=...) or layout=(module, 'param_name')"
            )
        return _TORCH_CONVENTION
    if isinstance(layout, Layout):
        return layout
    if isinstance(layout, tuple) and len(layout) == 2 and isinstance(layout[1], str):
        if _owner_layouts is None:
            raise TypeError(
                "`layout=(module, 'param_name')` needs the module knowledge, which registers "
                "itself when weightinit is imported: import weightinit"
            )
        return _owner_layouts(*layout)
    raise TypeError(
        f"`layout` must be a weightinit.Layout, a (module, 'param_name') pair or None, "
        f"got {type(layout).__name__}"
    )


def geometry(tensor: torch.Tensor, layout: LayoutLike = None) -> Geometry:
    """Resolve ``layout`` against ``tensor``'s shape, checking that they fit together."""
    return shape_geometry(tuple(tensor.shape), layout)


def shape_geometry(shape: tuple[int, ...], layout: LayoutLike = None) -> Geometry:
    """:func:`geometry` of a tensor of this shape (no tensor needed)."""
    return _resolve(shape, _as_layout(layout, len(shape)))


@functools.lru_cache(maxsize=4096)
def _resolve(shape: tuple[int, ...], lay: Layout) -> Geometry:
    """Cached: a model's parameters repeat a few (shape, layout) pairs many times over."""
    ndim = len(shape)

    def norm(axis: int, what: str) -> int:
        if not -ndim <= axis < ndim:
            raise ValueError(
                f"layout {what} {axis} is out of range for a tensor of shape {shape}; "
                "pass a layout whose axes fit the tensor"
            )
        return axis % ndim

    out_axes = tuple(norm(a, "out axis") for a in lay.out_axes)
    in_axes = tuple(norm(a, "in axis") for a in lay.in_axes)
    if len(set(out_axes + in_axes)) != len(out_axes) + len(in_axes):
        raise ValueError(f"layout out_axes {lay.out_axes} and in_axes {lay.in_axes} overlap")
    splits: dict[int, list[int]] = {}
    for count, axis, what in (
        (lay.blocks, lay.block_axis, "block_axis"),
        (lay.groups, lay.group_axis, "group_axis"),
    ):
        if count == 1:
            continue
        ax = norm(out_axes[0] if axis is None else axis, what)
        if ax not in out_axes + in_axes:
            raise ValueError(f"layout {what} {ax} must be one of the out or in axes")
        splits.setdefault(ax, []).append(count)

    expanded: list[int] = []
    kinds: list[tuple[int, int]] = []  # (sort key, original axis order) per expanded axis
    for ax, size in enumerate(shape):
        counts = splits.get(ax, [])
        total = math.prod(counts)
        if size % total:
            raise ValueError(
                f"axis {ax} of shape {shape} has length {size}, which does not split into "
                f"{' x '.join(map(str, counts))} equal blocks/groups; check the layout"
            )
        for c in counts:
            expanded.append(c)
            kinds.append((0, len(expanded)))
        expanded.append(size // total)
        key = 1 if ax in out_axes else 2 if ax in in_axes else 3
        order = out_axes.index(ax) if key == 1 else in_axes.index(ax) if key == 2 else ax
        kinds.append((key, order))
    perm = tuple(sorted(range(len(expanded)), key=lambda i: kinds[i]))
    per = [expanded[i] for i in perm]
    key_of = [kinds[i][0] for i in perm]
    return Geometry(
        shape=shape,
        expanded=tuple(expanded),
        perm=perm,
        num_blocks=math.prod(s for s, k in zip(per, key_of) if k == 0),
        n_out=math.prod(s for s, k in zip(per, key_of) if k == 1),
        n_in=math.prod(s for s, k in zip(per, key_of) if k == 2),
        receptive=tuple(s for s, k in zip(per, key_of) if k == 3),
    )


def fans(tensor: torch.Tensor, layout: LayoutLike = None) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of ``tensor`` under ``layout``.

    fan_in = (input units per block) x (receptive field size),
    fan_out = (output units per block) x (receptive field size), where a block is one group of a
    grouped conv and one gate or projection of a stacked RNN or attention weight. With the
    default layout (dim 0 out, dim 1 in) this is exactly torch's
    ``_calculate_fan_in_and_fan_out``, except that grouped convs get per-group fans
    (pass ``layout=(conv, "weight")``: torch multiplies fan_out by the groups).

    Example:
        >>> import torch, weightinit
        >>> conv = torch.nn.Conv2d(4, 4, 3, groups=4)  # depthwise
        >>> weightinit.fans(conv.weight, (conv, "weight"))
        (9, 9)
    """
    g = geometry(tensor, layout)
    return g.fan_in, g.fan_out
