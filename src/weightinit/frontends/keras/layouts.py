"""Where the outputs and inputs of Keras 3 kernels lie: the :class:`~weightinit.Layout` of every
kernel layout Keras uses, so that fans (and every structured initializer) are right for each.

Keras stores kernels inputs-first: a Dense kernel is ``(in, out)``, a convolution's is
``(*kernel_size, in / groups, out)``. Its own initializers compute fans from the last two axes
alone (``keras.initializers.VarianceScaling``: fan_in = shape[-2] x receptive field, fan_out =
shape[-1] x receptive field), which is right for Dense and plain convolutions and wrong or
coarse for the rest:

======================  ==============================  =================  ==================
layer (weight)          shape                           weightinit's fans  Keras's own fans
======================  ==============================  =================  ==================
Dense                   (in, out)                       in, out            in, out
Conv2D, groups g        (kh, kw, in/g, out)             k in/g, k out/g    k in/g, k out
DepthwiseConv2D         (kh, kw, in, m)                 k, k m             k in, k m
SeparableConv2D depthw. (kh, kw, in, m)                 k, k m             k in, k m
SeparableConv2D pointw. (1, 1, in m, out)               in m, out          in m, out
Conv2DTranspose         (kh, kw, out, in)               k in, k out        k out, k in
LSTM kernel             (in, 4u)                        in, u (per gate)   in, 4u
LSTM recurrent_kernel   (u, 4u)                         u, u (per gate)    u, 4u
GRU (recurrent_)kernel  (in or u, 3u)                   in or u, u         in or u, 3u
MultiHeadAttention q/k/v (d, heads, head_dim)           d, heads head_dim  heads d, head_dim
MultiHeadAttention out  (heads, head_dim, d)            heads head_dim, d  heads head_dim, d
Embedding               (vocab, dim)                    1, dim (per row)   vocab, dim
EinsumDense ab,bcd->acd (b, c, d)                       b, c d             b c, d
======================  ==============================  =================  ==================

(k is the receptive field, kh kw.) The grouped convolution's fan_out counts each group's own
outputs; an Embedding row is looked up alone, so, as in the torch front end, each row is its
own block with one input.
"""

from __future__ import annotations

from weightinit.initializers.layout import Layout

__all__ = ["KINDS", "keras_fans", "keras_layout"]

#: the kernel layouts :func:`keras_layout` knows, with what each is
KINDS = {
    "dense": "Dense kernel (in, out); also a plain convolution's (*k, in, out)",
    "conv": "Conv1D/2D/3D kernel (*k, in / groups, out)",
    "depthwise": "DepthwiseConv kernel, or SeparableConv's depthwise kernel (*k, in, multiplier)",
    "conv_transpose": "Conv1D/2D/3DTranspose kernel (*k, out, in)",
    "recurrent": "an RNN's kernel (in, gates u) or recurrent kernel (u, gates u), gates stacked",
    "attention_in": "MultiHeadAttention's query, key or value kernel (d, heads, head_dim)",
    "attention_out": "MultiHeadAttention's output kernel (heads, head_dim, d)",
    "embedding": "Embedding (vocabulary, dim): each row its own block",
    "einsum": "an EinsumDense kernel (equation=): inputs the axes it contracts, outputs the rest",
    "elementwise": "a bias, norm scale or other vector: every axis an output",
}


def keras_layout(
    kind: str,
    shape: tuple[int, ...],
    *,
    groups: int = 1,
    gates: int = 1,
    equation: str | None = None,
) -> Layout:
    """The :class:`~weightinit.Layout` of a Keras kernel of ``kind`` (see :data:`KINDS`) and
    ``shape``. ``groups``: a grouped convolution's groups; ``gates``: an RNN's stacked gates
    (LSTM 4, GRU 3, SimpleRNN 1); ``equation``: an EinsumDense's (``"abc,cde->abde"``: the
    kernel's axis ``c`` is summed over, an input; ``d`` and ``e`` are outputs). The query,
    key, value and output kernels of MultiHeadAttention are EinsumDense kernels.

    Example:
        >>> from weightinit import fans
        >>> import torch
        >>> lstm = keras_layout("recurrent", (32, 4 * 32), gates=4)  # LSTM(32).recurrent_kernel
        >>> fans(torch.empty(32, 128), lstm)
        (32, 32)
        >>> fans(torch.empty(3, 3, 16, 2), keras_layout("depthwise", (3, 3, 16, 2)))
        (9, 18)
    """
    n = len(shape)
    if kind not in KINDS:
        raise ValueError(f"keras_layout: unknown kind {kind!r}; the kinds: {', '.join(KINDS)}")
    if kind == "einsum":
        return _einsum(equation, shape)
    if kind == "elementwise" or n < 2:  # an RNN's gate bias: its gates are blocks
        return Layout.elementwise(n, blocks=gates)
    if kind in ("dense", "conv"):
        return Layout(out_axes=(n - 1,), in_axes=(n - 2,), groups=groups, group_axis=n - 1)
    if kind == "depthwise":  # a grouped convolution with one input channel per group
        return Layout(out_axes=(n - 2, n - 1), in_axes=(), groups=shape[n - 2], group_axis=n - 2)
    if kind == "conv_transpose":
        return Layout(out_axes=(n - 2,), in_axes=(n - 1,))
    if kind == "recurrent":
        return Layout(out_axes=(1,), in_axes=(0,), blocks=gates, block_axis=1)
    if kind == "attention_in":
        return Layout(out_axes=tuple(range(1, n)), in_axes=(0,))
    if kind == "attention_out":
        return Layout(out_axes=(n - 1,), in_axes=tuple(range(n - 1)))
    return Layout(out_axes=(1,), in_axes=(0,), blocks=shape[0], block_axis=0)  # embedding


def _einsum(equation: str | None, shape: tuple[int, ...]) -> Layout:
    inputs, _, output = (equation or "").replace(" ", "").partition("->")
    source, _, kernel = inputs.partition(",")
    if not output or len(kernel) != len(shape) or "." in equation:
        raise ValueError(
            f"keras_layout: an einsum kernel of shape {shape} needs its EinsumDense equation "
            f"(input,kernel->output, one letter per kernel axis), got {equation!r}"
        )
    summed = tuple(i for i, axis in enumerate(kernel) if axis in source and axis not in output)
    kept = tuple(i for i, axis in enumerate(kernel) if axis in output)
    return Layout(out_axes=kept, in_axes=summed)


def keras_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """Keras's own fans of a kernel of ``shape`` (``VarianceScaling``'s rule: the last two axes,
    times the receptive field), for comparison."""
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = 1
    for size in shape[:-2]:
        receptive *= size
    return shape[-2] * receptive, shape[-1] * receptive
