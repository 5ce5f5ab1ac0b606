"""Whole-model plans: the torch scheme reproduces reset_parameters, gains follow activations,
and apply is atomic, reproducible and leaves everything else as it was."""

import copy
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import var_tolerance
from torch import nn

import weightinit as wi
from weightinit.initializers.fills import Draw


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_unchanged(model, before):
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


# --- the torch scheme --------------------------------------------------------------------------

TORCH_ZOO = [
    lambda: nn.Linear(30, 20),
    lambda: nn.Bilinear(5, 7, 3),
    lambda: nn.Conv2d(8, 16, 3, groups=4),
    lambda: nn.Conv1d(4, 4, 5, groups=4),
    lambda: nn.ConvTranspose2d(8, 16, 3, groups=2),
    lambda: nn.LSTM(10, 20, num_layers=2, bidirectional=True, proj_size=5),
    lambda: nn.GRU(6, 12),
    lambda: nn.RNNCell(6, 12),
    lambda: nn.LSTMCell(6, 12),
    lambda: nn.Embedding(50, 8, padding_idx=3),
    lambda: nn.EmbeddingBag(50, 8),
    lambda: nn.LayerNorm(8),
    lambda: nn.GroupNorm(2, 8),
    lambda: nn.BatchNorm2d(8),
    lambda: nn.PReLU(8, init=0.3),
]


@pytest.mark.parametrize("make", TORCH_ZOO, ids=lambda f: type(f()).__name__)
def test_torch_scheme_reproduces_reset_parameters_draw_for_draw(make):
    """Same global RNG state, same values: the plan draws in the order reset_parameters does."""
    torch.manual_seed(0)
    reference = make()
    model = make()
    before = snapshot(model)
    torch.manual_seed(0)
    make()  # replay the reference's draws, then re-initialize `model` with them
    torch.manual_seed(0)
    wi.init(model, "torch")
    for (name, ours), theirs in zip(model.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0, msg=name)
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items()) or all(
        v.numel() == 0 or v.unique().numel() == 1 for v in before.values()
    )


def test_torch_scheme_statistics_for_attention():
    """MultiheadAttention draws in a different order, so compare distributions."""
    torch.manual_seed(0)
    reference = nn.MultiheadAttention(512, 8, add_bias_kv=True)
    model = nn.MultiheadAttention(512, 8, add_bias_kv=True)
    wi.init(model, "torch", seed=1)
    for name, ours in model.named_parameters():
        theirs = reference.get_parameter(name).detach()
        if theirs.unique().numel() == 1:  # zeroed biases
            assert torch.equal(ours.detach(), theirs), name
            continue
        var = theirs.var().item()
        assert abs(ours.var().item() - var) < var_tolerance(var, n=ours.numel()), name
        if name != "bias_k" and name != "bias_v":  # uniform: the same bound
            assert ours.abs().max() <= theirs.abs().max() * 1.01, name


# --- activations and gains ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "act, expected_gain",
    [
        (nn.ReLU(), math.sqrt(2)),
        (nn.Tanh(), wi.gain("tanh")),
        (nn.GELU(), wi.gain("gelu")),
        (nn.SELU(), 1.0),
        (nn.LeakyReLU(0.2), math.sqrt(2 / 1.04)),
        (nn.Sigmoid(), wi.gain("sigmoid")),
        (nn.SiLU(), wi.gain("silu")),
        (nn.Identity(), 1.0),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else "",
)
@pytest.mark.parametrize("traced", ["fx", "execution"])
def test_he_gain_follows_each_activation(act, expected_gain, traced):
    net = nn.Sequential(nn.Linear(40, 64), act, nn.Linear(64, 10))
    example = torch.randn(2, 40) if traced == "execution" else None
    p = wi.plan(net, "he", example_input=example)
    assert p.graph == traced
    assert p["0.weight"].std == pytest.approx(expected_gain / math.sqrt(40), rel=1e-9)
    assert p["2.weight"].std == pytest.approx(1 / math.sqrt(64), rel=1e-9)  # read-out: linear


