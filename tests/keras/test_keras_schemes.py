"""Every scheme on Keras graph models (issue 15), through the torch twin: the twin computes
what the Keras model computes; the same architecture written in torch gets the same planned
std per layer under every scheme of the registry; "auto" is data-free; "lsuv" leaves each
layer's output at unit std on the data, measured by Keras itself; diagnose sees vanishing
signals; errors are clear and leave the model as it was."""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict

import keras
import numpy as np
import pytest
import torch
from torch import nn

import weightinit as wi
from weightinit import keras as wk
from weightinit.frontends.keras.twin import KerasTwin
from weightinit.frontends.torch.propagation import STABILIZING_SAMPLES
from weightinit.scheme.registry import schemes

ALL = sorted(schemes())
RNG = np.random.default_rng(0)
L = keras.layers


def numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(keras.ops.convert_to_numpy(x))


def weights(model: keras.Model) -> list[np.ndarray]:
    return [numpy(w.value).copy() for w in model.weights]


# --- the same architectures in Keras and in torch (the same layer names) -------------------


def keras_mlp() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((24,)),
            L.Dense(32, activation="tanh", name="fc1"),
            L.Dense(32, name="fc2"),
            L.ReLU(name="relu"),
            L.Dense(10, activation="softmax", name="head"),
        ],
        name="mlp",
    )


def torch_mlp() -> nn.Module:
    return nn.Sequential(
        OrderedDict(
            fc1=nn.Linear(24, 32),
            tanh=nn.Tanh(),
            fc2=nn.Linear(32, 32),
            relu=nn.ReLU(),
            head=nn.Linear(32, 10),
        )
    )


def keras_residual(blocks: int = 3) -> keras.Model:
    inputs = keras.Input((16,))
    x = L.Dense(16, name="stem")(inputs)
    for i in range(blocks):
        h = L.Dense(16, activation="relu", name=f"b{i}_fc1")(x)
        x = L.Add(name=f"b{i}_add")([x, L.Dense(16, name=f"b{i}_fc2")(h)])
    return keras.Model(inputs, L.Dense(4, name="head")(x), name="residual")


class TorchResidual(nn.Module):
    def __init__(self, blocks: int = 3):
        super().__init__()
        self.stem, self.blocks = nn.Linear(16, 16), blocks
        for i in range(blocks):
            self.add_module(f"b{i}_fc1", nn.Linear(16, 16))
            self.add_module(f"b{i}_fc2", nn.Linear(16, 16))
        self.head = nn.Linear(16, 4)  # registered last, as the Keras graph's order

    def forward(self, x):
        x = self.stem(x)
        for i in range(self.blocks):
            h = torch.relu(getattr(self, f"b{i}_fc1")(x))
            x = x + getattr(self, f"b{i}_fc2")(h)
        return self.head(x)


def keras_cnn() -> keras.Model:
    inputs = keras.Input((12, 12, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="relu")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.Conv2D(8, 1, activation="relu", name="pw")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, L.Dense(10, name="head")(x), name="cnn")


class TorchCNN(nn.Module):
    """keras_cnn in torch, channels first (the input's odd pixel pads at the end, as Keras)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(8, eps=1e-3, momentum=0.01)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 8, 1)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(nn.functional.pad(x, (0, 1, 0, 1)))))
        x = torch.relu(self.pw(self.dw(x))).mean((2, 3))
        return self.head(x)


def keras_attention() -> keras.Model:
    inputs = keras.Input((6, 16))
    x = L.MultiHeadAttention(2, 4, name="mha")(inputs, inputs)
    return keras.Model(inputs, L.Dense(4, name="head")(L.Add(name="add")([inputs, x])))


class TorchAttention(nn.Module):
    """keras_attention in torch: Keras's MultiHeadAttention as four Linears, by its names."""

    def __init__(self):
        super().__init__()
        self.mha = nn.Module()
        for name in ("query", "key", "value"):
            self.mha.add_module(name, nn.Linear(16, 8))
        self.mha.attention_output = nn.Linear(8, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        def heads(t):
            return t.reshape(*t.shape[:-1], 2, 4).transpose(1, 2)

        q, k, v = (heads(getattr(self.mha, n)(x)) for n in ("query", "key", "value"))
        mixed = (torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1) @ v).transpose(1, 2)
        return self.head(x + self.mha.attention_output(mixed.reshape(*x.shape[:-1], 8)))


