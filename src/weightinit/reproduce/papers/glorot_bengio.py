"""3. Standard vs normalized init in a tanh net (Glorot & Bengio 2010, Figs. 6 and 7).

With z_{k+1} = W h_k and W independent of h_k, E[z_{k+1}^2] = n_in Var(W) E[h_k^2] going up, and
the back-propagated gradient dL/dz_k has variance n_out Var(W) E[tanh'(z_k)^2] Var(dL/dz_{k+1})
going down. The "standard" init U(-1/sqrt(n), 1/sqrt(n)) has Var(W) = 1/(3n): each layer divides
both variances by 3 (exactly, in tanh's linear regime), so activations shrink towards the top and
gradients towards the input. The "normalized" init U(±sqrt(6/(n_in + n_out))) has
Var(W) = 2/(n_in + n_out) = 1/n for square layers: the weights preserve both variances, and only
tanh's compression (E[tanh(z)^2] < E[z^2], tanh' < 1) makes them drift down slowly.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

import weightinit as wi
from weightinit.reproduce.core import Context, Measure, Outcome, Reproduction, spread
from weightinit.reproduce.data import mnist1d
from weightinit.reproduce.figures import band, figure, save

__all__ = ["REPRODUCTION", "layer_statistics", "normalized_init", "standard_init", "tanh_net"]

HIDDEN, WIDTH = 5, 256
# the criterion, over the HIDDEN - 1 layer-to-layer steps: standard at most 1/2 per step (theory
# 1/3), normalized at least 2/3 per step (theory 1, less tanh's compression)
STANDARD_MAX, NORMALIZED_MIN = 0.5 ** (HIDDEN - 1), (2 / 3) ** (HIDDEN - 1)


def tanh_net(in_features: int = 40, width: int = WIDTH, hidden: int = HIDDEN) -> nn.Sequential:
    """``hidden`` layers Linear + Tanh of ``width`` units, then a Linear head to 10 classes.

    Example:
        >>> tanh_net(4, 8, 2)(torch.zeros(3, 4)).shape
        torch.Size([3, 10])
    """
    sizes = [in_features] + [width] * hidden
    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers += [nn.Linear(fan_in, fan_out), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def standard_init(net: nn.Module, seed: int) -> None:
    """The paper's "standard" heuristic: W ~ U(-1/sqrt(n), 1/sqrt(n)), n = fan_in, so
    Var(W) = 1/(3n); zero biases.

    Example:
        >>> net = tanh_net(4, 300, 1)
        >>> standard_init(net, 0)
        >>> round(net[2].weight.var().item() * 300 * 3, 1)
        1.0
    """
    generator = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, nn.Linear):
            bound = 1 / math.sqrt(module.in_features)
            wi.uniform_(module.weight, -bound, bound, generator=generator)
            wi.zeros_(module.bias)


def normalized_init(net: nn.Module, seed: int) -> None:
    """The paper's "normalized" init, Glorot uniform: ``wi.init(net, "glorot")`` (zero biases)."""
    wi.init(net, "glorot", seed=seed)


def layer_statistics(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor) -> dict[str, list]:
    """Per hidden layer, on the batch ``(x, y)`` with the summed cross-entropy (each example's
    own gradient): ``pre`` the second moment of the pre-activation z_k, ``act`` the variance of
    tanh(z_k), ``grad`` the variance of dL/dz_k, and the flattened ``act_values`` and
    ``grad_values`` (for histograms).

    Example:
        >>> net = tanh_net(4, 8, 2)
        >>> stats = layer_statistics(net, torch.randn(16, 4), torch.randint(0, 10, (16,)))
        >>> [len(stats[k]) for k in ("pre", "act", "grad")]
        [2, 2, 2]
    """
    pres: list[torch.Tensor] = []
    acts: list[torch.Tensor] = []
    h = x
    for layer in net:
        h = layer(h)
        if isinstance(layer, nn.Linear) and layer is not net[-1]:
            h.retain_grad()
            pres.append(h)
        elif isinstance(layer, nn.Tanh):
            acts.append(h)
    nn.functional.cross_entropy(h, y, reduction="sum").backward()
    return {
        "pre": [z.detach().square().mean().item() for z in pres],
        "act": [a.detach().var().item() for a in acts],
        "grad": [z.grad.var().item() for z in pres],
        "act_values": [a.detach().flatten() for a in acts],
        "grad_values": [z.grad.flatten() for z in pres],
    }


INITS = {"standard U(±1/√n)": standard_init, "normalized (Glorot)": normalized_init}


def _histograms(axes, samples: dict[str, list[torch.Tensor]], what: str) -> None:
    reach = max(
        torch.quantile(v[:200_000].abs(), 0.995).item() for s in samples.values() for v in s
    )
    bins = torch.linspace(-reach, reach, 61)
    centers = ((bins[1:] + bins[:-1]) / 2).tolist()
    for ax, (label, layers) in zip(axes, samples.items()):
        for k, values in enumerate(layers, 1):
            counts = torch.histogram(values, bins).hist  # the 0.5% beyond the range left out
            ax.plot(centers, (counts / len(values)).tolist(), label=f"layer {k}")
        ax.set(xlabel=what, ylabel="fraction", yscale="log", title=label)
        ax.legend(fontsize=7)


