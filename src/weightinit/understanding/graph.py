"""The model as a graph of calls, and which activation follows each weighted layer.

Two ways to get the graph, one analysis over it:

- ``torch.fx`` symbolic tracing, when the model traces and no example input is given;
- an execution trace on ``example_input``: forward hooks on the model's modules and a
  ``TorchFunctionMode`` that sees every torch function and tensor method called between them,
  so models with Python control flow work too.

A module is one node (*atomic*) when it has no submodules or holds parameters of its own
(Linear, Conv, MultiheadAttention, ...); containers are looked through. From each weighted
node, :func:`followers` walks forward through the ops that keep the signal's shape
(dropout, pooling, reshapes, normalization) to the first activation, if any.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from weightinit._gc import collector_paused
from weightinit.initializers.activations import Activation, activation
from weightinit.understanding.knowledge import is_conventional

__all__ = [
    "Follower",
    "Graph",
    "ModelError",
    "Node",
    "follower",
    "followers",
    "live",
    "shapes",
    "trace",
]


@dataclass
class Node:
    """One call: a module (``target`` is the module), a function or tensor method, or the input."""

    kind: str  # "input" | "module" | "function"
    target: Any
    name: str  # module qualified name, or the function's name
    inputs: list[int]  # nodes producing this call's tensor arguments
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    tensor_position: int = 0  # where the first traced tensor sits in args
    users: list[int] = field(default_factory=list)
    # execution traces: the producer of every tensor in [*args, *kwargs.values()], in order
    # (None: a tensor made outside the trace, e.g. a parameter used functionally)
    sources: list[int | None] = field(default_factory=list)
    # what :func:`_classify` found for this call, computed once: settle's followers and auto's
    # propagation both ask
    classified: tuple[str, Activation | None] | None = field(
        default=None, init=False, repr=False, compare=False
    )


@dataclass
class Graph:
    nodes: list[Node]
    method: str  # "fx" or "execution"
    # what an execution trace ran on when the user gave no input (for the plan's notes)
    traced_on: str = ""
    # :func:`live`, computed once (every follower walk and the propagation ask); reset by add
    alive: list[bool] | None = field(default=None, init=False, repr=False, compare=False)

    def add(self, node: Node) -> int:
        self.nodes.append(node)
        self.alive = None
        index = len(self.nodes) - 1
        for i in node.inputs:
            self.nodes[i].users.append(index)
        return index


def is_atomic(module: nn.Module) -> bool:
    """Modules traced as one call: leaves, and modules that hold parameters themselves (a
    MultiheadAttention's in_proj_weight), except raw parameters known by their conventional
    names (a ViT's cls_token and pos_embed, a ConvNeXt block's layer scale), which a container
    adds or multiplies in: its layers are traced inside it."""
    if not module._modules:
        return True
    own = module._parameters
    return any(p is not None and not is_conventional(module, n) for n, p in own.items())


# --- the execution trace -----------------------------------------------------------------------

_IGNORED = {torch.Tensor.size, torch.Tensor.dim, torch.Tensor.numel, torch.Tensor.__len__}


class _Recorder(TorchFunctionMode):
    def __init__(self, graph: Graph):
        super().__init__()
        self.graph = graph
        self.producer: dict[int, int] = {}  # id(tensor) -> node
        self.keep: list[torch.Tensor] = []  # keeps traced tensors alive, so ids stay unique
        self.depth = 0  # > 0 inside an atomic module: its inner calls are not nodes

    def mark(self, value: Any, node: int) -> None:
        for t in _tensors(value):
            self.producer[id(t)] = node
            self.keep.append(t)

    def sources(self, args: tuple, kwargs: dict) -> tuple[list[int], int, list[int | None]]:
        """The distinct producing nodes, where the first traced tensor sits, and the producer
        of every tensor argument."""
        found, position, each = [], -1, []
        for i, value in enumerate([*args, *kwargs.values()]):
            for t in _tensors(value):
                node = self.producer.get(id(t))
                each.append(node)
                if node is not None and node not in found:
                    found.append(node)
                    position = i if position < 0 else position
        return found, max(position, 0), each

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth == 0 and func not in _IGNORED and _tensors(out):
            inputs, position, each = self.sources(args, kwargs)
            if inputs:
                name = getattr(func, "__name__", repr(func))
                node = Node("function", func, name, inputs, args, kwargs, position, sources=each)
                self.mark(out, self.graph.add(node))
        return out


def leaves(value: Any, cls: type) -> list:
    """The instances of ``cls`` in ``value``, looking into lists, tuples and dicts."""
    if isinstance(value, cls):
        return [value]
    if isinstance(value, (list, tuple)):
        return [leaf for v in value for leaf in leaves(v, cls)]
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in leaves(v, cls)]
    return []


def map_tensors(value: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """``value`` with every tensor ``t`` in it replaced by ``fn(t)``, looking into lists, tuples
    and dicts in the order of :func:`leaves`."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, (list, tuple)):
        return type(value)(map_tensors(v, fn) for v in value)
    if isinstance(value, dict):
        return {k: map_tensors(v, fn) for k, v in value.items()}
    return value


def arguments(batch: Any) -> tuple[tuple, dict]:
    """How a batch is passed to a model, ``model(*args, **kwargs)``: a tuple is the positional
    arguments; a dict is the keyword arguments (``model(**batch)``, the way Hugging Face models
    take ``input_ids=...``, ``pixel_values=...``; the ``dummy_inputs`` they carry are such
    dicts); anything else is the one positional argument.

    Example:
        >>> import torch
        >>> from weightinit.understanding.graph import arguments
        >>> ids = torch.zeros(2, 5, dtype=torch.long)
        >>> [arguments(b)[1].keys() for b in ({"input_ids": ids},)], len(arguments((ids, ids))[0])
        ([dict_keys(['input_ids'])], 2)
        >>> arguments(ids)[0][0] is ids
        True
    """
    if isinstance(batch, dict):
        return (), dict(batch)
    return (batch if isinstance(batch, tuple) else (batch,)), {}


def _tensors(value: Any) -> list[torch.Tensor]:
    return leaves(value, torch.Tensor)


class ModelError(ValueError, RuntimeError):
    """The model raised on the input it was traced on; the message names the innermost module
    that was running and the shapes of its inputs. A ValueError (the input does not fit the
    model), and a RuntimeError for callers that catch torch's own errors."""


def shapes(value: Any) -> str:
    """The shapes of the tensors in ``value``, for messages: "shape (4, 7)", "shapes (4, 7),
    (4,)", "no tensor"."""
    found = [str(tuple(t.shape)) for t in _tensors(value)]
    if not found:
        return "no tensor"
    return f"shape{'s' if len(found) > 1 else ''} {', '.join(found)}"


def _execution_trace(model: nn.Module, example_input: Any) -> Graph:
    graph = Graph([], "execution")
    recorder = _Recorder(graph)
    modules = list(model.named_modules())
    names = {id(m): n for n, m in modules}
    atomic = {id(m): is_atomic(m) for _, m in modules}  # asked twice per call
    handles = []
    running: list[tuple[nn.Module, Any]] = []  # the modules being called, innermost last

    def pre(module, args, kwargs):
        running.append((module, (args, kwargs)))
        if atomic[id(module)]:
            recorder.depth += 1

    def post(module, args, kwargs, output):
        while running and running.pop()[0] is not module:
            pass  # calls that raised and were caught inside the forward pass
        if not atomic[id(module)]:
            return
        recorder.depth -= 1
        if recorder.depth == 0:
            inputs, position, each = recorder.sources(args, kwargs)
            node = Node(
                "module", module, names[id(module)], inputs, args, kwargs, position, sources=each
            )
            recorder.mark(output, graph.add(node))

    for _, module in modules:
        handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(module.register_forward_hook(post, with_kwargs=True))
    inputs, named = arguments(example_input)
    try:
        root = graph.add(Node("input", None, "input", [], (*inputs, *named.values()), named))
        recorder.mark((inputs, named), root)
        try:
            with recorder, torch.no_grad():
                output = model(*inputs, **named)
        except Exception as err:  # whatever the model raises on this input
            if not running:
                raise ModelError(f"the model failed before any of its modules ran: {err}") from err
            module, args = running[-1]
            name = names[id(module)]
            layer = f"layer {name!r}" if name else "the model"
            raise ModelError(
                f"{layer} ({type(module).__name__}) failed on its input of {shapes(args)}: {err}"
            ) from err
        inputs_of_output, _, _ = recorder.sources((output,), {})
        graph.add(Node("function", None, "the output", inputs_of_output))
    finally:
        for handle in handles:
            handle.remove()
    return graph


# --- the fx trace -----------------------------------------------------------------------------


class _Tracer(torch.fx.Tracer):
    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return is_atomic(module)


def _fx_trace(model: nn.Module) -> Graph:
    fx_graph = _Tracer().trace(model)
    graph = Graph([], "fx")
    index: dict[torch.fx.Node, int] = {}
    for fx_node in fx_graph.nodes:
        flat = [*fx_node.args, *fx_node.kwargs.values()]
        inputs, position = [], -1
        for i, value in enumerate(flat):
            for arg in _fx_nodes(value):
                if arg in index and index[arg] not in inputs:
                    inputs.append(index[arg])
                    position = i if position < 0 else position
        position = max(position, 0)
        if fx_node.op == "placeholder":
            node = Node("input", None, fx_node.name, [])
        elif fx_node.op == "call_module":
            module = model.get_submodule(fx_node.target)
            node = Node(
                "module", module, fx_node.target, inputs, fx_node.args, fx_node.kwargs, position
            )
        elif fx_node.op == "call_function":
            name = getattr(fx_node.target, "__name__", str(fx_node.target))
            node = Node(
                "function", fx_node.target, name, inputs, fx_node.args, fx_node.kwargs, position
            )
        elif fx_node.op == "call_method":
            method = getattr(torch.Tensor, fx_node.target, None)
            node = Node(
                "function", method, fx_node.target, inputs, fx_node.args, fx_node.kwargs, position
            )
        else:  # get_attr, output
            name = "the output" if fx_node.op == "output" else fx_node.op
            node = Node("function", None, name, inputs)
        index[fx_node] = graph.add(node)
    return graph


def _fx_nodes(value: Any) -> list[torch.fx.Node]:
    return leaves(value, torch.fx.Node)


def trace(model: nn.Module, example_input: Any = None) -> Graph:
    """The model's call graph: an execution trace on ``example_input`` when given, else a
    ``torch.fx`` symbolic trace. A tuple is the positional arguments, a dict the keyword
    arguments (``model(**example_input)``, as Hugging Face models take them), anything else
    the one argument (see :func:`arguments`). Hooks are removed, and train/eval mode, buffers (BatchNorm
    running statistics) and the global RNG state restored either way.

    A model on the meta device is traced on meta copies of ``example_input`` (the graph's
    tensors have shapes, no values); the input node's ``args`` hold the tensors the model ran
    on.

    Raises ValueError when the model cannot be traced without an input (Python control flow
    on tensor values): pass ``example_input``; and :class:`ModelError` (a ValueError) when the
    model fails on ``example_input``, naming the module that failed and its input's shape.
    """
    if is_atomic(model) and example_input is None:  # a single layer: nothing follows it
        graph = Graph([], "fx")
        root = graph.add(Node("input", None, "input", []))
        graph.add(Node("module", model, "", [root]))
        return graph
    modes = {m: m.training for m in model.modules()}
    buffers = {}  # the trace runs forward: BatchNorm would update its running statistics
    try:
        if example_input is not None:
            if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):
                # a model without storage runs on meta copies of the input: shapes, no values
                example_input = map_tensors(example_input, lambda t: t.to("meta"))
            buffers = {b: b.clone() for b in model.buffers()}
            # dropout in the trace draws from the RNG; the trace's nodes live on with it
            with torch.random.fork_rng(devices=[]), collector_paused():
                return _execution_trace(model, example_input)
        try:
            return _fx_trace(model)
        except Exception as err:  # fx raises many kinds of errors on untraceable code
            raise ValueError(
                f"torch.fx cannot trace {type(model).__name__} ({type(err).__name__}: {err}); "
                "pass example_input=... so weightinit can trace an actual forward pass"
            ) from err
    finally:
        for module, training in modes.items():
            if module.training != training:
                module.training = training
        with torch.no_grad():
            for buffer, saved in buffers.items():
                buffer.copy_(saved)


