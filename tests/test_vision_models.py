"""Vision models in the styles of timm, torchvision and Hugging Face, initialized completely
(issue 13).

timm and torchvision are not installed here (torchvision has no CPU wheel, timm needs it), so
their models are written below with the exact parameter names, shapes and module structure of
the reference code: timm's ``VisionTransformer`` and ``ConvNeXt``, torchvision's
``VisionTransformer`` and ``ConvNeXt``, and a Swin stage (window attention with its relative
position bias table, patch merging). Each carries its reference ``init_weights`` re-implemented
from the source (quoted next to it), the oracle for the presets. Hugging Face's ViT is the
real ``transformers.ViTModel`` / ``ViTForImageClassification`` from a tiny ``ViTConfig``
(random weights, never ``from_pretrained``).
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from conftest import var_tolerance
from torch import nn

import weightinit as wi
from weightinit.plans.plan import SKIP
from weightinit.recipes import add_residual_gains
from weightinit.understanding.graph import is_atomic

D = 32  # width of every model
IMAGE = 16  # input images (2, 3, IMAGE, IMAGE)
PATCH = 4


# --- timm VisionTransformer (timm/models/vision_transformer.py, timm/layers) -------------------


class TimmPatchEmbed(nn.Module):
    """timm.layers.PatchEmbed: ``proj`` a Conv2d(in_chans, embed_dim, patch, stride=patch),
    output flattened to (B, N, D)."""

    def __init__(self, d: int = D) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, d, PATCH, PATCH)
        self.norm = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class TimmAttention(nn.Module):
    """timm.layers.Attention: ``qkv`` Linear(dim, 3 dim), ``proj`` Linear(dim, dim);
    ``head_dim = dim // num_heads``."""

    def __init__(self, d: int, heads: int = 2) -> None:
        super().__init__()
        self.num_heads = heads
        self.head_dim = d // heads
        self.qkv = nn.Linear(d, 3 * d)
        self.q_norm = nn.Identity()
        self.k_norm = nn.Identity()
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class TimmMlp(nn.Module):
    """timm.layers.Mlp: ``fc1``, ``act`` (GELU), ``fc2``."""

    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """timm.layers.LayerScale: ``self.gamma = nn.Parameter(init_values * torch.ones(dim))``."""

    def __init__(self, d: int, init_values: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class TimmBlock(nn.Module):
    """timm vision_transformer.Block (pre-norm, layer scale when ``init_values``)."""

    def __init__(self, d: int, init_values: float | None) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d, eps=1e-6)
        self.attn = TimmAttention(d)
        self.ls1 = LayerScale(d, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.mlp = TimmMlp(d, 4 * d)
        self.ls2 = LayerScale(d, init_values) if init_values else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class TimmViT(nn.Module):
    """timm VisionTransformer with a class token, ``reg_tokens`` register tokens and layer
    scale (``init_values``): cls_token (1, 1, D), reg_token (1, R, D), pos_embed
    (1, N + 1 + R, D), blocks.i, norm, head."""

    def __init__(
        self, d: int = D, depth: int = 2, reg_tokens: int = 4, init_values: float | None = 1e-5
    ) -> None:
        super().__init__()
        self.patch_embed = TimmPatchEmbed(d)
        n = (IMAGE // PATCH) ** 2
        self.cls_token = nn.Parameter(torch.empty(1, 1, d))
        self.reg_token = nn.Parameter(torch.empty(1, reg_tokens, d))
        self.pos_embed = nn.Parameter(torch.empty(1, n + 1 + reg_tokens, d))
        self.blocks = nn.Sequential(*[TimmBlock(d, init_values) for _ in range(depth)])
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Linear(d, 10)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """timm VisionTransformer.init_weights (mode ''): ``trunc_normal_(self.pos_embed,
        std=.02)``; ``nn.init.normal_(self.cls_token, std=1e-6)``; ``nn.init.normal_(
        self.reg_token, std=1e-6)``; ``named_apply(init_weights_vit_timm)``: every
        nn.Linear ``trunc_normal_(module.weight, std=.02)``, bias zeros; other modules keep
        their constructed values (the patch Conv2d torch's default; LayerScale
        ``init_values``)."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        nn.init.normal_(self.reg_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        b = x.shape[0]
        prefix = [self.cls_token.expand(b, -1, -1), self.reg_token.expand(b, -1, -1)]
        x = torch.cat([*prefix, x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


# --- torchvision VisionTransformer (torchvision/models/vision_transformer.py) -----------------


class MLPBlock(nn.Sequential):
    """torchvision MLPBlock (an MLP from torchvision.ops.misc): Linear, GELU, Dropout, Linear,
    Dropout, so the Linears are ``mlp.0`` and ``mlp.3``. Its __init__: ``nn.init.
    xavier_uniform_(m.weight)``, ``nn.init.normal_(m.bias, std=1e-6)`` for each Linear."""

    def __init__(self, d: int, hidden: int) -> None:
        super().__init__(
            nn.Linear(d, hidden), nn.GELU(), nn.Dropout(0.0), nn.Linear(hidden, d), nn.Dropout(0.0)
        )
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)


class EncoderBlock(nn.Module):
    """torchvision EncoderBlock: ln_1, self_attention (nn.MultiheadAttention), ln_2, mlp."""

    def __init__(self, d: int, heads: int = 2) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(d, heads, batch_first=True)
        self.dropout = nn.Dropout(0.0)
        self.ln_2 = nn.LayerNorm(d, eps=1e-6)
        self.mlp = MLPBlock(d, 4 * d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = x + self.dropout(y)
        return x + self.mlp(self.ln_2(x))


class TorchvisionEncoder(nn.Module):
    """torchvision Encoder: ``pos_embedding = nn.Parameter(torch.empty(1, seq_length,
    hidden_dim).normal_(std=0.02))  # from BERT``; layers.encoder_layer_i; ln."""

    def __init__(self, seq_length: int, d: int, depth: int = 2) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, d).normal_(std=0.02))
        self.dropout = nn.Dropout(0.0)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i in range(depth):
            layers[f"encoder_layer_{i}"] = EncoderBlock(d)
        self.layers = nn.Sequential(layers)
        self.ln = nn.LayerNorm(d, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(self.layers(self.dropout(x + self.pos_embedding)))


class TorchvisionViT(nn.Module):
    """torchvision VisionTransformer: conv_proj, class_token (zeros), encoder, heads.head.
    Its __init__: ``fan_in = conv_proj.in_channels * prod(kernel_size)``;
    ``nn.init.trunc_normal_(conv_proj.weight, std=math.sqrt(1 / fan_in))``, bias zeros;
    ``heads.head`` weight and bias zeros."""

    def __init__(self, d: int = D, depth: int = 2) -> None:
        super().__init__()
        self.conv_proj = nn.Conv2d(3, d, PATCH, PATCH)
        seq_length = (IMAGE // PATCH) ** 2 + 1
        self.class_token = nn.Parameter(torch.zeros(1, 1, d))
        self.encoder = TorchvisionEncoder(seq_length, d, depth)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(d, 10)))
        fan_in = 3 * PATCH * PATCH
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(self.conv_proj.bias)
        nn.init.zeros_(self.heads.head.weight)
        nn.init.zeros_(self.heads.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.heads(self.encoder(x)[:, 0])


# --- timm ConvNeXt (timm/models/convnext.py) ---------------------------------------------------


class LayerNorm2d(nn.LayerNorm):
    """timm.layers.LayerNorm2d (torchvision's is the same): LayerNorm over the channels of an
    NCHW tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """timm ConvNeXtBlock (conv_mlp=False): conv_dw (depthwise 7x7), norm (LayerNorm, channels
    last), mlp (fc1, act, fc2), ``gamma = nn.Parameter(ls_init_value * torch.ones(out_chs))``."""

    def __init__(self, c: int, ls_init_value: float = 1e-6) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c, eps=1e-6)
        self.mlp = TimmMlp(c, 4 * c)
        self.gamma = nn.Parameter(ls_init_value * torch.ones(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_dw(x).permute(0, 2, 3, 1)
        y = self.mlp(self.norm(y)) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtStage(nn.Module):
    """timm ConvNeXtStage: downsample (Identity, or LayerNorm2d + Conv2d 2x2 stride 2),
    blocks."""

    def __init__(self, c_in: int, c_out: int, depth: int) -> None:
        super().__init__()
        if c_in == c_out:
            self.downsample: nn.Module = nn.Identity()
        else:
            norm = LayerNorm2d(c_in, eps=1e-6)
            self.downsample = nn.Sequential(norm, nn.Conv2d(c_in, c_out, 2, 2))
        self.blocks = nn.Sequential(*[ConvNeXtBlock(c_out) for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class NormMlpClassifierHead(nn.Module):
    """timm NormMlpClassifierHead: global pool, norm (LayerNorm2d), flatten, fc."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.norm = LayerNorm2d(c, eps=1e-6)
        self.fc = nn.Linear(c, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x.mean((2, 3), keepdim=True)).flatten(1))


