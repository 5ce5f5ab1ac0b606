"""11. Structured inits: four claims, one panel each.

(a) Balduzzi et al. 2017: the gradient df/dx of a deep ReLU net (with batch norm, as in their
    Fig. 1) over a 1-D input sweep decorrelates between neighbouring points ("shattered", white
    noise); a CReLU net with looks-linear weights W = [W0, -W0] computes W0 relu(x) - W0 relu(-x)
    = W0 x per layer, is linear at init, and its gradient is the same at every point.
(b) Martens 2010: k = 15 non-zero N(0, 1) incoming weights per unit keep units less saturated
    than dense N(0, 1) weights at large fan-in (pre-activation variance ~ k, not fan_in), and
    more different from each other than dense weights scaled down to N(0, 1/fan_in).
(c) Sussillo & Abbott 2014: with W ~ N(0, g^2/N), ||delta_l||^2 / ||delta_{l+1}||^2 ~ g^2
    chi^2_k / N (k = N, linear; k ~ Bin(N, 1/2), ReLU), so log ||delta|| drifts by
    E = log g + E[psi(k/2) + log(2/N)] / 2 per layer: -1/(2N) for g = 1 and about 0 for the
    random-walk g = exp(1/(2N)) (linear) or sqrt(2) exp(1.2/(max(N,6)-2.4)) (ReLU).
(d) Zhao et al. 2022: ZerO (identity / Hadamard weights, residual branches ending in 0) is
    deterministic and trains a residual MLP about as well as random He init.
"""

from __future__ import annotations

import math

import torch
from torch import nn

import weightinit as wi
from weightinit.modules import CReLU
from weightinit.reproduce.core import Context, Measure, Outcome, Reproduction, spread
from weightinit.reproduce.data import Task, mnist1d
from weightinit.reproduce.figures import band, figure, save
from weightinit.reproduce.training import evaluate, fit
from weightinit.zoo import mlp, residual_mlp

__all__ = ["REPRODUCTION", "adjacent_correlation", "drift_theory", "gradient_sweep", "sweep_net"]

GRID, SHATTER_DEPTH, SHATTER_WIDTH = 256, 50, 64
SPARSE_DEPTH, SPARSE_WIDTH = 10, 400
WALK_DEPTH, WALK_WIDTH = 200, 16
LRS = (0.01, 0.03, 0.1)


def sweep_net(depth: int, width: int, *, looks_linear: bool) -> nn.Sequential:
    """A 1 -> ``width`` -> ... -> 1 net of ``depth`` Linear layers: Linear, BatchNorm, ReLU
    blocks, or (``looks_linear``) Linear, BatchNorm, CReLU blocks (the next layer takes 2 width).

    Example:
        >>> sweep_net(3, 4, looks_linear=True)(torch.randn(5, 1, dtype=torch.float64)).shape
        torch.Size([5, 1])
    """
    layers: list[nn.Module] = []
    fan_in = 1
    for _ in range(depth - 1):
        layers += [nn.Linear(fan_in, width), nn.BatchNorm1d(width)]
        layers.append(CReLU() if looks_linear else nn.ReLU())
        fan_in = 2 * width if looks_linear else width
    return nn.Sequential(*layers, nn.Linear(fan_in, 1)).double()


