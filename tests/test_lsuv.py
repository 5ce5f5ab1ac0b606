"""LSUV calibrated inside the forward pass: every layer at the target std (per channel, centred,
shared, recurrent), a handful of passes, the user's model and RNG left alone, clear errors, and a
plan that reproduces what was calibrated.

Calibration is exact on its own batch, so the measured stds are checked against the promised
tolerance `tol`, always with an oracle independent of the calibration: `weightinit.diagnose`, or
hooks and hand-written recurrences on the real model after apply."""

import json
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import weightinit as wi
from weightinit.frontends.torch.calibration import lsuv_plan
from weightinit.understanding.recurrent import recurrent_preactivations

FORWARDS = {"count": 0}


class Counting(nn.Module):
    """Counts forward passes through the whole model (a global: deep copies share it)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        FORWARDS["count"] += 1
        return self.inner(x)


def mlp(depth, act, width=64):
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), act()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


class Cube(nn.Module):
    def forward(self, x):
        return x**3 / 3


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


X = randn(256, 64)


def snapshot(model):
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return state, [m.training for m in model.modules()]


def assert_unchanged(model, before):
    state, modes = before
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert [m.training for m in model.modules()] == modes


def outputs(model, x, types=(nn.Linear, nn.modules.conv._ConvNd)):
    """Every call's output of every layer of ``types``: {module: [outputs]}, by hooks."""
    seen = {}
    hooks = [
        m.register_forward_hook(lambda m, i, o: seen.setdefault(m, []).append(o.detach()))
        for m in model.modules()
        if isinstance(m, types)
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


def channels(y, axis):
    return y.movedim(axis, -1).reshape(-1, y.shape[axis])


# --- the rule, measured independently -----------------------------------------------------------


@pytest.mark.parametrize("act", [nn.ReLU, nn.Tanh, nn.GELU, nn.SiLU, nn.SELU, Cube])
def test_every_layer_reaches_the_target_std_after_apply(act):
    model = mlp(100, act)
    p = wi.init(model, "lsuv", data=X, seed=0, tol=0.05)
    report = wi.diagnose(model, X, exact_limit=0)  # measured on the real model, independently
    assert all(0.95 <= layer.std <= 1.05 for layer in report.layers)
    assert len(p.calibration) == 101 and all(
        c["std"] == pytest.approx(1, abs=0.05) and c["verified"] for c in p.calibration
    )


def test_plain_cnn():
    layers = [nn.Conv1d(1, 16, 3, padding=1), nn.ReLU()]
    for _ in range(49):
        layers += [nn.Conv1d(16, 16, 3, padding=1), nn.ReLU()]
    model = nn.Sequential(*layers)
    x = randn(32, 1, 40)
    wi.init(model, "lsuv", data=x, seed=0)
    report = wi.diagnose(model, x, exact_limit=0)
    assert all(0.95 <= layer.std <= 1.05 for layer in report.layers)


@pytest.mark.parametrize("how", [{"target_std": 2.0}, {"target_var": 4.0}])
def test_target_as_std_or_variance(how):
    model = mlp(10, nn.Tanh)
    p = wi.init(model, "lsuv", data=X, seed=0, tol=0.02, **how)
    assert all(abs(s.std - 2) <= 0.04 for s in wi.diagnose(model, X, exact_limit=0).layers)
    assert p.options["target_std"] == 2.0


def test_centering_moves_each_output_mean_to_zero_through_the_bias():
    plain, centred = mlp(6, nn.ReLU), mlp(6, nn.ReLU)
    wi.init(plain, "lsuv", data=X, seed=0, tol=0.05, bias=1.0)  # biases give every output a mean
    p = wi.init(centred, "lsuv", data=X, seed=0, tol=0.05, bias=1.0, center=True)
    first = outputs(plain, X)[plain[0]][0]
    assert abs(first.mean().item()) > 0.5  # without centring the test could not fail
    for ys in outputs(centred, X).values():
        assert abs(ys[0].mean().item()) <= 0.05 and abs(ys[0].std().item() - 1) <= 0.05
    assert all(abs(c["mean"]) <= 0.05 for c in p.calibration)
    assert "centred" in p["0.bias"].reason and p["0.bias"].shift is not None


def conv_zoo():
    return nn.Sequential(
        nn.Conv1d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv1d(8, 8, 3, padding=1, groups=2),
        nn.Tanh(),
        nn.ConvTranspose1d(8, 6, 3, padding=1, groups=2),
        nn.Flatten(),
        nn.Linear(6 * 20, 12),
    )


def test_per_channel_mode_brings_every_output_channel_to_the_target():
    # channels of very different scales, so that one gain per layer cannot fit them all
    x = randn(128, 3, 20) * torch.tensor([0.1, 1.0, 10.0]).view(1, 3, 1)
    scalar, per_channel = conv_zoo(), conv_zoo()
    wi.init(scalar, "lsuv", data=x, seed=0, tol=0.05)
    p = wi.init(per_channel, "lsuv", data=x, seed=0, tol=0.05, per_channel=True, center=True)
    spread = channels(outputs(scalar, x)[scalar[0]][0], 1).std(0)
    assert (spread - 1).abs().max() > 0.1  # a single gain leaves channels off target
    for module, ys in outputs(per_channel, x).items():
        axis = 1 if isinstance(module, nn.modules.conv._ConvNd) else -1
        per = channels(ys[0], axis)
        assert (per.std(0) - 1).abs().max() <= 0.05, module
        assert per.mean(0).abs().max() <= 0.05, module
    record = p.calibration[0]
    assert record["gain_range"][0] < record["gain_range"][1] and abs(record["std"] - 1) <= 0.05
    assert isinstance(p["0.weight"].scale, list) and len(p["2.weight"].scale) == 8


def test_per_channel_embedding():
    model = nn.Sequential(nn.Embedding(30, 8, padding_idx=0), nn.Linear(8, 4))
    tokens = torch.randint(0, 30, (64, 12), generator=torch.Generator().manual_seed(0))
    wi.init(model, "lsuv", data=tokens, seed=0, per_channel=True)
    for ys in outputs(model, tokens, (nn.Embedding, nn.Linear)).values():
        assert (channels(ys[0], -1).std(0) - 1).abs().max() <= 0.05
    assert not model[0].weight[0].any()  # the padding row stays zero


class Shared(nn.Module):
    """One Linear used twice in a row: its uses see different inputs (the second twice as
    large)."""

    def __init__(self):
        super().__init__()
        self.stem, self.block, self.head = nn.Linear(64, 32), nn.Linear(32, 32), nn.Linear(32, 4)

    def forward(self, x):
        h = torch.tanh(self.block(torch.relu(self.stem(x))))
        return self.head(torch.tanh(self.block(2 * h)))


def test_a_module_used_twice_is_calibrated_on_its_pooled_uses():
    model = Shared()
    p = wi.init(model, "lsuv", data=X, seed=0, tol=0.05)
    uses = outputs(model, X)[model.block]
    assert len(uses) == 2 and abs(uses[0].std() - uses[1].std()) > 0.1  # the first use is not all
    assert abs(torch.cat([u.reshape(-1) for u in uses]).std().item() - 1) <= 0.05
    for ys in outputs(model, X).values():  # every layer after it sees calibrated inputs too
        assert all(abs(y.std().item() - 1) <= 0.05 for y in ys) or len(ys) == 2
    assert all(c["verified"] for c in p.calibration)


def test_norm_layers_use_batch_statistics_dropout_is_off_and_the_model_is_untouched():
    """Planning touches nothing (running statistics, modes, hooks, RNG); apply writes the
    parameters and the running statistics re-estimated on `data` (tests/test_lsuv_batchnorm.py),
    and leaves the modes as they were."""
    model = nn.Sequential(
        nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 64)
    )
    model.eval()
    model[1].running_var.fill_(100.0)  # eval-mode statistics would shrink the signal 10x
    calls = []
    model[4].register_forward_hook(lambda m, i, o: calls.append(1))
    hooks = dict(model[4]._forward_hooks)
    before = snapshot(model)
    rng = torch.random.get_rng_state()
    plan = wi.plan(model, "lsuv", data=X, seed=0, tol=0.05)
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert model[4]._forward_hooks == hooks
    assert_unchanged(model, before)
    plan.apply(model)
    assert [m.training for m in model.modules()] == before[1]
    assert model[1].num_batches_tracked.item() == 1  # one batch: `data`
    model[1].train()  # batch statistics; dropout stays off (eval), as during calibration
    model[1].track_running_stats = False  # measuring must not move them either
    assert abs(outputs(model, X)[model[4]][0].std().item() - 1) <= 0.05
    model[1].track_running_stats = True
    model[1].eval()  # the re-estimated statistics: the same signal (up to n / (n - 1), n = 256)
    assert abs(outputs(model, X)[model[4]][0].std().item() - 1) <= 0.05
    model[1].running_var.fill_(100.0)
    assert outputs(model, X)[model[4]][0].std().item() < 0.5  # so the statistics mattered