class TimmConvNeXt(nn.Module):
    """timm ConvNeXt: stem (Conv2d 4x4 stride 4, LayerNorm2d), stages.i, head. Its
    _init_weights: ``nn.Conv2d``: ``trunc_normal_(module.weight, std=.02)``, bias zeros;
    ``nn.Linear``: ``trunc_normal_(module.weight, std=.02)``, bias zeros (head_init_scale 1)."""

    def __init__(self, dims: tuple[int, ...] = (16, 32), depths: tuple[int, ...] = (1, 1)) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0], eps=1e-6))
        stages, c = [], dims[0]
        for dim, depth in zip(dims, depths, strict=True):
            stages.append(ConvNeXtStage(c, dim, depth))
            c = dim
        self.stages = nn.Sequential(*stages)
        self.norm_pre = nn.Identity()
        self.head = NormMlpClassifierHead(c)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm_pre(self.stages(self.stem(x))))


# --- torchvision ConvNeXt (torchvision/models/convnext.py) ------------------------------------


class Permute(nn.Module):
    """torchvision.ops.misc.Permute."""

    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.permute(x, self.dims)


class CNBlock(nn.Module):
    """torchvision CNBlock: ``block`` = Sequential(Conv2d dw 7x7, Permute, LayerNorm, Linear,
    GELU, Linear, Permute); ``layer_scale = nn.Parameter(torch.ones(dim, 1, 1) *
    layer_scale)``."""

    def __init__(self, dim: int, layer_scale: float = 1e-6) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim, bias=True),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(dim, 4 * dim, bias=True),
            nn.GELU(),
            nn.Linear(4 * dim, dim, bias=True),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layer_scale * self.block(x)


