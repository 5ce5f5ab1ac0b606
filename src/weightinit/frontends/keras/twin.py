"""The torch twin of a Keras 3 graph model: an ``nn.Module`` that computes what the Keras
model computes, layer for layer, with torch's own layers (``nn.Linear``, ``nn.Conv2d``, ...).

The schemes that run or read a model ("auto", "lsuv", critical and SELU nets, Fixup on
residual graphs, the Transformer presets, ``diagnose``) are written once, for torch models;
a Keras model reaches them through its twin, on any Keras backend (the twin runs on the CPU).
Each twin parameter knows its Keras variable and how to move values between the two layouts
(a Dense kernel is torch's weight transposed, a Conv2D kernel ``(kh, kw, in, out)`` is torch's
``(out, in, kh, kw)`` permuted, ...): :attr:`KerasTwin.weights`.

The twin follows the Keras graph (a Sequential's or Functional's nodes, in their order; a
subclassed model's, traced from its ``call`` on a symbolic input);
channels-last convolutions, pooling and batch normalization move the channel axis inside
their own module, so that every tensor between layers has the Keras model's shape. A
``call`` that cannot be traced, and a layer the twin does not know, are errors naming them
(the classic schemes need neither).
"""

from __future__ import annotations

import copy
import functools
import math
import operator
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from weightinit.frontends.keras.activations import torch_activation

__all__ = ["FROZEN", "KerasTwin", "TwinWeight", "graph_of", "to_numpy"]

Convert = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class TwinWeight:
    """A twin parameter's Keras variable and layer, and its value moved to Keras's layout
    and back."""

    variable: Any
    layer: Any
    to_keras: Convert
    to_torch: Convert


def graph_of(model: Any, where: str) -> Any:
    """The Functional graph of a built Sequential, Functional or subclassed ``model``; a
    ValueError that says what to do when there is none.

    A subclassed model's ``call`` is traced once on a symbolic ``keras.Input`` of the shape it
    was built with: each layer it calls records its node, and ``keras.Model(inputs, outputs)``
    holds the graph, sharing the model's layers and variables (cached per model). A ``call``
    that branches on tensor values, or takes several inputs, cannot be traced this way."""
    if isinstance(model, keras.Sequential):
        graph = model._functional
    elif hasattr(model, "_nodes_by_depth"):
        graph = model
    else:
        graph = _traced(model, where)
    if graph is None:
        raise ValueError(
            f"{where}: the Keras model {model.name!r} is a Sequential model without an input "
            "shape, with no graph of layers to run: give it one (keras.Input(shape) as its "
            "first layer), or use a classic scheme (he, orthogonal, lecun, glorot, ...), which "
            "needs no graph"
        )
    return graph


_TRACED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _traced(model: Any, where: str) -> Any:
    """A subclassed model's graph: its ``call`` on a symbolic input (see :func:`graph_of`)."""
    if model in _TRACED:
        return _TRACED[model]
    shapes = list((getattr(model, "_build_shapes_dict", None) or {}).values())
    shape = shapes[0] if len(shapes) == 1 else None
    if not (
        isinstance(shape, (tuple, list)) and all(d is None or isinstance(d, int) for d in shape)
    ):
        raise _untraceable(model, where, f"it was built with {len(shapes)} inputs, not one tensor")
    inputs = keras.Input(shape=tuple(shape[1:]))
    try:
        graph = keras.Model(inputs, model.call(inputs))
    except Exception as err:  # whatever Keras or the user's call raises on a symbolic input
        problem = f"its call() fails on a symbolic input of shape {tuple(shape)}: {err}"
        raise _untraceable(model, where, problem) from err
    _TRACED[model] = graph
    return graph


def _untraceable(model: Any, where: str, problem: str) -> ValueError:
    return ValueError(
        f"{where}: the Keras model {model.name!r} is subclassed and {problem}, so weightinit "
        "cannot follow its layers: build it as a Functional keras.Model(inputs, outputs), or "
        "use a classic scheme (he, orthogonal, lecun, glorot, ...), which needs no graph"
    )


