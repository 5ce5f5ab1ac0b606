"""Structured initializers: orthogonal, delta-orthogonal, identity, sparse, looks-linear, unitary.

Each works on the block form of the tensor (see :mod:`weightinit.initializers.layout`): one
``(n_out, n_in, *receptive)`` matrix per group and per stacked gate or projection, so an LSTM's
recurrent weight gets four orthogonal gate matrices and a grouped conv one per group.
"""

from __future__ import annotations

import math

import torch

from weightinit._checks import check_tensor, finite, nothing_to_fill, positive
from weightinit.initializers.catalog import register
from weightinit.initializers.fills import report_std
from weightinit.initializers.layout import Geometry, LayoutLike, geometry

__all__ = [
    "delta_orthogonal_",
    "haar_orthogonal",
    "identity_",
    "looks_linear_",
    "orthogonal_",
    "sparse_",
    "unitary_",
    "zer0_",
]


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Linear algebra runs in fp32 (fp64 for fp64 tensors) and is cast back, so that bf16 and
    fp16 tensors, which LAPACK does not take, get accurate matrices."""
    if dtype.is_complex:
        return torch.complex128 if dtype == torch.complex128 else torch.complex64
    return torch.float64 if dtype == torch.float64 else torch.float32


def haar_orthogonal(
    batch: int,
    rows: int,
    cols: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``batch`` Haar-distributed (semi-)orthogonal or unitary ``rows x cols`` matrices.

    QR of a Gaussian matrix with the signs (phases) of R's diagonal moved into Q (Mezzadri
    2007, "How to generate random matrices from the classical compact groups"); without that
    correction Q is not Haar-distributed. Rows are orthonormal when rows <= cols, columns
    otherwise. Complex ``dtype`` gives unitary matrices.

    Example:
        >>> import torch, weightinit
        >>> q = weightinit.haar_orthogonal(1, 3, 5)[0]
        >>> torch.allclose(q @ q.T, torch.eye(3), atol=1e-6)
        True
    """
    a = torch.empty(batch, rows, cols, dtype=dtype, device=device).normal_(generator=generator)
    wide = rows < cols
    if wide:  # QR needs a tall matrix; transposing keeps the draw identical to torch's
        a = a.transpose(-1, -2)
    # Householder QR: R's diagonal is h's diagonal, so R itself is never formed
    h, tau = torch.geqrf(a)
    q = torch.linalg.householder_product(h, tau)
    q.mul_(torch.sgn(torch.diagonal(h, dim1=-2, dim2=-1)).unsqueeze(-2))
    return q.transpose(-1, -2) if wide else q


def _orthogonal_std(g: Geometry, gain: float) -> float:
    """Entries of a Haar (semi-)orthogonal n x m matrix have variance 1 / max(n, m)."""
    size = max(g.n_out, g.fan_in)
    return abs(gain) / math.sqrt(size) if size else 0.0


def _write(tensor: torch.Tensor, g: Geometry, blocks: torch.Tensor) -> torch.Tensor:
    return tensor.copy_(g.from_blocks(blocks.reshape(g.block_shape)))


def _orthogonal_blocks(tensor, g: Geometry, gain: float, generator) -> torch.Tensor:
    q = haar_orthogonal(
        g.num_blocks,
        g.n_out,
        g.fan_in,
        dtype=_compute_dtype(tensor.dtype),
        device=tensor.device,
        generator=generator,
    )
    return _write(tensor, g, q if gain == 1 else q.mul_(gain))


