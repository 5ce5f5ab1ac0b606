"""14. Normalization vs careful initialization of deep MLPs without it.

BatchNorm (Ioffe & Szegedy 2015) replaces a unit's pre-activation ``z_i`` by
``(z_i - mean_B z) / std_B z`` over the examples of the batch B (during training), LayerNorm (Ba
et al. 2016) by ``(z_i - mean_j z_j) / std_j z_j`` over the units of one example: both keep the
signal at scale at every depth whatever the weights. A careful init does it once, at the start:
"auto" sets each layer's scale from the activation's moments, LSUV rescales each layer to unit
output variance on a batch, Fixup (Zhang et al. 2019) zeroes the last layer of every residual
branch so a residual net starts as a shallow one. The claim: without normalization, such an init
reaches comparable accuracy, costs less per step, and the output for one example does not
depend on the other examples of its batch (BatchNorm's does, in training mode, and degrades with
tiny batches).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import weightinit as wi
from weightinit.recipes import add_fixup_scalars
from weightinit.reproduce.core import Context, Measure, Outcome, Reproduction, spread
from weightinit.reproduce.data import Task, mnist1d
from weightinit.reproduce.figures import figure, save
from weightinit.reproduce.training import evaluate, fit
from weightinit.zoo import residual_mlp

__all__ = ["REPRODUCTION", "batch_coupling", "plain_mlp", "train_mode_accuracy"]

WIDTH, LRS, VALIDATION, BATCHES = 64, (0.003, 0.01, 0.03), 500, (2, 8, 32, 128)


def plain_mlp(depth: int, norm: str | None = None, *, in_features: int = 40) -> nn.Sequential:
    """``depth`` Linear layers of width ``WIDTH`` (the last to 10 classes), a ReLU after each
    hidden one, preceded by ``nn.BatchNorm1d`` (``norm="batch"``), ``nn.LayerNorm``
    (``"layer"``) or nothing (``None``).

    Example:
        >>> net = plain_mlp(3, "batch", in_features=5)
        >>> [type(m).__name__ for m in net][:3], net(torch.randn(4, 5)).shape
        (['Linear', 'BatchNorm1d', 'ReLU'], torch.Size([4, 10]))
    """
    norms: dict[str | None, Callable[[], nn.Module] | None] = {
        None: None, "batch": lambda: nn.BatchNorm1d(WIDTH), "layer": lambda: nn.LayerNorm(WIDTH)
    }  # fmt: skip
    layers: list[nn.Module] = []
    for k in range(depth - 1):
        layers.append(nn.Linear(in_features if k == 0 else WIDTH, WIDTH))
        layers += [norms[norm]()] if norms[norm] else []
        layers.append(nn.ReLU())
    return nn.Sequential(*layers, nn.Linear(WIDTH if depth > 1 else in_features, 10))


def _build(method: str, depth: int, x: torch.Tensor, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    if method == "Fixup (residual)":  # (depth - 2) / 2 blocks: depth Linear layers in all
        net = residual_mlp((depth - 2) // 2, width=WIDTH, in_features=x.shape[1])[0]
        add_fixup_scalars(net, example_input=x)
        wi.init(net, "fixup", example_input=x, seed=seed)
        return net
    norm = {"BatchNorm": "batch", "LayerNorm": "layer"}.get(method)
    net = plain_mlp(depth, norm, in_features=x.shape[1])
    if method == "auto":
        wi.init(net, "auto", example_input=x, seed=seed)
    elif method == "lsuv":
        wi.init(net, "lsuv", data=x, seed=seed)
    return net  # BatchNorm and LayerNorm nets keep torch's default init


METHODS = ("BatchNorm", "LayerNorm", "auto", "lsuv", "Fixup (residual)")
NORMALIZED = ("BatchNorm", "LayerNorm")


@torch.no_grad()
def batch_coupling(net: nn.Module, x: torch.Tensor, others: torch.Tensor) -> float:
    """How much ``net``'s output for ``x[0]`` moves (max abs) in training mode when the rest of
    its batch ``x[1:]`` is replaced by ``others`` (same shape): 0 when examples are independent.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
        >>> x, others = torch.randn(8, 3), torch.randn(7, 3)
        >>> batch_coupling(net, x, others) > 0, batch_coupling(net[:1], x, others)
        (True, 0.0)
    """
    was_training = net.training
    net.train()
    try:
        swapped = torch.cat([x[:1], others])
        return (net(x)[0] - net(swapped)[0]).abs().max().item()
    finally:
        net.train(was_training)


@torch.no_grad()
def train_mode_accuracy(net: nn.Module, task: Task, batch: int) -> float:
    """Test accuracy with the net in training mode, the test set split into batches of
    ``batch`` (BatchNorm normalizes with each batch's statistics); ``net`` is left unchanged.

    Example:
        >>> x, y = torch.randn(16, 3), torch.randint(0, 10, (16,))
        >>> net = nn.Sequential(nn.Linear(3, 10), nn.BatchNorm1d(10))
        >>> 0 <= train_mode_accuracy(net, Task("t", x, y, x, y, 10), 8) <= 1
        True
    """
    net = copy.deepcopy(net).train()  # BatchNorm's running statistics stay as they were
    outputs = torch.cat([net(x) for x in task.x_test.split(batch)])
    return (outputs.argmax(1) == task.y_test).float().mean().item()


def _seconds_per_step(depth: int, x: torch.Tensor, y: torch.Tensor, rounds: int) -> dict:
    """Seconds of one SGD step (forward, backward, update) per method: the fastest of
    ``rounds``, the methods' steps interleaved round by round (on a shared machine the minimum
    is the cost of the step itself, the rest is other processes' load)."""
    nets = {m: _build(m, depth, x, 0) for m in METHODS}
    opts = {m: torch.optim.SGD(n.parameters(), lr=1e-3, momentum=0.9) for m, n in nets.items()}
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    for _ in range(rounds):
        for m, net in nets.items():
            start = time.perf_counter()
            loss = F.cross_entropy(net(x), y)
            opts[m].zero_grad(set_to_none=True)
            loss.backward()
            opts[m].step()
            times[m].append(time.perf_counter() - start)
    return {m: min(t) for m, t in times.items()}


def _train(method: str, depth: int, task: Task, lr: float, epochs: int, seed: int) -> tuple:
    net = _build(method, depth, task.x[:256], seed)
    return net, fit(net, task, epochs=epochs, lr=lr, seed=seed).accuracy


def _experiment(ctx: Context) -> Outcome:
    full = mnist1d()
    if ctx.quick:
        full = full.subset(2000 + VALIDATION)
    tune, test = full.holdout(VALIDATION)  # the lr is chosen on validation, never on the test set
    depths, epochs, rounds = ((30,), 6, 20) if ctx.quick else ((30, 100), 10, 40)
    ctx.steps(len(depths) * (len(METHODS) * (len(LRS) + len(ctx.seeds) - 1) + 1))
    acc: dict[int, dict[str, list[float]]] = {d: {} for d in depths}
    chosen: dict[int, dict[str, float]] = {d: {} for d in depths}
    step: dict[int, dict[str, float]] = {}
    by_batch: dict[str, list[list[float]]] = {m: [] for m in METHODS}
    coupling: dict[str, list[float]] = {m: [] for m in METHODS}
    probe, others = full.x_test[:128], full.x_test[128:255]
    for depth in depths:
        step[depth] = _seconds_per_step(depth, tune.x[:128], tune.y[:128], rounds)
        ctx.advance()
        for method in METHODS:
            first = {lr: _train(method, depth, tune, lr, epochs, ctx.seeds[0]) for lr in LRS}
            lr = max(LRS, key=lambda r: first[r][1])  # by seed 0's validation accuracy
            nets = [first[lr][0]] + [_train(method, depth, tune, lr, epochs, seed)[0]
                                     for seed in ctx.seeds[1:]]  # fmt: skip
            ctx.advance(len(LRS) + len(ctx.seeds) - 1)
            chosen[depth][method] = lr
            acc[depth][method] = [evaluate(net, test)[1] for net in nets]
            if depth == depths[0]:
                by_batch[method] = [[train_mode_accuracy(net, test, b) for b in BATCHES]
                                    for net in nets]  # fmt: skip
                coupling[method] = [batch_coupling(net, probe, others) for net in nets]
    mean = {d: {m: spread(acc[d][m])[0] for m in METHODS} for d in depths}
    gaps = {d: max(mean[d]["auto"], mean[d]["lsuv"]) - max(mean[d][m] for m in NORMALIZED)
            for d in depths}  # fmt: skip
    trains = all(max(mean[d]["auto"], mean[d]["lsuv"]) > 0.2 for d in depths)  # 2x chance
    comparable = trains and all(g >= -0.02 for g in gaps.values())
    cheaper = all(max(s["auto"], s["lsuv"]) < min(s[m] for m in NORMALIZED) for s in step.values())
    independent = all(c == 0 for m in METHODS if m != "BatchNorm" for c in coupling[m]) and all(
        c > 0 for c in coupling["BatchNorm"]
    )
    path = _figure(ctx, depths, acc, step, by_batch)
    measures = [Measure(f"test accuracy, depth {d}, {m} (lr {chosen[d][m]})", acc[d][m],
                        "comparable" if m in ("auto", "lsuv") else "", ".1%")
                for d in depths for m in METHODS]  # fmt: skip
    measures += [Measure(f"ms per SGD step, depth {d}, {m}", [1e3 * step[d][m]],
                         "more (normalization adds work)" if m in NORMALIZED else "less", ".3g")
                 for d in depths for m in METHODS]  # fmt: skip
    measures += [Measure(f"test accuracy in train mode, batch 2, {m}", [r[0] for r in by_batch[m]],
                         "degrades" if m == "BatchNorm" else "unchanged", ".1%")
                 for m in METHODS]  # fmt: skip
    measures += [Measure(f"batch coupling |Δ output of example 0|, {m}", coupling[m],
                         "> 0" if m == "BatchNorm" else "exactly 0", ".3g")
                 for m in METHODS]  # fmt: skip
    deep = depths[-1]
    verdict = (
        "Best unnormalized plain net (auto/LSUV) minus best normalized one: "
        + ", ".join(f"{gaps[d]:+.1%} at depth {d}" for d in depths)
        + f"; a step costs {1e3 * step[deep]['auto']:.1f} ms (auto) vs "
        f"{1e3 * step[deep]['BatchNorm']:.1f} (BN), {1e3 * step[deep]['LayerNorm']:.1f} (LN) at "
        f"depth {deep}; BN's output for one example moves by "
        f"{spread(coupling['BatchNorm'])[0]:.2g} with its batch (0 for the others), and in train "
        f"mode with batches of 2 its accuracy is {spread([r[0] for r in by_batch['BatchNorm']])[0]:.1%}."
    )
    data = {"accuracy": acc, "chosen_lr": chosen, "seconds_per_step": step, "batches": BATCHES,
            "train_mode_accuracy": by_batch, "coupling": coupling,
            "trains": trains, "comparable": comparable, "cheaper": cheaper, "independent": independent}  # fmt: skip
    return Outcome(measures, comparable and cheaper and independent, verdict, [path], data)


def _figure(ctx, depths, acc, step, by_batch):
    fig, (left, middle, right) = figure(3)
    for m in METHODS:
        stats = [spread(acc[d][m]) for d in depths]
        left.errorbar(depths, [s[0] for s in stats], [s[1] for s in stats], marker="o",
                      capsize=3, label=m)  # fmt: skip
        runs = torch.tensor(by_batch[m])
        right.errorbar(BATCHES, runs.mean(0), runs.std(0) if len(runs) > 1 else None,
                       marker="o", capsize=3, label=m)  # fmt: skip
    left.set(xlabel="depth (Linear layers)", ylabel="test accuracy", xticks=list(depths))
    x = torch.arange(len(METHODS), dtype=torch.float64)
    for k, d in enumerate(depths):
        middle.bar(
            x + 0.8 * k / len(depths) - 0.4 + 0.4 / len(depths),
            [1e3 * step[d][m] for m in METHODS],
            0.8 / len(depths),
            label=f"depth {d}",
        )
    middle.set_xticks(x, METHODS, rotation=25, ha="right", fontsize=8)
    middle.set(ylabel="ms per SGD step (batch 128, fastest)")
    right.set(
        xlabel=f"test batch size, train mode (depth {depths[0]})",
        xscale="log",
        ylabel="test accuracy",
        xticks=list(BATCHES),
        xticklabels=list(map(str, BATCHES)),
    )
    for ax in (left, right):
        ax.axhline(0.1, color="grey", lw=0.8, ls="--", label="chance")
    for ax in (left, middle, right):
        ax.legend(fontsize=7)
    title = f"ReLU MLPs (width {WIDTH}) on MNIST-1D: normalization vs careful init"
    return save(fig, ctx.figure("normalization"), title)


REPRODUCTION = Reproduction(
    number=14,
    name="normalization",
    title="Normalization vs careful init without it",
    paper="Ioffe & Szegedy 2015 (BatchNorm); Ba et al. 2016 (LayerNorm); Zhang et al. 2019 "
    "(Fixup); De & Smith 2020",
    claim="without normalization, a careful init (auto, LSUV) reaches accuracy comparable to "
    "BatchNorm/LayerNorm at depth 30 and 100, is cheaper per step, and has no batch dependence",
    setup=f"plain ReLU MLPs (width {WIDTH}) of 30 and 100 Linear layers on MNIST-1D (3500 "
    "train, 500 validation for the lr, 1000 test): BN and LN with torch's init, no "
    "normalization with auto and LSUV, and a residual MLP with Fixup (as many Linear layers); "
    f"SGD (momentum 0.9, batch 128), 10 epochs, lr from {{{', '.join(map(str, LRS))}}} by seed "
    "0's validation accuracy; comparable = within 2 points and above 20% (2x chance); "
    "(quick: depth 30, 2000 train, 6 epochs)",
    experiment=_experiment,
)