class KerasTwin(nn.Module):
    """A torch module that computes what the Keras graph ``model`` computes, its parameters
    holding the Keras weights' values. ``weights`` maps each twin parameter's name to its
    :class:`TwinWeight`; the twin's submodules are named after the Keras layers.

    Example:
        >>> import keras
        >>> net = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="d")])
        >>> twin = KerasTwin(net)
        >>> twin.d, tuple(twin.weights["d.weight"].variable.shape)  # Keras's kernel: (in, out)
        (Linear(in_features=8, out_features=4, bias=True), (8, 4))
    """

    def __init__(self, model: Any, where: str = "weightinit.keras"):
        super().__init__()
        self._where = where
        self._keras = _Shared(None, [], {})
        self.kinds: dict[str, str] = {}  # a submodule's name -> its Keras layer's class
        steps: list[tuple[Any, Callable[..., Any]]] = []
        graph = graph_of(model, where)
        built: dict[int, Callable[..., Any]] = {}
        for depth in sorted(graph._nodes_by_depth, reverse=True):
            for node in graph._nodes_by_depth[depth]:
                if node.is_input or node.operation is None:
                    continue
                layer = node.operation
                if id(layer) not in built:
                    built[id(layer)] = self._twin_of(layer)
                steps.append((node, built[id(layer)]))
        self._keras.graph, self._keras.steps = graph, steps

    @property
    def weights(self) -> dict[str, TwinWeight]:
        """Each twin tensor's Keras variable (by the twin's name, ``dense.weight``)."""
        return self._keras.weights

    @property
    def input_specs(self) -> list[tuple[tuple[int | None, ...], str]]:
        """(shape, dtype) of each of the Keras model's inputs, the batch axis None."""
        return [(tuple(x.shape), str(x.dtype)) for x in self._keras.graph.inputs]

    def forward(self, *inputs: torch.Tensor) -> Any:
        graph = self._keras.graph
        values = {id(x): y for x, y in zip(graph.inputs, inputs, strict=True)}
        for node, fn in self._keras.steps:
            args, kwargs = node.arguments.fill_in(values)
            out = fn(*args, **kwargs)
            outs = out if isinstance(out, (tuple, list)) else [out]
            for x, y in zip(node.outputs, outs, strict=False):
                values[id(x)] = y
        outputs = [values[id(x)] for x in graph.outputs]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    # --- the layers ------------------------------------------------------------------------

    def _twin_of(self, layer: Any) -> Callable[..., Any]:
        """The torch callable of one Keras layer (or ``keras.ops`` operation); a torch module is
        registered under the layer's name (so ``.eval()`` reaches it), its weights under
        :attr:`weights`."""
        kind = type(layer).__name__
        where = f"{self._where}: layer {layer.name!r} ({kind})"
        if not isinstance(layer, keras.layers.Layer):  # keras.ops on symbolic tensors
            return _operation(layer, where)
        if isinstance(layer, keras.Model):
            inner = KerasTwin(layer, self._where)
            self._add(layer, inner)
            self.weights.update({f"{_key(layer)}.{k}": w for k, w in inner.weights.items()})
            self.kinds.update({f"{_key(layer)}.{k}": v for k, v in inner.kinds.items()})
            return _Call(inner)
        make = _LAYERS.get(kind)
        if make is None:
            if kind in _PASS:
                return _identity
            if kind in _ACTIVATION_LAYERS:
                return _Call(torch_activation(layer, where))
            raise ValueError(
                f"{where}: the torch twin that runs Keras models for this scheme does not know "
                f"{kind} layers; it knows {', '.join(sorted([*_LAYERS, *_PASS, *_ACTIVATION_LAYERS]))}. "
                "Use a classic scheme (he, orthogonal, lecun, glorot, ...), which needs no "
                "forward pass"
            )
        module, weights = make(layer, where)
        if isinstance(module, nn.Module):  # under the layer's name: .eval() reaches it
            self._add(layer, module)
            for leaf, (variable, to_keras, to_torch) in weights.items():
                self.weights[f"{_key(layer)}.{leaf}"] = TwinWeight(
                    variable, layer, to_keras, to_torch
                )
                _load(module, leaf, variable, to_torch)
        activation = getattr(layer, "activation", None)
        if activation is not None and kind.startswith(_ACTIVATED):  # not an LSTM's own
            return _Activated(module, torch_activation(activation, where))
        return _Call(module) if isinstance(module, nn.Module) and kind not in _KEYWORDS else module

    def _add(self, layer: Any, module: nn.Module) -> None:
        key = _key(layer)
        if key in self._modules:
            raise ValueError(
                f"{self._where}: two Keras layers are named {layer.name!r}; name layers uniquely"
            )
        self.add_module(key, module)
        self.kinds[key] = type(layer).__name__


class _Shared:
    """The Keras graph, the twin's steps through it and its weights' Keras variables: not the
    twin's submodules (under the torch backend Keras layers are modules), and shared, not
    copied, by a deep copy of the twin (whose steps call the copy's own modules)."""

    def __init__(self, graph: Any, steps: list, weights: dict[str, TwinWeight]):
        self.graph, self.steps, self.weights = graph, steps, weights

    def __deepcopy__(self, memo: dict) -> _Shared:
        steps = [(node, copy.deepcopy(fn, memo)) for node, fn in self.steps]
        return _Shared(self.graph, steps, self.weights)


def _key(layer: Any) -> str:
    return layer.name.replace(".", "_").replace("/", "_")


def _load(module: nn.Module, leaf: str, variable: Any, to_torch: Convert) -> None:
    """Copy a Keras variable's value into the twin's tensor ``leaf`` (a parameter, or a
    buffer for BatchNormalization's moving statistics); a frozen variable's parameter is
    frozen too."""
    *path, name = leaf.split(".")
    owner = module.get_submodule(".".join(path)) if path else module
    value = torch.from_numpy(np.ascontiguousarray(to_torch(to_numpy(variable.value))))
    target = getattr(owner, name)
    with torch.no_grad():
        target.copy_(value.to(target.dtype))
    if isinstance(target, nn.Parameter):
        target.requires_grad_(bool(variable.trainable))


