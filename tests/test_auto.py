"""The "auto" scheme: every signal map checked against the op itself run on a large Gaussian
batch (the oracle), the layer rule against its formula, the recurrent rule against a
simulation, and the stabilized scheme on deep models."""

import math

import pytest
import torch
from torch import nn

import weightinit as wi
from weightinit.scheme.auto import recurrent_rule

N, D = 4096, 64  # the oracle's batch: mean and std known to ~ 1 / sqrt(N * D) = 0.2%


def gaussian(mean=0.0, std=1.0, shape=(N, D), seed=0):
    return mean + std * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


class Then(nn.Module):
    """``op`` (a module, or a function whose torch calls are traced one by one) on the
    input(s), then a Linear: auto's prediction for the Linear's input is the op's predicted
    output."""

    def __init__(self, op, width=D):
        super().__init__()
        self.op, self.head = op, nn.Linear(width, 8)

    def forward(self, *xs):
        return self.head(self.op(*xs))


def check(op, x, tol=0.02, width=D):
    model = Then(op, width)
    p = wi.init(model, "auto", example_input=x, stabilize=False, seed=0)  # writes op's weights
    head = next(q for q in p.predictions if q["layer"] == "head")
    mean, std = head["input_mean"], head["input_std"]
    xs = x if isinstance(x, tuple) else (x,)
    with torch.no_grad():
        torch.manual_seed(1)
        y = model.op(*xs).double()
    # a few standard errors of the oracle (its mean and std over N * D draws), plus `tol` for
    # maps that are exact only under stated assumptions
    se = 4 * y.std().item() / math.sqrt(y.numel())
    assert mean == pytest.approx(y.mean().item(), abs=se + tol * y.std().item())
    assert std == pytest.approx(y.std().item(), rel=4 / math.sqrt(y.numel()) + tol)
    return p


@pytest.mark.parametrize("act", [nn.ReLU(), nn.Tanh(), nn.GELU(), nn.SiLU(), nn.SELU(),
                                 nn.LeakyReLU(0.2), nn.Sigmoid()])  # fmt: skip
@pytest.mark.parametrize("mean,std", [(0.0, 1.0), (0.7, 2.0)])
def test_activations_by_quadrature(act, mean, std):
    check(act, gaussian(mean, std), tol=0.0)


class Custom(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.5 * x) + 0.1 * x**2


def test_custom_elementwise_callable():
    check(Custom(), gaussian(0.3, 1.5), tol=0.0)  # a module: one elementwise call
    check(lambda x: torch.nn.functional.gelu(x) * 2.0 - 0.5, gaussian(0.3, 1.5), tol=0.0)


def test_dropout_is_exact_including_the_mean():
    check(nn.Dropout(0.3), gaussian(1.0, 0.5), tol=0.0)
    check(nn.Sequential(nn.Dropout(0.3)).eval(), gaussian(1.0, 0.5), tol=0.0)  # off in eval


