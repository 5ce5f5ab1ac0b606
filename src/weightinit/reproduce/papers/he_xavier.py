"""2. He vs Xavier on a deep ReLU net (He et al. 2015, Fig. 3).

Xavier/Glorot init (Var(W) = 2 / (fan_in + fan_out) = 1 / n for square layers) assumes a linear
activation; a ReLU halves the second moment at every layer, so the activation std falls by
sqrt(2) per layer: 2^(-29/2) ≈ 4e-5 after 30 layers, and the gradients with it. He init
(Var(W) = 2 / fan_in) compensates exactly, so the std stays constant and the net trains.
"""

from __future__ import annotations

import math

import torch
from torch import nn

import weightinit as wi
from weightinit.reproduce.core import Context, Measure, Outcome, Reproduction, spread
from weightinit.reproduce.data import mnist1d
from weightinit.reproduce.figures import band, figure, save
from weightinit.reproduce.training import fit
from weightinit.zoo import mlp

__all__ = ["REPRODUCTION", "activation_stds", "plateau_epochs"]

DEPTH, WIDTH = 30, 100
SCHEMES = {"Xavier (glorot)": "glorot", "He": "he"}


def plateau_epochs(losses: list[float], level: float = 0.95 * math.log(10)) -> float:
    """How many epochs the training loss stays at or above ``level`` (0.95 ln 10: chance for
    10 classes) before it first falls below it (``losses[0]`` is the loss at init); ``inf``
    when it never does.

    Example:
        >>> plateau_epochs([2.30, 2.30, 2.29, 1.9, 1.2]), plateau_epochs([2.3, 2.3, 2.3])
        (3, inf)
    """
    below = [k for k, loss in enumerate(losses) if loss < level]
    return below[0] if below else math.inf


@torch.no_grad()
def activation_stds(net: nn.Sequential, x: torch.Tensor) -> list[float]:
    """The root mean square of each ReLU's output, in order, on ``x`` (what He init preserves
    in expectation: E[relu(z)^2] = Var(z) / 2 for z symmetric about 0).

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> len(activation_stds(net, torch.randn(8, 4)))
        1
    """
    stds = []
    for layer in net:
        x = layer(x)
        if isinstance(layer, nn.ReLU):
            stds.append(x.square().mean().sqrt().item())
    return stds


def _experiment(ctx: Context) -> Outcome:
    task = mnist1d()
    epochs = 6 if ctx.quick else 30
    if ctx.quick:
        task = task.subset(2000)
    ctx.steps(len(SCHEMES) * len(ctx.seeds))
    stds: dict[str, list[list[float]]] = {k: [] for k in SCHEMES}
    losses: dict[str, list[list[float]]] = {k: [] for k in SCHEMES}
    accuracy: dict[str, list[float]] = {k: [] for k in SCHEMES}
    for label, scheme in SCHEMES.items():
        for seed in ctx.seeds:
            torch.manual_seed(seed)
            net = mlp(DEPTH, "relu", width=WIDTH, in_features=40)[0]
            wi.init(net, scheme, seed=seed)
            stds[label].append(activation_stds(net, task.x_test))
            curve = fit(net, task, epochs=epochs, lr=0.01, seed=seed)
            losses[label].append(curve.losses)
            accuracy[label].append(curve.accuracy)
            ctx.advance()
    layers = range(1, DEPTH)
    fig, (left, right) = figure(2)
    for label in SCHEMES:
        band(left, layers, stds[label], label, marker=".")
        band(right, range(epochs + 1), losses[label], label)
    first = sum(s[0] for s in stds["Xavier (glorot)"]) / len(ctx.seeds)
    left.plot(layers, [first * 2 ** (-(k - 1) / 2) for k in layers], "k:", lw=1,
              label="Xavier, theory: ÷√2 per layer")  # fmt: skip
    left.set(xlabel="layer", ylabel="RMS of the ReLU output at init", yscale="log")
    right.axhline(math.log(10), color="grey", lw=0.8, ls="--", label="chance: ln 10")
    right.set(xlabel="epoch", ylabel="training loss")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    path = save(fig, ctx.figure("he-xavier"),
                f"{DEPTH}-layer ReLU MLP (width {WIDTH}) on MNIST-1D, SGD")  # fmt: skip
    decay = {k: [s[-1] / s[0] for s in v] for k, v in stds.items()}
    final = {k: [c[-1] for c in v] for k, v in losses.items()}
    plateau = {k: [plateau_epochs(c) for c in v] for k, v in losses.items()}
    measures = [
        Measure("RMS ratio, last / first hidden layer, Xavier", decay["Xavier (glorot)"],
                f"2^(-{DEPTH - 2}/2) = {2 ** (-(DEPTH - 2) / 2):.2g} (vanishes)"),
        Measure("RMS ratio, last / first hidden layer, He", decay["He"], "1 in expectation (preserved)"),
        Measure(f"training loss after {epochs} epochs, Xavier", final["Xavier (glorot)"],
                f"stalls near ln 10 = {math.log(10):.3g}"),
        Measure(f"training loss after {epochs} epochs, He", final["He"], "decreases"),
        Measure("epochs on the plateau (loss ≥ 0.95 ln 10), Xavier", plateau["Xavier (glorot)"],
                f"never leaves it in {epochs} (stalls); nan: never"),
        Measure("epochs on the plateau (loss ≥ 0.95 ln 10), He", plateau["He"], "few"),
        Measure("test accuracy, Xavier", accuracy["Xavier (glorot)"], "", ".1%"),
        Measure("test accuracy, He", accuracy["He"], "", ".1%"),
    ]  # fmt: skip
    stalled = all(f > 0.95 * math.log(10) for f in final["Xavier (glorot)"])
    trains = all(f < 0.8 * math.log(10) for f in final["He"])
    xavier = plateau["Xavier (glorot)"]
    stuck = sum(math.isinf(p) for p in xavier)
    left = ", ".join("never" if math.isinf(p) else f"after {p}" for p in xavier)
    verdict = (
        f"Xavier's RMS shrinks by {spread(decay['Xavier (glorot)'])[0]:.1e} over the "
        f"{DEPTH - 2} steps from the first hidden layer to the last; its loss never leaves the "
        f"plateau in {stuck} of {len(xavier)} seed(s) in {epochs} epochs (per seed: {left}); "
        f"He leaves it after {max(plateau['He'])} epoch(s) at most and ends at "
        f"{spread(final['He'])[0]:.3g}; the claim, every Xavier seed still stalled at the end, "
        + ("holds" if stalled else "does not: a long stall, not a failure to ever train")
    )
    return Outcome(measures, stalled and trains, verdict, [path],
                   {"stds": stds, "losses": losses, "accuracy": accuracy})  # fmt: skip


REPRODUCTION = Reproduction(
    number=2,
    name="he-xavier",
    title="He vs Xavier on a 30-layer ReLU net",
    paper="He et al. 2015, Delving Deep into Rectifiers, Fig. 3",
    claim="on a 30-layer ReLU net, Xavier init makes the activations vanish and training stalls, "
    "He init keeps them at scale and the net trains",
    setup=f"a {DEPTH}-layer ReLU MLP (width {WIDTH}) on MNIST-1D, zero biases, SGD (lr 0.01, "
    "momentum 0.9, batch 128), 30 epochs (quick: 6 on 2000 examples)",
    experiment=_experiment,
)