def to_numpy(value: Any) -> np.ndarray:
    """A Keras variable's value, a backend tensor or an array as a numpy array (a torch
    tensor directly: Keras's conversion goes through numpy's deprecated ``__array__`` path)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(keras.ops.convert_to_numpy(value))


def _identity(x: Any, *args: Any, **kwargs: Any) -> Any:
    return x


class _Call:
    """A torch module or function called with the node's first argument only (Keras's
    training= and mask= keywords dropped)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        self.fn = fn

    def __call__(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.fn(x)


class _Activated:
    """A layer followed by its own activation (Dense(64, activation="relu"))."""

    def __init__(self, module: Callable[..., torch.Tensor], fn: Callable[[torch.Tensor], Any]):
        self.module, self.fn = module, fn

    def __call__(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.fn(self.module(x))


# --- conversions between the layouts ---------------------------------------------------------


def _same(a: np.ndarray) -> np.ndarray:
    return a


def _transpose(a: np.ndarray) -> np.ndarray:
    return a.T


def _conv(n: int) -> tuple[Convert, Convert]:
    """torch (out, in, *k) <-> Keras (*k, in, out); also a transposed convolution's torch
    (in, out, *k) <-> Keras (*k, out, in)."""
    to_keras = (*range(2, n + 2), 1, 0)
    return (lambda a: a.transpose(to_keras)), (lambda a: a.transpose(np.argsort(to_keras)))


def _depthwise(n: int, channels: int, multiplier: int) -> tuple[Convert, Convert]:
    """torch (channels m, 1, *k) <-> Keras (*k, channels, m)."""

    def to_keras(a: np.ndarray) -> np.ndarray:
        k = a.shape[2:]
        return a.reshape(channels, multiplier, *k).transpose(*range(2, n + 2), 0, 1)

    def to_torch(a: np.ndarray) -> np.ndarray:
        k = a.shape[:n]
        moved = a.transpose(n, n + 1, *range(n))
        return moved.reshape(channels * multiplier, 1, *k)

    return to_keras, to_torch


# --- the layers' torch twins -----------------------------------------------------------------

Made = tuple[Callable[..., Any], dict[str, tuple[Any, Convert, Convert]]]


def _channels_first(layer: Any) -> bool:
    return getattr(layer, "data_format", "channels_last") == "channels_first"


def _padded(
    x: torch.Tensor,
    padding: str,
    kernel: tuple,
    strides: tuple,
    dilation: tuple,
    value: float = 0.0,
) -> torch.Tensor:
    """x (channels first) padded as Keras pads, with ``value``: "same" puts the odd pixel at
    the end (as TensorFlow does), "causal" everything at the start."""
    if padding == "valid":
        return x
    pads: list[int] = []
    for size, k, s, d in zip(x.shape[2:], kernel, strides, dilation, strict=True):
        extent = (k - 1) * d + 1
        total = (
            extent - 1
            if padding == "causal"
            else max((math.ceil(size / s) - 1) * s + extent - size, 0)
        )
        before = total if padding == "causal" else total // 2
        pads = [before, total - before, *pads]
    return F.pad(x, pads, value=value)


class _KerasConvolution(nn.Module):
    """Keras's side of a convolution twin: Keras's padding, and the channel axis moved first
    for torch's convolution (``_convolve``) and back."""

    def __init__(self, *args: Any, keras_padding: str, channels_last: bool, **kw: Any):
        super().__init__(*args, **kw)
        self.keras_padding, self.channels_last = keras_padding, channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._convolve(x.movedim(-1, 1) if self.channels_last else x)
        return y.movedim(1, -1) if self.channels_last else y


def _conv_module(base: type) -> type:
    class Conv(_KerasConvolution, base):  # type: ignore[misc, valid-type]
        """A Keras convolution: Keras's "same" and "causal" padding, then torch's."""

        def _convolve(self, x: torch.Tensor) -> torch.Tensor:
            x = _padded(x, self.keras_padding, self.kernel_size, self.stride, self.dilation)
            return base.forward(self, x)

    Conv.__name__ = Conv.__qualname__ = f"Keras{base.__name__}"
    return Conv


_CONVS = {n: _conv_module(base) for n, base in ((1, nn.Conv1d), (2, nn.Conv2d), (3, nn.Conv3d))}


def _conv_layer(layer: Any, where: str) -> Made:
    kernel = layer.kernel
    n = len(kernel.shape) - 2
    depthwise = type(layer).__name__.startswith("DepthwiseConv")
    if depthwise:
        *k, channels, multiplier = (int(s) for s in kernel.shape)
        in_ch, out_ch, groups = channels, channels * multiplier, channels
        convert = _depthwise(n, channels, multiplier)
    else:
        *k, per_group, out_ch = (int(s) for s in kernel.shape)
        groups = int(getattr(layer, "groups", 1))
        in_ch = per_group * groups
        convert = _conv(n)
    module = _CONVS[n](
        in_ch, out_ch, tuple(k), stride=tuple(layer.strides), dilation=tuple(layer.dilation_rate),
        groups=groups, bias=layer.bias is not None, keras_padding=layer.padding,
        channels_last=not _channels_first(layer),
    )  # fmt: skip
    weights = {"weight": (kernel, *convert)}
    if layer.bias is not None:
        weights["bias"] = (layer.bias, _same, _same)
    return module, weights


class _Separable(nn.Module):
    """SeparableConv: a depthwise convolution, then a 1x1 one (Keras's padding and strides
    on the first)."""

    def __init__(self, depthwise: nn.Module, pointwise: nn.Module):
        super().__init__()
        self.depthwise, self.pointwise = depthwise, pointwise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


def _separable(layer: Any, where: str) -> Made:
    *k, channels, multiplier = (int(s) for s in layer.depthwise_kernel.shape)
    n, out = len(k), int(layer.pointwise_kernel.shape[-1])
    last = not _channels_first(layer)
    depthwise = _CONVS[n](
        channels, channels * multiplier, tuple(k), stride=tuple(layer.strides),
        dilation=tuple(layer.dilation_rate), groups=channels, bias=False,
        keras_padding=layer.padding, channels_last=last,
    )  # fmt: skip
    pointwise = _CONVS[n](channels * multiplier, out, (1,) * n, bias=layer.bias is not None,
                          keras_padding="valid", channels_last=last)  # fmt: skip
    weights = {
        "depthwise.weight": (layer.depthwise_kernel, *_depthwise(n, channels, multiplier)),
        "pointwise.weight": (layer.pointwise_kernel, *_conv(n)),
    }
    if layer.bias is not None:
        weights["pointwise.bias"] = (layer.bias, _same, _same)
    return _Separable(depthwise, pointwise), weights


class _KerasLSTM(nn.LSTM):
    """Keras's LSTM (gates i, f, c, o: torch's order): its one bias is torch's bias_ih, and
    bias_hh stays zero and frozen, never planned or written."""

    def __init__(self, *args: Any, sequences: bool, state: bool, backwards: bool, **kw: Any):
        super().__init__(*args, batch_first=True, **kw)
        self.sequences, self.state, self.backwards = sequences, state, backwards
        if self.bias:
            with torch.no_grad():
                self.bias_hh_l0.zero_()
            self.bias_hh_l0.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> Any:  # type: ignore[override]
        out, (h, c) = super().forward(x.flip(1) if self.backwards else x)
        y = out if self.sequences else out[:, -1]
        return [y, h[0], c[0]] if self.state else y


#: a twin tensor with no Keras variable: kept as it is, never planned
FROZEN = ("bias_hh_l0",)


def _lstm(layer: Any, where: str) -> Made:
    cell = layer.cell
    plain = keras.activations.serialize(cell.activation) == "tanh"
    plain &= keras.activations.serialize(cell.recurrent_activation) == "sigmoid"
    if not plain or layer.stateful:
        raise ValueError(
            f"{where}: the twin knows LSTMs with tanh and sigmoid activations (torch's), not "
            "stateful; use a classic scheme"
        )
    fan_in, gates = (int(s) for s in cell.kernel.shape)
    module = _KerasLSTM(
        fan_in, gates // 4, bias=cell.use_bias, sequences=layer.return_sequences,
        state=layer.return_state, backwards=layer.go_backwards,
    )  # fmt: skip
    weights = {
        "weight_ih_l0": (cell.kernel, _transpose, _transpose),
        "weight_hh_l0": (cell.recurrent_kernel, _transpose, _transpose),
    }
    if cell.use_bias:
        weights["bias_ih_l0"] = (cell.bias, _same, _same)
    return module, weights


def _transpose_module(base: type) -> type:
    class ConvTranspose(_KerasConvolution, base):  # type: ignore[misc, valid-type]
        """A Keras transposed convolution: "same" crops the full output to input x stride as
        TensorFlow does (the odd pixel cropped at the end)."""

        def _convolve(self, x: torch.Tensor) -> torch.Tensor:
            sizes = x.shape[2:]
            y = base.forward(self, x)
            if self.keras_padding == "same":
                for axis, (size, k, s) in enumerate(
                    zip(sizes, self.kernel_size, self.stride, strict=True)
                ):
                    before = max(k - s, 0) // 2
                    y = y.narrow(2 + axis, before, min(size * s, y.shape[2 + axis] - before))
                    short = size * s - y.shape[2 + axis]
                    if short > 0:  # a kernel smaller than its stride: zeros at the end
                        pads = [0, 0] * (y.ndim - 3 - axis) + [0, short]
                        y = F.pad(y, pads)
            return y

    ConvTranspose.__name__ = ConvTranspose.__qualname__ = f"Keras{base.__name__}"
    return ConvTranspose


_TRANSPOSES = {
    n: _transpose_module(base)
    for n, base in ((1, nn.ConvTranspose1d), (2, nn.ConvTranspose2d), (3, nn.ConvTranspose3d))
}


def _conv_transpose(layer: Any, where: str) -> Made:
    kernel = layer.kernel
    *k, out_ch, in_ch = (int(s) for s in kernel.shape)
    n = len(k)
    if getattr(layer, "output_padding", None) is not None or any(
        d != 1 for d in layer.dilation_rate
    ):
        raise ValueError(
            f"{where}: the twin knows transposed convolutions without output_padding or dilation"
        )
    module = _TRANSPOSES[n](
        in_ch, out_ch, tuple(k), stride=tuple(layer.strides), bias=layer.bias is not None,
        keras_padding=layer.padding, channels_last=not _channels_first(layer),
    )  # fmt: skip
    weights = {"weight": (kernel, *_conv(n))}  # torch (in, out, *k), Keras (*k, out, in)
    if layer.bias is not None:
        weights["bias"] = (layer.bias, _same, _same)
    return module, weights


def _dense(layer: Any, where: str) -> Made:
    fan_in, units = (int(s) for s in layer.kernel.shape)
    module = nn.Linear(fan_in, units, bias=layer.bias is not None)
    weights = {"weight": (layer.kernel, _transpose, _transpose)}
    if layer.bias is not None:
        weights["bias"] = (layer.bias, _same, _same)
    return module, weights


class _KerasBatchNorm(nn.BatchNorm1d):
    """BatchNormalization over Keras's channel axis (any rank)."""

    def __init__(self, channels: int, axis: int, **kw: Any):
        super().__init__(channels, **kw)
        self.axis = axis

    def _check_input_dim(self, x: torch.Tensor) -> None:
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.movedim(self.axis, 1)).movedim(1, self.axis)


def _batch_norm(layer: Any, where: str) -> Made:
    axis = layer.axis if isinstance(layer.axis, int) else None
    if axis is None or not (layer.center and layer.scale):
        raise ValueError(
            f"{where}: the twin knows BatchNormalization over one axis with center and scale"
        )
    channels = int(layer.moving_mean.shape[0])
    module = _KerasBatchNorm(
        channels, axis, eps=float(layer.epsilon), momentum=1 - float(layer.momentum)
    )
    return module, {
        "weight": (layer.gamma, _same, _same),
        "bias": (layer.beta, _same, _same),
        "running_mean": (layer.moving_mean, _same, _same),
        "running_var": (layer.moving_variance, _same, _same),
    }


class _KerasGroupNorm(nn.GroupNorm):
    """GroupNormalization over Keras's last (channel) axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.movedim(-1, 1)).movedim(1, -1)


def _group_norm(layer: Any, where: str) -> Made:
    if layer.axis != -1 or not (layer.center and layer.scale):
        raise ValueError(f"{where}: the twin knows GroupNormalization over the last axis")
    channels = int(layer.gamma.shape[0])
    module = _KerasGroupNorm(int(layer.groups), channels, eps=float(layer.epsilon))
    return module, {"weight": (layer.gamma, _same, _same), "bias": (layer.beta, _same, _same)}


def _rms_norm(layer: Any, where: str) -> Made:
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    if list(axis) != [-1]:
        raise ValueError(f"{where}: the twin knows RMSNormalization over the last axis")
    module = nn.RMSNorm(int(layer.scale.shape[-1]), eps=float(layer.epsilon))
    return module, {"weight": (layer.scale, _same, _same)}


def _layer_norm(layer: Any, where: str) -> Made:
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    if list(axis) not in ([-1], [len(layer.gamma.shape) - 1]) and len(axis) != 1:
        raise ValueError(f"{where}: the twin knows LayerNormalization over the last axis")
    if getattr(layer, "rms_scaling", False):
        raise ValueError(f"{where}: the twin does not know rms_scaling")
    gamma = getattr(layer, "gamma", None)
    beta = getattr(layer, "beta", None)
    size = int((gamma if gamma is not None else beta).shape[-1])
    module = nn.LayerNorm(size, eps=float(layer.epsilon), bias=beta is not None,
                          elementwise_affine=gamma is not None)  # fmt: skip
    weights = {}
    if gamma is not None:
        weights["weight"] = (gamma, _same, _same)
    if beta is not None:
        weights["bias"] = (beta, _same, _same)
    return module, weights


class _Lookup(nn.Embedding):
    """An Embedding fed Keras's integer (or float-coded) indices."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.long())


def _embedding(layer: Any, where: str) -> Made:
    vocab, dim = (int(s) for s in layer.embeddings.shape)
    return _Lookup(vocab, dim), {"weight": (layer.embeddings, _same, _same)}


class _Attention(nn.Module):
    """Keras's MultiHeadAttention: query, key, value and output projections as Linears."""

    def __init__(self, layer: Any):
        super().__init__()
        self.heads, self.key_dim = int(layer.num_heads), int(layer.key_dim)
        self.value_dim = int(layer.value_dim or layer.key_dim)
        for name in ("query", "key", "value"):
            dense = getattr(layer, f"_{name}_dense")
            d, h, e = (int(s) for s in dense.kernel.shape)
            self.add_module(name, nn.Linear(d, h * e, bias=dense.bias is not None))
        out = layer._output_dense
        h, e, d = (int(s) for s in out.kernel.shape)
        self.attention_output = nn.Linear(h * e, d, bias=out.bias is not None)

    def forward(self, query, value, key=None, attention_mask=None, use_causal_mask=False, **kw):
        key = value if key is None else key
        batch = query.shape[0]

        def heads(x: torch.Tensor, dim: int) -> torch.Tensor:
            return x.reshape(*x.shape[:-1], self.heads, dim).transpose(-2, -3)

        q = heads(self.query(query), self.key_dim)
        k = heads(self.key(key), self.key_dim)
        v = heads(self.value(value), self.value_dim)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.key_dim)
        mask = None
        if attention_mask is not None:
            mask = attention_mask.bool().unsqueeze(-3)
        if use_causal_mask:
            causal = torch.ones(scores.shape[-2:], dtype=torch.bool).tril()
            mask = causal if mask is None else mask & causal
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        mixed = (torch.softmax(scores, dim=-1) @ v).transpose(-2, -3)
        return self.attention_output(mixed.reshape(batch, *mixed.shape[1:-2], -1))


