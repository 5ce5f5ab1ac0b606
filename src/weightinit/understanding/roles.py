"""Transformer roles: what each parameter of a Transformer does, and in which block.

Transformer recipes scale parameters by what they do, not by their module type: an attention
output projection and an MLP input projection are both ``nn.Linear``, but GPT-2 shrinks the
first with depth and not the second. :func:`transformer_roles` finds, for every parameter, its
role (:data:`ROLES`), the index of its block and the stack (``ModuleList``) of blocks it is in,
from the module names of the common code bases (nanoGPT/GPT-2, Llama/torchtitan, Hugging
Face BERT, T5 and Llama, OLMo, Megatron, timm ViT) and from structure
(``torch.nn.MultiheadAttention``, ``torch.nn.TransformerEncoderLayer`` /
``TransformerDecoderLayer``). Users name their own modules with ``roles={"glob": "role"}``.
"""

from __future__ import annotations

import fnmatch
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from torch import nn

from weightinit.understanding.knowledge import Kinds, Roles, describe

__all__ = ["ROLES", "TransformerRole", "check_roles", "transformer_roles"]

ROLES = (
    "embedding",  # token embeddings (wte, embed_tokens, word_embeddings, T5's shared)
    "position_embedding",  # learned absolute or relative position embeddings
    "patch_embedding",  # a ViT's patch projection (a conv or a Linear)
    "qkv",  # q, k and v packed in one tensor (c_attn, qkv, in_proj_weight)
    "q",
    "k",
    "v",
    "attn_out",  # the attention's output projection, back into the residual stream
    "mlp_in",  # the MLP's first projection (the gate of a gated MLP)
    "mlp_up",  # a gated MLP's linear branch (Llama w3 / up_proj, T5 wi_1)
    "mlp_out",  # the MLP's output projection, back into the residual stream
    "mlp_gate_up",  # a gated MLP's gate and up projections packed in one tensor (experts)
    "router",  # a mixture of experts' router (its gate), and a shared expert's gate
    "head",  # the output layer (lm_head, head, classifier)
    "norm",  # LayerNorm / RMSNorm scale and shift
)

_QKV = {"c_attn", "qkv", "query_key_value", "wqkv", "att_proj", "qkv_proj", "in_proj", "to_qkv"}
_QKV |= {"linear_qkv"}  # Megatron-core
_Q = {"q", "wq", "q_proj", "query", "q_lin", "to_q"}
_K = {"k", "wk", "k_proj", "key", "k_lin", "to_k"}
_V = {"v", "wv", "v_proj", "value", "v_lin", "to_v"}
_ATTN_OUT = {"o", "o_proj", "out_proj", "attn_out", "out_lin", "to_out", "linear_proj"}
_ATTN_OUT |= {"attention_output"}  # Keras MultiHeadAttention's
_MLP_IN = {"c_fc", "fc1", "w1", "wi", "wi_0", "gate_proj", "linear1", "ff_proj"}
_MLP_IN |= {"dense_h_to_4h", "lin1", "fc_in", "linear_fc1"}
_MLP_UP = {"w3", "up_proj", "wi_1"}
_MLP_OUT = {"fc2", "w2", "down_proj", "linear2", "dense_4h_to_h", "lin2", "fc_out", "linear_fc2"}
_HEAD = {"lm_head", "head", "classifier", "qa_outputs", "score", "embed_out", "output_layer"}
_TOP_HEAD = {"output", "ff_out", "out", "fc", "proj"}  # heads when outside every block
_CONTEXT = {"c_proj", "proj", "dense", "wo", "ff_out", "out", "output"}  # attn or MLP by place
_POSITION = {"wpe", "position_embeddings", "embed_positions", "pos_emb", "pos_embed"}
_POSITION |= {"pos_embedding", "position_embedding", "relative_attention_bias"}
_PATCH = {"patch_embed", "patch_embeddings", "patch_embedding", "conv_proj", "to_patch_embedding"}
_MLP_PLACES = ("mlp", "ffn", "feed_forward", "feedforward", "densereludense", "densegated")
_CROSS = {"encdecattention", "crossattention", "encoder_attn", "cross_attn", "src_attn"}