# --- recurrent layers ---------------------------------------------------------------------------


def oracle_preactivations(rnn, x):
    """Gate pre-activations by the textbook recurrences, step by step (time-major x, h0 = 0)."""
    directions = 2 if rnn.bidirectional else 1
    gru, lstm = isinstance(rnn, nn.GRU), isinstance(rnn, nn.LSTM)
    result, inputs = [], x
    for layer in range(rnn.num_layers):
        hidden_seqs = []
        for d in range(directions):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            w = {k: getattr(rnn, k + sfx, None) for k in ("weight_ih", "weight_hh", "weight_hr")}
            b_ih, b_hh = getattr(rnn, "bias_ih" + sfx), getattr(rnn, "bias_hh" + sfx)
            steps = range(x.shape[0]) if d == 0 else reversed(range(x.shape[0]))
            h = x.new_zeros(x.shape[1], rnn.proj_size or rnn.hidden_size)
            c = x.new_zeros(x.shape[1], rnn.hidden_size)
            pre, hs = [None] * x.shape[0], [None] * x.shape[0]
            for t in steps:
                gi = inputs[t] @ w["weight_ih"].T + b_ih
                gh = h @ w["weight_hh"].T + b_hh
                if gru:
                    r, z, _ = (gi + gh).chunk(3, -1)
                    n = gi.chunk(3, -1)[2] + torch.sigmoid(r) * gh.chunk(3, -1)[2]
                    pre[t] = torch.cat([r, z, n], -1)
                    h = (1 - torch.sigmoid(z)) * torch.tanh(n) + torch.sigmoid(z) * h
                elif lstm:
                    pre[t] = gi + gh
                    i, f, g, o = pre[t].chunk(4, -1)
                    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                    h = torch.sigmoid(o) * torch.tanh(c)
                    h = h @ w["weight_hr"].T if w["weight_hr"] is not None else h
                else:
                    pre[t] = gi + gh
                    h = torch.tanh(pre[t])
                hs[t] = h
            result.append(torch.stack(pre))
            hidden_seqs.append(torch.stack(hs))
        inputs = torch.cat(hidden_seqs, -1)
    return result


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.LSTM(5, 6, num_layers=2, bidirectional=True),
        lambda: nn.LSTM(5, 6, proj_size=3),
        lambda: nn.GRU(5, 6, num_layers=2, bidirectional=True),
        lambda: nn.RNN(5, 6, num_layers=2),
    ],
    ids=["lstm", "lstm-proj", "gru", "rnn"],
)
def test_recurrent_preactivations_match_the_textbook_recurrence(make):
    torch.manual_seed(0)
    rnn = make()
    x = randn(7, 3, 5)
    with torch.no_grad():
        got, expected = recurrent_preactivations(rnn, x), oracle_preactivations(rnn, x)
        batch_first = type(rnn)(**{**_config(rnn), "batch_first": True})
        batch_first.load_state_dict(rnn.state_dict())
        again = recurrent_preactivations(batch_first, x.transpose(0, 1))
    assert len(got) == len(expected) == len(again)
    for a, b, c in zip(got, expected, again):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(c, b, atol=1e-5, rtol=1e-5)