def torch_name(keras_name: str) -> str:
    """The torch parameter a Keras weight stands for (``fc1.kernel`` -> ``fc1.weight``)."""
    *path, leaf = keras_name.split(".")
    leaf = {"kernel": "weight", "gamma": "weight", "beta": "bias", "embeddings": "weight"}.get(
        leaf, leaf
    )
    return ".".join([*path, leaf])


ARCHITECTURES = {
    "mlp": (keras_mlp, torch_mlp, (24,)),
    "residual": (keras_residual, TorchResidual, (16,)),
    "cnn": (keras_cnn, TorchCNN, (12, 12, 3)),
    "attention": (keras_attention, TorchAttention, (6, 16)),
}


def stand_in(shape: tuple[int, ...]) -> torch.Tensor:
    """The batch weightinit.keras stands in with: N(0, 1), 64 samples, torch seed 0."""
    return torch.randn((64, *shape), generator=torch.Generator().manual_seed(0))


def channels_first(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2) if x.ndim == 4 else x


def test_the_twin_computes_what_the_keras_model_computes():
    """A graph with a strided 'same' convolution (TensorFlow's asymmetric padding), batch
    norm, a depthwise convolution, a residual Add, pooling, attention with a causal mask,
    layer norm and dropout, in inference mode: the twin's output is Keras's to float error."""
    inputs = keras.Input((16, 16, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same", name="stem")(inputs)
    x = L.ReLU(name="relu")(L.BatchNormalization(name="bn")(x))
    y = L.Conv2D(8, 1, activation="gelu", name="pw")(
        L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    )
    x = L.MaxPooling2D(name="pool")(L.Add(name="add")([x, y]))
    x = L.Reshape((16, 8), name="tokens")(x)
    a = L.MultiHeadAttention(2, 4, name="mha")(x, x, use_causal_mask=True)
    x = L.LayerNormalization(name="ln")(L.Add(name="add2")([x, a]))
    x = L.Dropout(0.5, name="drop")(L.GlobalAveragePooling1D(name="gap")(x))
    model = keras.Model(inputs, L.Dense(10, activation="softmax", name="head")(x))
    for layer in model.layers:  # non-trivial BN statistics
        if isinstance(layer, L.BatchNormalization):
            layer.moving_mean.assign(RNG.normal(size=8).astype("float32"))
            layer.moving_variance.assign(RNG.uniform(0.5, 2, size=8).astype("float32"))
    batch = RNG.normal(size=(4, 16, 16, 3)).astype("float32")
    twin = KerasTwin(model).eval()
    want = numpy(model(batch, training=False))
    got = numpy(twin(torch.from_numpy(batch)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert set(twin.weights) >= {"stem.weight", "bn.running_var", "mha.attention_output.weight"}


@pytest.mark.parametrize("rank", [1, 2])
def test_the_twin_upsamples_and_normalizes_as_keras_does(rank):
    """Transposed convolutions, "same" (TensorFlow's crop, and zeros where the kernel is
    smaller than its stride) and "valid", group and RMS normalization: after "he" the
    twin's output is Keras's to float error."""
    size = (7,) * rank
    inputs = keras.Input((*size, 4))
    up = getattr(L, f"Conv{rank}DTranspose")
    x = up(6, 3, strides=2, padding="same", name="up1")(inputs)
    x = L.GroupNormalization(groups=2, name="gn")(x)
    x = up(5, 1, strides=2, padding="same", name="up2")(x)
    x = up(4, 4, strides=2, padding="valid", name="up3")(x)
    x = L.RMSNormalization(name="rms")(up(4, 2, strides=3, padding="same", name="up4")(x))
    model = keras.Model(inputs, x)
    wk.init(model, "he", seed=0)
    batch = RNG.normal(size=(2, *size, 4)).astype("float32")
    want = numpy(model(batch))
    got = numpy(KerasTwin(model)(torch.from_numpy(batch)))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * float(want.std()))


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"return_sequences": True},
        {"go_backwards": True},
        {"go_backwards": True, "return_sequences": True},
    ],
)
def test_the_twin_runs_an_lstm_as_keras_does(options):
    inputs = keras.Input((6, 5))
    model = keras.Model(inputs, L.LSTM(8, name="lstm", **options)(inputs))
    batch = RNG.normal(size=(2, 6, 5)).astype("float32")
    np.testing.assert_allclose(
        numpy(KerasTwin(model)(torch.from_numpy(batch))), numpy(model(batch)), atol=1e-6
    )