def _attention(layer: Any, where: str) -> Made:
    if len(layer._query_dense.kernel.shape) != 3 or getattr(layer, "_attention_axes", None) not in (
        None,
        (1,),
    ):
        raise ValueError(f"{where}: the twin knows attention over one sequence axis")
    module = _Attention(layer)
    weights: dict[str, tuple[Any, Convert, Convert]] = {}
    for name in ("query", "key", "value", "attention_output"):
        dense = getattr(layer, "_output_dense" if name == "attention_output" else f"_{name}_dense")
        shape = tuple(int(s) for s in dense.kernel.shape)
        if name == "attention_output":  # Keras (h, e, d), torch (d, h e)
            weights[f"{name}.weight"] = (
                dense.kernel, lambda a, s=shape: a.T.reshape(s), lambda a, s=shape: a.reshape(-1, s[-1]).T
            )  # fmt: skip
        else:  # Keras (d, h, e), torch (h e, d)
            weights[f"{name}.weight"] = (
                dense.kernel, lambda a, s=shape: a.T.reshape(s), lambda a, s=shape: a.reshape(s[0], -1).T
            )  # fmt: skip
        if dense.bias is not None:
            bias = tuple(int(s) for s in dense.bias.shape)
            weights[f"{name}.bias"] = (
                dense.bias,
                lambda a, s=bias: a.reshape(s),
                lambda a: a.reshape(-1),
            )
    return module, weights


