"""Residual networks without normalization: Fixup, SkipInit / ReZero and ZerO.

Schemes: "fixup" (Zhang, Dauphin & Ma 2019), "skipinit" (De & Smith 2020), "rezero"
(Bachlechner et al. 2020) and "zero" (Zhao, Schaefer & Anandkumar 2021). The branches are
found in the traced model (:mod:`weightinit.understanding.branches`) or declared with ``branches=[globs]``.
The parameters Fixup and SkipInit add are added by explicit transformations,
:func:`add_fixup_scalars` and :func:`add_residual_gains`: each layer they touch is wrapped in a
:class:`Scaffold` (its weights move from ``name.weight`` to ``name.layer.weight``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
from torch import nn

from weightinit._checks import is_number
from weightinit.scheme.classic import FOLLOWERS, classic
from weightinit.scheme.protocol import Choice, Param, Scheme, Survey
from weightinit.scheme.registry import get_scheme, register_scheme
from weightinit.understanding.branches import (
    Branch,
    check_branches,
    classifier,
    residual_branches,
    weighted,
)
from weightinit.understanding.graph import Follower, Graph, follower, followers, trace
from weightinit.understanding.knowledge import Roles, unwrap

__all__ = [
    "FixupBias",
    "FixupOptions",
    "FixupScale",
    "ResidualGain",
    "Scaffold",
    "add_fixup_scalars",
    "add_residual_gains",
]


class _Scalar(nn.Module):
    """One learnable scalar applied to the signal; weightinit knows its role and value."""

    keeps_signal = True  # the graph looks through it for the activation after a layer
    # {parameter: (role, initializer)}, read by weightinit.understanding.knowledge
    weightinit_roles: ClassVar[dict[str, tuple[str, str]]] = {}

    def __init__(self) -> None:
        super().__init__()
        start = self.weightinit_roles["value"][1]
        self.value = nn.Parameter(torch.zeros(1) if start == "zeros" else torch.ones(1))


class FixupBias(_Scalar):
    """x + b, b a scalar initialized to 0: Fixup's bias before each layer and activation."""

    weightinit_roles: ClassVar[dict[str, tuple[str, str]]] = {"value": ("fixup_bias", "zeros")}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.value


class FixupScale(_Scalar):
    """s x, s a scalar initialized to 1: Fixup's multiplier at the end of each branch."""

    weightinit_roles: ClassVar[dict[str, tuple[str, str]]] = {"value": ("fixup_scale", "ones")}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.value


class ResidualGain(_Scalar):
    """alpha x, alpha a scalar initialized to 0: SkipInit's / ReZero's gain on a branch."""

    weightinit_roles: ClassVar[dict[str, tuple[str, str]]] = {"value": ("residual_gain", "zeros")}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.value


