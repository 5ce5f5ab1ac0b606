"""1. Symmetry: a constant initialization is never broken by gradient descent.

With every weight of a layer equal, every hidden unit computes the same function of the input and
receives the same gradient, so the units stay identical through training: the hidden
representation (examples x units) has rank at most 1, and the network is as expressive as one unit
per layer. Zero init is the extreme case (tanh(0) = 0: rank 0, and no gradient reaches the hidden
weights at all). Small random weights break the symmetry from the first step.
"""

from __future__ import annotations

import torch
from torch import nn

import weightinit as wi
from weightinit.reproduce.core import Context, Measure, Outcome, Reproduction
from weightinit.reproduce.data import digits
from weightinit.reproduce.figures import band, figure, save
from weightinit.reproduce.training import fit

__all__ = ["REPRODUCTION", "hidden_rank"]

WIDTH, HIDDEN = 64, 2


def _net() -> nn.Sequential:
    layers: list[nn.Module] = []
    for fan_in in [64] + [WIDTH] * (HIDDEN - 1):
        layers += [nn.Linear(fan_in, WIDTH), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(WIDTH, 10))


def _zero(net: nn.Module, seed: int) -> None:
    for p in net.parameters():
        wi.zeros_(p)


def _constant(net: nn.Module, seed: int) -> None:
    for p in net.parameters():
        wi.constant_(p, 0.05)


def _small_random(net: nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for name, p in net.named_parameters():
        wi.normal_(p, std=0.01, generator=generator) if name.endswith("weight") else wi.zeros_(p)


INITS = {"zero": _zero, "constant 0.05": _constant, "N(0, 0.01²)": _small_random}


@torch.no_grad()
def hidden_rank(net: nn.Sequential, x: torch.Tensor) -> int:
    """The numerical rank of the last hidden layer's output on ``x`` (examples x units):
    singular values above ``max(shape) * eps * sigma_max`` (numpy's default), 0 for all zeros.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
        >>> _constant(net, 0)
        >>> hidden_rank(net, torch.randn(10, 3))
        1
    """
    h = net[:-1](x).double()
    return int(torch.linalg.matrix_rank(h).item())


def _experiment(ctx: Context) -> Outcome:
    task = digits()
    epochs = 10 if ctx.quick else 30
    if ctx.quick:
        task = task.subset(512)
    ctx.steps(len(INITS) * len(ctx.seeds))
    ranks: dict[str, list[list[int]]] = {k: [] for k in INITS}
    losses: dict[str, list[list[float]]] = {k: [] for k in INITS}
    accuracy: dict[str, list[float]] = {k: [] for k in INITS}
    for label, initialize in INITS.items():
        for seed in ctx.seeds:
            torch.manual_seed(seed)
            net = _net()
            initialize(net, seed)
            trace: list[int] = []
            curve = fit(net, task, epochs=epochs, lr=0.1, seed=seed,
                        on_epoch=lambda _, net=net, trace=trace: trace.append(
                            hidden_rank(net, task.x_test)))  # fmt: skip
            ranks[label].append(trace)
            losses[label].append(curve.losses)
            accuracy[label].append(curve.accuracy)
            ctx.advance()
    fig, (left, right) = figure(2)
    for label in INITS:
        band(left, range(epochs + 1), ranks[label], label, marker=".")
        band(right, range(epochs + 1), losses[label], label)
    left.set(xlabel="epoch", ylabel="rank of the hidden representation", yscale="symlog")
    right.set(xlabel="epoch", ylabel="training loss")
    left.legend(fontsize=8)
    path = save(fig, ctx.figure("symmetry"),
                f"Symmetry: {HIDDEN} tanh layers of {WIDTH} units on digits, SGD")  # fmt: skip
    final = {k: [r[-1] for r in v] for k, v in ranks.items()}
    # through training: at every epoch, not only the last
    symmetric = all(max(run) <= 1 for k in ("zero", "constant 0.05") for run in ranks[k])
    broken = all(r > 1 for r in final["N(0, 0.01²)"])
    measures = [
        Measure(f"hidden rank after training, {k}", final[k],
                "≤ 1 (units identical)" if k != "N(0, 0.01²)" else f"> 1 (up to {WIDTH})")
        for k in INITS
    ] + [Measure(f"test accuracy, {k}", accuracy[k], "", ".1%") for k in INITS]  # fmt: skip
    holds = symmetric and broken
    verdict = (
        f"after {epochs} epochs the constant and zero inits still have hidden rank "
        f"{max(final['constant 0.05'])} and {max(final['zero'])}: one distinct unit per layer; "
        f"small random weights reach rank {min(final['N(0, 0.01²)'])}"
    )
    return Outcome(measures, holds, verdict, [path],
                   {"ranks": ranks, "losses": losses, "accuracy": accuracy})  # fmt: skip


REPRODUCTION = Reproduction(
    number=1,
    name="symmetry",
    title="Constant init never breaks symmetry",
    paper="Goodfellow, Bengio & Courville 2016, Deep Learning, §8.4 (symmetry breaking)",
    claim="zero and constant init leave every hidden unit of a layer identical through training "
    "(the hidden representation keeps rank ≤ 1); small random init breaks the symmetry",
    setup="a 2-hidden-layer tanh MLP (64 units) on scikit-learn's digits, SGD (lr 0.1, momentum "
    "0.9), 30 epochs (quick: 10 on 512 examples)",
    experiment=_experiment,
)
