"""Residual recipes: branch finding, Fixup (scheme and scalars), SkipInit / ReZero, ZerO."""

import math
import warnings

import pytest
import torch
from torch import nn

import weightinit as wi
from weightinit import zoo
from weightinit.commands.demo import load_mnist1d, tensors
from weightinit.recipes import (
    FixupBias,
    FixupScale,
    add_fixup_scalars,
    add_residual_gains,
)
from weightinit.understanding.branches import residual_branches
from weightinit.understanding.graph import trace


class MLPBlock(nn.Module):
    """x + W2 relu(W1 x) (m = 2), or x + W relu(x) (m = 1); no normalization."""

    def __init__(self, width: int, m: int = 2):
        super().__init__()
        layers = [nn.Linear(width, width)]
        for _ in range(m - 1):
            layers += [nn.ReLU(), nn.Linear(width, width)]
        self.f = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.f(x)


def mlp(depth: int, width: int = 16, n_in: int = 8, n_out: int = 3, ms=None) -> nn.Sequential:
    ms = ms or [2] * depth
    blocks = [MLPBlock(width, m) for m in ms]
    return nn.Sequential(nn.Linear(n_in, width), *blocks, nn.Linear(width, n_out))


class ConvBlock(nn.Module):
    """ResNet's basic block without normalization: relu(x + conv2(relu(conv1(x))))."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return torch.relu(x + self.conv2(torch.relu(self.conv1(x))))


class Downsample(nn.Module):
    """ResNet's basic block with BatchNorm and a projection shortcut (conv 1x1 + BN)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=2), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.downsample(x)
        return torch.relu(out)


class Gated(nn.Module):
    """Python control flow on a tensor value: torch.fx cannot trace it."""

    def __init__(self, width: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, width), nn.Linear(width, width)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        if h.sum() > 0:
            h = h * 1.0
        return torch.add(x, self.fc2(h))


class Stacked(nn.Module):
    """A residual sum no trace recognizes as an add."""

    def __init__(self, width: int):
        super().__init__()
        self.f = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))

    def forward(self, x):
        return torch.stack([x, self.f(x)]).sum(0)


class AttentionBlock(nn.Module):
    """x + MHA(x), then x + W2 relu(W1 x): an nn.MultiheadAttention is one call in a trace."""

    def __init__(self, d: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True)
        self.fc1, self.fc2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

    def forward(self, x):
        x = x + self.attn(x, x, x, need_weights=False)[0]
        return x + self.fc2(torch.relu(self.fc1(x)))


class Nested(nn.Module):
    """x + post(relu(inner(relu(pre(x))))), inner(h) = h + b(relu(a(h))): a branch in a branch."""

    def __init__(self, w: int):
        super().__init__()
        self.pre, self.post = nn.Linear(w, w), nn.Linear(w, w)
        self.inner = MLPBlock(w)

    def forward(self, x):
        return x + self.post(torch.relu(self.inner(torch.relu(self.pre(x)))))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The machine's cores are shared: these small models run fastest on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _snapshot(model: nn.Module):
    return repr(model), {k: v.clone() for k, v in model.state_dict().items()}


def _unchanged(model: nn.Module, before) -> bool:
    text, state = before
    now = model.state_dict()
    return (
        repr(model) == text
        and now.keys() == state.keys()
        and all(torch.equal(now[k], state[k]) for k in state)
    )


# --- branch finding -------------------------------------------------------------------------------


@pytest.mark.parametrize("example", [None, torch.randn(2, 8)], ids=["fx", "execution"])
def test_branches_of_a_sequential_residual_mlp(example):
    net = mlp(3, ms=[2, 3, 1])
    found = residual_branches(net, trace(net, example))
    assert [b.layers for b in found] == [
        ("1.f.0", "1.f.2"),
        ("2.f.0", "2.f.2", "2.f.4"),
        ("3.f.0",),
    ]
    assert [b.output for b in found] == ["1.f.2", "2.f.4", "3.f.0"]


@pytest.mark.parametrize("example", [None, torch.randn(2, 4, 8, 8)], ids=["fx", "execution"])
def test_projection_shortcut_the_longer_side_is_the_branch(example):
    net = nn.Sequential(Downsample(4, 8), Downsample(8, 8))
    found = residual_branches(net, trace(net, example))
    # out += shortcut: Tensor.__iadd__ in the execution trace, operator.add under fx
    assert [b.layers for b in found] == [("0.conv1", "0.conv2"), ("1.conv1", "1.conv2")]
    assert [b.output for b in found] == ["0.bn2", "1.bn2"]  # norms are no weighted layers


