"""7. Fixup: the two mechanisms (identity blocks; He's doubling per block) and the quick run."""

import math

import torch

import weightinit as wi
from weightinit.reproduce.papers.fixup import DEPTH, DEPTHS, WIDTH, build, stream_std
from weightinit.zoo import residual_mlp


def test_fixup_blocks_start_as_the_identity():
    x = torch.randn(64, 40)
    model = build("Fixup", 5, 0, x)
    for block in model[1:-1]:
        assert block.fc2.layer.weight.abs().max() == 0 and block.fc2.layer.bias.abs().max() == 0
    with torch.no_grad():
        torch.testing.assert_close(model[:-1](x), model[0](x), rtol=0, atol=0)
        assert model(x).abs().max() == 0  # the classifier is 0 too
    assert stream_std(model, x) == model[0](x).std().item()


def test_he_residual_block_doubles_the_stream_second_moment():
    # x + W2 relu(W1 x), Var(W1) = 2/n, Var(W2) = 1/n: E R = 1 + 0 + 1 = 2 for
    # R = |x_out|^2 / |x|^2; Var R = 4/n (cross term) + (1 + 5/n)(1 + 2/n) - 1 (branch)
    n, blocks = 128, 400
    model, _ = residual_mlp(blocks, width=n, in_features=n)
    wi.init(model, "he", seed=0)
    x = torch.randn(1, n, dtype=torch.float64)
    with torch.no_grad():
        ratios = torch.stack([b.double()(x).square().sum() / x.square().sum() for b in model[1:-1]])
    var = 4 / n + (1 + 5 / n) * (1 + 2 / n) - 1
    assert abs(ratios.mean().item() - 2) < 4 * math.sqrt(var / blocks)
    assert abs(ratios.var().item() / var - 1) < 0.35  # the spread of R, not only its mean


def test_quick_run_he_explodes_as_two_to_the_half_depth_and_fixup_trains(quick):
    data = quick("fixup").outcome.data
    he, fixup = data["stream_std"]["He"][0], data["stream_std"]["Fixup"][0]
    s0 = data["input_layer_std"]["He"][0]
    for depth, std in zip(DEPTHS, he):
        assert -2 < math.log10(std / (s0 * 2 ** (depth / 2))) < 1
    for std in fixup:  # Fixup: the input layer's std, at every depth
        assert math.isclose(std, data["input_layer_std"]["Fixup"][0], rel_tol=1e-5)
    lr = data["lrs"][-1]
    assert data["diverged"][f"He, lr {lr}"] == 1
    assert data["diverged"][f"Fixup, lr {lr}"] == 0
    losses = data["losses"][f"Fixup, lr {lr}"][0]
    assert losses[-1] < 0.85 * losses[0] and DEPTH >= 100 and WIDTH >= 64