def _config(rnn):
    keys = ("input_size", "hidden_size", "num_layers", "bias", "bidirectional")
    config = {k: getattr(rnn, k) for k in keys}
    return config | ({"proj_size": rnn.proj_size} if rnn.proj_size else {})


def test_recurrent_preactivations_of_cells_and_unbatched_inputs():
    torch.manual_seed(0)
    cell, x, h = nn.GRUCell(5, 6), randn(3, 5), randn(3, 6, seed=1)
    gi, gh = F.linear(x, cell.weight_ih, cell.bias_ih), F.linear(h, cell.weight_hh, cell.bias_hh)
    r = torch.sigmoid(gi[:, :6] + gh[:, :6])
    expected = torch.cat([gi[:, :12] + gh[:, :12], gi[:, 12:] + r * gh[:, 12:]], -1)
    with torch.no_grad():
        torch.testing.assert_close(recurrent_preactivations(cell, x, h)[0], expected)
        lstm = nn.LSTM(5, 6)
        unbatched = recurrent_preactivations(lstm, x)[0]
        torch.testing.assert_close(unbatched, recurrent_preactivations(lstm, x[:, None])[0][:, 0])
    with pytest.raises(TypeError, match="packed sequences"):
        packed = nn.utils.rnn.pack_sequence([x])
        recurrent_preactivations(lstm, packed)


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 16, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        return self.head(self.lstm(x)[0])


