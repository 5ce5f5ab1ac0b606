"""What weightinit knows about every parametrized ``torch.nn`` module, in one table.

For each parameter: its role (weight, bias, recurrent weight, gate bias, embedding, norm scale, ...),
its :class:`~weightinit.Layout`, and PyTorch's own default initialization (what the module's
``reset_parameters`` does). Schemes read this table; nothing else switches on module types.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import NamedTuple

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm
from torch.nn.utils.spectral_norm import SpectralNorm as _LegacySpectralNorm

from weightinit._checks import is_number
from weightinit.initializers.activations import Activation, activation
from weightinit.initializers.layout import Layout, fans, resolve_owner_layouts

__all__ = [
    "Kinds",
    "ParamInfo",
    "Roles",
    "canonical_name",
    "describe",
    "is_conventional",
    "layout_for",
    "owner_of",
    "refresh_after_write",
    "stored",
    "stored_name",
    "unwrap",
]


class Roles:
    """The roles a parameter can play; schemes choose initializers by role."""

    WEIGHT = "weight"  # a feed-forward weight: Linear, Conv, attention projections
    BIAS = "bias"
    RECURRENT = "recurrent_weight"  # RNN hidden-to-hidden, per gate
    PROJECTION = "projection_weight"  # LSTM proj_size projection
    GATE_BIAS = "gate_bias"  # RNN biases, per gate
    EMBEDDING = "embedding"
    NORM_SCALE = "norm_scale"
    NORM_SHIFT = "norm_shift"
    ATTENTION_BIAS = "attention_bias"  # MultiheadAttention bias_k / bias_v
    PRELU_SLOPE = "prelu_slope"
    # --- raw parameters known by their conventional names (see _conventional below) ---
    POSITION = "position_embedding"  # ViT pos_embed / pos_embedding / position_embeddings
    TOKEN = "token"  # class, distillation, register and mask tokens; CLIP class_embedding
    LAYER_SCALE = "layer_scale"  # CaiT/ConvNeXt layer scale (gamma, ls1.gamma, layer_scale)
    RELATIVE_BIAS = "relative_position_bias"  # Swin's relative_position_bias_table
    LOGIT_SCALE = "logit_scale"  # CLIP's learned temperature
    LOGIT_BIAS = "logit_bias"  # SigLIP's learned bias of the pairwise logits


class Kinds:
    """What kind of layer holds a parameter, in words that do not depend on the framework;
    schemes read kinds, never module types."""

    LINEAR = "linear"  # Linear, Hugging Face Conv1D, MultiheadAttention's out_proj
    BILINEAR = "bilinear"
    CONV = "conv"  # Conv1/2/3d and ConvTranspose1/2/3d, grouped and depthwise included
    ATTENTION = "attention"  # MultiheadAttention's own q/k/v projections and bias_k/v
    RECURRENT = "recurrent"  # RNN, LSTM, GRU and their cells
    EMBEDDING = "embedding"
    NORM = "norm"
    PRELU = "prelu"
    EXPERTS = "experts"  # a mixture's experts stacked in 3-D tensors (by class name)
    SCALAR = "scalar"  # modules that declare their parameters (``weightinit_roles``)
    RAW = "raw"  # a raw parameter of an unknown module, known by its name (_conventional)


class ParamInfo(NamedTuple):
    """One parameter as the table sees it.

    ``torch_default`` is (initializer name, arguments, reason) reproducing ``reset_parameters``;
    ``gates`` names the stacked gates of RNN parameters in torch's order (LSTM "ifgo", GRU
    "rzn"); ``padding_idx`` is an Embedding row that stays zero. ``kind`` is the owner's
    :class:`Kinds`; ``nonlinearity`` the activation inside a recurrent layer ("tanh", "relu"),
    or inside a mixture of experts after its gate projections (an :class:`Activation`).
    ``norm_of`` marks weight_norm's g, which holds the norm of each output's weights: the
    (shape, dtype) of that weight, for which the scheme chooses. ``direction_dim`` marks
    weight_norm's v, normalized per slice along that dimension: 0 for one norm per output,
    2 for Wav2Vec2's positional conv (one per kernel tap), -1 for one norm of the whole.
    ``head`` is (output head, embedding) for an embedding whose vectors an output head reads
    back: the embedding tied to that head (GPT-2's ``transformer.wte.weight`` and
    ``lm_head.weight``), and every embedding of its width added to it (positions, token
    types); set by the settle stage, which sees every name of a tensor.
    """

    role: str
    layout: Layout
    torch_default: tuple[str, dict, str]
    gates: str = ""
    padding_idx: int | None = None
    kind: str = ""
    nonlinearity: str | Activation | None = None
    norm_of: tuple[tuple[int, ...], torch.dtype] | None = None
    direction_dim: int | None = None
    head: tuple[str, str] | None = None


_TORCH_LAYOUT = Layout()  # one shared instance: plans compare layouts by identity first


def _uniform(bound: float, why: str) -> tuple[str, dict, str]:
    return "uniform", {"a": -bound, "b": bound}, f"torch default: U(-{why}, {why})"


def _torch_fan_in(param: torch.Tensor) -> int:
    """torch's own fan_in (dim 1 times the receptive field), which its defaults use."""
    return fans(param)[0]


