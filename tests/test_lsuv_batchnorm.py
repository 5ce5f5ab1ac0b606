"""LSUV (and "auto"'s sweep) with BatchNorm: calibration runs norm layers on batch statistics,
then re-estimates their running statistics on the calibration batch, so that eval mode gives the
calibrated network (issue 13: eval-mode output std 40 for 1 on a MobileNetV3-Large before).

The oracles are independent of the calibration code: hooks capture every BatchNorm's input in
a batch-statistics forward pass of the final model, and the test computes its mean and unbiased
variance (torch's running_var convention) itself."""

from __future__ import annotations

import copy
import functools
import json
import math

import pytest
import torch
from torch import nn

import weightinit as wi

# --- a MobileNetV3 in torchvision's layout (names, blocks, BatchNorm eps and momentum), small --


def _make_divisible(v: float, divisor: int = 8) -> int:
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x):
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return self.scale_activation(scale) * x


def conv_norm_act(cin, cout, kernel, stride=1, groups=1, act=nn.Hardswish):
    """torchvision's Conv2dNormActivation: .0 conv, .1 BatchNorm2d, .2 activation."""
    layers = [
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=0.001, momentum=0.01),  # MobileNetV3's
    ]
    return nn.Sequential(*layers, *([act()] if act is not None else []))


