"""Keras kernel layouts (issue 15) against the torch front end's own knowledge of the same
layers: the fans of a Keras kernel under ``keras_layout`` equal the fans the torch plan
records for the torch layer that computes the same function, layer type by layer type. Two
independent descriptions of each layer agree (no Keras needed: the layouts are plain data)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import weightinit as wi
from weightinit.frontends.keras.layouts import KINDS, keras_fans, keras_layout

# (torch layer, its weight's name, the Keras kernel's shape, kind, options)
CASES = {
    "Dense": (nn.Linear(10, 20), "weight", (10, 20), "dense", {}),
    "Conv2D": (nn.Conv2d(4, 16, 3), "weight", (3, 3, 4, 16), "conv", {}),
    "Conv2D groups": (
        nn.Conv2d(4, 16, 3, groups=2),
        "weight",
        (3, 3, 2, 16),
        "conv",
        {"groups": 2},
    ),
    "Conv1D": (nn.Conv1d(6, 8, 5), "weight", (5, 6, 8), "conv", {}),
    "DepthwiseConv2D": (nn.Conv2d(16, 32, 3, groups=16), "weight", (3, 3, 16, 2), "depthwise", {}),
    "Conv2DTranspose": (nn.ConvTranspose2d(4, 8, 3), "weight", (3, 3, 8, 4), "conv_transpose", {}),
    "LSTM kernel": (nn.LSTM(10, 32), "weight_ih_l0", (10, 128), "recurrent", {"gates": 4}),
    "LSTM recurrent": (nn.LSTM(10, 32), "weight_hh_l0", (32, 128), "recurrent", {"gates": 4}),
    "GRU recurrent": (nn.GRU(10, 32), "weight_hh_l0", (32, 96), "recurrent", {"gates": 3}),
    "Embedding": (nn.Embedding(100, 16), "weight", (100, 16), "embedding", {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_keras_layouts_give_the_fans_the_torch_front_end_gives(case):
    layer, name, shape, kind, options = CASES[case]
    row = wi.plan(layer, "glorot")[name]
    assert wi.fans(torch.empty(shape), keras_layout(kind, shape, **options)) == (
        row.fan_in,
        row.fan_out,
    )


def test_attention_kernels_have_the_fans_of_the_projections_they_pack():
    """MultiHeadAttention's q/k/v kernel (d, heads, head_dim) is a d -> heads x head_dim
    projection, its output kernel (heads, head_dim, d) the reverse: the fans of
    nn.MultiheadAttention's own q block and out_proj (d = 16, 4 heads of 4)."""
    attention = nn.MultiheadAttention(16, 4)
    plan = wi.plan(attention, "glorot")
    q = wi.fans(torch.empty(16, 4, 4), keras_layout("attention_in", (16, 4, 4)))
    out = wi.fans(torch.empty(4, 4, 16), keras_layout("attention_out", (4, 4, 16)))
    assert q == (plan["in_proj_weight"].fan_in, plan["in_proj_weight"].fan_out) == (16, 16)
    assert out == (plan["out_proj.weight"].fan_in, plan["out_proj.weight"].fan_out) == (16, 16)


def test_keras_own_fans_are_those_of_its_variance_scaling():
    """keras_fans is Keras's rule (the last two axes times the receptive field), checked on the
    shapes its docs use; right for Dense and plain convolutions, not for the rest."""
    assert keras_fans((10, 20)) == (10, 20)
    assert keras_fans((3, 3, 4, 16)) == (36, 144)
    assert keras_fans((7,)) == (7, 7)
    assert keras_fans((3, 3, 16, 2)) != wi.fans(
        torch.empty(3, 3, 16, 2), keras_layout("depthwise", (3, 3, 16, 2))
    )


def test_an_unknown_kind_names_the_kinds():
    with pytest.raises(ValueError, match="unknown kind 'lstm'; the kinds: dense, conv"):
        keras_layout("lstm", (10, 40))
    assert set(KINDS) >= {"dense", "recurrent", "depthwise"}
