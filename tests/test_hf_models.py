"""Real Hugging Face models, built from tiny configs (random weights, nothing downloaded), under
every scheme: every parameter initialized (no skip rows but tied and frozen ones), finite
outputs, ties kept; and the presets against each model's own ``_init_weights``, parameter
group by parameter group.

The reference of the preset tests is the model itself: transformers builds a model from a
config with its own ``_init_weights`` (``post_init``), so a freshly built model holds the
reference's draw; the test pools its groups over seeds and compares standard deviations
within a few standard errors of both samples.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable

import pytest
import torch
import transformers as hf
from torch import nn

import weightinit as wi
from weightinit.plans.plan import SKIP
from weightinit.understanding.graph import leaves

V = 99  # vocabulary
GEN = torch.Generator().manual_seed(0)
IDS = torch.randint(3, V, (2, 8), generator=GEN)
PIXELS = torch.randn(2, 3, 32, 32, generator=GEN)
WAVE = torch.randn(2, 400, generator=GEN)
MELS = torch.randn(2, 8, 32, generator=GEN)  # Whisper: 2 x max_source_positions frames
ATTENTION = {"num_attention_heads": 4, "num_key_value_heads": 2}
# a text or vision tower of the two-tower models (CLIP, SigLIP)
TOWER = {
    "hidden_size": 32,
    "intermediate_size": 48,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
}


def _decoder(cls, config_cls, **extra) -> Callable[[], nn.Module]:
    config = dict(
        hidden_size=32, intermediate_size=48, num_hidden_layers=2, vocab_size=V,
        max_position_embeddings=32, **ATTENTION, **extra,
    )  # fmt: skip
    return lambda: cls(config_cls(**config))


# name -> (build, inputs as keyword arguments)
MODELS: dict[str, tuple[Callable[[], nn.Module], dict]] = {
    "gpt2": (
        lambda: hf.GPT2LMHeadModel(
            hf.GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=V, n_positions=32)
        ),
        {"input_ids": IDS},
    ),
    "bert": (
        lambda: hf.BertForMaskedLM(
            hf.BertConfig(
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=48,
                vocab_size=V,
                max_position_embeddings=32,
            )
        ),
        {"input_ids": IDS},
    ),
    "distilbert": (
        lambda: hf.DistilBertForMaskedLM(
            hf.DistilBertConfig(
                dim=32,
                n_layers=2,
                n_heads=2,
                hidden_dim=48,
                vocab_size=V,
                max_position_embeddings=32,
            )
        ),
        {"input_ids": IDS},
    ),
    "t5": (
        lambda: hf.T5ForConditionalGeneration(
            hf.T5Config(
                d_model=32,
                d_kv=8,
                d_ff=48,
                num_layers=2,
                num_heads=4,
                vocab_size=V,
                decoder_start_token_id=0,
            )
        ),
        {"input_ids": IDS, "decoder_input_ids": IDS},
    ),
    "llama": (_decoder(hf.LlamaForCausalLM, hf.LlamaConfig), {"input_ids": IDS}),
    "qwen2": (
        _decoder(hf.Qwen2ForCausalLM, hf.Qwen2Config, tie_word_embeddings=True),
        {"input_ids": IDS},
    ),
    "mistral": (_decoder(hf.MistralForCausalLM, hf.MistralConfig), {"input_ids": IDS}),
    "mixtral": (
        _decoder(hf.MixtralForCausalLM, hf.MixtralConfig, num_local_experts=4),
        {"input_ids": IDS},
    ),
    "clip": (
        lambda: hf.CLIPModel(
            hf.CLIPConfig(
                text_config=TOWER | {"vocab_size": V, "max_position_embeddings": 16},
                vision_config=TOWER | {"image_size": 32, "patch_size": 8},
                projection_dim=16,
            )
        ),
        {"input_ids": IDS, "pixel_values": PIXELS},
    ),
    "wav2vec2": (
        lambda: hf.Wav2Vec2ForCTC(
            hf.Wav2Vec2Config(
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=48,
                conv_dim=(16, 16),
                conv_stride=(5, 2),
                conv_kernel=(10, 3),
                num_conv_pos_embeddings=16,
                num_conv_pos_embedding_groups=2,
                vocab_size=20,
            )
        ),
        {"input_values": WAVE},
    ),
    "whisper": (
        lambda: hf.WhisperForConditionalGeneration(
            hf.WhisperConfig(
                d_model=32,
                encoder_layers=2,
                decoder_layers=2,
                encoder_attention_heads=2,
                decoder_attention_heads=2,
                encoder_ffn_dim=48,
                decoder_ffn_dim=48,
                vocab_size=V,
                num_mel_bins=8,
                max_source_positions=16,
                max_target_positions=16,
                pad_token_id=0,
                bos_token_id=1,
                eos_token_id=2,
                decoder_start_token_id=1,
            )
        ),
        {"input_features": MELS, "decoder_input_ids": IDS},
    ),
    "qwen2_moe": (
        _decoder(
            hf.Qwen2MoeForCausalLM,
            hf.Qwen2MoeConfig,
            num_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=32,
            shared_expert_intermediate_size=48,
        ),
        {"input_ids": IDS},
    ),
    "siglip": (
        lambda: hf.SiglipModel(
            hf.SiglipConfig(
                text_config=TOWER | {"vocab_size": V, "max_position_embeddings": 16},
                vision_config=TOWER | {"image_size": 32, "patch_size": 8},
            )
        ),
        {"input_ids": IDS, "pixel_values": PIXELS},
    ),
    "swin": (
        lambda: hf.SwinForImageClassification(
            hf.SwinConfig(
                image_size=32,
                patch_size=4,
                embed_dim=16,
                depths=[1, 1],
                num_heads=[2, 2],
                window_size=4,
            )
        ),
        {"pixel_values": PIXELS},
    ),
}

#: schemes that need parameters the model does not have: they say what to add
NEEDS_GAINS = {"skipinit", "rezero"}
#: schemes that cannot run on a model, and say why: Qwen2-MoE gates its shared expert with
#: a sigmoid, which has no critical point at the default q*
CANNOT = {("qwen2_moe", "critical"): r"shared_expert_gate.*no critical point.*try q_star="}
#: skip rows a real model may have, by the start of their reason (docs/models.md)
DOCUMENTED_SKIPS = ("tied to ", "frozen (requires_grad=False)")


def build(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MODELS[name][0]().eval()


def initialize(model: nn.Module, scheme: str, inputs: dict, seed: int = 0) -> wi.Plan:
    given = {"data": inputs} if scheme == "lsuv" else {"example_input": inputs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # selu's note on plain Dropout, fan notes
        return wi.init(model, scheme, seed=seed, **given)


def finite_outputs(model: nn.Module, inputs: dict) -> bool:
    with torch.no_grad():
        out = model(**inputs)
    floats = [t for t in leaves(dict(out), torch.Tensor) if t.is_floating_point()]
    return bool(floats) and all(torch.isfinite(t).all() for t in floats)


def ties(model: nn.Module) -> list[set[str]]:
    names: dict[int, set[str]] = {}
    for n, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), set()).add(n)
    return sorted((s for s in names.values() if len(s) > 1), key=sorted)


CONSTANTS = {"zeros": 0.0, "ones": 1.0}


@pytest.mark.parametrize("name", MODELS)
def test_every_scheme_initializes_every_parameter(name):
    """Every parameter is written (a random draw changes it; a constant sets it), or its row
    is a documented skip; the model's outputs stay finite; tied parameters stay tied."""
    inputs = MODELS[name][1]
    for scheme in wi.schemes():
        model = build(name)
        tied = ties(model)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        if scheme in NEEDS_GAINS or (name, scheme) in CANNOT:
            why = CANNOT.get((name, scheme), "add_residual_gains")
            with pytest.raises(ValueError, match=why):
                initialize(model, scheme, inputs)
            assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
            continue
        plan = initialize(model, scheme, inputs)
        params = dict(model.named_parameters(remove_duplicate=False))
        assert {r.name for r in plan} == set(params), (name, scheme)
        for r in plan:
            where = (name, scheme, r.name, r.reason)
            if r.init == SKIP:
                assert r.reason.startswith(DOCUMENTED_SKIPS), where
                continue
            value = params[r.name].detach()
            assert torch.isfinite(value).all(), where
            if r.init in CONSTANTS and r.scale == 1.0 and r.shift == 0.0:
                assert torch.all(value == CONSTANTS[r.init]), where
            elif r.init in ("normal", "trunc_normal", "variance_scaling", "orthogonal"):
                assert not torch.equal(value, before[r.name]), where  # a fresh draw
        assert finite_outputs(model, inputs), (name, scheme)
        assert ties(model) == tied, (name, scheme)


