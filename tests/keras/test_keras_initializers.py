"""The catalog as Keras 3 initializers (issue 15), run under the Keras backend this process was
started with (tests/test_keras_backends.py runs this folder with KERAS_BACKEND=torch and jax).

Oracles: the fans' formulas per Keras kernel layout (and Keras's own fans where they agree),
the statistics of the values against the requested std (tolerances from the sample size),
orthogonality per gate, Keras's serialization and a saved model's reload."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import torch

import weightinit as wi
from weightinit import keras as wk
from weightinit.keras import KINDS, initializers, keras_fans, keras_layout

SHAPES = {  # kind -> (shape, options, (fan_in, fan_out) by the formulas of the layouts' table)
    "dense": ((10, 20), {}, (10, 20)),
    "conv": ((3, 3, 4, 16), {"groups": 2}, (9 * 4, 9 * 16 // 2)),
    "depthwise": ((3, 3, 16, 2), {}, (9, 9 * 2)),
    "conv_transpose": ((3, 3, 8, 4), {}, (9 * 4, 9 * 8)),
    "recurrent": ((10, 4 * 32), {"gates": 4}, (10, 32)),
    "attention_in": ((16, 4, 8), {}, (16, 4 * 8)),
    "attention_out": ((4, 8, 16), {}, (4 * 8, 16)),
    "embedding": ((100, 16), {}, (1, 16)),
    "einsum": ((16, 3, 5), {"equation": "ab,bcd->acd"}, (16, 15)),  # sums over b
    "elementwise": ((7,), {}, (1, 7)),
}


def values(init, shape) -> np.ndarray:
    return keras.ops.convert_to_numpy(init(shape)).astype(np.float64)


def test_every_catalog_entry_is_a_registered_keras_initializer():
    assert len(initializers.__all__) == len(wi.catalog()) + 1  # and the base class
    for entry in wi.catalog():
        name = "".join(part.capitalize() for part in entry.name.split("_"))
        cls = getattr(initializers, name)
        assert issubclass(cls, keras.initializers.Initializer), name
        assert keras.initializers.get(f"weightinit>{name}").__class__ is cls
        assert entry.formula in cls.__doc__ and entry.paper in cls.__doc__


@pytest.mark.parametrize("kind", list(KINDS))
def test_fans_follow_each_keras_kernel_layout(kind):
    shape, options, want = SHAPES[kind]
    assert wi.fans(torch.empty(shape), keras_layout(kind, shape, **options)) == want
    if kind in ("dense",):  # where Keras's own rule is right, it agrees
        assert keras_fans(shape) == want


@pytest.mark.parametrize("kind", ["dense", "conv", "depthwise", "conv_transpose", "recurrent"])
def test_he_normal_std_is_sqrt_2_over_the_layouts_fan_in(kind):
    shape, options, (fan_in, _) = SHAPES[kind]
    big = tuple(s * 4 if i == len(shape) - 1 else s for i, s in enumerate(shape))
    fan_in = wi.fans(torch.empty(big), keras_layout(kind, big, **options))[0]
    w = values(initializers.HeNormal(layout=kind, seed=0, **options), big)
    n, want = w.size, math.sqrt(2.0 / fan_in)
    assert abs(w.std() - want) <= 5 * want / math.sqrt(2 * n)  # std's standard error
    assert abs(w.mean()) <= 5 * want / math.sqrt(n)


def test_keras_default_convention_matches_keras_variance_scaling_on_dense_and_conv():
    """Layout None is Keras's (..., in, out): our HeNormal's std and keras.initializers.
    HeNormal's (a truncated normal of the same variance) are both sqrt(2 / fan_in) by Keras's
    own fans, within the sampling error, on a Dense and a Conv2D kernel."""
    for shape in ((256, 128), (3, 3, 64, 32)):
        ours = values(initializers.HeNormal(seed=0), shape)
        theirs = values(keras.initializers.HeNormal(seed=0), shape)
        want = math.sqrt(2.0 / keras_fans(shape)[0])
        for w in (ours, theirs):
            assert abs(w.std() - want) <= 5 * want / math.sqrt(2 * w.size), shape


def test_orthogonal_per_gate_of_an_lstm_kernel():
    w = values(initializers.Orthogonal(layout="recurrent", gates=4, seed=3), (32, 128))
    for gate in np.split(w, 4, axis=1):
        np.testing.assert_allclose(gate.T @ gate, np.eye(32), atol=1e-5)


def test_delta_orthogonal_of_a_conv1d_kernel_is_orthogonal_at_the_centre_tap_only():
    w = values(initializers.DeltaOrthogonal(layout="conv", seed=0), (5, 8, 8))
    assert not w[[0, 1, 3, 4]].any()
    np.testing.assert_allclose(w[2].T @ w[2], np.eye(8), atol=1e-5)


def test_a_seed_gives_the_same_values_and_none_follows_keras_global_seed():
    init = initializers.GlorotUniform(seed=7)
    np.testing.assert_array_equal(values(init, (20, 30)), values(init, (20, 30)))
    unseeded = initializers.GlorotUniform()
    keras.utils.set_random_seed(1)
    first = values(unseeded, (20, 30))
    keras.utils.set_random_seed(1)
    np.testing.assert_array_equal(values(unseeded, (20, 30)), first)
    assert not np.array_equal(values(unseeded, (20, 30)), first)  # the next call, another seed


def test_config_round_trip_and_a_saved_model_reloads(tmp_path):
    init = initializers.VarianceScaling(scale=2.0, mode="fan_avg", layout="dense", seed=4)
    again = type(init).from_config(init.get_config())
    np.testing.assert_array_equal(values(init, (12, 6)), values(again, (12, 6)))
    layout = wi.Layout(out_axes=(1,), in_axes=(0,), blocks=2, block_axis=1)
    custom = initializers.Orthogonal(layout=layout, seed=2)
    back = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(custom))
    assert back.layout == layout
    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(
                64, activation="relu", kernel_initializer=initializers.HeNormal(seed=0)
            ),
            keras.layers.Dense(
                10, activation="softmax", kernel_initializer="weightinit>GlorotUniform"
            ),
        ]
    )
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert isinstance(loaded.layers[0].kernel_initializer, initializers.HeNormal)
    assert isinstance(loaded.layers[1].kernel_initializer, initializers.GlorotUniform)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (
            lambda: initializers.HeNormal(bogus=1),
            TypeError,
            "unknown argument.*'bogus'.*takes a, mode",
        ),
        (lambda: initializers.HeNormal(layout="lstm"), ValueError, "`layout` must be None"),
        (lambda: initializers.HeNormal(layout="recurrent", gates=0), ValueError, "`gates` must be"),
        (lambda: initializers.HeNormal(seed=1.5), TypeError, "`seed` must be an int"),
        (lambda: initializers.Orthogonal(layout={"out_axis": 1}), ValueError, "Layout's fields"),
    ],
)
def test_bad_arguments_are_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_an_einsum_layout_needs_its_equation():
    with pytest.raises(
        ValueError, match="HeNormal: an EinsumDense kernel's layout depends on its equation"
    ):
        initializers.HeNormal(layout="einsum")
    layout = keras_layout("einsum", (16, 3, 5), equation="ab,bcd->acd")
    kernel = values(initializers.HeNormal(layout=layout, seed=0), (16, 3, 5))
    assert abs(kernel.std() - math.sqrt(2 / 16)) <= 5 * math.sqrt(2 / 16) / math.sqrt(
        2 * kernel.size
    )


def test_the_values_of_a_bad_shape_name_the_initializer():
    with pytest.raises(ValueError, match="gates|blocks|divisible"):
        initializers.HeNormal(layout="recurrent", gates=4, seed=0)((10, 30))


def test_a_keras_model_given_to_the_torch_functions_says_what_to_use():
    """Under Keras's torch backend a Keras model is an nn.Module too: plan, init, diagnose
    and Plan.apply refuse it with what to use instead, and leave it untouched."""
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.weights]
    batch = np.zeros((2, 8), "float32")
    calls = (
        lambda: wi.plan(model, "he"),
        lambda: wi.init(model, "he", seed=0),
        lambda: wi.diagnose(model, batch),
        lambda: wk.plan(model, "he").apply(model, seed=0),
    )
    for call in calls:
        with pytest.raises(TypeError, match="is a Keras model.*use weightinit.keras.*apply"):
            call()
    for w, b in zip(model.weights, before):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(w), b)