@dataclass(frozen=True)
class TransformerRole:
    """One parameter as the Transformer recipes see it.

    ``role``: one of :data:`ROLES`, or None (no Transformer role: the recipe's fallback).
    ``layer``: the index of its block in ``stack`` (the path of the ``ModuleList`` of blocks,
    e.g. ``"transformer.h"`` or ``"decoder.layers"``), None outside every block. ``cross``: in a
    cross-attention. ``decoder``: in a stack whose blocks have cross-attention. ``source``:
    how the role was found ("name", "structure" or "user").
    """

    role: str | None
    layer: int | None = None
    stack: str = ""
    cross: bool = False
    decoder: bool = False
    source: str = "name"


def check_roles(roles: Mapping[str, str] | None, option: str = "roles") -> dict[str, str]:
    """Validate a user's ``{"name_glob": "role"}`` map (raises ValueError naming the roles)."""
    if roles is None:
        return {}
    if not isinstance(roles, Mapping):
        raise TypeError(
            f"option `{option}` must be a dict of name globs to roles, e.g. "
            f"{{'*.to_v': 'v'}}, got {type(roles).__name__}"
        )
    for glob, role in roles.items():
        if not isinstance(glob, str):
            raise TypeError(f"option `{option}`: keys are name globs (str), got {glob!r}")
        if role not in ROLES:
            raise ValueError(
                f"option `{option}`: unknown role {role!r} for {glob!r}; the roles are "
                f"{', '.join(ROLES)}"
            )
    return dict(roles)


def transformer_roles(
    model: nn.Module,
    roles: Mapping[str, str] | None = None,
    names: Iterable[str] | None = None,
) -> dict[str, TransformerRole]:
    """The :class:`TransformerRole` of every parameter of ``model`` (or of ``names``).

    Roles come, in this order, from ``roles`` (``{"name_glob": "role"}``, matched against the
    parameter's name and its module's name), from structure (``nn.MultiheadAttention``:
    ``in_proj_weight`` is packed qkv, ``out_proj`` the attention output; norm layers), and
    from the module names of GPT-2 (``c_attn``, ``c_proj`` under ``attn`` or ``mlp``,
    ``c_fc``), Llama (``wq/wk/wv/wo``, ``w1/w2/w3``, ``q_proj``..``o_proj``,
    ``gate_proj/up_proj/down_proj``), BERT (``query/key/value``, ``attention.output.dense``,
    ``intermediate.dense``, ``output.dense``), T5 (``q/k/v/o``, ``wi/wo``), ``fc1/fc2``,
    ``linear1/linear2``, heads (``lm_head/head/classifier``, a top-level ``output``) and
    embeddings (``wte/wpe/tok_embeddings/embed_tokens/word_embeddings/position_embeddings``,
    ``patch_embed``). The block index is the first number in the module path under a
    ``ModuleList``/``ModuleDict`` (``h.3``, ``layers.3``, ``layer.3``, ``blocks.3``) or an
    ``nn.Sequential`` of blocks (timm's ``blocks.3``, torchvision's ``encoder_layer_3``).

    Example:
        >>> import torch
        >>> from weightinit.recipes import transformer_roles
        >>> layer = torch.nn.TransformerEncoderLayer(16, 2, 32)
        >>> net = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        >>> found = transformer_roles(net)
        >>> found["layers.1.self_attn.in_proj_weight"].role, found["layers.1.linear2.weight"]
        ('qkv', TransformerRole(role='mlp_out', layer=1, stack='layers', cross=False, decoder=False, source='name'))
    """
    user = check_roles(roles)
    chosen = list(names) if names is not None else [n for n, _ in model.named_parameters()]
    found = {name: _role(model, name, user) for name in chosen}
    decoders = {r.stack for r in found.values() if r.cross and r.layer is not None}
    return {
        name: TransformerRole(r.role, r.layer, r.stack, r.cross, r.stack in decoders, r.source)
        if r.stack in decoders
        else r
        for name, r in found.items()
    }