def test_branches_need_an_execution_trace_under_python_control_flow():
    net = nn.Sequential(Gated(6), Gated(6))
    with pytest.raises(ValueError, match="example_input"):
        wi.plan(net, "fixup")
    plan = wi.plan(net, "fixup", example_input=torch.randn(4, 6))
    assert plan.graph == "execution"
    assert [b["layers"] for b in plan.notes["branches"]] == [["0.fc1", "0.fc2"], ["1.fc1", "1.fc2"]]


def test_unrelated_adds_and_symmetric_sums_are_no_residuals():
    class Positional(nn.Module):
        def __init__(self):
            super().__init__()
            self.pos = nn.Parameter(torch.zeros(6))
            self.a, self.b = nn.Linear(6, 6), nn.Linear(6, 6)

        def forward(self, x):
            return self.a(x + self.pos) + self.b(x)  # two parallel one-layer paths: no skip

    assert residual_branches(Positional(), trace(Positional())) == []


def test_declared_branches_when_tracing_finds_none():
    net = nn.Sequential(nn.Linear(8, 6), Stacked(6), Stacked(6), nn.Linear(6, 2))
    with pytest.raises(ValueError, match=r"no residual branches found.*branches=\["):
        wi.plan(net, "fixup")
    plan = wi.plan(net, "fixup", branches=["*.f"])
    assert plan.notes["L"] == 2 and plan.notes["classifier"] == "3"
    assert plan.notes["branches"][0]["layers"] == ["1.f.0", "1.f.2"]
    assert plan["1.f.2.weight"].init == "zeros" and plan["3.weight"].init == "zeros"
    # a declaration overrides what tracing finds
    traced = mlp(2)
    assert wi.plan(traced, "fixup", branches=["1"]).notes["L"] == 1


@pytest.mark.parametrize(
    "branches, message",
    [
        ("1.f", "non-empty list"),
        ([], "non-empty list"),
        ([3], "non-empty list"),
        (["nope.*"], "'nope.*' matches no module"),
        (["1.f.1"], "holds no weighted layer"),  # a ReLU
    ],
)
def test_bad_branches_are_clear_errors(branches, message):
    with pytest.raises(ValueError, match=message) as err:
        wi.plan(mlp(2), "fixup", branches=branches)
    assert "branches" in str(err.value)


# --- Fixup: the scheme ----------------------------------------------------------------------------


def test_fixup_plan_against_the_papers_rule():
    """L branches of m layers: last layer and classifier 0, He x L^(-1/(2m-2)) inside."""
    ms = [2, 3, 1, 2]
    net = mlp(len(ms), ms=ms)
    plan = wi.plan(net, "fixup")
    depth = len(ms)
    assert plan.notes["L"] == depth and plan.notes["classifier"] == "5"
    assert [b["m"] for b in plan.notes["branches"]] == ms
    assert "m=1" in plan.notes
    assert plan["0.weight"].args["scale"] == pytest.approx(1.0)  # stem: He, gain 1 (a fork)
    for k, m in enumerate(ms):
        block = f"{k + 1}.f"
        last = f"{block}.{2 * (m - 1)}"
        assert plan[f"{last}.weight"].init == plan[f"{last}.bias"].init == "zeros"
        for j in range(m - 1):
            row = plan[f"{block}.{2 * j}.weight"]
            # followed by a ReLU: He's gain^2 = 2, times the squared Fixup factor L^(-1/(m-1))
            assert row.args["scale"] == pytest.approx(2.0 * depth ** (-1.0 / (m - 1)))
            assert row.std == pytest.approx(math.sqrt(2.0 / 16) * depth ** (-1 / (2 * m - 2)))
            assert plan[f"{block}.{2 * j}.bias"].init == "zeros"
    assert plan["5.weight"].init == plan["5.bias"].init == "zeros"
    again = wi.Plan.from_json(plan.to_json())
    assert again.notes == plan.notes


