"""Transformer recipes: the initializations of the reference code bases, and T-Fixup.

Every scheme here first finds each parameter's Transformer role and block (see
:mod:`weightinit.recipes.roles`), then chooses as the original code does:

- ``"gpt2"``: GPT-2 (Radford et al. 2019) as in karpathy/nanoGPT ``model.py``: every Linear
  and Embedding N(0, 0.02^2), biases 0, the residual output projections (``attn_out``,
  ``mlp_out``: nanoGPT's ``c_proj``) N(0, (0.02 / sqrt(2L))^2), norms 1 / 0.
- ``"megatron"``: Megatron-LM (Shoeybi et al. 2019): ``init_method_normal(sigma)`` for every
  weight and embedding, ``scaled_init_method_normal(sigma, L)`` = sigma / sqrt(2L) for the
  output layers (attention ``dense`` and ``dense_4h_to_h``).
- ``"torchtitan"``: pytorch/torchtitan's Llama ``init_weights``: token embeddings N(0, 1);
  wq, wk, wv, w1 ``trunc_normal_(std=0.02)``; wo, w2, w3 ``trunc_normal_(std=s)`` with
  s = 0.02 / sqrt(2 (layer + 1)) (``depth_init=True``) or 0.02 / sqrt(2L); the output layer
  truncated normal with std dim^-0.5, cut at 3 std. torch's ``trunc_normal_`` cuts at +-2
  *absolute*, which these calls keep (``bounds="absolute"``).
- ``"olmo"``: OLMo's "mitchell" init (allenai/OLMo ``olmo/model.py``): normals truncated at
  3 std; embeddings, q/k/v and MLP inputs std 1 / sqrt(d); attention output
  1 / sqrt(2 d (layer + 1)); MLP output 1 / sqrt(2 d_ff (layer + 1)); head 1 / sqrt(d).
- ``"bert"``: BERT (Devlin et al. 2019), Hugging Face ``BertPreTrainedModel._init_weights``:
  every Linear and Embedding N(0, 0.02^2), biases 0, norms 1 / 0.
- ``"t5"``: T5 (Raffel et al. 2020), Hugging Face ``T5PreTrainedModel._init_weights``, with
  ``factor`` its ``initializer_factor``: q N(0, factor^2 / (d d_kv)), k, v, o, wi, wo
  N(0, factor^2 / fan_in), token embeddings and ``lm_head`` N(0, factor^2), relative
  position embeddings N(0, factor^2 / d), norms ``factor``.
- ``"vit_jax"``: ViT (Dosovitskiy et al. 2021) as in google-research/vision_transformer (and
  timm's ``init_weights_vit_jax``): Xavier-uniform Linear weights (q, k, v each its own
  matrix), MLP biases N(0, 1e-6^2), other biases 0, a zero head (bias ``head_bias``),
  LeCun-normal (truncated) patch embedding, position embeddings N(0, 0.02^2) (raw ``pos_embed``
  tables too), class token 0 (``self.param('cls', nn.initializers.zeros, ...)``).
- ``"vit"``: the ViTs of timm and Hugging Face. ``style="timm"`` (the default) is timm's
  ``VisionTransformer.init_weights`` (``init_weights_vit_timm``): every ``nn.Linear``
  ``trunc_normal_(std=.02)`` with zero bias, every other layer torch's default (the patch
  conv), positions ``trunc_normal_(std=.02)``, class and register tokens N(0, 1e-6^2).
  ``style="hf"`` is ``ViTPreTrainedModel._init_weights``: Linear, conv and Embedding weights
  N(0, std^2), zero biases, positions and class token ``trunc_normal_(std)``, mask token 0,
  with ``std`` the model's ``initializer_range`` (0.02).
- ``"t-fixup"``: Huang, Perez, Ba & Volkovs 2020, "Improving Transformer Optimization Through
  Better Initialization" (layer6ai-labs/T-Fixup): Xavier weights; in the encoder v, the
  attention output and the MLP weights times 0.67 N^(-1/4); in the decoder (blocks with
  cross-attention) v, the attention outputs and the MLP weights of self- and cross-attention
  times (9N)^(-1/4); token embeddings N(0, d^-1) times (9N)^(-1/4). Trains without LayerNorm
  and without learning-rate warm-up.

Mixtures of experts: each expert's tensors have their own fans (see ``understanding/knowledge.py``);
an expert's ``down_proj`` is an MLP output and is depth-scaled like any residual output
("gpt2", "megatron", "torchtitan", "olmo"); a packed ``gate_up_proj`` ("mlp_gate_up") takes
the rule of the MLP input under every preset but "torchtitan", which scales its up halves as
its w3 (and its routers as the residual outputs, as torchtitan's ``moe.py`` does); routers
otherwise get the preset's base rule (N(0, 0.02^2) under "gpt2", "megatron" and "bert").

Parameters without a Transformer role get the preset's default, named in the reason. Raw
parameters known by their conventional names (see ``understanding/knowledge.py``): a raw
position table has the role ``position_embedding`` and takes the preset's rule for it; tokens,
layer scales, relative position bias tables and CLIP's logit scale keep their reference
initialization (``_Preset.raw``; "vit_jax" zeroes the class token, "vit" draws it as its
style does).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from torch import nn

from weightinit._checks import finite, is_integer, is_number
from weightinit.scheme.classic import classic, constant_choice, scaled
from weightinit.scheme.protocol import Choice, Options, Param, Scheme, Survey
from weightinit.scheme.registry import register_scheme
from weightinit.understanding.knowledge import Kinds, Roles, describe
from weightinit.understanding.roles import (
    ROLES,
    TransformerRole,
    check_roles,
    layer_counts,
    role_counts,
    transformer_roles,
)

__all__ = ["ROLES", "TransformerRole", "transformer_roles"]

_NO_ROLE = TransformerRole(None)
# parameters that are no Transformer's (RNN recurrent weights and gate biases, PReLU slopes):
# the shared options, with Glorot where they need a weight rule
_OTHER = classic(scaled(lambda g2: 1.0, "fan_avg", "uniform", "Glorot: Var = 2 / (in + out)"))
_RESIDUAL_OUT = ("attn_out", "mlp_out")


def _positive(name: str, value: object, kind: type = float) -> None:
    if not is_number(value) or value <= 0 or (kind is int and not is_integer(value)):
        what = "a positive int" if kind is int else "a positive number"
        raise ValueError(f"option `{name}` must be {what}, got {value!r}")


def _layers_option(n_layers: object) -> None:
    if n_layers is not None:
        _positive("n_layers", n_layers, int)


@dataclass(frozen=True)
class GPT2Options:
    """``std``: the normal's std (0.02). ``n_layers``: L for the residual scaling (default:
    the blocks counted in each stack). ``roles``: ``{"name_glob": "role"}``."""

    std: float = 0.02
    n_layers: int | None = None
    roles: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        _positive("std", self.std)
        _layers_option(self.n_layers)
        check_roles(self.roles)


@dataclass(frozen=True)
class BertOptions:
    """``std``: BERT's ``initializer_range`` (0.02). ``roles``: ``{"name_glob": "role"}``."""

    std: float = 0.02
    roles: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        _positive("std", self.std)
        check_roles(self.roles)