def test_average_and_max_pooling_of_independent_inputs():
    x = gaussian(0.5, 2.0, shape=(N // 8, 4, 8 * D))
    check(nn.Sequential(nn.AvgPool1d(4), nn.Flatten()), x, width=4 * 2 * D, tol=0.0)
    check(nn.Sequential(nn.MaxPool1d(3), nn.Flatten()), x[..., : 3 * 42], width=4 * 42, tol=0.0)
    check(nn.Sequential(nn.AdaptiveAvgPool1d(D // 2), nn.Flatten()), x, width=4 * D // 2,
          tol=0.0)  # fmt: skip


def test_sums_products_constants_and_concatenation():
    x, y = gaussian(1.0, 2.0), gaussian(-0.5, 0.5, seed=1)
    check(lambda x, y: 2 * x + y - 1, (x, y), tol=0.0)  # independent branches
    check(lambda x, y: x * y / 3, (x, y), tol=0.0)
    check(lambda x, y: torch.cat([x, torch.relu(y)], dim=1), (x, y[:, : D // 2]),
          width=D + D // 2, tol=0.0)  # fmt: skip
    check(lambda x: -x.reshape(N, 2, D // 2).flatten(1), x, tol=0.0)


def test_normalization_resets_to_the_affine_output():
    check(nn.LayerNorm(D), gaussian(3.0, 5.0), tol=0.01)
    check(nn.BatchNorm1d(D), gaussian(3.0, 5.0), tol=0.01)
    check(nn.RMSNorm(D), gaussian(1.0, 2.0), tol=0.01)


def test_unknown_ops_are_measured_and_say_so():
    p = check(lambda x: torch.softmax(x, dim=-1) * D, gaussian(0.0, 1.0), tol=0.01)
    assert "softmax" in p["head.weight"].reason and "measured" in p["head.weight"].reason


def test_linear_rule_var_w_is_target_over_fan_times_second_moment():
    net = nn.Sequential(nn.Linear(32, 256), nn.Tanh(), nn.Linear(256, 4))
    x = gaussian(2.0, 3.0, shape=(16, 32))
    p = wi.plan(net, "auto", example_input=x, input_mean=2.0, input_std=3.0, stabilize=False,
                target_var=0.5, distribution="normal")  # fmt: skip
    assert p["0.weight"].std ** 2 == pytest.approx(0.5 / (32 * (9 + 4)), rel=1e-9)
    # the tanh's input is N(0, 0.5): the next layer sees E[tanh(z)^2], z ~ N(0, 0.5)
    q = wi.moments("tanh", 0.0, 0.5).second_moment
    assert p["2.weight"].std ** 2 == pytest.approx(0.5 / (256 * q), rel=1e-9)
    assert [r["std"] for r in p.predictions] == pytest.approx([math.sqrt(0.5)] * 2)


def test_conv_fan_counts_padding_and_stride():
    # kernel 3, padding 1, length 10: the 10 outputs sum 2, 3, ..., 3, 2 taps of 4 channels
    conv = nn.Sequential(nn.Conv1d(4, 8, 3, padding=1), nn.Flatten(), nn.Linear(80, 2))
    p = wi.plan(conv, "auto", example_input=gaussian(shape=(8, 4, 10)), input_mean=0.0,
                input_std=1.0, stabilize=False, distribution="normal")  # fmt: skip
    assert p["0.weight"].std ** 2 == pytest.approx(1 / (4 * 28 / 10), rel=1e-9)
    # transposed, kernel 4, stride 2, padding 1: every output of length 2 * 10 sums 2 taps,
    # except the first and last, which sum 1: (2 * 18 + 2) / 20 taps of 4 channels
    up = nn.Sequential(nn.ConvTranspose1d(4, 8, 4, stride=2, padding=1), nn.Flatten(),
                       nn.Linear(160, 2))  # fmt: skip
    p = wi.plan(up, "auto", example_input=gaussian(shape=(8, 4, 10)), input_mean=0.0,
                input_std=1.0, stabilize=False, distribution="normal")  # fmt: skip
    assert p["0.weight"].std ** 2 == pytest.approx(1 / (4 * 38 / 20), rel=1e-9)


def test_orthogonal_distribution_gets_the_same_variance():
    net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64))
    x = gaussian(shape=(256, 64))
    tn = wi.plan(net, "auto", example_input=x, stabilize=False)
    orth = wi.plan(net, "auto", example_input=x, stabilize=False, distribution="orthogonal")
    assert orth["2.weight"].init == "orthogonal"
    assert orth["2.weight"].std == pytest.approx(tn["2.weight"].std, rel=1e-9)


class SelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.mha = nn.MultiheadAttention(D, 4, batch_first=True)

    def forward(self, x):
        return self.mha(x, x, x, need_weights=False)[0]


def test_attention_output_variance():
    # independent tokens: the values averaged by the softmax weights; the realized weights'
    # own spread (64 x 64 matrices) is a few percent, hence tol
    check(SelfAttention(), gaussian(0.0, 2.0, shape=(N // 16, 16, D)), tol=0.08)


class AttentionAfterReLU(nn.Module):
    """A ReLU's mean is the same at every position, so after the next Linear part of the
    tokens' variance is shared by all of them, and averaging over tokens does not shrink it."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(D, D)
        self.mha = nn.MultiheadAttention(D, 4, batch_first=True)

    def forward(self, x):
        h = self.inp(torch.relu(x))
        return self.mha(h, h, h, need_weights=False)[0]


def test_attention_over_tokens_that_share_a_component():
    check(AttentionAfterReLU(), gaussian(0.0, 1.0, shape=(N // 16, 16, D)), tol=0.08)


@pytest.mark.parametrize("cls", [nn.RNN, nn.GRU, nn.LSTM])
def test_recurrent_hidden_state_is_stationary_and_predicted(cls):
    torch.manual_seed(0)
    rnn = cls(16, 128, batch_first=True)  # a narrow input: correlated gate drive
    x = gaussian(0.0, 2.0, shape=(64, 120, 16), seed=3)
    p = wi.init(rnn, "auto", example_input=x, seed=1, stabilize=False)
    with torch.no_grad():
        h = rnn(x)[0].double()
    # stationary: E[h^2] over steps 60-89 and 90-119 agree within a few standard errors of
    # each window's mean (each step's E[h^2] varies by ~ 3% from step to step)
    early, late = h[:, 60:90].pow(2).mean().item(), h[:, 90:].pow(2).mean().item()
    assert late == pytest.approx(early, rel=0.03)
    predicted = p.predictions[0]["std"] ** 2 + p.predictions[0]["mean"] ** 2
    # RNN: closed form, exact; LSTM/GRU: one simulated realization, within 2% of the measured
    # E[h^2] over 4 seeds of the real layer, and each realization's own spread is ~1%
    rel = 0.03 if cls is nn.RNN else 0.05
    assert h[:, 80:].pow(2).mean().item() == pytest.approx(predicted, rel=rel)
    if cls is nn.LSTM:  # the forget gate's bias is 1 (bias_ih's forget slice)
        assert p["bias_ih_l0"].args["values"][1] == 1.0


def test_recurrent_rule_rnn_closed_form():
    gain, mean, second = recurrent_rule("RNN_TANH", 1.0, {}, hidden=64, fan_in=8)
    tanh = wi.moments("tanh", 0, 1)
    assert (mean, second) == pytest.approx((tanh.mean, tanh.second_moment))
    assert gain**2 * second == pytest.approx(0.5)


def test_predictions_recorded_and_shown_by_diagnose():
    net = nn.Sequential(nn.Linear(16, 128), nn.GELU(), nn.Linear(128, 128), nn.Tanh(),
                        nn.Linear(128, 4))  # fmt: skip
    x = gaussian(1.0, 3.0, shape=(512, 16))
    p = wi.init(net, "auto", example_input=x, seed=0, stabilize=False)
    assert [q["layer"] for q in p.predictions] == ["0", "2", "4"]
    assert wi.Plan.from_json(p.to_json()).predictions == p.predictions
    report = wi.diagnose(net, x, plan=p)
    assert [layer.predicted_std for layer in report.layers] == [q["std"] for q in p.predictions]
    assert "predicted" in str(report)
    # the measured std is the predicted one up to the realized weights' spread
    assert all(0.8 < layer.std / layer.predicted_std < 1.25 for layer in report.layers[:2])
    with pytest.raises(ValueError, match="predicts nothing"):
        wi.diagnose(net, x, plan=wi.plan(net, "he"))


def test_apply_uses_auto_given_an_input_and_he_without():
    net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    assert wi.apply(net, seed=0).scheme == "he"
    assert wi.apply(net, example_input=gaussian(shape=(64, 8)), seed=0).scheme == "auto"
    assert wi.apply(net, data=gaussian(shape=(64, 8)), seed=0).scheme == "auto"


def test_stabilized_plan_reproduces_its_values():
    a = nn.Sequential(nn.Linear(16, 32), nn.SiLU(), nn.Linear(32, 4))
    b = nn.Sequential(nn.Linear(16, 32), nn.SiLU(), nn.Linear(32, 4))
    p = wi.init(a, "auto", example_input=gaussian(shape=(64, 16)), seed=5)
    wi.Plan.from_json(p.to_json()).apply(b)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_rules_and_skips_are_respected_and_propagated():
    net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                        nn.Linear(64, 4))  # fmt: skip
    x = gaussian(shape=(256, 16))
    p = wi.plan(net, "auto", example_input=x, stabilize=False, distribution="normal",
                rules={"0.weight": ("normal", {"std": 0.5})})  # fmt: skip
    assert p["0.weight"].reason.startswith("rule")
    # layer 0's output has variance 16 * 0.25 * E[x^2] = 4 * E[x^2], and layer 2 sees relu of it
    q_in = float(x.pow(2).mean())
    second = wi.moments("relu", 0.0, 16 * 0.25 * q_in).second_moment
    assert p["2.weight"].std ** 2 == pytest.approx(1 / (64 * second), rel=1e-6)


def test_bad_input_gets_clear_errors_and_changes_nothing():
    net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    before = [t.detach().clone() for t in net.parameters()]
    x = gaussian(shape=(16, 8))
    with pytest.raises(ValueError, match="pass example_input=batch"):
        wi.init(net, "auto")
    with pytest.raises(ValueError, match="`target_std` or `target_var`, not both"):
        wi.init(net, "auto", example_input=x, target_std=1, target_var=1)
    with pytest.raises(ValueError, match="`distribution` must be one of"):
        wi.init(net, "auto", example_input=x, distribution="cauchy")
    with pytest.raises(ValueError, match="relu_bias"):
        wi.init(net, "auto", example_input=x, relu_bias=0.1)
    with pytest.raises(ValueError, match="all zeros"):
        wi.init(net, "auto", example_input=torch.zeros(16, 8))
    with pytest.raises(TypeError, match="unknown scheme option"):
        wi.init(net, "auto", example_input=x, gain=2)
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), before))
