"""Fixup as the official code does it (github.com/hongyi-zhang/Fixup, fixup_resnet_imagenet.py).

The oracle is the official init loop, re-implemented below from the source: for a BasicBlock
``normal_(conv1, std=sqrt(2 / (w.shape[0] * prod(w.shape[2:]))) * num_layers ** -0.5)`` (He
with fan_out), ``conv2 = 0``; for a Bottleneck conv1 and conv2 with ``num_layers ** -0.25``,
``conv3 = 0``; every downsample conv He fan_out without a depth factor; every Linear 0.
"""

import copy
import math

import numpy as np
import pytest
import torch
from conftest import var_tolerance
from torch import nn

import weightinit as wi
from weightinit.recipes import FixupBias, FixupScale, add_fixup_scalars


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


def conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """torchvision's BasicBlock without its BatchNorms, as Fixup trains it."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(c_in, planes, stride)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.conv2(self.relu(self.conv1(x)))
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck without its BatchNorms."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1, downsample=None):
        super().__init__()
        self.conv1 = conv1x1(c_in, planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.conv1(x))
        out = self.relu(self.conv2(out))
        out = self.conv3(out)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision's ResNet (names conv1, layer1..4, downsample, fc) without BatchNorm, with
    the official code's projection shortcuts (a bare conv 1x1) and a narrow base width."""

    def __init__(self, block, layers, width: int = 8, classes: int = 10, stem_norm=False):
        super().__init__()
        self.c = width
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width) if stem_norm else nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._stage(block, width, layers[0])
        self.layer2 = self._stage(block, 2 * width, layers[1], 2)
        self.layer3 = self._stage(block, 4 * width, layers[2], 2)
        self.layer4 = self._stage(block, 8 * width, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * width * block.expansion, classes)

    def _stage(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        down = None
        if stride != 1 or self.c != planes * block.expansion:
            down = conv1x1(self.c, planes * block.expansion, stride)
        stage = [block(self.c, planes, stride, down)]
        self.c = planes * block.expansion
        stage += [block(self.c, planes) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def official_stds(model: ResNet) -> dict[str, float]:
    """The std the official init loop draws each weight it sets with (0: constant 0), by
    name; a transcription of FixupResNet.__init__'s loop, recording instead of drawing."""
    num_layers = sum(len(stage) for stage in (model.layer1, model.layer2, model.layer3,
                                               model.layer4))  # fmt: skip
    names = {id(p): n for n, p in model.named_parameters()}
    stds = {}

    def he_fan_out(w):
        return np.sqrt(2 / (w.shape[0] * np.prod(w.shape[2:])))

    for m in model.modules():
        if isinstance(m, BasicBlock):
            stds[names[id(m.conv1.weight)]] = he_fan_out(m.conv1.weight) * num_layers ** (-0.5)
            stds[names[id(m.conv2.weight)]] = 0.0
            if m.downsample is not None:
                stds[names[id(m.downsample.weight)]] = he_fan_out(m.downsample.weight)
        elif isinstance(m, Bottleneck):
            stds[names[id(m.conv1.weight)]] = he_fan_out(m.conv1.weight) * num_layers ** (-0.25)
            stds[names[id(m.conv2.weight)]] = he_fan_out(m.conv2.weight) * num_layers ** (-0.25)
            stds[names[id(m.conv3.weight)]] = 0.0
            if m.downsample is not None:
                stds[names[id(m.downsample.weight)]] = he_fan_out(m.downsample.weight)
        elif isinstance(m, nn.Linear):
            stds[names[id(m.weight)]] = stds[names[id(m.bias)]] = 0.0
    return {name: float(std) for name, std in stds.items()}


def _plain(name: str) -> str:
    """The name a weight had before add_fixup_scalars wrapped its layer in a Scaffold."""
    return name.replace(".layer.", ".")


SEEDS = 8
MODELS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet50-like": (Bottleneck, [2, 1, 1, 1]),
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _second_moments(model: nn.Module, plan, seeds: int) -> dict[str, tuple[float, int]]:
    """E[w^2] of every weight over ``seeds`` applications of the plan, and the draw count."""
    sums: dict[str, float] = {}
    for seed in range(seeds):
        plan.apply(model, seed=seed)
        for name, p in model.named_parameters():
            sums[name] = sums.get(name, 0.0) + float(p.detach().double().pow(2).sum())
    return {
        _plain(n): (sums[n] / (seeds * p.numel()), seeds * p.numel())
        for n, p in model.named_parameters()
    }


@pytest.mark.parametrize("mode", ["official", "paper"])
@pytest.mark.parametrize("model_name", list(MODELS))
def test_fixup_draws_every_weight_as_the_official_code(model_name, mode):
    """Per weight, pooled over seeds: "official" matches the official loop's std within five
    standard errors, "paper" differs from it by the fan ratio (He fan_in: Var = 2 / fan_in
    against the official 2 / fan_out); the zero layers are exactly 0 in both."""
    block, layers = MODELS[model_name]
    torch.manual_seed(0)
    oracle = official_stds(ResNet(block, layers))
    net = ResNet(block, layers)
    add_fixup_scalars(net)
    plan = wi.plan(net, "fixup", mode=mode)
    assert plan.notes["L"] == sum(layers) and plan.notes["classifier"] == "fc.layer"
    assert plan.notes["fan"] == {"official": "fan_out", "paper": "fan_in"}[mode]
    measured = _second_moments(net, plan, SEEDS)
    shapes = {_plain(n): p.shape for n, p in net.named_parameters()}
    for name, std in oracle.items():
        second, n = measured[name]
        if std == 0:
            assert second == 0.0, name
            continue
        shape = shapes[name]
        fan_in, fan_out = shape[1] * math.prod(shape[2:]), shape[0] * math.prod(shape[2:])
        var = std**2 * (fan_out / fan_in if mode == "paper" else 1.0)
        assert abs(second - var) < var_tolerance(var, n), (name, second, var)
    # every weight the official loop sets, and nothing it leaves alone but the stem
    drawn = {_plain(r.name) for r in plan.rows if r.role == "weight"}
    assert drawn - set(oracle) == {"conv1.weight"}


def test_paper_mode_halves_the_bottleneck_conv1_std():
    """A Bottleneck's conv1 (1x1, 4 planes in, planes out) has fan_in = 4 fan_out: the paper's
    reading (fan_in) draws it with half the official code's std."""
    net = ResNet(Bottleneck, [2, 1, 1, 1])
    stds = {mode: wi.plan(net, "fixup", mode=mode)["layer1.1.conv1.weight"].std
            for mode in ("official", "paper")}  # fmt: skip
    assert net.layer1[1].conv1.weight.shape[:2] == (8, 32)
    assert stds["official"] == pytest.approx(2 * stds["paper"])
    assert stds["official"] == pytest.approx(official_stds(net)["layer1.1.conv1.weight"])


@pytest.mark.parametrize("mode", ["official", "paper"])
def test_projection_shortcut_takes_relus_gain_in_both_modes(mode):
    """relu(branch + down(x)) with the branch at 0 is relu(down(x)): the shortcut conv gets
    ReLU's gain, sqrt 2, as the official code draws it (gain 1 before this fix)."""
    net = ResNet(BasicBlock, [1, 1, 1, 1])
    plan = wi.plan(net, "fixup", mode=mode)
    row = plan["layer2.0.downsample.weight"]
    assert row.args["scale"] == pytest.approx(2.0)
    assert row.args["mode"] == {"official": "fan_out", "paper": "fan_in"}[mode]
    assert "followed by relu (through" in row.reason and "projection shortcut" in row.reason
    assert set(plan.notes["shortcuts"]) == {f"layer{k}.0.downsample" for k in (2, 3, 4)}
    # "he" keeps its documented rule: a residual add ends the walk, gain 1
    assert wi.plan(net, "he")["layer2.0.downsample.weight"].args["scale"] == 1.0


def test_the_stem_is_he_with_the_modes_fan_and_relus_gain():
    """The official code leaves its stem conv at PyTorch's default; weightinit draws it He like
    every other layer, with the mode's fan and the gain of the ReLU after it."""
    net = ResNet(BasicBlock, [1, 1, 1, 1])
    for mode, fan in (("official", 8 * 49), ("paper", 3 * 49)):
        row = wi.plan(net, "fixup", mode=mode)["conv1.weight"]
        assert row.std == pytest.approx(math.sqrt(2 / fan))


@pytest.mark.parametrize("stem_norm", [False, True], ids=["no-bn", "bn"])
def test_resnet18_gets_the_official_codes_42_scalars(stem_norm):
    """The official FixupResNet-18: bias1 after the stem conv, per BasicBlock bias1a, bias1b,
    bias2a, scale, bias2b, and bias2 before fc: 1 + 8 x 5 + 1 = 42 scalars."""
    net = ResNet(BasicBlock, [2, 2, 2, 2], stem_norm=stem_norm)
    group = add_fixup_scalars(net)
    assert len(group["params"]) == 1 + 8 * 5 + 1 == 42
    names = {id(p): n for n, p in net.named_parameters()}
    added = [names[id(p)] for p in group["params"]]
    assert added[0] == "conv1.after.0.value"  # after the stem conv, before its ReLU (and BN)
    assert added[-1] == "fc.before.value"
    kinds = [type(net.get_submodule(n.rsplit(".", 1)[0])) for n in added]
    assert kinds.count(FixupScale) == 8 and kinds.count(FixupBias) == 34
    x = torch.randn(2, 3, 32, 32)
    wi.init(net, "fixup", seed=0)
    with torch.no_grad():  # the bias sits before the ReLU: relu(conv1(x) + 0)
        h = net.conv1.layer(x)
        assert torch.equal(net.conv1(x), h) and net.conv1.after[0].value.item() == 0.0
        assert torch.isfinite(net(x)).all()


def _official_forward(ref: ResNet, values: dict[str, torch.Tensor], x: torch.Tensor):
    """The official FixupResNet's forward pass, written out on ``ref``'s layers, with its
    scalars taken from ``values`` (by the official names: "bias1", "layer1.0.bias1a", ...):
    relu(conv1(x) + bias1), then per block h = conv_k(h + bias_ka), relu(h + bias_kb) between
    layers, h * scale + bias_mb after the last, relu(h + downsample(x + bias1a) or x), and
    fc(pooled + bias2)."""
    relu = torch.relu
    h = ref.maxpool(relu(ref.conv1(x) + values["bias1"]))
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        for k, block in enumerate(getattr(ref, stage)):
            v = {n.rsplit(".", 1)[1]: t for n, t in values.items() if n.startswith(f"{stage}.{k}.")}
            convs = [block.conv1, block.conv2] + ([block.conv3] if hasattr(block, "conv3") else [])
            out = h
            for j, conv in enumerate(convs, 1):
                out = conv(out + v[f"bias{j}a"])
                last = j == len(convs)
                out = out * v["scale"] + v[f"bias{j}b"] if last else relu(out + v[f"bias{j}b"])
            skip = h if block.downsample is None else block.downsample(h + v["bias1a"])
            h = relu(out + skip)
    return ref.fc(torch.flatten(ref.avgpool(h), 1) + values["bias2"])


def _official_names(net: ResNet) -> dict[str, str]:
    """weightinit's scalar names after add_fixup_scalars -> the official code's names."""
    names = {"conv1.after.0.value": "bias1", "fc.before.value": "bias2"}
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        for k, block in enumerate(getattr(net, stage)):
            m = 3 if hasattr(block, "conv3") else 2
            at = f"{stage}.{k}"
            for j in range(1, m + 1):
                names[f"{at}.conv{j}.before.value"] = f"{at}.bias{j}a"
                names[f"{at}.conv{j}.after.0.value"] = f"{at}.scale" if j == m else f"{at}.bias{j}b"
            names[f"{at}.conv{m}.after.1.value"] = f"{at}.bias{m}b"
    return names


@pytest.mark.parametrize("model_name", list(MODELS))
def test_the_scalars_compute_what_the_official_network_computes(model_name):
    """With every weight and scalar random (not at their init), the transformed torchvision-
    style ResNet computes the official FixupResNet's function: the same scalars in the same
    places, the shortcut conv fed the branch's biased input (one shared bias1a)."""
    block, layers = MODELS[model_name]
    torch.manual_seed(0)
    ref = ResNet(block, layers)
    net = copy.deepcopy(ref)
    group = add_fixup_scalars(net)
    names = _official_names(net)
    scalars = dict(net.named_parameters())
    assert sorted(names) == sorted(n for n in scalars if n.endswith(".value"))
    assert len(group["params"]) == len(names)
    with torch.no_grad():
        for n in names:
            scalars[n].normal_()
    values = {names[n]: scalars[n].detach() for n in names}
    first = net.layer2[0]
    assert first.downsample.before is first.conv1.before  # bias1a, shared
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(net(x), _official_forward(ref, values, x), rtol=1e-4, atol=1e-5)


def test_resnet50_gets_the_official_codes_114_scalars():
    """FixupBottleneck: bias1a, bias1b, bias2a, bias2b, bias3a, scale, bias3b: 7 per block;
    ResNet-50 has 16 blocks: 1 + 16 x 7 + 1 = 114."""
    net = ResNet(Bottleneck, [3, 4, 6, 3], width=4)
    assert len(add_fixup_scalars(net)["params"]) == 1 + 16 * 7 + 1 == 114


def test_no_stem_bias_without_an_activation_after_the_stem():
    """A stem whose output forks straight into the first block (x and f(x)) has no activation
    to put a bias before: no scalar there."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(8, 8), nn.Linear(8, 8)

        def forward(self, x):
            return x + self.fc2(torch.relu(self.fc1(x)))

    net = nn.Sequential(nn.Linear(4, 8), Block(), nn.Linear(8, 2))
    assert len(add_fixup_scalars(net)["params"]) == 5 + 1


@pytest.mark.parametrize("bad", ["fan_in", "Official", None, 1])
def test_a_bad_mode_names_the_option_and_the_choices_model_untouched(bad):
    net = ResNet(BasicBlock, [1, 1, 1, 1])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError) as err:
        wi.init(net, "fixup", mode=bad, seed=0)
    message = str(err.value)
    assert message.startswith("scheme 'fixup': option `mode` must be 'official'"), message
    assert "'paper'" in message and repr(bad) in message
    if bad == "fan_in":
        assert "fan_in is 'paper'" in message
    after = net.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())


def test_the_mode_is_recorded_and_survives_json():
    net = ResNet(BasicBlock, [1, 1, 1, 1])
    plan = wi.plan(net, "fixup", mode="paper")
    assert plan.options["mode"] == "paper"
    again = wi.Plan.from_json(plan.to_json())
    assert again["layer1.0.conv1.weight"].args["mode"] == "fan_in"
    assert again.notes["fan"] == "fan_in"
