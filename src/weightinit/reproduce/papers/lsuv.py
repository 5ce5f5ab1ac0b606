"""5. LSUV on deep thin nets (Mishkin & Matas 2016, "All you need is a good init", Table 2-3).

LSUV pre-initializes every weight orthonormal, then, layer by layer on a batch of data, rescales
W <- W / std(y) until the layer's output y has unit std (|std(y) - 1| <= tol). The variance is
thus preserved by measurement, not by a formula for the activation's gain (1 for linear,
sqrt(2) for ReLU, 5/3 for tanh, none exact for others), so the same rule works for every
activation. The paper's claim: on thin deep nets (FitNets) LSUV matches or beats the analytic
schemes (Xavier, He/MSRA, orthogonal) whatever the activation, where some of them fail.

Here: 20-layer MLPs of width 32 on MNIST-1D, tanh and ReLU, five schemes, the same SGD and the
same learning-rate grid; each scheme keeps its best rate on a held-out validation split.
"""

from __future__ import annotations

import torch
from torch import nn

import weightinit as wi
from weightinit.reproduce.core import Context, Measure, Outcome, Reproduction, spread
from weightinit.reproduce.data import mnist1d
from weightinit.reproduce.figures import band, figure, save
from weightinit.reproduce.training import evaluate, fit
from weightinit.zoo import mlp

__all__ = ["REPRODUCTION", "thin_net"]

DEPTH, WIDTH, CALIBRATION = 20, 32, 256
ACTIVATIONS = ("tanh", "relu")
SCHEMES = {"LSUV": "lsuv", "He": "he", "orthogonal": "orthogonal", "Xavier": "glorot",
           "torch default": "torch"}  # fmt: skip
LRS = (0.003, 0.01, 0.03)


def thin_net(activation: str, *, depth: int = DEPTH, width: int = WIDTH) -> nn.Sequential:
    """A FitNet-like thin MLP: ``depth`` Linear layers (40 -> ``width`` ... -> 10) with
    ``activation`` after all but the last.

    Example:
        >>> net = thin_net("relu", depth=4, width=8)
        >>> net(torch.randn(3, 40)).shape, sum(isinstance(m, nn.Linear) for m in net)
        (torch.Size([3, 10]), 4)
    """
    return mlp(depth, activation, width=width, in_features=40)[0]