def _linear_like(module: nn.Module, name: str, param: torch.Tensor) -> ParamInfo | None:
    weight = stored(module, "weight")
    bound = 1 / math.sqrt(_torch_fan_in(weight)) if weight.numel() else 0.0
    why = f"1/sqrt({_torch_fan_in(weight) if weight.numel() else 0})"
    if name == "weight":
        layout = _TORCH_LAYOUT
        if isinstance(module, nn.modules.conv._ConvNd):
            # Conv weight: (out, in / groups, *k); ConvTranspose: (in, out / groups, *k).
            # Either way dim 0 holds all the groups; fans are per group.
            layout = (
                Layout(out_axes=(1,), in_axes=(0,), groups=module.groups, group_axis=0)
                if module.transposed
                else Layout(groups=module.groups, group_axis=0)
            )
        return ParamInfo(Roles.WEIGHT, layout, _uniform(bound, why))
    if name == "bias":
        return ParamInfo(Roles.BIAS, Layout.elementwise(), _uniform(bound, why))
    return None


def _attention_out(module: nn.Module, name: str, param: torch.Tensor) -> ParamInfo | None:
    # MultiheadAttention's out_proj: a Linear whose bias MultiheadAttention zeroes
    info = _linear_like(module, name, param)
    if name == "bias" and info is not None:
        return ParamInfo(Roles.BIAS, info.layout, ("zeros", {}, "torch default: zeros (MHA)"))
    return info


def _bilinear(module: nn.Module, name: str, param: torch.Tensor) -> ParamInfo | None:
    # y_k = x1^T W_k x2 + b_k: every output sums over in1 * in2 products, no receptive field.
    bound = 1 / math.sqrt(module.in1_features)
    default = _uniform(bound, f"1/sqrt({module.in1_features})")
    if name == "weight":
        return ParamInfo(Roles.WEIGHT, Layout(out_axes=(0,), in_axes=(1, 2)), default)
    if name == "bias":
        return ParamInfo(Roles.BIAS, Layout.elementwise(), default)
    return None


_RNN_PARAM = re.compile(r"(weight_ih|weight_hh|weight_hr|bias_ih|bias_hh)(_l\d+(_reverse)?)?")


def _recurrent(module: nn.Module, name: str, param: torch.Tensor) -> ParamInfo | None:
    match = _RNN_PARAM.fullmatch(name)
    if match is None:
        return None
    kind, suffix = match.group(1), match.group(2) or ""
    hidden = module.hidden_size
    default = _uniform(1 / math.sqrt(hidden), f"1/sqrt({hidden})")
    if kind == "weight_hr":  # LSTM projection (proj_size): a plain (proj, hidden) matrix
        return ParamInfo(Roles.PROJECTION, Layout(), default)
    weight_ih = stored(module, "weight_ih" + (suffix if isinstance(module, nn.RNNBase) else ""))
    blocks = weight_ih.shape[0] // hidden
    gates = {4: "ifgo", 3: "rzn"}.get(blocks, "h")
    inner = getattr(module, "nonlinearity", None)  # RNN and RNNCell: "tanh" or "relu"
    if kind.startswith("bias"):
        layout = Layout.elementwise(blocks=blocks)
        return ParamInfo(Roles.GATE_BIAS, layout, default, gates, nonlinearity=inner)
    role = Roles.WEIGHT if kind == "weight_ih" else Roles.RECURRENT
    return ParamInfo(role, Layout(blocks=blocks), default, gates, nonlinearity=inner)


def _attention(module: nn.Module, name: str, param: torch.Tensor) -> ParamInfo | None:
    xavier = ("glorot_uniform", {}, "torch default: xavier_uniform_ over the whole tensor")
    zero = ("zeros", {}, "torch default: zeros")
    kv = ("glorot_normal", {}, "torch default: xavier_normal_")
    table = {
        # q, k, v stacked: (3E, E). torch's default treats it as one matrix (fans of 3E x E).
        "in_proj_weight": ParamInfo(Roles.WEIGHT, Layout(blocks=3), xavier),
        "in_proj_bias": ParamInfo(Roles.BIAS, Layout.elementwise(blocks=3), zero),
        "q_proj_weight": ParamInfo(Roles.WEIGHT, Layout(), xavier),
        "k_proj_weight": ParamInfo(Roles.WEIGHT, Layout(), xavier),
        "v_proj_weight": ParamInfo(Roles.WEIGHT, Layout(), xavier),
        "bias_k": ParamInfo(Roles.ATTENTION_BIAS, Layout(out_axes=(2,), in_axes=()), kv),
        "bias_v": ParamInfo(Roles.ATTENTION_BIAS, Layout(out_axes=(2,), in_axes=()), kv),
    }
    return table.get(name)


def _embedding(module: nn.Module, name: str, param: torch.Tensor) -> ParamInfo | None:
    # One row per token. The table is the transpose of a Linear fed one-hot tokens, but only
    # one token is active per lookup, so each row is its own block: fan_in 1 (the one active
    # input), fan_out the embedding dim. LeCun init then gives torch's N(0, 1), and
    # fan_out modes give N(0, 1/dim) (Flax's default).
    if name != "weight":
        return None
    layout = Layout(out_axes=(1,), in_axes=(0,), blocks=module.num_embeddings, block_axis=0)
    padding = getattr(module, "padding_idx", None)
    return ParamInfo(
        Roles.EMBEDDING,
        layout,
        ("normal", {"std": 1.0}, "torch default: N(0, 1)"),
        padding_idx=padding,
    )


