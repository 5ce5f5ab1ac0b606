"""Raw parameters with conventional names (issue 13): ViT positions and tokens in timm's,
torchvision's and Hugging Face's spellings, layer scales, Swin's relative position bias table,
CLIP's class embedding and logit scale, Wav2Vec2's mask embedding.

The modules below copy the parameter names and shapes of the reference code; the expected
values are quoted from that code next to each check.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import var_tolerance
from torch import nn

import weightinit as wi

D = 64


def _second_moment_ok(t: torch.Tensor, var: float) -> bool:
    """E[x^2] of zero-mean draws within 5 standard errors of ``var``."""
    x = t.detach().double().reshape(-1)
    return abs(float((x * x).mean()) - var) <= var_tolerance(var, x.numel())


class _Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(d, 3 * d)
        self.attn.proj = nn.Linear(d, d)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(d, 4 * d)
        self.mlp.fc2 = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.attn.qkv(self.norm1(x))
        x = x + self.attn.proj(h[..., : h.shape[-1] // 3])
        return x + self.mlp.fc2(torch.nn.functional.gelu(self.mlp.fc1(x)))


class TimmViT(nn.Module):
    """timm VisionTransformer's raw parameters: cls_token (1, 1, D), reg_token (1, R, D),
    pos_embed (1, N, D)."""

    def __init__(self, d: int = D, n: int = 197) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.full((1, 1, 1024), 5.0))
        self.reg_token = nn.Parameter(torch.full((1, 16, d), 5.0))
        self.pos_embed = nn.Parameter(torch.full((1, n, d), 5.0))
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, d, 4, 4)
        self.blocks = nn.Sequential(_Block(d), _Block(d))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 56, 56): 196 patches
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2) + self.pos_embed[:, 1:]
        return self.head(self.norm(self.blocks(x))[:, 0])


class TorchvisionEncoder(nn.Module):
    """torchvision's vision_transformer.Encoder: pos_embedding (1, seq_length, hidden_dim)."""

    def __init__(self, d: int = D, n: int = 197) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.full((1, n, d), 5.0))
        self.layers = nn.Sequential()
        for i in range(2):
            self.layers.add_module(f"encoder_layer_{i}", _Block(d))
        self.ln = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(self.layers(x + self.pos_embedding))


class TorchvisionViT(nn.Module):
    """torchvision VisionTransformer: class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))."""

    def __init__(self, d: int = D) -> None:
        super().__init__()
        self.conv_proj = nn.Conv2d(3, d, 4, 4)
        self.class_token = nn.Parameter(torch.full((1, 1, d), 5.0))
        self.encoder = TorchvisionEncoder(d)
        self.heads = nn.Sequential()
        self.heads.add_module("head", nn.Linear(d, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 56, 56): 196 patches
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.heads(self.encoder(x)[:, 0])


class ViTEmbeddings(nn.Module):
    """Hugging Face's ViTEmbeddings: cls_token (1, 1, D), mask_token (1, 1, D),
    position_embeddings (1, N + 1, D), patch_embeddings.projection."""

    def __init__(self, d: int = D, n: int = 197) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.full((1, 1, 1024), 5.0))
        self.mask_token = nn.Parameter(torch.full((1, 1, d), 5.0))
        self.patch_embeddings = nn.Module()
        self.patch_embeddings.projection = nn.Conv2d(3, d, 4, 4)
        self.position_embeddings = nn.Parameter(torch.full((1, n, d), 5.0))


class HFViT(nn.Module):
    def __init__(self, d: int = D) -> None:
        super().__init__()
        self.embeddings = ViTEmbeddings(d)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList([_Block(d), _Block(d)])
        self.layernorm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layernorm(x + self.embeddings.position_embeddings)