@register(
    "orthogonal",
    formula="W = gain * Q, Q Haar (semi-)orthogonal per block",
    activations="linear, tanh (deep linear/tanh nets, RNN recurrences)",
    paper="Saxe, McClelland & Ganguli 2014, Exact solutions to the nonlinear dynamics...",
)
@torch.no_grad()
def orthogonal_(
    tensor: torch.Tensor,
    gain: float = 1.0,
    *,
    layout: LayoutLike = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill ``tensor`` with a (semi-)orthogonal matrix times ``gain``.

    Formula: W = gain * Q with Q Haar-distributed over the orthogonal group, Q Q^T = I when
    fan_out <= fan_in (rows orthonormal), Q^T Q = I otherwise. The matrix is (output units) x
    (input units x receptive field) of each block: one per conv group, per RNN gate and per
    packed q/k/v projection, as the layout says. From Saxe, McClelland & Ganguli 2014,
    "Exact solutions to the nonlinear dynamics of learning in deep linear neural networks":
    orthogonal weights give depth-independent learning times in deep linear nets.
    Computed in fp32 (fp64 for fp64 tensors) and cast, so bf16/fp16 tensors work; for a 2-D
    fp32 tensor and the same generator state the values equal ``torch.nn.init.orthogonal_``'s.

    Example:
        >>> import torch, weightinit
        >>> lstm = torch.nn.LSTM(8, 8)
        >>> w = weightinit.orthogonal_(lstm.weight_hh_l0, layout=(lstm, "weight_hh_l0"))
        >>> forget = w[8:16]  # each gate block is orthogonal on its own
        >>> torch.allclose(forget @ forget.T, torch.eye(8), atol=1e-5)
        True
    """
    check_tensor(tensor, "orthogonal_")
    gain = finite("orthogonal_", "gain", gain)
    g = geometry(tensor, layout)
    report_std(_orthogonal_std(g, gain), tensor, "orthogonal_")
    if nothing_to_fill(tensor):
        return tensor
    return _orthogonal_blocks(tensor, g, gain, generator)


def _centre(receptive: tuple[int, ...]) -> tuple[int, ...]:
    return tuple((k - 1) // 2 for k in receptive)


def _needs_receptive_field(fn: str, g: Geometry) -> None:
    if not g.receptive:
        raise ValueError(
            f"{fn} is for conv kernels, but this tensor's layout has no receptive-field axes; "
            "use orthogonal_ for dense weights or pass a layout that names the kernel axes"
        )


@register(
    "delta_orthogonal",
    formula="W[:, :, centre] = gain * Q (Q orthogonal per group), 0 elsewhere",
    activations="tanh, linear (very deep plain CNNs at criticality)",
    paper="Xiao et al. 2018, Dynamical Isometry and a Mean Field Theory of CNNs",
)
@torch.no_grad()
def delta_orthogonal_(
    tensor: torch.Tensor,
    gain: float = 1.0,
    *,
    layout: LayoutLike = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Conv kernel that is orthogonal at the spatial centre and zero elsewhere.

    Formula: W[o, i, c] = gain * Q[o, i] at the centre tap c, W = 0 at every other tap, with Q
    a Haar (semi-)orthogonal (out x in) matrix per group. From Xiao et al. 2018, "Dynamical
    Isometry and a Mean Field Theory of CNNs: How to Train 10,000-Layer Vanilla CNNs": the
    conv acts as Q on each position, so a linear conv net is an exact isometry when
    out >= in. Works for Conv1d/2d/3d and ConvTranspose (pass ``layout=(conv, "weight")``).

    The centre of a kernel of size k is tap (k - 1) // 2. For odd k that is the middle; for even
    k it is the tap that ``padding="same"`` aligns with the output position (torch pads the
    extra element on the right), so a "same"-padded conv does not shift the signal.
    (``torch.nn.init.dirac_`` uses k // 2, which shifts by one for even k.)

    Example:
        >>> import torch, weightinit
        >>> conv = torch.nn.Conv2d(16, 16, 3, padding=1, bias=False)
        >>> _ = weightinit.delta_orthogonal_(conv.weight)
        >>> x = torch.randn(2, 16, 8, 8)
        >>> torch.allclose(conv(x).norm(), x.norm(), rtol=1e-4)
        True
    """
    check_tensor(tensor, "delta_orthogonal_")
    gain = finite("delta_orthogonal_", "gain", gain)
    g = geometry(tensor, layout)
    _needs_receptive_field("delta_orthogonal_", g)
    if nothing_to_fill(tensor):
        return tensor
    dtype = _compute_dtype(tensor.dtype)
    q = haar_orthogonal(
        g.num_blocks, g.n_out, g.n_in, dtype=dtype, device=tensor.device, generator=generator
    )
    blocks = torch.zeros(g.block_shape, dtype=dtype, device=tensor.device)
    blocks[(..., *_centre(g.receptive))] = q * gain
    return _write(tensor, g, blocks)


@register(
    "identity",
    aliases=("eye",),
    formula="W = gain * I per block (conv: Dirac delta at the centre tap)",
    activations="ReLU RNNs (IRNN), residual-free deep nets (ZerO)",
    paper="Le, Jaitly & Hinton 2015 (IRNN)",
)
@torch.no_grad()
def identity_(
    tensor: torch.Tensor,
    gain: float = 1.0,
    *,
    layout: LayoutLike = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill ``tensor`` with the identity: ``gain`` on the diagonal of every block, 0 elsewhere.

    Formula: W[o, i] = gain if o == i else 0 (the leading diagonal of non-square matrices);
    for conv kernels the Dirac delta W[o, i, c] = gain [o == i] at the centre tap c =
    (k - 1) // 2 (see :func:`delta_orthogonal_` on even kernels), so a "same"-padded conv
    passes its input through unchanged. Grouped convs get an identity per group
    (``layout=(conv, "weight")`` or ``Layout(groups=g)``: torch's ``dirac_(w, groups=g)``),
    stacked RNN weights one per gate.
    The IRNN recurrent init of Le, Jaitly & Hinton 2015, "A Simple Way to Initialize
    Recurrent Networks of Rectified Linear Units". Nothing is drawn: ``generator`` is accepted
    only so that every initializer shares one signature.

    Example:
        >>> import torch, weightinit
        >>> weightinit.identity_(torch.empty(2, 3)).tolist()
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    """
    check_tensor(tensor, "identity_")
    gain = finite("identity_", "gain", gain)
    g = geometry(tensor, layout)
    if nothing_to_fill(tensor):
        return tensor
    blocks = torch.zeros(g.block_shape, dtype=tensor.dtype, device=tensor.device)
    eye = torch.eye(g.n_out, g.n_in, dtype=tensor.dtype, device=tensor.device) * gain
    blocks[(..., *_centre(g.receptive))] = eye
    return _write(tensor, g, blocks)


@register(
    "sparse",
    formula="k non-zero incoming weights per unit, each ~ N(0, std^2)",
    activations="tanh, sigmoid, ReLU (Hessian-free and momentum training)",
    paper="Martens 2010, Deep learning via Hessian-free optimization",
)
@torch.no_grad()
def sparse_(
    tensor: torch.Tensor,
    k: int = 15,
    std: float = 1.0,
    *,
    layout: LayoutLike = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sparse init: every output unit gets exactly ``k`` non-zero incoming weights.

    Formula: for each output unit, k of its fan_in incoming weights (chosen uniformly without
    replacement) are drawn from N(0, std^2) and the rest are 0, so Var(W) = std^2 k / fan_in.
    From Martens 2010, "Deep learning via Hessian-free optimization" (k = 15, unit Gaussian
    weights, as in Sutskever et al. 2013). The positions and values are drawn from
    ``generator``, so a seed reproduces the mask. Unlike ``torch.nn.init.sparse_``, which
    zeroes a fraction of each *column*, this fixes the number of *incoming* connections per
    unit, as the paper does.

    Example:
        >>> import torch, weightinit
        >>> w = weightinit.sparse_(torch.empty(32, 100), k=15)
        >>> (w != 0).sum(dim=1).unique().tolist()
        [15]
    """
    fn = "sparse_"
    check_tensor(tensor, fn)
    std = positive(fn, "std", std)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{fn}: `k` must be a positive int, got {k!r}")
    g = geometry(tensor, layout)
    if k > g.fan_in and tensor.numel():  # an empty tensor is a no-op, whatever k
        raise ValueError(
            f"{fn}: `k`={k} exceeds the {g.fan_in} incoming weights per unit of this tensor; "
            f"pass k <= {g.fan_in}"
        )
    report_std(std * math.sqrt(k / g.fan_in) if g.fan_in else 0.0, tensor, fn)
    if nothing_to_fill(tensor):
        return tensor
    units = g.num_blocks * g.n_out
    scores = torch.rand(units, g.fan_in, device=tensor.device, generator=generator)
    chosen = scores.topk(k, dim=1, sorted=False).indices
    values = torch.empty(units, k, dtype=tensor.dtype, device=tensor.device)
    values.normal_(0.0, std, generator=generator)
    blocks = torch.zeros(units, g.fan_in, dtype=tensor.dtype, device=tensor.device)
    return _write(tensor, g, blocks.scatter_(1, chosen, values))


@register(
    "looks_linear",
    formula="W = [W0, -W0], W0 orthogonal (input = [relu(x), relu(-x)])",
    activations="concatenated ReLU (CReLU)",
    paper="Balduzzi et al. 2017, The Shattered Gradients Problem",
)
@torch.no_grad()
def looks_linear_(
    tensor: torch.Tensor,
    gain: float = 1.0,
    *,
    layout: LayoutLike = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Looks-linear init for a layer fed by a concatenated ReLU.

    Formula: W = [W0, -W0] along the input axis, with W0 = gain * Q, Q Haar (semi-)orthogonal
    over (out) x (in / 2 x receptive field). Fed with [relu(x), relu(-x)], the layer computes
    W0 relu(x) - W0 relu(-x) = W0 x: the network is linear at initialization, so gradients do
    not shatter. From Balduzzi et al. 2017, "The Shattered Gradients Problem: If resnets are
    the answer, then what is the question?". The input units per block must be even.

    Example:
        >>> import torch, weightinit
        >>> w = weightinit.looks_linear_(torch.empty(4, 8))
        >>> torch.equal(w[:, :4], -w[:, 4:])
        True
    """
    fn = "looks_linear_"
    check_tensor(tensor, fn)
    gain = finite(fn, "gain", gain)
    g = geometry(tensor, layout)
    if g.n_in % 2:
        raise ValueError(
            f"{fn}: the input axis has {g.n_in} units per block; looks-linear needs an even "
            "number (the layer must be fed [relu(x), relu(-x)])"
        )
    if nothing_to_fill(tensor):
        return tensor
    half = g.n_in // 2
    q = haar_orthogonal(
        g.num_blocks,
        g.n_out,
        half * g.receptive_size,
        dtype=_compute_dtype(tensor.dtype),
        device=tensor.device,
        generator=generator,
    )
    w0 = (q * gain).reshape(g.num_blocks, g.n_out, half, *g.receptive)
    return _write(tensor, g, torch.cat([w0, -w0], dim=2))


@register(
    "unitary",
    formula="W = gain * U, U Haar unitary (complex) or orthogonal (real)",
    activations="complex and unitary RNNs",
    paper="Arjovsky, Shah & Bengio 2016, Unitary Evolution RNNs",
)
@torch.no_grad()
def unitary_(
    tensor: torch.Tensor,
    gain: float = 1.0,
    *,
    layout: LayoutLike = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill a complex ``tensor`` with a Haar (semi-)unitary matrix; a real one gets orthogonal.

    Formula: W = gain * U with U Haar-distributed over the unitary group, U U^H = I (rows
    orthonormal when fan_out <= fan_in), per block as in :func:`orthogonal_`. A unitary
    recurrence keeps the hidden state's norm, the point of Arjovsky, Shah & Bengio 2016,
    "Unitary Evolution Recurrent Neural Networks" (and of Henaff et al. 2016's orthogonal
    RNNs). Real tensors get the orthogonal matrix, the real unitary group.

    Example:
        >>> import torch, weightinit
        >>> u = weightinit.unitary_(torch.empty(4, 4, dtype=torch.complex64))
        >>> torch.allclose(u @ u.conj().T, torch.eye(4, dtype=torch.complex64), atol=1e-5)
        True
    """
    check_tensor(tensor, "unitary_", complex_ok=True)
    gain = finite("unitary_", "gain", gain)
    g = geometry(tensor, layout)
    report_std(_orthogonal_std(g, gain), tensor, "unitary_")
    if nothing_to_fill(tensor):
        return tensor
    return _orthogonal_blocks(tensor, g, gain, generator)


def _hadamard(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Sylvester's Hadamard matrix of order n = 2^m: H[i, j] = (-1)^popcount(i & j)."""
    i = torch.arange(n, device=device)
    both = i[:, None] & i[None, :]
    parity = torch.zeros_like(both)
    for bit in range(max(n - 1, 1).bit_length()):
        parity ^= (both >> bit) & 1
    return (1 - 2 * parity).to(dtype)


@register(
    "zer0",
    aliases=("hadamard_identity",),
    formula="W = I* (out <= in); W = 2^(-(m-1)/2) H_m[:out, :in], m = ceil(log2 out) (out > in)",
    activations="ReLU nets and ResNets trained from a deterministic start (ZerO)",
    paper="Zhao, Schaefer & Anandkumar 2021, ZerO Initialization",
)
@torch.no_grad()
def zer0_(
    tensor: torch.Tensor,
    *,
    hadamard: bool = True,
    layout: LayoutLike = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """ZerO's deterministic weights: identities, and Hadamard matrices where the layer widens.

    Formula (Algorithm 1 of Zhao, Schaefer & Anandkumar 2021, "ZerO Initialization:
    Initializing Neural Networks with only Zeros and Ones"), for each (out x in) block:
    W = I when out == in; the partial identity I* (ones on the leading diagonal) when
    out < in; W = c I* H_m I* = c H_m[:out, :in] with m = ceil(log2(out)) and
    c = 2^(-(m-1)/2) when out > in, H_m Sylvester's 2^m x 2^m Hadamard matrix
    (H[i, j] = (-1)^popcount(i & j)). Conv kernels get it at the centre tap, 0 elsewhere, as
    :func:`identity_` does. ``hadamard=False`` widens with the partial identity instead, which
    the paper shows keeps the rank of the features at most the input dimension (the
    "training degeneracy" the Hadamard transform breaks). Nothing is drawn.

    Example:
        >>> import torch
        >>> from weightinit.initializers.structured import zer0_
        >>> (zer0_(torch.empty(4, 2)) * 2**0.5).round().tolist()  # c = 2^(-1/2), m = 2
        [[1.0, 1.0], [1.0, -1.0], [1.0, 1.0], [1.0, -1.0]]
        >>> zer0_(torch.empty(2, 3)).tolist()
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    """
    check_tensor(tensor, "zer0_")
    if not isinstance(hadamard, bool):
        raise TypeError(f"zer0_: `hadamard` must be True or False, got {hadamard!r}")
    g = geometry(tensor, layout)
    if nothing_to_fill(tensor):
        return tensor
    blocks = torch.zeros(g.block_shape, dtype=tensor.dtype, device=tensor.device)
    if hadamard and g.n_out > g.n_in:
        m = math.ceil(math.log2(g.n_out))
        h = _hadamard(2**m, tensor.dtype, tensor.device)[: g.n_out, : g.n_in]
        matrix = h * 2 ** (-(m - 1) / 2)
    else:
        matrix = torch.eye(g.n_out, g.n_in, dtype=tensor.dtype, device=tensor.device)
    blocks[(..., *_centre(g.receptive))] = matrix
    return _write(tensor, g, blocks)