class TorchvisionConvNeXt(nn.Module):
    """torchvision ConvNeXt: features (0: Conv2dNormActivation = Sequential(Conv2d 4x4,
    LayerNorm2d); then stages of CNBlocks and downsampling Sequential(LayerNorm2d, Conv2d 2x2)),
    avgpool, classifier (LayerNorm2d, Flatten, Linear). Its __init__: every Conv2d and Linear
    ``nn.init.trunc_normal_(m.weight, std=0.02)``, bias zeros."""

    def __init__(self, dims: tuple[int, ...] = (16, 32)) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0], eps=1e-6))
        ]
        for i, dim in enumerate(dims):
            layers.append(nn.Sequential(CNBlock(dim)))
            if i + 1 < len(dims):
                layers.append(
                    nn.Sequential(LayerNorm2d(dim, eps=1e-6), nn.Conv2d(dim, dims[i + 1], 2, 2))
                )
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            LayerNorm2d(dims[-1], eps=1e-6), nn.Flatten(1), nn.Linear(dims[-1], 10)
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x)))


# --- Swin (timm/models/swin_transformer.py; torchvision's swin_transformer.py alike) ----------

WINDOW = 2


class WindowAttention(nn.Module):
    """timm WindowAttention: ``relative_position_bias_table`` ((2 Wh - 1)(2 Ww - 1), heads),
    ``trunc_normal_(std=.02)``; the ``relative_position_index`` buffer; qkv, proj."""

    def __init__(self, d: int, heads: int = 2, window: int = WINDOW) -> None:
        super().__init__()
        self.num_heads = heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        coords = torch.stack(
            torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        ).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        index = rel[..., 0] * (2 * window - 1) + rel[..., 1]
        self.register_buffer("relative_position_index", index, persistent=False)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, -1).permute(2, 0, 1)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class SwinBlock(nn.Module):
    """timm SwinTransformerBlock (shift 0): norm1, attn on windows, norm2, mlp (fc1, fc2)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.attn = WindowAttention(d)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = TimmMlp(d, 4 * d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, H, W, C)
        b, h, w, c = x.shape
        y = self.norm1(x).view(b, h // WINDOW, WINDOW, w // WINDOW, WINDOW, c)
        y = y.permute(0, 1, 3, 2, 4, 5).reshape(-1, WINDOW * WINDOW, c)
        y = self.attn(y).view(b, h // WINDOW, w // WINDOW, WINDOW, WINDOW, c)
        x = x + y.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """timm PatchMerging: norm LayerNorm(4C), ``reduction = nn.Linear(4 * dim, out_dim,
    bias=False)``."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * d)
        self.reduction = nn.Linear(4 * d, 2 * d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).flatten(3)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    def __init__(self, d: int, depth: int, downsample: bool) -> None:
        super().__init__()
        self.downsample = PatchMerging(d // 2) if downsample else nn.Identity()
        self.blocks = nn.Sequential(*[SwinBlock(d) for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class Swin(nn.Module):
    """A two-stage Swin: patch_embed.proj (Conv2d), layers.i (downsample, blocks.j), norm,
    head.fc. timm's _init_weights: every Linear ``trunc_normal_(std=.02)``, bias zeros."""

    def __init__(self, d: int = 16) -> None:
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, d, PATCH, PATCH)
        self.patch_embed.norm = nn.LayerNorm(d)
        self.layers = nn.Sequential(SwinStage(d, 1, False), SwinStage(2 * d, 1, True))
        self.norm = nn.LayerNorm(2 * d)
        self.head = nn.Module()
        self.head.fc = nn.Linear(2 * d, 10)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.norm(self.patch_embed.proj(x).permute(0, 2, 3, 1))
        x = self.norm(self.layers(x))
        return self.head.fc(x.mean((1, 2)))


# --- Hugging Face ViT ---------------------------------------------------------------------------


def hf_config(**kw):
    from transformers import ViTConfig

    args = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 37,
        "image_size": 32,
        "patch_size": 8,
        "num_labels": 10,
    }
    return ViTConfig(**{**args, **kw})


def hf_vit(classify: bool = True, use_mask_token: bool = False) -> nn.Module:
    from transformers import ViTForImageClassification, ViTModel

    torch.manual_seed(0)
    config = hf_config()
    if classify:
        return ViTForImageClassification(config)
    return ViTModel(config, use_mask_token=use_mask_token)


# --- the checks -----------------------------------------------------------------------------------

FAMILIES = {  # name: (factory, image size)
    "timm_vit": (TimmViT, IMAGE),
    "torchvision_vit": (TorchvisionViT, IMAGE),
    "timm_convnext": (TimmConvNeXt, IMAGE),
    "torchvision_convnext": (TorchvisionConvNeXt, IMAGE),
    "swin": (Swin, IMAGE),
    "hf_vit": (hf_vit, 32),
}
# add_residual_gains needs a module of its own at the end of each residual branch: ConvNeXt's
# branch ends in the layer-scale multiply and a permute, Swin's in the window reshape, and HF
# ViT calls one Dropout instance after both branches; its error asks for branches=[...]
_ENDS_IN_A_FUNCTION = r"ends in a function, not a module.*declare branches="
NO_GAIN_SLOT = {
    "timm_convnext": _ENDS_IN_A_FUNCTION,
    "torchvision_convnext": _ENDS_IN_A_FUNCTION,
    "swin": _ENDS_IN_A_FUNCTION,
    "hf_vit": r"ends in module 'vit.layers.0.dropout', which the forward pass also uses elsewhere"
    r".*declare branches=",
}


def images(size: int) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return out.logits if hasattr(out, "logits") else out


def fill_nan(model: nn.Module, keep: tuple[str, ...] = ()) -> None:
    """The sentinel: every parameter NaN, but those whose leaf name is in ``keep``."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.rpartition(".")[2] not in keep:
                p.fill_(float("nan"))


def ties(model: nn.Module) -> list[list[str]]:
    """Groups of names that share one tensor."""
    groups: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(p), []).append(name)
    return sorted(g for g in groups.values() if len(g) > 1)


def init_with(family: str, model: nn.Module, scheme: str, x: torch.Tensor) -> wi.Plan:
    """``scheme`` on ``model``, with what the scheme needs (data, residual gains, the head
    dimension); the schemes that cannot run on a family must say why, clearly."""
    data = {"data": x} if scheme == "lsuv" else {"example_input": x}
    extra = {}
    if scheme in ("skipinit", "rezero"):
        with pytest.raises(ValueError, match="has no residual gains: add them first with"):
            wi.plan(model, scheme, **data)
        if family in NO_GAIN_SLOT:
            with pytest.raises(ValueError, match=NO_GAIN_SLOT[family]):
                add_residual_gains(model, example_input=x)
            return None
        add_residual_gains(model, example_input=x)
    if scheme == "t5" and family == "swin":  # timm's WindowAttention keeps no head_dim
        with pytest.raises(ValueError, match="head dimension d_kv .* pass head_dim="):
            wi.plan(model, scheme, **data)
        extra["head_dim"] = 8
    return wi.init(model, scheme, seed=0, strict=True, **data, **extra)


@pytest.mark.parametrize("scheme", list(wi.schemes()))
@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_scheme_initializes_every_parameter(family, scheme):
    """From a NaN sentinel: no parameter skipped or unknown (strict=True), every parameter
    written and finite, the output finite, ties kept."""
    factory, size = FAMILIES[family]
    model, x = factory(), images(size)
    tied = ties(model)
    # "auto" measures x + pos_embed and x * gamma with the raw parameter as planned, but a
    # tensor computed from one before it is used (Swin's table[index]) as traced
    fill_nan(model, keep=("relative_position_bias_table",) if scheme == "auto" else ())
    plan = init_with(family, model, scheme, x)
    if plan is None:
        return  # the scheme said clearly why it cannot run here
    assert [r.name for r in plan if r.init == SKIP] == []
    assert [r.name for r in plan if r.role == "unknown"] == []
    not_written = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    assert not_written == []
    with torch.no_grad():
        assert torch.isfinite(logits(model, x)).all()
    assert ties(model) == tied


class SharedBlocksViT(TimmViT):
    """Cross-layer parameter sharing (ALBERT-style): one block applied twice, so every
    parameter of ``blocks.1`` is the tensor of ``blocks.0``."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks[1] = self.blocks[0]


@pytest.mark.parametrize("scheme", ["he", "torch", "vit", "vit_jax", "gpt2", "lsuv"])
def test_tied_blocks_are_written_once_and_stay_tied(scheme):
    model, x = SharedBlocksViT(), images(IMAGE)
    tied = ties(model)
    assert len(tied) == 14  # every parameter of the block, under two names
    fill_nan(model)
    data = {"data": x} if scheme == "lsuv" else {"example_input": x}
    plan = wi.init(model, scheme, seed=0, strict=True, **data)
    skipped = {r.name: r.reason for r in plan if r.init == SKIP}  # documented in models.md
    assert skipped == {f"blocks.1.{n[9:]}": f"tied to {n}: skipped" for n, _ in tied}
    assert ties(model) == tied
    assert all(torch.isfinite(p).all() for p in model.parameters())
    with torch.no_grad():
        assert torch.isfinite(model(x)).all()


# --- the raw parameters of each family, at their reference values ------------------------------


def second_moment(values: torch.Tensor) -> float:
    x = values.detach().double().reshape(-1)
    return float((x * x).mean())


def moment_ok(values: torch.Tensor, var: float, kurtosis: float = 3.0) -> bool:
    """E[x^2] of zero-mean draws within 5 standard errors of ``var``."""
    return abs(second_moment(values) - var) <= var_tolerance(var, values.numel(), kurtosis)


@pytest.mark.parametrize("scheme", ["he", "glorot", "torch", "lsuv"])
def test_raw_parameters_get_their_reference_values_under_classic_schemes(scheme):
    """Classic schemes give raw parameters their own code base's values: timm pos_embed
    trunc_normal_(std=.02), cls_token and reg_token normal_(std=1e-6); torchvision
    class_token zeros, pos_embedding normal_(std=0.02); HF position_embeddings and cls_token
    trunc_normal_(std=initializer_range 0.02); Swin's table trunc_normal_(std=.02); layer
    scales their constructed value."""
    timm, tv_vit, hf, swin = TimmViT(init_values=1e-4), TorchvisionViT(), hf_vit(), Swin()
    convnexts = TimmConvNeXt(), TorchvisionConvNeXt()
    for model in (timm, tv_vit, hf, swin, *convnexts):
        x = images(32 if model is hf else IMAGE)
        data = {"data": x} if scheme == "lsuv" else {"example_input": x}
        wi.init(model, scheme, seed=0, strict=True, **data)
    assert moment_ok(timm.pos_embed, 0.02**2)
    assert moment_ok(torch.cat([timm.cls_token, timm.reg_token], 1), 1e-12)
    assert all(torch.equal(b.ls1.gamma, torch.full((D,), 1e-4)) for b in timm.blocks)
    assert torch.equal(tv_vit.class_token, torch.zeros(1, 1, D))
    assert moment_ok(tv_vit.encoder.pos_embedding, 0.02**2)
    emb = hf.vit.embeddings
    assert moment_ok(emb.position_embeddings, 0.02**2)
    assert moment_ok(emb.cls_token, 0.02**2)
    tables = [b.attn.relative_position_bias_table for s in swin.layers for b in s.blocks]
    assert moment_ok(torch.cat(tables), 0.02**2)
    gammas = [b.gamma for s in convnexts[0].stages for b in s.blocks]
    gammas += [m.layer_scale for m in convnexts[1].modules() if isinstance(m, CNBlock)]
    assert all(torch.equal(g, torch.full_like(g, 1e-6)) for g in gammas)  # ls_init_value


def test_a_mask_token_is_zero_and_a_vit_model_s_pooler_is_a_linear():
    model = hf_vit(classify=False, use_mask_token=True)
    fill_nan(model)
    plan = wi.init(model, "he", seed=0, strict=True, example_input=images(32))
    assert plan["embeddings.mask_token"].init == "zeros"  # HF: torch.zeros(1, 1, hidden)
    assert torch.equal(model.embeddings.mask_token, torch.zeros(1, 1, 32))
    assert plan["pooler.dense.weight"].reason.startswith("followed by tanh")


# --- "vit": timm's and Hugging Face's own initializations, group by group ----------------------

SEEDS = range(20)  # pooled: a class token has 32 values per model


def linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def norms(model: nn.Module) -> list[nn.LayerNorm]:
    return [m for m in model.modules() if isinstance(m, nn.LayerNorm)]


def timm_groups(m: TimmViT) -> dict[str, list[torch.Tensor]]:
    return {
        "linear weights": [lin.weight for lin in linears(m)],
        "linear biases": [lin.bias for lin in linears(m)],
        "patch weight": [m.patch_embed.proj.weight],
        "patch bias": [m.patch_embed.proj.bias],
        "pos_embed": [m.pos_embed],
        "cls_token": [m.cls_token],
        "reg_token": [m.reg_token],
        "layer scales": [b.ls1.gamma for b in m.blocks] + [b.ls2.gamma for b in m.blocks],
        "norm scales": [n.weight for n in norms(m)],
        "norm shifts": [n.bias for n in norms(m)],
    }


def hf_groups(m: nn.Module) -> dict[str, list[torch.Tensor]]:
    emb = m.vit.embeddings
    return {
        "linear weights": [lin.weight for lin in linears(m)],
        "linear biases": [lin.bias for lin in linears(m)],
        "patch weight": [emb.patch_embeddings.projection.weight],
        "patch bias": [emb.patch_embeddings.projection.bias],
        "position_embeddings": [emb.position_embeddings],
        "cls_token": [emb.cls_token],
        "norm scales": [n.weight for n in norms(m)],
        "norm shifts": [n.bias for n in norms(m)],
    }


def pool(per_seed: list[dict[str, list[torch.Tensor]]]) -> dict[str, torch.Tensor]:
    return {
        g: torch.cat([t.detach().double().reshape(-1) for groups in per_seed for t in groups[g]])
        for g in per_seed[0]
    }


def same_distribution(ours: torch.Tensor, ref: torch.Tensor, var: float, kurtosis: float) -> None:
    """Both second moments within 5 standard errors of the formula's ``var``, and of each
    other (the standard error of the difference); both means within 5 standard errors of 0."""
    for x in (ours, ref):
        assert abs(second_moment(x) - var) <= var_tolerance(var, x.numel(), kurtosis)
        assert abs(float(x.mean())) <= 5 * math.sqrt(var / x.numel())
    se = var * math.sqrt((kurtosis - 1) / ours.numel() + (kurtosis - 1) / ref.numel())
    assert abs(second_moment(ours) - second_moment(ref)) <= 5 * se


def ours_pooled(model: nn.Module, groups, scheme: str, **options) -> dict[str, torch.Tensor]:
    plan = wi.plan(model, scheme, strict=True, **options)
    per_seed = []
    for seed in SEEDS:
        plan.apply(model, seed=seed)
        per_seed.append({g: [t.clone() for t in ts] for g, ts in groups(model).items()})
    return pool(per_seed)


def test_vit_reproduces_timm_init_weights_group_by_group():
    """Oracle: TimmViT.init_weights, timm's VisionTransformer.init_weights (mode '')
    re-implemented from the source, on freshly built models (the patch conv as constructed:
    torch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in 3 x 4 x 4)."""
    refs = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        refs.append(timm_groups(TimmViT()))
    ref = pool(refs)
    ours = ours_pooled(TimmViT(), timm_groups, "vit")
    bound = 1 / math.sqrt(3 * PATCH * PATCH)
    for group, var, kurtosis in [
        ("linear weights", 0.02**2, 3.0),
        ("pos_embed", 0.02**2, 3.0),
        ("cls_token", 1e-12, 3.0),
        ("reg_token", 1e-12, 3.0),
        ("patch weight", bound**2 / 3, 1.8),
        ("patch bias", bound**2 / 3, 1.8),
    ]:
        same_distribution(ours[group], ref[group], var, kurtosis)
    for group in ("patch weight", "patch bias"):  # uniform: inside the bound
        assert float(ours[group].abs().max()) <= bound
    for group in ("linear weights", "pos_embed"):  # trunc_normal_'s +-2 absolute cut
        assert float(ours[group].abs().max()) <= 2.0
    for group in ("linear biases", "layer scales", "norm scales", "norm shifts"):
        assert torch.equal(ours[group], ref[group]), group  # constants: 0, 1e-5, 1, 0


@pytest.mark.parametrize(("scheme", "options"), [("vit", {"style": "hf"}), ("bert", {})])
def test_vit_hf_style_reproduces_hugging_face_init_weights_group_by_group(scheme, options):
    """Oracle: transformers' own ViTPreTrainedModel._init_weights, run by post_init on freshly
    built ViTForImageClassification models (Linear and Conv2d N(0, 0.02^2), biases 0,
    position_embeddings and cls_token trunc_normal_(std=0.02), norms 1 / 0). "bert", whose
    rules are the same, reproduces it too."""
    from transformers import ViTForImageClassification

    refs = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        refs.append(hf_groups(ViTForImageClassification(hf_config())))
    ref = pool(refs)
    ours = ours_pooled(hf_vit(), hf_groups, scheme, **options)
    for group in ("linear weights", "patch weight", "position_embeddings", "cls_token"):
        same_distribution(ours[group], ref[group], 0.02**2, 3.0)
        assert float(ours[group].abs().max()) <= 2.0
    for group in ("linear biases", "patch bias", "norm scales", "norm shifts"):
        assert torch.equal(ours[group], ref[group]), group


def test_vit_std_is_hugging_face_s_initializer_range():
    model = hf_vit()
    plan = wi.plan(model, "vit", style="hf", std=0.05)
    assert plan["vit.embeddings.cls_token"].args["std"] == 0.05
    assert plan["vit.embeddings.position_embeddings"].args["std"] == 0.05
    assert plan["classifier.weight"].args == {"std": 0.05}
    assert plan.notes["style"] == "hf" and plan.notes["std"] == 0.05


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"style": "jax"}, r"option `style` must be 'timm' .* or 'hf' .*, got 'jax'"),
        ({"std": -0.02}, r"option `std` must be a positive number, got -0.02"),
    ],
)
def test_vit_options_are_checked_and_the_model_is_left_alone(options, message):
    model = TimmViT()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        wi.init(model, "vit", seed=0, **options)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