class Bundle(nn.ModuleDict):
    """Modules side by side, with a forward to trace (what follows each layer: nothing)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _rows(model: nn.Module, scheme: str) -> wi.Plan:
    p = wi.init(model, scheme, seed=0)
    unknown = [r.name for r in p.rows if r.role == "unknown"]
    assert not unknown, unknown
    return p


@pytest.mark.parametrize("scheme", ["he", "vit_jax"])
def test_timm_vit_positions_and_tokens(scheme):
    model = TimmViT()
    p = _rows(model, scheme)
    # timm VisionTransformer.init_weights: trunc_normal_(self.pos_embed, std=.02) (cut at +-2
    # absolute); the JAX original (vision_transformer AddPositionEmbs): normal(stddev=0.02)
    assert p["pos_embed"].init == ("trunc_normal" if scheme == "he" else "normal")
    assert _second_moment_ok(model.pos_embed, 0.02**2)
    # timm: nn.init.normal_(self.reg_token, std=1e-6)
    assert _second_moment_ok(model.reg_token, 1e-12)
    if scheme == "he":  # timm: nn.init.normal_(self.cls_token, std=1e-6)
        assert _second_moment_ok(model.cls_token, 1e-12)
    else:  # JAX ViT: cls = self.param('cls', nn.initializers.zeros, (1, 1, c))
        assert torch.equal(model.cls_token.detach(), torch.zeros(1, 1, 1024))


@pytest.mark.parametrize("scheme", ["he", "vit_jax"])
def test_torchvision_vit_positions_and_class_token(scheme):
    model = TorchvisionViT()
    p = _rows(model, scheme)
    # torchvision Encoder: torch.empty(1, seq_length, hidden_dim).normal_(std=0.02)
    assert p["encoder.pos_embedding"].role == "position_embedding"
    assert _second_moment_ok(model.encoder.pos_embedding, 0.02**2)
    # torchvision: class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim)); JAX: zeros
    assert p["class_token"].init == "zeros"
    assert torch.equal(model.class_token.detach(), torch.zeros(1, 1, D))


@pytest.mark.parametrize("scheme", ["he", "vit_jax"])
def test_hugging_face_vit_embeddings(scheme):
    model = HFViT()
    p = _rows(model, scheme)
    emb = model.embeddings
    # HF ViTPreTrainedModel._init_weights: trunc_normal_(position_embeddings, std=0.02)
    assert _second_moment_ok(emb.position_embeddings, 0.02**2)
    # HF ViTEmbeddings: mask_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
    assert torch.equal(emb.mask_token.detach(), torch.zeros(1, 1, D))
    if scheme == "he":  # HF _init_weights: trunc_normal_(cls_token, std=initializer_range)
        assert p["embeddings.cls_token"].init == "trunc_normal"
        assert _second_moment_ok(emb.cls_token, 0.02**2)
    else:
        assert torch.equal(emb.cls_token.detach(), torch.zeros(1, 1, 1024))


def test_trunc_normal_cuts_at_two_absolute_as_torch_does():
    p = wi.plan(TimmViT(), "he")
    args = p["pos_embed"].args
    assert (args["a"], args["b"], args["bounds"]) == (-2.0, 2.0, "absolute")


class LayerScale(nn.Module):
    """timm's LayerScale: self.gamma = nn.Parameter(init_values * torch.ones(dim))."""

    def __init__(self, dim: int, init_values: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))


class CaiTBlock(nn.Module):
    def __init__(self, d: int = D, init_values: float = 1e-4) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.ls1 = LayerScale(d, init_values)
        self.ls2 = LayerScale(d, init_values)


class ConvNeXtBlock(nn.Module):
    """timm ConvNeXt Block: gamma = nn.Parameter(ls_init_value * torch.ones(out_chs));
    torchvision CNBlock: layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)."""

    def __init__(self, d: int = D) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(d, d, 7, padding=3, groups=d)
        self.gamma = nn.Parameter(1e-6 * torch.ones(d))
        self.layer_scale = nn.Parameter(torch.ones(d, 1, 1) * 1e-6)


@pytest.mark.parametrize("scheme", ["he", "vit_jax"])
def test_layer_scales_keep_their_built_value(scheme):
    model = Bundle({"cait": CaiTBlock(), "convnext": ConvNeXtBlock()})
    p = wi.init(model, scheme, seed=0)
    assert not [r.name for r in p.rows if r.role == "unknown"]
    for name, value in [
        ("cait.ls1.gamma", 1e-4),
        ("cait.ls2.gamma", 1e-4),
        ("convnext.gamma", 1e-6),
        ("convnext.layer_scale", 1e-6),
    ]:
        assert p[name].role == "layer_scale"
        param = model.get_submodule(name.rsplit(".", 1)[0]).get_parameter(name.rsplit(".", 1)[1])
        # float32's own 1e-4 (the value as built), not a float64 re-rounding
        assert torch.equal(param.detach(), torch.full_like(param, value))


def test_a_trained_or_meta_layer_scale_gets_the_documented_default():
    block = CaiTBlock()
    with torch.no_grad():
        block.ls1.gamma.copy_(torch.linspace(0.1, 0.5, D))  # trained: entries differ
    wi.init(Bundle({"b": block}), "he", seed=0)
    assert torch.equal(block.ls1.gamma.detach(), torch.full((D,), 1e-5))  # timm LayerScale
    assert torch.equal(block.ls2.gamma.detach(), torch.full((D,), 1e-4))  # built: kept
    with torch.device("meta"):
        meta = Bundle({"b": CaiTBlock()})
    p = wi.plan(meta, "he")
    assert p["b.ls2.gamma"].args == {"val": 1e-5}