class Scaffold(nn.Module):
    """A layer with scalars around it: ``after(layer(before(x), ...))``. Has no parameters of
    its own, so traces look through it to the layer."""

    def __init__(self, layer: nn.Module, before: nn.Module | None, after: Sequence[nn.Module]):
        super().__init__()
        self.before = before
        self.layer = layer
        self.after = nn.Sequential(*after)

    def forward(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        if self.before is not None:
            x = self.before(x)
        out = self.layer(x, *args, **kwargs)
        return self.after(out) if len(self.after) else out  # no empty call for traces to see


# --- finding the branches -----------------------------------------------------------------------


def _branches(model: nn.Module, graph: Graph | None, declared, fn: str) -> list[Branch]:
    found = residual_branches(model, graph, declared)
    if not found:
        raise ValueError(
            f"{fn}: no residual branches found in the model ({type(model).__name__}): pass "
            "branches=[...], module-name globs of the residual branches (e.g. ['blocks.*.mlp'])"
        )
    return found


# --- the transformations ----------------------------------------------------------------------


def _scaffold(model: nn.Module, changes: dict[str, tuple], fn: str, instead: str) -> None:
    """Wrap each named module in a Scaffold; validates every name before changing anything
    (``instead``: what to do when a name is, or is inside, an nn.MultiheadAttention)."""
    modules = dict(model.named_modules())
    targets = []
    for name, (before, after) in changes.items():
        if not name:
            raise ValueError(f"{fn}: the model itself is a branch layer; wrap it in a container")
        parts = name.split(".")
        outer = (".".join(parts[:k]) for k in range(len(parts), 0, -1))
        attention = next((o for o in outer if isinstance(modules[o], nn.MultiheadAttention)), None)
        if attention is not None:
            what = "is an" if attention == name else f"is inside {attention!r}, an"
            raise ValueError(
                f"{fn}: {name!r} {what} nn.MultiheadAttention, which takes query, key and "
                "value, returns a tuple and uses its out_proj's weight without calling it: no "
                f"scalar can go around it; {instead}"
            )
        parent_name, _, leaf = name.rpartition(".")
        parent = modules[parent_name]
        if any(isinstance(m, Scaffold) for m in (parent, modules[name])):
            raise ValueError(
                f"{fn}: {name!r} already has scalars around it (applied twice?); the "
                "transformation is applied once per model"
            )
        targets.append((parent, leaf, modules[name], before, after))
    for parent, leaf, module, before, after in targets:
        like = next(
            (t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()), None
        )
        if like is not None:  # the scalars live where the module does (the meta device too)
            for scalar in (before, *after):
                if scalar is not None:
                    scalar.to(device=like.device, dtype=like.dtype)
        setattr(parent, leaf, Scaffold(module, before, after))


def _traced_branches(model, example_input, branches, fn) -> tuple[list[Branch], Graph | None]:
    declared = check_branches(branches)
    try:
        graph = trace(model, example_input)
    except ValueError:
        if declared is None:
            raise
        graph = None  # declared branches in registration order
    return _branches(model, graph, declared, fn), graph


def _stem(graph: Graph | None, found: Sequence[Branch]) -> list[str]:
    """The stem: the weighted layers called before the first branch layer, in no branch,
    whose output goes to an activation (ResNet's conv1, then ReLU). None without a graph."""
    if graph is None:
        return []
    inside = {name for b in found for name in (*b.layers, *b.skip)}
    after = followers(graph)
    stem = []
    for node in graph.nodes:
        if node.kind != "module":
            continue
        if node.name in inside:
            break
        attention = isinstance(node.target, nn.MultiheadAttention)  # no scalar fits after it
        if weighted(node.target) and not attention and after[node.name].activation is not None:
            stem.append(node.name)
    return stem


def _shortcut_inputs(graph: Graph | None, found: Sequence[Branch]) -> dict[str, str]:
    """The projection shortcuts that read what their branch reads, each with the branch's first
    layer (ResNet: conv1(x) and downsample(x)). None without a graph."""
    if graph is None:
        return {}
    calls: dict[str, Any] = {}
    for node in graph.nodes:
        if node.kind == "module":
            calls.setdefault(node.name, node)
    pairs = {}
    for branch in found:
        if not branch.skip:
            continue
        first, shortcut = calls.get(branch.layers[0]), calls.get(branch.skip[0])
        if first is None or shortcut is None or first.inputs != shortcut.inputs:
            continue
        if not isinstance(shortcut.target, nn.MultiheadAttention):
            pairs[branch.skip[0]] = branch.layers[0]
    return pairs


def add_fixup_scalars(
    model: nn.Module,
    *,
    example_input: Any = None,
    branches: Sequence[str] | None = None,
    lr: float | None = None,
) -> dict[str, Any]:
    """Add Fixup's scalars to a residual network; returns them as an optimizer parameter group.

    Fixup (Zhang, Dauphin & Ma 2019, "Fixup Initialization: Residual Learning Without
    Normalization", step 3): a scalar bias (init 0, :class:`FixupBias`) before each weighted
    layer of every residual branch and before each activation inside it (after every layer but
    the last), one scalar multiplier per branch (init 1, :class:`FixupScale`) after its last
    layer, followed by a scalar bias, and a scalar bias before the classifier (the last
    weighted layer after the last residual add, when there is one). As the official code
    (github.com/hongyi-zhang/Fixup: ``relu(conv1(x) + bias1)``), a scalar bias also goes after
    each stem layer (a weighted layer called before the first branch, in none, whose output
    goes to an activation: ResNet's conv1), before its activation; this needs a traced graph
    (none with ``branches=`` on a model that does not trace). A torchvision-style ResNet-18
    gets the official code's 42 scalars: 1 after the stem, 5 per BasicBlock (4 biases, 1
    scale), 1 before the classifier; a ResNet-50 114 (7 per Bottleneck). A projection
    shortcut that reads what its branch reads gets the branch's first bias before it, the same
    module (the official ``downsample(x + bias1a)``). Each touched layer is
    wrapped in a :class:`Scaffold`: ``blocks.0.fc1.weight`` becomes
    ``blocks.0.fc1.layer.weight``. An nn.MultiheadAttention in a branch is an error (no scalar
    fits around it). Every scheme initializes the scalars to their Fixup values; initialize the
    weights with ``weightinit.init(model, "fixup")`` afterwards. The paper trains the scalars
    with a 10x smaller learning rate: with ``lr=``, the group carries ``"lr": 0.1 * lr``.

    Branches are found by tracing (``example_input`` for models fx cannot trace) or declared
    with ``branches=`` (module-name globs). Everything is validated before the model changes;
    applying it twice is an error (ValueError), and the model is left as it was.

    Example:
        >>> import torch, weightinit
        >>> from torch import nn
        >>> from weightinit.recipes import add_fixup_scalars
        >>> class Block(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.fc1, self.fc2 = nn.Linear(8, 8), nn.Linear(8, 8)
        ...     def forward(self, x):
        ...         return torch.relu(x + self.fc2(torch.relu(self.fc1(x))))
        >>> net = nn.Sequential(Block(), Block(), nn.Linear(8, 3))
        >>> group = add_fixup_scalars(net, lr=0.1)
        >>> len(group["params"]), round(group["lr"], 4)  # 4 biases + 1 scale per block, 1 bias on the head
        (11, 0.01)
        >>> opt = torch.optim.SGD([{"params": [p for n, p in net.named_parameters()
        ...     if not n.endswith(".value")]}, group], lr=0.1)
        >>> weightinit.init(net, "fixup", seed=0)["0.fc2.layer.weight"].init
        'zeros'
    """
    fn = "add_fixup_scalars"
    if lr is not None and (not is_number(lr) or lr <= 0):
        raise ValueError(f"{fn}: `lr` must be a positive number (the weights' rate), got {lr!r}")
    model = unwrap(model)
    found, graph = _traced_branches(model, example_input, branches, fn)
    lasts = {branch.layers[-1] for branch in found}  # also when inside an outer branch
    changes: dict[str, tuple] = {name: (None, [FixupBias()]) for name in _stem(graph, found)}
    for branch in found:
        for name in branch.layers:
            if name not in changes:
                after = [FixupScale(), FixupBias()] if name in lasts else [FixupBias()]
                changes[name] = (FixupBias(), after)
    head = classifier(graph, found)
    if head is not None:
        changes[head] = (FixupBias(), [])
    for shortcut, first in _shortcut_inputs(graph, found).items():
        if shortcut not in changes:  # the official downsample(x + bias1a): the same bias
            changes[shortcut] = (changes[first][0], [])
    instead = 'initialize it with the "fixup" scheme alone (it zeroes out_proj)'
    _scaffold(model, changes, fn, instead)
    scalars = [m for before, after in changes.values() for m in (before, *after) if m is not None]
    params = list({id(p): p for m in scalars for p in m.parameters()}.values())
    return {"params": params, **({"lr": 0.1 * lr} if lr is not None else {})}


def add_residual_gains(
    model: nn.Module, *, example_input: Any = None, branches: Sequence[str] | None = None
) -> list[nn.Parameter]:
    """Multiply every residual branch's output by a scalar gain initialized to 0.

    x + alpha F(x), alpha = 0 at init: SkipInit (De & Smith 2020, "Batch Normalization Biases
    Residual Blocks Towards the Identity Function in Deep Networks") and ReZero (Bachlechner
    et al. 2020, "ReZero is All You Need: Fast Convergence at Large Depth"). The gain
    (:class:`ResidualGain`) goes after the module whose output enters the residual add (or
    after each declared ``branches=`` module, whose output must be the branch's); a module the
    forward pass calls in several places, or an nn.MultiheadAttention, is an error. Returns the
    gains; every scheme initializes them to 0 ("skipinit" / "rezero": He elsewhere). The model
    is validated first and left as it was on errors; applying it twice is an error.

    Example:
        >>> import torch, weightinit
        >>> from torch import nn
        >>> from weightinit.recipes import add_residual_gains
        >>> class Block(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.f = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
        ...     def forward(self, x):
        ...         return x + self.f(x)
        >>> net = nn.Sequential(Block(), Block())
        >>> len(add_residual_gains(net, branches=["*.f"]))
        2
        >>> _ = weightinit.init(net, "rezero", seed=0)
        >>> x = torch.randn(4, 8)
        >>> torch.equal(net(x), x)
        True
    """
    fn = "add_residual_gains"
    model = unwrap(model)
    found, graph = _traced_branches(model, example_input, branches, fn)
    calls = Counter(n.name for n in graph.nodes if n.kind == "module") if graph else Counter()
    changes: dict[str, tuple] = {}
    for branch in found:
        if branch.output is None:
            raise ValueError(
                f"{fn}: the branch {list(branch.layers)} ends in a function, not a module, so "
                "there is no module to put the gain after; declare branches=[...] (module-name "
                "globs of modules whose output is the branch's)"
            )
        if calls[branch.output] > 1 or branch.output in changes:
            raise ValueError(
                f"{fn}: the branch {list(branch.layers)} ends in module {branch.output!r}, "
                "which the forward pass also uses elsewhere (one module instance, e.g. an "
                "nn.ReLU or nn.Dropout, called in several places): a gain after it would "
                "multiply every use; give each place its own module instance, or declare "
                "branches=[...] (module-name globs of modules whose output is used once, by "
                "the branch's add)"
            )
        changes[branch.output] = (None, [ResidualGain()])
    instead = "declare branches=[...] naming a module around it whose output is a tensor"
    _scaffold(model, changes, fn, instead)
    return [after[0].value for _, after in changes.values()]


# --- the schemes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BranchOptions:
    """branches: module-name globs of the residual branches, when tracing does not find them
    (or to override what it finds); each matching module is one branch."""

    branches: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "branches", check_branches(self.branches))


