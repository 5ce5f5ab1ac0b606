"""Reading a Keras 3 model's layers for the classic schemes: every weight of a built model
described as the scheme protocol's :class:`~weightinit.scheme.protocol.Param` (its role, its
kernel's layout, the activation that follows its layer), for every model, subclassed ones too.

The activation after a layer is its own ``activation`` (Dense, Conv) or, when that is linear,
the next layer's if that is an activation layer (``Activation``, ``ReLU``, ``LeakyReLU``,
``ELU``), looked for through normalization, dropout, pooling and reshapes in the functional
graph (a Sequential model is one; a subclassed model's is traced from its ``call``), as the
torch front end looks. A ``call`` that cannot be traced leaves each layer's own activation.
"""

from __future__ import annotations

import itertools
from typing import Any

import keras

from weightinit.frontends.keras.activations import keras_activation
from weightinit.frontends.keras.layouts import keras_layout
from weightinit.frontends.keras.twin import graph_of
from weightinit.scheme.protocol import Param
from weightinit.understanding.graph import Follower
from weightinit.understanding.knowledge import Kinds, ParamInfo, Roles

__all__ = ["keras_params", "weight_name"]

# the recurrent cells: Keras's order of their stacked gates
_GATES = {"LSTMCell": "ifco", "GRUCell": "zrh", "SimpleRNNCell": ""}


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
    elif name == "EinsumDense":  # also MultiHeadAttention's query, key, value and output
        add("kernel", Roles.WEIGHT, Kinds.LINEAR, "einsum", equation=layer.equation)
        add("bias", Roles.BIAS, Kinds.LINEAR, "elementwise")
    elif name.startswith("Conv") and name.endswith("Transpose"):
        add("kernel", Roles.WEIGHT, Kinds.CONV, "conv_transpose")
        add("bias", Roles.BIAS, Kinds.CONV, "elementwise")
    elif name in ("Conv1D", "Conv2D", "Conv3D"):
        add("kernel", Roles.WEIGHT, Kinds.CONV, "conv", groups=getattr(layer, "groups", 1))
        add("bias", Roles.BIAS, Kinds.CONV, "elementwise")
    elif name.startswith("SeparableConv"):  # depthwise, then pointwise: one layer
        add("depthwise_kernel", Roles.WEIGHT, Kinds.CONV, "depthwise")
        add("pointwise_kernel", Roles.WEIGHT, Kinds.CONV, "conv")
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
    elif name == "RMSNormalization":
        add("scale", Roles.NORM_SCALE, Kinds.NORM, "elementwise")
    return found


def _graph(model: Any) -> Any:
    """The model's graph of layers (a subclassed model's traced from its ``call``), or None
    when its ``call`` cannot be traced: then each layer's own activation counts."""
    try:
        return graph_of(model, "plan") if not isinstance(model, keras.Sequential) else model
    except ValueError:
        return None


def _next_layers(model: Any) -> dict[int, list[Any]]:
    """Each layer's consumers in the model's graph (a Sequential's next layer)."""
    following: dict[int, list[Any]] = {}
    layers = list(getattr(model, "layers", []))
    if isinstance(model, keras.Sequential):
        for a, b in itertools.pairwise(layers):
            following[id(a)] = [b]
        if layers:
            following[id(layers[-1])] = []
    else:
        for layer in layers:
            after = []
            for node in getattr(layer, "_outbound_nodes", []):
                operation = getattr(node, "operation", None)
                if operation is not None and operation is not model and operation not in after:
                    after.append(operation)
            following[id(layer)] = after
    for layer in layers:  # a nested Sequential or Functional model: its own graph
        if isinstance(layer, keras.Model) and layer is not model:
            following.update(_next_layers(layer))
    return following


def _follower(layer: Any, following: dict[int, list[Any]], parent: Any) -> Follower:
    own = getattr(layer, "activation", None)
    found = keras_activation(own) if own is not None else None
    if found is not None:
        return Follower(found)
    named = keras.activations.serialize(own) if callable(own) else None
    if isinstance(named, str) and named != "linear":  # softmax, exponential: an output
        return Follower(None, stop=named)
    if id(layer) not in following and parent is not None:  # inside a layer: not in any graph
        return Follower(None, stop=f"the rest of {type(parent).__name__}")
    through: list[str] = []
    after = following.get(id(layer), [])
    while len(after) == 1:
        kind = type(after[0]).__name__
        found = keras_activation(after[0])
        if found is not None:
            return Follower(found, (*through, kind))
        if not kind.startswith(_THROUGH):
            return Follower(None, stop=kind)
        through.append(kind)
        after = following.get(id(after[0]), [])
    return Follower(None, stop="the output" if not after else "several layers")


# layers that keep the signal's shape, looked through for the activation after a layer (as
# the torch front end looks through normalization, dropout, pooling and reshapes)
_THROUGH = (
    "BatchNormalization", "LayerNormalization", "GroupNormalization", "Dropout",
    "SpatialDropout", "AlphaDropout", "GaussianNoise", "GaussianDropout", "MaxPooling",
    "AveragePooling", "Flatten", "Reshape", "Identity",
)  # fmt: skip


def weight_name(model: Any, variable: Any) -> str:
    """A weight's name in the plan: its Keras path below the model, dotted
    (``sequential/lstm/lstm_cell/kernel`` -> ``lstm.lstm_cell.kernel``)."""
    return variable.path.removeprefix(f"{model.name}/").replace("/", ".")


def keras_params(
    model: Any, include_frozen: bool
) -> tuple[list[tuple[Param, Any, str]], list[str]]:
    """(Param, variable, layer) of every weight weightinit knows, and the names of the
    trainable weights of layers it does not know."""
    graph = _graph(model)
    following = _next_layers(graph) if graph is not None else {}
    layers = list(model._flatten_layers(include_self=False, recursive=True))
    parents = {
        id(child): layer
        for layer in layers
        for child in layer._flatten_layers(include_self=False, recursive=False)
    }
    known, unknown = [], []
    for layer in layers:
        described = _weights(layer)
        seen = {id(variable) for _, variable, *_ in described}
        unknown += [weight_name(model, v) for v in layer._trainable_variables if id(v) not in seen]
        follower = _follower(layer, following, parents.get(id(layer)))
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
                nonlinearity=keras_activation(nonlinearity) if nonlinearity is not None else None,
            )  # fmt: skip
            name = weight_name(model, variable)
            dtype = str(keras.backend.standardize_dtype(variable.dtype))
            after = follower if role == Roles.WEIGHT else None
            if leaf == "depthwise_kernel":  # a SeparableConv's: its pointwise kernel follows
                after = Follower(None, stop="its pointwise convolution")
            param = Param(name, name, leaf, layer.name, kind, shape, dtype, info, after)
            known.append((param, variable, layer))
    return known, unknown