def layer_counts(found: Mapping[str, TransformerRole]) -> dict[str, int]:
    """Blocks per stack: the number of distinct block indices (a stack's depth L)."""
    indices: dict[str, set[int]] = {}
    for r in found.values():
        if r.layer is not None:
            indices.setdefault(r.stack, set()).add(r.layer)
    return {stack: len(seen) for stack, seen in indices.items()}


def role_counts(found: Mapping[str, TransformerRole]) -> dict[str, int]:
    """How many parameters have each role (None: "none"), for a plan's notes."""
    counts = Counter(r.role or "none" for r in found.values())
    return {role: counts[role] for role in (*ROLES, "none") if counts[role]}


def _role(model: nn.Module, name: str, user: dict[str, str]) -> TransformerRole:
    *path, leaf = name.split(".")
    modules = _chain(model, path)
    stack, layer = _block(path, modules)
    lowered = [part.lower() for part in path]
    cross = any(part in _CROSS for part in lowered) or _torch_cross(path, modules)
    place = {"layer": layer, "stack": stack, "cross": cross}
    module_name = ".".join(path)
    for glob, role in user.items():
        if fnmatch.fnmatchcase(name, glob) or (path and fnmatch.fnmatchcase(module_name, glob)):
            return TransformerRole(role, **place, source="user")
    owner = modules[-1]
    if isinstance(owner, nn.MultiheadAttention):
        role = {"in_proj_weight": "qkv", "in_proj_bias": "qkv", "q_proj_weight": "q"}
        role |= {"k_proj_weight": "k", "v_proj_weight": "v"}
        return TransformerRole(role.get(leaf), **place, source="structure")
    if len(modules) > 1 and isinstance(modules[-2], nn.MultiheadAttention):
        return TransformerRole("attn_out", **place, source="structure")  # its out_proj
    info = describe(model, name)
    moe = _moe_role(info, leaf, lowered, modules)  # experts and routers
    if moe is not None:
        return TransformerRole(moe, **place, source="structure")
    if info is not None and info.role in (Roles.NORM_SCALE, Roles.NORM_SHIFT):
        return TransformerRole("norm", **place, source="structure")
    if info is not None and info.role == Roles.POSITION:  # a raw pos_embed / pos_embedding
        return TransformerRole("position_embedding", **place, source="structure")
    role = _by_name(lowered, owner, layer is None) or _mlp_position(lowered, modules)
    return TransformerRole(role, **place)


# --- mixture of experts ---------------------------------------------------------------------
# Expert tensors (knowledge.py's Kinds.EXPERTS) take their role from their own name: HF's
# packed gate_up_proj is "mlp_gate_up", down_proj the MLP output (a residual output, as each
# expert's output is summed into the residual stream); torchtitan's w1 / w3 / w2 as in its
# FeedForward. A router is a module whose class name ends in "Router" (HF's TopKRouter), a
# Linear named "router", or "gate" inside "router" (torchtitan's router.gate) or beside an
# "experts" module (transformers 4's Mixtral and Qwen2-MoE block); Qwen2-MoE's
# shared_expert_gate (a Linear to one sigmoid gate) is a router too. A shared expert is an
# ordinary gated MLP (gate_proj / up_proj / down_proj) and gets its roles by name.
_EXPERT_ROLES = {"gate_up_proj": "mlp_gate_up", "gate_proj": "mlp_in", "w1": "mlp_in"}
_EXPERT_ROLES |= {"up_proj": "mlp_up", "w3": "mlp_up", "down_proj": "mlp_out", "w2": "mlp_out"}


def _moe_role(info: object, leaf: str, lowered: list[str], modules: list[nn.Module]) -> str | None:
    if info is not None and info.kind == Kinds.EXPERTS:
        return _EXPERT_ROLES.get(leaf)
    own = lowered[-1] if lowered else ""
    if type(modules[-1]).__name__.lower().endswith("router") and info is not None:
        return "router" if info.role in (Roles.WEIGHT, Roles.BIAS) else None
    if own in ("router", "shared_expert_gate"):
        return "router"
    beside_experts = len(modules) > 1 and "experts" in modules[-2]._modules
    if own == "gate" and (lowered[-2:-1] == ["router"] or beside_experts):
        return "router"
    return None