def _pool(kind: str, layer: Any, where: str) -> Made:
    """Max, average and global pooling, channels last or first."""
    first = _channels_first(layer)
    if kind.startswith("Global"):
        reduce = torch.amax if "Max" in kind else torch.mean
        keep = bool(getattr(layer, "keepdims", False))

        def pool_all(x: torch.Tensor, *args: Any, **kw: Any) -> torch.Tensor:
            axes = tuple(range(2, x.ndim)) if first else tuple(range(1, x.ndim - 1))
            return reduce(x, dim=axes, keepdim=keep)

        return pool_all, {}
    n = int(kind[-2])
    size, strides = tuple(layer.pool_size), tuple(layer.strides or layer.pool_size)
    biggest = kind.startswith("Max")
    fn = getattr(F, f"{'max' if biggest else 'avg'}_pool{n}d")
    ones = (1,) * n

    def pool(x: torch.Tensor, *args: Any, **kw: Any) -> torch.Tensor:
        x = x if first else x.movedim(-1, 1)
        if layer.padding == "valid":
            y = fn(x, size, strides)
        elif biggest:  # "same": the padding never wins a max
            y = fn(_padded(x, "same", size, strides, ones, -math.inf), size, strides)
        else:  # "same": the padding is left out of each average, as TensorFlow does
            total = fn(_padded(x, "same", size, strides, ones), size, strides)
            count = fn(
                _padded(torch.ones_like(x[:1, :1]), "same", size, strides, ones), size, strides
            )
            y = total / count
        return y if first else y.movedim(1, -1)

    return pool, {}