@pytest.mark.parametrize("scheme", ["auto", "lsuv"])
def test_lstms_get_forget_bias_one_and_orthogonal_gates_under_the_twin_schemes(scheme):
    """Keras's LSTM has one bias (torch's bias_ih; the twin's bias_hh stays zero, never
    planned): its forget slice gets 1 (Jozefowicz et al. 2015) in full, and each gate of the
    recurrent kernel is orthogonal (a scaled identity Gram matrix)."""
    inputs = keras.Input((6, 5))
    x = L.LSTM(8, return_sequences=True, name="l1")(inputs)
    model = keras.Model(inputs, L.Dense(3, name="head")(L.LSTM(8, name="l2")(x)))
    data = {"data": RNG.normal(size=(64, 6, 5)).astype("float32")} if scheme == "lsuv" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning about the twin's own bias_hh
        plan = wk.apply(model, scheme, seed=0, **data)
    assert not any("bias_hh" in r.name for r in plan.rows)
    for name in ("l1", "l2"):
        cell = model.get_layer(name).cell
        bias = numpy(cell.bias).reshape(4, 8)
        scale = plan[f"{name}.lstm_cell.bias"].scale or 1.0
        np.testing.assert_allclose(
            bias[1], 1.0 * np.ones(8) * (scale if scheme == "lsuv" else 1.0), rtol=1e-6
        )
        assert not bias[[0, 2, 3]].any()
        for gate in np.split(numpy(cell.recurrent_kernel).astype(np.float64), 4, axis=1):
            gram = gate.T @ gate
            np.testing.assert_allclose(gram, gram[0, 0] * np.eye(8), atol=1e-5 * gram[0, 0])


@pytest.mark.parametrize("scheme", ALL)
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_the_same_architecture_gets_the_same_planned_std_as_in_torch(arch, scheme):
    """Every scheme of the registry, on an MLP, a residual MLP, a CNN and an attention block:
    the Keras model's plan and the torch model's agree row for row (kernels against weights),
    or both refuse. Data schemes calibrate on the same batch (channels last for Keras)."""
    make_keras, make_torch, shape = ARCHITECTURES[arch]
    x = stand_in(shape)
    kw = {"data": x} if scheme == "lsuv" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            theirs = wi.plan(make_torch(), scheme, seed=0, example_input=channels_first(x),
                             **{k: channels_first(v) for k, v in kw.items()})  # fmt: skip
        except (ValueError, TypeError) as err:
            with pytest.raises(type(err)):
                wk.plan(make_keras(), scheme, seed=0, **{k: v.numpy() for k, v in kw.items()})
            return
        ours = wk.plan(make_keras(), scheme, seed=0, **{k: v.numpy() for k, v in kw.items()})
    other = [r for r in theirs.rows if r.init != "skip"]
    by_name = {torch_name(r.name): r for r in ours.rows if r.init != "skip"}
    assert sorted(by_name) == sorted(r.name for r in other)
    mine = [by_name[r.name] for r in other]
    assert [(r.role, r.init) for r in mine] == [(r.role, r.init) for r in other]
    stds = [[math.nan if r.std is None else r.std for r in rows] for rows in (mine, other)]
    # Same draws (the same names) and the same batches give the same gains to float error;
    # but auto's stabilizing sweep draws its own Gaussian batch of STABILIZING_SAMPLES in each
    # model's layout (channels last for Keras, first for torch), so on the CNN the measured
    # gains agree within sampling error: 5 standard errors of a std, 5 / sqrt(2 n).
    noisy = scheme == "auto" and arch == "cnn"
    rel = 5 / math.sqrt(2 * STABILIZING_SAMPLES) if noisy else 1e-5
    assert stds[0] == pytest.approx(stds[1], rel=rel, abs=1e-12, nan_ok=True)
    assert [(r.fan_in, r.fan_out) for r in mine] == [(r.fan_in, r.fan_out) for r in other]