# --- presets against the models' own _init_weights ----------------------------------------

PRESETS = [
    ("gpt2", "gpt2"),
    ("bert", "bert"),
    ("distilbert", "bert"),
    ("llama", "bert"),
    ("qwen2", "bert"),
    ("mistral", "bert"),
    ("mixtral", "bert"),
    ("t5", "t5"),
]
SEEDS = range(4)  # pooled: the small groups (norms, biases, routers) get enough elements


def groups(model: nn.Module) -> dict[str, list[torch.Tensor]]:
    """Each parameter under its name with the layer numbers replaced by '*' (tied ones once)."""
    out: dict[str, list[torch.Tensor]] = {}
    for n, p in model.named_parameters():
        out.setdefault(re.sub(r"\.\d+\.", ".*.", n), []).append(p.detach().double().flatten())
    return out


def pooled(name: str, make: Callable[[int], nn.Module]) -> dict[str, torch.Tensor]:
    out: dict[str, list[torch.Tensor]] = {}
    for seed in SEEDS:
        for key, tensors in groups(make(seed)).items():
            out.setdefault(key, []).extend(tensors)
    return {k: torch.cat(v) for k, v in out.items()}


@pytest.mark.parametrize(("name", "preset"), PRESETS)
def test_presets_match_the_models_own_init(name, preset):
    """Per parameter group: a constant where the model's own init writes one (norm scales 1,
    biases 0, HF's zero padding row), else the same standard deviation within 4 standard
    errors of the two pooled samples (SE of log s is about 1/sqrt(2n)) and mean within 4
    standard errors of 0."""
    inputs = MODELS[name][1]
    reference = pooled(name, lambda seed: build(name, seed))

    def ours(seed: int) -> nn.Module:
        model = build(name, seed + 100)  # not the reference's draw
        initialize(model, preset, inputs, seed=seed)
        return model

    mine = pooled(name, ours)
    assert mine.keys() == reference.keys()
    for key, ref in reference.items():
        got = mine[key]
        if torch.all(ref == ref[0]):
            assert torch.all(got == ref[0]), (name, preset, key, float(ref[0]))
            continue
        s_ref, s_got = ref.std().item(), got.std().item()
        se = math.sqrt(1 / (2 * ref.numel()) + 1 / (2 * got.numel()))
        assert abs(math.log(s_got / s_ref)) < 4 * se, (name, preset, key, s_got, s_ref)
        assert abs(got.mean().item()) < 4 * s_got / math.sqrt(got.numel()), (name, key)