def test_lstm_gate_preactivations_are_calibrated_and_the_forget_bias_kept():
    model, x = Tagger(), randn(32, 10, 8) * 3
    p = wi.init(model, "lsuv", data=x, seed=0, tol=0.05)
    with torch.no_grad():
        for a in oracle_preactivations(model.lstm, x.transpose(0, 1)):
            assert abs(a.std().item() - 1) <= 0.05
        assert abs(model(x).std().item() - 1) <= 0.05
    for sfx in ("_l0", "_l0_reverse", "_l1", "_l1_reverse"):
        forget = getattr(model.lstm, "bias_ih" + sfx) + getattr(model.lstm, "bias_hh" + sfx)
        assert torch.equal(forget[16:32], torch.ones(16)) and not forget[:16].any()
        assert p[f"lstm.weight_ih{sfx}"].scale == p[f"lstm.weight_hh{sfx}"].scale
    names = [c["layer"] for c in p.calibration]
    assert names == ["lstm.l0", "lstm.l0_reverse", "lstm.l1", "lstm.l1_reverse", "head"]


class Loop(nn.Module):
    """A GRU cell stepped in Python: one module, many uses per forward pass."""

    def __init__(self):
        super().__init__()
        self.cell, self.head = nn.GRUCell(8, 16), nn.Linear(16, 4)

    def forward(self, x):
        h = None
        for step in x:
            h = self.cell(step, h)
        return self.head(h)


def test_a_cell_stepped_in_a_loop_is_calibrated_on_all_its_steps():
    model, x = Loop(), randn(12, 32, 8)
    wi.init(model, "lsuv", data=x, seed=0, tol=0.05)
    calls = []
    model.cell.register_forward_hook(lambda m, i, o: calls.append((i[0], i[1])))
    with torch.no_grad():
        model(x)
        pre = []
        for step, h in calls:
            h = torch.zeros(32, 16) if h is None else h
            gi = F.linear(step, model.cell.weight_ih, model.cell.bias_ih)
            gh = F.linear(h, model.cell.weight_hh, model.cell.bias_hh)
            r = torch.sigmoid(gi[:, :16] + gh[:, :16])
            pre.append(torch.cat([gi[:, :32] + gh[:, :32], gi[:, 32:] + r * gh[:, 32:]], -1))
    assert len(pre) == 12 and abs(torch.stack(pre).std().item() - 1) <= 0.05


