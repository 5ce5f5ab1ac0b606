"""6. Delta-orthogonal CNNs at the edge of chaos (Xiao et al. 2018, Figs. 1 and 4/5).

A tanh CNN whose weights have variance sigma_w^2 / fan_in and biases N(0, sigma_b^2) is critical
when chi_1 = sigma_w^2 E[tanh'(u)^2] = 1 at the fixed point u ~ N(0, q*): the input-output
Jacobian J = prod_l D_l W_l (D_l = diag tanh'(h_l)) then keeps its mean squared singular value
at 1 at every depth. Whether the singular values also stay near 1 (dynamical isometry) depends
on the kernels: with Gaussian taps each W_l is a random conv matrix whose product spreads the
spectrum exponentially in depth; a delta-orthogonal kernel (an orthogonal channel mixer at the
centre tap, 0 elsewhere) makes W_l orthogonal, and the only spread left comes from D_l, with
Var(s^2) ~ 8 L q*^2 at small q* (Pennington et al. 2017). Here: (a) the Jacobian's singular
values at depths up to 1000 at init, (b) training at depths 10 to 200.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import weightinit as wi
from weightinit.reproduce.core import Context, Measure, Outcome, Reproduction
from weightinit.reproduce.data import mnist1d
from weightinit.reproduce.figures import band, figure, save
from weightinit.reproduce.training import fit

__all__ = ["REPRODUCTION", "conv_stack", "critical_gaussian", "jacobian_singular_values"]

Q_STAR = 1 / 256  # small q*: the spread ~ 8 L q*^2 stays below 1 at L = 1000
INITS = ("delta-orthogonal (critical)", "Gaussian (critical)", "He (Gaussian)")
BAND = (0.5, 2.0)  # "near 1": the singular values counted as isometric


def conv_stack(depth: int, channels: int, *, in_channels: int | None = None) -> nn.Sequential:
    """``depth`` x (Conv1d kernel 3, circular padding, then tanh): no normalization, no skips.

    Example:
        >>> conv_stack(3, 4)(torch.randn(2, 4, 10)).shape
        torch.Size([2, 4, 10])
    """
    layers: list[nn.Module] = []
    for k in range(depth):
        c_in = channels if k or in_channels is None else in_channels
        layers += [nn.Conv1d(c_in, channels, 3, padding=1, padding_mode="circular"), nn.Tanh()]
    return nn.Sequential(*layers)


def critical_gaussian(net: nn.Module, q_star: float, seed: int) -> None:
    """The critical point's Gaussian twin of ``wi.init(net, "critical")``: the same biases and
    sigma_w^2, but every conv tap drawn N(0, sigma_w^2 / fan_in) instead of delta-orthogonal."""
    wi.init(net, "critical", seed=seed, q_star=q_star)
    sigma_w2 = wi.critical_point("tanh", q_star).sigma_w2
    gen = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.Conv1d):
            fan_in = m.weight.shape[1] * m.weight.shape[2]
            wi.normal_(m.weight, std=math.sqrt(sigma_w2 / fan_in), generator=gen)


def _initialize(net: nn.Module, init: str, seed: int) -> None:
    if init == INITS[0]:
        wi.init(net, "critical", seed=seed, q_star=Q_STAR)
    elif init == INITS[1]:
        critical_gaussian(net, Q_STAR, seed)
    else:
        wi.init(net, "he", seed=seed)


@torch.no_grad()
def jacobian_singular_values(
    stack: nn.Sequential, x: torch.Tensor, depths: set[int]
) -> dict[int, torch.Tensor]:
    """The singular values of d output / d input of the first ``l`` layers of a
    :func:`conv_stack`, at the single input ``x`` (channels, length), for each ``l`` in
    ``depths``: the full Jacobian pushed forward layer by layer in float64.

    Example:
        >>> s = jacobian_singular_values(conv_stack(2, 3), torch.randn(3, 5), {1, 2})
        >>> s[2].shape
        torch.Size([15])
    """
    n = x.numel()
    tangents = torch.eye(n, dtype=torch.float64).reshape(n, *x.shape)
    h, out = x.double()[None], {}
    convs = (m for m in stack if isinstance(m, nn.Conv1d))
    for depth, conv in enumerate(convs, start=1):
        weight, bias = conv.weight.double(), conv.bias.double()
        h = torch.tanh(F.conv1d(F.pad(h, (1, 1), mode="circular"), weight, bias))
        tangents = F.conv1d(F.pad(tangents, (1, 1), mode="circular"), weight) * (1 - h**2)
        if depth in depths:
            out[depth] = torch.linalg.svdvals(tangents.reshape(n, n).T)
    return out


def _in_band(s: torch.Tensor) -> float:
    return ((s >= BAND[0]) & (s <= BAND[1])).double().mean().item()


def _experiment(ctx: Context) -> Outcome:
    quick = ctx.quick
    jac_channels, depths_a = (8, [10, 100, 1000]) if quick else (16, [10, 30, 100, 300, 1000])
    depths_b, channels, n_train, epochs = (
        ([50], 8, 1000, 4) if quick else ([10, 50, 200], 8, 1500, 6)
    )
    task = mnist1d(channels=True).subset(n_train)
    ctx.steps(len(INITS) * len(ctx.seeds) * (1 + len(depths_b)))
    fraction = {i: [] for i in INITS}  # per seed: the fraction in BAND at each depth of depths_a
    log_std = {i: [] for i in INITS}
    deepest = {i: [] for i in INITS}  # log10 singular values at the deepest depth, seed 0
    accuracy = {i: {d: [] for d in depths_b} for i in INITS}
    for init in INITS:
        for seed in ctx.seeds:
            torch.manual_seed(seed)
            stack = conv_stack(max(depths_a), jac_channels)
            _initialize(stack, init, seed)
            x = torch.randn(jac_channels, 40, generator=torch.Generator().manual_seed(seed))
            spectra = jacobian_singular_values(stack, x * math.sqrt(Q_STAR), set(depths_a))
            fraction[init].append([_in_band(spectra[d]) for d in depths_a])
            log_std[init].append([spectra[d].log().std().item() for d in depths_a])
            if seed == ctx.seeds[0]:
                deepest[init] = spectra[max(depths_a)].clamp_min(1e-30).log10().tolist()
            ctx.advance()
            for depth in depths_b:
                torch.manual_seed(seed)
                net = nn.Sequential(conv_stack(depth, channels, in_channels=1), nn.Flatten(),
                                    nn.Linear(channels * 40, 10))  # fmt: skip
                _initialize(net, init, seed)
                curve = fit(net, task, epochs=epochs, lr=1e-3, seed=seed, optimizer="adam")
                accuracy[init][depth].append(curve.accuracy)
                ctx.advance()
    fig, (hist, spread, acc) = figure(3)
    for init in INITS:
        hist.hist(deepest[init], bins=40, alpha=0.6, label=init)
        band(spread, depths_a, fraction[init], init, marker="o")
        band(acc, depths_b, [list(r) for r in zip(*accuracy[init].values())], init, marker="o")
    hist.set(xlabel=f"log10 singular value of J, depth {max(depths_a)}", ylabel="count")
    spread.set(xlabel="depth", ylabel=f"fraction of singular values in [{BAND[0]}, {BAND[1]}]",
               xscale="log", ylim=(-0.02, 1.02))  # fmt: skip
    acc.axhline(0.1, color="grey", lw=0.8, ls="--", label="chance")
    acc.set(xlabel="depth", ylabel=f"test accuracy after {epochs} epochs", xscale="log")
    for ax in (hist, spread, acc):
        ax.legend(fontsize=7)
    path = save(fig, ctx.figure("critical-cnn"),
                f"tanh CNNs (Conv1d, circular padding, q* = 1/{round(1 / Q_STAR)}): Jacobian "
                f"at init ({jac_channels} channels) and MNIST-1D training ({channels} channels)")  # fmt: skip
    top, deep = max(depths_a), max(depths_b)
    last = {i: [f[-1] for f in fraction[i]] for i in INITS}
    measures = [
        Measure(f"fraction of Jacobian singular values in [0.5, 2] at depth {top}, {i}", last[i],
                "near 1 (dynamical isometry)" if i == INITS[0] else "near 0 (spread)", ".2f")
        for i in INITS
    ] + [
        Measure(f"std of log singular values at depth {top}, {i}",
                [s[-1] for s in log_std[i]], "small" if i == INITS[0] else "large", ".2f")
        for i in INITS
    ] + [
        Measure(f"test accuracy at depth {deep}, {i}", accuracy[i][deep],
                "trains" if i == INITS[0] else "fails or worse", ".1%")
        for i in INITS
    ]  # fmt: skip
    delta, gauss, he = (accuracy[i][deep] for i in INITS)
    isometric = min(last[INITS[0]]) > 0.8 and max(last[INITS[1]] + last[INITS[2]]) < 0.2
    trains = min(delta) > 0.15 and sum(delta) / len(delta) > sum(he) / len(he) + 0.05
    verdict = (
        f"at depth {top}, {sum(last[INITS[0]]) / len(ctx.seeds):.0%} of the delta-orthogonal "
        f"Jacobian's singular values lie in [0.5, 2] against {sum(last[INITS[1]]) / len(ctx.seeds):.0%} "
        f"(critical Gaussian) and {sum(last[INITS[2]]) / len(ctx.seeds):.0%} (He); at depth {deep} "
        f"test accuracy is {sum(delta) / len(delta):.0%} (delta-orthogonal), "
        f"{sum(gauss) / len(gauss):.0%} (critical Gaussian), {sum(he) / len(he):.0%} (He)"
    )
    data = {"depths_jacobian": depths_a, "fraction_in_band": fraction, "log_sv_std": log_std,
            "log10_sv_deepest": deepest, "depths_training": depths_b, "accuracy": accuracy}  # fmt: skip
    return Outcome(measures, isometric and trains, verdict, [path], data)


REPRODUCTION = Reproduction(
    number=6,
    name="critical-cnn",
    title="Delta-orthogonal vs Gaussian kernels in deep tanh CNNs",
    paper="Xiao et al. 2018, Dynamical Isometry and a Mean Field Theory of CNNs, Figs. 1, 4, 5",
    claim="critical delta-orthogonal init keeps the Jacobian's singular values near 1 at depth "
    "1000 (dynamical isometry), Gaussian kernels (critical or He) do not; very deep vanilla "
    "CNNs train with it and fail or train worse with Gaussian He init",
    setup=f"(a) 1000 tanh Conv1d layers (16 channels, length 40, circular padding), full "
    f"Jacobian at one input at q* = 1/{round(1 / Q_STAR)}; (b) tanh CNNs of depth 10, 50, 200 "
    "(8 channels) + linear head on 1500 MNIST-1D examples, Adam lr 1e-3, 6 epochs (quick: "
    "8-channel Jacobian, depth 50 on 1000 examples, 4 epochs)",
    experiment=_experiment,
)