def _norm(module: nn.Module, name: str, param: torch.Tensor) -> ParamInfo | None:
    layout = Layout.elementwise(param.ndim)
    if name == "weight":
        return ParamInfo(Roles.NORM_SCALE, layout, ("ones", {}, "torch default: ones"))
    if name == "bias":
        return ParamInfo(Roles.NORM_SHIFT, layout, ("zeros", {}, "torch default: zeros"))
    return None


def _prelu(module: nn.Module, name: str, param: torch.Tensor) -> ParamInfo | None:
    if name != "weight":
        return None
    default = ("constant", {"val": float(module.init)}, f"torch default: {module.init}")
    return ParamInfo(Roles.PRELU_SLOPE, Layout.elementwise(), default)


Rule = Callable[[nn.Module, str, torch.Tensor], "ParamInfo | None"]

_TABLE: dict[type, tuple[str, Rule]] = {
    nn.modules.linear.NonDynamicallyQuantizableLinear: (Kinds.LINEAR, _attention_out),
    nn.Linear: (Kinds.LINEAR, _linear_like),
    nn.modules.conv._ConvNd: (Kinds.CONV, _linear_like),
    nn.Bilinear: (Kinds.BILINEAR, _bilinear),
    nn.RNNBase: (Kinds.RECURRENT, _recurrent),
    nn.RNNCellBase: (Kinds.RECURRENT, _recurrent),
    nn.MultiheadAttention: (Kinds.ATTENTION, _attention),
    nn.Embedding: (Kinds.EMBEDDING, _embedding),
    nn.EmbeddingBag: (Kinds.EMBEDDING, _embedding),
    nn.modules.batchnorm._NormBase: (Kinds.NORM, _norm),  # BatchNorm*, InstanceNorm*
    nn.LayerNorm: (Kinds.NORM, _norm),
    nn.GroupNorm: (Kinds.NORM, _norm),
    nn.RMSNorm: (Kinds.NORM, _norm),
    nn.PReLU: (Kinds.PRELU, _prelu),
}


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside DataParallel, DistributedDataParallel and torch.compile."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod  # torch.compile's OptimizedModule
        else:
            return model


# the attribute names wrappers put between a module and the one they wrap: torch.compile's
# OptimizedModule, FSDP1, activation checkpointing (torch.distributed.algorithms)
_WRAPPER_ATTRIBUTES = ("_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module")


def canonical_name(name: str) -> str:
    """A parameter's name without the wrappers' segments: ``layers.0._orig_mod.w.weight``
    (a compiled block) is ``layers.0.w.weight``, as in the unwrapped model. The wrappers
    around the whole model are taken off by :func:`unwrap` before names are read.

    Example::

        >>> canonical_name("layers.0._checkpoint_wrapped_module._orig_mod.fc.weight")
        'layers.0.fc.weight'
    """
    return ".".join(part for part in name.split(".") if part not in _WRAPPER_ATTRIBUTES)


def owner_of(module: nn.Module, param_name: str) -> tuple[nn.Module, str]:
    """The submodule that holds ``param_name`` (dotted) and the parameter's own name there."""
    *path, leaf = param_name.split(".")
    owner = module
    for part in path:
        child = owner._modules.get(part)
        if child is None:
            raise ValueError(
                f"{type(owner).__name__} has no submodule {part!r} (on the way to "
                f"{param_name!r}); submodules: {sorted(owner._modules)}"
            )
        owner = child
    return owner, leaf


_PARAMETRIZED = re.compile(r"(?:(.*)\.)?parametrizations\.(\w+)\.original(\d*)")


def parametrized(module: nn.Module, param_name: str) -> tuple[nn.Module, str, str] | None:
    """For ``X.parametrizations.weight.original[N]`` (weight_norm, spectral_norm, ...):
    (module X, "weight", N); None for ordinary parameters."""
    match = _PARAMETRIZED.fullmatch(param_name)
    if match is None:
        return None
    path, name, index = match.groups()
    owner = module.get_submodule(path) if path else module
    return owner, name, index


def stored(module: nn.Module, name: str) -> torch.Tensor:
    """``module``'s tensor ``name`` as it is stored, without computing it: behind a
    parametrization, the original (weight_norm's v), of the parametrized tensor's shape under
    weight_norm, spectral_norm and orthogonal. Reading a parametrized ``module.weight`` runs
    the parametrization, and spectral_norm's power iteration (in train mode) changes its
    ``_u``/``_v`` buffers: describing a model must not."""
    if parametrize.is_parametrized(module, name):
        chain = module.parametrizations[name]
        return chain.original if hasattr(chain, "original") else chain.original1
    return getattr(module, name)


def stored_name(module: nn.Module, name: str) -> str:
    """The name, relative to ``module``, of the tensor :func:`stored` returns: e.g.
    ``parametrizations.weight.original`` behind a parametrization (``original1`` for
    weight_norm's v), else ``name``."""
    if parametrize.is_parametrized(module, name):
        chain = module.parametrizations[name]
        return f"parametrizations.{name}.original" + ("" if hasattr(chain, "original") else "1")
    return name