# --- cost ---------------------------------------------------------------------------------------


def test_one_sweep_costs_one_forward_pass():
    model = Counting(mlp(100, nn.Tanh))
    FORWARDS["count"] = 0
    wi.plan(model, "lsuv", data=X, seed=0)
    assert FORWARDS["count"] == 2  # no trace: one pass calibrates every layer, one verifies


def test_max_iter_1_is_exactly_one_forward_pass_and_exact_for_linear_layers():
    model = Counting(mlp(20, nn.ReLU))
    base = wi.plan(model, "he")  # a non-orthonormal base, as the analytic schemes refine
    FORWARDS["count"] = 0
    p, records = lsuv_plan(model, base, X, seed=1, max_iter=1)
    assert FORWARDS["count"] == 1
    assert p.scheme == "he" and not any(r.verified for r in records)
    p.apply(model)
    measured = outputs(model, X)
    assert any(r.iterations for r in records)
    for r in records:  # corrected ones exactly (up to rounding), the others within tolerance
        std = measured[model.get_submodule(r.layer)][0].std().item()
        assert abs(std - 1) < (1e-4 if r.iterations else 0.05)


# --- the plan -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, data, options",
    [
        (lambda: mlp(10, nn.ReLU), X, {}),
        (lambda: mlp(4, nn.ReLU), X + 1, {"orthonormal": False, "center": True}),
        (conv_zoo, randn(16, 3, 20), {"per_channel": True, "center": True}),
        (Tagger, randn(8, 5, 8), {}),
    ],
    ids=["orthonormal", "he-centred", "per-channel", "lstm"],
)
def test_plan_reproduces_the_calibrated_values_and_guards_its_seed(make, data, options):
    torch.manual_seed(0)
    a, b, c = make(), make(), make()
    p = wi.plan(a, "lsuv", data=data, seed=3, **options)
    p.apply(a)  # the values computed while calibrating
    wi.Plan.from_json(p.to_json()).apply(b)  # drawn again from the seed and the rows
    p.apply(c, atomic=False)
    for x, y, z in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(x, y) and torch.equal(x, z)
    with pytest.raises(ValueError, match="calibrated on values drawn with seed 3"):
        p.apply(a, seed=4)


def test_apply_checks_per_channel_scales_and_changes_nothing_on_error():
    model = conv_zoo()
    p = wi.plan(model, "lsuv", data=randn(16, 3, 20), seed=0, per_channel=True)
    data = json.loads(p.to_json())
    data["rows"][2]["scale"] = [1.0, 2.0, 3.0]  # 2.weight has 8 output channels
    before = snapshot(model)
    with pytest.raises(
        ValueError, match=r"'2.weight': `scale`: 3 per-unit values .* 8 output units"
    ):
        wi.Plan.from_json(json.dumps(data)).apply(model)
    assert_unchanged(model, before)


def test_the_pre_initialization_is_orthonormal_and_rules_and_options_still_apply():
    p = wi.plan(mlp(3, nn.ReLU), "lsuv", data=X, seed=0, relu_bias=0.1, rules={"6.*": "zeros"})
    assert p["0.weight"].init == "orthogonal" and p["0.weight"].args == {}
    assert p["0.bias"].init == "constant" and "before relu" in p["0.bias"].reason
    assert p["6.weight"].init == "zeros" and p.graph == "fx"  # relu_bias needs the activations
    p = wi.plan(mlp(3, nn.ReLU), "lsuv", data=X, seed=0, rules={"2.weight": ("normal", {})})
    assert p["2.weight"].init == "normal" and "LSUV gain" in p["2.weight"].reason
    assert p.graph == "" and p["4.weight"].reason.startswith("orthonormal pre-initialization")


