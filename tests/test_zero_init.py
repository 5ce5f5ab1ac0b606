"""zer0_: ZerO's deterministic identity / partial identity / Hadamard weights."""

import math

import pytest
import torch
from scipy.linalg import hadamard

import weightinit as wi
from weightinit.initializers.layout import Layout
from weightinit.initializers.structured import zer0_


@pytest.mark.parametrize("shape", [(5, 5), (3, 7), (1, 4)])
def test_square_and_narrowing_are_the_partial_identity(shape):
    assert torch.equal(zer0_(torch.empty(shape)), torch.eye(*shape))


@pytest.mark.parametrize("out, n_in", [(4, 2), (8, 3), (6, 5), (20, 12), (64, 8)])
def test_widening_is_the_papers_scaled_hadamard_block(out, n_in):
    """Algorithm 1: c I* H_m I*, m = ceil(log2 out), c = 2^(-(m-1)/2); scipy's Sylvester
    Hadamard matrix is the oracle."""
    m = math.ceil(math.log2(out))
    expected = torch.tensor(hadamard(2**m)[:out, :n_in], dtype=torch.float32)
    expected *= 2 ** (-(m - 1) / 2)
    assert torch.allclose(zer0_(torch.empty(out, n_in)), expected)


def test_widening_to_a_power_of_two_has_orthogonal_columns_of_norm_sqrt2():
    w = zer0_(torch.empty(32, 10, dtype=torch.float64))
    assert torch.allclose(w.T @ w, 2 * torch.eye(10, dtype=torch.float64))


def test_partial_identity_when_asked_and_the_catalog_entry():
    assert torch.equal(zer0_(torch.empty(6, 3), hadamard=False), torch.eye(6, 3))
    entry = next(e for e in wi.catalog() if e.name == "zer0")
    assert "Zhao" in entry.paper and "hadamard_identity" in entry.aliases
    assert wi.get("hadamard_identity") is zer0_ and wi.get("ZER0") is zer0_
    assert wi.get("zero") is not zer0_  # "zero" in the catalog stays zeros


def test_conv_kernels_get_it_at_the_centre_tap_per_group():
    w = zer0_(torch.empty(8, 2, 3, 3), layout=Layout(groups=2, group_axis=0))
    # two groups of (4 out, 2 in): each a scaled 4 x 2 Hadamard block at tap (1, 1)
    block = torch.tensor(hadamard(4)[:, :2], dtype=torch.float32) * 2**-0.5
    assert torch.allclose(w[:4, :, 1, 1], block) and torch.allclose(w[4:, :, 1, 1], block)
    w[:, :, 1, 1] = 0
    assert not w.any()
    conv = torch.nn.Conv1d(3, 3, 4, padding="same", bias=False)
    zer0_(conv.weight)
    x = torch.randn(2, 3, 9)
    assert torch.equal(conv(x), x)  # even kernel: the "same" centre, no shift


def test_bad_arguments():
    with pytest.raises(TypeError, match="hadamard"):
        zer0_(torch.empty(3, 3), hadamard="yes")
    with pytest.raises(TypeError, match="floating-point"):
        zer0_(torch.empty(3, 3, dtype=torch.long))
    assert zer0_(torch.empty(0, 3)).shape == (0, 3)
