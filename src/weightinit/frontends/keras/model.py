"""Whole Keras 3 models, for the classic schemes: every weight of a built model described as the
scheme protocol's :class:`~weightinit.scheme.protocol.Param` (its role, its kernel's layout,
the activation that follows its layer), planned with the same schemes and :class:`~weightinit.
Plan` as torch models, and written all or nothing.

The activation after a layer is its own ``activation`` (Dense, Conv) or, when that is linear,
the next layer's if that is an activation layer (``Activation``, ``ReLU``, ``LeakyReLU``, ``ELU``,
...): the next operation in the functional graph (a Sequential model is one). Values are drawn by
the plan on the CPU (torch, the same generator and keys as for a torch model with the same
parameter names) and assigned to the Keras variables once all exist.
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import keras
import torch
from torch import nn

from weightinit._checks import check_seed
from weightinit.frontends.keras.layouts import keras_layout
from weightinit.frontends.torch.settle import row
from weightinit.initializers.activations import Activation, activation
from weightinit.initializers.counter import RNG_VERSION
from weightinit.plans.plan import SKIP, Plan, check_rng
from weightinit.scheme.protocol import Param
from weightinit.scheme.registry import get_scheme
from weightinit.understanding.graph import Follower
from weightinit.understanding.knowledge import Kinds, ParamInfo, Roles

__all__ = ["init", "plan", "write"]

# Keras's activation names -> weightinit's (name, parameter); "linear" is none
_ACTIVATIONS: dict[str, tuple[str, float | None]] = {
    "relu": ("relu", None), "selu": ("selu", None), "tanh": ("tanh", None),
    "sigmoid": ("sigmoid", None), "elu": ("elu", 1.0), "gelu": ("gelu", None),
    "silu": ("silu", None), "swish": ("silu", None), "mish": ("mish", None),
    "softsign": ("softsign", None), "hard_sigmoid": ("hardsigmoid", None),
    "hard_silu": ("hardswish", None), "hard_swish": ("hardswish", None),
    "leaky_relu": ("leaky_relu", 0.2),  # keras.activations.leaky_relu's default slope
}  # fmt: skip
# the recurrent cells: Keras's order of their stacked gates
_GATES = {"LSTMCell": "ifco", "GRUCell": "zrh", "SimpleRNNCell": ""}
_CLASSIC = ("he", "orthogonal", "lecun", "glorot", "keras", "flax", "random_walk")


def _weights(layer: Any) -> list[tuple[str, Any, str, str, str, dict]]:
    """(leaf, variable, role, kind, layout kind, layout options) of each weight ``layer`` owns
    that weightinit knows ([] for a layer it does not know: its weights are reported)."""
    name = type(layer).__name__
    found = []

    def add(leaf: str, role: str, kind: str, layout: str, **options: Any) -> None:
        variable = getattr(layer, leaf, None)
        if variable is not None:
            found.append((leaf, variable, role, kind, layout, options))

    if name == "Dense":
        add("kernel", Roles.WEIGHT, Kinds.LINEAR, "dense")
        add("bias", Roles.BIAS, Kinds.LINEAR, "elementwise")
    elif name.startswith("Conv") and name.endswith("Transpose"):
        add("kernel", Roles.WEIGHT, Kinds.CONV, "conv_transpose")
        add("bias", Roles.BIAS, Kinds.CONV, "elementwise")
    elif name in ("Conv1D", "Conv2D", "Conv3D"):
        add("kernel", Roles.WEIGHT, Kinds.CONV, "conv", groups=getattr(layer, "groups", 1))
        add("bias", Roles.BIAS, Kinds.CONV, "elementwise")
    elif name.startswith("DepthwiseConv"):
        add("kernel", Roles.WEIGHT, Kinds.CONV, "depthwise")
        add("bias", Roles.BIAS, Kinds.CONV, "elementwise")
    elif name in _GATES:
        gates = max(len(_GATES[name]), 1)
        add("kernel", Roles.WEIGHT, Kinds.RECURRENT, "recurrent", gates=gates)
        add("recurrent_kernel", Roles.RECURRENT, Kinds.RECURRENT, "recurrent", gates=gates)
        add("bias", Roles.GATE_BIAS, Kinds.RECURRENT, "elementwise", gates=gates)
    elif name == "Embedding":
        add("embeddings", Roles.EMBEDDING, Kinds.EMBEDDING, "embedding")
    elif name in ("BatchNormalization", "LayerNormalization", "GroupNormalization"):
        add("gamma", Roles.NORM_SCALE, Kinds.NORM, "elementwise")
        add("beta", Roles.NORM_SHIFT, Kinds.NORM, "elementwise")
    return found


def _activation_of(spec: Any) -> Activation | None:
    """weightinit's Activation for a Keras activation function or layer; None for linear."""
    kind = type(spec).__name__
    if kind in ("ReLU", "LeakyReLU", "ELU", "Softmax", "PReLU", "Activation"):
        if kind == "Activation":
            return _activation_of(spec.activation)
        if kind == "LeakyReLU":
            return activation("leaky_relu", float(spec.negative_slope))
        if kind == "ELU":
            return activation("elu", float(getattr(spec, "alpha", 1.0)))
        if kind == "ReLU" and not getattr(spec, "negative_slope", 0.0):
            return activation("relu")
        return None
    name = keras.activations.serialize(spec) if callable(spec) else spec
    name = name.get("config", name) if isinstance(name, dict) else name
    if not isinstance(name, str) or name == "linear" or name not in _ACTIVATIONS:
        return None
    return activation(*_ACTIVATIONS[name])