class Projected(nn.Module):
    """relu(conv2(relu(conv1(x))) + down(x)): the projection shortcut runs after the branch."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.down = nn.Conv2d(c_in, c_out, 1, stride=2)

    def forward(self, x):
        out = self.conv2(torch.relu(self.conv1(x)))
        return torch.relu(out + self.down(x))


@pytest.mark.parametrize("example", [None, torch.randn(2, 3, 8, 8)], ids=["fx", "execution"])
def test_fixup_classifier_comes_after_the_last_residual_add(example):
    """A backbone ending in a projection block has no classifier: its shortcut conv, the last
    weighted layer called, is on the skip side and keeps He (zeroing it with the branch made
    the output identically 0)."""
    stem = nn.Conv2d(3, 8, 3, padding=1)
    net = nn.Sequential(stem, ConvBlock(8), Projected(8, 16))
    plan = wi.init(net, "fixup", seed=0, example_input=example)
    assert plan.notes["classifier"] is None
    assert plan["2.down.weight"].init == plan["2.conv1.weight"].init == "variance_scaling"
    # He as the official code draws it (fan_out), followed by the add's relu: the branch
    # starts at 0, so the block is relu(down(x)) and the shortcut gets ReLU's gain^2 2
    he = wi.plan(net, "he", mode="fan_out")["2.down.weight"].args
    assert he["scale"] == 1.0 and plan["2.down.weight"].args == dict(he, scale=2.0)
    assert plan["2.conv2.weight"].init == "zeros"
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():  # the blocks start as their skip paths: relu(down(relu(stem x)))
        h = net[0](x).relu()
        assert torch.equal(net(x), net[2].down(h).relu())
        assert net(x).abs().sum() > 0
    head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 4 * 4, 5))
    plan = wi.plan(nn.Sequential(*net, head), "fixup", example_input=example)
    assert plan.notes["classifier"] == "3.1" and plan["2.down.weight"].init != "zeros"
    group = add_fixup_scalars(net, example_input=example)
    # two branches; the shortcut conv reads what conv1 reads, through conv1's own bias (the
    # official downsample(x + bias1a)): no scalar of its own; the stem's output forks into the
    # first block (no activation after it): no bias after it
    assert len(group["params"]) == 2 * 5
    assert net[2].down.before is net[2].conv1.before and isinstance(net[0], nn.Conv2d)


def _output_var(net: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float(net(x).pow(2).mean())


def _blocks(depth: int, width: int) -> nn.Sequential:
    return nn.Sequential(*[MLPBlock(width) for _ in range(depth)])


@pytest.mark.parametrize("depth, width", [(10, 256), (100, 64), (1000, 32)])
def test_fixup_keeps_the_forward_signal_where_he_explodes(depth, width):
    torch.manual_seed(0)
    x = torch.randn(64, width)
    net = _blocks(depth, width)
    wi.init(net, "fixup", seed=0)
    with torch.no_grad():
        assert torch.equal(net(x), x)  # zero last layers: every branch starts at 0
    # the scaled rule with the zeroing disabled: the last layers drawn like the others (He
    # with gain 1 before the add) times L^(-1/2), m = 2. Per block E[x^2] grows by
    # 2/L (W1, ReLU gain^2 2) x 1/2 (ReLU) x 1/L (W2) = 1/L^2: (1 + 1/L^2)^L -> 1.
    rule = ("variance_scaling", {"scale": 1.0 / depth})
    wi.init(net, "fixup", seed=0, rules={"*.f.2.weight": rule})
    ratio = _output_var(net, x) / float(x.pow(2).mean())
    # E[(x + b)^2] = E[x^2] + 2 E[x b] + E[b^2]: the sample cross term, mean 0, dominates the
    # error: sd 2 sqrt(E[b^2] / n) = 2 / (L sqrt(n)) per block over n = batch x width
    # samples, a random walk over L blocks: 2 / sqrt(L n)
    sd = 2 / math.sqrt(depth * x.numel())
    assert ratio == pytest.approx((1 + depth**-2) ** depth, abs=5 * sd)
    if depth == 1000:
        return  # plain He overflows
    # plain He: each block doubles E[x^2] (W1: 2 / ReLU: 1/2 / W2: 1): 2^L
    wi.init(net, "he", seed=0)
    he = _output_var(net, x) / float(x.pow(2).mean())
    # log2 of the product of 2L chi-square-like factors: sd about sqrt(2L * 2 / width) / ln 2
    sd = math.sqrt(2 * depth * 2 / width) / math.log(2)
    assert abs(math.log2(he) - depth) < 4 * sd


def test_fixup_conv_net_keeps_the_signal_where_he_explodes():
    torch.manual_seed(0)
    x = torch.randn(4, 8, 8, 8).relu()  # the blocks' outputs are post-ReLU
    he = {}
    for depth in (10, 100):
        net = nn.Sequential(*[ConvBlock(8) for _ in range(depth)])
        plan = wi.init(net, "fixup", seed=0)
        assert plan.notes["L"] == depth and plan.notes["classifier"] is None
        assert plan["0.conv1.weight"].args["scale"] == pytest.approx(2.0 / depth)  # 2 L^(-1/(m-1))
        with torch.no_grad():
            assert torch.equal(net(x), x)
        wi.init(net, "he", seed=0)
        he[depth] = _output_var(net, x) / float(x.pow(2).mean())
    # exponential growth: log E[x^2] proportional to depth (x10 from 10 to 100 blocks)
    assert he[10] > 2 and math.log(he[100]) > 5 * math.log(he[10])


def _sgd_output_change(net: nn.Module, x, y, lr: float, extra=()) -> float:
    before = net(x).detach()
    loss = 0.5 * (net(x) - y).pow(2).sum(1).mean()
    params = list(net.parameters())
    grads = torch.autograd.grad(loss, params)
    with torch.no_grad():
        for p, g in zip(params, grads):
            p -= lr * g
        return float((net(x) - before).pow(2).mean().sqrt())


def test_fixup_update_stays_order_one_across_depth_he_blows_up():
    """The paper's claim: with Fixup, one SGD step changes the output by Theta(lr), whatever
    the depth; with He it grows with depth."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 8), torch.randn(64, 3)
    fixup, he = {}, {}
    for depth in (10, 100, 1000):
        net = mlp(depth, width=16)
        add_fixup_scalars(net)
        wi.init(net, "fixup", seed=0)
        fixup[depth] = _sgd_output_change(net, x, y, lr=0.01)
        if depth < 1000:  # (at 1000 blocks He's output overflows)
            net = mlp(depth, width=16)
            wi.init(net, "he", seed=0)
            he[depth] = _sgd_output_change(net, x, y, lr=0.01)
    # the same stem (drawn first with the same seed) and identity blocks: the same change
    assert 0 < fixup[10] < 1
    assert fixup[1000] == pytest.approx(fixup[10], rel=1e-4)
    assert he[10] > 10 * fixup[10] and not he[100] < 1e6 * he[10]