@dataclass(frozen=True)
class TorchtitanOptions:
    """``std`` (0.02); ``depth_init``: scale the output projections by their own block's depth
    (True) or by the model's (False); ``n_layers``: L when ``depth_init=False``."""

    std: float = 0.02
    depth_init: bool = True
    n_layers: int | None = None
    roles: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        _positive("std", self.std)
        if not isinstance(self.depth_init, bool):
            raise TypeError(f"option `depth_init` must be True or False, got {self.depth_init!r}")
        _layers_option(self.n_layers)
        check_roles(self.roles)


@dataclass(frozen=True)
class RolesOnly:
    """``roles``: ``{"name_glob": "role"}`` for modules the name tables do not know."""

    roles: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        check_roles(self.roles)


@dataclass(frozen=True)
class T5Options:
    """``factor``: T5's ``initializer_factor`` (1.0). ``head_dim``: d_kv, when the attention
    module does not say it (``key_value_proj_dim`` or ``head_dim``)."""

    factor: float = 1.0
    head_dim: int | None = None
    roles: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        _positive("factor", self.factor)
        if self.head_dim is not None:
            _positive("head_dim", self.head_dim, int)
        check_roles(self.roles)


@dataclass(frozen=True)
class VitOptions:
    """``head_bias``: the head's bias (0; timm's "jax_nlhb" uses -log(num_classes))."""

    head_bias: float = 0.0
    roles: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        finite("", "head_bias", self.head_bias)
        check_roles(self.roles)


_VIT_STYLES = ("timm", "hf")


@dataclass(frozen=True)
class ViTStyleOptions:
    """``style``: "timm" (timm's ``init_weights_vit_timm``, the default) or "hf" (Hugging
    Face's ``ViTPreTrainedModel._init_weights``). ``std``: the normal's std (0.02; HF's
    ``initializer_range``). ``roles``: ``{"name_glob": "role"}``."""

    style: str = "timm"
    std: float = 0.02
    roles: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if self.style not in _VIT_STYLES:
            raise ValueError(
                f"option `style` must be 'timm' (timm's init_weights_vit_timm) or 'hf' "
                f"(Hugging Face's ViT _init_weights), got {self.style!r}"
            )
        _positive("std", self.std)
        check_roles(self.roles)