@pytest.mark.parametrize("name", ["bert", "distilbert"])
def test_padding_rows_stay_zero_as_in_the_models_own_init(name):
    model = build(name)
    embedding = model.get_input_embeddings()
    assert embedding.padding_idx is not None
    assert torch.all(embedding.weight[embedding.padding_idx] == 0)  # the reference's
    initialize(model, "bert", MODELS[name][1])
    assert torch.all(embedding.weight[embedding.padding_idx] == 0)
    assert embedding.weight.detach().abs().sum(1).gt(0).sum() == embedding.num_embeddings - 1


# --- the patterns these models showed, in plain torch -------------------------------------


class PositionalConv(nn.Module):
    """Wav2Vec2's positional convolution: weight_norm over the kernel taps (dim=2), GELU,
    added to its input: a residual branch whose only layer is weight-normalized."""

    def __init__(self, dim: int = 2):
        super().__init__()
        conv = nn.Conv1d(8, 8, kernel_size=5, padding=2, groups=2)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=dim)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = x + nn.functional.gelu(self.conv(x))
        return self.head(x.mean(-1))


@pytest.mark.parametrize("dim", [0, 2])
@pytest.mark.parametrize("scheme", ["critical", "fixup", "zero", "he"])
def test_weight_norm_directions_are_never_zero(scheme, dim):
    """A zero v divides 0 by 0: a zeroed layer is g = 0 with v orthogonal; delta-orthogonal
    (all taps but the centre 0) under a per-tap norm (dim=2) becomes orthogonal, same gain."""
    model, x = (
        PositionalConv(dim),
        torch.randn(4, 8, 16, generator=torch.Generator().manual_seed(1)),
    )
    plan = initialize(model, scheme, x)
    weight = model.conv.weight.detach()
    assert torch.isfinite(weight).all() and torch.isfinite(model(x)).all()
    v = model.conv.parametrizations.weight.original1.detach()
    norms = torch.linalg.vector_norm(v, dim=[d for d in range(3) if d != dim])
    assert norms.min() > 0  # every slice has a direction
    zeroed = plan["conv.parametrizations.weight.original1"].reason.startswith(("Fixup", "ZerO"))
    assert zeroed == (scheme in ("fixup", "zero"))
    if zeroed:
        assert torch.all(weight == 0)  # the layer is still 0, through g
    elif scheme == "critical" and dim == 2:
        assert plan["conv.parametrizations.weight.original1"].init == "orthogonal"