def _next_layers(model: Any) -> dict[int, list[Any]]:
    """Each layer's consumers in the model's graph (a Sequential's next layer)."""
    following: dict[int, list[Any]] = {}
    layers = list(getattr(model, "layers", []))
    if isinstance(model, keras.Sequential):
        for a, b in itertools.pairwise(layers):
            following[id(a)] = [b]
        return following
    for layer in layers:
        after = []
        for node in getattr(layer, "_outbound_nodes", []):
            operation = getattr(node, "operation", None)
            if operation is not None and operation is not model:
                after.append(operation)
        following[id(layer)] = after
    return following


def _follower(layer: Any, following: dict[int, list[Any]]) -> Follower:
    own = getattr(layer, "activation", None)
    found = _activation_of(own) if own is not None else None
    if found is not None:
        return Follower(found)
    named = keras.activations.serialize(own) if callable(own) else None
    if isinstance(named, str) and named != "linear":  # softmax, exponential: an output
        return Follower(None, stop=named)
    after = following.get(id(layer), [])
    if len(after) == 1:
        found = _activation_of(after[0])
        if found is not None:
            return Follower(found, (type(after[0]).__name__,))
        return Follower(None, stop=type(after[0]).__name__)
    return Follower(None, stop="the output" if not after else "several layers")


def _name(model: Any, variable: Any) -> str:
    """A weight's name in the plan: its Keras path below the model, dotted
    (``sequential/lstm/lstm_cell/kernel`` -> ``lstm.lstm_cell.kernel``)."""
    return variable.path.removeprefix(f"{model.name}/").replace("/", ".")


def _params(model: Any, include_frozen: bool) -> tuple[list[tuple[Param, Any, str]], list[str]]:
    """(Param, variable, layer class) of every weight weightinit knows, and the names of the
    trainable weights of layers it does not know."""
    following = _next_layers(model)
    known, unknown = [], []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        described = _weights(layer)
        seen = {id(variable) for _, variable, *_ in described}
        unknown += [_name(model, v) for v in layer._trainable_variables if id(v) not in seen]
        follower = _follower(layer, following)
        nonlinearity = (
            getattr(layer, "activation", None) if type(layer).__name__ in _GATES else None
        )
        for leaf, variable, role, kind, layout, options in described:
            if not (variable.trainable or include_frozen):
                continue
            shape = tuple(int(s) for s in variable.shape)
            info = ParamInfo(
                role, keras_layout(layout, shape, **options), ("", {}, ""),
                gates=_GATES.get(type(layer).__name__, ""), kind=kind,
                nonlinearity=_activation_of(nonlinearity) if nonlinearity is not None else None,
            )  # fmt: skip
            name = _name(model, variable)
            dtype = str(keras.backend.standardize_dtype(variable.dtype))
            param = Param(name, name, leaf, layer.name, kind, shape, dtype, info,
                          follower if role == Roles.WEIGHT else None)  # fmt: skip
            known.append((param, variable, type(layer).__name__))
    return known, unknown


