"""Orthogonal, delta-orthogonal, identity, sparse, looks-linear and unitary initializers."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import weightinit as wi
from weightinit.initializers.layout import Layout


def orthogonality_error(m: torch.Tensor) -> float:
    """max |M M^H - I| over the short side (rows if rows <= cols)."""
    m = m.to(torch.complex128 if m.is_complex() else torch.float64)
    if m.shape[0] > m.shape[1]:
        m = m.mT
    eye = torch.eye(m.shape[0], dtype=m.dtype)
    return (m @ m.mH - eye).abs().max().item()


@pytest.mark.parametrize("shape", [(256, 256), (100, 300), (300, 100), (64, 16, 3, 3)])
def test_orthogonal_rows_or_columns_are_orthonormal(gen, shape):
    w = wi.orthogonal_(torch.empty(shape), generator=gen)
    assert orthogonality_error(w.reshape(shape[0], -1)) < 1e-5


def test_orthogonal_gain(gen):
    w = wi.orthogonal_(torch.empty(50, 50), gain=2.0, generator=gen)
    assert orthogonality_error(w / 2.0) < 1e-5


@pytest.mark.parametrize("dtype, tol", [(torch.bfloat16, 2e-2), (torch.float16, 2e-3)])
def test_orthogonal_in_half_precision_is_orthogonal_to_that_precision(gen, dtype, tol):
    w = wi.orthogonal_(torch.empty(128, 128, dtype=dtype), generator=gen)
    assert w.dtype == dtype
    assert orthogonality_error(w) < tol


def test_orthogonal_equals_torch_for_the_same_generator_state():
    for shape in [(40, 40), (20, 60), (60, 20)]:
        a = wi.orthogonal_(torch.empty(shape), generator=torch.Generator().manual_seed(5))
        b = nn.init.orthogonal_(torch.empty(shape), generator=torch.Generator().manual_seed(5))
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_orthogonal_is_per_gate_for_stacked_rnn_weights(gen):
    lstm = nn.LSTM(16, 16)
    w = wi.orthogonal_(lstm.weight_hh_l0, layout=(lstm, "weight_hh_l0"), generator=gen)
    for gate in w.detach().split(16):
        assert orthogonality_error(gate) < 1e-5
    # the stacked (64 x 16) matrix as a whole is not orthonormal: its gates overlap
    assert orthogonality_error(w.detach()) > 0.5


def test_orthogonal_is_per_group_for_grouped_convs(gen):
    conv = nn.Conv2d(8, 8, 3, groups=2)
    w = wi.orthogonal_(conv.weight, layout=(conv, "weight"), generator=gen).detach()
    for group in w.split(4):
        assert orthogonality_error(group.reshape(4, -1)) < 1e-5


def test_orthogonal_of_transposed_conv_is_over_its_output_channels(gen):
    conv = nn.ConvTranspose1d(4, 6, 1)  # weight (in 4, out 6, 1): matrix out x in = 6 x 4
    w = wi.orthogonal_(conv.weight, layout=(conv, "weight"), generator=gen).detach()
    m = w[:, :, 0].T  # (6, 4): columns orthonormal
    assert torch.allclose(m.T @ m, torch.eye(4), atol=1e-5)


def test_orthogonal_is_haar_distributed():
    """Without the sign correction QR's Q has a positive-biased diagonal; under the Haar
    measure every entry has mean 0 and variance 1/n."""
    n, draws = 8, 4000
    gen = torch.Generator().manual_seed(0)
    # `draws` independent matrices in one call: blocks stacked on dim 0
    stack = wi.orthogonal_(torch.empty(draws * n, n), layout=Layout(blocks=draws), generator=gen)
    q00 = stack[::n, 0].double()
    assert abs(q00.mean().item()) < 5 * math.sqrt(1 / n / draws)
    # q00^2 ~ Beta(1/2, (n-1)/2), whose variance is 2 (n-1) / (n^2 (n+2))
    se_sq = math.sqrt(2 * (n - 1) / (n**2 * (n + 2)) / draws)
    assert abs((q00**2).mean().item() - 1 / n) < 5 * se_sq


# --- delta-orthogonal --------------------------------------------------------------------------


@pytest.mark.parametrize("conv", [nn.Conv1d(8, 8, 3), nn.Conv2d(8, 12, 5), nn.Conv3d(4, 4, 3)])
def test_delta_orthogonal_is_orthogonal_at_the_centre_and_zero_elsewhere(gen, conv):
    w = wi.delta_orthogonal_(conv.weight, layout=(conv, "weight"), generator=gen).detach()
    centre = tuple(k // 2 for k in w.shape[2:])
    centre_matrix = w[(slice(None), slice(None), *centre)]
    assert orthogonality_error(centre_matrix) < 1e-5
    assert w.abs().sum() == pytest.approx(centre_matrix.abs().sum().item(), rel=1e-6)


@pytest.mark.parametrize("kernel", [3, 4, 5])
def test_delta_orthogonal_conv_with_same_padding_is_the_centre_matrix(gen, kernel):
    """For odd and even kernels, a 'same'-padded conv applies Q at every position, unshifted;
    so a conv net of such layers preserves the norm exactly when out >= in."""
    conv = nn.Conv1d(6, 10, kernel, padding="same", bias=False)
    wi.delta_orthogonal_(conv.weight, generator=gen)
    q = conv.weight.detach()[:, :, (kernel - 1) // 2]
    x = torch.randn(3, 6, 17, generator=gen)
    y = conv(x).detach()
    torch.testing.assert_close(y, torch.einsum("oi,bil->bol", q, x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y.norm(dim=1), x.norm(dim=1), rtol=1e-5, atol=1e-5)


def test_delta_orthogonal_grouped_is_per_group(gen):
    conv = nn.Conv2d(6, 6, 3, groups=3)
    w = wi.delta_orthogonal_(conv.weight, layout=(conv, "weight"), generator=gen).detach()
    for group in w[:, :, 1, 1].split(2):
        assert orthogonality_error(group) < 1e-5


def test_delta_orthogonal_needs_a_kernel():
    with pytest.raises(ValueError, match="use orthogonal_ for dense weights"):
        wi.delta_orthogonal_(torch.empty(4, 4))


# --- identity ----------------------------------------------------------------------------------


def test_identity_matrices():
    assert torch.equal(wi.identity_(torch.empty(3, 3)), torch.eye(3))
    assert torch.equal(wi.identity_(torch.empty(2, 4), gain=0.5), 0.5 * torch.eye(2, 4))


@pytest.mark.parametrize("kernel", [1, 3, 4, 5])
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_identity_conv_passes_the_input_through(kernel, dims):
    conv_cls = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[dims - 1]
    conv = conv_cls(4, 4, kernel, padding="same", bias=False)
    wi.identity_(conv.weight)
    x = torch.randn(2, 4, *[6] * dims)
    torch.testing.assert_close(conv(x).detach(), x)


@pytest.mark.parametrize("groups, out_per_group", [(1, 6), (2, 3), (3, 2), (3, 4)])
def test_identity_matches_torch_dirac_for_odd_kernels(groups, out_per_group):
    conv = nn.Conv2d(6, groups * out_per_group, 3, groups=groups)
    ours = wi.identity_(torch.empty_like(conv.weight), layout=(conv, "weight"))
    theirs = nn.init.dirac_(torch.empty_like(conv.weight), groups=groups)
    assert torch.equal(ours, theirs)


def test_identity_grouped_conv_with_explicit_layout_passes_input_through():
    conv = nn.Conv2d(6, 6, 3, padding=1, groups=3, bias=False)
    wi.identity_(conv.weight, layout=Layout(groups=3))
    x = torch.randn(1, 6, 5, 5)
    torch.testing.assert_close(conv(x).detach(), x)


def test_identity_is_per_gate_for_stacked_weights():
    gru = nn.GRU(4, 4)
    w = wi.identity_(gru.weight_hh_l0, layout=(gru, "weight_hh_l0")).detach()
    assert torch.equal(w, torch.eye(4).repeat(3, 1))


# --- sparse ------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 15, 64])
def test_sparse_has_exactly_k_incoming_weights_per_unit(gen, k):
    w = wi.sparse_(torch.empty(200, 64), k=k, generator=gen)
    assert ((w != 0).sum(dim=1) == k).all()


def test_sparse_conv_counts_inputs_times_kernel(gen):
    conv = nn.Conv2d(4, 8, 3)
    w = wi.sparse_(conv.weight, k=10, generator=gen).detach()
    assert ((w != 0).reshape(8, -1).sum(dim=1) == 10).all()


def test_sparse_mask_is_uniform_and_values_are_normal(gen):
    rows, fan_in, k, std = 20_000, 50, 10, 0.5
    w = wi.sparse_(torch.empty(rows, fan_in), k=k, std=std, generator=gen)
    p = k / fan_in
    hits = (w != 0).float().mean(dim=0)  # per input position: Binomial(rows, p) / rows
    assert (hits - p).abs().max() < 5 * math.sqrt(p * (1 - p) / rows)
    values = w[w != 0]
    assert abs(values.var().item() - std**2) < 5 * std**2 * math.sqrt(2 / values.numel())


def test_sparse_is_reproducible_from_the_generator():
    a = wi.sparse_(torch.empty(30, 40), k=5, generator=torch.Generator().manual_seed(9))
    b = wi.sparse_(torch.empty(30, 40), k=5, generator=torch.Generator().manual_seed(9))
    c = wi.sparse_(torch.empty(30, 40), k=5, generator=torch.Generator().manual_seed(10))
    assert torch.equal(a, b)
    assert not torch.equal(a != 0, c != 0)


@pytest.mark.parametrize("k, match", [(0, "positive int"), (2.5, "positive int"), (41, "exceeds")])
def test_sparse_k_errors(k, match):
    with pytest.raises(ValueError, match=match):
        wi.sparse_(torch.empty(3, 40), k=k)


# --- looks-linear ------------------------------------------------------------------------------


def test_looks_linear_network_is_linear_at_init(gen):
    """W [relu(x); relu(-x)] = W0 x with W0 orthogonal, so the CReLU layer preserves norms."""
    w = wi.looks_linear_(torch.empty(32, 64), generator=gen)
    w0 = w[:, :32]
    assert torch.equal(w[:, 32:], -w0)
    assert orthogonality_error(w0) < 1e-5
    x = torch.randn(10, 32, generator=gen)
    y = torch.cat([F.relu(x), F.relu(-x)], dim=1) @ w.T
    torch.testing.assert_close(y, x @ w0.T, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y.norm(dim=1), x.norm(dim=1), rtol=1e-5, atol=1e-5)


def test_looks_linear_conv(gen):
    w = wi.looks_linear_(torch.empty(8, 8, 3, 3), generator=gen)
    assert torch.equal(w[:, 4:], -w[:, :4])
    assert orthogonality_error(w[:, :4].reshape(8, -1)) < 1e-5


def test_looks_linear_needs_an_even_input():
    with pytest.raises(ValueError, match="even"):
        wi.looks_linear_(torch.empty(4, 5))


# --- unitary -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
@pytest.mark.parametrize("shape", [(64, 64), (20, 50)])
def test_unitary_is_unitary(gen, dtype, shape):
    u = wi.unitary_(torch.empty(shape, dtype=dtype), generator=gen)
    assert orthogonality_error(u) < 1e-5


def test_unitary_phases_are_uniform():
    """Haar unitary entries are circularly symmetric: E[U_00] = 0, E[|U_00|^2] = 1/n."""
    n, draws = 6, 3000
    gen = torch.Generator().manual_seed(0)
    stack = torch.empty(draws * n, n, dtype=torch.complex128)
    u00 = wi.unitary_(stack, layout=Layout(blocks=draws), generator=gen)[::n, 0]
    assert abs(u00.mean().item()) < 5 * math.sqrt(1 / n / draws)
    # |u00|^2 ~ Beta(1, n-1), whose variance is (n-1) / (n^2 (n+1))
    se_sq = math.sqrt((n - 1) / (n**2 * (n + 1)) / draws)
    assert abs((u00.abs() ** 2).mean().item() - 1 / n) < 5 * se_sq


def test_unitary_real_tensor_falls_back_to_orthogonal():
    a = wi.unitary_(torch.empty(10, 10), generator=torch.Generator().manual_seed(1))
    b = wi.orthogonal_(torch.empty(10, 10), generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_orthogonal_rejects_complex_and_points_to_unitary():
    with pytest.raises(TypeError, match="unitary_"):
        wi.orthogonal_(torch.empty(3, 3, dtype=torch.complex64))


def test_sparse_rejects_a_negative_std():
    with pytest.raises(ValueError, match="`std` must be > 0"):
        wi.sparse_(torch.empty(3, 40), k=2, std=-1.0)


def test_orthogonal_embedding_rows_are_unit_vectors(gen):
    emb = nn.Embedding(50, 16)
    w = wi.orthogonal_(emb.weight, layout=(emb, "weight"), generator=gen).detach()
    torch.testing.assert_close(w.norm(dim=1), torch.ones(50))
