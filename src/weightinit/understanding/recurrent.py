"""Recurrent layers read from the inside: the gate pre-activations of an RNN, LSTM or GRU (and
their cells), recomputed from the layer's input and hidden states. LSUV calibrates RNNs on them
and diagnostics report them."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence

__all__ = ["layer_suffixes", "recurrent_preactivations"]


def layer_suffixes(module: nn.RNNBase) -> list[str]:
    """The suffixes of a stacked RNN's parameters, per layer and direction: _l0, _l0_reverse, ..."""
    directions = ("", "_reverse") if module.bidirectional else ("",)
    return [f"_l{layer}{d}" for layer in range(module.num_layers) for d in directions]


def _flat_weights(module: nn.RNNBase, suffix: str) -> list[torch.Tensor]:
    """One layer and direction's parameters in the order torch's RNN kernels take them."""
    kinds = ["weight_ih", "weight_hh"]
    kinds += ["bias_ih", "bias_hh"] if module.bias else []
    kinds += ["weight_hr"] if module.proj_size else []
    return [getattr(module, k + suffix) for k in kinds]


def _gates(module: nn.Module, x, h, suffix: str = "") -> torch.Tensor:
    """W_ih x + b_ih + W_hh h + b_hh (a GRU's candidate gate: the argument of its tanh)."""
    w_ih, w_hh = getattr(module, "weight_ih" + suffix), getattr(module, "weight_hh" + suffix)
    b_ih, b_hh = (
        getattr(module, "bias_ih" + suffix, None),
        getattr(module, "bias_hh" + suffix, None),
    )
    gi, gh = F.linear(x, w_ih, b_ih), F.linear(h, w_hh, b_hh)
    if not isinstance(module, (nn.GRU, nn.GRUCell)):
        return gi + gh
    n = gi.shape[-1] // 3  # gates r, z, n: n = tanh(gi_n + r * gh_n)
    r = torch.sigmoid(gi[..., :n] + gh[..., :n])
    return torch.cat(
        [gi[..., : 2 * n] + gh[..., : 2 * n], gi[..., 2 * n :] + r * gh[..., 2 * n :]], -1
    )


_KERNELS = {
    "LSTM": torch.lstm,
    "GRU": torch.gru,
    "RNN_TANH": torch.rnn_tanh,
    "RNN_RELU": torch.rnn_relu,
}


def recurrent_preactivations(
    module: nn.RNNBase | nn.RNNCellBase, x: torch.Tensor, hx: Any = None
) -> list[torch.Tensor]:
    """The gate pre-activations of an RNN, LSTM or GRU (or of their cells) on input ``x`` with
    initial state ``hx``, given as the module's forward takes them (``None``: zeros).

    Formula: a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh for every layer and direction, with
    x_t the layer's input and h_{t-1} its previous hidden state (the next one for the reverse
    direction; h_0 from ``hx``); for a GRU's candidate gate, the argument of its tanh,
    W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn). Each layer is rerun with torch's own RNN
    kernel for its hidden states, which are also the next layer's input; the pre-activations
    then take two matrix products per layer and direction. LSUV (Mishkin & Matas 2016, "All
    you need is a good init") calibrates RNNs on them.

    Returns one tensor per layer and direction in the order l0, l0_reverse, l1, ..., each
    (seq_len, batch, gates x hidden), time first also for ``batch_first`` modules (a cell:
    one tensor shaped like its gates). Packed sequences are not supported.

    Example:
        >>> import torch
        >>> from weightinit.understanding.recurrent import recurrent_preactivations
        >>> lstm = torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True)
        >>> [tuple(a.shape) for a in recurrent_preactivations(lstm, torch.randn(7, 2, 3))]
        [(7, 2, 20), (7, 2, 20), (7, 2, 20), (7, 2, 20)]
    """
    if isinstance(x, PackedSequence):
        raise TypeError("recurrent_preactivations: packed sequences are not supported; pad them")
    if isinstance(module, nn.RNNCellBase):
        h = hx[0] if isinstance(hx, tuple) else hx
        return [
            _gates(module, x, x.new_zeros(*x.shape[:-1], module.hidden_size) if h is None else h)
        ]
    batched = x.ndim == 3
    x = (x.transpose(0, 1) if module.batch_first else x) if batched else x.unsqueeze(1)
    layers, directions = module.num_layers, 2 if module.bidirectional else 1
    lstm = module.mode == "LSTM"
    if hx is None:
        size = (layers * directions, x.shape[1])
        h0 = x.new_zeros(*size, module.proj_size or module.hidden_size)
        hx = (h0, x.new_zeros(*size, module.hidden_size)) if lstm else h0
    elif not batched:
        hx = tuple(h.unsqueeze(1) for h in hx) if lstm else hx.unsqueeze(1)
    h0 = hx[0] if lstm else hx
    suffixes = layer_suffixes(module)
    result = []
    for layer in range(layers):
        block = slice(layer * directions, (layer + 1) * directions)
        mine = suffixes[block]
        state = tuple(h[block] for h in hx) if lstm else hx[block]
        weights = [w for suffix in mine for w in _flat_weights(module, suffix)]
        out = _KERNELS[module.mode](
            x, state, weights, module.bias, 1, 0.0, False, directions == 2, False
        )[0]
        size = out.shape[-1] // directions
        for d, suffix in enumerate(mine):
            h = out[..., d * size : (d + 1) * size]
            first = h0[layer * directions + d].unsqueeze(0)
            previous = torch.cat([first, h[:-1]]) if d == 0 else torch.cat([h[1:], first])
            result.append(_gates(module, x, previous, suffix))
        x = out
    return result if batched else [a.squeeze(1) for a in result]