@dataclass(frozen=True)
class TFixupOptions:
    """``n_layers``: N (default: the blocks counted in each stack, encoder and decoder apart)."""

    n_layers: int | None = None
    roles: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        _layers_option(self.n_layers)
        check_roles(self.roles)


@dataclass
class _Context:
    """What a preset knows about the whole model when it chooses for one parameter."""

    scheme: str
    model: object
    extra: object
    found: dict[str, TransformerRole]
    layers: dict[str, int]
    d_model: int | None
    options: Options

    def depth(self, r: TransformerRole) -> int:
        """L of the parameter's stack: the ``n_layers`` option, else the blocks counted."""
        given = getattr(self.extra, "n_layers", None)
        return given or self.layers.get(r.stack, 1)


def _normal(std: float, why: str) -> Choice:
    return Choice("normal", {"std": std}, why)


def _trunc(std: float, cut: float, why: str, absolute: bool = False) -> Choice:
    if absolute:  # torch.nn.init.trunc_normal_(std=...) with its default a=-2, b=2 (absolute)
        args = {"std": std, "a": -cut, "b": cut, "bounds": "absolute"}
    else:
        args = {"std": std, "a": -cut, "b": cut}
    return Choice("trunc_normal", args, why)


def _xavier(scale: float, why: str) -> Choice:
    args = {"scale": scale, "mode": "fan_avg", "distribution": "uniform"}
    return Choice("variance_scaling", args, why)


def _packed(scales: list[float], mode: str, distribution: str, why: str) -> Choice:
    args = {"scales": scales, "mode": mode, "distribution": distribution}
    return Choice("packed_variance_scaling", args, why)


def _what(r: TransformerRole) -> str:
    where = f" of block {r.layer}" if r.layer is not None else ""
    return f"{r.role or 'no Transformer role'}{where}"


# --- the presets: (param, role, context) -> Choice for weights and embeddings -----------------


def _gpt2_like(label: str, out_label: str) -> Callable:
    def weight(p: Param, r: TransformerRole, ctx: _Context) -> Choice:
        std = ctx.extra.std
        if r.role in _RESIDUAL_OUT:
            L = ctx.depth(r)
            why = f"{_what(r)}: residual output, N(0, ({std:g}/sqrt(2*{L}))^2); {out_label}"
            return _normal(std / math.sqrt(2 * L), why)
        return _normal(std, f"{_what(r)}: N(0, {std:g}^2); {label}")

    return weight


def _bert(p: Param, r: TransformerRole, ctx: _Context) -> Choice:
    std = ctx.extra.std
    return _normal(std, f"{_what(r)}: N(0, {std:g}^2); BERT _init_weights (Devlin et al. 2019)")


def _torchtitan(p: Param, r: TransformerRole, ctx: _Context) -> Choice:
    std, label = ctx.extra.std, "torchtitan llama init_weights"
    if r.role in ("embedding", "position_embedding"):
        return _normal(1.0, f"{_what(r)}: N(0, 1); {label}")
    if r.role == "head":
        d = p.fans[0]
        return _trunc(d**-0.5, 3.0, f"head: trunc_normal std dim^-0.5 = {d}^-0.5 at 3 std; {label}")
    if r.role in (*_RESIDUAL_OUT, "mlp_up", *_TITAN_MOE_SCALED):
        if ctx.extra.depth_init and r.layer is not None:
            out = std / math.sqrt(2 * (r.layer + 1))
            rule = f"{std:g}/sqrt(2*({r.layer}+1))"
        else:
            L = ctx.depth(r)
            out, rule = std / math.sqrt(2 * L), f"{std:g}/sqrt(2*{L})"
        if r.role == "mlp_gate_up":
            return _titan_gate_up(p, r, std, out, rule)
        if r.role == "router":
            label = "torchtitan moe.py TokenChoiceTopKRouter.init_weights(init_std)"
        return _trunc(out, 2.0, f"{_what(r)}: trunc_normal std {rule}; {label}", absolute=True)
    return _trunc(std, 2.0, f"{_what(r)}: trunc_normal std {std:g}; {label}", absolute=True)