#: the fan He uses under each of Fixup's modes (FixupOptions.mode)
FIXUP_FANS = {"official": "fan_out", "paper": "fan_in"}


@dataclass(frozen=True)
class FixupOptions(BranchOptions):
    """The options of the "fixup" scheme: ``branches`` (as for "zero") and ``mode``, the
    fan of every He-drawn weight (branch layers, projection shortcuts, the stem):

    - "official" (default): fan_out, as the official code (github.com/hongyi-zhang/Fixup,
      ``fixup_resnet_imagenet.py``) draws its branch convs and shortcut convs:
      std = sqrt(2 / (out_channels k^2)) L^(-1/(2m-2));
    - "paper": fan_in, the paper's "He" read as He et al.'s forward rule:
      std = sqrt(2 / (in_channels k^2)) L^(-1/(2m-2)).

    They differ by sqrt(fan_in / fan_out) in std: 2x on a ResNet Bottleneck's conv1 (1x1,
    4 planes in, planes out), 1x on square layers. Under "fixup" this option replaces the
    shared fan option ``mode`` ("fan_in"/"fan_out") of the classic schemes.

    Example:
        >>> FixupOptions().mode, FixupOptions(mode="paper").mode
        ('official', 'paper')
    """

    mode: str = "official"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode not in FIXUP_FANS:
            hint = ""
            if self.mode in FIXUP_FANS.values():
                same = next(k for k, v in FIXUP_FANS.items() if v == self.mode)
                hint = f' (under "fixup" `mode` names the reference: {self.mode} is {same!r})'
            raise ValueError(
                "option `mode` must be 'official' (He with fan_out, as the official code) or "
                f"'paper' (He with fan_in), got {self.mode!r}{hint}"
            )


