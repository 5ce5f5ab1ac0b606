"""8. Self-normalizing networks: SELU + LeCun init hold activations at (mean 0, variance 1).

SELU(x) = lambda x for x > 0 and lambda alpha (e^x - 1) otherwise, with lambda ≈ 1.0507 and
alpha ≈ 1.6733 chosen so that z ~ N(0, 1) gives E[SELU(z)] = 0 and E[SELU(z)^2] = 1. With LeCun
normal weights (Var(W) = 1/fan_in) the next pre-activation again has mean ≈ 0 and variance ≈ 1,
and Theorem 1 of the paper shows the (mean, variance) map contracts to (0, 1) from anywhere in
Omega = [-0.1, 0.1] x [0.8, 1.5]: deviations are pulled back at every layer, so a 64-layer net
needs no normalization layer. A ReLU net with He init keeps the second moment only on average
(E[relu(z)^2] = Var(z)/2 and He doubles it back): nothing pulls a drift back, and its mean is not 0.
"""

from __future__ import annotations

import math

import torch
from torch import nn

import weightinit as wi
from weightinit.reproduce.core import Context, Measure, Outcome, Reproduction
from weightinit.reproduce.data import mnist1d
from weightinit.reproduce.figures import band, figure, save
from weightinit.reproduce.training import fit
from weightinit.zoo import mlp

__all__ = ["REPRODUCTION", "activation_moments"]

DEPTH, WIDTH = 64, 64
NETS = {"SELU + LeCun normal": ("selu", "selu"), "ReLU + He": ("relu", "he")}
LRS = (0.01, 0.003, 0.001)  # one grid for both nets; each is scored at its best rate
MEAN_BOUND, VARIANCE_RANGE = 0.1, (0.8, 1.5)  # Theorem 1's domain Omega


@torch.no_grad()
def activation_moments(net: nn.Sequential, x: torch.Tensor) -> tuple[list[float], list[float]]:
    """The mean and the variance (over examples and units) of each activation layer's output,
    in order, on ``x``.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.SELU(), nn.Linear(4, 2))
        >>> [len(m) for m in activation_moments(net, torch.randn(8, 4))]
        [1, 1]
    """
    means, variances = [], []
    for layer in net:
        x = layer(x)
        if not isinstance(layer, nn.Linear):
            means.append(x.mean().item())
            variances.append(x.var().item())
    return means, variances


def _build(name: str, seed: int, in_features: int) -> nn.Module:
    activation, scheme = NETS[name]
    torch.manual_seed(seed)
    net = mlp(DEPTH, activation, width=WIDTH, in_features=in_features)[0]
    wi.init(net, scheme, seed=seed)
    return net