@torch.no_grad()
def refresh_after_write(model: nn.Module, written: Iterable[str]) -> None:
    """Bring the state a parametrization keeps about the tensor it wraps up to date after
    ``written`` (qualified parameter names) were overwritten.

    spectral_norm (both ``torch.nn.utils.parametrizations.spectral_norm`` and the older
    hook-based ``torch.nn.utils.spectral_norm``) divides the weight by its largest singular
    value, estimated by power iteration from the vectors u and v it keeps. After the weight
    behind it is rewritten, u and v describe the old weight, so the effective weight's spectral
    norm starts far from 1 (2.5 measured on a 64 x 64 layer) until many training steps have
    run. This runs the 15 power iterations torch runs when it registers spectral_norm, on the
    new values (Miyato et al. 2018, "Spectral Normalization for Generative Adversarial
    Networks").
    """
    for name in written:
        if "parametrizations." not in name and not name.endswith("_orig"):
            continue  # neither form of spectral_norm: nothing to refresh (the common case)
        found = parametrized(model, name)
        if found is not None:
            owner, leaf, _ = found
            chain = owner.parametrizations[leaf]
            if not hasattr(chain, "original") or not any(
                isinstance(step, _SpectralNorm) for step in chain
            ):
                continue
            x = chain.original
            for step in chain:  # spectral_norm sees what the steps before it make
                if isinstance(step, _SpectralNorm) and x.ndim > 1:
                    step._power_method(step._reshape_weight_to_matrix(x), 15)
                x = step(x)
            continue
        owner, leaf = owner_of(model, name)
        for hook in owner._forward_pre_hooks.values():
            if isinstance(hook, _LegacySpectralNorm) and leaf == hook.name + "_orig":
                for _ in range(15):
                    hook.compute_weight(owner, do_power_iteration=True)


def describe(module: nn.Module, param_name: str) -> ParamInfo | None:
    """The table's :class:`ParamInfo` for ``module``'s parameter ``param_name`` (dotted names
    allowed), or None when the owning module type is not in the table. The tensors behind a
    parametrization (``lin.parametrizations.weight.original``) are described as the
    parameter they parametrize (``lin.weight``)."""
    found = parametrized(module, param_name)
    if found is not None:
        owner, leaf, index = found
        original = stored(owner, leaf)
        info = _lookup(owner, leaf, original)
        chain = owner.parametrizations[leaf]
        if info is not None and _is_weight_norm_scale(chain, index):
            info = info._replace(norm_of=(tuple(original.shape), original.dtype))
        elif info is not None and _is_weight_norm(chain):
            dim = chain[0].dim
            info = info._replace(direction_dim=-1 if dim is None else dim % original.ndim)
        return info
    owner, leaf = owner_of(module, param_name)
    param = owner._parameters.get(leaf)
    if param is None:
        known = sorted(k for k, v in owner._parameters.items() if v is not None)
        raise ValueError(
            f"{type(owner).__name__} has no parameter {leaf!r}; its parameters are {known}"
        )
    if isinstance(param, nn.parameter.UninitializedParameter):
        raise ValueError(  # noqa: TRY004 (the parameter's state is at fault, not its type)
            f"{param_name!r} of {type(owner).__name__} is not materialized yet (a lazy module): "
            "run one forward pass on an example input first"
        )
    return _lookup(owner, leaf, param)


def _lookup(owner: nn.Module, leaf: str, param: torch.Tensor) -> ParamInfo | None:
    # modules that declare their parameters: {leaf: (role, constant initializer)}, e.g. the
    # scalar biases and gains that weightinit.recipes adds to residual networks
    declared = getattr(type(owner), "weightinit_roles", {}).get(leaf)
    if declared is not None:
        role, init = declared
        default = (init, {}, f"{type(owner).__name__}: {init}")
        return ParamInfo(role, Layout.elementwise(param.ndim), default, kind=Kinds.SCALAR)
    for cls in type(owner).__mro__:
        found = _TABLE.get(cls)
        if found is not None:
            kind, rule = found
            info = rule(owner, leaf, param)
            return None if info is None else info._replace(kind=kind)
    return _by_class_name(owner, leaf, param)


def read_back_embeddings(model: nn.Module) -> dict[str, tuple[str, str]]:
    """The embeddings an output head reads back, each name with (head, embedding): the
    embedding tied to a Linear head (GPT-2, BERT, T5 and Whisper tie their token embedding to
    the logits' weight), under every name it has, and the embeddings of its width, which are
    added to it (positions, token types). Schemes scale them for the head
    (:func:`weightinit.scheme.classic.read_back`); calibration leaves them as chosen.

    Example:
        >>> import torch
        >>> from weightinit.understanding.knowledge import read_back_embeddings
        >>> lm = torch.nn.ModuleDict(dict(tok=torch.nn.Embedding(9, 4),
        ...     pos=torch.nn.Embedding(6, 4), bias=torch.nn.Embedding(6, 2), head=torch.nn.Linear(4, 9)))
        >>> lm.head.weight = lm.tok.weight
        >>> sorted(read_back_embeddings(lm))
        ['head.weight', 'pos.weight', 'tok.weight']
        >>> read_back_embeddings(lm)["pos.weight"]
        ('head.weight', 'tok.weight')
    """
    names: dict[int, list[str]] = {}
    params = dict(model.named_parameters(remove_duplicate=False))
    for name, param in params.items():
        names.setdefault(id(param), []).append(name)
    found: dict[str, tuple[str, str]] = {}
    widths: dict[int, tuple[str, str]] = {}
    for tied in names.values():
        if len(tied) < 2:
            continue
        infos = [(n, describe(model, n)) for n in tied]
        embedding = next((n for n, i in infos if i and i.role == Roles.EMBEDDING), None)
        head = next(
            (n for n, i in infos if i and i.role == Roles.WEIGHT and i.kind == Kinds.LINEAR), None
        )
        if embedding is not None and head is not None:
            found.update(dict.fromkeys(tied, (head, embedding)))
            widths.setdefault(params[embedding].shape[-1], (head, embedding))
    for name, param in params.items():
        if name not in found and param.ndim == 2 and param.shape[-1] in widths:
            info = describe(model, name)
            if info is not None and info.role == Roles.EMBEDDING:
                found[name] = widths[param.shape[-1]]
    return found