_he = get_scheme("he").choose


def _layer_params(s: Survey, layers: Sequence[str]) -> dict[str, list[Param]]:
    """The weights and biases to choose for, by layer: each parameter belongs to the longest
    of ``layers`` that holds it (an attention's out_proj is a layer apart from the attention)."""
    names = set(layers)
    held: dict[str, list[Param]] = {}
    for p in s.params:
        if p.info.role in (Roles.WEIGHT, Roles.BIAS):
            parts = p.name.split(".")
            prefixes = (".".join(parts[:k]) for k in range(len(parts) - 1, 0, -1))
            layer = next((prefix for prefix in prefixes if prefix in names), None)
            if layer is not None:
                held.setdefault(layer, []).append(p)
    return held


def _scaled(args: dict, by: float) -> dict:
    """Variance-scaling arguments with the variance times ``by``: ``scale``, or each of the
    ``scales`` of a packed tensor (a mixture of experts' gate and up halves)."""
    if "scales" in args:
        return dict(args, scales=[scale * by for scale in args["scales"]])
    return dict(args, scale=args["scale"] * by)


def _zeroed(params: list[Param], why: str) -> dict[str, Choice]:
    return {p.name: Choice("zeros", {}, why) for p in params}


def _shortcuts(s: Survey, found: Sequence[Branch]) -> dict[str, Follower]:
    """What follows each projection shortcut once its branch is 0: the activation after the
    residual add (ResNet: relu(branch + shortcut) = relu(shortcut) at init). The last weighted
    layer of a skip side whose walk ended at its add, by layer name."""
    if s.graph is None:
        return {}
    own = {p.module: p.follower for p in s.params if p.info.role == Roles.WEIGHT}
    after: dict[str, Follower] = {}
    for branch in found:
        if not branch.skip or branch.add is None:
            continue
        layer, add = branch.skip[-1], s.graph.nodes[branch.add]
        walk = own.get(layer)
        if walk is None or walk.activation is not None or walk.stop != add.name:
            continue
        beyond = follower(s.graph, branch.add)
        if beyond.activation is not None:
            after[layer] = Follower(beyond.activation, (*walk.via, walk.stop, *beyond.via))
    return after


