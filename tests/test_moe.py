"""Mixtures of experts: Hugging Face's 3-D expert tensors and routers (issue 13).

The modules below carry the exact class and parameter names and shapes of transformers 5's
Mixtral (``MixtralExperts``: gate_up_proj (E, 2I, H), down_proj (E, H, I); ``MixtralTopKRouter``:
weight (E, H)) and Qwen2-MoE (a shared expert and its sigmoid gate), so that the lookup by class
name sees what it sees in a real model; their forward computes every expert densely (fx can
trace it) with the same arithmetic as HF's: F.linear(x, gate_up_proj[e]).chunk(2, -1).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import var_tolerance
from scipy import integrate, stats
from torch import nn

import weightinit as wi
from weightinit.initializers.layout import geometry
from weightinit.recipes import transformer_roles
from weightinit.understanding.knowledge import Kinds, describe

E, H, I, L = 4, 64, 48, 2  # experts, hidden, intermediate, blocks


class MixtralExperts(nn.Module):
    def __init__(self, experts: int = E, hidden: int = H, inter: int = I) -> None:
        super().__init__()
        self.gate_up_proj = nn.Parameter(torch.empty(experts, 2 * inter, hidden))
        self.down_proj = nn.Parameter(torch.empty(experts, hidden, inter))

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        gate, up = torch.einsum("...h,eih->...ei", x, self.gate_up_proj).chunk(2, dim=-1)
        h = torch.einsum("...ei,ehi->...eh", F.silu(gate) * up, self.down_proj)
        return (h * weights[..., None]).sum(-2)


class MixtralTopKRouter(nn.Module):
    def __init__(self, experts: int = E, hidden: int = H) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(experts, hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight).softmax(-1)


class Qwen2MoeMLP(nn.Module):
    def __init__(self, hidden: int = H, inter: int = 40) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, inter, bias=False)
        self.up_proj = nn.Linear(hidden, inter, bias=False)
        self.down_proj = nn.Linear(inter, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class MixtralSparseMoeBlock(nn.Module):
    def __init__(self, shared: bool = False) -> None:
        super().__init__()
        self.gate = MixtralTopKRouter()
        self.experts = MixtralExperts()
        if shared:  # Qwen2MoeSparseMoeBlock
            self.shared_expert = Qwen2MoeMLP()
            self.shared_expert_gate = nn.Linear(H, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.experts(x, self.gate(x))
        if hasattr(self, "shared_expert"):
            out = out + torch.sigmoid(self.shared_expert_gate(x)) * self.shared_expert(x)
        return out


class MixtralRMSNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(H))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)


class MixtralAttention(nn.Module):  # no attention mixing: only the projections matter here
    def __init__(self) -> None:
        super().__init__()
        self.q_proj = nn.Linear(H, H, bias=False)
        self.k_proj = nn.Linear(H, H, bias=False)
        self.v_proj = nn.Linear(H, H, bias=False)
        self.o_proj = nn.Linear(H, H, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.o_proj(self.v_proj(x) + 0 * (self.q_proj(x) * self.k_proj(x)))


class MixtralDecoderLayer(nn.Module):
    def __init__(self, shared: bool) -> None:
        super().__init__()
        self.self_attn = MixtralAttention()
        self.mlp = MixtralSparseMoeBlock(shared)
        self.input_layernorm = MixtralRMSNorm()
        self.post_attention_layernorm = MixtralRMSNorm()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x))
        return x + self.mlp(self.post_attention_layernorm(x))


class MixtralModel(nn.Module):
    def __init__(self, shared: bool = False) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(32, H)
        self.layers = nn.ModuleList(MixtralDecoderLayer(shared) for _ in range(L))
        self.norm = MixtralRMSNorm()
        self.lm_head = nn.Linear(H, 32, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed_tokens(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.norm(x))


def _halves(w: torch.Tensor) -> list[tuple[int, str, torch.Tensor]]:
    """(expert, "gate" / "up", matrix) of a gate_up_proj (E, 2I, H)."""
    return [
        (e, h, w[e, k * I : (k + 1) * I]) for e in range(E) for k, h in enumerate(("gate", "up"))
    ]


def _close(tensor: torch.Tensor, std: float) -> None:
    n = tensor.numel()
    var = tensor.double().pow(2).mean().item()  # mean 0: E[x^2] is the variance
    assert abs(var - std**2) <= var_tolerance(std**2, n), (math.sqrt(var), std, n)


# --- layouts and fans ---------------------------------------------------------------------------


def test_expert_fans_are_per_expert_and_per_half():
    experts = MixtralExperts()
    # one expert's gate (or up) projection: H inputs, I outputs
    assert wi.fans(experts.gate_up_proj, (experts, "gate_up_proj")) == (H, I)
    assert wi.fans(experts.down_proj, (experts, "down_proj")) == (I, H)
    g = geometry(experts.gate_up_proj, (experts, "gate_up_proj"))
    assert g.block_shape == (2 * E, I, H)
    values = torch.randn(E, 2 * I, H)
    blocks = g.to_blocks(values)
    for e in range(E):  # expert-major: block 2e is expert e's gate half, 2e + 1 its up half
        assert torch.equal(blocks[2 * e], values[e, :I])
        assert torch.equal(blocks[2 * e + 1], values[e, I:])
    assert torch.equal(g.from_blocks(blocks), values)
    assert geometry(experts.down_proj, (experts, "down_proj")).block_shape == (E, H, I)
    router = MixtralTopKRouter()
    assert wi.fans(router.weight, (router, "weight")) == (H, E)
    assert describe(experts, "gate_up_proj").kind == Kinds.EXPERTS


def test_transposed_experts_llama4_layout():
    class Llama4TextExperts(nn.Module):  # (E, H, 2I) and (E, I, H), x @ W
        def __init__(self) -> None:
            super().__init__()
            self.gate_up_proj = nn.Parameter(torch.empty(E, H, 2 * I))
            self.down_proj = nn.Parameter(torch.empty(E, I, H))

    experts = Llama4TextExperts()
    assert wi.fans(experts.gate_up_proj, (experts, "gate_up_proj")) == (H, I)
    assert wi.fans(experts.down_proj, (experts, "down_proj")) == (I, H)
    g = geometry(experts.gate_up_proj, (experts, "gate_up_proj"))
    values = torch.randn(E, H, 2 * I)
    assert torch.equal(g.to_blocks(values)[3], values[1, :, I:].T)  # expert 1's up half


def test_experts_that_do_not_fit_stay_unknown():
    class GptOssExperts(nn.Module):  # its own _apply_gate: gate and up interleaved
        def __init__(self) -> None:
            super().__init__()
            self.gate_up_proj = nn.Parameter(torch.empty(E, 2 * I, H))
            self.down_proj = nn.Parameter(torch.empty(E, H, I))

        def _apply_gate(self, gate_up: torch.Tensor) -> torch.Tensor:
            return gate_up[..., ::2] * gate_up[..., 1::2]

    class OddExperts(nn.Module):  # shapes that are neither orientation
        def __init__(self) -> None:
            super().__init__()
            self.gate_up_proj = nn.Parameter(torch.empty(E, 2 * I, H))
            self.down_proj = nn.Parameter(torch.empty(E, H + 1, I))

    assert describe(GptOssExperts(), "gate_up_proj") is None
    assert describe(GptOssExperts(), "down_proj") is not None  # a plain (E, H, I) stack
    assert describe(OddExperts(), "gate_up_proj") is None
    assert describe(OddExperts(), "down_proj") is None


# --- roles --------------------------------------------------------------------------------------


def test_roles_of_experts_routers_and_shared_experts():
    found = transformer_roles(MixtralModel(shared=True))
    block = "layers.1.mlp."
    assert found[block + "experts.gate_up_proj"].role == "mlp_gate_up"
    assert found[block + "experts.down_proj"].role == "mlp_out"
    assert found[block + "experts.down_proj"].layer == 1
    assert found[block + "gate.weight"].role == "router"
    assert found[block + "shared_expert_gate.weight"].role == "router"
    assert found[block + "shared_expert.gate_proj.weight"].role == "mlp_in"
    assert found[block + "shared_expert.up_proj.weight"].role == "mlp_up"
    assert found[block + "shared_expert.down_proj.weight"].role == "mlp_out"


def test_router_roles_of_linear_gates():
    class Block(nn.Module):  # transformers 4's Mixtral: a Linear gate beside the experts
        def __init__(self) -> None:
            super().__init__()
            self.gate = nn.Linear(H, E, bias=False)
            self.experts = nn.ModuleList(Qwen2MoeMLP() for _ in range(2))

    class Router(nn.Module):  # torchtitan's TokenChoiceTopKRouter: router.gate
        def __init__(self) -> None:
            super().__init__()
            self.gate = nn.Linear(H, E, bias=False)

    class Moe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.router = Router()
            self.block = Block()
            self.glu = nn.Module()
            self.glu.gate = nn.Linear(H, H)  # a gate that routes nothing

    found = transformer_roles(Moe())
    assert found["router.gate.weight"].role == "router"
    assert found["block.gate.weight"].role == "router"
    assert found["block.experts.0.down_proj.weight"].role == "mlp_out"
    assert found["glu.gate.weight"].role is None


# --- the schemes --------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["he", "bert", "torchtitan", "gpt2", "olmo", "megatron"])
def test_every_parameter_is_initialized(scheme):
    torch.manual_seed(0)
    model = MixtralModel(shared=True)
    for p in model.parameters():
        nn.init.constant_(p, float("nan"))
    plan = wi.init(model, scheme, seed=0)
    assert [r.name for r in plan.rows if r.init == "skip"] == []
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert torch.isfinite(model(torch.randint(0, 32, (3, 5)))).all()


def test_he_per_expert_and_per_half():
    model = MixtralModel()
    plan = wi.init(model, "he", seed=0)
    block = model.layers[1].mlp.experts
    row = plan["layers.1.mlp.experts.gate_up_proj"]
    assert (row.fan_in, row.fan_out) == (H, I)
    # inside the experts silu(gate) * up, as a Llama MLP's gate_proj and up_proj: the gate
    # halves take SiLU's gain, gain^2 = 1 / E[silu(z)^2], z ~ N(0, 1) (quadrature here), the
    # up halves gain 1; fan_in = H per expert and half, not 2 I H
    second = integrate.quad(lambda z: (z / (1 + math.exp(-z))) ** 2 * stats.norm.pdf(z), -40, 40)
    assert row.init == "packed_variance_scaling" and row.args["mode"] == "fan_in"
    for _, half, values in _halves(block.gate_up_proj.detach()):
        _close(values, math.sqrt((1.0 / second[0] if half == "gate" else 1.0) / H))
    down = plan["layers.1.mlp.experts.down_proj"]
    assert (down.fan_in, down.fan_out) == (I, H)
    for e in range(E):
        _close(block.down_proj.detach()[e], math.sqrt(1.0 / I))


def test_torchtitan_moe_matches_its_init_weights():
    model = MixtralModel(shared=True)
    plan = wi.init(model, "torchtitan", seed=0)
    for layer in range(L):
        init_std = 0.02 / math.sqrt(2 * (layer + 1))  # weight_init_std with depth_init
        mlp = model.layers[layer].mlp
        prefix = f"layers.{layer}.mlp."
        for _, half, w in _halves(mlp.experts.gate_up_proj.detach()):
            _close(w, 0.02 if half == "gate" else init_std)  # w1: 0.02; w3: init_std
        for e in range(E):
            _close(mlp.experts.down_proj.detach()[e], init_std)  # w2: init_std
        assert plan[prefix + "experts.down_proj"].args["std"] == pytest.approx(init_std)
        assert plan[prefix + "gate.weight"].args["std"] == pytest.approx(init_std)
        assert plan[prefix + "shared_expert_gate.weight"].args["std"] == pytest.approx(init_std)
        assert plan[prefix + "shared_expert.gate_proj.weight"].args["std"] == 0.02
        assert plan[prefix + "shared_expert.up_proj.weight"].args["std"] == pytest.approx(init_std)
        assert plan[prefix + "shared_expert.down_proj.weight"].args["std"] == pytest.approx(
            init_std
        )
        scales = plan[prefix + "experts.gate_up_proj"].args["scales"]
        stds = [math.sqrt(s / H) for s in scales]
        assert stds == pytest.approx([0.02, init_std] * E)


def test_gpt2_and_bert_std_and_residual_scaling():
    model = MixtralModel()
    wi.init(model, "gpt2", seed=0)
    out = 0.02 / math.sqrt(2 * L)
    for layer in model.layers:
        for _, _, w in _halves(layer.mlp.experts.gate_up_proj.detach()):
            _close(w, 0.02)
        for e in range(E):
            _close(layer.mlp.experts.down_proj.detach()[e], out)
    plan = wi.plan(model, "gpt2")
    assert plan["layers.0.mlp.gate.weight"].args == {"std": 0.02}
    bert = wi.plan(model, "bert")
    for name in ("experts.gate_up_proj", "experts.down_proj", "gate.weight"):
        assert bert[f"layers.1.mlp.{name}"].args == {"std": 0.02}


def test_olmo_expert_output_uses_the_expert_fan():
    plan = wi.plan(MixtralModel(), "olmo")
    for layer in range(L):
        row = plan[f"layers.{layer}.mlp.experts.down_proj"]
        assert row.args["std"] == pytest.approx((2 * I * (layer + 1)) ** -0.5)
        assert plan[f"layers.{layer}.mlp.experts.gate_up_proj"].args["std"] == pytest.approx(
            H**-0.5
        )