def motivating_auto_example() -> keras.Model:
    """The fourth motivating example: Dense(64, "relu") with no initializer, 784 features,
    10 softmax classes."""
    return keras.Sequential(
        [
            keras.Input((784,)),
            L.Dense(64, activation="relu", name="hidden"),
            L.Dense(10, activation="softmax", name="out"),
        ]
    )


def test_apply_alone_initializes_a_keras_model_data_free_like_autoinit():
    """`import weightinit.keras as autoinit; autoinit.apply(model)`, no other argument: the
    hidden kernel gets Var = 1 / fan_in (unit-variance input), so on fresh N(0, 1) inputs the
    pre-activation has unit variance (within 5 standard errors of the sample variance), and
    the output layer sees the ReLU's second moment 1/2 (Var = 2 / 64)."""
    import weightinit.keras as autoinit

    model = motivating_auto_example()
    plan = autoinit.apply(model)
    assert plan.scheme == "auto"
    kernel = numpy(model.get_layer("hidden").kernel).astype(np.float64)
    # 1 / (fan_in E[x^2]), E[x^2] of the 64 x 784 stand-in: 1 within 5 standard errors
    assert plan["hidden.kernel"].args["scale"] == pytest.approx(
        1.0, rel=5 * math.sqrt(2 / (64 * 784))
    )
    # times the stabilizing sweep's gain: 1 within 5 standard errors of the drawn kernel's
    # own variance (2 / its size, relative) and of the sweep's std over 1024 x 64 outputs
    rel = 5 * math.sqrt(2 / kernel.size) + 5 / math.sqrt(2 * 1024 * 64)
    assert plan["hidden.kernel"].std == pytest.approx(1 / 28, rel=rel)
    assert abs(kernel.std() - 1 / 28) <= 5 * (1 / 28) / math.sqrt(2 * kernel.size)
    assert plan["out.kernel"].args["scale"] == pytest.approx(2.0, rel=1e-6)
    x = RNG.normal(size=(4096, 784)).astype("float32")
    pre = x.astype(np.float64) @ kernel + numpy(model.get_layer("hidden").bias)
    assert abs(pre.var() - 1) <= 5 * math.sqrt(2 / pre.size) + 0.1  # + the kernel's own draw


def test_lsuv_leaves_every_layer_at_unit_std_on_the_data_as_keras_computes_it():
    """LSUV (Mishkin & Matas 2016) on a deep tanh net: each Dense's pre-activation on the
    calibration batch has std 1 within LSUV's tolerance, measured by Keras on its backend."""
    layers = [keras.Input((32,))]
    layers += [L.Dense(32, activation="tanh", name=f"d{i}") for i in range(8)]
    model = keras.Sequential(layers, name="deep")
    data = RNG.normal(size=(256, 32)).astype("float32")
    plan = wk.apply(model, "lsuv", data=data, seed=0)
    assert plan.scheme == "lsuv"
    h = data
    for i in range(8):
        layer = model.get_layer(f"d{i}")
        pre = numpy(h @ numpy(layer.kernel) + numpy(layer.bias))
        assert abs(pre.std() - 1) <= 0.1 + 1e-3, (i, pre.std())
        h = np.tanh(pre)


def test_diagnose_sees_a_vanishing_signal_and_the_fix():
    """30 tanh layers at N(0, 0.01^2) (std 0.01 x sqrt(64) = 0.08 per layer) vanish; the
    report names the Keras layers; after apply() the signal holds."""
    small = keras.initializers.RandomNormal(stddev=0.01, seed=0)
    layers = [keras.Input((64,))]
    layers += [
        L.Dense(64, activation="tanh", kernel_initializer=small, name=f"d{i}") for i in range(30)
    ]
    model = keras.Sequential(layers)
    x = RNG.normal(size=(128, 64)).astype("float32")
    before = wk.diagnose(model, x)
    assert before.verdict == "vanishing"
    assert before.layers[0].name == "d0" and before.layers[-1].name == "d29"
    assert {layer.module for layer in before.layers} == {"Dense"}
    assert before.layers[-1].std < 1e-6
    wk.apply(model, seed=0)
    after = wk.diagnose(model, x)
    assert after.verdict == "healthy"
    assert 0.3 < after.layers[-1].std < 3