# --- end of mixture of experts ---


def _mlp_position(lowered: list[str], modules: list[nn.Module]) -> str | None:
    """A Linear numbered in a Sequential MLP (torchvision's ``mlp.0`` / ``mlp.3``): the first
    Linear is ``mlp_in``, the last ``mlp_out``."""
    parent, owner = modules[-2:] if len(modules) > 1 else (None, None)
    if not isinstance(parent, nn.Sequential) or not lowered[-2:-1]:
        return None
    if not lowered[-2].startswith(_MLP_PLACES):
        return None
    linears = [m for m in parent.children() if isinstance(m, nn.Linear)]
    if len(linears) < 2:
        return None
    if owner is linears[0]:
        return "mlp_in"
    return "mlp_out" if owner is linears[-1] else None


def _by_name(lowered: list[str], owner: nn.Module, outside: bool) -> str | None:
    own = lowered[-1] if lowered else ""
    above = lowered[:-1]
    if any(part in _PATCH for part in lowered):
        return "patch_embedding"
    if isinstance(owner, nn.Embedding):
        return "position_embedding" if own in _POSITION else "embedding"
    if isinstance(owner, nn.modules.conv._ConvNd):
        return "patch_embedding" if outside else None
    for names, role in ((_QKV, "qkv"), (_Q, "q"), (_K, "k"), (_V, "v"), (_MLP_UP, "mlp_up")):
        if own in names:
            return role
    in_attention = any("attn" in part or "attention" in part for part in above)
    if own in _ATTN_OUT or (own in _CONTEXT and in_attention):
        return "attn_out"
    if own in _MLP_IN or (own in _CONTEXT and above and above[-1] == "intermediate"):
        return "mlp_in"
    in_mlp = any(part.startswith(_MLP_PLACES) for part in above)
    by_place = own in _CONTEXT and (in_mlp or above[-1:] == ["output"] or own == "ff_out")
    if own in _MLP_OUT or (by_place and not outside):
        return "mlp_out"
    if own in _HEAD or (outside and own in _TOP_HEAD):
        return "head"
    if "norm" in own or own.startswith("ln"):  # norm modules torch does not know (RMSNorm)
        return "norm"
    return None


def _chain(model: nn.Module, path: list[str]) -> list[nn.Module]:
    """The modules from ``model`` down to the parameter's owner."""
    modules = [model]
    for part in path:
        modules.append(modules[-1]._modules[part])
    return modules


def _block(path: list[str], modules: list[nn.Module]) -> tuple[str, int | None]:
    """(stack path, block index): the first numbered child of a stack of blocks, a
    ``ModuleList`` or ``ModuleDict`` (``h.3``, torchtitan's ``layers["3"]``), or an
    ``nn.Sequential`` of blocks (timm's ``blocks.3``, torchvision's
    ``layers.encoder_layer_3``)."""
    for i, part in enumerate(path):
        index = _BLOCK_INDEX.fullmatch(part)
        if index is None:
            continue
        if (part.isdigit() and isinstance(modules[i], (nn.ModuleList, nn.ModuleDict))) or (
            isinstance(modules[i], nn.Sequential) and _holds_blocks(modules[i])
        ):
            return ".".join(path[:i]), int(index.group(1))
    return "", None


_BLOCK_INDEX = re.compile(r"(?:[A-Za-z_]*_)?(\d+)")  # "3", "encoder_layer_3"


def _holds_blocks(seq: nn.Sequential) -> bool:
    """A Sequential of blocks, not a small MLP: its children are all of one class, and that
    class holds modules of its own (a Sequential of Linear layers is no stack)."""
    children = list(seq.children())
    return (
        bool(children)
        and len({type(c) for c in children}) == 1
        and next(iter(children[0].children()), None) is not None
    )


def _torch_cross(path: list[str], modules: list[nn.Module]) -> bool:
    """torch.nn.TransformerDecoderLayer's ``multihead_attn`` is its cross-attention."""
    return any(
        part == "multihead_attn" and isinstance(modules[i], nn.TransformerDecoderLayer)
        for i, part in enumerate(path)
    )