def _experiment(ctx: Context) -> Outcome:
    full = mnist1d()
    epochs = 6 if ctx.quick else 20
    val, train = (full.subset(2000) if ctx.quick else full).holdout(500)
    ctx.steps(len(ACTIVATIONS) * len(SCHEMES) * len(LRS) * len(ctx.seeds))
    # runs[act][scheme][lr] = list over seeds of (validation acc, test acc, losses)
    runs: dict[str, dict[str, dict[float, list]]] = {}
    for act in ACTIVATIONS:
        runs[act] = {}
        for label, scheme in SCHEMES.items():
            runs[act][label] = {lr: [] for lr in LRS}
            for lr in LRS:
                for seed in ctx.seeds:
                    torch.manual_seed(seed)
                    net = thin_net(act)
                    extra = {"data": train.x[:CALIBRATION]} if scheme == "lsuv" else {}
                    wi.init(net, scheme, seed=seed, **extra)
                    curve = fit(net, train, epochs=epochs, lr=lr, seed=seed)
                    val_acc = evaluate(net, val)[1] if not curve.diverged else 0.0
                    runs[act][label][lr].append((val_acc, curve.accuracy, curve.losses))
                    ctx.advance()
    best_lr = {act: {k: max(LRS, key=lambda lr, r=r: spread([v[0] for v in r[lr]])[0])
                     for k, r in by.items()} for act, by in runs.items()}  # fmt: skip
    accuracy = {act: {k: [v[1] for v in runs[act][k][best_lr[act][k]]] for k in SCHEMES}
                for act in ACTIVATIONS}  # fmt: skip
    fig, axes = figure(3)
    offsets = torch.linspace(-0.32, 0.32, len(SCHEMES)).tolist()
    for (label, accs), dx in zip(((k, [accuracy[a][k] for a in ACTIVATIONS]) for k in SCHEMES),
                                 offsets):  # fmt: skip
        stats = [spread(a) for a in accs]
        axes[0].bar([i + dx for i in range(len(ACTIVATIONS))], [s[0] for s in stats], width=0.15,
                    yerr=[s[1] for s in stats], capsize=3, label=label)  # fmt: skip
    axes[0].axhline(0.1, color="grey", lw=0.8, ls="--", label="chance")
    axes[0].set(
        xticks=range(len(ACTIVATIONS)),
        xticklabels=ACTIVATIONS,
        ylabel="test accuracy",
        ylim=(0, 0.75),
        title="test accuracy at the best lr (± std)",
    )
    axes[0].legend(fontsize=7, ncol=3, loc="upper center")
    for ax, act in zip(axes[1:], ACTIVATIONS):
        for k in SCHEMES:
            band(ax, range(epochs + 1), [v[2] for v in runs[act][k][best_lr[act][k]]],
                 f"{k} (lr {best_lr[act][k]:g})")  # fmt: skip
        ax.set(xlabel="epoch", ylabel="training loss", title=f"{act}, best lr per scheme")
        ax.legend(fontsize=7)
    path = save(fig, ctx.figure("lsuv"),
                f"{DEPTH}-layer width-{WIDTH} MLPs on MNIST-1D, SGD, best of lr {LRS}")  # fmt: skip
    measures, gaps, ok = [], {}, True
    for act in ACTIVATIONS:
        means = {k: spread(accuracy[act][k]) for k in SCHEMES}
        best = max((k for k in SCHEMES if k != "LSUV"), key=lambda k: means[k][0])
        margin = max(2 * means[best][1], 2 * means["LSUV"][1], 0.01)
        gaps[act] = (best, means["LSUV"][0] - means[best][0], margin)
        ok &= gaps[act][1] >= -margin
        measures += [Measure(f"test accuracy, {act}, {k} (lr {best_lr[act][k]:g})",
                             accuracy[act][k],
                             "matches or beats the others" if k == "LSUV" else "", ".1%")
                     for k in SCHEMES]  # fmt: skip
    verdict = "; ".join(
        f"{act}: LSUV {spread(accuracy[act]['LSUV'])[0]:.1%} vs best other {b} "
        f"{spread(accuracy[act][b])[0]:.1%} (gap {gap:+.1%}, allowed -{m:.1%})"
        for act, (b, gap, m) in gaps.items()
    ) + ("" if ok else "; LSUV falls behind by more than the seed noise")
    data = {"best_lr": best_lr, "accuracy": accuracy, "gaps": gaps,
            "losses": {a: {k: {str(lr): [v[2] for v in r] for lr, r in by.items()}
                           for k, by in runs[a].items()} for a in ACTIVATIONS}}  # fmt: skip
    return Outcome(measures, ok, verdict, [path], data)


REPRODUCTION = Reproduction(
    number=5,
    name="lsuv",
    title="LSUV on deep thin nets",
    paper="Mishkin & Matas 2016, All you need is a good init (ICLR), Tables 2-3 (FitNets)",
    claim="on thin deep nets LSUV matches or beats Xavier, He (MSRA), orthogonal and the default "
    "init for every activation (criterion here: LSUV's mean test accuracy within "
    "max(2 std, 1 point) of the best other scheme, for tanh and ReLU)",
    setup=f"{DEPTH}-layer MLPs of width {WIDTH} (tanh, ReLU) on MNIST-1D (3500 train, 500 "
    f"validation), SGD momentum 0.9, batch 128, 20 epochs, lr in {LRS} chosen per scheme on "
    "validation accuracy; LSUV calibrated on 256 training examples "
    "(quick: 6 epochs on 1500 examples)",
    experiment=_experiment,
)