class Contrastive(nn.Module):
    """CLIP's pattern: residual towers whose projections are divided by their own norm."""

    def __init__(self, how: str):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 8), nn.Linear(8, 8)
        self.projection = nn.Linear(8, 4, bias=False)
        self.how = how

    def forward(self, x):
        x = x + self.fc2(torch.relu(self.fc1(x)))
        y = self.projection(x)
        if self.how == "normalize":
            return nn.functional.normalize(y, dim=-1)
        if self.how == "divide":
            return y / torch.pow(torch.sum(torch.pow(y, 2), dim=-1, keepdim=True), 0.5)
        return y


@pytest.mark.parametrize("how", ["normalize", "divide", "logits"])
def test_fixup_zeroes_a_classifier_but_not_a_normalized_projection(how):
    model, x = Contrastive(how), torch.randn(16, 8, generator=torch.Generator().manual_seed(2))
    plan = initialize(model, "fixup", x)
    assert plan["fc2.weight"].init == "zeros"  # the branch's last layer, either way
    zeroed = bool(torch.all(model.projection.weight == 0))
    assert zeroed == (how == "logits"), plan["projection.weight"].reason
    assert plan.notes["classifier"] == ("projection" if how == "logits" else None)
    assert torch.isfinite(model(x)).all()


# --- an embedding tied to the output head -------------------------------------------------


def gpt2(width: int = 128) -> nn.Module:
    torch.manual_seed(0)
    config = hf.GPT2Config(n_embd=width, n_layer=2, n_head=2, vocab_size=V, n_positions=32)
    return hf.GPT2LMHeadModel(config).eval()


@pytest.mark.parametrize("scheme", ["he", "orthogonal", "lecun", "auto", "lsuv"])
def test_a_tied_embedding_starts_the_logits_at_unit_variance(scheme):
    """GPT-2 ties wte to lm_head. Drawn N(0, 1), the logits start at std sqrt(d) (11.3 at
    d = 128); N(0, 1/d) starts them at 1 on the unit-variance features of ln_f, and the
    embedding output (wte + wpe, both read back) at variance 2/d. The logits of one position
    are V = 99 draws that share one matrix: 4 standard errors of log std, sqrt(1/(2V))."""
    model, d = gpt2(), 128
    plan = initialize(model, scheme, {"input_ids": IDS})
    with torch.no_grad():
        out = model(input_ids=IDS, output_hidden_states=True)
    tolerance = 4 * math.sqrt(1 / (2 * V))
    assert abs(math.log(out.logits.std().item())) < tolerance, out.logits.std()
    embedded = out.hidden_states[0].std().item()  # wte + wpe of 16 tokens x d
    assert abs(math.log(embedded / math.sqrt(2 / d))) < 4 * math.sqrt(1 / (2 * IDS.numel())) + 0.1
    assert "output head lm_head.weight" in plan["transformer.wte.weight"].reason
    assert model.lm_head.weight is model.transformer.wte.weight


class TinyLM(nn.Module):
    """Token and position embeddings of width 16, a bias table of width 4, a tied head."""

    def __init__(self, tied: bool = True):
        super().__init__()
        self.tokens, self.positions = nn.Embedding(50, 16), nn.Embedding(8, 16)
        self.buckets = nn.Embedding(8, 4)
        self.head = nn.Linear(16, 50, bias=False)
        if tied:
            self.head.weight = self.tokens.weight

    def forward(self, ids):
        h = self.tokens(ids) + self.positions(torch.arange(ids.shape[1]))
        h = nn.functional.layer_norm(h, (16,))
        return self.head(h) + self.buckets(torch.arange(ids.shape[1])).sum(-1, keepdim=True)


def test_embeddings_read_back_by_a_head_and_the_others():
    ids = torch.randint(0, 50, (4, 8), generator=torch.Generator().manual_seed(3))
    plan = wi.plan(TinyLM(), "he", example_input=ids)
    assert plan["tokens.weight"].args == {"std": 16**-0.5}  # tied to the head
    assert plan["positions.weight"].args == {"std": 16**-0.5}  # added to it: its width
    assert "which is tied to head.weight" in plan["positions.weight"].reason
    assert plan["buckets.weight"].args == {"std": 1.0}  # another width: the embedding rule
    untied = wi.plan(TinyLM(tied=False), "he", example_input=ids)
    assert [untied[n].args["std"] for n in ("tokens.weight", "positions.weight")] == [1.0, 1.0]
    assert wi.plan(TinyLM(), "torch")["tokens.weight"].args == {"std": 1.0}  # as torch draws


