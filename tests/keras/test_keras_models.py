"""Whole Keras models under the classic schemes (issue 15): the same planned std per layer as
the same architecture in torch, fans from each kernel's layout, the gain of the activation
after each layer (its own, or the next activation layer's), values written all or nothing."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from torch import nn

import weightinit as wi
from weightinit import keras as wk

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "selu": nn.SELU, "sigmoid": nn.Sigmoid}
CLASSIC = ["he", "orthogonal", "lecun", "glorot", "keras", "flax", "random_walk"]


def keras_mlp(act: str, separate: bool = False) -> keras.Model:
    """The motivating examples' model: 784 features, Dense(64, act), Dense(10, softmax);
    ``separate``: the activation as its own layer."""
    if separate:
        hidden = [keras.layers.Dense(64, name="hidden"), keras.layers.Activation(act)]
    else:
        hidden = [keras.layers.Dense(64, activation=act, name="hidden")]
    out = keras.layers.Dense(10, activation="softmax", name="out")
    return keras.Sequential([keras.Input((784,)), *hidden, out])


def torch_mlp(act: str) -> nn.Module:
    return nn.Sequential(nn.Linear(784, 64), ACTIVATIONS[act](), nn.Linear(64, 10))


@pytest.mark.parametrize("scheme", CLASSIC)
@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_the_same_architecture_gets_the_same_planned_std_as_in_torch(scheme, act):
    theirs = wi.plan(torch_mlp(act), scheme)
    for separate in (False, True):
        ours = wk.plan(keras_mlp(act, separate), scheme)
        kernels = [r for r in ours.rows if r.name.endswith("kernel")]
        weights = [r for r in theirs.rows if r.name.endswith("weight")]
        assert [r.std for r in kernels] == pytest.approx([r.std for r in weights], rel=1e-12)
        assert [(r.fan_in, r.fan_out) for r in kernels] == [(784, 64), (64, 10)]


def test_init_writes_the_planned_values_reproducibly():
    model = keras_mlp("relu")
    plan = wk.init(model, "he", seed=3)
    kernel = keras.ops.convert_to_numpy(model.layers[0].kernel).astype(np.float64)
    want = math.sqrt(2 / 784)
    assert plan["hidden.kernel"].std == pytest.approx(want)
    assert abs(kernel.std() - want) <= 5 * want / math.sqrt(2 * kernel.size)
    assert not keras.ops.convert_to_numpy(model.layers[0].bias).any()
    again = keras_mlp("relu")
    wk.init(again, "he", seed=3)
    for a, b in zip(model.weights, again.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_convolutions_recurrent_layers_and_embeddings_get_their_layouts_fans():
    inputs = keras.Input((12,), dtype="int32")
    x = keras.layers.Embedding(50, 16, name="embedding")(inputs)
    x = keras.layers.LSTM(8, return_sequences=True, name="lstm")(x)
    x = keras.layers.Reshape((12, 8, 1))(x)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv2d")(x)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="depthwise")(x)
    x = keras.layers.Activation("tanh")(x)
    model = keras.Model(inputs, keras.layers.Conv2DTranspose(4, 3, name="transpose")(x))
    plan = wk.plan(model, "he")
    fans = {r.name: (r.fan_in, r.fan_out) for r in plan.rows}
    assert fans["lstm.lstm_cell.kernel"] == (16, 8)  # per gate
    assert fans["lstm.lstm_cell.recurrent_kernel"] == (8, 8)
    assert fans["conv2d.kernel"] == (9, 54)
    assert fans["depthwise.kernel"] == (9, 18)
    assert fans["transpose.kernel"] == (9 * 12, 9 * 4)
    assert "followed by relu" in plan["conv2d.kernel"].reason
    assert "followed by tanh (through Activation)" in plan["depthwise.kernel"].reason
    assert plan["lstm.lstm_cell.bias"].args == {"values": [0.0, 1.0, 0.0, 0.0]}  # forget 1
    wk.init(model, "orthogonal", seed=0)
    recurrent = keras.ops.convert_to_numpy(model.get_layer("lstm").cell.recurrent_kernel)
    for gate in np.split(recurrent, 4, axis=1):
        np.testing.assert_allclose(gate.T @ gate, np.eye(8), atol=1e-5)


def test_bad_input_is_a_clear_error_and_the_model_is_left_as_it_was():
    unbuilt = keras.Sequential([keras.layers.Dense(4)])
    with pytest.raises(ValueError, match="is not built"):
        wk.plan(unbuilt, "he")
    model = keras_mlp("relu")
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.weights]
    with pytest.raises(ValueError, match="scheme 'lsuv' calibrates on data: pass data="):
        wk.init(model, "lsuv", seed=0)
    plan = wk.plan(model, "he", seed=0)
    plan.rows[-1].args = {"bogus": 1}  # the last row fails: nothing may have been assigned
    with pytest.raises(Exception, match="bogus"):
        wk.write(plan, model)
    for w, b in zip(model.weights, before):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(w), b)


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.a = keras.layers.Dense(32, activation="tanh", name="a")
        self.b = keras.layers.Dense(10, name="b")

    def call(self, x):
        return self.b(self.a(x))


def test_a_subclassed_model_reads_each_layers_own_activation():
    """He's gain before tanh is 1 / sqrt(E[tanh(z)^2]), z ~ N(0, 1) (weightinit's gains are the
    activations' second moments; computed here by Gauss-Hermite quadrature)."""
    model = Subclassed()
    model(np.zeros((2, 8), "float32"))  # built by a call
    plan = wk.init(model, "he", seed=0)
    z, w = np.polynomial.hermite_e.hermegauss(80)
    gain = 1 / math.sqrt(float(np.sum(w * np.tanh(z) ** 2) / np.sqrt(2 * np.pi)))
    want = gain / math.sqrt(8)
    assert plan["a.kernel"].std == pytest.approx(want, rel=1e-6)
    assert plan["b.kernel"].std == pytest.approx(1 / math.sqrt(32))
    kernel = keras.ops.convert_to_numpy(model.a.kernel).astype(np.float64)
    assert abs(kernel.std() - want) <= 5 * want / math.sqrt(2 * kernel.size)