def test_zero_layers_stay_zero():
    model = mlp(5, nn.ReLU)
    p = wi.init(model, "lsuv", data=X, seed=0, rules={"10.*": "zeros"})
    assert not model[10].weight.any() and "LSUV" not in p["10.weight"].reason
    assert p.calibration[-1]["std"] == 0.0


def test_unfinished_calibration_warns_and_says_what_it_did_not_verify():
    with pytest.warns(UserWarning, match="the last of max_iter=2 sweeps still corrected"):
        p = wi.plan(Tagger(), "lsuv", data=randn(8, 5, 8), seed=0, tol=0.001, max_iter=2)
    assert not any(c["verified"] for c in p.calibration)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wi.plan(mlp(2, nn.ReLU), "lsuv", data=X, seed=0, max_iter=1)  # one sweep by request


# --- errors leave the model as it was -----------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({}, ValueError, "pass data=batch"),
        ({"data": X, "tol": 2.0}, ValueError, "`tol` must satisfy 0 < tol < 1"),
        ({"data": X, "target_std": 1, "target_var": 1}, ValueError, "not both"),
        ({"data": X, "target_std": -1.0}, ValueError, "`target_std` must be positive"),
        ({"data": X, "target_var": math.inf}, ValueError, "`target_var` must be positive"),
        ({"data": X, "target_std": "1"}, TypeError, "`target_std` must be a number"),
        ({"data": X, "max_iter": 0}, ValueError, "`max_iter` must be an int >= 1"),
        ({"data": X, "max_iter": True}, ValueError, "`max_iter` must be an int >= 1"),
        ({"data": X, "center": 1}, TypeError, "`center` must be True or False"),
        ({"data": X, "per_channel": "yes"}, TypeError, "`per_channel` must be True or False"),
        ({"data": X, "orthonormal": None}, TypeError, "`orthonormal` must be True or False"),
        (
            {"data": X, "target": 1.0},
            TypeError,
            r"scheme 'lsuv': unknown scheme option\(s\) target; the options",
        ),
        ({"data": [X]}, TypeError, "`data` must be a tensor, a tuple"),
        ({"data": X, "seed": 1.5}, TypeError, "`seed` must be an int"),
        ({"data": X[:, :10]}, ValueError, "the model failed on `data`"),
        ({"data": X * math.nan}, ValueError, "layer '0' gives non-finite outputs"),
        ({"data": X[:1], "per_channel": True}, ValueError, "fewer than 2 values per channel"),
    ],
)
def test_bad_arguments_are_clear_errors_and_change_nothing(kwargs, error, match):
    model = mlp(2, nn.ReLU)
    before = snapshot(model)
    with pytest.raises(error, match=match):
        wi.init(model, "lsuv", **kwargs)
    assert_unchanged(model, before)


def test_a_layer_with_constant_output_is_an_error_and_nothing_changes():
    model = nn.Sequential(nn.Linear(64, 8, bias=False), nn.ReLU(), nn.Linear(8, 2))
    before = snapshot(model)
    with pytest.raises(ValueError, match="layer '0' has constant outputs"):
        wi.init(model, "lsuv", data=torch.zeros(16, 64), seed=0)
    assert_unchanged(model, before)
    assert "lsuv" in wi.schemes()


def test_attention_is_calibrated_through_its_output_projection():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(32, 4, batch_first=True)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha, self.head = mha, nn.Linear(32, 4)

        def forward(self, x):
            return self.head(self.mha(x, x, x, need_weights=False)[0])

    model = Block()
    x = 3 * torch.randn(64, 10, 32, generator=torch.Generator().manual_seed(1))
    p = wi.init(model, "lsuv", data=x, seed=0)
    assert [c["layer"] for c in p.calibration] == ["mha", "head"]
    with torch.no_grad():
        out = model.mha(x, x, x, need_weights=False)[0]
    assert out.std().item() == pytest.approx(1.0, abs=0.05)
    assert model(x).std().item() == pytest.approx(1.0, abs=0.05)