# --- what follows each layer ----------------------------------------------------------------


_PASS_MODULES = (
    nn.modules.dropout._DropoutNd,
    nn.AlphaDropout,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
    nn.ZeroPad2d,
)
_PASS_FUNCTIONS: set[Callable] = {
    F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d,
    F.batch_norm, F.layer_norm, F.group_norm, F.instance_norm, F.rms_norm,
    torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.permute,
    torch.transpose, operator.getitem,
}  # fmt: skip
_PASS_METHODS = {
    "view", "reshape", "flatten", "permute", "transpose", "contiguous", "squeeze", "unsqueeze",
    "__getitem__", "unflatten", "clone", "to", "float", "type_as", "mT", "T", "t",
}  # fmt: skip
_ACTIVATION_FUNCTIONS: dict[Callable, str] = {
    F.relu: "relu", torch.relu: "relu", F.relu_: "relu", torch.relu_: "relu",
    torch.tanh: "tanh", F.tanh: "tanh", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid",
    F.gelu: "gelu", F.silu: "silu", F.mish: "mish", F.elu: "elu", F.selu: "selu",
    torch.selu: "selu", F.celu: "celu", F.leaky_relu: "leaky_relu", F.softplus: "softplus",
    F.hardtanh: "hardtanh", F.relu6: "relu6", F.hardswish: "hardswish",
    F.hardsigmoid: "hardsigmoid", F.softsign: "softsign",
}  # fmt: skip
_ACTIVATION_METHODS = {
    "relu": "relu", "relu_": "relu", "tanh": "tanh", "tanh_": "tanh", "sigmoid": "sigmoid",
    "sigmoid_": "sigmoid",
}  # fmt: skip
# parameters of parametrized functional activations: (name in kwargs, position after the input)
_PARAMS = {"leaky_relu": ("negative_slope", 1), "elu": ("alpha", 1), "celu": ("alpha", 1),
           "softplus": ("beta", 1)}  # fmt: skip


