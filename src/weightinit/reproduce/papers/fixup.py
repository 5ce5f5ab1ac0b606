"""7. Fixup: deep residual nets without normalization (Zhang, Dauphin & Ma 2019, Fig. 1, Table 1).

In a residual MLP x_{l+1} = x_l + fc2(relu(fc1(x_l))) under He init (fc1: Var = 2 / n before the
ReLU, fc2: Var = 1 / n before the add) E|fc1 x|^2 = 2 |x|^2, the ReLU halves it, fc2 keeps it:
the branch output has the stream's second moment |x|^2 and is uncorrelated with x, so the
stream's second moment doubles per block: the output std grows as 2^(L/2), 1e15 at L = 100, and SGD
diverges. Fixup zeroes the last layer of every branch (and the classifier) and scales the other
branch layers by L^(-1/(2m-2)): every block starts as the identity, the stream is the input
layer's output at any depth, and the 100-block net trains without normalization.
"""

from __future__ import annotations

import math

import torch
from torch import nn

import weightinit as wi
from weightinit.recipes import add_fixup_scalars
from weightinit.reproduce.core import Context, Measure, Outcome, Reproduction
from weightinit.reproduce.data import mnist1d
from weightinit.reproduce.figures import band, figure, save
from weightinit.reproduce.training import fit
from weightinit.zoo import residual_mlp

__all__ = ["REPRODUCTION", "build", "stream_std"]

WIDTH, DEPTH = 64, 100  # the training depth; the scale at init is measured over DEPTHS
DEPTHS = (10, 25, 50, 100, 200)
SCHEMES = ("He", "Fixup", "torch default")
LRS = (0.003, 0.01)


def build(scheme: str, depth: int, seed: int, x: torch.Tensor) -> nn.Sequential:
    """A ``depth``-block residual MLP (input Linear 40 -> WIDTH, blocks, head to 10 classes),
    initialized by ``scheme``; for Fixup after :func:`add_fixup_scalars` (its scalar biases and
    multipliers, traced on ``x``).

    Example:
        >>> x = torch.randn(4, 40)
        >>> build("Fixup", 2, 0, x)(x).abs().max().item()  # the classifier starts at 0
        0.0
    """
    torch.manual_seed(seed)
    model = residual_mlp(depth, width=WIDTH, in_features=x.shape[1])[0]
    if scheme == "Fixup":
        add_fixup_scalars(model, example_input=x[:8])
        wi.init(model, "fixup", seed=seed)
    elif scheme == "He":
        wi.init(model, "he", seed=seed)
    return model


@torch.no_grad()
def stream_std(model: nn.Sequential, x: torch.Tensor) -> float:
    """The std of the residual stream where it enters the head (``model[:-1](x)``).

    Example:
        >>> stream_std(nn.Sequential(nn.Identity(), nn.Linear(3, 1)), torch.ones(5, 3))
        0.0
    """
    return model[:-1](x).std().item()