class InvertedResidual(nn.Module):
    def __init__(self, cin, kernel, expanded, cout, se, hardswish, stride):
        super().__init__()
        act = nn.Hardswish if hardswish else nn.ReLU
        self.use_res_connect = stride == 1 and cin == cout
        layers = [conv_norm_act(cin, expanded, 1, act=act)] if expanded != cin else []
        layers.append(conv_norm_act(expanded, expanded, kernel, stride, expanded, act))  # depthwise
        if se:
            layers.append(SqueezeExcitation(expanded, _make_divisible(expanded // 4)))
        layers.append(conv_norm_act(expanded, cout, 1, act=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        y = self.block(x)
        return y + x if self.use_res_connect else y


# (input, kernel, expanded, output, squeeze-excitation, hardswish, stride): MobileNetV3-Small's
# pattern, fewer blocks; 32 x 32 inputs end at 2 x 2
SETTING = [
    (16, 3, 16, 16, True, False, 2),
    (16, 3, 64, 24, False, False, 2),
    (24, 3, 72, 24, False, False, 1),
    (24, 5, 96, 40, True, True, 2),
    (40, 5, 120, 40, True, True, 1),
    (40, 3, 144, 48, True, True, 1),
]


class MobileNetV3(nn.Module):
    """torchvision's MobileNetV3 for a ``setting`` of inverted residual blocks (as SETTING)."""

    def __init__(self, setting=SETTING, hidden: int = 256, num_classes: int = 10):
        super().__init__()
        blocks = [InvertedResidual(*s) for s in setting]
        last = setting[-1][3]
        self.features = nn.Sequential(
            conv_norm_act(3, setting[0][0], 3, 2), *blocks, conv_norm_act(last, 6 * last, 1)
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(6 * last, hidden), nn.Hardswish(), nn.Dropout(0.2),
            nn.Linear(hidden, num_classes),
        )  # fmt: skip

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def mobilenet(seed: int = 0) -> MobileNetV3:
    torch.manual_seed(seed)
    return MobileNetV3()


def images(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


X = images(128, 0)  # the calibration batch
FRESH = images(128, 1)  # a fresh batch from the same distribution


# --- measuring --------------------------------------------------------------------------------


def norms(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}


@torch.no_grad()
def batch_statistics(model, x, capture=None):
    """The output with every BatchNorm on batch statistics and dropout off (as calibration and
    training normalize), on a copy (running statistics untouched); with ``capture`` (a dict),
    each BatchNorm's input by name."""
    work = copy.deepcopy(model).eval()
    for name, norm in norms(work).items():
        norm.train()
        if capture is not None:
            norm.register_forward_pre_hook(lambda m, i, name=name: capture.update({name: i[0]}))
    return work(x)


@torch.no_grad()
def eval_mode(model, x):
    return copy.deepcopy(model).eval()(x)


def std_and_error(y: torch.Tensor) -> tuple[float, float]:
    """The std of all outputs and its standard error over the samples (rows, independent):
    s^2 = mean_i z_i with z_i the sample's mean squared deviation, SE(s) = SE(s^2) / (2 s)."""
    z = (y - y.mean()).square().mean(1)
    s = y.std().item()
    return s, z.std().item() / math.sqrt(len(z)) / (2 * s)


@functools.cache
def calibrate(scheme: str) -> tuple[MobileNetV3, wi.Plan]:
    model = mobilenet()
    return model, wi.init(model, scheme, data=X, seed=0)


@pytest.fixture(params=["lsuv", "auto"])
def calibrated(request):
    return calibrate(request.param)


# --- the running statistics -------------------------------------------------------------------


def test_running_statistics_are_the_moments_of_each_norm_input(calibrated):
    model, plan = calibrated
    inputs = {}
    batch_statistics(model, X, inputs)
    assert set(inputs) == set(norms(model)) and len(inputs) == 19
    for name, norm in norms(model).items():
        x = inputs[name].double().transpose(0, 1).reshape(norm.num_features, -1)
        mean, var = x.mean(1), x.var(1)  # unbiased: torch's running_var
        assert ((norm.running_mean.double() - mean).abs() <= 1e-5 * var.sqrt()).all(), name
        torch.testing.assert_close(norm.running_var.double(), var, rtol=1e-5, atol=0)
        assert norm.num_batches_tracked.item() == 1, name
        assert norm.momentum == 0.01, name  # the model's own, untouched
        for buffer in ("running_mean", "running_var", "num_batches_tracked"):
            assert f"{name}.{buffer}" in plan.buffers
    assert len(plan.buffers) == 3 * len(inputs)


def test_eval_mode_gives_the_calibrated_network_on_the_calibration_batch(calibrated):
    model, _ = calibrated
    inputs = {}
    train, evaluated = batch_statistics(model, X, inputs), eval_mode(model, X)
    s_train, se = std_and_error(train)
    s_eval, _ = std_and_error(evaluated)
    assert abs(s_train - 1) <= 0.05  # the target, on batch statistics (tol 0.05)
    assert abs(s_eval - s_train) <= 3 * se
    # exactly: eval mode differs only by torch's unbiased running_var, n/(n-1) for n values
    # per channel; with the biased one it gives the batch-statistics output
    biased = copy.deepcopy(model)
    for name, norm in norms(biased).items():
        n = inputs[name].numel() // norm.num_features
        norm.running_var.mul_((n - 1) / n)
    torch.testing.assert_close(eval_mode(biased, X), train, rtol=1e-4, atol=1e-4 * s_train)
    # the statistics a fresh model has (mean 0, variance 1) are far off: what was fixed
    stale = copy.deepcopy(model)
    for norm in norms(stale).values():
        norm.reset_running_stats()
    off = ((eval_mode(stale, X) - train).norm() / train.norm()).item()
    assert off > 0.1  # per channel, where the re-estimated statistics are within 1e-4


def statistics_error(x: torch.Tensor) -> float:
    """The relative error that a norm layer's statistics, estimated on its input ``x`` (N, C,
    ...), put into its normalized output's std, squared and averaged over the channels. The
    images are the independent units (positions of one image are correlated): per channel,
    SE(mean)^2 = Var(image means) / N and SE(var)^2 = Var(image mean squared deviations) / N,
    and e^2 = SE(mean)^2 / var + SE(var)^2 / (4 var^2) (a shifted mean adds its square to the
    variance; a relative error r in the variance is r / 2 in the std)."""
    per = x.double().transpose(0, 1).reshape(x.shape[1], x.shape[0], -1)  # (C, N, positions)
    mean, var = per.mean((1, 2)), per.var((1, 2))
    se_mean = per.mean(2).var(1) / x.shape[0]
    se_var = (per - mean[:, None, None]).square().mean(2).var(1) / x.shape[0]
    return (se_mean / var + se_var / (4 * var**2)).mean().item()


def test_eval_mode_on_a_fresh_batch_keeps_the_target(calibrated):
    """The gains and the statistics are estimates from the calibration batch; on a fresh batch
    from the same distribution the eval-mode output std is the target up to the sampling error
    of both batches' stds and of every norm layer's statistics (independent from layer to
    layer: in quadrature). Three standard errors of all of them together."""
    model, _ = calibrated
    inputs = {}
    s_train, se_train = std_and_error(batch_statistics(model, X, inputs))
    s_fresh, se_fresh = std_and_error(eval_mode(model, FRESH))
    se_statistics = s_train * math.sqrt(sum(map(statistics_error, inputs.values())))
    assert abs(s_fresh - s_train) <= 3 * math.sqrt(se_train**2 + se_fresh**2 + se_statistics**2)


def test_the_plan_applied_to_another_instance_or_from_json_writes_the_same_state():
    model, plan = calibrate("lsuv")
    text = plan.to_json()
    assert json.loads(text)["buffers"] == plan.buffers
    assert "buffers: 57 written with the parameters" in str(plan)
    for again in (plan, wi.Plan.from_json(text)):
        other = mobilenet(seed=1)  # other weights and, after a step, other statistics
        other.train()(FRESH[:16])
        again.apply(other)
        state, reference = other.state_dict(), model.state_dict()
        assert state.keys() == reference.keys()
        assert all(torch.equal(state[k], reference[k]) for k in state), "not the same state"


# --- modes, kept layers, errors ---------------------------------------------------------------


def test_the_users_modes_are_restored_and_do_not_change_the_plan():
    """Calibration runs norm layers on batch statistics whatever mode the model is in, so a
    model in eval mode (or in mixed modes) gets the same plan, and keeps its modes."""
    x = X[:64]
    plans = []
    for mode in ("train", "eval", "mixed"):
        model = mobilenet()
        model.train(mode != "eval")
        if mode == "mixed":
            model.features[1].block[0][1].eval()  # one BatchNorm
            model.classifier[2].eval()  # the dropout
        modes = [m.training for m in model.modules()]
        state = {k: v.clone() for k, v in model.state_dict().items()}
        plans.append(wi.plan(model, "lsuv", data=x, seed=0))
        assert [m.training for m in model.modules()] == modes
        assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
        plans[-1].apply(model)
        assert [m.training for m in model.modules()] == modes
    assert plans[0].buffers and all(p.buffers == plans[0].buffers for p in plans)
    assert all(p.rows == plans[0].rows for p in plans)


def small(affine_second: bool = True) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8, affine=affine_second), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8, track_running_stats=False),
        nn.Flatten(), nn.Linear(8 * 32 * 32, 10),
    )  # fmt: skip


def test_a_norm_layer_the_plan_keeps_keeps_its_statistics_and_runs_as_the_user_runs_it():
    """Parameters skipped (or frozen, or loaded from a checkpoint): the layer's statistics are
    the user's, and calibration runs it as the user does (eval mode: on those statistics). A
    layer without affine parameters is re-estimated; one without running statistics has none."""
    x = X[:64]
    for training in (False, True):
        model = small(affine_second=False)
        with torch.no_grad():
            model[1].running_mean.fill_(0.5)  # e.g. loaded
            model[1].running_var.fill_(9.0)
        model.train(training)
        kept = {k: v.clone() for k, v in model[1].state_dict().items()}
        plan = wi.init(model, "lsuv", data=x, seed=0, skip=["1.*"])
        assert sorted(plan.buffers) == [
            "4.num_batches_tracked", "4.running_mean", "4.running_var"
        ]  # fmt: skip
        assert all(torch.equal(v, kept[k]) for k, v in model[1].state_dict().items())
        after_kept = {}  # the conv after the kept layer, run as calibration ran it
        model[3].register_forward_hook(lambda m, i, o, kept=after_kept: kept.update(y=o))
        with torch.no_grad():
            model(x) if not training else batch_statistics(model, x)
        assert abs(after_kept["y"].std().item() - 1) <= 0.05, training


def test_the_statistics_cost_a_forward_pass_only_when_the_last_sweep_changed_something():
    """The verifying sweep runs the final network: its statistics are the ones recorded. After
    a sweep that corrected layers (max_iter=1) one more pass measures the final network."""
    passes = []
    model = small()
    model.register_forward_pre_hook(lambda m, i: passes.append(1))
    x = X[:64]
    verified = wi.plan(model, "lsuv", data=x, seed=0)
    assert len(passes) == 2 and all(c["verified"] for c in verified.calibration)
    passes.clear()
    once = wi.plan(model, "lsuv", data=x, seed=0, max_iter=1)
    assert len(passes) == 2 and not any(c["verified"] for c in once.calibration)
    assert once.buffers.keys() == verified.buffers.keys()
    inputs = {}  # the statistics of the final network either way (the independent oracle)
    for plan in (verified, once):
        plan.apply(model)
        batch_statistics(model, x, inputs)
        var = inputs["4"].transpose(0, 1).reshape(8, -1).double().var(1)
        torch.testing.assert_close(model[4].running_var.double(), var, rtol=1e-5, atol=0)


def test_models_without_running_statistics_get_no_buffers():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 32), nn.LayerNorm(32), nn.Tanh(), nn.Linear(32, 2))
    plan = wi.plan(net, "lsuv", data=torch.randn(64, 8), seed=0)
    assert plan.buffers == {} and "buffers" not in json.loads(plan.to_json())


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda b: b.pop("1.running_mean") and b.update(nope=[0.0]), "has no buffer 'nope'"),
        (lambda b: b["1.running_var"].pop(), r"7 value\(s\) for a buffer of shape \(8,\)"),
        (lambda b: b.update({"1.num_batches_tracked": 1.5}), "holds integers"),
        (lambda b: b.update({"1.running_var": [math.nan] * 8}), "a finite number"),
    ],
)
def test_apply_checks_the_buffers_before_writing_anything(edit, match):
    x = X[:64]
    plan = wi.plan(small(), "lsuv", data=x, seed=0)
    edit(plan.buffers)
    model = small()
    model[0].weight.data.mul_(3)  # not what the plan writes
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        plan.apply(model)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_from_json_checks_the_buffers():
    plan = wi.plan(small(), "lsuv", data=X[:64], seed=0)
    data = json.loads(plan.to_json())
    data["buffers"]["1.running_var"] = "ones"
    with pytest.raises(ValueError, match="key 'buffers' must be an object of buffer names"):
        wi.Plan.from_json(json.dumps(data))