@dataclass(frozen=True)
class Follower:
    """What follows a weighted layer: the activation (None: nothing, a linear read-out or a
    residual/other op) and the ops passed on the way, for the plan's reason column."""

    activation: Activation | None
    via: tuple[str, ...] = ()
    stop: str = ""  # what ended the search when no activation was found

    def describe(self) -> str:
        path = f" (through {', '.join(self.via)})" if self.via else ""
        if self.activation is not None:
            return f"followed by {self.activation.name}{path}"
        return f"followed by {self.stop or 'nothing'}{path}"


def _bound(node: Node) -> Callable[[torch.Tensor], torch.Tensor]:
    """The node's call as a function of its traced tensor argument alone."""
    args = list(node.args)
    position = node.tensor_position
    func = node.target

    def call(t: torch.Tensor) -> torch.Tensor:
        if position < len(args):
            return func(*args[:position], t, *args[position + 1 :], **node.kwargs)
        return func(*args, **{**node.kwargs, list(node.kwargs)[position - len(args)]: t})

    call.__name__ = node.name
    return call


def _is_elementwise(fn: Callable[[torch.Tensor], torch.Tensor]) -> bool:
    """True when changing one input element changes only that output element, and ``fn``
    takes a tensor of any shape (moments are taken on a 1-D one: Swin's ``F.pad`` by zeros
    keeps its 3-D input's shape, and fails on 1-D)."""
    x = torch.linspace(-2.0, 2.0, 24).reshape(2, 3, 4)
    try:
        with torch.no_grad():
            y = fn(x.clone())
            x2 = x.clone()
            x2[1, 2, 3] += 0.5
            y2 = fn(x2)
            flat = fn(x.flatten())
    # not callable on a plain float tensor (or a meta module): not an activation we can use
    except (RuntimeError, TypeError, ValueError, IndexError, AssertionError):
        return False
    if not isinstance(y, torch.Tensor) or y.shape != x.shape:
        return False
    if not isinstance(flat, torch.Tensor) or flat.shape != (x.numel(),):
        return False
    if not (y.is_floating_point() or y.is_complex()):
        return False  # comparisons (bool), argsort (int): statistics for control flow
    if not torch.isfinite(y).all():
        return False
    changed = (y != y2).nonzero().tolist()
    return changed in ([], [[1, 2, 3]])