def _experiment(ctx: Context) -> Outcome:
    task = mnist1d()
    epochs = 10 if ctx.quick else 30
    if ctx.quick:
        task = task.subset(2000)
    ctx.steps(len(NETS) * len(ctx.seeds) * (1 + len(LRS)))
    means: dict[str, list[list[float]]] = {k: [] for k in NETS}
    variances: dict[str, list[list[float]]] = {k: [] for k in NETS}
    runs: dict[tuple[str, float], list] = {(k, lr): [] for k in NETS for lr in LRS}
    for name in NETS:
        for seed in ctx.seeds:
            m, v = activation_moments(_build(name, seed, task.features), task.x)
            means[name].append(m)
            variances[name].append(v)
            ctx.advance()
            for lr in LRS:
                net = _build(name, seed, task.features)
                runs[name, lr].append(fit(net, task, epochs=epochs, lr=lr, seed=seed))
                ctx.advance()

    def score(name: str, lr: float) -> float:  # mean final training loss, diverged = inf
        finals = [c.final if math.isfinite(c.final) else math.inf for c in runs[name, lr]]
        return sum(finals) / len(finals)

    best = {name: min(LRS, key=lambda lr, name=name: score(name, lr)) for name in NETS}
    layers = range(1, DEPTH)
    fig, (left, middle, right) = figure(3)
    for name in NETS:
        band(left, layers, means[name], name, marker=".")
        band(middle, layers, variances[name], name, marker=".")
        band(right, range(epochs + 1), [c.losses for c in runs[name, best[name]]],
             f"{name}, lr {best[name]}")  # fmt: skip
    left.axhspan(-MEAN_BOUND, MEAN_BOUND, color="grey", alpha=0.15, label="Theorem 1's Ω")
    middle.axhspan(*VARIANCE_RANGE, color="grey", alpha=0.15, label="Theorem 1's Ω")
    left.set(xlabel="layer", ylabel="mean of the activations at init")
    middle.set(xlabel="layer", ylabel="variance of the activations at init", yscale="log")
    right.axhline(math.log(10), color="grey", lw=0.8, ls="--", label="chance: ln 10")
    right.set(xlabel="epoch", ylabel="training loss (best lr of the grid)")
    for ax in (left, middle, right):
        ax.legend(fontsize=7)
    path = save(fig, ctx.figure("selu"),
                f"{DEPTH}-layer MLPs (width {WIDTH}) on MNIST-1D, no normalization layers, SGD")  # fmt: skip
    selu, relu = NETS
    worst_mean = [max(abs(x) for x in m) for m in means[selu]]
    low, high = [min(v) for v in variances[selu]], [max(v) for v in variances[selu]]
    final = {k: [c.final for c in runs[k, best[k]]] for k in NETS}
    accuracy = {k: [c.accuracy for c in runs[k, best[k]]] for k in NETS}
    measures = [
        Measure(f"mean at layer {DEPTH - 1}, {selu}", [m[-1] for m in means[selu]], "0"),
        Measure(f"variance at layer {DEPTH - 1}, {selu}", [v[-1] for v in variances[selu]], "1"),
        Measure(f"largest |mean| over the layers, {selu}", worst_mean, f"≤ {MEAN_BOUND} (Ω)"),
        Measure(f"smallest variance over the layers, {selu}", low, f"≥ {VARIANCE_RANGE[0]} (Ω)"),
        Measure(f"largest variance over the layers, {selu}", high, f"≤ {VARIANCE_RANGE[1]} (Ω)"),
        Measure(f"mean at layer {DEPTH - 1}, {relu}", [m[-1] for m in means[relu]],
                "√(1/π) ≈ 0.56 if the second moment stays 1"),
        Measure(f"variance at layer {DEPTH - 1}, {relu}", [v[-1] for v in variances[relu]],
                "1 - 1/π ≈ 0.68 on average, drifts"),
        Measure(f"training loss after {epochs} epochs, {selu} (lr {best[selu]})", final[selu],
                "lower than ReLU's"),
        Measure(f"training loss after {epochs} epochs, {relu} (lr {best[relu]})", final[relu],
                "higher"),
        Measure(f"test accuracy, {selu}", accuracy[selu], "", ".1%"),
        Measure(f"test accuracy, {relu}", accuracy[relu], "", ".1%"),
    ]  # fmt: skip
    fixed_point = (all(m <= MEAN_BOUND for m in worst_mean) and min(low) >= VARIANCE_RANGE[0]
                   and max(high) <= VARIANCE_RANGE[1])  # fmt: skip
    trains_better = score(selu, best[selu]) < score(relu, best[relu])
    verdict = (
        f"at init all {DEPTH - 1} SELU layers stay within |mean| ≤ {max(worst_mean):.3f} and "
        f"variance {min(low):.2f}-{max(high):.2f} (Ω: |mean| ≤ {MEAN_BOUND}, variance "
        f"in {list(VARIANCE_RANGE)}): {'inside' if fixed_point else 'not inside'}; after {epochs} "
        f"epochs at each net's best lr the SELU net's training loss is "
        f"{score(selu, best[selu]):.3g} vs ReLU + He's {score(relu, best[relu]):.3g}"
    )
    data = {"means": means, "variances": variances, "best_lr": best,
            "losses": {f"{k}, lr {lr}": [c.losses for c in v] for (k, lr), v in runs.items()},
            "accuracy": accuracy}  # fmt: skip
    return Outcome(measures, fixed_point and trains_better, verdict, [path], data)


REPRODUCTION = Reproduction(
    number=8,
    name="selu",
    title="Self-normalizing 64-layer SELU net vs ReLU + He",
    paper="Klambauer et al. 2017, Self-Normalizing Neural Networks, Theorem 1 (the fixed point "
    "(0, 1)) and Fig. 1 (SNN vs unnormalized deep nets)",
    claim="a deep SELU net with LeCun normal init keeps every layer's activations near mean 0 and "
    "variance 1 at init, and trains better than the same depth of ReLU without normalization",
    setup=f"{DEPTH}-layer MLPs of width {WIDTH} on MNIST-1D (standardized inputs), zero biases: "
    "SELU + LeCun normal vs ReLU + He; moments per layer at init on the training inputs; SGD "
    f"(momentum 0.9, batch 128), lr grid {list(LRS)} shared, best per net, 30 epochs (quick: 10 "
    "on 2000 examples)",
    experiment=_experiment,
)