def test_fixup_zeroes_each_branchs_last_layer_in_the_keras_model():
    """Fixup (Zhang et al. 2019) on a residual graph: the last layer of each branch is zero,
    the first scaled by L^(-1/(2m-2)) = 3^(-1/2) against He, L = 3 branches of m = 2 layers."""
    model = keras_residual()
    plan = wk.apply(model, "fixup", seed=0)
    for i in range(3):
        assert not numpy(model.get_layer(f"b{i}_fc2").kernel).any()
        he = math.sqrt(2 / 16)
        assert plan[f"b{i}_fc1.kernel"].std == pytest.approx(he / math.sqrt(3), rel=1e-6)


def test_rules_and_skip_name_keras_weights_on_both_paths():
    for scheme in ("he", "selu"):  # the Keras layers, and the twin
        model = keras_mlp()
        head = numpy(model.get_layer("head").kernel).copy()
        rules = {"fc1.kernel": ("normal", {"std": 0.3})}
        plan = wk.apply(model, scheme, seed=0, skip=["head.*"], rules=rules)
        assert plan["head.kernel"].init == "skip"
        np.testing.assert_array_equal(numpy(model.get_layer("head").kernel), head)
        fc1 = numpy(model.get_layer("fc1").kernel).astype(np.float64)
        assert plan["fc1.kernel"].std == 0.3
        assert plan["fc1.kernel"].reason.startswith("rule 'fc1.kernel'")
        assert abs(fc1.std() - 0.3) <= 5 * 0.3 / math.sqrt(2 * fc1.size)
        rule = wk.plan(keras_mlp(), scheme, rules={L.Dense: ("normal", {"std": 0.5})})
        assert {r.std for r in rule.rows if r.name.endswith("kernel")} == {0.5}


def test_a_plan_reloaded_from_json_writes_the_same_values():
    model = keras_cnn()
    plan = wk.plan(model, "auto", seed=4)
    wk.write(wi.Plan.from_json(plan.to_json()), model)
    first = weights(model)
    wk.write(plan, model)
    for a, b in zip(first, weights(model), strict=True):
        np.testing.assert_array_equal(a, b)


class Subclassed(keras.Model):
    """A subclassed model whose call() has a graph: Dense, then a separate tanh layer."""

    def __init__(self):
        super().__init__()
        self.a = L.Dense(32, name="a")
        self.act = L.Activation("tanh", name="act")
        self.b = L.Dense(10, name="b")

    def call(self, x):
        return self.b(self.act(self.a(x)) + 1.0)


class Branching(Subclassed):
    """A call() that branches on the values: it cannot be traced symbolically."""

    def call(self, x):
        h = self.a(x)
        return self.b(h) if float(keras.ops.convert_to_numpy(keras.ops.sum(h))) > 0 else h


def test_a_subclassed_models_call_is_traced_for_every_scheme():
    """Its call() on a symbolic input gives the graph: "auto" and diagnose run on it, and the
    classic and twin plans both see the Activation layer after `a` (whichever runs first);
    the twin computes what the model computes."""
    x = RNG.normal(size=(64, 8)).astype("float32")
    for first in ("he", "auto"):
        model = Subclassed()
        model(x[:2])
        plans = {first: wk.plan(model, first, seed=0)}
        second = "auto" if first == "he" else "he"
        plans[second] = wk.plan(model, second, seed=0)
        assert "followed by tanh (through Activation)" in plans["he"]["a.kernel"].reason
        he_tanh = plans["he"]["a.kernel"].std * math.sqrt(8)  # He's gain before tanh
        assert he_tanh == pytest.approx(1.593, abs=1e-3)
    wk.apply(model, seed=0)
    np.testing.assert_allclose(
        numpy(KerasTwin(model)(torch.from_numpy(x))), numpy(model(x)), atol=1e-5
    )
    assert wk.diagnose(model, x).verdict == "healthy"