def test_a_batch_the_model_cannot_take_is_a_clear_error_and_changes_nothing():
    """CLIP needs pixel_values too: the model raises AttributeError on None inside."""
    model = build("clip")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"lsuv: the model failed on `data` \(AttributeError"):
        initialize(model, "lsuv", {"input_ids": IDS})
    with pytest.raises(ValueError, match=r"failed on `example_input`.*vision_model.embeddings"):
        initialize(model, "auto", {"input_ids": IDS})
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_lsuv_calibrates_hugging_face_conv1d_layers():
    """GPT-2's projections are HF Conv1D (weight stored (in, out)): LSUV calibrates each, so
    every projection's output starts at unit std on the calibration batch (tol 0.05)."""
    model = build("gpt2")
    ids = torch.randint(3, V, (8, 16), generator=torch.Generator().manual_seed(4))
    plan = initialize(model, "lsuv", {"input_ids": ids})
    outputs = {}
    for name, module in model.named_modules():
        if type(module).__name__ == "Conv1D":
            module.register_forward_hook(lambda m, i, o, n=name: outputs.__setitem__(n, o.std()))
    with torch.no_grad():
        model(input_ids=ids)
    assert len(outputs) == 8
    assert all(abs(std.item() - 1) < 0.05 for std in outputs.values()), outputs
    assert all("LSUV gain" in plan[f"{n}.weight"].reason for n in outputs)


# --- built on the meta device, planned, materialized, applied -----------------------------


@pytest.mark.parametrize(("name", "preset"), [("llama", "bert"), ("qwen2", "he"), ("bert", "bert"),
                                              ("gpt2", "gpt2"), ("t5", "t5")])  # fmt: skip
def test_a_model_built_on_meta_equals_the_eager_one(name, preset):
    """from_config on the meta device, plan (no memory), to_empty, plan.apply: the same
    parameters, buffers and outputs as the model built and initialized eagerly with the same
    seed. to_empty unties the tied embedding (re-tied by apply, with a warning) and leaves the
    rotary frequencies and position ids uninitialized (rebuilt by the model's own
    _init_weights, which apply calls on the modules that hold them and no parameter)."""
    inputs = MODELS[name][1]
    eager = build(name)
    initialize(eager, preset, inputs)
    tied = ties(eager)
    with torch.device("meta"):
        lazy = build(name)
    plan = wi.plan(lazy, preset, seed=0)  # example_input or not, as initialize does: none
    lazy.to_empty(device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan.apply(lazy)
    said = " ".join(str(w.message) for w in caught)
    assert ties(lazy) == tied
    if tied:
        assert "tied again" in said
    assert "uninitialized" not in said and "no row" not in said, said
    for (n, a), (_, b) in zip(eager.state_dict().items(), lazy.state_dict().items()):
        assert torch.equal(a, b), n
    for (n, a), (_, b) in zip(eager.named_buffers(), lazy.named_buffers()):
        assert torch.equal(a, b), n
    with torch.no_grad():
        assert torch.equal(eager(**inputs).logits, lazy(**inputs).logits)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_lsuv_planned_on_meta_and_calibrated_after_to_empty_equals_the_eager_one(name):
    """The calibrating flow on meta: plan (analytic, awaiting calibration), to_empty,
    weightinit.calibrate, apply. Calibrate restores what to_empty undid first (GPT-2's tied
    head, with a warning; Llama's rotary frequencies), so the tied head is calibrated where
    the model uses it, on the logits: the same gains and weights as LSUV on the eager model."""
    inputs = MODELS[name][1]
    eager = build(name)
    want = initialize(eager, "lsuv", inputs)
    with torch.device("meta"):
        lazy = build(name)
    plan = wi.plan(lazy, "lsuv", seed=0)
    assert plan.pending_calibration
    lazy.to_empty(device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = wi.calibrate(plan, lazy, data=inputs)
    assert ("calibrate: lm_head.weight tied again" in " ".join(map(str, caught))) == bool(
        ties(eager)
    )
    assert [c["gain"] for c in plan.calibration] == [c["gain"] for c in want.calibration]
    plan.apply(lazy)
    assert ties(lazy) == ties(eager)
    for (n, a), (_, b) in zip(eager.state_dict().items(), lazy.state_dict().items()):
        assert torch.equal(a, b), n