def _shape_op(kind: str, layer: Any, where: str) -> Made:
    if kind == "Flatten":
        return (lambda x, *a, **k: x.flatten(1)), {}
    if kind == "Reshape":
        target = tuple(layer.target_shape)
        return (lambda x, *a, **k: x.reshape(x.shape[0], *target)), {}
    dims = (0, *layer.dims)  # Permute
    return (lambda x, *a, **k: x.permute(dims)), {}


def _merge(kind: str, layer: Any, where: str) -> Made:
    def merge(inputs: list[torch.Tensor], *args: Any, **kw: Any) -> torch.Tensor:
        if kind == "Concatenate":
            return torch.cat(list(inputs), dim=layer.axis)
        out = inputs[0]
        for x in inputs[1:]:
            out = {"Add": torch.add, "Subtract": torch.sub, "Multiply": torch.mul,
                   "Maximum": torch.maximum, "Minimum": torch.minimum, "Average": torch.add}[kind](out, x)  # fmt: skip
        return out / len(inputs) if kind == "Average" else out

    return merge, {}


def _spatial(kind: str, layer: Any, where: str) -> Made:
    """ZeroPadding and Cropping (1D/2D/3D), and nearest-neighbour UpSampling."""
    first = _channels_first(layer)

    def moved(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[..., torch.Tensor]:
        def run(x: torch.Tensor, *args: Any, **kw: Any) -> torch.Tensor:
            y = fn(x if first else x.movedim(-1, 1))
            return y if first else y.movedim(1, -1)

        return run

    if kind.startswith("UpSampling"):
        if getattr(layer, "interpolation", "nearest") != "nearest":
            raise ValueError(f"{where}: the twin knows nearest-neighbour upsampling")
        size = layer.size if isinstance(layer.size, (tuple, list)) else (layer.size,)
        return moved(lambda x: F.interpolate(x, scale_factor=tuple(float(f) for f in size))), {}
    edges = layer.padding if kind.startswith("ZeroPadding") else layer.cropping
    edges = [edges] if isinstance(edges[0], int) else list(edges)  # 1D: (before, after)
    if kind.startswith("ZeroPadding"):
        pads = [int(e) for pair in reversed(edges) for e in pair]
        return moved(lambda x: F.pad(x, pads)), {}

    def crop(x: torch.Tensor) -> torch.Tensor:
        index = [slice(None), slice(None)]
        index += [slice(a, x.shape[2 + i] - b) for i, (a, b) in enumerate(edges)]
        return x[tuple(index)]

    return moved(crop), {}


class _LayerScale(nn.Module):
    """A layer scale (CaiT; keras.applications' ConvNeXt LayerScale): x times gamma."""

    def __init__(self, size: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


def _layer_scale(layer: Any, where: str) -> Made:
    gamma = layer.gamma
    return _LayerScale(int(gamma.shape[-1])), {"gamma": (gamma, _same, _same)}


def _rescaling(layer: Any, where: str) -> Made:
    scale, offset = layer.scale, layer.offset
    if not all(isinstance(v, (int, float)) for v in (scale, offset)):
        raise ValueError(f"{where}: the twin knows Rescaling by a scalar scale and offset")
    return (lambda x, *a, **k: x * float(scale) + float(offset)), {}


def _normalization(layer: Any, where: str) -> Made:
    """Keras's preprocessing Normalization, with its adapted (or given) mean and variance."""
    if layer.mean is None or layer.invert:
        raise ValueError(f"{where}: the twin knows an adapted Normalization that does not invert")
    mean = torch.from_numpy(np.asarray(to_numpy(layer.mean), dtype=np.float32))
    std = torch.from_numpy(np.asarray(to_numpy(layer.variance), dtype=np.float32)).sqrt()
    std = std.clamp_min(keras.backend.epsilon())
    return (lambda x, *a, **k: (x - mean) / std), {}


def _dropout(layer: Any, where: str) -> Made:
    rate = float(getattr(layer, "rate", 0.0))
    kind = type(layer).__name__
    return (nn.AlphaDropout(rate) if kind == "AlphaDropout" else nn.Dropout(rate)), {}


# --- keras.ops called on a functional model's symbolic tensors (x + 3.0, ops.relu6(x)) ----------


def _axis(op: Any) -> Any:
    axis = getattr(op, "axis", None)
    return tuple(axis) if isinstance(axis, list) else axis


_OPERATIONS: dict[str, Callable[[Any], Callable[..., Any]]] = {
    "Add": lambda op: operator.add,
    "Subtract": lambda op: operator.sub,
    "Multiply": lambda op: operator.mul,
    "Divide": lambda op: operator.truediv,
    "TrueDivide": lambda op: operator.truediv,
    "Power": lambda op: operator.pow,
    "Matmul": lambda op: torch.matmul,
    "Maximum": lambda op: lambda a, b: torch.maximum(torch.as_tensor(a), torch.as_tensor(b)),
    "Minimum": lambda op: lambda a, b: torch.minimum(torch.as_tensor(a), torch.as_tensor(b)),
    "Negative": lambda op: torch.neg,
    "Abs": lambda op: torch.abs,
    "Square": lambda op: torch.square,
    "Sqrt": lambda op: torch.sqrt,
    "Exp": lambda op: torch.exp,
    "Log": lambda op: torch.log,
    "Tanh": lambda op: torch.tanh,
    "Relu": lambda op: F.relu,
    "Relu6": lambda op: F.relu6,
    "Sigmoid": lambda op: torch.sigmoid,
    "HardSigmoid": lambda op: F.hardsigmoid,
    "HardSilu": lambda op: F.hardswish,
    "Silu": lambda op: F.silu,
    "Selu": lambda op: F.selu,
    "Softplus": lambda op: F.softplus,
    "Elu": lambda op: functools.partial(F.elu, alpha=float(op.alpha)),
    "LeakyRelu": lambda op: functools.partial(
        F.leaky_relu, negative_slope=float(op.negative_slope)
    ),
    "Gelu": lambda op: functools.partial(F.gelu, approximate="tanh" if op.approximate else "none"),
    "Softmax": lambda op: functools.partial(
        torch.softmax, dim=op.axis if isinstance(op.axis, int) else -1
    ),
    "Mean": lambda op: lambda x: x.mean(dim=_axis(op), keepdim=bool(op.keepdims)),
    "Sum": lambda op: lambda x: x.sum(dim=_axis(op), keepdim=bool(op.keepdims)),
    "Reshape": lambda op: lambda x: x.reshape(tuple(op.newshape)),
    "Transpose": lambda op: (
        lambda x: x.permute(op.axes) if op.axes is not None else x.permute(*reversed(range(x.ndim)))
    ),
    "ExpandDims": lambda op: lambda x: x.unsqueeze(op.axis),
    "Squeeze": lambda op: lambda x: x.squeeze(op.axis) if op.axis is not None else x.squeeze(),
    "Concatenate": lambda op: lambda xs: torch.cat(list(xs), dim=op.axis),
}


def _operation(op: Any, where: str) -> Callable[..., Any]:
    """The torch function of a ``keras.ops`` operation in the graph (not a layer)."""
    make = _OPERATIONS.get(type(op).__name__)
    if make is None:
        raise ValueError(
            f"{where}: the torch twin does not know the operation {type(op).__name__}; it knows "
            f"{', '.join(sorted(_OPERATIONS))}. Use a classic scheme (he, orthogonal, lecun, "
            "glorot, ...), which needs no forward pass"
        )
    fn = make(op)

    def run(*args: Any, **kwargs: Any) -> Any:
        return fn(*args)

    return run


_LAYERS: dict[str, Callable[[Any, str], Made]] = {
    "Dense": _dense,
    **{f"Conv{n}D": _conv_layer for n in (1, 2, 3)},
    **{f"DepthwiseConv{n}D": _conv_layer for n in (1, 2)},
    **{f"SeparableConv{n}D": _separable for n in (1, 2)},
    **{
        f"{k}{n}D": (lambda layer, where, k=f"{k}{n}D": _spatial(k, layer, where))
        for k in ("ZeroPadding", "Cropping", "UpSampling")
        for n in (1, 2, 3)
    },
    "Rescaling": _rescaling,
    "LayerScale": _layer_scale,
    "Normalization": _normalization,
    "BatchNormalization": _batch_norm,
    "LayerNormalization": _layer_norm,
    "GroupNormalization": _group_norm,
    "RMSNormalization": _rms_norm,
    **{f"Conv{n}DTranspose": _conv_transpose for n in (1, 2, 3)},
    "Embedding": _embedding,
    "LSTM": _lstm,
    "MultiHeadAttention": _attention,
    "Dropout": _dropout,
    "SpatialDropout1D": _dropout,
    "SpatialDropout2D": _dropout,
    "AlphaDropout": _dropout,
    **{
        f"{p}Pooling{n}D": (lambda layer, where, k=f"{p}Pooling{n}D": _pool(k, layer, where))
        for p in ("Max", "Average", "GlobalMax", "GlobalAverage")
        for n in (1, 2, 3)
    },
    **{
        k: (lambda layer, where, k=k: _shape_op(k, layer, where))
        for k in ("Flatten", "Reshape", "Permute")
    },
    **{
        k: (lambda layer, where, k=k: _merge(k, layer, where))
        for k in ("Add", "Subtract", "Multiply", "Maximum", "Minimum", "Average", "Concatenate")
    },
}
# layers whose twin is followed by the layer's ``activation`` (Dense(64, activation="relu"))
_ACTIVATED = ("Dense", "Conv", "DepthwiseConv", "SeparableConv")
_KEYWORDS = {"MultiHeadAttention"}  # twins that take the node's other arguments
_PASS = {"InputLayer", "GaussianNoise", "GaussianDropout", "ActivityRegularization", "Identity"}
_PASS |= {"StochasticDepth"}  # keras.applications' ConvNeXt: identity at inference
_ACTIVATION_LAYERS = {"Activation", "ReLU", "LeakyReLU", "ELU", "Softmax"}
