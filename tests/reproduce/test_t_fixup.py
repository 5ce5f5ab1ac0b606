"""9. T-Fixup: the scales the reproduction relies on, against the paper's formulas, and its task."""

import math

import pytest
import torch

from weightinit.reproduce.papers.t_fixup import LENGTH, VOCAB, NoNormEncoder, initialize, reversal

SCALED = ("self_attn.out_proj.weight", "linear1.weight", "linear2.weight")


def _xavier_std(shape: torch.Size) -> float:
    fan_out, fan_in = shape
    return math.sqrt(2.0 / (fan_in + fan_out))


@pytest.mark.parametrize("layers", [2, 6])
def test_t_fixup_scales_attention_output_and_mlp_by_067_n_to_minus_quarter(layers):
    model = NoNormEncoder(d=32, layers=layers)
    tfixup = initialize(model, "T-Fixup", seed=0)
    xavier = initialize(model, "Xavier", seed=0)
    expected = 0.67 * layers**-0.25  # Huang et al. 2020, encoder: 0.67 N^(-1/4)
    for block in range(layers):
        for name in SCALED:
            key = f"layers.{block}.{name}"
            shape = dict(model.named_parameters())[key].shape
            assert xavier[key].std == pytest.approx(_xavier_std(shape), rel=1e-9)
            assert tfixup[key].std / xavier[key].std == pytest.approx(expected, rel=1e-9)


def test_t_fixup_scales_only_the_value_slice_of_the_packed_projection():
    d, layers = 64, 6
    model = NoNormEncoder(d=d, layers=layers)
    initialize(model, "T-Fixup", seed=0)
    q, k, v = model.layers[3].self_attn.in_proj_weight.detach().chunk(3)
    xavier = math.sqrt(2.0 / (d + d))  # each projection is its own d x d matrix
    # empirical stds of 4096 uniform draws: relative standard error about 0.7%
    assert q.std().item() / xavier == pytest.approx(1.0, rel=0.04)
    assert k.std().item() / xavier == pytest.approx(1.0, rel=0.04)
    assert v.std().item() / xavier == pytest.approx(0.67 * layers**-0.25, rel=0.04)


def test_t_fixup_token_embedding_std_is_d_to_minus_half_times_9n_to_minus_quarter():
    d, layers = 64, 6
    model = NoNormEncoder(d=d, layers=layers)
    plan = initialize(model, "T-Fixup", seed=0)
    expected = d**-0.5 * (9 * layers) ** -0.25
    assert plan["embed_tokens.weight"].std == pytest.approx(expected, rel=1e-9)
    drawn = model.embed_tokens.weight.detach()  # 1024 normal draws: 2.2% standard error
    assert drawn.std().item() == pytest.approx(expected, rel=0.1)
    assert abs(drawn.mean().item()) < 4 * expected / math.sqrt(drawn.numel())
    # the baseline's embeddings are fairseq's N(0, d^-1), (9N)^(1/4) = 2.7 times larger
    baseline = initialize(model, "Xavier", seed=0)
    assert baseline["embed_tokens.weight"].std == pytest.approx(d**-0.5, rel=1e-9)


def test_reversal_targets_are_the_inputs_read_backwards():
    x, y = reversal(64, torch.Generator().manual_seed(3))
    assert x.shape == y.shape == (64, LENGTH)
    assert x.dtype == torch.long and 0 <= x.min() and x.max() < VOCAB
    for i in range(len(x)):
        assert y[i].tolist() == list(reversed(x[i].tolist()))
    again, _ = reversal(64, torch.Generator().manual_seed(3))
    assert torch.equal(x, again)  # generated from the seed
    assert not torch.equal(x, reversal(64, torch.Generator().manual_seed(4))[0])


def test_quick_run_t_fixup_trains_where_xavier_does_not(quick):
    result = quick("t-fixup")
    runs = result.outcome.data["runs"]
    for lr, tfixup in runs["T-Fixup"].items():
        xavier = runs["Xavier"][lr]
        assert all(r["accuracy"] > 0.99 and r["loss"] < 1e-2 for r in tfixup), lr
        # Xavier: far from solving the task, its loss at least 100 times T-Fixup's
        assert all(r["accuracy"] < 0.5 for r in xavier), lr
        assert min(r["loss"] for r in xavier) > 100 * max(r["loss"] for r in tfixup), lr
        assert not any(r["nonfinite"] for r in tfixup)
    assert result.outcome.holds