class WindowAttention(nn.Module):
    """timm Swin WindowAttention: relative_position_bias_table
    ((2 * Wh - 1) * (2 * Ww - 1), num_heads), trunc_normal_(std=.02)."""

    def __init__(self, d: int = D, window: int = 15, heads: int = 8) -> None:
        super().__init__()
        self.relative_position_bias_table = nn.Parameter(
            torch.full(((2 * window - 1) ** 2, heads), 5.0)
        )
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)


class CLIPLike(nn.Module):
    """CLIP: class_embedding = scale * torch.randn(width), scale = width ** -0.5;
    logit_scale = nn.Parameter(torch.ones([]) * np.log(1 / 0.07))."""

    def __init__(self, width: int = 1024) -> None:
        super().__init__()
        self.visual = nn.Module()
        self.visual.class_embedding = nn.Parameter(torch.full((width,), 5.0))
        self.visual.conv1 = nn.Conv2d(3, width, 4, 4, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(5.0))


class Wav2Vec2Like(nn.Module):
    """HF Wav2Vec2Model: masked_spec_embed = nn.Parameter(torch.Tensor(hidden).uniform_())."""

    def __init__(self, hidden: int = 4096) -> None:
        super().__init__()
        self.masked_spec_embed = nn.Parameter(torch.full((hidden,), 5.0))
        self.feature_projection = nn.Linear(16, hidden)


@pytest.mark.parametrize("scheme", ["he", "vit_jax"])
def test_swin_clip_and_wav2vec2_raw_parameters(scheme):
    model = Bundle({"attn": WindowAttention(), "clip": CLIPLike(), "w2v": Wav2Vec2Like()})
    p = wi.init(model, scheme, seed=0)
    assert not [r.name for r in p.rows if r.role == "unknown"]
    table = model["attn"].relative_position_bias_table
    assert p["attn.relative_position_bias_table"].role == "relative_position_bias"
    assert _second_moment_ok(table, 0.02**2)
    clip = model["clip"]
    assert _second_moment_ok(clip.visual.class_embedding, 1 / 1024)
    # HF CLIPConfig.logit_scale_init_value = 2.6592; CLIP: np.log(1 / 0.07)
    assert clip.logit_scale.item() == torch.tensor(math.log(1 / 0.07)).item()
    assert abs(clip.logit_scale.item() - 2.6592) < 1e-4
    spec = model["w2v"].masked_spec_embed.detach().double()
    assert bool(((spec >= 0) & (spec <= 1)).all())
    var = 1 / 12  # U(0, 1)
    assert abs(float(spec.var()) - var) <= var_tolerance(var, spec.numel(), kurtosis=1.8)
    assert abs(float(spec.mean()) - 0.5) <= 5 * math.sqrt(var / spec.numel())


def test_rules_and_roles_override_the_conventions():
    model = TimmViT()
    p = wi.init(model, "he", seed=0, rules={"pos_embed": "zeros", "cls_token": "ones"})
    assert torch.equal(model.pos_embed.detach(), torch.zeros_like(model.pos_embed))
    assert torch.equal(model.cls_token.detach(), torch.ones_like(model.cls_token))
    assert p["pos_embed"].reason == "rule 'pos_embed'"
    # a Transformer role given with roles= takes the preset's rule for that role
    p = wi.init(model, "vit_jax", seed=0, roles={"reg_token": "position_embedding"})
    assert p["reg_token"].init == "normal" and p["reg_token"].args == {"std": 0.02}
    assert _second_moment_ok(model.reg_token, 0.02**2)


class Odd(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(8))  # no (N, D): not a position table
        self.logit_scale = nn.Parameter(torch.zeros(3))  # not a scalar
        self.gamma = nn.Parameter(torch.zeros(4, 4))  # not one value per channel


class ScaledLinear(nn.Linear):  # a known module: its extra parameter is not guessed
    def __init__(self) -> None:
        super().__init__(4, 4)
        self.gamma = nn.Parameter(torch.ones(4))


def test_names_with_the_wrong_shape_or_on_known_modules_stay_unknown():
    model = Bundle({"odd": Odd(), "lin": ScaledLinear()})
    with pytest.warns(UserWarning, match=r"4 parameter\(s\)"):
        p = wi.init(model, "he", seed=0)
    for name in ("odd.pos_embed", "odd.logit_scale", "odd.gamma", "lin.gamma"):
        assert p[name].role == "unknown", name