#: the standard state of a torch.nn module (hooks, registries): not configuration
_MODULE_STATE = frozenset(nn.Module().__dict__)
#: _is_elementwise of torch.nn modules by (type, configuration): the test runs each module,
#: and a 1000-layer MLP has 999 ReLUs of one configuration
_ELEMENTWISE: dict[tuple, bool] = {}


def _module_is_elementwise(module: nn.Module) -> bool:
    """:func:`_is_elementwise` of ``module``, remembered for torch.nn's own modules without
    parameters, buffers, submodules or hooks, whose forward is a function of their type and
    their scalar attributes alone (``inplace``, ``negative_slope``, ``training``, ...)."""
    key = _configuration(module)
    if key is None:
        return _is_elementwise(module)
    if key not in _ELEMENTWISE:
        _ELEMENTWISE[key] = _is_elementwise(module)
    return _ELEMENTWISE[key]


def _configuration(module: nn.Module) -> tuple | None:
    """(type, scalar attributes) of a torch.nn module that holds nothing else; else None."""
    if not type(module).__module__.startswith("torch.nn.modules."):
        return None
    if module._parameters or module._buffers or module._modules or _hooked(module):
        return None
    config = []
    for name, value in vars(module).items():
        if name in _MODULE_STATE and name != "training":
            continue
        if type(value) not in (bool, int, float, str, type(None)):
            return None  # a tensor, a callable (a forward of its own), ...
        config.append((name, value))
    return type(module), type(module).forward, tuple(config)


