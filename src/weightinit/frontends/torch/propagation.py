"""The torch front end of "auto": the signal's (mean, variance) carried through a torch execution
trace, one map per op family (torch functions, methods and ``torch.nn`` modules), anything else
measured on Gaussian input; and the Gaussian stand-in batch of the stabilizing sweep.

Statistics are taken over a tensor's finite entries, additive attention masks left out
(:data:`MASKED`), and a non-finite signal is an error, never passed on. On the meta device the
trace has shapes and no values: the maps need none, and a measured op runs on CPU stand-ins
(:meth:`_Propagation._gaussian_args`, :meth:`_Propagation._stand_in`).

The rules (:class:`~weightinit.scheme.auto.AutoOptions`, the layer and recurrent rules, the
moment maps of activations, dropout and pooling) are the scheme's, in
:mod:`weightinit.scheme.auto`; this module knows which torch op is which.
"""

from __future__ import annotations

import copy
import math
import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from weightinit._checks import is_number
from weightinit._gc import collector_paused
from weightinit.initializers.catalog import get
from weightinit.initializers.fills import capture
from weightinit.scheme.auto import (
    INPUT_SHARE,
    Analysis,
    AutoOptions,
    Fixed,
    Prediction,
    Residual,
    Signal,
    recurrent_rule,
    through_activation,
    through_average,
    through_dropout,
    through_maximum,
)
from weightinit.scheme.protocol import Choice, Options
from weightinit.understanding.graph import Graph, Node, _classify, leaves, live, map_tensors
from weightinit.understanding.knowledge import (
    Kinds,
    describe,
    read_back_embeddings,
    stored,
    stored_name,
)

__all__ = ["STABILIZING_SAMPLES", "batch_first", "gaussian_like", "input_statistics", "propagate"]


# --- op families ------------------------------------------------------------------------------

_SHAPE_FUNCTIONS = {
    torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.permute,
    torch.transpose, operator.getitem, torch.chunk, torch.split, torch.unbind,
}  # fmt: skip
_SHAPE_METHODS = {
    "view", "reshape", "flatten", "permute", "transpose", "contiguous", "squeeze", "unsqueeze",
    "__getitem__", "unflatten", "clone", "to", "float", "double", "half", "type_as", "mT", "T",
    "t", "expand", "expand_as", "repeat", "chunk", "split", "unbind", "view_as", "detach",
    "narrow", "movedim", "swapaxes",
}  # fmt: skip
_SHAPE_MODULES = (nn.Flatten, nn.Unflatten, nn.Identity)
_ADD = {"add", "__add__", "__radd__", "__iadd__", "add_"}
_SUB = {"sub", "__sub__", "__isub__", "sub_", "subtract"}
_RSUB = {"__rsub__", "rsub"}
_MUL = {"mul", "__mul__", "__rmul__", "__imul__", "mul_", "multiply"}
_DIV = {"div", "__truediv__", "__itruediv__", "div_", "true_divide"}
_NEG = {"neg", "__neg__", "negative", "neg_"}
_CAT = {torch.cat, torch.concat, torch.concatenate, torch.stack, torch.hstack, torch.vstack}
_DROPOUT_FUNCTIONS = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d}
_AVG_POOL = {F.avg_pool1d, F.avg_pool2d, F.avg_pool3d}
_MAX_POOL = {F.max_pool1d, F.max_pool2d, F.max_pool3d}
_ADAPTIVE_AVG = {F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d}
_ADAPTIVE_MAX = {F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d}
_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
_LINEAR_LAYERS = (nn.Linear, nn.modules.conv._ConvNd, nn.Bilinear)


def _member(func: Any, group: set) -> bool:
    try:
        return func in group
    except TypeError:  # unhashable callables
        return False


#: additive attention masks: an entry at or below MASKED times the root mean square of the
#: tensor's other entries (at least 1), or -inf, masks its position. After a softmax it weighs
#: exactly 0, e^-1000 underflowing even in float64; masks use -inf, the dtype's minimum, -1e9
#: or -1e4.
MASKED = -1e3


def _masked(t: torch.Tensor) -> torch.Tensor | None:
    """Where floating-point ``t`` holds additive-mask entries (see :data:`MASKED`); None when
    it holds none (or has no values: the meta device)."""
    if t.is_meta or not t.is_floating_point():
        return None
    x = t.detach()
    low = x <= MASKED
    if not low.any():
        return None
    rest = x[~low & torch.isfinite(x)].double()
    scale = max(1.0, float(rest.square().mean().sqrt())) if rest.numel() else 1.0
    low = x <= MASKED * scale
    return low if low.any() else None


def _tensor_stats(t: torch.Tensor) -> Signal | None:
    """(mean, variance) of the entries that carry signal: finite, not additive-mask entries
    (an all-masked or empty tensor is the zero signal); None without values (meta) or when
    none is finite."""
    if t.is_meta:
        return None
    x = t.detach().double()
    keep = torch.isfinite(x)
    masked = _masked(t)
    if masked is None and x.numel() and x.is_contiguous() and not x.storage_offset() and keep.all():
        x = x.reshape(-1)  # every entry: x[keep] would copy them all, in this order
    else:
        if masked is not None:
            keep &= ~masked
        if not keep.any():
            return Signal(0.0, 0.0) if masked is not None or not x.numel() else None
        x = x[keep]
    return Signal(float(x.mean()), float(x.var(unbiased=False)))


