"""Fans and layouts: hand-computed values, torch's own fans where they agree, and errors."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import weightinit as wi
from weightinit.initializers.layout import Layout


def fans_of(module, name):
    return wi.fans(module.get_parameter(name), (module, name))


@pytest.mark.parametrize(
    "module, name, expected",
    [
        (nn.Linear(10, 20), "weight", (10, 20)),
        (nn.Bilinear(3, 5, 7), "weight", (15, 7)),
        (nn.Conv1d(3, 8, 5), "weight", (15, 40)),
        (nn.Conv2d(3, 8, 3), "weight", (27, 72)),
        (nn.Conv3d(2, 4, (1, 2, 3)), "weight", (12, 24)),
        (nn.Conv2d(4, 4, 3, groups=4), "weight", (9, 9)),  # depthwise
        (nn.Conv2d(8, 16, 3, groups=2), "weight", (36, 72)),
        (nn.Conv2d(4, 8, 3, groups=4), "weight", (9, 18)),  # depthwise multiplier 2
        (nn.ConvTranspose2d(8, 16, 3), "weight", (72, 144)),
        (nn.ConvTranspose1d(6, 4, 5, groups=2), "weight", (15, 10)),
        (nn.ConvTranspose3d(2, 3, 2), "weight", (16, 24)),
        (nn.LSTM(10, 20), "weight_ih_l0", (10, 20)),
        (nn.LSTM(10, 20), "weight_hh_l0", (20, 20)),
        (nn.LSTM(10, 20, num_layers=2, bidirectional=True), "weight_ih_l1_reverse", (40, 20)),
        (nn.LSTM(10, 20, proj_size=5), "weight_hh_l0", (5, 20)),
        (nn.LSTM(10, 20, proj_size=5), "weight_hr_l0", (20, 5)),
        (nn.GRU(6, 12), "weight_ih_l0", (6, 12)),
        (nn.RNN(6, 12), "weight_hh_l0", (12, 12)),
        (nn.LSTMCell(10, 20), "weight_ih", (10, 20)),
        (nn.GRUCell(10, 20), "weight_hh", (20, 20)),
        (nn.RNNCell(10, 20), "weight_ih", (10, 20)),
        (nn.MultiheadAttention(16, 4), "in_proj_weight", (16, 16)),
        (nn.MultiheadAttention(16, 4, kdim=6, vdim=10), "k_proj_weight", (6, 16)),
        (nn.MultiheadAttention(16, 4, kdim=6, vdim=10), "v_proj_weight", (10, 16)),
        (nn.MultiheadAttention(16, 4), "out_proj.weight", (16, 16)),
        (nn.Embedding(100, 8), "weight", (1, 8)),  # one active token per lookup
        (nn.EmbeddingBag(50, 4), "weight", (1, 4)),
        (nn.TransformerEncoderLayer(16, 4, 32), "linear1.weight", (16, 32)),
        (nn.TransformerEncoderLayer(16, 4, 32), "self_attn.in_proj_weight", (16, 16)),
    ],
)
def test_fans_match_hand_computed_values(module, name, expected):
    assert fans_of(module, name) == expected


@pytest.mark.parametrize(
    "module, name, blocks",
    [
        (nn.LSTM(4, 8), "weight_ih_l0", 4),
        (nn.LSTM(4, 8), "bias_hh_l0", 4),
        (nn.GRU(4, 8), "weight_hh_l0", 3),
        (nn.GRUCell(4, 8), "bias_ih", 3),
        (nn.RNN(4, 8), "weight_ih_l0", 1),
        (nn.MultiheadAttention(8, 2), "in_proj_weight", 3),
        (nn.MultiheadAttention(8, 2), "in_proj_bias", 3),
    ],
)
def test_stacked_parameters_have_one_block_per_gate_or_projection(module, name, blocks):
    assert wi.layout_for(module, name).blocks == blocks


@pytest.mark.parametrize(
    "module, name",
    [
        (nn.Linear(3, 4), "bias"),
        (nn.LayerNorm(6), "weight"),
        (nn.LayerNorm((3, 4)), "bias"),
        (nn.BatchNorm2d(5), "weight"),
        (nn.GroupNorm(2, 4), "bias"),
        (nn.InstanceNorm1d(3, affine=True), "weight"),
        (nn.RMSNorm(8), "weight"),
        (nn.PReLU(6), "weight"),
        (nn.MultiheadAttention(8, 2, add_bias_kv=True), "bias_k"),
    ],
)
def test_per_unit_parameters_have_fan_in_one(module, name):
    param = module.get_parameter(name)
    fan_in, fan_out = wi.fans(param, (module, name))
    assert fan_in == 1
    assert fan_out == param.numel()


@given(
    out=st.integers(1, 9),
    inp=st.integers(1, 9),
    kernel=st.lists(st.integers(1, 4), max_size=3),
)
def test_default_layout_gives_torchs_fans(out, inp, kernel):
    t = torch.empty(out, inp, *kernel)
    assert wi.fans(t) == nn.init._calculate_fan_in_and_fan_out(t)


@given(
    groups=st.integers(1, 4),
    per_in=st.integers(1, 3),
    per_out=st.integers(1, 3),
    k=st.integers(1, 3),
    transposed=st.booleans(),
)
def test_grouped_conv_fans_are_per_group(groups, per_in, per_out, k, transposed):
    cls = nn.ConvTranspose2d if transposed else nn.Conv2d
    conv = cls(groups * per_in, groups * per_out, k, groups=groups)
    assert fans_of(conv, "weight") == (per_in * k * k, per_out * k * k)


@given(
    shape=st.lists(st.integers(1, 4), min_size=2, max_size=4),
    blocks=st.sampled_from([1, 2]),
    groups=st.sampled_from([1, 2]),
    data=st.data(),
)
def test_block_form_round_trips(shape, blocks, groups, data):
    """to_blocks then from_blocks is the identity, for any axes, groups and blocks."""
    ndim = len(shape)
    axes = data.draw(st.permutations(range(ndim)))
    out_axes, in_axes = (axes[0],), (axes[1],)
    shape[axes[0]] *= blocks * groups
    layout = Layout(out_axes=out_axes, in_axes=in_axes, blocks=blocks, groups=groups)
    t = torch.arange(float(torch.Size(shape).numel())).reshape(shape)
    g = wi.geometry(t, layout)
    assert g.to_blocks(t).shape == g.block_shape
    assert g.num_blocks == blocks * groups
    assert torch.equal(g.from_blocks(g.to_blocks(t)), t)


def test_block_form_puts_each_gate_in_its_own_block():
    lstm = nn.LSTM(3, 2)
    w = lstm.weight_ih_l0
    g = wi.geometry(w, (lstm, "weight_ih_l0"))
    blocks = g.to_blocks(w)
    for gate in range(4):
        assert torch.equal(blocks[gate, :, :], w[2 * gate : 2 * gate + 2])


def test_grouped_conv_blocks_are_the_groups():
    conv = nn.Conv2d(4, 6, 3, groups=2)
    g = wi.geometry(conv.weight, (conv, "weight"))
    blocks = g.to_blocks(conv.weight)
    assert blocks.shape == (2, 3, 2, 3, 3)
    assert torch.equal(blocks[1], conv.weight[3:])


def test_transposed_conv_block_form_swaps_in_and_out():
    conv = nn.ConvTranspose2d(4, 6, 3)  # weight (in=4, out=6, 3, 3)
    blocks = wi.geometry(conv.weight, (conv, "weight")).to_blocks(conv.weight)
    assert torch.equal(blocks[0], conv.weight.transpose(0, 1))


def test_explicit_layout_with_several_in_axes():
    t = torch.empty(5, 2, 3, 4)
    assert wi.fans(t, Layout(out_axes=0, in_axes=(1, 2))) == (24, 20)


# --- errors -----------------------------------------------------------------------------------


def test_one_dimensional_tensor_without_layout_asks_for_one():
    with pytest.raises(ValueError, match="pass layout="):
        wi.fans(torch.empty(5))


def test_layout_axis_out_of_range():
    with pytest.raises(ValueError, match="out of range"):
        wi.fans(torch.empty(3, 4), Layout(out_axes=(0,), in_axes=(2,)))


def test_layout_axes_must_not_overlap():
    with pytest.raises(ValueError, match="overlap"):
        wi.fans(torch.empty(3, 4), Layout(out_axes=(0,), in_axes=(-2,)))


def test_blocks_must_divide_the_axis():
    with pytest.raises(ValueError, match="does not split"):
        wi.fans(torch.empty(10, 4), Layout(blocks=4))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_layout_counts_must_be_positive_ints(bad):
    with pytest.raises(ValueError, match="positive int"):
        Layout(groups=bad)


def test_layout_argument_of_wrong_type():
    with pytest.raises(TypeError, match="`layout` must be"):
        wi.fans(torch.empty(3, 4), layout="linear")


def test_unknown_parameter_name_lists_the_real_ones():
    with pytest.raises(ValueError, match=r"no parameter 'weights'.*\['bias', 'weight'\]"):
        wi.layout_for(nn.Linear(2, 3), "weights")


def test_unknown_submodule():
    with pytest.raises(ValueError, match="no submodule 'attn'"):
        wi.layout_for(nn.TransformerEncoderLayer(8, 2), "attn.in_proj_weight")


def test_unknown_module_type_says_how_to_build_a_layout():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.kernel = nn.Parameter(torch.empty(3, 4))

    with pytest.raises(ValueError, match=r"Layout\(out_axes="):
        wi.layout_for(Custom(), "kernel")


def test_lazy_module_must_be_materialized_first():
    with pytest.raises(ValueError, match="not materialized"):
        wi.layout_for(nn.LazyLinear(4), "weight")