class WindowAttentionV2(nn.Module):
    """timm swin_transformer_v2 WindowAttention (and BEiT/EVA's Attention for q_bias, v_bias):
    ``logit_scale = nn.Parameter(torch.log(10 * torch.ones((num_heads, 1, 1))))``;
    ``q_bias = nn.Parameter(torch.zeros(dim))``, ``v_bias`` likewise, ``k_bias`` a zero
    buffer; the three passed to ``F.linear`` with ``qkv.weight``."""

    def __init__(self, d: int = D, heads: int = 8) -> None:
        super().__init__()
        self.num_heads = heads
        self.logit_scale = nn.Parameter(torch.full((heads, 1, 1), 5.0))
        self.cpb_mlp = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, heads, bias=False))
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.q_bias = nn.Parameter(torch.full((d,), 5.0))
        self.register_buffer("k_bias", torch.zeros(d), persistent=False)
        self.v_bias = nn.Parameter(torch.full((d,), 5.0))
        self.proj = nn.Linear(d, d)
        coords = torch.randn(4, 4, 2, generator=torch.Generator().manual_seed(0))
        self.register_buffer("relative_coords_table", coords, persistent=False)  # 4 tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        bias = torch.cat((self.q_bias, self.k_bias, self.v_bias))
        qkv = torch.nn.functional.linear(x, self.qkv.weight, bias)
        q, k, v = qkv.reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        attn = torch.nn.functional.normalize(q, dim=-1) @ torch.nn.functional.normalize(
            k, dim=-1
        ).transpose(-2, -1)
        attn = attn * torch.clamp(self.logit_scale, max=math.log(100)).exp()
        pos = self.cpb_mlp(self.relative_coords_table).permute(2, 0, 1)
        attn = (attn + 16 * torch.sigmoid(pos)).softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


@pytest.mark.parametrize("scheme", ["he", "torch", "vit", "vit_jax", "auto"])
def test_swin_v2_logit_scale_per_head_and_beit_q_v_biases(scheme):
    model, x = WindowAttentionV2(), torch.randn(2, 4, D)
    p = wi.init(model, scheme, seed=0, strict=True, example_input=x)
    assert p["logit_scale"].role == "logit_scale"
    # Swin V2: torch.log(10 * torch.ones((num_heads, 1, 1))), as float32 computes it
    expected = torch.log(10 * torch.ones((8, 1, 1)))
    assert torch.allclose(model.logit_scale.detach(), expected, rtol=0, atol=1e-6)
    assert p["q_bias"].role == p["v_bias"].role == "bias"
    assert torch.equal(model.q_bias.detach(), torch.zeros(D))
    assert torch.equal(model.v_bias.detach(), torch.zeros(D))
    assert torch.isfinite(model(x)).all()


def test_a_logit_scale_or_q_bias_of_another_shape_stays_unknown():
    odd = nn.Module()
    odd.logit_scale = nn.Parameter(torch.zeros(8, 2, 1))  # not one per head
    odd.q_bias = nn.Parameter(torch.zeros(4, 4))  # not a vector
    with pytest.warns(UserWarning, match=r"2 parameter\(s\)"):
        p = wi.plan(Bundle({"odd": odd}), "he")
    assert p["odd.logit_scale"].role == p["odd.q_bias"].role == "unknown"


class SiglipLike(nn.Module):
    """Hugging Face SiglipModel's raw parameters: logit_scale and logit_bias (1,), and the
    attention-pooling head's probe (1, 1, D)."""

    def __init__(self, d: int = 48):
        super().__init__()
        self.proj = nn.Linear(d, d)
        self.logit_scale = nn.Parameter(torch.randn(1))
        self.logit_bias = nn.Parameter(torch.randn(1))
        self.probe = nn.Parameter(torch.randn(1, 1, d))

    def forward(self, x):
        y = nn.functional.normalize(self.proj(x + self.probe[0]), dim=-1)
        return (y @ y.T) * self.logit_scale.exp() + self.logit_bias


@pytest.mark.parametrize("scheme", ["he", "torch", "auto"])
def test_siglip_logit_scale_bias_and_probe(scheme):
    """SigLIP (Zhai et al. 2023): t' = log 10 and b = -10 (CLIP's scale is log(1/0.07)); the
    probe as HF's xavier_uniform_ draws a (1, 1, D) tensor: torch's fans of that shape."""
    model, d = SiglipLike(), 48
    x = torch.randn(16, d, generator=torch.Generator().manual_seed(0))
    plan = wi.init(model, scheme, seed=0, strict=True, example_input=x)
    assert model.logit_scale.item() == pytest.approx(math.log(10))
    assert model.logit_bias.item() == -10.0
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(torch.empty(1, 1, d))
    bound = math.sqrt(6 / (fan_in + fan_out))  # torch.nn.init.xavier_uniform_, gain 1
    assert plan["probe"].args == pytest.approx({"a": -bound, "b": bound})
    assert model.probe.abs().max() <= bound