def plan(
    model: Any,
    scheme: str = "he",
    *,
    seed: int | None = None,
    rng: str | None = None,
    include_frozen: bool = False,
    **options: Any,
) -> Plan:
    """What a classic ``scheme`` would write to every weight of a built Keras ``model``, and
    why: the same :class:`~weightinit.Plan` as for a torch model (table, JSON). Writes nothing.

    Kernels get the fans of their layout (Dense, grouped, depthwise and transposed
    convolutions, LSTM/GRU gates per gate, embeddings; see :mod:`.layouts`) and the gain of the
    activation that follows (the layer's own, or the next activation layer's): "he" before a
    ReLU is N(0, 2 / fan_in) (He et al. 2015), before tanh the gain 5/3's square.

    Example::

        >>> import keras
        >>> from weightinit import keras as wk
        >>> net = keras.Sequential([keras.Input((784,)),
        ...                         keras.layers.Dense(64, activation="relu", name="hidden"),
        ...                         keras.layers.Dense(10, activation="softmax", name="out")])
        >>> p = wk.plan(net, "he")
        >>> p["hidden.kernel"].reason
        'followed by relu: gain 1.414; He: Var = gain^2 / fan'
    """
    chosen = get_scheme(scheme)
    if not getattr(model, "built", False):
        raise ValueError(
            f"plan: the Keras model {getattr(model, 'name', '')!r} is not built, so its weights do "
            "not exist yet; build it first (keras.Input as its first layer, model.build(shape), "
            "or call it on a batch)"
        )
    if chosen.name not in _CLASSIC:
        raise ValueError(
            f"plan: scheme {chosen.name!r} is not available for Keras models yet; the classic "
            f"schemes are: {', '.join(_CLASSIC)}"
        )
    seed = check_seed(seed, "plan")
    rng = RNG_VERSION if rng is None else rng
    check_rng(rng, chosen.name, chosen.rng, "plan")
    opts, _, recorded = chosen.take(options, seed)
    known, unknown = _params(model, include_frozen)
    if unknown:
        warnings.warn(
            f"plan: weightinit does not know the layers of {len(unknown)} Keras weight(s), so "
            f"they keep what they hold: {', '.join(unknown[:5])}",
            stacklevel=2,
        )
    rows = []
    for param, _, layer in known:
        choice = chosen.choose(param, opts)
        meta = torch.empty(param.shape, device="meta")
        made = row(param.name, layer, param.role, choice, meta, param.info.layout, param.info)
        made.dtype = "float32"  # drawn in float32 on the CPU, assigned in the variable's dtype
        rows.append(made)
    return Plan(chosen.name, rows, options=recorded, graph="keras", rng=rng)


def write(plan: Plan, model: Any, seed: int | None = None) -> Plan:
    """Write ``plan`` into the Keras ``model``: every value drawn first (on the CPU, by
    :meth:`Plan.apply` on a torch mirror of the weights, the same checks and generator), then
    assigned, all or nothing."""
    variables = {_name(model, v): v for v in model.weights}
    missing = [r.name for r in plan.rows if r.init != SKIP and r.name not in variables]
    if missing:
        raise ValueError(
            f"write: the Keras model has no weight {missing[0]!r}; was this plan made for "
            "another model?"
        )
    mirror = _Mirror({r.name: tuple(variables[r.name].shape) for r in plan.rows if r.init != SKIP})
    plan.apply(mirror, seed=seed)
    for name, value in mirror.values():
        variable = variables[name]
        variable.assign(keras.ops.convert_to_tensor(value.numpy(), dtype=variable.dtype))
    return plan


def init(model: Any, scheme: str = "he", *, seed: int | None = None, **kw: Any) -> Plan:
    """Plan and write in one call (see :func:`plan` and :func:`write`); returns the plan.

    Example::

        >>> import keras
        >>> from weightinit import keras as wk
        >>> net = keras.Sequential([keras.Input((784,)),
        ...                         keras.layers.Dense(64, activation="selu", name="hidden"),
        ...                         keras.layers.Dense(10, activation="softmax", name="out")])
        >>> wk.init(net, "lecun", seed=0)["hidden.kernel"].std == 1 / 28
        True
    """
    return write(plan(model, scheme, seed=seed, **kw), model, seed)


class _Mirror(nn.Module):
    """torch parameters named as the Keras weights (``layer.kernel``), for Plan.apply."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]):
        super().__init__()
        self._names = list(shapes)
        for name, shape in shapes.items():
            owner = self
            *path, leaf = name.split(".")
            for part in path:
                if part not in owner._modules:
                    owner.add_module(part, nn.Module())
                owner = owner._modules[part]
            owner.register_parameter(leaf, nn.Parameter(torch.zeros(shape)))

    def values(self) -> list[tuple[str, torch.Tensor]]:
        params = dict(self.named_parameters())
        return [(name, params[name].detach()) for name in self._names]