def _fixup(s: Survey) -> dict[str, Choice]:
    found = _branches(s.model, s.graph, s.extra.branches, "fixup")
    depth = len(found)
    head = classifier(s.graph, found)
    held = _layer_params(s, [name for b in found for name in b.layers] + ([head] if head else []))
    fan = FIXUP_FANS[s.extra.mode]
    options = replace(s.options, mode=fan)
    shortcuts = _shortcuts(s, found)

    def he(p: Param) -> Choice:
        after = shortcuts.get(p.module)
        if after is None or p.info.role != Roles.WEIGHT:
            return _he(p, options)
        chosen = _he(p._replace(follower=after), options)
        why = "; Fixup: projection shortcut, its branch starts at 0"
        return chosen._replace(reason=chosen.reason + why)

    choices: dict[str, Choice] = {}
    listed = []
    for branch in found:
        m = len(branch.layers)
        factor = depth ** (-1 / (2 * m - 2)) if m > 1 else 1.0
        listed.append({"layers": list(branch.layers), "m": m, "scale": factor})
    # nested branches: a layer takes the factor of its innermost (shortest) branch, and the
    # last layer of every branch is 0, also where it lies inside an outer branch
    for branch, b in sorted(zip(found, listed), key=lambda pair: -pair[1]["m"]):
        m, factor = b["m"], b["scale"]
        for name in branch.layers[:-1]:
            for p in held.get(name, []):
                if p.info.role == Roles.BIAS:
                    choices[p.name] = Choice("zeros", {}, "Fixup: bias 0")
                    continue
                chosen = he(p)
                args = _scaled(chosen.args, factor**2)
                why = f"Fixup: std x L^(-1/(2m-2)) = {factor:.4g} (L={depth}, m={m})"
                choices[p.name] = Choice(chosen.init, args, f"{chosen.reason}; {why}")
    for k, branch in enumerate(found):
        last = held.get(branch.layers[-1], [])
        choices.update(_zeroed(last, f"Fixup: last layer of branch {k} is 0"))
    if head is not None:
        choices.update(_zeroed(held.get(head, []), "Fixup: the classifier is 0"))
    for p in s.params:  # everything else: He with the mode's fan
        if p.name not in choices:
            choices[p.name] = he(p)
    s.notes.update(L=depth, classifier=head, branches=listed, fan=fan)
    if shortcuts:
        s.notes["shortcuts"] = {name: f.describe() for name, f in shortcuts.items()}
    if any(b["m"] == 1 for b in listed):
        s.notes["m=1"] = "a one-layer branch's only layer is 0: nothing left to scale"
    return choices