def _experiment(ctx: Context) -> Outcome:
    task = mnist1d()
    epochs, lrs = (10, LRS) if not ctx.quick else (4, (0.01,))
    if ctx.quick:
        task = task.subset(2000)
    probe = task.x[:1000]
    ctx.steps(len(SCHEMES) * len(ctx.seeds) * (len(DEPTHS) + len(lrs)))
    stds = {s: [] for s in SCHEMES}  # per seed, at each of DEPTHS
    first = {s: [] for s in SCHEMES}  # the input layer's output std, per seed
    losses = {(s, lr): [] for s in SCHEMES for lr in lrs}
    accuracy = {(s, lr): [] for s in SCHEMES for lr in lrs}
    diverged = {(s, lr): 0 for s in SCHEMES for lr in lrs}
    for scheme in SCHEMES:
        for seed in ctx.seeds:
            row = []
            for depth in DEPTHS:
                model = build(scheme, depth, seed, task.x)
                row.append(stream_std(model, probe))
                if depth == DEPTHS[0]:
                    with torch.no_grad():
                        first[scheme].append(model[0](probe).std().item())
                ctx.advance()
            stds[scheme].append(row)
            for lr in lrs:
                curve = fit(
                    build(scheme, DEPTH, seed, task.x), task, epochs=epochs, lr=lr, seed=seed
                )
                losses[scheme, lr].append(curve.losses)
                accuracy[scheme, lr].append(curve.accuracy)
                diverged[scheme, lr] += curve.diverged
                ctx.advance()
    fig, (scale, train) = figure(2)
    for scheme in SCHEMES:
        band(scale, DEPTHS, [[math.log10(v) for v in r] for r in stds[scheme]], scheme, marker="o")
    s0, f0 = (sum(first[s]) / len(ctx.seeds) for s in ("He", "Fixup"))
    scale.plot(
        DEPTHS,
        [math.log10(s0) + d / 2 * math.log10(2) for d in DEPTHS],
        "k:",
        lw=1,
        label="He theory: 2^(L/2)",
    )
    scale.set(xlabel="residual blocks L", ylabel="log10 residual stream std at init")
    for (scheme, lr), runs in losses.items():
        n = diverged[scheme, lr]
        label = f"{scheme}, lr {lr}" + (f" (diverged {n}/{len(runs)})" if n else "")
        band(train, range(epochs + 1), runs, label, marker=".", ls="--" if lr != lrs[-1] else "-")
    train.axhline(math.log(10), color="grey", lw=0.8, ls=":", label="chance: ln 10")
    train.set(xlabel="epoch", ylabel="training loss", yscale="log", ylim=(0.1, 20))
    scale.legend(fontsize=7)
    train.legend(fontsize=7)
    path = save(fig, ctx.figure("fixup"),
                f"residual MLP (width {WIDTH}, no normalization) on MNIST-1D, SGD momentum 0.9; "
                f"training at {DEPTH} blocks")  # fmt: skip
    at = DEPTHS.index(DEPTH)

    def total(lr: float) -> float:  # a diverged run's NaN ranks last, not first
        value = sum(c[-1] for c in losses["Fixup", lr])
        return value if math.isfinite(value) else math.inf

    best = min(lrs, key=total)
    measures = [
        Measure(f"stream std at init, {DEPTH} blocks, {s}", [r[at] for r in stds[s]],
                {"He": f"2^{DEPTH // 2} x {s0:.2f} = {s0 * 2 ** (DEPTH / 2):.2g} (explodes)",
                 "Fixup": f"its input layer's {f0:.2f} (bounded)", "torch default": ""}[s])
        for s in SCHEMES
    ] + [
        Measure(f"training loss after {epochs} epochs, {s}, lr {lr} (diverged {diverged[s, lr]}"
                f"/{len(ctx.seeds)})", [c[-1] for c in losses[s, lr]],
                {"He": "diverges", "Fixup": "trains", "torch default": ""}[s])
        for s in SCHEMES for lr in lrs
    ] + [
        Measure(f"test accuracy, Fixup, lr {best}", accuracy["Fixup", best], "trains", ".1%"),
    ]  # fmt: skip
    runs = len(ctx.seeds) * len(lrs)
    he_diverges = sum(diverged["He", lr] for lr in lrs) == runs
    fixup_final = sum(c[-1] for c in losses["Fixup", best]) / len(ctx.seeds)
    fixup_trains = not any(diverged["Fixup", lr] for lr in lrs) and fixup_final < 0.9 * math.log(10)
    # "independent of depth": Fixup's stream std at init the same at every depth (its input
    # layer's, the branches being zero), within float error
    fixup_flat = all(max(r) - min(r) <= 1e-5 * max(r) for r in stds["Fixup"])
    he_std, fixup_std = (sum(r[at] for r in stds[s]) / len(ctx.seeds) for s in ("He", "Fixup"))
    finite = [lr for lr in lrs if not diverged["torch default", lr]]
    torch_best = min(
        finite, key=lambda lr: sum(c[-1] for c in losses["torch default", lr]), default=None
    )
    torch_final = torch_best and sum(c[-1] for c in losses["torch default", torch_best]) / len(
        ctx.seeds
    )
    verdict = (
        f"at {DEPTH} blocks He's stream std at init is {he_std:.2g} and SGD diverged in "
        f"{sum(diverged['He', lr] for lr in lrs)}/{runs} runs; Fixup's is {fixup_std:.2f} "
        f"({'the same' if fixup_flat else 'not the same'} at every depth: its input layer's) "
        f"and it {'trains in every run' if fixup_trains else 'does not train in every run'} "
        f"(loss {fixup_final:.3g} at lr {best}, {len(lrs)} rates tried); torch's "
        f"default init diverged in {sum(diverged['torch default', lr] for lr in lrs)}/{runs}"
        + (f" but reached loss {torch_final:.3g} at lr {torch_best}" if torch_best else "")
    )
    data = {"depths": DEPTHS, "stream_std": stds, "input_layer_std": first, "lrs": lrs,
            "losses": {f"{s}, lr {lr}": v for (s, lr), v in losses.items()},
            "accuracy": {f"{s}, lr {lr}": v for (s, lr), v in accuracy.items()},
            "diverged": {f"{s}, lr {lr}": v for (s, lr), v in diverged.items()}}  # fmt: skip
    return Outcome(measures, he_diverges and fixup_trains and fixup_flat, verdict, [path], data)


REPRODUCTION = Reproduction(
    number=7,
    name="fixup",
    title="Fixup: 100 residual blocks without normalization",
    paper="Zhang, Dauphin & Ma 2019, Fixup Initialization: Residual Learning Without "
    "Normalization, Fig. 1 and Table 1",
    claim="without normalization, a 100-block residual net under He (standard) init explodes "
    "at init (std ~ 2^(L/2)) and diverges; Fixup keeps the output scale independent of depth "
    "and trains",
    setup=f"residual MLPs x + fc2(relu(fc1(x))) of width {WIDTH} on MNIST-1D (4000 examples): "
    f"stream std at init for {', '.join(map(str, DEPTHS))} blocks; training at {DEPTH} blocks, "
    f"SGD momentum 0.9, batch 128, lr in {{{', '.join(map(str, LRS))}}} shared by all, 10 epochs, "
    "Fixup scalars at the same lr (quick: 2000 examples, lr 0.01, 4 epochs)",
    experiment=_experiment,
)