def _is_weight_norm(chain: nn.Module) -> bool:
    return len(chain) == 1 and type(chain[0]).__name__ == "_WeightNorm"


def _is_weight_norm_scale(chain: nn.Module, index: str) -> bool:
    """Is ``original<index>`` of this parametrization weight_norm's g (original0)?"""
    return index == "0" and _is_weight_norm(chain)


def _by_class_name(owner: nn.Module, leaf: str, param: torch.Tensor) -> ParamInfo | None:
    """Modules of other code bases that weightinit knows without importing them, by class
    name: Hugging Face's ``Conv1D`` and norm layers."""
    if type(owner).__name__ == "Conv1D" and isinstance(getattr(owner, "nf", None), int):
        return _hf_conv1d(owner, leaf, param)
    moe = _mixture_of_experts(owner, leaf, param)  # experts and routers, by class name
    if moe is not None:
        return moe
    return _named_norm(owner, leaf, param) or _conventional(owner, leaf, param)


_HF_CONV1D_LAYOUT = Layout(out_axes=(1,), in_axes=(0,))


def _hf_conv1d(owner: nn.Module, leaf: str, param: torch.Tensor) -> ParamInfo | None:
    """Hugging Face's ``Conv1D`` (GPT-2's c_attn, c_proj, c_fc): a Linear whose weight is
    stored transposed, (in, out), initialized N(0, 0.02^2) with zero bias."""
    if leaf == "weight" and param.ndim == 2:
        default = ("normal", {"std": 0.02}, "HF Conv1D")
        return ParamInfo(Roles.WEIGHT, _HF_CONV1D_LAYOUT, default, kind=Kinds.LINEAR)
    if leaf == "bias" and param.ndim == 1:
        default = ("zeros", {}, "HF Conv1D: zeros")
        return ParamInfo(Roles.BIAS, Layout.elementwise(), default, kind=Kinds.LINEAR)
    return None


# --- mixture of experts: expert tensors and routers, known by class name ----------------------
# Hugging Face (transformers 5) holds the experts of a mixture in one module, ``<Model>Experts``
# (Mixtral, Qwen2/3-MoE, OLMoE, DeepSeek-V2/V3, GLM-4-MoE, ...), as 3-D tensors applied per
# expert e as ``F.linear(x, gate_up_proj[e]).chunk(2, dim=-1)`` -> ``act(gate) * up`` ->
# ``F.linear(h, down_proj[e])``: ``gate_up_proj`` (experts, 2 * intermediate, hidden) and
# ``down_proj`` (experts, hidden, intermediate). Llama-4 stores them transposed ((experts,
# hidden, 2 * intermediate), ``x @ W``); torchtitan's ``GroupedExperts`` holds ``w1``, ``w3``
# (experts, hidden_dim, dim) and ``w2`` (experts, dim, hidden_dim). Each expert is its own
# matrix and the gate and up halves of ``gate_up_proj`` are two projections, so every
# (expert, projection) is a block: ``blocks`` = experts along the expert axis (an out axis of
# length 1 per block) and, for the packed halves, ``groups`` = 2 along the output axis (Layout
# has one ``blocks``; ``groups`` splits another axis with the same arithmetic, and the block
# form counts experts x 2 matrices, expert-major: block 2e is expert e's gate, 2e + 1 its up).
# Fans are then those of one expert's projection. The orientation is read from the shapes of
# the in- and out-projections together (unambiguous for the packed halves; a square expert
# has the same fans either way). HF's _init_weights draws them all N(0, initializer_range^2).

_EXPERT_IN = {"gate_up_proj": 2, "gate_proj": 1, "up_proj": 1, "w1": 1, "w3": 1}  # halves
_EXPERT_OUT = ("down_proj", "w2")
_EXPERT_GATES = ("gate_up_proj", "gate_proj", "w1")  # what the experts' activation reads


def _expert_orientation(owner: nn.Module) -> str | None:
    """The layout's orientation: "standard" ((experts, out, in): Mixtral, torchtitan),
    "transposed" ((experts, in, out): Llama-4), or None when the module's projections do not
    fit either together."""
    params = owner._parameters
    down = next((params[n] for n in _EXPERT_OUT if params.get(n) is not None), None)
    ins = [(params[n], k) for n, k in _EXPERT_IN.items() if params.get(n) is not None]
    if down is None or not ins or any(p.ndim != 3 for p in (down, *(p for p, _ in ins))):
        return None
    # down: (experts, hidden, inter) when standard, (experts, inter, hidden) when transposed
    experts, a, b = down.shape
    if all(tuple(p.shape) == (experts, k * b, a) for p, k in ins):
        return "standard"
    if all(tuple(p.shape) == (experts, b, k * a) for p, k in ins):
        return "transposed"
    return None


def _hf_std(owner: nn.Module) -> tuple[float, str]:
    """The model's ``initializer_range`` when the module holds its config (HF's experts
    implementation keeps it), else HF's default 0.02."""
    std = getattr(getattr(owner, "config", None), "initializer_range", None)
    if is_number(std) and std > 0:
        return float(std), f"initializer_range {float(std):g}"
    return 0.02, "0.02"