# --- mixture of experts under "torchtitan" ----------------------------------------------------
# pytorch/torchtitan torchtitan/models/moe.py, called by each block as
# ``self.moe.init_weights(self.weight_init_std, buffer_device)``, where weight_init_std is
# 0.02 / (2 * (layer_id + 1)) ** 0.5 (depth_init) or 0.02 / (2 * n_layers) ** 0.5:
#     GroupedExperts.init_weights(self, init_std):
#         nn.init.trunc_normal_(self.w1, mean=0.0, std=0.02)
#         nn.init.trunc_normal_(self.w2, mean=0.0, std=init_std)
#         nn.init.trunc_normal_(self.w3, mean=0.0, std=init_std)
#     TokenChoiceTopKRouter.init_weights(self, init_std):
#         nn.init.trunc_normal_(self.gate.weight, mean=0.0, std=init_std)
#     FeedForward.init_weights(self, init_std=0.02):  # the shared experts
#         nn.init.trunc_normal_(self.w1.weight, mean=0.0, std=0.02)
#         for linear in (self.w2, self.w3): nn.init.trunc_normal_(linear.weight, ..., std=init_std)
# So the router is scaled like w2 and w3; a packed gate_up_proj holds w1 (gate) and w3 (up).
_TITAN_MOE_SCALED = ("router", "mlp_gate_up")