def _hooked(module: nn.Module) -> bool:
    """Does a hook (the module's own or a global one) run when ``module`` is called?"""
    own = (module._forward_hooks, module._forward_pre_hooks, module._backward_hooks,
           module._backward_pre_hooks)  # fmt: skip
    glob = nn.modules.module
    every = (glob._global_forward_hooks, glob._global_forward_pre_hooks,
             glob._global_backward_hooks, glob._global_backward_pre_hooks)  # fmt: skip
    return any(own) or any(every)


def _classify(node: Node) -> tuple[str, Activation | None]:
    """("activation", act) | ("pass", None) | ("stop", None); computed once per node."""
    if node.classified is None:
        node.classified = _classified(node)
    return node.classified


def _classified(node: Node) -> tuple[str, Activation | None]:
    if node.kind == "module":
        module = node.target
        if isinstance(module, _PASS_MODULES) or getattr(module, "keeps_signal", False):
            return "pass", None  # keeps_signal: e.g. the scalar biases of weightinit.recipes
        params = any(True for _ in module.parameters())
        if params and not isinstance(module, nn.PReLU):
            return "stop", None
        if isinstance(module, (nn.Softmax, nn.LogSoftmax, nn.Softmin)):
            return "stop", None
        if _module_is_elementwise(module):
            return "activation", activation(module)
        return "stop", None
    if node.kind != "function" or node.target is None:
        return "stop", None
    func, name = node.target, node.name
    is_method = getattr(torch.Tensor, name, None) is func
    if (_hashable(func) and func in _PASS_FUNCTIONS) or (is_method and name in _PASS_METHODS):
        return "pass", None
    if len(node.inputs) != 1:  # residual adds, concatenations, products of two signals
        return "stop", None
    known = _ACTIVATION_FUNCTIONS.get(func) if _hashable(func) else None
    if known is None and is_method:
        known = _ACTIVATION_METHODS.get(name)
    if known is not None:
        param = _param(node, known)
        return "activation", activation(known, param)
    fn = _bound(node)
    if _is_elementwise(fn):
        return "activation", Activation(node.name, fn)
    return "stop", None


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _param(node: Node, name: str) -> float | None:
    spec = _PARAMS.get(name)
    if spec is None:
        return None
    key, offset = spec
    if key in node.kwargs:
        return float(node.kwargs[key])
    position = node.tensor_position + offset
    if position < len(node.args) and isinstance(node.args[position], (int, float)):
        return float(node.args[position])
    return None