def _experts(owner: nn.Module, leaf: str, param: torch.Tensor) -> ParamInfo | None:
    halves = _EXPERT_IN.get(leaf, 1 if leaf in _EXPERT_OUT else 0)
    if not halves or param.ndim != 3:
        return None
    apply_gate = getattr(type(owner), "_apply_gate", None)
    if halves == 2 and getattr(apply_gate, "__name__", "_default_apply_gate") != (
        "_default_apply_gate"
    ):
        return None  # its own split of gate and up (GPT-OSS interleaves them): not two halves
    orientation = _expert_orientation(owner)
    if orientation is None:
        return None
    out_axis, in_axis = (1, 2) if orientation == "standard" else (2, 1)
    layout = Layout(
        out_axes=(0, out_axis),
        in_axes=(in_axis,),
        blocks=param.shape[0],
        block_axis=0,
        groups=halves,
        group_axis=out_axis if halves > 1 else None,
    )
    std, what = _hf_std(owner)
    default = ("normal", {"std": std}, f"HF _init_weights of experts: N(0, {what}^2)")
    gated = leaf in _EXPERT_GATES  # the activation inside the experts follows these
    act = _expert_activation(owner) if gated else None
    return ParamInfo(Roles.WEIGHT, layout, default, kind=Kinds.EXPERTS, nonlinearity=act)


def _expert_activation(owner: nn.Module) -> Activation:
    """The activation an experts module applies to its gate projections: its ``act_fn``
    (Hugging Face's, from ``config.hidden_act``), else SiLU (SwiGLU: torchtitan's
    ``GroupedExperts`` calls ``F.silu``, as every experts module weightinit knows)."""
    act_fn = getattr(owner, "act_fn", None)
    if act_fn is not None:
        try:
            return activation(act_fn)
        except (TypeError, ValueError):
            pass
    return activation("silu")


def _router(owner: nn.Module, leaf: str, param: torch.Tensor) -> ParamInfo | None:
    """A router (``MixtralTopKRouter``, DeepSeek's ``TopkRouter``): a Linear without bias,
    weight (experts, hidden), applied as ``F.linear(x, weight)``."""
    if leaf != "weight" or param.ndim != 2:
        return None
    std, what = _hf_std(owner)
    default = ("normal", {"std": std}, f"HF _init_weights of routers: N(0, {what}^2)")
    return ParamInfo(Roles.WEIGHT, _TORCH_LAYOUT, default, kind=Kinds.LINEAR)


def _mixture_of_experts(owner: nn.Module, leaf: str, param: torch.Tensor) -> ParamInfo | None:
    """Expert tensors of a module whose class name ends in "Experts", and the weight of one
    whose class name ends in "Router" (case aside); None for anything else."""
    name = type(owner).__name__
    if name.endswith("Experts"):
        return _experts(owner, leaf, param)
    if name.lower().endswith("router"):
        return _router(owner, leaf, param)
    return None


# --- end of mixture of experts ---


def _named_norm(owner: nn.Module, leaf: str, param: torch.Tensor) -> ParamInfo | None:
    """Norm layers of other code bases, known by their class name (nanoGPT's and OLMo's
    ``LayerNorm``, T5's ``T5LayerNorm``, Llama's ``RMSNorm``): a class whose name ends in
    "Norm", with a 1-D ``weight`` (scale, ones) and ``bias`` (shift, zeros)."""
    if not type(owner).__name__.endswith("Norm") or param.ndim != 1:
        return None
    info = _norm(owner, leaf, param)
    if info is None:
        return None
    kind = "ones" if info.role == Roles.NORM_SCALE else "zeros"
    why = f"{type(owner).__name__} (a norm by its name): {kind}"
    return info._replace(torch_default=(kind, {}, why), kind=Kinds.NORM)


# --- raw parameters with conventional names ---------------------------------------------------
# Parameters a module holds directly (nn.Parameter attributes of a ViT, a CLIP model, a layer
# scale), not through a layer weightinit knows, are recognized by their leaf name and a shape
# check, only when their module is otherwise unknown. Their ``torch_default`` is the reference
# code's own initialization (quoted per entry); docs/models.md lists them. ``rules=`` overrides.

_TRUNC_002 = {"std": 0.02, "a": -2.0, "b": 2.0, "bounds": "absolute"}  # torch/timm trunc_normal_
LOGIT_SCALE_INIT = math.log(1 / 0.07)  # CLIP: nn.Parameter(torch.ones([]) * np.log(1 / 0.07))
LAYER_SCALE_DEFAULT = 1e-5  # timm's LayerScale class: init_values: float = 1e-5


def _tokens_shape(param: torch.Tensor) -> bool:
    """(D,), (n, D) or (1, n, D): a few learned vectors of the model width."""
    return 1 <= param.ndim <= 3 and (param.ndim < 3 or param.shape[0] == 1)


def _vector_shape(param: torch.Tensor) -> bool:
    """One value per channel, with singleton axes around it: (D,), (D, 1, 1), (1, 1, D)."""
    return param.ndim >= 1 and param.numel() == max(param.shape)


def _position(owner: nn.Module, leaf: str, param: torch.Tensor) -> tuple[str, dict, str] | None:
    if param.ndim < 2:
        return None
    # timm VisionTransformer.init_weights: trunc_normal_(self.pos_embed, std=.02); HF
    # ViTPreTrainedModel._init_weights: trunc_normal_(position_embeddings, std=initializer_range
    # 0.02); torchvision Encoder: pos_embedding.normal_(std=0.02) ("from BERT"). timm's and HF's
    # cut is +-2 absolute, 100 std: the three are the same distribution to 1e-87.
    return "trunc_normal", dict(_TRUNC_002), "timm/HF/torchvision ViT: N(0, 0.02^2)"