def test_a_100_block_mlp_with_fixup_trains_on_mnist1d():
    torch.manual_seed(0)
    x, y, xt, yt = tensors(load_mnist1d())
    net = mlp(100, width=32, n_in=40, n_out=10)
    lr = 0.05
    group = add_fixup_scalars(net, lr=lr)
    wi.init(net, "fixup", seed=0)
    scalars = {id(p) for p in group["params"]}
    weights = [p for p in net.parameters() if id(p) not in scalars]
    opt = torch.optim.SGD([{"params": weights}, group], lr=lr, momentum=0.9)
    for step in range(200):
        batch = torch.randint(0, len(x), (128,))
        loss = nn.functional.cross_entropy(net(x[batch]), y[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        logits = net(xt)
    accuracy = float((logits.argmax(1) == yt).float().mean())
    assert torch.isfinite(logits).all()
    # chance is 10%; 1000 test samples: the sd of an accuracy near 0.1 is 0.0095
    assert accuracy > 0.3, accuracy


@pytest.mark.parametrize("example", [None, torch.randn(2, 5, 8)], ids=["fx", "execution"])
def test_fixup_zeroes_an_attention_branch_at_its_out_proj_only(example):
    """An nn.MultiheadAttention is two layers, in_proj then out_proj: the branch's last layer
    is out_proj (0), in_proj is He times L^(-1/(2m-2)) like other branch layers (zeroing it
    too left it without a gradient for good)."""
    net = nn.Sequential(AttentionBlock(8), AttentionBlock(8), nn.Linear(8, 3))
    plan = wi.init(net, "fixup", seed=0, example_input=example)
    depth = 4
    assert plan.notes["L"] == depth and plan.notes["classifier"] == "2"
    assert plan.notes["branches"][0] == {
        "layers": ["0.attn", "0.attn.out_proj"], "m": 2, "scale": depth**-0.5
    }  # fmt: skip
    he = wi.plan(net, "he")["0.attn.in_proj_weight"].args["scale"]
    assert plan["0.attn.in_proj_weight"].args["scale"] == pytest.approx(he / depth)
    assert plan["0.attn.in_proj_bias"].init == "zeros"
    assert plan["0.attn.out_proj.weight"].init == plan["0.attn.out_proj.bias"].init == "zeros"
    attn = net[0].attn
    assert attn.in_proj_weight.detach().abs().min() > 0 and not attn.out_proj.weight.any()
    x = torch.randn(2, 5, 8)
    with torch.no_grad():  # every branch starts at 0: the blocks pass x through
        assert torch.equal(net[:2](x), x)


def test_fixup_declared_branch_counts_nested_layers_once():
    """A declared branch holding an attention: its out_proj is a layer of its own, in execution
    order right after the attention, and is not drawn again as part of the attention."""

    class Attn(nn.Module):
        def __init__(self, d: int, proj: bool):
            super().__init__()
            self.mha = nn.MultiheadAttention(d, 2, batch_first=True)
            self.proj = nn.Linear(d, d) if proj else nn.Identity()

        def forward(self, x):
            return self.proj(self.mha(x, x, x, need_weights=False)[0])

    class Block(nn.Module):
        def __init__(self, d: int, proj: bool):
            super().__init__()
            self.attn = Attn(d, proj)

        def forward(self, x):
            return x + self.attn(x)

    net = nn.Sequential(Block(8, proj=False), Block(8, proj=False), nn.Linear(8, 2))
    plan = wi.init(net, "fixup", seed=0, branches=["*.attn"])
    assert plan.notes["branches"][0]["layers"] == ["0.attn.mha", "0.attn.mha.out_proj"]
    assert plan["0.attn.mha.out_proj.weight"].init == "zeros"
    assert plan["0.attn.mha.in_proj_weight"].init == "variance_scaling"
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        assert torch.equal(net[0](x), x)
    net = nn.Sequential(Block(8, proj=True), Block(8, proj=True), nn.Linear(8, 2))
    plan = wi.plan(net, "fixup", branches=["*.attn"])
    assert plan.notes["branches"][0]["layers"] == [
        "0.attn.mha",
        "0.attn.mha.out_proj",
        "0.attn.proj",
    ]
    assert plan["0.attn.proj.weight"].init == "zeros"
    assert plan["0.attn.mha.out_proj.weight"].init == "variance_scaling"


def test_fixup_nested_branches_keep_every_last_layer_zero():
    """A branch inside a branch: the inner branch's last layer stays 0 though it is an inner
    layer of the outer branch; a layer in both takes its innermost branch's factor."""
    net = nn.Sequential(Nested(8), Nested(8), nn.Linear(8, 2))
    plan = wi.init(net, "fixup", seed=0)
    depth = 4  # two inner, two outer branches
    assert [b["m"] for b in plan.notes["branches"]] == [2, 4, 2, 4]
    for k in (0, 1):
        assert plan[f"{k}.inner.f.2.weight"].init == plan[f"{k}.post.weight"].init == "zeros"
        assert plan[f"{k}.inner.f.2.bias"].init == "zeros"
        he = wi.plan(net, "he")
        inner, outer = f"{k}.inner.f.0.weight", f"{k}.pre.weight"
        assert plan[inner].args["scale"] == pytest.approx(he[inner].args["scale"] / depth)
        assert plan[outer].args["scale"] == pytest.approx(
            he[outer].args["scale"] * depth ** (-1 / 3)
        )
    h = torch.randn(4, 8)
    with torch.no_grad():
        assert torch.equal(net[0].inner(h), h)  # the inner block starts as the identity
    group = add_fixup_scalars(net)
    scales = [m for m in net.modules() if isinstance(m, FixupScale)]
    assert len(scales) == 4  # one per branch, the inner ones too
    assert all(isinstance(net[k].inner.f[2].after[0], FixupScale) for k in (0, 1))
    # 4 layers per outer branch (2 of them the inner's): 2 biases each, 1 scale per branch,
    # 1 bias before the classifier
    assert len(group["params"]) == 2 * (4 * 2 + 2) + 1


# --- Fixup: the scalars ---------------------------------------------------------------------------


def test_fixup_scalars_are_registered_known_and_placed_as_in_the_paper():
    net = mlp(2, ms=[2, 3])
    group = add_fixup_scalars(net, lr=0.2)
    assert group["lr"] == pytest.approx(0.02)
    names = {id(p): n for n, p in net.named_parameters()}
    added = [names[id(p)] for p in group["params"]]
    # block 1: bias, [fc], bias (before the ReLU), bias, [fc], scale, bias; head: bias, [fc]
    assert added[:7] == [
        "1.f.0.before.value", "1.f.0.after.0.value", "1.f.2.before.value",
        "1.f.2.after.0.value", "1.f.2.after.1.value",
        "2.f.0.before.value", "2.f.0.after.0.value",
    ]  # fmt: skip
    assert added[-1] == "3.before.value" and len(added) == 5 + 7 + 1
    assert all(n in net.state_dict() for n in added)
    kinds = [type(net.get_submodule(n.rsplit(".", 1)[0])) for n in added]
    assert kinds.count(FixupScale) == 2 and kinds.count(FixupBias) == 11
    for scheme in ("he", "torch", "glorot", "lecun", "fixup", "zero", "orthogonal"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "unknown module" warning
            plan = wi.plan(net, scheme)
        for n in added:
            want = "ones" if n in ("1.f.2.after.0.value", "2.f.4.after.0.value") else "zeros"
            assert plan[n].init == want, (scheme, n)
            assert plan[n].role in ("fixup_bias", "fixup_scale")
    x = torch.randn(32, 8)
    for scheme, given in (("auto", {"example_input": x}), ("lsuv", {"data": x})):
        plan = wi.plan(net, scheme, **given)
        assert plan["1.f.2.after.0.value"].init == "ones" and plan["3.before.value"].init == "zeros"
    # the activation after a wrapped layer is still found through the scalar bias
    assert wi.plan(net, "he")["1.f.0.layer.weight"].args["scale"] == pytest.approx(2.0)


def test_fixup_scalars_errors_leave_the_model_unchanged():
    net = mlp(2)
    add_fixup_scalars(net)
    before = _snapshot(net)
    with pytest.raises(ValueError, match="applied twice"):
        add_fixup_scalars(net)
    assert _unchanged(net, before)
    plain = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    before = _snapshot(plain)
    with pytest.raises(ValueError, match="no residual branches found"):
        add_fixup_scalars(plain)
    with pytest.raises(ValueError, match="`lr`"):
        add_fixup_scalars(plain, lr=-1.0)
    with pytest.raises(ValueError, match="matches no module"):
        add_fixup_scalars(plain, branches=["2", "missing"])
    assert _unchanged(plain, before)


@pytest.mark.parametrize("example", [None, torch.randn(2, 5, 8)], ids=["fx", "execution"])
def test_fixup_scalars_refuse_attention_before_touching_the_model(example):
    """Scalars cannot go around an nn.MultiheadAttention (query, key, value in; a tuple out;
    out_proj used without being called): a clear error first, the model as it was."""
    net = nn.Sequential(AttentionBlock(8), AttentionBlock(8), nn.Linear(8, 3))
    before = _snapshot(net)
    with pytest.raises(ValueError, match=r"'0\.attn' is an nn\.MultiheadAttention.*\"fixup\""):
        add_fixup_scalars(net, example_input=example)
    assert _unchanged(net, before)
    with pytest.raises(ValueError, match=r"'0\.attn' is an nn\.MultiheadAttention"):
        add_fixup_scalars(net, branches=["*.attn"])
    assert _unchanged(net, before)


# --- SkipInit / ReZero ----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["skipinit", "rezero"])
def test_residual_gains_start_every_block_at_the_identity(scheme):
    net = nn.Sequential(*[ConvBlock(4) for _ in range(3)])
    gains = add_residual_gains(net)
    assert len(gains) == 3 and all(isinstance(g, nn.Parameter) for g in gains)
    names = [n for n, _ in net.named_parameters() if n.endswith(".value")]
    assert names == [f"{k}.conv2.after.0.value" for k in range(3)]
    with torch.no_grad():
        for g in gains:
            g.fill_(0.7)
    plan = wi.init(net, scheme, seed=0)
    assert plan.notes["gains"] == names
    assert all(plan[n].init == "zeros" and plan[n].role == "residual_gain" for n in names)
    assert plan["0.conv1.weight"].args["scale"] == pytest.approx(2.0)  # He elsewhere
    x = torch.randn(2, 4, 5, 5).relu()
    with torch.no_grad():
        assert torch.equal(net(x), x)
    # every scheme starts the gains at 0
    assert all(wi.plan(net, s)[names[0]].init == "zeros" for s in ("torch", "glorot", "fixup"))


def test_residual_gain_errors_leave_the_model_unchanged():
    with pytest.raises(ValueError, match="add_residual_gains"):
        wi.plan(mlp(2), "skipinit")

    class FunctionalEnd(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return x + torch.tanh(self.fc(x))

    net = nn.Sequential(MLPBlock(4), FunctionalEnd())
    before = _snapshot(net)
    with pytest.raises(ValueError, match="ends in a function"):
        add_residual_gains(net)
    assert _unchanged(net, before)
    add_residual_gains(net, branches=["0.f", "1"])
    before = _snapshot(net)
    with pytest.raises(ValueError, match="applied twice"):
        add_residual_gains(net, branches=["0.f", "1"])
    assert _unchanged(net, before)


class SharedReLU(nn.Module):
    """x + act(b(act(a(x)))), one nn.ReLU called twice (``shared=False``: one per place)."""

    def __init__(self, w: int, shared: bool):
        super().__init__()
        self.a, self.b = nn.Linear(w, w), nn.Linear(w, w)
        self.act = nn.ReLU()
        self.out = self.act if shared else nn.ReLU()

    def forward(self, x):
        return x + self.out(self.b(self.act(self.a(x))))


class SharedDropout(nn.Module):
    """A stem and two branches that end in the same nn.Dropout (``shared=False``: one each)."""

    def __init__(self, shared: bool, d: int = 8):
        super().__init__()
        self.inp, self.head = nn.Linear(4, d), nn.Linear(d, 2)
        self.f1, self.f2, self.g1, self.g2 = (nn.Linear(d, d) for _ in range(4))
        self.d0 = nn.Dropout(0.0)
        self.d1, self.d2 = (self.d0, self.d0) if shared else (nn.Dropout(0.0), nn.Dropout(0.0))

    def forward(self, x):
        h = self.d0(self.inp(x))
        h = h + self.d1(self.f2(torch.relu(self.f1(h))))
        return self.head(h + self.d2(self.g2(torch.relu(self.g1(h)))))


@pytest.mark.parametrize("example", [None, torch.randn(3, 4)], ids=["fx", "execution"])
def test_residual_gains_refuse_a_module_used_in_several_places(example):
    """A gain after a module called in several places multiplied every use (the output was
    identically 0, or alpha^2 F): a clear error, the model as it was; with a module instance
    per place each branch gets its own gain."""
    stem = nn.Linear(4, 8)
    makers = [
        (lambda shared: nn.Sequential(stem, SharedReLU(8, shared), SharedReLU(8, shared)), "1.act"),
        (SharedDropout, "d0"),
    ]
    x = torch.randn(3, 4)
    for make, name in makers:
        net = make(True)
        before = _snapshot(net)
        with pytest.raises(ValueError, match=rf"'{name}', which the forward.*own module instance"):
            add_residual_gains(net, example_input=example)
        assert _unchanged(net, before)
        net = make(False).eval()
        gains = add_residual_gains(net, example_input=example)
        assert len(gains) == 2 and gains[0] is not gains[1]
        wi.init(net, "rezero", seed=0)
        skip = stem if isinstance(net, nn.Sequential) else nn.Sequential(net.inp, net.head)
        assert torch.equal(net(x), skip(x))  # every block starts as the identity
        net(x).sum().backward()
        assert all(g.grad.abs() > 0 for g in gains)


def test_residual_gains_refuse_an_attention_output():
    net = nn.Sequential(AttentionBlock(8), AttentionBlock(8))
    before = _snapshot(net)
    with pytest.raises(ValueError, match=r"'0\.attn' is an nn\.MultiheadAttention.*branches="):
        add_residual_gains(net, example_input=torch.randn(2, 5, 8))
    assert _unchanged(net, before)


def test_nested_declared_gains_one_per_branch():
    """Declared branches inside declared branches: each gets its own gain (the transformation
    used to crash after the model was rewritten)."""

    class Outer(nn.Module):
        def __init__(self, w: int):
            super().__init__()
            self.f = nn.Sequential(nn.Linear(w, w), nn.ReLU(), MLPBlock(w), nn.Linear(w, w))

        def forward(self, x):
            return x + self.f(x)

    net = nn.Sequential(Outer(8), nn.Linear(8, 2))
    gains = add_residual_gains(net, branches=["0.f", "0.f.2.f"])
    outer, inner = net[0].f, net[0].f.layer[2].f
    assert gains[0] is outer.after[0].value and gains[1] is inner.after[0].value
    assert [n for n, _ in net.named_parameters() if n.endswith(".value")] == [
        "0.f.layer.2.f.after.0.value", "0.f.after.0.value"
    ]  # fmt: skip
    x = torch.randn(5, 8)
    with torch.no_grad():
        gains[0].fill_(1.0)
        gains[1].fill_(0.5)
        f, g = outer.layer, inner.layer
        h = f[1](f[0](x))
        want = x + f[3](h + 0.5 * g[2](g[1](g[0](h))))
        assert torch.allclose(net[0](x), want, atol=1e-6)


# --- ZerO -----------------------------------------------------------------------------------------


def test_zero_scheme_identity_and_hadamard_weights_last_layers_zero():
    net = mlp(3, width=16, n_in=4, n_out=2)
    plan = wi.init(net, "zero", seed=0)
    assert plan["0.weight"].init == "zer0" and plan["1.f.0.weight"].init == "zer0"
    assert all(plan[f"{k}.f.2.weight"].init == "zeros" for k in (1, 2, 3))
    assert all(plan[n].init == "zeros" for n in ("0.bias", "1.f.0.bias", "4.bias"))
    assert torch.equal(net[1].f[0].weight, torch.eye(16))
    # deterministic: another seed gives the same weights
    other = mlp(3, width=16, n_in=4, n_out=2)
    wi.init(other, "zero", seed=1)
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), other.parameters()))
    # the blocks pass the (widened) input through; the head takes its first 2 coordinates
    x = torch.randn(5, 4)
    with torch.no_grad():
        stem = net[0](x)
        assert torch.equal(net[1:4](stem), stem)
        assert torch.allclose(net(x), stem[:, :2])


def test_zero_identity_conv_net_passes_the_input_through():
    net = nn.Sequential(*[nn.Conv2d(6, 6, 3, padding=1) for _ in range(4)])
    wi.init(net, "zero", seed=0)
    x = torch.randn(2, 6, 7, 7)
    with torch.no_grad():
        assert torch.equal(net(x), x)


def _feature_rank(hadamard: bool, steps: int) -> int:
    """The rank of the features of a widening-then-narrowing ReLU net (12 -> 64 -> 64 -> 12)
    after ``steps`` of gradient descent on a random regression."""
    gen = torch.Generator().manual_seed(0)
    net = nn.Sequential(
        nn.Linear(12, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 12)
    )
    wi.init(net, "zero", rules={"*.weight": ("zer0", {"hadamard": hadamard})})
    x, y = torch.randn(256, 12, generator=gen), torch.randn(256, 12, generator=gen)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    for _ in range(steps):
        loss = (net(x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return int(torch.linalg.matrix_rank(net[:4](x)))


def test_zero_partial_identity_keeps_the_rank_hadamard_breaks_it():
    """Zhao et al. 2021: widening with the partial identity leaves 52 units at 0 that no
    gradient reaches (the training degeneracy): the 64 features keep rank <= 12, the input
    dimension. The Hadamard rows, distinct on the first 12 columns for 16 row classes
    (H[i, j] depends on i mod 16 for j < 16), give ReLU features of rank up to 16 at
    init, and training mixes them further."""
    assert _feature_rank(False, 0) == _feature_rank(False, 30) == 12
    assert _feature_rank(True, 0) == 16
    assert _feature_rank(True, 30) > 16


@pytest.mark.parametrize("add", ["add_fixup_scalars", "add_residual_gains"])
def test_scalars_are_made_where_the_module_lives(add):
    """On a meta model the scalars are meta too (a dry run stays a dry run); in float64, float64."""
    from weightinit import recipes

    model, x = zoo.residual_mlp(4, width=8)
    model = model.to("meta")
    getattr(recipes, add)(model, example_input=x.to("meta"))
    assert {p.device.type for p in model.parameters()} == {"meta"}
    model, x = zoo.residual_mlp(4, width=8)
    model = model.double()
    getattr(recipes, add)(model, example_input=x.double())
    assert {p.dtype for p in model.parameters()} == {torch.float64}