# --- "vit_jax" on the three ViTs: the JAX original's choices -----------------------------------

VITS = {  # family: (class token, position table)
    "timm_vit": ("cls_token", "pos_embed"),
    "torchvision_vit": ("class_token", "encoder.pos_embedding"),
    "hf_vit": ("vit.embeddings.cls_token", "vit.embeddings.position_embeddings"),
}


@pytest.mark.parametrize("family", list(VITS))
def test_vit_jax_sets_positions_and_class_token_as_the_jax_original(family):
    """google-research/vision_transformer vit_jax/models_vit.py: ``AddPositionEmbs(
    posemb_init=nn.initializers.normal(stddev=0.02))``; ``cls = self.param('cls',
    nn.initializers.zeros, (1, 1, c))``; the patch ``nn.Conv`` with Flax's default
    lecun_normal (truncated) kernel; ``head`` kernel zeros, bias ``head_bias_init``."""
    factory, size = FAMILIES[family]
    cls_name, pos_name = VITS[family]
    positions = []
    for seed in SEEDS:
        model = factory()
        fill_nan(model)
        plan = wi.init(model, "vit_jax", seed=seed, strict=True)
        params = dict(model.named_parameters())
        assert torch.equal(params[cls_name], torch.zeros_like(params[cls_name]))
        positions.append(params[pos_name].detach().reshape(-1))
        assert all(torch.isfinite(p).all() for p in params.values())
    assert (plan[pos_name].init, plan[pos_name].args) == ("normal", {"std": 0.02})
    assert moment_ok(torch.cat(positions), 0.02**2)
    patch = next(r for r in plan if r.name.endswith("weight") and r.module == "Conv2d")
    assert (patch.init, patch.args) == (
        "variance_scaling",
        {"scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal"},
    )
    head = [r for r in plan if r.name.rpartition(".")[0] in ("head", "heads.head", "classifier")]
    assert [r.init for r in head] == ["zeros", "constant"]
    with torch.no_grad():
        assert torch.isfinite(logits(model, images(size))).all()