def test_bad_input_is_a_clear_error_and_the_model_is_left_as_it_was():
    with pytest.raises(TypeError, match="must be a Keras model.*use weightinit.plan"):
        wk.plan(nn.Linear(2, 2), "he")
    sub = Branching()
    sub(np.ones((2, 8), "float32"))
    with pytest.raises(ValueError, match="is subclassed and .* cannot follow its layers.*classic"):
        wk.apply(sub, "auto")
    assert wk.plan(sub, "he")["a.kernel"].reason.startswith("followed by the output")
    inputs = keras.Input((5, 3))
    recurrent = keras.Model(inputs, L.Dense(2, name="d")(L.GRU(4, name="gru")(inputs)))
    before = weights(recurrent)
    with pytest.raises(ValueError, match=r"layer 'gru' \(GRU\).*classic scheme"):
        wk.apply(recurrent, "auto")
    tokens = keras.Input((6,), dtype="int32")
    embedded = keras.Model(tokens, L.Embedding(20, 4, name="emb")(tokens))
    with pytest.raises(ValueError, match="pass example_input="):
        wk.apply(embedded, "auto")
    model = keras_mlp()
    kept = weights(model)
    with pytest.raises(ValueError, match="calibrates on data: pass data="):
        wk.apply(model, "lsuv")
    with pytest.raises(TypeError, match="`data` must be an array"):
        wk.apply(model, "lsuv", data=object())
    plan = wk.plan(model, "auto", seed=0)
    plan.rows[-1].args = {"bogus": 1}  # the last row fails: nothing may have been written
    with pytest.raises(Exception, match="bogus"):
        wk.write(plan, model)
    for w, b in zip(weights(model), kept, strict=True):
        np.testing.assert_array_equal(w, b)
    for w, b in zip(weights(recurrent), before, strict=True):
        np.testing.assert_array_equal(w, b)


# --- models nobody here wrote: keras.applications, built with random weights ----------------

APPLICATIONS = {
    # keras.ops in the graph (x + 3, x * hard_sigmoid), squeeze-excitation, hard swish
    "MobileNetV3Small": (lambda: keras.applications.MobileNetV3Small, (32, 32, 3), True),
    # Rescaling and Normalization layers, swish, depthwise convolutions, dropout
    "EfficientNetB0": (lambda: keras.applications.EfficientNetB0, (32, 32, 3), True),
    # LayerScale layers, nested Sequential models, LayerNormalization, GELU
    "ConvNeXtTiny": (lambda: keras.applications.ConvNeXtTiny, (32, 32, 3), True),
    # ZeroPadding2D, strided convolutions, batch norm, residual adds
    "ResNet50": (lambda: keras.applications.ResNet50, (32, 32, 3), False),
    # SeparableConv2D, max pooling with padding="same"
    "Xception": (lambda: keras.applications.Xception, (71, 71, 3), False),
}


@pytest.mark.parametrize("name", list(APPLICATIONS))
def test_keras_applications_models_get_every_scheme_and_their_twin_computes_them(name):
    """keras.applications models (weights=None: nothing downloaded): after "he" the twin's
    logits equal Keras's to float error (relative to their spread); "auto" writes every
    weight the twin knows (the lighter models), and the model's output stays finite."""
    make, shape, run_auto = APPLICATIONS[name]
    model = make()(weights=None, input_shape=shape, classes=10, classifier_activation=None)
    x = RNG.normal(size=(2, *shape)).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvNeXt's layer scales: unknown to "he", kept
        wk.apply(model, "he", seed=0)
    want = numpy(model(x, training=False))
    got = numpy(KerasTwin(model).eval()(torch.from_numpy(x)))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * float(want.std()) + 1e-6)
    if run_auto:
        plan = wk.apply(model, seed=0)
        assert plan.scheme == "auto" and "skip" not in {r.init for r in plan.rows}
        out = numpy(model(x, training=False))
        assert np.isfinite(out).all() and out.std() > 0