def _gains(s: Survey, scheme: str, paper: str) -> dict[str, Choice]:
    gains = [p for p in s.params if p.info.role == "residual_gain"]
    if not gains:
        raise ValueError(
            f"{scheme}: the model has no residual gains: add them first with "
            "weightinit.recipes.add_residual_gains(model)"
        )
    s.notes["gains"] = [p.name for p in gains]
    return {p.name: Choice("zeros", {}, f"{paper}: residual gain alpha = 0") for p in gains}


def _zero(s: Survey) -> dict[str, Choice]:
    found = residual_branches(s.model, s.graph, s.extra.branches)
    held = _layer_params(s, [b.layers[-1] for b in found])
    choices: dict[str, Choice] = {}
    for k, branch in enumerate(found):
        last = held.get(branch.layers[-1], [])
        choices.update(_zeroed(last, f"ZerO: last layer of residual branch {k} is 0"))
    s.notes["branches"] = [list(b.layers) for b in found]
    return choices


def _zer0_weight(p: Param, o, g2: float, why: str) -> Choice:
    return Choice("zer0", {}, "ZerO: identity / partial identity / Hadamard (Zhao et al. 2021)")


register_scheme(
    Scheme(
        "fixup",
        "Fixup (Zhang et al. 2019): last layer of each residual branch and the classifier 0, "
        "He elsewhere (fan_out as the official code; mode='paper': fan_in), branch layers "
        "scaled by L^(-1/(2m-2))",
        _he,
        needs=FOLLOWERS,
        survey=_fixup,
        extra=FixupOptions,
        prepare=add_fixup_scalars,
    )
)
for _name, _paper, _what in [
    ("skipinit", "SkipInit (De & Smith 2020)", "x + alpha F(x), normalization removed"),
    ("rezero", "ReZero (Bachlechner et al. 2020)", "x + alpha F(x), typically Transformers"),
]:
    register_scheme(
        Scheme(
            _name,
            f"{_paper}: {_what}; residual gains alpha = 0 (add_residual_gains), He elsewhere",
            _he,
            needs=FOLLOWERS,
            survey=lambda s, name=_name, paper=_paper: _gains(s, name, paper),
            prepare=add_residual_gains,
        )
    )
register_scheme(
    Scheme(
        "zero",
        "ZerO (Zhao et al. 2021): identity / Hadamard weights, last layer of each residual "
        "branch 0, biases 0; deterministic",
        classic(_zer0_weight),
        needs=FOLLOWERS,
        survey=_zero,
        extra=BranchOptions,
    )
)