def _window(dims: Any, ndim: int) -> int:
    """Elements in a pooling window: ``kernel_size`` as an int (per spatial dim) or tuple."""
    if isinstance(dims, int):
        return dims**ndim
    return math.prod(dims)


class _Propagation:
    def __init__(
        self,
        model: nn.Module,
        graph: Graph,
        example_input: Any,
        auto: AutoOptions,
        options: Options,
        fixed: Fixed,
    ):
        self.model, self.graph, self.auto, self.options = model, graph, auto, options
        self.read_back = read_back_embeddings(model)
        self.param_names = {id(p): n for n, p in model.named_parameters()}
        self.fixed = fixed
        self.names = {m: n for n, m in model.named_modules()}
        self.signals: list[Signal | None] = []
        self.notes: list[tuple[str, ...]] = []  # what was measured since the last layer
        self.analysis = Analysis()
        self.seen: dict[nn.Module, dict[str, float]] = {}  # layer -> E[W^2] per weight
        self.predicted: set[nn.Module] = set()  # layers whose first call is recorded
        self.current_notes: tuple[str, ...] = ()
        self.example_input = example_input
        self.generator = torch.Generator().manual_seed(0)
        # the user's input tensors and their names, also by the ids of the meta copies the
        # trace of a meta model ran on
        self.given = _named_inputs(example_input)
        traced = leaves(graph.nodes[0].args, torch.Tensor) if graph.nodes else []
        for copied, given in zip(traced, leaves(example_input, torch.Tensor)):
            self.given.setdefault(id(copied), self.given[id(given)])
        self.alive = live(graph)
        self.analysis.residual = Residual.find(model, graph, auto)
        self.moments: dict = {}  # through_activation's, per (activation, mean, variance)
        self.inputs: dict[int, Signal] = {}  # the statistics of input tensors, by id
        self.draws: dict = {}  # unit draws of _choice, per (initializer, shape, dtype, layout)

    # --- driver ---

    def run(self) -> Analysis:
        for index, node in enumerate(self.graph.nodes):
            notes = tuple(dict.fromkeys(n for i in node.inputs for n in self.notes[i]))
            self.current_notes = notes
            # statistics for Python control flow (``if h.mean() > 0:``) reach no layer
            signal = self._map(node) if self.alive[index] else None
            if signal is not None and not (math.isfinite(signal.mean) and signal.var < math.inf):
                raise ValueError(
                    f"auto: the signal after {_called(node)} is not finite (mean {signal.mean}, "
                    f"variance {signal.var}); give the layers after it rules=, or skip them"
                )
            self.signals.append(signal)
            self.notes.append(self.current_notes)
        return self.analysis

    def _input(self, node: Node, k: int = 0) -> Signal | None:
        """The signal of the k-th traced tensor argument of ``node``."""
        if k >= len(node.sources):
            return None
        src = node.sources[k]
        if src is not None and self.graph.nodes[src].kind == "input":
            tensor = leaves([*node.args, *node.kwargs.values()], torch.Tensor)[k]
            return self._input_stats(tensor)
        if src is None:  # made outside the trace; on the meta device it has no values
            tensor = leaves([*node.args, *node.kwargs.values()], torch.Tensor)[k]
            if not tensor.is_floating_point():
                return None
            return self._planned_raw(tensor) or _tensor_stats(tensor)
        return self.signals[src]

    def _map(self, node: Node) -> Signal | None:
        if node.kind == "input":
            return self._input_signal()
        if node.name == "the output" or node.target is None:
            return None
        if not any(s is not None and self.signals[s] is not None for s in node.sources):
            if node.kind == "module" and _is_layer(node.target):
                return self._layer(node)  # embeddings take integer inputs
            return None
        if node.kind == "module":
            return self._module(node)
        return self._function(node)

    def _input_signal(self) -> Signal | None:
        """The first floating-point input's statistics (each input is measured on its own
        where it is used)."""
        floats = [t for t in leaves(self.example_input, torch.Tensor) if t.is_floating_point()]
        if not floats:
            return None
        found = self._input_stats(floats[0])
        if found.var == 0 and found.mean == 0:
            raise ValueError(
                f"auto: {self.given[id(floats[0])][1]} is all zeros, so it says nothing about "
                "the signal; pass a representative batch, or input_mean=/input_std="
            )
        return found

    def _input_stats(self, tensor: torch.Tensor) -> Signal | None:
        """The statistics of an input tensor (the user's, not the meta copy traced), measured
        once."""
        given, name = self.given.get(id(tensor), (tensor, "`example_input`"))
        if not given.is_floating_point():
            return None
        if id(given) not in self.inputs:
            self.inputs[id(given)] = input_statistics(given, self.auto, name)
        return self.inputs[id(given)]

    # --- modules ---

    def _module(self, node: Node) -> Signal | None:
        m = node.target
        x = self._input(node)
        if _is_layer(m):
            return self._layer(node)
        if isinstance(m, _SHAPE_MODULES):
            return x
        if isinstance(m, nn.modules.dropout._DropoutNd) and not isinstance(m, nn.AlphaDropout):
            return through_dropout(x, m.p if m.training else 0.0)
        if isinstance(m, nn.AlphaDropout):
            return x  # keeps a SELU signal's mean and variance (Klambauer et al. 2017)
        if isinstance(m, nn.modules.pooling._AvgPoolNd):
            return through_average(x, _window(m.kernel_size, _spatial(m)))
        if isinstance(m, nn.modules.pooling._MaxPoolNd):
            return through_maximum(x, _window(m.kernel_size, _spatial(m)))
        if isinstance(m, nn.modules.pooling._AdaptiveAvgPoolNd):
            return through_average(x, self._pooled_count(node))
        if isinstance(m, nn.modules.pooling._AdaptiveMaxPoolNd):
            return through_maximum(x, self._pooled_count(node))
        if isinstance(m, _NORMS):
            return self._norm(node, m, x)
        if isinstance(m, nn.RMSNorm):
            scale = self._norm_scale(m)
            mean = x.mean / math.sqrt(max(x.second, 1e-30)) * scale  # x / rms(x): E[y^2] = 1
            return Signal(mean, scale * scale - mean * mean, x.shared)
        kind, act = _classify(node)
        if kind == "activation":
            return through_activation(act, x, self.moments)
        return self._measure(node, f"{type(m).__name__} (measured on Gaussian input)")

    def _norm(self, node: Node, m: nn.Module, x: Signal) -> Signal:
        scale = self._norm_scale(m)
        shift = 0.0
        if getattr(m, "bias", None) is not None:
            got = self.fixed(self._param_name(m, "bias"))
            shift = 0.0 if got is None else got[0]
        if (
            isinstance(m, nn.modules.batchnorm._NormBase)
            and not m.training
            and m.track_running_stats
        ):
            # eval mode normalizes with the running statistics, not the batch's (on the meta
            # device they have no values: torch's reset ones, mean 0 and variance 1)
            meta = m.running_mean.is_meta
            mean = 0.0 if meta else float(m.running_mean.double().mean())
            var = (1.0 if meta else float(m.running_var.double().mean())) + m.eps
            y_mean = (x.mean - mean) / math.sqrt(var) * scale + shift
            return Signal(y_mean, x.var / var * scale**2, x.shared)
        return Signal(shift, scale * scale, x.shared)

    def _norm_scale(self, m: nn.Module) -> float:
        if getattr(m, "weight", None) is None:
            return 1.0
        got = self.fixed(self._param_name(m, "weight"))
        return self.options.norm_scale if got is None else math.sqrt(got[1])

    def _pooled_count(self, node: Node) -> int:
        tensors = leaves([*node.args], torch.Tensor)
        out = self._output_numel(node)
        return max(1, round(tensors[0].numel() / out)) if tensors and out else 1

    def _output_numel(self, node: Node) -> int:
        found = self._measure_output(node)
        return found.numel() if found is not None else 0

    # --- functions ---

    def _function(self, node: Node) -> Signal | None:
        func, name = node.target, node.name
        x = self._input(node)
        method = getattr(torch.Tensor, name, None) is func
        if _member(func, _SHAPE_FUNCTIONS) or (method and name in _SHAPE_METHODS):
            return x
        if name in _ADD | _SUB | _RSUB | _MUL | _DIV | _NEG and "alpha" not in node.kwargs:
            found = self._arithmetic(node, name)
            if found is not None:
                return found
        elif _member(func, _CAT):
            return self._concat(node)
        elif _member(func, _DROPOUT_FUNCTIONS):
            training = node.kwargs.get("training", node.args[2] if len(node.args) > 2 else True)
            p = node.kwargs.get("p", node.args[1] if len(node.args) > 1 else 0.5)
            return through_dropout(x, p if training else 0.0)
        elif _member(func, _AVG_POOL | _MAX_POOL):
            kernel = node.kwargs.get("kernel_size", node.args[1] if len(node.args) > 1 else 1)
            k = _window(kernel, int(name[-2]))
            return through_average(x, k) if _member(func, _AVG_POOL) else through_maximum(x, k)
        elif _member(func, _ADAPTIVE_AVG | _ADAPTIVE_MAX):
            k = self._pooled_count(node)
            return through_average(x, k) if _member(func, _ADAPTIVE_AVG) else through_maximum(x, k)
        else:
            kind, act = _classify(node)
            if kind == "activation":
                return through_activation(act, x, self.moments)
        return self._measure(node, f"{name} (measured on Gaussian input)")

    def _operand(self, node: Node, value: Any, index: int) -> Signal | None:
        """The statistics of an arithmetic operand: a traced signal, a constant tensor or a
        number; None when unknown."""
        if isinstance(value, torch.Tensor):
            position = [i for i, t in enumerate(leaves(list(node.args), torch.Tensor))
                        if t is value]  # fmt: skip
            if not position:
                return None
            return self._input(node, position[0])
        if is_number(value):
            return Signal(float(value), 0.0)
        return None

    def _arithmetic(self, node: Node, name: str) -> Signal | None:
        args = list(node.args)
        if name in _NEG:
            a = self._operand(node, args[0], 0)
            return None if a is None else Signal(-a.mean, a.var, a.shared)
        if len(args) < 2:
            return None
        a, b = self._operand(node, args[0], 0), self._operand(node, args[1], 1)
        if a is None or b is None:
            return None
        if name in _RSUB:
            a, b = b, a
        var = a.var + b.var
        shared = (a.shared * a.var + b.shared * b.var) / var if var > 0 else 0.0
        if name in _ADD:
            return Signal(a.mean + b.mean, var, shared)
        if name in _SUB | _RSUB:
            return Signal(a.mean - b.mean, var, shared)
        if name in _MUL:
            mean = a.mean * b.mean
            return Signal(mean, a.second * b.second - mean * mean, max(a.shared, b.shared))
        if b.var == 0 and b.mean != 0:  # division by a constant
            return Signal(a.mean / b.mean, a.var / b.mean**2, a.shared)
        return None

    def _concat(self, node: Node) -> Signal | None:
        tensors = leaves(list(node.args[:1]) or list(node.kwargs.values())[:1], torch.Tensor)
        total, mean, second = 0, 0.0, 0.0
        for k, t in enumerate(tensors):
            s = self._input(node, k)
            if s is None:
                return self._measure(node, f"{node.name} (measured)")
            total += t.numel()
            mean += t.numel() * s.mean
            second += t.numel() * s.second
        if total == 0:
            return None
        mean, second = mean / total, second / total
        return Signal(mean, second - mean * mean)

    # --- weighted layers ---

    def _param_name(self, module: nn.Module, leaf: str) -> str:
        prefix = self.names[module]
        return f"{prefix}.{leaf}" if prefix else leaf

    def _layer(self, node: Node) -> Signal | None:
        m = node.target
        if isinstance(m, nn.MultiheadAttention):
            out = self._attention(node, m)
        elif isinstance(m, (nn.RNNBase, nn.RNNCellBase)):
            out = self._recurrent(node, m)
        elif isinstance(m, (nn.Embedding, nn.EmbeddingBag)):
            out = self._embedding(node, m)
        else:
            out = self._linear(node, m)
        if m not in self.predicted and out is not None:
            x = self._input(node)
            self.analysis.predictions.append(
                Prediction(
                    self.names[m],
                    type(m).__name__,
                    out.mean,
                    out.std,
                    None if x is None else x.mean,
                    None if x is None else x.std,
                    "; ".join(self.current_notes) or "analytic",
                )
            )
            self.predicted.add(m)
        self.current_notes = ()
        return out

    def _why(self, x: Signal) -> str:
        measured = (
            f"; measured on the way: {', '.join(self.current_notes)}" if self.current_notes else ""
        )
        return f"input mean {x.mean:.3g}, std {x.std:.3g}{measured}"

    def _weight(self, module: nn.Module, leaf: str, w2: float, reason: str) -> float:
        """Choose E[W^2] = ``w2`` for ``module.leaf`` (unless the plan fixed it); the E[W^2]
        the layer will have."""
        name = self._param_name(module, leaf)
        fixed = self.fixed(name)
        if fixed is not None:
            return fixed[1]
        known = self.seen.setdefault(module, {})
        if leaf in known:  # second use of a shared layer: keep the first choice
            return known[leaf]
        param = stored(module, leaf)
        info = describe(module, stored_name(module, leaf))
        self.analysis.choices[name] = self._choice(param, info.layout, w2, reason)
        known[leaf] = w2
        return w2

    def _choice(self, param: torch.Tensor, layout, w2: float, reason: str) -> Choice:
        if w2 == 0:  # a residual branch's output layer under residual="zero"
            return Choice("zeros", {}, reason)
        dist = self.auto.distribution
        if dist == "orthogonal":
            unit = self._unit_draw("orthogonal", param, layout)
            gain = math.sqrt(w2) / unit.std
            return Choice("orthogonal", {"gain": gain}, f"{reason}; orthogonal, gain {gain:.4g}")
        fan_in = self._unit_draw("lecun_normal", param, layout).std ** -2
        args = {"scale": w2 * fan_in, "mode": "fan_in", "distribution": dist}
        return Choice("variance_scaling", args, f"{reason}; Var(W) = {w2:.4g}")

    def _unit_draw(self, init: str, param: torch.Tensor, layout):
        """The Draw of ``init`` without arguments for ``param``: one per shape and layout."""
        key = (init, tuple(param.shape), param.dtype, layout)
        if key not in self.draws:
            self.draws[key] = capture(get(init), param.shape, param.dtype, {}, layout)
        return self.draws[key]

    def _bias(self, module: nn.Module, leaf: str = "bias") -> tuple[float, float]:
        """(mean, second moment) of a bias."""
        if module._parameters.get(leaf) is None:
            return 0.0, 0.0
        fixed = self.fixed(self._param_name(module, leaf))
        return fixed if fixed is not None else (self.options.bias, self.options.bias**2)

    def _linear(self, node: Node, m: nn.Module) -> Signal | None:
        x = self._input(node)
        if x is None:
            return None
        q = x.second
        if isinstance(m, nn.Bilinear):
            x2 = self._input(node, 1)
            q, fan = q * (x2.second if x2 is not None else q), m.in1_features * m.in2_features
        elif isinstance(m, nn.modules.conv._ConvNd):
            fan = self._connections(node, m)
        else:
            fan = m.in_features
        target, residual = self._target(m)
        if q <= 0:
            raise ValueError(
                f"auto: the input of layer {self.names[m]!r} is predicted to be all zeros (a "
                "zero-initialized layer before it?), so no weight variance can reach the "
                "target; give it a rule, or skip it"
            )
        why = f"{self._why(x)}{residual}: Var(W) = {target:g} / (fan {fan:.4g} x E[x^2] {q:.3g})"
        w2 = self._weight(m, "weight", target / (fan * q), why)
        b_mean, b_second = self._bias(m)
        # W (mean + deviation): W mean is the same at every position, so the mean's part of
        # E[x^2] becomes variance all positions share
        shared = (x.shared * x.var + x.mean * x.mean) / q
        return Signal(b_mean, w2 * fan * q + b_second - b_mean * b_mean, shared)

    def _target(self, m: nn.Module) -> tuple[float, str]:
        """The output variance auto gives layer ``m`` and why: the target, or what option
        ``residual`` gives a residual branch's output layer (:class:`Residual`)."""
        if self.analysis.residual is None:
            return self.auto.target_var, ""
        return self.analysis.residual.target(self.names[m], self.signals, self.auto.target_var)

    def _connections(self, node: Node, m: nn.Module) -> float:
        """The mean number of inputs each output of a conv sums, padding and stride included:
        the conv of an all-ones input with all-ones weights, averaged."""
        x = leaves([*node.args], torch.Tensor)[0]
        dtype = m.weight.dtype  # on the CPU: the model may be on the meta device
        ones = torch.ones(x.shape, dtype=dtype)
        params = {"weight": torch.ones(m.weight.shape, dtype=dtype)}
        if m.bias is not None:
            params["bias"] = torch.zeros(m.bias.shape, dtype=dtype)
        with torch.no_grad():
            out = torch.func.functional_call(m, params, (ones,))
        return float(out.double().mean())

    def _embedding(self, node: Node, m: nn.Module) -> Signal:
        target = self.auto.target_var
        head = self.read_back.get(self._param_name(m, "weight"))
        if head is None:
            w2 = self._weight(m, "weight", target, f"embedding: Var = {target:g}")
            return Signal(0.0, w2)
        # read back by an output head: scaled for the logits, Var = target / d (as
        # classic.read_back); the calibrating sweep sets it on the logits
        d = m.weight.shape[-1]
        why = f"embedding read back by the output head {head[0]}: Var = {target:g} / d, d = {d}"
        return Signal(0.0, self._weight(m, "weight", target / d, why))

    def _attention(self, node: Node, m: nn.MultiheadAttention) -> Signal | None:
        q, k, v = (self._input(node, i) for i in range(3))
        q = q or Signal(0.0, 1.0)
        k, v = k or q, v or q
        e = m.embed_dim
        target, residual = self._target(m.out_proj)
        why = f"{self._why(q)}; q, k at unit variance"
        if m.in_proj_weight is not None:  # packed: one variance for q, k and v
            second = (q.second + k.second + v.second) / 3
            w2 = self._weight(m, "in_proj_weight", 1.0 / (e * second), why)
            wq = wk = wv = w2
        else:
            wq = self._weight(m, "q_proj_weight", 1.0 / (e * q.second), why)
            wk = self._weight(m, "k_proj_weight", 1.0 / (m.kdim * k.second), why)
            wv = self._weight(m, "v_proj_weight", 1.0 / (m.vdim * v.second), why)
        key_dim = m.kdim if m.in_proj_weight is None else e
        value_dim = m.vdim if m.in_proj_weight is None else e
        # the logits of one query vary over the keys only through what the keys do not share
        logit_var = (wq * e * q.second) * (wk * key_dim * k.second) * (1.0 - k.shared)
        concentration, keys = self._concentration(node, m, logit_var)
        value_second = wv * value_dim * v.second
        # an average of the values: their shared part passes whole, the rest shrinks by
        # E[sum a^2]; across queries the averages share that part and ~ 1/keys of the rest
        averaged = v.shared + (1.0 - v.shared) * concentration
        attended = value_second * averaged / (1.0 - (m.dropout if m.training else 0.0))
        shared = min(1.0, (v.shared + (1.0 - v.shared) / keys) / averaged)
        out_why = (
            f"attention averages values: E[sum a^2] = {concentration:.3g}, shared by the "
            f"tokens {v.shared:.2g}{residual}; Var(W) = {target:g} / (E {e} x {attended:.3g})"
        )
        w2 = self._weight(m.out_proj, "weight", target / (e * attended), out_why)
        b_mean, b_second = self._bias(m.out_proj)
        return Signal(b_mean, w2 * e * attended + b_second - b_mean**2, shared)

    def _concentration(
        self, node: Node, m: nn.MultiheadAttention, logit_var: float
    ) -> tuple[float, int]:
        """E[sum_j a_j^2] of softmax weights over the traced keys, logits ~ N(0, logit_var),
        and the number of keys."""
        args = list(node.args) + [None] * 3
        query = args[0]
        key = args[1] if args[1] is not None else node.kwargs.get("key", query)
        if query.dim() == 3:
            length, keys = (query.shape[1], key.shape[1]) if m.batch_first else (
                query.shape[0], key.shape[0])  # fmt: skip
        else:
            length, keys = query.shape[0], key.shape[0]
        mask = node.kwargs.get("attn_mask", args[5] if len(node.args) > 5 else None)
        if mask is not None and mask.is_meta:
            mask = None  # no values on the meta device: taken as no mask
        if mask is None and node.kwargs.get("is_causal", False):
            mask = torch.ones(length, keys, dtype=torch.bool).triu(1)
        samples = max(4, 2**18 // max(length * keys, 1))
        logits = torch.randn(samples, length, keys, generator=self.generator, dtype=torch.float64)
        logits = logits * math.sqrt(logit_var)
        if mask is not None:
            mask = mask.detach().reshape(-1, length, keys)[0].to("cpu")
            logits = logits.masked_fill(mask, -math.inf) if mask.dtype == torch.bool else (
                logits + mask.double())  # fmt: skip
        a = torch.softmax(logits, dim=-1)
        rows = (a * a).sum(-1)
        return float(rows[torch.isfinite(rows)].mean()), int(keys)

    def _recurrent(self, node: Node, m: nn.Module) -> Signal | None:
        x = self._input(node)
        if x is None:
            return None
        cell = isinstance(m, nn.RNNCellBase)
        mode = _recurrent_mode(m)
        v, share = self.auto.target_var, INPUT_SHARE
        layers = 1 if cell else m.num_layers
        suffixes = [""] if cell else [
            f"_l{layer}{d}" for layer in range(layers)
            for d in ([""] + (["_reverse"] if m.bidirectional else []))
        ]  # fmt: skip
        directions = 1 if cell else (2 if m.bidirectional else 1)
        q_in, mean_h, q_h = x.second, 0.0, 0.0
        for index, suffix in enumerate(suffixes):
            gate_bias = self._gate_biases(m, suffix, mode)
            fan = getattr(m, "weight_ih" + suffix).shape[1]
            gain, mean_h, q_h = recurrent_rule(mode, v, gate_bias, m.hidden_size, fan, share)
            why = (
                f"{self._why(Signal(0.0, q_in))}; gate pre-activation variance {v:g}, "
                f"{share:.0%} from the input: Var(W_ih) = {share * v:g} / (fan {fan} x E[x^2] "
                f"{q_in:.3g})"
            )
            self._weight(m, "weight_ih" + suffix, share * v / (fan * q_in), why)
            hidden_in = q_h
            if getattr(m, "proj_size", 0):
                self._weight(
                    m, "weight_hr" + suffix, 1.0 / m.hidden_size,
                    f"LSTM projection: Var = 1 / hidden {m.hidden_size}",
                )  # fmt: skip
            rec_why = (
                f"stationary hidden state E[h^2] = {hidden_in:.3g}: recurrent gain^2 = "
                f"{1 - share:g} x {v:g} / E[h^2] (orthogonal per gate)"
            )
            self._recurrent_weight(m, "weight_hh" + suffix, gain * gain, rec_why)
            if (index + 1) % directions == 0:
                q_in = q_h
        return Signal(mean_h, q_h - mean_h * mean_h)

    def _recurrent_weight(self, m: nn.Module, leaf: str, gain2: float, why: str) -> None:
        name = self._param_name(m, leaf)
        if self.fixed(name) is not None or leaf in self.seen.setdefault(m, {}):
            return
        param = stored(m, leaf)
        layout = describe(m, stored_name(m, leaf)).layout
        if self.options.recurrent == "scheme":
            self.analysis.choices[name] = self._choice(param, layout, gain2 / param.shape[1], why)
        else:
            init = self.options.recurrent  # "orthogonal", "unitary" or "identity" (catalog names)
            gain = math.sqrt(gain2)
            self.analysis.choices[name] = Choice(init, {"gain": gain}, f"{why}: gain {gain:.4g}")
        self.seen[m][leaf] = gain2

    def _gate_biases(self, m: nn.Module, suffix: str, mode: str) -> dict[str, float]:
        gates = {"LSTM": "ifgo", "GRU": "rzn"}.get(mode, "h")
        total = {g: 0.0 for g in gates}
        for leaf in ("bias_ih" + suffix, "bias_hh" + suffix):
            param = m._parameters.get(leaf)
            if param is None:
                continue
            fixed = self.fixed(self._param_name(m, leaf))
            if fixed is not None and param.is_meta:  # no values: the mean the plan settled
                values = [fixed[0]] * len(gates)
            elif fixed is not None:
                values = param.detach().double().reshape(len(gates), -1).mean(1).tolist()
            else:
                first = leaf.startswith("bias_ih")
                values = [self.options.bias if first else 0.0] * len(gates)
                if mode == "LSTM" and self.options.forget_bias is not None:
                    values[1] = self.options.forget_bias if first else 0.0
            for g, value in zip(gates, values):
                total[g] += value
        return total

    # --- measuring what has no map ---

    def _gaussian_args(self, node: Node):
        """The node's arguments with every traced signal replaced by Gaussian noise of its
        statistics (additive-mask entries kept). On the meta device everything is a CPU
        stand-in: tensors without values are zeros (False)."""
        index = iter(range(len(node.sources)))

        def replace(value: torch.Tensor) -> torch.Tensor:
            k = next(index)
            s = self._input(node, k) if node.sources[k] is not None else None
            if s is None and value.is_floating_point():
                s = self._planned_raw(value)
            if s is None or not value.is_floating_point():
                return torch.zeros(value.shape, dtype=value.dtype) if value.is_meta else value
            noise = torch.randn(value.shape, generator=self.generator, dtype=torch.float64)
            return _keep_masked(value, (s.mean + s.std * noise).to(value.dtype))

        return map_tensors(tuple(node.args), replace), map_tensors(dict(node.kwargs), replace)

    def _planned_raw(self, value: torch.Tensor) -> Signal | None:
        """The statistics of a raw parameter used functionally (``x + pos_embed``,
        ``x * gamma``) as the plan will draw it: its reference initialization (the knowledge
        table's), not the values it holds now (a trained table, NaN, or none on the meta
        device); None for any other tensor, and for a raw parameter the plan leaves alone
        (skipped, frozen, by a rule)."""
        name = self.param_names.get(id(value))
        if name is None or self.fixed(name) is not None:
            return None
        info = describe(self.model, name)
        if info is None or info.kind != Kinds.RAW:
            return None
        init, args, _ = info.torch_default
        draw = capture(get(init), tuple(value.shape), value.dtype, args, info.layout)
        if draw is None:
            return None
        mean = (draw.low + draw.high) / 2 if draw.kind == "uniform" else draw.mean
        return Signal(mean, draw.std**2)

    def _with_planned_raw(self, module: nn.Module) -> nn.Module:
        """``module``, or a copy of it whose raw parameters (timm's ``LayerScale.gamma``) hold
        draws of their planned statistics, as :meth:`_planned_raw` gives them."""
        planned = {n: self._planned_raw(p) for n, p in module.named_parameters()}
        planned = {n: s for n, s in planned.items() if s is not None}
        if not planned:
            return module
        copied = copy.deepcopy(module)
        with torch.no_grad():
            for name, param in copied.named_parameters():
                if name in planned:
                    s = planned[name]
                    noise = torch.randn(param.shape, generator=self.generator, dtype=torch.float64)
                    param.copy_(s.mean + s.std * noise)
        return copied

    def _stand_in(self, module: nn.Module) -> nn.Module:
        """A CPU copy of a module on the meta device, to measure it: each parameter mean +-
        std with random signs, from the moments the plan settled for it (settle takes a meta
        parameter's as mean 0, E[x^2] 1; the signs make E[x^2] exact for mean 0), buffers
        zeros. Its own generator: the measurements after it draw what they draw on the CPU."""
        copied = copy.deepcopy(module).to_empty(device="cpu")
        prefix = f"{self.names[module]}." if self.names[module] else ""
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for name, param in copied.named_parameters():
                mean, second = self.fixed(prefix + name) or (0.0, 1.0)
                signs = torch.randint(0, 2, param.shape, generator=generator) * 2 - 1
                param.copy_(mean + math.sqrt(max(second - mean * mean, 0.0)) * signs)
            for buffer in copied.buffers():
                buffer.zero_()
        return copied

    def _measure_output(self, node: Node) -> torch.Tensor | None:
        args, kwargs = self._gaussian_args(node)
        target = node.target
        buffers = {}
        if isinstance(target, nn.Module):
            if any(t.is_meta for t in [*target.parameters(), *target.buffers()]):
                target = self._stand_in(target)
            else:
                target = self._with_planned_raw(target)
            buffers = {b: b.clone() for b in target.buffers()}
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                out = target(*args, **kwargs)
        finally:
            with torch.no_grad():
                for b, saved in buffers.items():
                    b.copy_(saved)
        tensors = [t for t in leaves(out, torch.Tensor) if t.is_floating_point()]
        return tensors[0] if tensors else None

    def _measure(self, node: Node, note: str) -> Signal | None:
        out = self._measure_output(node)
        if out is None:
            return None
        found = _tensor_stats(out)
        if found is None:
            given = ", ".join(
                f"mean {s.mean:.3g}, std {s.std:.3g}" if s is not None else "as traced"
                for s in (self._input(node, k) for k in range(len(node.sources)))
            )
            raise ValueError(
                f"auto: {_called(node)} gives no finite value on Gaussian input ({given}), "
                "so its output statistics cannot be measured; give the layers after it "
                "rules=, or skip them"
            )
        self.current_notes = (*self.current_notes, note)
        return found


def _called(node: Node) -> str:
    """A node for the errors: "layer 'blocks.0.norm' (LayerNorm)", "scaled_dot_product_attention"."""
    if node.kind == "module":
        return f"layer {node.name!r} ({type(node.target).__name__})"
    return node.name


def _is_layer(m: nn.Module) -> bool:
    return isinstance(
        m,
        (*_LINEAR_LAYERS, nn.MultiheadAttention, nn.RNNBase, nn.RNNCellBase, nn.Embedding,
         nn.EmbeddingBag),
    )  # fmt: skip


def _recurrent_mode(m: nn.Module) -> str:
    if isinstance(m, nn.RNNBase):
        return m.mode
    if isinstance(m, nn.LSTMCell):
        return "LSTM"
    if isinstance(m, nn.GRUCell):
        return "GRU"
    return "RNN_TANH" if m.nonlinearity == "tanh" else "RNN_RELU"


def _spatial(m: nn.Module) -> int:
    name = type(m).__name__
    return int(name[-2]) if name[-2].isdigit() else 1


STABILIZING_SAMPLES = 1024


def input_statistics(
    tensor: torch.Tensor, auto: AutoOptions, where: str = "`example_input`"
) -> Signal:
    """An input's (mean, variance): as the options give them, else measured on its finite
    entries (-inf and additive-mask entries, :data:`MASKED`, are masks, not signal). ``where``
    names the tensor in the errors: NaN or +inf in it, or no values (the meta device)."""
    mean, var = auto.input_mean, None if auto.input_std is None else float(auto.input_std) ** 2
    if mean is None or var is None:
        if tensor.is_meta:
            raise ValueError(
                f"auto: {where} is on the meta device, so it has no values to measure; pass a "
                "real batch (on the CPU; the model may stay on the meta device), or give its "
                "statistics with input_mean= and input_std="
            )
        bad = torch.isnan(tensor) | torch.isposinf(tensor)
        if bad.any():
            raise ValueError(
                f"auto: {where} contains {int(bad.sum())} NaN or +inf value(s) (first at index "
                f"{tuple(bad.nonzero()[0].tolist())}), so its statistics are undefined; pass a "
                "finite batch, or give them with input_mean= and input_std="
            )
        measured = _tensor_stats(tensor)
        mean = measured.mean if mean is None else mean
        var = measured.var if var is None else var
    return Signal(float(mean), var)


def gaussian_like(
    example_input: Any, auto: AutoOptions, samples: int | None = None, seed: int = 12345
) -> Any:
    """``example_input`` with every floating-point tensor replaced by i.i.d. N(mean, var) of its
    own statistics (:func:`input_statistics`; integer inputs, e.g. token ids, are kept, tiled
    like the rest): the batch of the "auto"
    scheme's stabilizing sweep. With ``samples``, the leading (batch) axis is tiled up to at
    least that many samples.

    Why the sweep: the analytic variances are right in expectation over the weights, but one
    network's drawn weights deviate from it by O(1/sqrt(width)) per layer, and the length map
    q -> Var(W) fan E[phi(sqrt(q) z)^2] carries deviations on with slope
    d ln E[phi^2] / d ln q at the fixed point: 1 for ReLU (a random walk), 0.46 for tanh and
    0.78 for SELU (they die out), but 1.14 for GELU and 1.17 for SiLU, where they grow
    1.17-fold per layer. No data-free choice of scales can prevent that in a depth-100 GELU or
    SiLU net; rescaling each drawn layer once on a Gaussian stand-in for the input does. In
    such nets each sample's scale drifts on its own, so the stand-in has many samples (1024):
    the scale it sets is the population's, not one small batch's.
    """
    generator = torch.Generator().manual_seed(seed)

    names = _named_inputs(example_input)

    def replace(value: torch.Tensor) -> torch.Tensor:
        name = names[id(value)][1]
        if samples and value.ndim > 1 and value.shape[0] < samples:
            value = value.repeat(-(-samples // value.shape[0]), *[1] * (value.ndim - 1))
        if not value.is_floating_point():
            return value
        signal = input_statistics(value, auto, name)
        noise = torch.randn(value.shape, generator=generator, dtype=torch.float64)
        return _keep_masked(value, (signal.mean + signal.std * noise).to(value.dtype))

    return map_tensors(example_input, replace)


def _named_inputs(example_input: Any) -> dict[int, tuple[torch.Tensor, str]]:
    """The tensors of ``example_input`` by id, each with its name in the errors."""
    given = leaves(example_input, torch.Tensor)
    one = len(given) < 2
    return {
        id(t): (t, "`example_input`" if one else f"tensor {k} of `example_input`")
        for k, t in enumerate(given)
    }


def _keep_masked(value: torch.Tensor, stand_in: torch.Tensor) -> torch.Tensor:
    """``stand_in`` (on the CPU) for ``value``, on ``value``'s device, with ``value``'s additive
    mask entries kept: a mask is structure, not signal. On the meta device: the CPU stand-in."""
    if value.is_meta:
        return stand_in
    masked = _masked(value)
    stand_in = stand_in.to(value.device)
    return stand_in if masked is None else torch.where(masked, value, stand_in)


def batch_first(model: nn.Module) -> bool:
    """Is the leading input axis surely the batch? Not when an attention or recurrent module
    reads its input sequence-first (``batch_first=False``, torch's default)."""
    return all(
        getattr(m, "batch_first", True)
        for m in model.modules()
        if isinstance(m, (nn.MultiheadAttention, nn.RNNBase))
    )


def propagate(
    model: nn.Module,
    graph: Graph,
    example_input: Any,
    auto: AutoOptions,
    options: Options,
    fixed: Fixed,
) -> Analysis:
    """Carry (mean, variance) through ``graph`` (an execution trace of ``model`` on
    ``example_input``) and choose the weights auto sets. ``fixed(name)`` gives (mean, E[x^2])
    of parameters the plan already settled (rules, skip, frozen, tied), or None."""
    if graph.method != "execution":
        raise ValueError("auto: needs an execution trace (pass example_input)")
    with collector_paused():  # see weightinit._gc
        return _Propagation(model, graph, example_input, auto, options, fixed).run()