# --- found by these tests: a module that holds raw parameters is still a container -------------


class Gated(nn.Module):
    """An unknown raw parameter beside a submodule: used functionally, so traced as one call."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.scale = nn.Parameter(torch.ones(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.lin(x)) * self.scale


def test_modules_holding_conventional_raw_parameters_are_traced_inside():
    """A ViT holds cls_token and pos_embed itself, a ConvNeXt block its gamma, Swin's window
    attention its bias table, HF's ViTEmbeddings its tokens and positions: the trace used to
    take each as one opaque call, so nothing inside was followed (every layer of a timm ViT
    "followed by the output", and "auto" reached none of them). Modules holding other
    parameters of their own stay atomic."""
    timm, convnext, swin, hf = TimmViT(), TimmConvNeXt(), Swin(), hf_vit()
    for container in (
        timm,
        convnext.stages[0].blocks[0],
        TorchvisionConvNeXt().features[1][0],
        swin.layers[0].blocks[0].attn,
        hf.vit.embeddings,
        TorchvisionViT(),
    ):
        assert not is_atomic(container), type(container).__name__
    for atomic in (nn.MultiheadAttention(8, 2), Gated(), timm.blocks[0].ls1, nn.Linear(2, 2)):
        assert is_atomic(atomic), type(atomic).__name__


@pytest.mark.parametrize("traced_on", [None, "example_input"])
def test_he_finds_the_activation_inside_containers_of_raw_parameters(traced_on):
    x = images(IMAGE)
    options = {"example_input": x} if traced_on else {}
    vit = wi.plan(TimmViT(), "he", **options)
    assert vit.graph == ("execution" if traced_on else "fx")
    assert vit["blocks.1.mlp.fc1.weight"].reason.startswith("followed by gelu: gain 1.534")
    convnext = wi.plan(TimmConvNeXt(), "he", **options)
    assert convnext["stages.1.blocks.0.mlp.fc1.weight"].reason.startswith("followed by gelu")
    tv_convnext = wi.plan(TorchvisionConvNeXt(), "he", **options)
    assert tv_convnext["features.1.0.block.3.weight"].reason.startswith("followed by gelu")


def test_auto_reaches_every_layer_of_a_vit():
    plan = wi.plan(TimmViT(), "auto", example_input=images(IMAGE))
    weights = [r for r in plan if r.role == "weight"]
    assert len(weights) == 10
    assert not [r.name for r in weights if "not reached" in r.reason]


def test_auto_measures_raw_parameters_at_their_planned_values():
    """``x + pos_embed`` is measured with the table as the plan draws it (trunc normal 0.02),
    not with what it holds now: a NaN table (or a trained one) gives the same plan."""
    clean, x = TimmViT(), images(IMAGE)
    sentinel = copy.deepcopy(clean)
    with torch.no_grad():
        sentinel.pos_embed.fill_(float("nan"))
    expected = wi.plan(clean, "auto", example_input=x, seed=0)
    got = wi.plan(sentinel, "auto", example_input=x, seed=0)
    assert [(r.name, r.args) for r in got] == [(r.name, r.args) for r in expected]


# --- the other families' own initializations, and the preset that reproduces each ---------------


def convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def convnext_groups(m: nn.Module) -> dict[str, list[torch.Tensor]]:
    layer_scales = [p for n, p in m.named_parameters() if n.endswith(("gamma", "layer_scale"))]
    return {
        "conv weights": [c.weight for c in convs(m)],  # stem, depthwise 7x7, downsampling
        "linear weights": [lin.weight for lin in linears(m)],
        "biases": [c.bias for c in convs(m) + linears(m)],
        "layer scales": layer_scales,
        "norm scales": [n.weight for n in norms(m)],
        "norm shifts": [n.bias for n in norms(m)],
    }


def swin_groups(m: Swin) -> dict[str, list[torch.Tensor]]:
    blocks = [b for stage in m.layers for b in stage.blocks]
    return {
        "linear weights": [lin.weight for lin in linears(m)],  # reduction included
        "linear biases": [lin.bias for lin in linears(m) if lin.bias is not None],
        "bias tables": [b.attn.relative_position_bias_table for b in blocks],
        "patch weight": [m.patch_embed.proj.weight],
        "patch bias": [m.patch_embed.proj.bias],
        "norm scales": [n.weight for n in norms(m)],
        "norm shifts": [n.bias for n in norms(m)],
    }


def torchvision_vit_groups(m: TorchvisionViT) -> dict[str, list[torch.Tensor]]:
    mlps = [layer.mlp for layer in m.encoder.layers]
    return {
        "conv_proj weight": [m.conv_proj.weight],
        "conv_proj bias": [m.conv_proj.bias],
        "mlp weights": [mlp[i].weight for mlp in mlps for i in (0, 3)],
        "mlp biases": [mlp[i].bias for mlp in mlps for i in (0, 3)],
        "pos_embedding": [m.encoder.pos_embedding],
        "class token and head": [m.class_token, m.heads.head.weight, m.heads.head.bias],
        "norm scales": [n.weight for n in norms(m)],
        "norm shifts": [n.bias for n in norms(m)],
    }


PATCH_FAN = 3 * PATCH * PATCH  # the patch conv's fan_in, 48
PATCH_U = 1 / (3 * PATCH_FAN)  # Var of U(-1/sqrt(fan_in), 1/sqrt(fan_in)), torch's default
OWN_INITS = {  # family: (groups, scheme, options, {random group: (Var, kurtosis)})
    # timm convnext _init_weights and torchvision ConvNeXt: every Conv2d and Linear
    # trunc_normal_(std=.02) (cut at +-2 absolute), zero bias; layer scales as built
    "timm_convnext": (
        convnext_groups,
        "vit",
        {"style": "hf"},
        {"conv weights": (0.02**2, 3.0), "linear weights": (0.02**2, 3.0)},
    ),
    "torchvision_convnext": (
        convnext_groups,
        "vit",
        {"style": "hf"},
        {"conv weights": (0.02**2, 3.0), "linear weights": (0.02**2, 3.0)},
    ),
    # timm swin _init_weights: Linear trunc_normal_(std=.02), zero bias; the table
    # trunc_normal_(std=.02); the patch conv as constructed (torch's default)
    "swin": (
        swin_groups,
        "vit",
        {},
        {
            "linear weights": (0.02**2, 3.0),
            "bias tables": (0.02**2, 3.0),
            "patch weight": (PATCH_U, 1.8),
            "patch bias": (PATCH_U, 1.8),
        },
    ),
    # torchvision VisionTransformer: conv_proj trunc_normal_(std=sqrt(1 / fan_in)); MLPBlock
    # xavier_uniform_ weights, normal_(std=1e-6) biases; pos_embedding normal_(std=0.02);
    # class_token and heads.head zeros: the JAX original's choices, so "vit_jax"
    "torchvision_vit": (
        torchvision_vit_groups,
        "vit_jax",
        {},
        {
            "conv_proj weight": (1 / PATCH_FAN, 3.0),  # LeCun normal
            "mlp weights": (2 / (D + 4 * D), 1.8),
            "mlp biases": (1e-12, 3.0),
            "pos_embedding": (0.02**2, 3.0),
        },
    ),
}


@pytest.mark.parametrize("family", list(OWN_INITS))
def test_a_preset_reproduces_each_family_s_own_init_group_by_group(family):
    """Oracle: each model's own initialization as its constructor runs it (re-implemented from
    the reference code, quoted in OWN_INITS and the model classes), fresh models per seed."""
    groups, scheme, options, random = OWN_INITS[family]
    factory = FAMILIES[family][0]
    refs = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        refs.append(groups(factory()))
    ref = pool(refs)
    ours = ours_pooled(factory(), groups, scheme, **options)
    for group in ref:
        if group in random:
            same_distribution(ours[group], ref[group], *random[group])
        else:  # constants: zeros, ones, the layer scales' 1e-6
            assert torch.equal(ours[group], ref[group]), group
