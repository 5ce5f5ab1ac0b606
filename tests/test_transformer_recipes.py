"""Transformer recipes: roles, the presets of the reference code bases and T-Fixup.

Stds are measured on applied weights and compared with the constants of the originals,
written here as independent formulas; tolerances are a few standard errors of a sample std
(for n draws of a normal the std's relative standard error is 1/sqrt(2n); uniform and
truncated normals have lighter tails, so that bound is conservative for them too).
"""

import math
import warnings

import pytest
import torch
from torch import nn

import weightinit as wi
from weightinit.recipes import transformer_roles

D, L, VOCAB, CONTEXT = 64, 4, 96, 32


def rel_tol(n: int, k: float = 5.0) -> float:
    return k / math.sqrt(2 * n)


def assert_std(t: torch.Tensor, expected: float, what: str = "") -> None:
    measured = t.detach().double().std().item()
    tol = rel_tol(t.numel())
    assert abs(measured / expected - 1) < tol, f"{what}: std {measured:.5g} vs {expected:.5g}"


def trunc_factor(c: float) -> float:
    """Std of a standard normal truncated to [-c, c] (independent of the library's helper)."""
    phi = math.exp(-c * c / 2) / math.sqrt(2 * math.pi)
    mass = math.erf(c / math.sqrt(2))
    return math.sqrt(1 - 2 * c * phi / mass)


# --- a nanoGPT-style model (names as in karpathy/nanoGPT model.py) ---------------------------


class CausalSelfAttention(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)