def followers(graph: Graph) -> dict[str, Follower]:
    """For every module node, what follows it (first use wins when a module is called twice)."""
    result: dict[str, Follower] = {}
    alive = live(graph)
    for node in graph.nodes:
        if node.kind == "module" and node.name not in result:
            result[node.name] = _follow(graph, node, alive)
    return result


def follower(graph: Graph, index: int) -> Follower:
    """What follows node ``index`` (any node, e.g. a residual add), walked as :func:`followers`
    walks from a layer."""
    return _follow(graph, graph.nodes[index], live(graph))


def live(graph: Graph) -> list[bool]:
    """Per node: does its value reach the output or a layer with parameters? Not so for
    statistics computed for Python control flow (``if h.mean() > 0:``, ``.item()``) and for
    outputs nobody uses (``out, _ = lstm(x)``). Computed once per graph (do not modify the
    list)."""
    if graph.alive is None:
        graph.alive = _live(graph)
    return graph.alive


def _live(graph: Graph) -> list[bool]:
    alive = [False] * len(graph.nodes)
    for index in reversed(range(len(graph.nodes))):  # every user comes after what it uses
        node = graph.nodes[index]
        alive[index] = (
            node.name == "the output"
            or (node.kind == "module" and any(True for _ in node.target.parameters()))
            or any(alive[u] for u in node.users)
        )
    return alive


def _follow(graph: Graph, start: Node, alive: list[bool]) -> Follower:
    via: list[str] = []
    node = start
    while True:
        # uses that lead nowhere are not branches: ``out, _ = lstm(x)``, or ``h.mean() > 0``
        # computed for Python control flow
        users = [u for u in node.users if alive[u]]
        if not users:
            return Follower(None, tuple(via), "the output")
        if len(users) > 1:
            # branches: an activation only if every branch starts with the same one
            kinds = [_classify(graph.nodes[u]) for u in users]
            acts = {k[1].name if k[1] else None for k in kinds}
            if all(k[0] == "activation" for k in kinds) and len(acts) == 1:
                return Follower(kinds[0][1], tuple(via))
            return Follower(None, tuple(via), f"{len(users)} branches")
        nxt = graph.nodes[users[0]]
        kind, act = _classify(nxt)
        if kind == "activation":
            return Follower(act, tuple(via))
        if kind == "stop":
            return Follower(None, tuple(via), _label(nxt))
        via.append(_label(nxt))
        node = nxt


def _label(node: Node) -> str:
    if node.kind == "module":
        return type(node.target).__name__
    return node.name
