"""The layout of every parameter of the parametrized ``torch.nn`` modules.

One table, keyed by module type, says how each parameter's axes are laid out. ``layout_for``
reads it; nothing else in the library switches on module types to find fans.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from torch import nn

from weightinit.layout import Layout

__all__ = ["layout_for"]

_LINEAR = Layout()


def _linear(module: nn.Module, name: str, ndim: int) -> Layout | None:
    return {"weight": _LINEAR, "bias": Layout.elementwise()}.get(name)


def _bilinear(module: nn.Module, name: str, ndim: int) -> Layout | None:
    # y_k = x1^T W_k x2 + b_k: every output sums over in1 * in2 products, no receptive field.
    weight = Layout(out_axes=(0,), in_axes=(1, 2))
    return {"weight": weight, "bias": Layout.elementwise()}.get(name)


def _conv(module: nn.Module, name: str, ndim: int) -> Layout | None:
    if name == "bias":
        return Layout.elementwise()
    if name != "weight":
        return None
    # Conv weight: (out, in / groups, *k). ConvTranspose weight: (in, out / groups, *k).
    # Either way dim 0 holds all the groups; fans are per group.
    if module.transposed:
        return Layout(out_axes=(1,), in_axes=(0,), groups=module.groups, group_axis=0)
    return Layout(out_axes=(0,), in_axes=(1,), groups=module.groups, group_axis=0)


def _gates(module: nn.Module, weight_ih: str) -> int:
    return getattr(module, weight_ih).shape[0] // module.hidden_size


_RNN_PARAM = re.compile(r"(weight_ih|weight_hh|weight_hr|bias_ih|bias_hh)(_l\d+(_reverse)?)?")


def _recurrent(module: nn.Module, name: str, ndim: int) -> Layout | None:
    match = _RNN_PARAM.fullmatch(name)
    if match is None:
        return None
    kind, suffix = match.group(1), match.group(2) or ""
    if kind == "weight_hr":  # LSTM projection (proj_size): a plain (proj, hidden) matrix
        return _LINEAR
    blocks = _gates(module, "weight_ih" + (suffix if isinstance(module, nn.RNNBase) else ""))
    if kind.startswith("bias"):
        return Layout.elementwise(blocks=blocks)
    return Layout(blocks=blocks)


def _attention(module: nn.Module, name: str, ndim: int) -> Layout | None:
    return {
        "in_proj_weight": Layout(blocks=3),  # q, k, v stacked: (3E, E)
        "in_proj_bias": Layout.elementwise(blocks=3),
        "q_proj_weight": _LINEAR,
        "k_proj_weight": _LINEAR,
        "v_proj_weight": _LINEAR,
        "bias_k": Layout(out_axes=(2,), in_axes=()),  # (1, 1, E)
        "bias_v": Layout(out_axes=(2,), in_axes=()),
    }.get(name)


def _embedding(module: nn.Module, name: str, ndim: int) -> Layout | None:
    # One row per token. The table is the transpose of a Linear fed one-hot tokens, but only
    # one token is active per lookup, so each row is its own block: fan_in 1 (the one active
    # input), fan_out the embedding dim. LeCun init then gives torch's N(0, 1), and
    # fan_out modes give N(0, 1/dim) (Flax's default).
    if name != "weight":
        return None
    return Layout(out_axes=(1,), in_axes=(0,), blocks=module.num_embeddings, block_axis=0)


def _elementwise(module: nn.Module, name: str, ndim: int) -> Layout | None:
    return Layout.elementwise(ndim) if name in ("weight", "bias") else None


_TABLE: dict[type, Callable[[nn.Module, str, int], Layout | None]] = {
    nn.Linear: _linear,
    nn.Bilinear: _bilinear,
    nn.modules.conv._ConvNd: _conv,
    nn.RNNBase: _recurrent,
    nn.RNNCellBase: _recurrent,
    nn.MultiheadAttention: _attention,
    nn.Embedding: _embedding,
    nn.EmbeddingBag: _embedding,
    nn.modules.batchnorm._NormBase: _elementwise,  # BatchNorm*, InstanceNorm*
    nn.LayerNorm: _elementwise,
    nn.GroupNorm: _elementwise,
    nn.RMSNorm: _elementwise,
    nn.PReLU: _elementwise,
}


def layout_for(module: nn.Module, param_name: str) -> Layout:
    """The :class:`~weightinit.Layout` of ``module``'s parameter ``param_name``.

    ``param_name`` may be dotted (``"self_attn.out_proj.weight"``). Knows Linear, Bilinear,
    Conv1/2/3d and ConvTranspose1/2/3d (with groups, depthwise included), RNN/LSTM/GRU and
    their cells (stacked gates, proj_size), MultiheadAttention (packed and separate q/k/v,
    bias_k/v), Embedding/EmbeddingBag, the normalization layers and PReLU.

    Example:
        >>> import torch, weightinit
        >>> lstm = torch.nn.LSTM(10, 20)
        >>> weightinit.layout_for(lstm, "weight_ih_l0").blocks
        4
    """
    *path, leaf = param_name.split(".")
    owner = module
    for part in path:
        child = owner._modules.get(part)
        if child is None:
            raise ValueError(
                f"layout_for: {type(owner).__name__} has no submodule {part!r} "
                f"(on the way to {param_name!r}); submodules: {sorted(owner._modules)}"
            )
        owner = child
    param = owner._parameters.get(leaf)
    if param is None:
        raise ValueError(
            f"layout_for: {type(owner).__name__} has no parameter {leaf!r}; "
            f"its parameters are {sorted(k for k, v in owner._parameters.items() if v is not None)}"
        )
    if isinstance(param, nn.parameter.UninitializedParameter):
        raise ValueError(
            f"layout_for: {param_name!r} of {type(owner).__name__} is not materialized yet "
            "(a lazy module): run one forward pass on an example input first"
        )
    for cls in type(owner).__mro__:
        rule = _TABLE.get(cls)
        if rule is not None:
            layout = rule(owner, leaf, param.ndim)
            if layout is not None:
                return layout
            break
    raise ValueError(
        f"layout_for: weightinit has no layout for parameter {leaf!r} of "
        f"{type(owner).__name__}; describe it with "
        "weightinit.Layout(out_axes=..., in_axes=..., groups=..., blocks=...)"
    )