class MLP(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.c_fc = nn.Linear(d, 4 * d)
        self.c_proj = nn.Linear(4 * d, d)


class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.ln_1, self.attn = nn.LayerNorm(d), CausalSelfAttention(d)
        self.ln_2, self.mlp = nn.LayerNorm(d), MLP(d)


class GPT(nn.Module):
    def __init__(self, d=D, layers=L):
        super().__init__()
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(VOCAB, d),
                "wpe": nn.Embedding(CONTEXT, d),
                "h": nn.ModuleList([Block(d) for _ in range(layers)]),
                "ln_f": nn.LayerNorm(d),
            }
        )
        self.lm_head = nn.Linear(d, VOCAB, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying, as nanoGPT


def gathered(model, names):
    params = dict(model.named_parameters())
    return torch.cat([params[n].detach().flatten() for n in names])


def blocks(fmt, layers=L):
    return [fmt.format(i) for i in range(layers)]


# --- roles --------------------------------------------------------------------------------------


def test_roles_from_names_of_a_nanogpt_model():
    found = transformer_roles(GPT())
    expected = {
        "transformer.wte.weight": ("embedding", None),
        "transformer.wpe.weight": ("position_embedding", None),
        "transformer.h.2.attn.c_attn.weight": ("qkv", 2),
        "transformer.h.2.attn.c_proj.weight": ("attn_out", 2),
        "transformer.h.2.attn.c_proj.bias": ("attn_out", 2),
        "transformer.h.2.mlp.c_fc.weight": ("mlp_in", 2),
        "transformer.h.2.mlp.c_proj.weight": ("mlp_out", 2),
        "transformer.h.3.ln_1.weight": ("norm", 3),
        "transformer.ln_f.bias": ("norm", None),
    }
    for name, (role, layer) in expected.items():
        assert (found[name].role, found[name].layer) == (role, layer), name
    assert found["transformer.h.0.attn.c_attn.weight"].stack == "transformer.h"


def test_roles_of_llama_bert_and_t5_names():
    def named(*paths):
        """A module tree with a Linear at each dotted path."""
        root = nn.Module()
        for path in paths:
            *parents, leaf = path.split(".")
            module = root
            for part in parents:
                if part not in module._modules:
                    lists = ("layers", "layer", "block")  # the ModuleLists of blocks
                    module.add_module(part, nn.ModuleList() if part in lists else nn.Module())
                module = module._modules[part]
            module.add_module(leaf, nn.Linear(4, 4))
        return root

    llama = named(
        "layers.0.attention.wq",
        "layers.0.attention.wo",
        "layers.0.feed_forward.w1",
        "layers.0.feed_forward.w2",
        "layers.0.feed_forward.w3",
        "output",
    )
    bert = named(
        "encoder.layer.0.attention.self.query",
        "encoder.layer.0.attention.output.dense",
        "encoder.layer.0.intermediate.dense",
        "encoder.layer.0.output.dense",
        "classifier",
    )
    t5 = named(
        "block.0.layer.0.SelfAttention.q",
        "block.0.layer.0.SelfAttention.o",
        "block.0.layer.1.EncDecAttention.v",
        "block.0.layer.2.DenseReluDense.wi",
        "block.0.layer.2.DenseReluDense.wo",
        "lm_head",
    )
    roles = {}
    for model in (llama, bert, t5):
        roles.update(
            {
                n.rsplit(".", 1)[0]: r
                for n, r in transformer_roles(model).items()
                if n.endswith("weight")
            }
        )
    expected = {
        "layers.0.attention.wq": "q", "layers.0.attention.wo": "attn_out",
        "layers.0.feed_forward.w1": "mlp_in", "layers.0.feed_forward.w2": "mlp_out",
        "layers.0.feed_forward.w3": "mlp_up", "output": "head",
        "encoder.layer.0.attention.self.query": "q",
        "encoder.layer.0.attention.output.dense": "attn_out",
        "encoder.layer.0.intermediate.dense": "mlp_in", "encoder.layer.0.output.dense": "mlp_out",
        "classifier": "head", "block.0.layer.0.SelfAttention.q": "q",
        "block.0.layer.0.SelfAttention.o": "attn_out", "block.0.layer.1.EncDecAttention.v": "v",
        "block.0.layer.2.DenseReluDense.wi": "mlp_in",
        "block.0.layer.2.DenseReluDense.wo": "mlp_out", "lm_head": "head",
    }  # fmt: skip
    assert {name: roles[name].role for name in expected} == expected
    assert roles["block.0.layer.1.EncDecAttention.v"].cross
    assert roles["block.0.layer.0.SelfAttention.q"].decoder  # its stack has cross-attention
    assert roles["layers.0.attention.wq"].layer == 0 and roles["output"].layer is None


def test_roles_from_structure_of_torch_transformer():
    model = nn.Transformer(16, 2, 2, 3, 32, batch_first=True)
    found = transformer_roles(model)
    cross = found["decoder.layers.1.multihead_attn.in_proj_weight"]
    assert (cross.role, cross.layer, cross.cross, cross.decoder) == ("qkv", 1, True, True)
    assert found["decoder.layers.2.self_attn.out_proj.weight"].role == "attn_out"
    assert found["decoder.layers.2.self_attn.out_proj.weight"].source == "structure"
    enc = found["encoder.layers.0.self_attn.in_proj_weight"]
    assert (enc.role, enc.decoder, enc.cross) == ("qkv", False, False)
    assert found["encoder.layers.1.linear1.weight"].role == "mlp_in"
    assert found["decoder.layers.0.linear2.bias"].role == "mlp_out"
    plan = wi.plan(model, "gpt2")
    assert plan.notes["layers"] == {"encoder.layers": 2, "decoder.layers": 3}
    assert plan.notes["roles"]["qkv"] == 2 * (2 + 2 * 3)  # weights and biases


class OwnBlock(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.to_v, self.mix, self.expand, self.squeeze = (nn.Linear(d, d) for _ in range(4))


def test_user_roles_override_and_unknown_roles_are_an_error():
    model = nn.Module()
    model.blocks = nn.ModuleList([OwnBlock(8) for _ in range(3)])
    roles = {"*.mix": "attn_out", "*.expand": "mlp_in", "*.squeeze.weight": "mlp_out"}
    found = transformer_roles(model, roles)
    assert found["blocks.1.to_v.weight"].role == "v"  # by name
    assert found["blocks.1.mix.bias"].role == "attn_out"  # a module glob covers its bias
    assert (found["blocks.2.squeeze.weight"].role, found["blocks.2.squeeze.weight"].source) == (
        "mlp_out",
        "user",
    )
    assert found["blocks.2.squeeze.bias"].role is None  # the glob named the weight only
    plan = wi.plan(model, "gpt2", roles=roles)
    assert plan["blocks.0.mix.weight"].args["std"] == pytest.approx(0.02 / math.sqrt(2 * 3))
    assert plan["blocks.0.expand.weight"].args["std"] == 0.02
    before = {n: t.clone() for n, t in model.state_dict().items()}
    with pytest.raises(ValueError, match="unknown role 'attention'.*the roles are embedding"):
        wi.init(model, "gpt2", roles={"*.mix": "attention"})
    assert all(torch.equal(t, before[n]) for n, t in model.state_dict().items())  # untouched
    with pytest.raises(ValueError, match="unknown role"):
        transformer_roles(model, {"*.mix": "mlp"})


def test_bad_options_name_the_option():
    with pytest.raises(ValueError, match="`std` must be a positive number"):
        wi.plan(GPT(), "gpt2", std=-0.02)
    with pytest.raises(ValueError, match="`n_layers` must be a positive int"):
        wi.plan(GPT(), "t-fixup", n_layers=0)
    with pytest.raises(ValueError, match="`factor`"):
        wi.plan(GPT(), "t5", factor=0)
    with pytest.raises(TypeError, match="depth_init"):
        wi.plan(GPT(), "torchtitan", depth_init="yes")


# --- presets on the nanoGPT model ----------------------------------------------------------------


def test_gpt2_and_megatron_scale_the_residual_outputs_by_sqrt_2L():
    for scheme in ("gpt2", "megatron"):
        model = GPT()
        plan = wi.init(model, scheme, seed=0)
        residual = blocks("transformer.h.{}.attn.c_proj.weight") + blocks(
            "transformer.h.{}.mlp.c_proj.weight"
        )
        assert_std(gathered(model, residual), 0.02 / math.sqrt(2 * L), scheme)
        plain = blocks("transformer.h.{}.attn.c_attn.weight") + blocks(
            "transformer.h.{}.mlp.c_fc.weight"
        )
        assert_std(gathered(model, plain), 0.02, scheme)
        assert_std(model.transformer.wte.weight, 0.02, scheme)
        assert_std(model.transformer.wpe.weight, 0.02, scheme)
        assert not gathered(model, blocks("transformer.h.{}.mlp.c_fc.bias")).any()
        assert torch.equal(model.transformer.ln_f.weight, torch.ones(D))
        assert plan["lm_head.weight"].role == "tied"
        assert plan.notes["residual_std"]["transformer.h"] == pytest.approx(0.02 / math.sqrt(2 * L))
    plan = wi.plan(GPT(), "gpt2", std=0.01, n_layers=8)
    assert plan["transformer.h.0.mlp.c_proj.weight"].args["std"] == pytest.approx(0.01 / 4)


def test_bert_is_n_0_002_everywhere():
    model = GPT()
    wi.init(model, "bert", seed=0)
    names = [n for n, p in model.named_parameters() if p.ndim == 2]
    assert_std(gathered(model, names), 0.02, "bert")
    for name in names:
        assert_std(dict(model.named_parameters())[name], 0.02, name)


def test_torchtitan_depth_init_and_head():
    model = GPT()
    model.lm_head = nn.Linear(D, VOCAB, bias=False)  # untied, as torchtitan's output layer
    wi.init(model, "torchtitan", seed=0)
    for i in range(L):
        out = gathered(model, [f"transformer.h.{i}.attn.c_proj.weight",
                               f"transformer.h.{i}.mlp.c_proj.weight"])  # fmt: skip
        assert_std(out, 0.02 / math.sqrt(2 * (i + 1)), f"block {i}")
    assert_std(gathered(model, blocks("transformer.h.{}.attn.c_attn.weight")), 0.02, "wq/wk/wv")
    assert_std(model.transformer.wte.weight, 1.0, "tok_embeddings")
    head = model.lm_head.weight
    assert_std(head, D**-0.5 * trunc_factor(3.0), "output")
    assert head.abs().max() <= 3 * D**-0.5
    plan = wi.plan(model, "torchtitan", depth_init=False)
    assert plan["transformer.h.0.mlp.c_proj.weight"].args["std"] == pytest.approx(
        0.02 / math.sqrt(2 * L)
    )


def test_olmo_mitchell():
    model = GPT()
    model.lm_head = nn.Linear(D, VOCAB, bias=False)
    wi.init(model, "olmo", seed=0)
    t3 = trunc_factor(3.0)
    for i in (0, L - 1):
        attn_out = dict(model.named_parameters())[f"transformer.h.{i}.attn.c_proj.weight"]
        assert_std(attn_out, t3 / math.sqrt(2 * D * (i + 1)), f"attn_out {i}")
        ff_out = dict(model.named_parameters())[f"transformer.h.{i}.mlp.c_proj.weight"]
        assert_std(ff_out, t3 / math.sqrt(2 * 4 * D * (i + 1)), f"ff_out {i}")
        assert ff_out.abs().max() <= 3 / math.sqrt(2 * 4 * D * (i + 1))
    assert_std(gathered(model, blocks("transformer.h.{}.attn.c_attn.weight")), t3 / D**0.5)
    assert_std(model.transformer.wte.weight, t3 / D**0.5, "wte")
    assert_std(model.lm_head.weight, t3 / D**0.5, "head")


# --- T5 and ViT, with their own names -----------------------------------------------------------


class T5Attention(nn.Module):
    def __init__(self, d, heads, d_kv, relative):
        super().__init__()
        self.key_value_proj_dim, self.n_heads = d_kv, heads
        self.q, self.k, self.v = (nn.Linear(d, heads * d_kv, bias=False) for _ in range(3))
        self.o = nn.Linear(heads * d_kv, d, bias=False)
        if relative:
            self.relative_attention_bias = nn.Embedding(32, heads)


class T5Layer(nn.Module):
    def __init__(self, d, heads, d_kv, d_ff, relative):
        super().__init__()
        self.layer = nn.ModuleList([nn.Module(), nn.Module()])
        self.layer[0].SelfAttention = T5Attention(d, heads, d_kv, relative)
        self.layer[0].layer_norm = nn.RMSNorm(d)
        self.layer[1].DenseReluDense = nn.Module()
        self.layer[1].DenseReluDense.wi = nn.Linear(d, d_ff, bias=False)
        self.layer[1].DenseReluDense.wo = nn.Linear(d_ff, d, bias=False)


def test_t5_per_parameter_stds():
    d, heads, d_kv, d_ff, factor = 64, 4, 8, 256, 0.5
    model = nn.Module()
    model.shared = nn.Embedding(VOCAB, d)
    model.block = nn.ModuleList([T5Layer(d, heads, d_kv, d_ff, i == 0) for i in range(2)])
    model.lm_head = nn.Linear(d, VOCAB, bias=False)
    plan = wi.init(model, "t5", factor=factor, seed=0)
    p = dict(model.named_parameters())
    att = "block.{}.layer.0.SelfAttention."
    assert_std(gathered(model, blocks(att + "q.weight", 2)), factor * (d * d_kv) ** -0.5, "q")
    kv = blocks(att + "k.weight", 2) + blocks(att + "v.weight", 2)
    assert_std(gathered(model, kv), factor * d**-0.5, "k, v")
    assert_std(gathered(model, blocks(att + "o.weight", 2)), factor * (heads * d_kv) ** -0.5)
    wi_ = blocks("block.{}.layer.1.DenseReluDense.wi.weight", 2)
    assert_std(gathered(model, wi_), factor * d**-0.5, "wi")
    wo = blocks("block.{}.layer.1.DenseReluDense.wo.weight", 2)
    assert_std(gathered(model, wo), factor * d_ff**-0.5, "wo")
    assert_std(p["shared.weight"], factor, "shared")
    assert_std(p["lm_head.weight"], factor, "lm_head")
    assert_std(p[att.format(0) + "relative_attention_bias.weight"], factor * d**-0.5, "relative")
    assert torch.equal(p["block.1.layer.0.layer_norm.weight"], torch.full((d,), factor))
    assert plan.notes["d_model"] == d and plan.notes["factor"] == factor


def test_t5_on_torch_attention_scales_the_q_slice_and_needs_the_head_dim():
    d, heads = 64, 4
    layer = nn.TransformerEncoderLayer(d, heads, 128)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    wi.init(model, "t5", seed=0)
    w = model.layers[0].self_attn.in_proj_weight
    assert_std(w[:d], (d * (d // heads)) ** -0.5, "q slice")
    assert_std(w[d:], d**-0.5, "k, v slices")
    own = nn.Module()
    own.layers = nn.ModuleList([nn.Module()])
    own.layers[0].attn = nn.Module()
    own.layers[0].attn.q = nn.Linear(d, d)
    with pytest.raises(ValueError, match="pass head_dim="):
        wi.plan(own, "t5")
    assert wi.plan(own, "t5", head_dim=16)["layers.0.attn.q.weight"].args["std"] == (d * 16) ** -0.5


class ViT(nn.Module):
    def __init__(self, d=64, depth=2, classes=10):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, d, 4, 4)
        self.blocks = nn.ModuleList()
        for _ in range(depth):
            block = nn.Module()
            block.norm1, block.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
            block.attn = nn.Module()
            block.attn.qkv, block.attn.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            block.mlp = nn.Module()
            block.mlp.fc1, block.mlp.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
            self.blocks.append(block)
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, classes)


def test_vit_jax():
    d = 64
    model = ViT(d)
    wi.init(model, "vit_jax", head_bias=-math.log(10), seed=0)
    qkv = model.blocks[0].attn.qkv.weight
    for k in range(3):  # Xavier uniform per projection: U(-sqrt(6 / 2d), sqrt(6 / 2d))
        part = qkv[k * d : (k + 1) * d]
        assert_std(part, math.sqrt(2 / (2 * d)), f"qkv slice {k}")
        assert part.abs().max() <= math.sqrt(6 / (2 * d))
    assert_std(model.blocks[1].mlp.fc1.weight, math.sqrt(2 / (5 * d)), "fc1")
    assert_std(model.blocks[1].attn.proj.weight, math.sqrt(1 / d), "proj")
    mlp_bias = torch.cat([model.blocks[i].mlp.fc1.bias for i in range(2)])
    assert_std(mlp_bias, 1e-6, "mlp bias")
    assert not model.blocks[0].attn.qkv.bias.any() and not model.head.weight.any()
    assert torch.allclose(model.head.bias, torch.full((10,), -math.log(10)))
    patch = model.patch_embed.proj.weight  # LeCun normal, truncated at 2 sigma, exact std
    assert_std(patch, 1 / math.sqrt(3 * 4 * 4), "patch")
    assert patch.abs().max() <= 2 / math.sqrt(48) / trunc_factor(2.0) * (1 + 1e-6)


# --- every preset on torch.nn modules -----------------------------------------------------------


@pytest.mark.parametrize("scheme", ["gpt2", "megatron", "bert", "torchtitan", "olmo", "t5",
                                    "vit_jax"])  # fmt: skip
def test_presets_on_torch_transformer_encoder(scheme):
    d, ff, layers = 64, 256, 3
    model = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(d, 4, ff), layers, enable_nested_tensor=False
    )
    wi.init(model, scheme, seed=0)
    t3 = trunc_factor(3.0)
    attn_out = {  # block i's out_proj, from each original's formula
        "gpt2": lambda i: 0.02 / math.sqrt(2 * layers),
        "megatron": lambda i: 0.02 / math.sqrt(2 * layers),
        "bert": lambda i: 0.02,
        "torchtitan": lambda i: 0.02 / math.sqrt(2 * (i + 1)),
        "olmo": lambda i: t3 / math.sqrt(2 * d * (i + 1)),
        "t5": lambda i: d**-0.5,
        "vit_jax": lambda i: math.sqrt(1 / d),
    }[scheme]
    mlp_out = {
        "gpt2": lambda i: 0.02 / math.sqrt(2 * layers),
        "megatron": lambda i: 0.02 / math.sqrt(2 * layers),
        "bert": lambda i: 0.02,
        "torchtitan": lambda i: 0.02 / math.sqrt(2 * (i + 1)),
        "olmo": lambda i: t3 / math.sqrt(2 * ff * (i + 1)),
        "t5": lambda i: ff**-0.5,
        "vit_jax": lambda i: math.sqrt(2 / (ff + d)),
    }[scheme]
    for i, block in enumerate(model.layers):
        assert_std(block.self_attn.out_proj.weight, attn_out(i), f"{scheme} out_proj {i}")
        assert_std(block.linear2.weight, mlp_out(i), f"{scheme} linear2 {i}")
        assert not block.linear2.bias.any() or scheme == "vit_jax"
        assert torch.equal(block.norm1.weight, torch.ones(d))


# --- T-Fixup --------------------------------------------------------------------------------------


class Seq2Seq(nn.Module):
    def __init__(self, d=64, enc=3, dec=2):
        super().__init__()
        self.src_embed, self.tgt_embed = nn.Embedding(VOCAB, d), nn.Embedding(VOCAB, d)
        self.transformer = nn.Transformer(d, 4, enc, dec, 2 * d, batch_first=True)
        self.head = nn.Linear(d, VOCAB)


def test_t_fixup_constants_on_torch_transformer():
    d, enc, dec = 64, 3, 2
    model = Seq2Seq(d, enc, dec)
    plan = wi.init(model, "t-fixup", seed=0)
    c_enc, c_dec = 0.67 * enc**-0.25, (9 * dec) ** -0.25
    xavier = math.sqrt(2 / (d + d))  # one d x d projection
    for stack, c in (("encoder", c_enc), ("decoder", c_dec)):
        layers = getattr(model.transformer, stack).layers
        attentions = [b.self_attn for b in layers]
        if stack == "decoder":
            attentions += [b.multihead_attn for b in layers]  # cross-attention scaled alike
        qk = torch.cat([a.in_proj_weight[: 2 * d] for a in attentions])
        v = torch.cat([a.in_proj_weight[2 * d :] for a in attentions])
        assert_std(qk, xavier, f"{stack} q, k: plain Xavier")
        assert_std(v, c * xavier, f"{stack} v slice")
        out = torch.cat([a.out_proj.weight.flatten() for a in attentions])
        assert_std(out, c * xavier, f"{stack} out_proj")
        mlp = torch.cat([b.linear1.weight.flatten() for b in layers] +
                        [b.linear2.weight.flatten() for b in layers])  # fmt: skip
        assert_std(mlp, c * math.sqrt(2 / (d + 2 * d)), f"{stack} MLP")
    assert_std(model.src_embed.weight, d**-0.5 * (9 * enc) ** -0.25, "source embedding")
    assert_std(model.tgt_embed.weight, d**-0.5 * (9 * dec) ** -0.25, "target embedding")
    assert plan.notes["t_fixup"]["transformer.encoder.layers"]["N"] == enc
    assert plan.notes["t_fixup"]["transformer.decoder.layers"]["scale"] == pytest.approx(c_dec)
    assert plan.notes["t_fixup"]["transformer.encoder.layers"]["scale"] == pytest.approx(c_enc)


# --- training without LayerNorm and without warm-up ------------------------------------------------


class NoNormEncoder(nn.Module):
    """Embeddings and post-norm encoder blocks whose norms are removed, a linear head."""

    def __init__(self, vocab=16, length=8, d=32, layers=6):
        super().__init__()
        self.embed_tokens, self.embed_positions = nn.Embedding(vocab, d), nn.Embedding(length, d)
        self.layers = nn.ModuleList()
        for _ in range(layers):
            block = nn.TransformerEncoderLayer(d, 2, 2 * d, dropout=0.0, batch_first=True)
            block.norm1, block.norm2 = nn.Identity(), nn.Identity()
            self.layers.append(block)
        self.head = nn.Linear(d, vocab)

    def forward(self, tokens):
        x = self.embed_tokens(tokens) * math.sqrt(self.embed_tokens.embedding_dim)  # fairseq
        x = x + self.embed_positions(torch.arange(tokens.shape[1]))
        for block in self.layers:
            x = block(x)
        return self.head(x)


def reverse_task_loss(scheme, steps=150, lr=3e-3, seed=0, **options):
    """Final loss of Adam at a fixed learning rate (no warm-up) on reversing 8 tokens."""
    torch.manual_seed(seed)
    model = NoNormEncoder()
    wi.init(model, scheme, seed=seed, **options)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    data = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        x = torch.randint(0, 16, (32, 8), generator=data)
        loss = nn.functional.cross_entropy(model(x).reshape(-1, 16), x.flip(1).reshape(-1))
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    return sum(losses[-10:]) / 10  # the last ten steps


def test_t_fixup_trains_without_layernorm_or_warmup_where_xavier_does_not():
    torch.set_num_threads(1)
    chance = math.log(16)
    tfixup = reverse_task_loss("t-fixup")
    xavier = reverse_task_loss("glorot", embedding_std=32**-0.5)  # the paper's baseline
    assert tfixup < 0.1 * chance, tfixup  # learned to reverse
    assert not xavier < 0.7 * chance, xavier  # NaN/inf or hardly below chance (2.77)


def test_t_fixup_on_user_blocks_and_packed_linear_qkv():
    d, n = 64, 4
    model = GPT(d, n)  # GPT-2 blocks: no cross-attention, so the encoder constant
    wi.init(model, "t-fixup", seed=0)
    c = 0.67 * n**-0.25
    qkv = gathered(model, blocks("transformer.h.{}.attn.c_attn.weight", n)).view(n, 3 * d, d)
    assert_std(qkv[:, : 2 * d], math.sqrt(1 / d), "q, k of c_attn: Xavier per projection")
    assert_std(qkv[:, 2 * d :], c * math.sqrt(1 / d), "v of c_attn")
    assert_std(gathered(model, blocks("transformer.h.{}.mlp.c_fc.weight", n)),
               c * math.sqrt(2 / (5 * d)), "c_fc")  # fmt: skip
    assert_std(model.transformer.wte.weight, d**-0.5 * (9 * n) ** -0.25, "wte")

    own = nn.Module()
    own.blocks = nn.ModuleList([OwnBlock(d) for _ in range(3)])
    roles = {"*.mix": "attn_out", "*.expand": "mlp_in", "*.squeeze": "mlp_out"}
    wi.init(own, "t-fixup", roles=roles, seed=0)
    c = 0.67 * 3**-0.25
    for name in ("to_v", "mix", "expand", "squeeze"):
        w = torch.cat([getattr(b, name).weight.flatten() for b in own.blocks])
        assert_std(w, c * math.sqrt(1 / d), name)
    plan = wi.plan(own, "t-fixup", roles=roles, n_layers=12)
    assert plan.notes["t_fixup"]["blocks"]["N"] == 12


def test_packed_variance_scaling_needs_a_scale_per_projection():
    with pytest.raises(ValueError, match="3 packed projections"):
        wi.packed_variance_scaling_(torch.empty(10, 4), [1.0, 1.0, 1.0])
    mha = nn.MultiheadAttention(8, 2)
    with pytest.raises(ValueError, match="`scales` has 2 entries but the layout has 3 blocks"):
        wi.packed_variance_scaling_(mha.in_proj_weight, [1.0, 1.0], layout=(mha, "in_proj_weight"))


def test_parameters_without_a_transformer_role_follow_the_shared_options():
    model = nn.Module()
    model.rnn, model.act = nn.LSTM(4, 8), nn.PReLU()
    with pytest.warns(UserWarning, match="no parameter of Module has a Transformer role"):
        plan = wi.plan(model, "gpt2", forget_bias=2.0)
    assert plan["rnn.weight_hh_l0"].init == "orthogonal"
    assert plan["rnn.bias_ih_l0"].args["values"] == [0.0, 2.0, 0.0, 0.0]  # gates i, f, g, o
    assert plan["rnn.weight_ih_l0"].args == {"std": 0.02}  # a weight: the preset's own
    assert plan["act.weight"].args == {"val": 0.25}  # torch's PReLU slope
    assert plan["rnn.bias_hh_l0"].reason.startswith("no Transformer role")


def test_a_model_without_transformer_roles_is_an_error_for_t_fixup_and_a_warning_otherwise():
    mlp = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    with pytest.raises(ValueError, match=r"no parameter of Sequential has a Transformer role"):
        wi.plan(mlp, "t-fixup")
    with pytest.warns(UserWarning, match=r"gpt2: no parameter .* roles=\{") as caught:
        plan = wi.plan(mlp, "gpt2")
    assert caught[0].filename == __file__  # points at the caller
    assert all(r.std == 0.02 for r in plan if r.role == "weight")
    with pytest.raises(ValueError, match="scheme 'megatron': option `std`"):
        wi.plan(mlp, "megatron", std=-1.0)


# --- where the blocks are: Megatron-core names, Sequential stacks, no stack ----------------------


class MegatronCoreLayer(nn.Module):
    """Names as in Megatron-core's TransformerLayer (self_attention.linear_qkv, ...)."""

    def __init__(self, d):
        super().__init__()
        self.input_layernorm, self.pre_mlp_layernorm = nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attention = nn.Module()
        self.self_attention.linear_qkv = nn.Linear(d, 3 * d)
        self.self_attention.linear_proj = nn.Linear(d, d)
        self.mlp = nn.Module()
        self.mlp.linear_fc1, self.mlp.linear_fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)


def test_megatron_core_names_get_roles_and_the_scaled_output_init():
    model = nn.Module()
    model.embedding = nn.Module()
    model.embedding.word_embeddings = nn.Embedding(VOCAB, D)
    model.decoder = nn.Module()
    model.decoder.layers = nn.ModuleList([MegatronCoreLayer(D) for _ in range(L)])
    model.output_layer = nn.Linear(D, VOCAB, bias=False)
    found = transformer_roles(model)
    layer = "decoder.layers.2."
    assert [found[layer + n].role for n in ("self_attention.linear_qkv.weight",
            "self_attention.linear_proj.weight", "mlp.linear_fc1.weight",
            "mlp.linear_fc2.weight")] == ["qkv", "attn_out", "mlp_in", "mlp_out"]  # fmt: skip
    assert found["output_layer.weight"].role == "head"
    std = 0.01
    wi.init(model, "megatron", std=std, seed=0)
    out = blocks("decoder.layers.{}.self_attention.linear_proj.weight")
    out += blocks("decoder.layers.{}.mlp.linear_fc2.weight")
    assert_std(gathered(model, out), std / math.sqrt(2 * L), "linear_proj, linear_fc2")
    rest = blocks("decoder.layers.{}.self_attention.linear_qkv.weight")
    rest += blocks("decoder.layers.{}.mlp.linear_fc1.weight") + ["output_layer.weight"]
    assert_std(gathered(model, rest), std, "linear_qkv, linear_fc1, output_layer")


class TorchvisionBlock(nn.Module):
    """torchvision's ViT EncoderBlock: an MHA and an MLPBlock (a Sequential numbered 0..4)."""

    def __init__(self, d):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attention = nn.MultiheadAttention(d, 4, batch_first=True)
        self.mlp = nn.Sequential(
            nn.Linear(d, 4 * d), nn.GELU(), nn.Dropout(0.0), nn.Linear(4 * d, d), nn.Dropout(0.0)
        )


def test_blocks_in_a_sequential_are_a_stack_and_a_sequential_mlp_is_not():
    from collections import OrderedDict

    timm = ViT(D, depth=L)
    timm.blocks = nn.Sequential(*timm.blocks)  # timm holds its blocks in an nn.Sequential
    tv = nn.Module()
    tv.encoder = nn.Module()
    tv.encoder.layers = nn.Sequential(
        OrderedDict((f"encoder_layer_{i}", TorchvisionBlock(D)) for i in range(L))
    )
    found = transformer_roles(tv)
    assert (
        found["encoder.layers.encoder_layer_2.mlp.3.weight"]
        == found["encoder.layers.encoder_layer_2.mlp.3.bias"]
    )
    r = found["encoder.layers.encoder_layer_2.mlp.3.weight"]
    assert (r.role, r.layer, r.stack) == ("mlp_out", 2, "encoder.layers")
    assert found["encoder.layers.encoder_layer_0.mlp.0.weight"].role == "mlp_in"
    for model, out in [
        (timm, blocks("blocks.{}.attn.proj.weight") + blocks("blocks.{}.mlp.fc2.weight")),
        (tv, blocks("encoder.layers.encoder_layer_{}.mlp.3.weight")
         + blocks("encoder.layers.encoder_layer_{}.self_attention.out_proj.weight")),
    ]:  # fmt: skip
        plan = wi.init(model, "gpt2", seed=0)
        assert list(plan.notes["layers"].values()) == [L]
        assert_std(gathered(model, out), 0.02 / math.sqrt(2 * L), type(model).__name__)
        tfixup = wi.plan(model, "t-fixup").notes["t_fixup"]
        assert [s["scale"] for s in tfixup.values()] == [pytest.approx(0.67 * L**-0.25)]


def test_residual_outputs_outside_every_stack_warn_for_the_depth_scaled_presets():
    model = nn.Module()
    model.wte, model.block = nn.Embedding(VOCAB, D), Block(D)  # one block, in no list
    for scheme in ("gpt2", "megatron", "torchtitan", "olmo", "t-fixup"):
        with pytest.warns(UserWarning, match=r"2 residual output projection\(s\) \(block.attn"):
            wi.plan(model, scheme)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wi.plan(model, "bert")  # no depth in BERT's rule: nothing to warn about
        wi.plan(GPT(), "gpt2")  # blocks in a ModuleList
        # n_layers= gives the depth, which is all these rules need (0.02 / sqrt(2 x 3))
        for scheme in ("gpt2", "megatron"):
            plan = wi.plan(model, scheme, n_layers=3)
            assert plan["block.attn.c_proj.weight"].std == pytest.approx(0.02 / math.sqrt(6))
        wi.plan(model, "torchtitan", n_layers=3, depth_init=False)
    # torchtitan's depth_init scales by each block's index, which n_layers= does not give
    with pytest.warns(UserWarning, match=r"2 residual output projection\(s\) .* ModuleList$"):
        wi.plan(model, "torchtitan", n_layers=3)


def test_t5_width_comes_from_the_token_embedding_whatever_the_order():
    d, heads, d_kv, factor = 64, 4, 8, 1.0
    model = nn.Module()
    model.block = nn.ModuleList([T5Layer(d, heads, d_kv, 128, i == 0) for i in range(2)])
    model.shared = nn.Embedding(VOCAB, d)  # after the relative position bias (dim: heads)
    model.classifier = nn.Linear(d, 16)  # T5ForTokenClassification: N(0, factor^2), as lm_head
    plan = wi.init(model, "t5", seed=0)
    assert plan.notes["d_model"] == d
    assert_std(model.classifier.weight, factor, "classifier")
    relative = model.block[0].layer[0].SelfAttention.relative_attention_bias.weight
    assert_std(relative, factor * d**-0.5, "relative")


class Conv1D(nn.Module):
    """Hugging Face's Conv1D (transformers.pytorch_utils): a Linear stored as (in, out)."""

    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        return x @ self.weight + self.bias


def test_hugging_face_gpt2_conv1d_weights_are_transposed_linears():
    model = GPT()
    for block in model.transformer.h:  # HF GPT-2: the same names, Conv1D modules
        block.attn.c_attn, block.attn.c_proj = Conv1D(3 * D, D), Conv1D(D, D)
        block.mlp.c_fc, block.mlp.c_proj = Conv1D(4 * D, D), Conv1D(D, 4 * D)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no unknown module
        plan = wi.init(model, "gpt2", seed=0)
    row = plan["transformer.h.0.mlp.c_proj.weight"]
    assert (row.fan_in, row.fan_out) == (4 * D, D)
    out = blocks("transformer.h.{}.attn.c_proj.weight") + blocks(
        "transformer.h.{}.mlp.c_proj.weight"
    )
    assert_std(gathered(model, out), 0.02 / math.sqrt(2 * L), "c_proj")
    assert not model.transformer.h[0].attn.c_attn.bias.any()
    wi.init(model, "t-fixup", seed=0)  # v is the last third of c_attn's *columns*
    c_attn = torch.cat([b.attn.c_attn.weight for b in model.transformer.h])
    xavier = math.sqrt(2 / (2 * D))  # each projection D -> D
    assert_std(c_attn[:, : 2 * D], xavier, "q, k columns")
    assert_std(c_attn[:, 2 * D :], xavier * 0.67 * L**-0.25, "v columns")