def _cls_token(owner: nn.Module, leaf: str, param: torch.Tensor) -> tuple[str, dict, str] | None:
    if not _tokens_shape(param):
        return None
    if type(owner).__name__.endswith("Embeddings"):  # HF ViTEmbeddings, DeiT, ...
        # HF ViTPreTrainedModel._init_weights: trunc_normal_(cls_token, std=initializer_range)
        return "trunc_normal", dict(_TRUNC_002), "HF ViTEmbeddings cls_token: N(0, 0.02^2)"
    # timm VisionTransformer.init_weights: nn.init.normal_(self.cls_token, std=1e-6)
    return "normal", {"std": 1e-6}, "timm ViT cls_token: N(0, 1e-6^2)"


def _fixed(init: str, args: dict, why: str, shape_ok: Callable[[torch.Tensor], bool]):
    def rule(owner: nn.Module, leaf: str, param: torch.Tensor) -> tuple[str, dict, str] | None:
        return (init, dict(args), why) if shape_ok(param) else None

    return rule


def _class_embedding(owner: nn.Module, leaf: str, param: torch.Tensor):
    # CLIP VisionTransformer: class_embedding = scale * randn(width), scale = width ** -0.5;
    # HF CLIPPreTrainedModel._init_weights: normal_(class_embedding, std=embed_dim**-0.5)
    if param.ndim != 1 or not param.numel():
        return None
    width = param.shape[0]
    return "normal", {"std": width**-0.5}, f"CLIP class_embedding: N(0, 1/width), width {width}"


def _layer_scale(owner: nn.Module, leaf: str, param: torch.Tensor):
    """A layer scale starts at a constant (timm LayerScale: init_values * ones(dim)); the
    constant is the model's choice and not recoverable after training. A freshly built one
    (all entries equal) keeps its value; otherwise (trained, or on the meta device) it gets
    ``LAYER_SCALE_DEFAULT``."""
    if not _vector_shape(param) or type(owner).__name__.endswith("Norm"):
        return None
    if not param.is_meta and param.numel():
        first = param.detach().reshape(-1)[0]
        if torch.isfinite(first) and bool((param.detach() == first).all()):
            value = float(first)
            return "constant", {"val": value}, f"layer scale: its built value {value:g}, kept"
    value = LAYER_SCALE_DEFAULT
    why = f"layer scale: {value:g} (timm LayerScale default; its entries differ)"
    return "constant", {"val": value}, why


def _logit_scale(owner: nn.Module, leaf: str, param: torch.Tensor):
    # CLIP: logit_scale = nn.Parameter(torch.ones([]) * np.log(1 / 0.07)); HF CLIPModel:
    # logit_scale_init_value 2.6592 (= log(1 / 0.07))
    if param.numel() == 1 and isinstance(getattr(owner, "logit_bias", None), torch.Tensor):
        # SigLIP (Zhai et al. 2023, big_vision): t' = log 10 beside a bias b = -10
        return "constant", {"val": math.log(10)}, "SigLIP logit_scale: log(10) (Zhai et al. 2023)"
    if param.numel() == 1:
        return "constant", {"val": LOGIT_SCALE_INIT}, "CLIP logit_scale: log(1/0.07)"
    # Swin V2 scaled cosine attention, one per head (microsoft Swin-Transformer, timm, HF
    # Swinv2, torchvision, open_clip): nn.Parameter(torch.log(10 * torch.ones((num_heads, 1,
    # 1))))
    if param.ndim == 3 and param.shape[1:] == (1, 1):
        return "constant", {"val": math.log(10)}, "Swin V2 logit_scale per head: log(10)"
    return None


def _probe(owner: nn.Module, leaf: str, param: torch.Tensor):
    if param.ndim != 3 or param.shape[:2] != (1, 1):
        return None
    bound = math.sqrt(3 / param.shape[-1])
    why = "SigLIP attention-pooling probe: xavier_uniform_ on (1, 1, D), U(+-sqrt(3/D))"
    return "uniform", {"a": -bound, "b": bound}, why


def _vector(param: torch.Tensor) -> bool:
    return param.ndim == 1