def _titan_gate_up(p: Param, r: TransformerRole, std: float, out: float, rule: str) -> Choice:
    """Every expert's gate half std ``std`` (w1), its up half ``out`` (w3): per (expert, half)
    block of the layout, expert-major. torch's trunc_normal_ cuts at +-2 absolute, 2 / std
    standard deviations (100 at std 0.02): a normal, which the reason says."""
    fan_in = p.fans[0]
    halves = p.geometry.num_blocks
    if halves % 2:  # not packed halves (a layout of the user's): one std, as w1
        return _trunc(std, 2.0, f"{_what(r)}: trunc_normal std {std:g}; torchtitan", absolute=True)
    scales = [std * std * fan_in, out * out * fan_in] * (halves // 2)
    why = (
        f"{_what(r)}: gate halves (w1) std {std:g}, up halves (w3) std {rule}, per expert; "
        f"torchtitan moe.py GroupedExperts.init_weights (normal; its +-2 cut is {2 / std:.0f} std)"
    )
    return _packed(scales, "fan_in", "normal", why)


# --- end of mixture of experts ---


def _olmo(p: Param, r: TransformerRole, ctx: _Context) -> Choice:
    label = "OLMo 'mitchell' init, truncated at 3 std"
    if r.role in ("embedding", "position_embedding"):
        d = p.shape[-1]
        return _trunc(d**-0.5, 3.0, f"{_what(r)}: std 1/sqrt(d) = 1/sqrt({d}); {label}")
    fan_in, fan_out = p.fans
    if r.role == "attn_out" and r.layer is not None:
        std, rule = (2 * fan_out * (r.layer + 1)) ** -0.5, f"1/sqrt(2*{fan_out}*({r.layer}+1))"
    elif r.role == "mlp_out" and r.layer is not None:
        std, rule = (2 * fan_in * (r.layer + 1)) ** -0.5, f"1/sqrt(2*{fan_in}*({r.layer}+1))"
    else:
        std, rule = fan_in**-0.5, f"1/sqrt({fan_in})"
    return _trunc(std, 3.0, f"{_what(r)}: std {rule}; {label}")


def _t5_head_dim(p: Param, ctx: _Context) -> int:
    if ctx.extra.head_dim is not None:
        return ctx.extra.head_dim
    path = p.name.split(".")[:-2]
    attention = ctx.model.get_submodule(".".join(path)) if path else ctx.model
    for module in (ctx.model.get_submodule(p.module), attention):
        for attr in ("key_value_proj_dim", "head_dim", "d_kv", "attention_head_size"):
            value = getattr(module, attr, None)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    raise ValueError(
        f"scheme 't5': the head dimension d_kv of {p.name!r} is unknown (its attention module "
        "has no `key_value_proj_dim` or `head_dim`); pass head_dim=..."
    )


_T5_WIDE_HEADS = ("lm_head", "classifier")


def _t5(p: Param, r: TransformerRole, ctx: _Context) -> Choice:
    f, label = ctx.extra.factor, "T5 _init_weights (Raffel et al. 2020)"
    # T5ForConditionalGeneration's lm_head and T5ForTokenClassification's classifier
    if r.role == "embedding" or (r.role == "head" and p.name.split(".")[-2] in _T5_WIDE_HEADS):
        return _normal(f, f"{_what(r)}: N(0, factor^2), factor {f:g}; {label}")
    if r.role == "position_embedding":
        d = ctx.d_model or p.shape[-1]
        return _normal(f * d**-0.5, f"{_what(r)}: N(0, factor^2 / d_model), d_model {d}; {label}")
    fan_in = p.fans[0]
    if r.role in ("q", "qkv"):
        d_kv = _t5_head_dim(p, ctx)
        why = f"{_what(r)}: q N(0, factor^2 / (d_model d_kv)), d_kv {d_kv}"
        if r.role == "qkv":
            scales = [f * f / d_kv, f * f, f * f]
            return _packed(
                scales, "fan_in", "normal", f"{why}; k, v N(0, factor^2 / d_model); {label}"
            )
        return _normal(f / math.sqrt(fan_in * d_kv), f"{why}; {label}")
    return _normal(f / math.sqrt(fan_in), f"{_what(r)}: N(0, factor^2 / fan_in); {label}")


def _vit_jax(p: Param, r: TransformerRole, ctx: _Context) -> Choice:
    label = "ViT (Dosovitskiy et al. 2021), vision_transformer / timm init_weights_vit_jax"
    if r.role == "head" and _contrastive(ctx.model):
        why = (
            "head of a contrastive model (it has a logit_scale): a projection its model divides "
            "by its norm, not a classifier (0 would give 0 / 0): Xavier uniform"
        )
        return _xavier(1.0, f"{why}; {label}")
    if r.role == "head":
        return Choice("zeros", {}, f"head: 0; {label}")
    if r.role == "patch_embedding":
        args = {"scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal"}
        return Choice("variance_scaling", args, f"patch embedding: LeCun normal; {label}")
    if r.role in ("embedding", "position_embedding"):
        return _normal(0.02, f"{_what(r)}: N(0, 0.02^2); {label}")
    if r.role == "qkv":
        return _packed(
            [1.0, 1.0, 1.0], "fan_avg", "uniform", f"qkv: Xavier uniform per projection; {label}"
        )
    return _xavier(1.0, f"{_what(r)}: Xavier uniform; {label}")


def _contrastive(model: object) -> bool:
    """Does ``model`` hold a contrastive logit scale (CLIP, SigLIP)? Its heads are then the
    towers' projections, normalized before they are compared, not classifiers."""
    if not isinstance(model, nn.Module):
        return False
    infos = (describe(model, n) for n, _ in model.named_parameters() if n.endswith("logit_scale"))
    return any(info is not None and info.role == Roles.LOGIT_SCALE for info in infos)


def _vit_bias(p: Param, r: TransformerRole, ctx: _Context) -> Choice:
    label = "ViT / timm init_weights_vit_jax"
    if r.role == "head":
        value = float(ctx.extra.head_bias)
        return Choice("constant", {"val": value}, f"head bias: {value:g}; {label}")
    if r.role in ("mlp_in", "mlp_up", "mlp_out"):
        return _normal(1e-6, f"{_what(r)} bias: N(0, 1e-6^2); {label}")
    return Choice("zeros", {}, f"{_what(r)} bias: 0; {label}")


# --- "vit": timm's and Hugging Face's own ViT initializations --------------------------------
# timm vision_transformer.py, VisionTransformer.init_weights (mode ''): trunc_normal_(self.
# pos_embed, std=.02); nn.init.normal_(self.cls_token, std=1e-6); nn.init.normal_(
# self.reg_token, std=1e-6); named_apply(init_weights_vit_timm): every nn.Linear
# trunc_normal_(weight, std=.02) and zero bias; any other module its own init_weights /
# reset_parameters (torch's defaults: the patch Conv2d, LayerNorm, LayerScale's init_values).
# Hugging Face modeling_vit.py, ViTPreTrainedModel._init_weights: PreTrainedModel.
# _init_weights (nn.Linear, Conv1/2/3d, ConvTranspose1/2d: normal_(weight, std=
# initializer_range), zero bias; nn.Embedding normal_(std); norms 1 / 0; MultiheadAttention
# its _reset_parameters), then for ViTEmbeddings trunc_normal_(position_embeddings, std),
# trunc_normal_(cls_token, std), zeros_(mask_token). timm's trunc_normal_ cuts at +-2
# absolute, as torch's does: 100 std at 0.02, the normal to 1e-87.
_VIT_LABELS = {
    "timm": "timm ViT init_weights_vit_timm",
    "hf": "Hugging Face ViT _init_weights",
}
_VIT_NORMAL_KINDS = {  # the kinds whose weights the style draws N(0, std^2); others: torch's
    "timm": (Kinds.LINEAR,),
    "hf": (Kinds.LINEAR, Kinds.CONV, Kinds.EMBEDDING, Kinds.EXPERTS),
}


def _kept_default(p: Param, r: TransformerRole, label: str) -> Choice:
    init, args, why = p.info.torch_default
    return Choice(init, dict(args), f"{_what(r)}: {why} (left to the module by {label})")


def _vit(p: Param, r: TransformerRole, ctx: _Context) -> Choice:
    std, style = ctx.extra.std, ctx.extra.style
    label = _VIT_LABELS[style]
    if p.kind == Kinds.RAW:  # a raw position table (trunc_normal_ in timm and HF)
        return _trunc(std, 2.0, f"{_what(r)}: trunc_normal std {std:g}; {label}", absolute=True)
    if p.kind not in _VIT_NORMAL_KINDS[style]:
        return _kept_default(p, r, label)
    if style == "timm":
        return _trunc(std, 2.0, f"{_what(r)}: trunc_normal std {std:g}; {label}", absolute=True)
    return _normal(std, f"{_what(r)}: N(0, {std:g}^2); {label}")


def _vit_style_bias(p: Param, r: TransformerRole, ctx: _Context) -> Choice:
    label = _VIT_LABELS[ctx.extra.style]
    if p.kind in _VIT_NORMAL_KINDS[ctx.extra.style]:
        return Choice("zeros", {}, f"{_what(r)} bias: 0; {label}")
    return _kept_default(p, r, label)


def _vit_style_raw(p: Param, r: TransformerRole, ctx: _Context) -> Choice:
    if p.info.role != Roles.TOKEN or p.leaf not in _CLASS_TOKENS:
        return _raw_default(p, r, ctx)  # register and mask tokens, layer scales, ...
    if ctx.extra.style == "timm":
        return _normal(1e-6, "class token: N(0, 1e-6^2); timm nn.init.normal_(cls_token, std=1e-6)")
    std = ctx.extra.std
    why = f"class token: trunc_normal std {std:g}; HF trunc_normal_(cls_token, std)"
    return _trunc(std, 2.0, why, absolute=True)


# --- end of "vit" ---


def _tfixup_scale(r: TransformerRole, ctx: _Context) -> tuple[float, str]:
    N = ctx.depth(r)
    if r.decoder:
        return (9 * N) ** -0.25, f"(9N)^(-1/4), N={N} (decoder)"
    return 0.67 * N**-0.25, f"0.67 N^(-1/4), N={N} (encoder)"


def _tfixup_embedding_depth(p: Param, ctx: _Context) -> int:
    """N for an input embedding: the decoder's for a target-side embedding (a path naming
    "decoder" or "tgt"), else the encoder's (the first stack without cross-attention)."""
    stacks = {r.stack: r.decoder for r in ctx.found.values() if r.layer is not None}
    target = any(w in p.name.lower() for w in ("decoder", "tgt"))
    wanted = [s for s, dec in stacks.items() if dec == target] or list(stacks)
    given = ctx.extra.n_layers
    return given or (ctx.layers[wanted[0]] if wanted else 1)


def _tfixup(p: Param, r: TransformerRole, ctx: _Context) -> Choice:
    label = "T-Fixup (Huang et al. 2020)"
    if r.role == "embedding":
        d, N = p.shape[-1], _tfixup_embedding_depth(p, ctx)
        std = d**-0.5 * (9 * N) ** -0.25
        return _normal(std, f"input embedding: N(0, d^-1) x (9N)^(-1/4), d={d}, N={N}; {label}")
    if r.role == "position_embedding":
        d = p.shape[-1]
        return _normal(d**-0.5, f"learned positions: N(0, d^-1), d={d} (fairseq); {label}")
    if r.role == "head":
        d = p.fans[0]
        return _normal(d**-0.5, f"output projection: N(0, d^-1), d={d} (fairseq); {label}")
    if r.role == "qkv":
        c, rule = _tfixup_scale(r, ctx)
        why = f"qkv: Xavier per projection, v times {rule} = {c:.4g}; {label}"
        return _packed([1.0, 1.0, c * c], "fan_avg", "uniform", why)
    if r.role in ("v", "attn_out", "mlp_in", "mlp_up", "mlp_out", "mlp_gate_up"):
        c, rule = _tfixup_scale(r, ctx)
        return _xavier(c * c, f"{_what(r)}: Xavier times {rule} = {c:.4g}; {label}")
    return _xavier(1.0, f"{_what(r)}: Xavier; {label}")


def _zero_bias(p: Param, r: TransformerRole, ctx: _Context) -> Choice:
    return Choice("zeros", {}, f"{_what(r)} bias: 0")


def _raw_default(p: Param, r: TransformerRole, ctx: _Context) -> Choice:
    """A raw parameter known by its name (a token, a layer scale, Swin's relative position
    bias table, CLIP's logit scale): its reference code's own initialization."""
    return Choice(*p.info.torch_default)


_CLASS_TOKENS = ("cls_token", "class_token")


def _vit_jax_raw(p: Param, r: TransformerRole, ctx: _Context) -> Choice:
    # google-research/vision_transformer models_vit.py VisionTransformer:
    # cls = self.param('cls', nn.initializers.zeros, (1, 1, c))
    if p.info.role == Roles.TOKEN and p.leaf in _CLASS_TOKENS:
        return Choice("zeros", {}, "class token: 0; ViT (JAX) self.param('cls', zeros)")
    return _raw_default(p, r, ctx)


@dataclass(frozen=True)
class _Preset:
    name: str
    description: str
    extra: type
    weight: Callable[[Param, TransformerRole, _Context], Choice]
    bias: Callable[[Param, TransformerRole, _Context], Choice] = _zero_bias
    raw: Callable[[Param, TransformerRole, _Context], Choice] = _raw_default
    notes: Callable[[_Context], dict] = lambda ctx: {}
    uses_depth: bool = False  # scales residual outputs by the depth or the block index
    uses_index: Callable[[object], bool] = lambda extra: False  # the block index, under extra

    def decide(self, p: Param, r: TransformerRole, ctx: _Context) -> Choice:
        role = p.info.role
        # raw parameters known by name: a Transformer role (a raw pos_embed's
        # "position_embedding", or one given with roles=) takes the preset's rule for it
        if role in (Roles.WEIGHT, Roles.EMBEDDING) or (p.kind == Kinds.RAW and r.role):
            return self.weight(p, r, ctx)
        if p.kind == Kinds.RAW:
            return self.raw(p, r, ctx)
        if role == Roles.BIAS:
            return self.bias(p, r, ctx)
        if role == Roles.NORM_SCALE:
            value = getattr(ctx.extra, "factor", 1.0)  # T5 fills its norms with the factor
            return constant_choice(float(value), "norm scale")
        if role == Roles.NORM_SHIFT:
            return constant_choice(0.0, "norm shift")
        # recurrent weights, gate biases (the LSTM forget bias), ...: the shared options
        choice = _OTHER(p, ctx.options)
        return Choice(choice.init, choice.args, f"no Transformer role: {choice.reason}")

    def survey(self, s: Survey) -> dict[str, Choice]:
        if not s.params:  # skip=, rules= or frozen left nothing (the planner says so)
            return {}
        found = transformer_roles(s.model, s.extra.roles, [p.name for p in s.params])
        ctx = _Context(
            self.name, s.model, s.extra, found, layer_counts(found), _d_model(s, found), s.options
        )
        s.notes["roles"] = role_counts(found)
        s.notes["layers"] = ctx.layers
        if set(s.notes["roles"]) <= {"none"}:
            chosen = {p.name for p in s.params}
            others = [n for n, _ in s.model.named_parameters() if n not in chosen]
            left_out = transformer_roles(s.model, s.extra.roles, others)
            with_role = [name for name, r in left_out.items() if r.role is not None]
            message = (
                f"{self.name}: skip=, rules= or requires_grad=False leave out every parameter "
                f"of {type(s.model).__name__} that has a Transformer role ({with_role[0]!r}, "
                "...), so the preset has no roles to work with"
                if with_role
                else f"{self.name}: no parameter of {type(s.model).__name__} has a Transformer "
                "role (embedding, qkv, attn_out, mlp_in, mlp_out, head, norm); name your "
                "modules' roles with roles={'name_glob': 'role'}"
            )
            if self.name == "t-fixup":  # nothing of the recipe would be left
                raise ValueError(message)
            warnings.warn(f"{message}. Every weight gets the preset's base rule", stacklevel=3)
        if self.uses_depth:
            self.warn_without_blocks(found, s.extra)
        s.notes.update(self.notes(ctx))
        return {p.name: self.decide(p, found[p.name], ctx) for p in s.params}

    def warn_without_blocks(self, found: dict[str, TransformerRole], extra: object) -> None:
        """Residual outputs outside every stack of blocks would silently count as block 0 of
        a 1-block stack."""
        lost = [n for n, r in found.items() if r.role in _RESIDUAL_OUT and r.layer is None]
        given = getattr(extra, "n_layers", None) is not None
        if not lost or (given and not self.uses_index(extra)):  # n_layers= is all it needs
            return
        hint = " or pass n_layers=" if hasattr(extra, "n_layers") and not given else ""
        warnings.warn(
            f"{self.name}: {len(lost)} residual output projection(s) ({lost[0]}, ...) are in no "
            "stack of blocks (a ModuleList, ModuleDict or nn.Sequential of blocks), so they are "
            f"scaled as block 0 of a 1-block stack; hold the blocks in a ModuleList{hint}",
            stacklevel=4,
        )

    def choose(self, p: Param, o: Options) -> Choice:
        """A parameter no survey saw: the preset's default, with no role."""
        ctx = _Context(self.name, None, self.extra(), {}, {}, None, o)
        return self.decide(p, _NO_ROLE, ctx)


def _d_model(s: Survey, found: dict[str, TransformerRole]) -> int | None:
    """The model width: the first token embedding's dim (not a relative position bias's,
    whose dim is the number of heads), else any embedding's, else the first weight's fan_in."""
    for p in s.params:
        if found[p.name].role == "embedding":
            return int(p.shape[-1])
    for p in s.params:
        if p.info.role == Roles.EMBEDDING:
            return int(p.shape[-1])
    for p in s.params:
        if p.info.role == Roles.WEIGHT and len(p.shape) == 2:
            return int(p.shape[1])
    return None


def _residual_notes(ctx: _Context) -> dict:
    std = ctx.extra.std
    return {"residual_std": {stack: std / math.sqrt(2 * ctx.depth(TransformerRole(None, 0, stack)))
                             for stack in ctx.layers}}  # fmt: skip


def _tfixup_notes(ctx: _Context) -> dict:
    decoders = {r.stack: r.decoder for r in ctx.found.values() if r.layer is not None}
    scales = {}
    for stack, decoder in decoders.items():
        c, rule = _tfixup_scale(TransformerRole(None, 0, stack, decoder=decoder), ctx)
        scales[stack] = {"N": ctx.depth(TransformerRole(None, 0, stack)), "scale": c, "rule": rule}
    return {"t_fixup": scales}


_PRESETS = [
    _Preset(
        "gpt2",
        "GPT-2 / nanoGPT: N(0, 0.02) weights and embeddings, residual outputs 0.02/sqrt(2L)",
        GPT2Options,
        _gpt2_like("GPT-2 / nanoGPT", "GPT-2 (Radford et al. 2019) / nanoGPT c_proj"),
        notes=_residual_notes,
        uses_depth=True,
    ),
    _Preset(
        "megatron",
        "Megatron-LM: init_method_normal(sigma), output layers scaled_init_method sigma/sqrt(2L)",
        GPT2Options,
        _gpt2_like(
            "Megatron-LM init_method_normal (Shoeybi et al. 2019)",
            "Megatron-LM scaled_init_method_normal",
        ),
        notes=_residual_notes,
        uses_depth=True,
    ),
    _Preset(
        "torchtitan",
        "torchtitan Llama: trunc normal 0.02, outputs 0.02/sqrt(2(layer+1)), head dim^-0.5",
        TorchtitanOptions,
        _torchtitan,
        notes=lambda ctx: {"depth_init": ctx.extra.depth_init},
        uses_depth=True,
        uses_index=lambda extra: extra.depth_init,
    ),
    _Preset(
        "olmo",
        "OLMo 'mitchell': 1/sqrt(d), outputs 1/sqrt(2 d (layer+1)), truncated at 3 std",
        RolesOnly,
        _olmo,
        uses_depth=True,
    ),
    _Preset("bert", "BERT: N(0, 0.02) weights and embeddings, zero biases", BertOptions, _bert),
    _Preset(
        "t5",
        "T5: factor/sqrt(fan_in) weights, q also /sqrt(d_kv), embeddings N(0, factor^2)",
        T5Options,
        _t5,
        notes=lambda ctx: {"d_model": ctx.d_model, "factor": ctx.extra.factor},
    ),
    _Preset(
        "vit_jax",
        "ViT (JAX): Xavier uniform, MLP biases N(0, 1e-6), zero head, LeCun patch embedding",
        VitOptions,
        _vit_jax,
        bias=_vit_bias,
        raw=_vit_jax_raw,
    ),
    _Preset(
        "vit",
        "timm / Hugging Face ViT: trunc normal 0.02 Linear weights and positions, class token "
        "1e-6 (timm) or 0.02 (style='hf')",
        ViTStyleOptions,
        _vit,
        bias=_vit_style_bias,
        raw=_vit_style_raw,
        notes=lambda ctx: {"style": ctx.extra.style, "std": ctx.extra.std},
    ),
    _Preset(
        "t-fixup",
        "T-Fixup: Xavier; v, attn out, MLP x 0.67 N^-1/4 (encoder), (9N)^-1/4 (decoder)",
        TFixupOptions,
        _tfixup,
        notes=_tfixup_notes,
        uses_depth=True,
    ),
]

for _preset in _PRESETS:
    register_scheme(
        Scheme(
            _preset.name,
            _preset.description,
            _preset.choose,
            survey=_preset.survey,
            extra=_preset.extra,
        )
    )