class Functional(nn.Module):
    """Functional activations, separated from their layers, and Python control flow."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 16)
        self.b = nn.Conv1d(16, 16, 3, padding=1)
        self.norm = nn.BatchNorm1d(16)
        self.c = nn.Linear(16, 16)
        self.d = nn.Linear(16, 16)
        self.e = nn.Linear(16, 4)

    def forward(self, x):
        h = F.leaky_relu(self.a(x), 0.3)
        if h.mean() > -100:  # data-dependent: fx cannot trace this
            h = self.norm(self.b(h.unsqueeze(-1))).squeeze(-1).relu()
        h = torch.tanh(F.dropout(self.c(h), 0.1, self.training))
        h = self.d(h).view(-1, 4, 4).flatten(1)
        h = torch.sin(h)  # an unknown elementwise activation: gain by quadrature
        return self.e(h)


def test_functional_activations_through_dropout_norm_and_reshapes():
    p = wi.plan(Functional(), "he", example_input=torch.randn(4, 8))
    assert p["a.weight"].std == pytest.approx(wi.gain("leaky_relu", 0.3) / math.sqrt(8))
    assert "through BatchNorm1d" in p["b.weight"].reason
    assert p["b.weight"].std == pytest.approx(math.sqrt(2 / 48))
    assert p["c.weight"].std == pytest.approx(wi.gain("tanh") / 4)
    assert p["d.weight"].std == pytest.approx(wi.gain(torch.sin) / 4)
    assert p["e.weight"].reason.startswith("followed by the output")


def test_control_flow_without_example_input_asks_for_one():
    with pytest.raises(ValueError, match="pass example_input"):
        wi.plan(Functional(), "he")


def test_tracing_restores_modes_and_removes_hooks():
    model = Functional().eval()
    model.a.train()
    wi.plan(model, "he", example_input=torch.randn(4, 8))
    assert not model.training and model.a.training and not model.b.training
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_custom_activation_module_gets_a_quadrature_gain():
    class Cube(nn.Module):
        def forward(self, x):
            return 0.3 * x**3

    net = nn.Sequential(nn.Linear(10, 10), Cube(), nn.Linear(10, 1))
    p = wi.plan(net, "he")
    third = 0.3**2 * 15  # E[(0.3 z^3)^2] = 0.09 E[z^6] = 0.09 * 15
    assert p["0.weight"].std == pytest.approx(1 / math.sqrt(third) / math.sqrt(10), rel=1e-9)


def test_softmax_and_residuals_are_not_activations():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(8, 8)
            self.b = nn.Linear(8, 8)

        def forward(self, x):
            return torch.softmax(self.a(x), -1) + self.b(x)

    p = wi.plan(Block(), "he")
    assert p["a.weight"].std == pytest.approx(1 / math.sqrt(8))
    assert "softmax" in p["a.weight"].reason
    assert "add" in p["b.weight"].reason


def test_he_variance_is_realized_on_apply(gen):
    net = nn.Sequential(nn.Linear(1000, 1000), nn.Tanh(), nn.Linear(1000, 1))
    wi.init(net, "he", generator=gen)
    var = wi.gain("tanh") ** 2 / 1000
    assert abs(net[0].weight.var().item() - var) < var_tolerance(var)


# --- roles and options -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make", [lambda: nn.LSTM(8, 16, num_layers=2, bidirectional=True), lambda: nn.LSTMCell(8, 16)]
)
@pytest.mark.parametrize("scheme", ["he", "keras", "flax", "glorot"])
def test_lstm_forget_gate_bias_sums_to_one(make, scheme):
    lstm = make()
    wi.init(lstm, scheme, seed=0)
    suffixes = {n[len("bias_ih") :] for n, _ in lstm.named_parameters() if n.startswith("bias_ih")}
    for suffix in suffixes:
        total = (getattr(lstm, "bias_ih" + suffix) + getattr(lstm, "bias_hh" + suffix)).detach()
        gates = total.view(4, 16)
        assert torch.equal(gates[1], torch.ones(16))  # forget gate (torch order i, f, g, o)
        assert not gates[[0, 2, 3]].any()


def test_forget_bias_option_and_recurrent_identity():
    lstm = nn.LSTM(4, 4)
    wi.init(lstm, "he", forget_bias=2.0, recurrent="identity", seed=0)
    assert torch.equal(lstm.bias_ih_l0.detach().view(4, 4)[1], torch.full((4,), 2.0))
    assert torch.equal(lstm.weight_hh_l0.detach(), torch.eye(4).repeat(4, 1))


def test_recurrent_weights_are_orthogonal_per_gate():
    gru = nn.GRU(8, 8)
    wi.init(gru, "he", seed=0)
    for gate in gru.weight_hh_l0.detach().split(8):
        torch.testing.assert_close(gate @ gate.T, torch.eye(8), atol=1e-5, rtol=0)


def test_relu_bias_only_before_relu():
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    wi.init(net, "he", relu_bias=0.01, seed=0)
    assert torch.equal(net[0].bias.detach(), torch.full((4,), 0.01))
    assert not net[2].bias.any() and not net[4].bias.any()


def test_embedding_padding_row_stays_zero_and_std_option():
    emb = nn.Embedding(1000, 64, padding_idx=7)
    wi.init(emb, "he", embedding_std=0.02, seed=0)
    assert not emb.weight[7].any()
    assert emb.weight.std().item() == pytest.approx(0.02, rel=0.02)


def test_mode_fan_out_and_distribution_options():
    net = nn.Sequential(nn.Linear(100, 50), nn.ReLU())
    row = wi.plan(net, "he", mode="fan_out", distribution="uniform")["0.weight"]
    assert row.args == {"scale": 2.0, "mode": "fan_out", "distribution": "uniform"}
    assert row.std == pytest.approx(math.sqrt(2 / 50)) and row.bound == pytest.approx(
        math.sqrt(6 / 50)
    )


def test_norms_get_ones_and_zeros():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
    with torch.no_grad():
        net[1].weight.fill_(5.0)
        net[1].bias.fill_(5.0)
    wi.init(net, "he", seed=0)
    assert torch.equal(net[1].weight.detach(), torch.ones(8)) and not net[1].bias.any()


# --- semantics users rely on -------------------------------------------------------------------


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(30, 16)
        self.body = nn.Sequential(nn.Linear(16, 16), nn.ReLU())
        self.head = nn.Linear(16, 30, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, x):
        return self.head(self.body(self.emb(x)))


def test_tied_parameters_are_initialized_once():
    model = Tied()
    p = wi.plan(model, "he", example_input=torch.randint(0, 30, (2, 3)))
    assert p["head.weight"].init == "skip" and "tied to emb.weight" in p["head.weight"].reason
    assert p["emb.weight"].role == "embedding"
    p.apply(model, seed=0)
    assert model.head.weight is model.emb.weight


def test_frozen_and_skipped_parameters_are_untouched():
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    net[0].weight.requires_grad_(False)
    before = snapshot(net)
    p = wi.init(net, "he", skip=["2.*"], seed=0)
    assert "frozen" in p["0.weight"].reason and "skip" in p["2.weight"].reason
    assert torch.equal(net[0].weight, before["0.weight"]) and torch.equal(
        net[2].bias, before["2.bias"]
    )
    assert not torch.equal(net[0].bias, before["0.bias"])
    wi.init(net, "he", include_frozen=True, seed=0)
    assert not torch.equal(net[0].weight, before["0.weight"])


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.full((4,), 3.0))
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        return self.lin(x) * self.scale


def test_unknown_parameters_warn_and_are_left_alone():
    model = Scaled()
    with pytest.warns(UserWarning, match=r"1 parameter\(s\).*scale"):
        p = wi.init(model, "he", seed=0)
    assert p["scale"].init == "skip" and torch.equal(model.scale.detach(), torch.full((4,), 3.0))


class LayerNorm(nn.Module):
    """nanoGPT's LayerNorm (optional bias), not torch's."""

    def __init__(self, d, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.full((d,), 2.0))
        self.bias = nn.Parameter(torch.full((d,), 3.0)) if bias else None


class ChannelNorm(nn.Module):  # named like a norm, but its weight is no per-feature scale
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d, d))


def test_norms_of_other_code_bases_are_known_by_their_class_name():
    model = nn.ModuleDict({"ln": LayerNorm(4, bias=True), "ln_nobias": LayerNorm(4, bias=False)})
    model["odd"] = ChannelNorm(4)
    with pytest.warns(UserWarning, match=r"1 parameter\(s\).*odd.weight"):
        p = wi.init(model, "lecun", seed=0)  # (a ModuleDict has no forward to trace)
    assert (p["ln.weight"].role, p["ln.bias"].role) == ("norm_scale", "norm_shift")
    assert torch.equal(model["ln"].weight.detach(), torch.ones(4))
    assert torch.equal(model["ln"].bias.detach(), torch.zeros(4))
    assert p["ln_nobias.weight"].init == "ones" and p["odd.weight"].init == "skip"
    assert wi.plan(model, "torch", skip=["odd.*"])["ln.bias"].reason.startswith("LayerNorm (a norm")


def test_strict_turns_the_warning_into_an_error():
    model = Scaled()
    before = snapshot(model)
    with pytest.raises(ValueError, match="no rule covers them"):
        wi.init(model, "he", strict=True)
    assert_unchanged(model, before)


def test_rules_by_glob_and_by_module_type():
    model = nn.Sequential(Scaled(), nn.Linear(4, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = wi.init(
            model, "he", rules={"*.scale": "ones", nn.Linear: ("normal", {"std": 0.5})}, seed=0
        )
    assert torch.equal(model[0].scale.detach(), torch.ones(4))
    assert p["1.weight"].init == "normal" and p["1.bias"].args == {"std": 0.5}
    assert p["0.scale"].reason == "rule '*.scale'"


@pytest.mark.parametrize(
    "rules, error, match",
    [
        ({"*.w": "he_norml"}, ValueError, "did you mean|Did you mean"),
        ({"*.w": 3}, TypeError, "a rule is an initializer name"),
        ({3: "zeros"}, TypeError, "keys are name globs or module types"),
    ],
)
def test_bad_rules(rules, error, match):
    with pytest.raises(error, match=match):
        wi.plan(nn.Linear(2, 2), "lecun", rules=rules)


def test_apply_is_atomic_when_a_row_fails_mid_plan():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    before = snapshot(model)
    p = wi.plan(model, "he")
    p["2.weight"].args = {"scale": -1.0, "mode": "fan_in", "distribution": "normal"}  # fails
    for atomic in (True, False):
        with pytest.raises(ValueError, match=r"'2.weight'.*`scale` must be > 0"):
            p.apply(model, seed=0, atomic=atomic)
        assert_unchanged(model, before)  # bad rows fail validation, before any write


@pytest.mark.parametrize("rng", ["philox-v1", "torch"])
def test_atomic_apply_survives_a_failure_while_computing(monkeypatch, rng):
    """A failure after some values were computed (here: the third draw raises, as an
    out-of-memory error would) leaves every parameter as it was, whichever generator draws."""
    from weightinit.initializers import counter

    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    before = snapshot(model)
    p = wi.plan(model, "he", rng=rng)
    calls = {"n": 0}
    owner, name = (Draw, "write") if rng == "torch" else (counter, "normal")
    real = getattr(owner, name)

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated out of memory")
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, failing)
    with pytest.raises(RuntimeError, match="simulated out of memory"):
        p.apply(model, seed=0)
    assert calls["n"] == 3
    assert_unchanged(model, before)


def test_in_place_apply_gives_the_same_values():
    a, b = Tied(), Tied()
    x = torch.randint(0, 30, (2, 3))
    wi.init(a, "orthogonal", example_input=x, seed=5)
    wi.init(b, "orthogonal", example_input=x, seed=5, atomic=False)
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k


def test_same_seed_same_values_and_global_rng_untouched():
    a, b = Functional(), Functional()
    state = torch.random.get_rng_state()
    wi.init(a, "he", example_input=torch.zeros(2, 8), seed=3)
    wi.init(b, "he", example_input=torch.zeros(2, 8), seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k


def test_json_round_trip_and_table():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, groups=1), nn.ReLU(), nn.Flatten(), nn.LazyLinear(4))
    model(torch.zeros(1, 3, 6, 6))  # materialize the lazy layer
    p = wi.plan(model, "he")
    q = wi.Plan.from_json(p.to_json())
    assert q.rows == p.rows and q.scheme == p.scheme and q.graph == p.graph
    text = str(p)
    assert "0.weight" in text and "followed by relu" in text and "parameter" in text.splitlines()[1]
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    p.apply(a, seed=1)
    q.apply(b, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_lazy_modules_must_be_materialized():
    with pytest.raises(ValueError, match="not materialized"):
        wi.plan(nn.Sequential(nn.LazyLinear(4)), "lecun")


@pytest.mark.parametrize(
    "wrap",
    [nn.DataParallel, torch.compile],
    ids=["DataParallel", "torch.compile"],
)
def test_wrappers_are_looked_through(wrap):
    net = nn.Sequential(nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 1))
    p = wi.init(wrap(net), "he", seed=0)
    assert p["0.weight"].std == pytest.approx(wi.gain("tanh") / math.sqrt(6))
    expected = copy.deepcopy(net)
    wi.init(expected, "he", seed=0)
    assert all(torch.equal(x, y) for x, y in zip(net.parameters(), expected.parameters()))


def test_meta_models_plan_without_storage_and_refuse_apply():
    with torch.device("meta"):
        net = nn.Sequential(nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 10))
    p = wi.plan(net, "he")
    assert p["0.weight"].std == pytest.approx(math.sqrt(2 / 4096))
    with pytest.raises(ValueError, match="to_empty"):
        p.apply(net)
    net.to_empty(device="cpu")
    p.apply(net, seed=0)
    assert torch.isfinite(net[0].weight).all()


def test_nested_containers_and_transformer():
    model = nn.ModuleDict(
        {
            "enc": nn.TransformerEncoder(
                nn.TransformerEncoderLayer(16, 4, 32, batch_first=True), 2
            ),
            "heads": nn.ModuleList([nn.Linear(16, 2), nn.Sequential(nn.Linear(16, 16), nn.GELU())]),
        }
    )
    with pytest.raises(ValueError, match="pass example_input"):  # ModuleDict has no forward
        wi.plan(model, "he")
    p = wi.plan(model, "lecun")
    assert len(p) == len(list(model.parameters()))
    layer = wi.plan(model["enc"], "he", example_input=torch.randn(2, 5, 16))
    assert layer["layers.0.linear1.weight"].std == pytest.approx(math.sqrt(2 / 16))
    assert layer["layers.0.self_attn.in_proj_weight"].reason.startswith("attention projection")


def test_schemes_and_their_errors():
    names = wi.schemes()
    assert {"torch", "keras", "flax", "lecun", "glorot", "he", "orthogonal"} <= set(names)
    assert wi.plan(nn.Linear(2, 2), "Kaiming").scheme == "he"  # an alias, any case
    with pytest.raises(ValueError, match="unknown scheme 'kaimng'. Did you mean 'kaiming'"):
        wi.plan(nn.Linear(2, 2), "kaimng")
    with pytest.raises(TypeError, match="unknown scheme option"):
        wi.plan(nn.Linear(2, 2), "he", gain=2)
    with pytest.raises(ValueError, match="option `recurrent`"):
        wi.plan(nn.Linear(2, 2), "he", recurrent="eye")


def test_apply_uses_the_activation_aware_scheme():
    net = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 1))
    assert wi.apply(net, seed=0).scheme == "he"


@pytest.mark.parametrize(
    "scheme", ["he", "orthogonal", "lecun", "glorot", "torch", "keras", "flax"]
)
def test_every_scheme_initializes_a_mixed_model(scheme):
    model = nn.Sequential(
        nn.Embedding(20, 8),
        nn.Conv1d(5, 8, 3, padding=1),
        nn.GroupNorm(2, 8),
        nn.SiLU(),
        nn.Flatten(),
        nn.Linear(64, 8),
    )
    x = torch.randint(0, 20, (2, 5))
    p = wi.init(model, scheme, example_input=x, seed=0)
    assert all(r.init != "skip" for r in p)
    assert all(torch.isfinite(v).all() for v in model.parameters())
    assert model(x).shape == (2, 8)


def test_tracing_leaves_buffers_and_the_global_rng_alone():
    model = nn.Sequential(
        nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.ReLU(), nn.Linear(8, 1)
    )
    before = snapshot(model)
    x = torch.randn(16, 4)
    state = torch.random.get_rng_state()
    wi.plan(model, "he", example_input=x)
    assert_unchanged(model, before)  # running_mean, running_var, num_batches_tracked too
    assert torch.equal(torch.random.get_rng_state(), state)


def test_parametrized_weights_are_initialized_through_their_originals():
    from torch.nn.utils import parametrizations as P

    net = nn.Sequential(
        P.weight_norm(nn.Linear(400, 300)), nn.ReLU(), P.spectral_norm(nn.Linear(300, 300))
    )
    p = wi.init(net, "he", seed=0)
    he_std = math.sqrt(2 / 400)
    v = net[0].parametrizations.weight.original1
    assert p["0.parametrizations.weight.original1"].std == pytest.approx(he_std)
    assert "followed by relu" in p["0.parametrizations.weight.original1"].reason
    # g is the RMS row norm of a He weight, so the effective weight has He's scale
    g = net[0].parametrizations.weight.original0
    assert torch.allclose(g, torch.full_like(g, he_std * math.sqrt(400)))
    assert abs(net[0].weight.var().item() - he_std**2) < var_tolerance(he_std**2, n=v.numel())
    assert p["2.parametrizations.weight.original"].std == pytest.approx(1 / math.sqrt(300))


@pytest.mark.parametrize("scheme", ["he", "orthogonal", "lecun", "glorot", "keras", "flax"])
@pytest.mark.parametrize("make", TORCH_ZOO, ids=lambda f: type(f()).__name__)
def test_every_module_in_the_table_under_every_scheme(make, scheme):
    module = make()
    p = wi.init(module, scheme, seed=0)
    assert all(r.init != "skip" for r in p)
    assert all(torch.isfinite(v).all() for v in module.parameters())


def test_grouped_depthwise_and_transposed_convs_use_per_group_fans():
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, groups=32, padding=1),  # depthwise
        nn.ReLU(),
        nn.Conv2d(32, 64, 1, groups=4),
        nn.Tanh(),
        nn.ConvTranspose2d(64, 16, 4, stride=2, padding=1, groups=2),
        nn.Sigmoid(),
    )
    p = wi.plan(model, "he")
    assert p["2.weight"].fan_in == 9 and p["2.weight"].std == pytest.approx(math.sqrt(2 / 9))
    assert p["4.weight"].fan_in == 8 and p["4.weight"].std == pytest.approx(
        wi.gain("tanh") / math.sqrt(8)
    )
    assert p["6.weight"].fan_in == 32 * 16  # ConvTranspose: in / groups x k x k
    assert p["6.weight"].std == pytest.approx(wi.gain("sigmoid") / math.sqrt(512))
    p.apply(model, seed=0)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 16, 16, 16)


def test_distributed_data_parallel_is_looked_through(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        net = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 1))
        ddp = nn.parallel.DistributedDataParallel(net)
        p = wi.init(ddp, "he", seed=0)
        assert p["0.weight"].std == pytest.approx(math.sqrt(2 / 6))
        assert torch.equal(ddp.module[0].weight, net[0].weight)
    finally:
        dist.destroy_process_group()


def test_pooling_between_layer_and_activation_and_decoder_layers():
    cnn = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.MaxPool2d(2),
        nn.AvgPool2d(1),
        nn.GELU(),
        nn.Flatten(),
        nn.Linear(8, 2),
    )
    p = wi.plan(cnn, "he")
    assert p["0.weight"].reason.startswith("followed by gelu (through MaxPool2d, AvgPool2d)")
    decoder = nn.TransformerDecoderLayer(16, 4, 32, activation="gelu", batch_first=True)
    p = wi.plan(decoder, "he", example_input=(torch.randn(2, 3, 16), torch.randn(2, 5, 16)))
    assert p["linear1.weight"].std == pytest.approx(wi.gain("gelu") / 4)
    assert p["multihead_attn.in_proj_weight"].role == "weight"
    assert all(r.init != "skip" for r in p)