def test_without_a_seed_keras_global_seed_decides():
    """seed=None follows Keras: keras.utils.set_random_seed makes apply reproducible, and
    two calls in a row draw different values."""
    runs = []
    for _ in range(2):
        keras.utils.set_random_seed(7)
        model = keras_mlp()
        wk.apply(model)
        wk.apply(again := keras_mlp())
        runs.append((weights(model), weights(again)))
    for a, b in zip(runs[0][0], runs[1][0], strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(runs[0][0][0], runs[0][1][0])


FACTORY = """
import keras

def build():
    return keras.Sequential([
        keras.Input((32,)),
        keras.layers.Dense(32, activation="relu", name="hidden"),
        keras.layers.Dense(10, activation="softmax", name="out"),
    ])
"""


def test_the_command_line_plans_and_diagnoses_a_keras_factory(tmp_path, capsys):
    """`weightinit plan file.py:build` on a function that returns a Keras model goes to
    weightinit.keras ("auto" with no input: the stand-in; "lsuv" on --data .npy), and
    `weightinit diagnose` compares schemes on it."""
    from weightinit.commands.cli import main

    (tmp_path / "model.py").write_text(FACTORY)
    factory = f"{tmp_path / 'model.py'}:build"
    assert main(["plan", factory, "--scheme", "auto"]) == 0
    printed = capsys.readouterr().out
    assert "hidden.kernel  Dense" in printed and "torch twin" in printed
    np.save(tmp_path / "x.npy", RNG.normal(size=(64, 32)).astype("float32"))
    assert (
        main(["plan", factory, "--scheme", "lsuv", "--data", str(tmp_path / "x.npy"), "--json"])
        == 0
    )
    plan = wi.Plan.from_json(capsys.readouterr().out)
    assert plan.scheme == "lsuv" and plan.options["seed"] == 0 and plan["out.kernel"].scale
    out = tmp_path / "report"
    assert (
        main(
            [
                "diagnose",
                factory,
                "--input-shape",
                "64,32",
                "--schemes",
                "he,auto",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "he           healthy" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} >= {"signal.png", "index.html", "report.json"}


def test_a_separable_convolution_gets_each_kernels_own_fans_and_gain():
    """SeparableConv2D(8, 3, depth_multiplier=2) on 4 channels: its depthwise kernel has fans
    (9, 18) and is followed by the pointwise kernel (linear: He's gain 1, std sqrt(1/9)); the
    pointwise kernel (1, 1, 8, 8) has fans (8, 8) and the layer's ReLU (std sqrt(2/8))."""
    inputs = keras.Input((6, 6, 4))
    sep = L.SeparableConv2D(8, 3, depth_multiplier=2, activation="relu", name="sep")(inputs)
    model = keras.Model(inputs, sep)
    plan = wk.plan(model, "he")
    depthwise, pointwise = plan["sep.depthwise_kernel"], plan["sep.pointwise_kernel"]
    assert (depthwise.fan_in, depthwise.fan_out) == (9, 18)
    assert (pointwise.fan_in, pointwise.fan_out) == (8, 8)
    assert depthwise.std == pytest.approx(math.sqrt(1 / 9))
    assert pointwise.std == pytest.approx(math.sqrt(2 / 8))


def test_attention_and_einsum_kernels_get_the_fans_their_equation_says():
    """MultiHeadAttention(2 heads, key_dim 4) on d = 16: query/key/value kernels (16, 2, 4)
    have fans (16, 8), the output kernel (2, 4, 16) has (8, 16); a standalone EinsumDense
    "ab,bcd->acd" with kernel (16, 3, 5) sums over b: fans (16, 15). He (linear): 1 / fan_in."""
    inputs = keras.Input((8, 16))
    x = L.MultiHeadAttention(2, 4, name="mha")(inputs, inputs)
    x = L.EinsumDense("abc,cde->abde", output_shape=(None, 3, 5), name="einsum")(x)
    plan = wk.plan(keras.Model(inputs, x), "he")
    for name in ("query", "key", "value"):
        row = plan[f"mha.{name}.kernel"]
        assert (row.fan_in, row.fan_out, row.std) == (16, 8, pytest.approx(1 / 4))
        assert "the rest of MultiHeadAttention" in row.reason
    row = plan["mha.attention_output.kernel"]
    assert (row.fan_in, row.fan_out, row.std) == (8, 16, pytest.approx(1 / math.sqrt(8)))
    row = plan["einsum.kernel"]
    assert (row.fan_in, row.fan_out, row.std) == (16, 15, pytest.approx(1 / 4))