_TOKEN = Roles.TOKEN
_CONVENTIONAL: dict[str, tuple[str, Callable]] = {
    **dict.fromkeys(
        ("pos_embed", "pos_embedding", "position_embeddings"), (Roles.POSITION, _position)
    ),
    "cls_token": (_TOKEN, _cls_token),
    # torchvision VisionTransformer: class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
    "class_token": (_TOKEN, _fixed("zeros", {}, "torchvision ViT class_token: 0", _tokens_shape)),
    # timm VisionTransformer.init_weights: nn.init.normal_(self.reg_token, std=1e-6); DINOv2
    # (facebookresearch) init_weights: nn.init.normal_(self.register_tokens, std=1e-6)
    **dict.fromkeys(
        ("reg_token", "register_tokens"),
        (
            _TOKEN,
            _fixed(
                "normal", {"std": 1e-6}, "timm/DINOv2 register tokens: N(0, 1e-6^2)", _tokens_shape
            ),
        ),
    ),
    # timm deit VisionTransformerDistilled.init_weights: trunc_normal_(self.dist_token, std=.02)
    "dist_token": (
        _TOKEN,
        _fixed("trunc_normal", _TRUNC_002, "timm DeiT dist_token: N(0, 0.02^2)", _tokens_shape),
    ),
    # HF ViTEmbeddings / DINOv2: mask_token = nn.Parameter(torch.zeros(1, 1, hidden_size))
    "mask_token": (_TOKEN, _fixed("zeros", {}, "mask token: 0 (HF ViT, DINOv2)", _tokens_shape)),
    # HF Wav2Vec2Model: masked_spec_embed = nn.Parameter(torch.Tensor(hidden_size).uniform_())
    "masked_spec_embed": (
        _TOKEN,
        _fixed(
            "uniform",
            {"a": 0.0, "b": 1.0},
            "HF Wav2Vec2 masked_spec_embed: U(0, 1)",
            lambda p: p.ndim == 1,
        ),
    ),
    "class_embedding": (_TOKEN, _class_embedding),
    # timm SwinTransformer WindowAttention: trunc_normal_(self.relative_position_bias_table,
    # std=.02): ((2 Wh - 1)(2 Ww - 1), heads)
    "relative_position_bias_table": (
        Roles.RELATIVE_BIAS,
        _fixed(
            "trunc_normal",
            _TRUNC_002,
            "timm Swin relative_position_bias_table: N(0, 0.02^2)",
            lambda p: p.ndim == 2,
        ),
    ),
    "logit_scale": (Roles.LOGIT_SCALE, _logit_scale),
    # SigLIP (Zhai et al. 2023; big_vision siglip: b_init = -10): the sigmoid loss starts with
    # every pair scored negative, as nearly all pairs are
    "logit_bias": (
        Roles.LOGIT_BIAS,
        _fixed("constant", {"val": -10.0}, "SigLIP logit_bias: -10", lambda p: p.numel() == 1),
    ),
    # SigLIP's attention-pooling head (HF SiglipMultiheadAttentionPoolingHead, big_vision MAP):
    # probe (1, 1, D), xavier_uniform_: fans D and D, U(+-sqrt(3 / D))
    "probe": (_TOKEN, _probe),
    # timm BEiT / EVA / Swin V2 attention: q_bias = nn.Parameter(torch.zeros(all_head_dim)),
    # v_bias likewise (k_bias a zero buffer), passed to F.linear with qkv.weight
    **dict.fromkeys(
        ("q_bias", "v_bias"),
        (Roles.BIAS, _fixed("zeros", {}, "timm BEiT/EVA/Swin V2 q_bias, v_bias: 0", _vector)),
    ),
}
# layer scale: timm CaiT/ViT LayerScale.gamma (ls1.gamma), timm ConvNeXt Block.gamma,
# torchvision CNBlock.layer_scale, BEiT/EVA gamma_1/gamma_2, HF ConvNext
# layer_scale_parameter, HF DINOv2 LayerScale.lambda1
_LAYER_SCALE = re.compile(r"gamma(_?\d)?|layer_scale(_?\d)?|layer_scale_parameter|lambda\d")


def _conventional(owner: nn.Module, leaf: str, param: torch.Tensor) -> ParamInfo | None:
    """A raw parameter of a module the table does not know, by its conventional name (and
    shape): ViT positions and tokens, layer scales, Swin's relative position bias table, CLIP's
    class embedding and logit scale, Wav2Vec2's mask embedding."""
    role, rule = _CONVENTIONAL.get(leaf, (None, None))
    if rule is None and _LAYER_SCALE.fullmatch(leaf):
        role, rule = Roles.LAYER_SCALE, _layer_scale
    default = rule(owner, leaf, param) if rule is not None else None
    if default is None:
        return None
    return ParamInfo(role, Layout.elementwise(param.ndim), default, kind=Kinds.RAW)


def is_conventional(module: nn.Module, leaf: str) -> bool:
    """Is ``module``'s own parameter ``leaf`` a raw parameter known by its conventional name
    (a ViT's ``cls_token`` or ``pos_embed``, a ConvNeXt block's ``gamma``)? A module that
    holds only such parameters besides its submodules adds or multiplies them in; its
    submodules are its layers (the trace looks inside it).

    Example:
        >>> import torch
        >>> vit = torch.nn.Module()
        >>> vit.cls_token = torch.nn.Parameter(torch.zeros(1, 1, 8))
        >>> vit.head = torch.nn.Linear(8, 2)
        >>> is_conventional(vit, "cls_token"), is_conventional(vit.head, "weight")
        (True, False)
    """
    param = module._parameters.get(leaf)
    if param is None or isinstance(param, nn.parameter.UninitializedParameter):
        return False
    if leaf in getattr(type(module), "weightinit_roles", {}) or any(
        cls in _TABLE for cls in type(module).__mro__
    ):
        return False  # a layer's own parameter (read nothing more: fx may be tracing it)
    info = _by_class_name(module, leaf, param)
    return info is not None and info.kind == Kinds.RAW


# --- end of raw parameters with conventional names --------------------------------------------


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
    try:
        info = describe(module, param_name)
    except ValueError as err:
        raise ValueError(f"layout_for: {err}") from None
    if info is None:
        owner, leaf = owner_of(module, param_name)
        raise ValueError(
            f"layout_for: weightinit has no layout for parameter {leaf!r} of "
            f"{type(owner).__name__}; describe it with "
            "weightinit.Layout(out_axes=..., in_axes=..., groups=..., blocks=...)"
        )
    return info.layout


resolve_owner_layouts(layout_for)  # initializers' layout=(module, "param_name")