def _experiment(ctx: Context) -> Outcome:
    task = mnist1d()
    x, y = (task.x[:1000], task.y[:1000]) if ctx.quick else (task.x, task.y)
    ctx.steps(len(INITS) * len(ctx.seeds))
    stats: dict[str, dict[str, list[list[float]]]] = {}
    samples: dict[str, dict[str, list[torch.Tensor]]] = {"act": {}, "grad": {}}
    for label, initialize in INITS.items():
        stats[label] = {"pre": [], "act": [], "grad": []}
        for seed in ctx.seeds:
            torch.manual_seed(seed)
            net = tanh_net(task.features)
            initialize(net, seed)
            measured = layer_statistics(net, x, y)
            for key in stats[label]:
                stats[label][key].append(measured[key])
            if seed == ctx.seeds[0]:
                samples["act"][label] = measured["act_values"]
                samples["grad"][label] = measured["grad_values"]
            ctx.advance()
    fig, axes = figure(3, 2, width=4.0, height=3.1)
    _histograms(axes[0:2], samples["act"], "activation tanh(z)")
    _histograms(axes[3:5], samples["grad"], "back-propagated gradient dL/dz")
    layers = range(1, HIDDEN + 1)
    for ax, key, name in ((axes[2], "act", "Var of tanh(z)"), (axes[5], "grad", "Var of dL/dz")):
        for label in INITS:
            band(ax, layers, stats[label][key], label, marker="o")
        ax.set(xlabel="hidden layer (1 = input side)", ylabel=name, yscale="log")
        ax.legend(fontsize=7)
    path = save(fig, ctx.figure("glorot-bengio"),
                f"{HIDDEN} tanh layers of {WIDTH} on MNIST-1D at init (first seed's histograms)")  # fmt: skip
    act = {k: [a[-1] / a[0] for a in v["act"]] for k, v in stats.items()}
    grad = {k: [g[0] / g[-1] for g in v["grad"]] for k, v in stats.items()}
    std, nrm = INITS
    measures = [
        Measure(f"Var(act) layer {HIDDEN} / layer 1, standard", act[std],
                f"shrinks: 3^-{HIDDEN - 1} = {3.0 ** (1 - HIDDEN):.3g} in the linear regime"),
        Measure(f"Var(act) layer {HIDDEN} / layer 1, normalized", act[nrm],
                "≈ 1 (below it by tanh's compression)"),
        Measure(f"Var(grad) layer 1 / layer {HIDDEN}, standard", grad[std],
                f"shrinks towards the input: ≈ 3^-{HIDDEN - 1} = {3.0 ** (1 - HIDDEN):.3g}"),
        Measure(f"Var(grad) layer 1 / layer {HIDDEN}, normalized", grad[nrm],
                "≈ 1 (below it by tanh' < 1)"),
    ]  # fmt: skip
    # "roughly constant" both ways: the normalized ratios within [2/3, 3/2] per layer
    holds = (all(r < STANDARD_MAX for r in act[std] + grad[std])
             and all(NORMALIZED_MIN < r < 1 / NORMALIZED_MIN for r in act[nrm] + grad[nrm]))  # fmt: skip
    mean = {k: {"act": spread(act[k])[0], "grad": spread(grad[k])[0]} for k in INITS}
    verdict = (
        f"over the {HIDDEN - 1} steps from hidden layer 1 to {HIDDEN} the standard init divides "
        f"the activation variance by {1 / mean[std]['act']:.0f} going up and the gradient "
        f"variance by {1 / mean[std]['grad']:.0f} going down (means over the seeds); the "
        f"normalized init by only {1 / mean[nrm]['act']:.1f} and {1 / mean[nrm]['grad']:.1f} "
        f"(criterion: standard below {STANDARD_MAX:.3g}, normalized within "
        f"[{NORMALIZED_MIN:.3g}, {1 / NORMALIZED_MIN:.3g}], i.e. ≤ 1/2 vs within [2/3, 3/2] per step)"
    )
    return Outcome(measures, holds, verdict, [path], {"stats": stats})


REPRODUCTION = Reproduction(
    number=3,
    name="glorot-bengio",
    title="Standard vs normalized init: variances across tanh layers",
    paper="Glorot & Bengio 2010, Understanding the difficulty of training deep feedforward "
    "neural networks, Figs. 6 and 7",
    claim="with the standard init U(±1/√n) the activation variance shrinks going up and the "
    "back-propagated gradients shrink going down; the normalized init keeps both roughly "
    "constant across layers",
    setup=f"a tanh MLP with {HIDDEN} hidden layers of {WIDTH} units, zero biases, at init on "
    "MNIST-1D's 4000 training inputs (quick: 1000) with cross-entropy on the labels; "
    "histograms of tanh(z) and dL/dz per layer",
    experiment=_experiment,
)