def gradient_sweep(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """df/dx at each point of the 1-D sweep ``x`` (n x 1), batch norm set to the sweep's
    statistics (one train-mode pass) and then frozen, so each point's gradient is its own."""
    for m in net.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        net.train()(x)
    x = x.detach().clone().requires_grad_()
    (grad,) = torch.autograd.grad(net.eval()(x).sum(), x)
    return grad[:, 0]


def adjacent_correlation(g: torch.Tensor) -> float:
    """Correlation between the gradients at neighbouring points, sum g_i g_(i+1) / sum g_i^2:
    (n - 1) / n for a constant gradient, about 0 for white noise around 0.

    Example:
        >>> alternating = torch.tensor([1.0, -1.0, 1.0])
        >>> adjacent_correlation(torch.ones(8)), round(adjacent_correlation(alternating), 4)
        (0.875, -0.6667)
    """
    return ((g[1:] * g[:-1]).sum() / g.square().sum()).item()


def drift_theory(width: int, gain: float, relu: bool) -> float:
    """E[log ||delta_l|| - log ||delta_(l+1)||] for W ~ N(0, gain^2/width): half of
    log(gain^2 / width) + E[psi(k/2) + log 2], k = width (linear) or ~ Bin(width, 1/2) (ReLU).

    Example:
        >>> round(drift_theory(16, 1.0, relu=False), 4)  # about -1/(2N) = -0.0312
        -0.0319
    """
    ks = range(1, width + 1) if relu else [width]
    weights = [math.comb(width, k) if relu else 1.0 for k in ks]
    mean = sum(w * torch.digamma(torch.tensor(k / 2.0)).item() for w, k in zip(weights, ks))
    return 0.5 * (math.log(gain**2 / width) + mean / sum(weights) + math.log(2))


def _shattering(seed: int) -> dict[str, float | list[float]]:
    x = torch.linspace(-2, 2, GRID, dtype=torch.float64)[:, None]
    out: dict[str, float | list[float]] = {}
    nets = [("ReLU, 2 layers", 2, False), (f"ReLU, {SHATTER_DEPTH} layers", SHATTER_DEPTH, False),
            ("looks-linear CReLU", SHATTER_DEPTH, True)]  # fmt: skip
    for label, depth, ll in nets:
        torch.manual_seed(seed)
        net = sweep_net(depth, SHATTER_WIDTH, looks_linear=ll)
        wi.init(net, "looks_linear" if ll else "he", seed=seed)
        g = gradient_sweep(net, x)
        out[label], out[label + " grad"] = adjacent_correlation(g), (g / g.norm()).tolist()
    return out


@torch.no_grad()
def _saturation(seed: int) -> dict[str, tuple[float, float]]:
    """(fraction of |tanh| > 0.99, mean |correlation| between units) at the last hidden layer."""
    x, out = mnist1d().x_test[:500], {}
    for label in ("sparse k=15", "dense N(0,1)", "dense N(0,1/fan_in)"):
        torch.manual_seed(seed)
        net = mlp(SPARSE_DEPTH, "tanh", width=SPARSE_WIDTH, in_features=40)[0]
        wi.init(net, "sparse", seed=seed)  # biases 0.5 before tanh (Martens); weights below
        gen = torch.Generator().manual_seed(seed)
        for m in net if label != "sparse k=15" else []:
            if isinstance(m, nn.Linear):
                std = 1.0 if label == "dense N(0,1)" else m.in_features**-0.5
                wi.normal_(m.weight, std=std, generator=gen)
        h = net[:-1](x)
        c = torch.corrcoef(h.T).nan_to_num().abs()
        units = len(c)
        off_diagonal = (c.sum() - c.diagonal().sum()) / (units * units - units)
        out[label] = ((h.abs() > 0.99).float().mean().item(), off_diagonal.item())
    return out


def _walk(seed: int, nets: int) -> dict[str, tuple[float, list[float]]]:
    """Mean per-layer change of log ||delta|| (backward) over ``nets`` nets, and one trace."""
    out = {}
    for act in ("linear", "relu"):
        for scheme in ("he", "random_walk"):
            changes, trace = [], []
            for j in range(nets):
                torch.manual_seed(1000 * seed + j)
                layers: list[nn.Module] = []
                for _ in range(WALK_DEPTH):
                    layers += [nn.Linear(WALK_WIDTH, WALK_WIDTH)] + [nn.ReLU()] * (act == "relu")
                net = nn.Sequential(*layers, nn.Linear(WALK_WIDTH, 1)).double()
                wi.init(net, scheme, seed=1000 * seed + j)
                h, outs = torch.randn(32, WALK_WIDTH, dtype=torch.float64), []
                for m in net:
                    h = m(h)
                    if isinstance(m, nn.Linear) and len(outs) < WALK_DEPTH:
                        outs.append(h)
                grads = torch.autograd.grad(h.sum(), outs)
                log = torch.stack([g.norm(dim=1).log() for g in grads], 1)
                d = log[:, :-1] - log[:, 1:]
                changes.append(d[torch.isfinite(d)].mean().item())
                trace = trace or (log - log[:, -1:]).mean(0).tolist()
            out[f"{act}, {'He' if scheme == 'he' else 'random walk'}"] = (
                sum(changes) / nets, trace[::-1])  # fmt: skip
    return out


def _zero(
    seed: int, task: Task, val: Task, epochs: int
) -> dict[str, tuple[float, float, list[float]]]:
    """(validation accuracy, test accuracy, losses) at each lr, per scheme."""
    out = {}
    for scheme in ("zero", "he"):
        for lr in LRS:
            torch.manual_seed(seed)
            net = residual_mlp(4, width=64, in_features=40)[0]
            wi.init(net, scheme, seed=seed)
            curve = fit(net, task, epochs=epochs, lr=lr, seed=seed)
            val_acc = evaluate(net, val)[1]
            out[f"{scheme} {lr}"] = (val_acc, curve.accuracy, curve.losses)
    return out


def _zero_identical(seeds: tuple[int, int]) -> dict[str, float]:
    """max |w_seed0 - w_seed1| over every parameter, ZerO and He."""
    out = {}
    for scheme in ("zero", "he"):
        nets = []
        for seed in seeds:
            torch.manual_seed(seed)
            nets.append(residual_mlp(4, width=64, in_features=40)[0])
            wi.init(nets[-1], scheme, seed=seed)
        out[scheme] = max((a - b).abs().max().item()
                          for a, b in zip(nets[0].parameters(), nets[1].parameters()))  # fmt: skip
    return out


def _experiment(ctx: Context) -> Outcome:
    full = mnist1d()
    task = full.subset(2000) if ctx.quick else full
    epochs, nets = (6, 4) if ctx.quick else (20, 8)
    val, train = task.holdout(500)
    ctx.steps(4 * len(ctx.seeds) + 1)
    runs: dict[str, list] = {"a": [], "b": [], "c": [], "d": []}
    for seed in ctx.seeds:
        runs["a"].append(_shattering(seed))
        runs["b"].append(_saturation(seed))
        runs["c"].append(_walk(seed, nets))
        runs["d"].append(_zero(seed, train, val, epochs))
        ctx.advance(4)
    identical = _zero_identical((ctx.seeds[0], ctx.seeds[0] + 1))
    ctx.advance()
    a_keys = ["ReLU, 2 layers", f"ReLU, {SHATTER_DEPTH} layers", "looks-linear CReLU"]
    corr = {k: [r[k] for r in runs["a"]] for k in a_keys}
    b_keys = list(runs["b"][0])
    sat = {k: [r[k][0] for r in runs["b"]] for k in b_keys}
    unit = {k: [r[k][1] for r in runs["b"]] for k in b_keys}
    c_keys = list(runs["c"][0])
    drift = {k: [r[k][0] for r in runs["c"]] for k in c_keys}
    theory = {}
    for k in c_keys:
        act, relu = k.split(",")[0], k.startswith("relu")
        gain = wi.random_walk_gain(act, WALK_WIDTH) if "walk" in k else (2**0.5 if relu else 1)
        theory[k] = drift_theory(WALK_WIDTH, gain, relu)
    best = {s: max(LRS, key=lambda lr, s=s: spread([r[f"{s} {lr}"][0] for r in runs["d"]])[0])
            for s in ("zero", "he")}  # fmt: skip
    acc = {s: [r[f"{s} {best[s]}"][1] for r in runs["d"]] for s in best}

    fig, (pa, pb, pc, pd) = figure(2, 2, width=5.0, height=3.6)
    grid = torch.linspace(-2, 2, GRID).tolist()
    for k in a_keys:
        pa.plot(grid, runs["a"][0][k + " grad"], lw=0.8, label=f"{k} (corr {corr[k][0]:.2f})")
    pa.set(xlabel="input x", ylabel="df/dx (normalized)", title="(a) shattered gradients")
    pa.legend(fontsize=7)
    for k, dx in zip(b_keys, (-0.25, 0, 0.25)):
        stats = [spread(sat[k]), spread(unit[k])]
        pb.bar([dx, 1 + dx], [s[0] for s in stats], width=0.24, yerr=[s[1] for s in stats],
               capsize=3, label=k)  # fmt: skip
    pb.set(xticks=[0, 1], xticklabels=["fraction |tanh| > 0.99", "mean |corr| between units"],
           title=f"(b) sparse init, {SPARSE_DEPTH}-layer tanh, width {SPARSE_WIDTH}")  # fmt: skip
    pb.legend(fontsize=7)
    layers = list(range(WALK_DEPTH))
    for k in c_keys:
        (line,) = pc.plot(layers, runs["c"][0][k][1], lw=0.9, label=f"{k}")
        pc.plot(layers, [theory[k] * layer for layer in layers], ":", color=line.get_color())
    pc.set(xlabel="layers back from the output", ylabel="log ||δ|| - log ||δ_out||",
           title=f"(c) random walk, width {WALK_WIDTH} (dotted: theory)")  # fmt: skip
    pc.legend(fontsize=7)
    for s, lr in best.items():
        band(pd, range(epochs + 1), [r[f"{s} {lr}"][2] for r in runs["d"]],
             f"{'ZerO' if s == 'zero' else 'He'} (lr {lr:g})")  # fmt: skip
    pd.set(xlabel="epoch", ylabel="training loss", title="(d) ZerO vs He, residual MLP, MNIST-1D")
    pd.legend(fontsize=7)
    path = save(fig, ctx.figure("structured"), "Structured inits: four claims")

    named = (("sat", sat), ("unit", unit), ("drift", drift), ("acc", acc))
    mean = {name: {k: spread(v)[0] for k, v in d.items()} for name, d in named}
    deep, ll = spread(corr[a_keys[1]])[0], spread(corr[a_keys[2]])[0]
    d, noise = mean["drift"], max(2 * spread(acc["he"])[1], 2 * spread(acc["zero"])[1], 0.02)
    held = {
        "looks-linear": ll > 0.99 and deep < 0.2,
        "sparse": mean["sat"][b_keys[0]] < mean["sat"][b_keys[1]]
        and mean["unit"][b_keys[0]] < mean["unit"][b_keys[2]],
        "random walk": all(d[f"{a}, He"] < 0 and abs(d[f"{a}, random walk"]) < 0.25 * -d[f"{a}, He"]
                           for a in ("linear", "relu")),
        "ZerO": identical["zero"] == 0 < identical["he"]
        and mean["acc"]["zero"] >= mean["acc"]["he"] - noise,
    }  # fmt: skip
    measures = [
        *(Measure(f"(a) adjacent-gradient correlation, {k}", corr[k], e) for k, e in
          zip(a_keys, ("near 1 (shallow)", "≈ 0 (white noise; < 0.2 here)", "1 (linear)"))),
        *(Measure(f"(b) saturated fraction, {k}", sat[k], "sparse < dense N(0,1)", ".2f")
          for k in b_keys),
        *(Measure(f"(b) mean |unit correlation|, {k}", unit[k], "sparse < dense N(0,1/fan_in)",
                  ".3f") for k in b_keys),
        *(Measure(f"(c) mean Δ log||δ|| per layer, {k}", drift[k], f"theory {theory[k]:+.4f}",
                  "+.4f") for k in c_keys),
        *(Measure(f"(d) max |w(seed) - w(seed+1)| at init, {k}", [identical[k]],
                  "0 (deterministic)" if k == "zero" else "> 0", ".3g") for k in identical),
        *(Measure(f"(d) test accuracy, {'ZerO' if s == 'zero' else 'He'} (lr {best[s]:g})",
                  acc[s], "comparable (ZerO ≥ He - max(2 std, 2 points))", ".1%") for s in best),
    ]  # fmt: skip
    verdict = (
        f"held: {', '.join(k for k, v in held.items() if v) or 'none'}; did not hold: "
        f"{', '.join(k for k, v in held.items() if not v) or 'none'}. Adjacent-gradient corr "
        f"{deep:.2f} (ReLU-{SHATTER_DEPTH}) vs {ll:.2f} (looks-linear); saturated "
        f"{mean['sat'][b_keys[0]]:.2f} sparse vs {mean['sat'][b_keys[1]]:.2f} dense N(0,1); "
        f"ReLU drift {d['relu, He']:+.3f} He vs {d['relu, random walk']:+.3f} random walk; "
        f"ZerO {mean['acc']['zero']:.1%} vs He {mean['acc']['he']:.1%}"
    )
    data = {"correlation": corr, "saturation": sat, "unit_correlation": unit, "drift": drift,
            "drift_theory": theory, "identical": identical, "accuracy": acc, "best_lr": best,
            "held": held}  # fmt: skip
    return Outcome(measures, all(held.values()), verdict, [path], data)


REPRODUCTION = Reproduction(
    number=11,
    name="structured",
    title="Structured inits: looks-linear, sparse, random walk, ZerO",
    paper="Balduzzi et al. 2017 (Figs. 1-2); Martens 2010 (§5, sparse init); Sussillo & Abbott "
    "2014 (random-walk gain); Zhao et al. 2022 (ZerO, TMLR)",
    claim="(a) a looks-linear CReLU net's input gradients are not shattered, a deep ReLU net's "
    "are; (b) sparse init is less saturated than dense N(0,1) and its units less alike than "
    "dense N(0,1/fan_in)'s; (c) with the random-walk gain log||δ|| has no drift over depth, "
    "with the He gain it drifts down; (d) deterministic ZerO trains as well as random He init",
    setup=f"(a) 1-D sweep of {GRID} points, {SHATTER_DEPTH}-layer width-{SHATTER_WIDTH} nets "
    f"with batch norm; (b) {SPARSE_DEPTH}-layer tanh MLP, width {SPARSE_WIDTH}, on 500 MNIST-1D "
    f"inputs; (c) {WALK_DEPTH}-layer linear and ReLU nets, width {WALK_WIDTH}, 8 nets per seed; "
    f"(d) residual MLP (4 blocks, width 64) on MNIST-1D, SGD, 20 epochs, lr in {LRS} chosen "
    "per scheme on 500 held-out examples (quick: 6 epochs, 1500 examples, 4 nets in (c))",
    experiment=_experiment,
)
