"""12. The AutoInit claim (Bingham & Miikkulainen 2023): an analytic, data-free init that keeps
every layer's output at unit variance, computed from the architecture alone, matches or beats the
default and the hand-picked inits across MLPs, CNNs, residual nets and Transformers without
normalization.

weightinit's "auto" propagates the signal's mean and second moment through the traced model
(Gaussian moments of each activation by quadrature) and sets each layer's scale so its output has
unit variance, then takes one stabilizing sweep on a stand-in batch. Here it is trained with the
same optimizer and learning rate as every other init on each architecture (AutoInit, too, keeps
each architecture's training setup and changes only the init), and compared with PyTorch's
default and the hand-picked inits for that architecture (LeCun, Glorot, He, orthogonal, and the
architecture's recipe: Fixup and SkipInit for the residual MLP, T-Fixup for the Transformer).
"""

from __future__ import annotations

import math

from weightinit.reproduce.architectures import ARCHITECTURES
from weightinit.reproduce.core import Context, Measure, Outcome, Reproduction, spread
from weightinit.reproduce.figures import figure, save
from weightinit.reproduce.grid import measure

__all__ = ["REPRODUCTION", "SETUPS", "hand_picked"]

#: architecture -> depth, in the full run
SETUPS = {"mlp-relu": 20, "mlp-tanh": 20, "mlp-gelu": 20, "cnn-relu": 20, "residual-mlp": 20,
          "transformer": 6}  # fmt: skip
QUICK_SETUPS = {"mlp-relu": 10, "mlp-tanh": 10, "residual-mlp": 10}
HAND_PICKED = ("lecun", "glorot", "he", "orthogonal", "fixup", "skipinit", "t-fixup")


def hand_picked(architecture: str) -> list[str]:
    """The hand-picked inits that apply to ``architecture`` (its recipes included).

    Example:
        >>> hand_picked("residual-mlp")
        ['lecun', 'glorot', 'he', 'orthogonal', 'fixup', 'skipinit']
    """
    return [s for s in HAND_PICKED if s in ARCHITECTURES[architecture].schemes]


def _experiment(ctx: Context) -> Outcome:
    setups = QUICK_SETUPS if ctx.quick else SETUPS
    epochs, train = (3, 1000) if ctx.quick else (None, 4000)
    plan = {a: ["torch", *hand_picked(a), "auto"] for a in setups}
    ctx.steps(sum(len(s) for s in plan.values()) * len(ctx.seeds))
    accuracy: dict[str, dict[str, list[float]]] = {a: {} for a in setups}
    for arch, depth in setups.items():
        lr = ARCHITECTURES[arch].lrs[len(ARCHITECTURES[arch].lrs) // 2]
        for seed in ctx.seeds:
            for scheme in plan[arch]:
                run = measure(arch, depth, scheme, lr, seed, train=train, epochs=epochs)
                # a refusal is kept as NaN: auto refused is a miss, a hand-picked one is no rival
                accuracy[arch].setdefault(scheme, []).append(run.get("accuracy", math.nan))
                ctx.advance()
    measures, misses, rows = [], [], {}
    for arch, depth in setups.items():
        mean = {s: spread(v)[0] for s, v in accuracy[arch].items()}
        picked = max((s for s in hand_picked(arch) if math.isfinite(mean[s])), key=mean.get)
        auto, default = mean["auto"], mean["torch"]
        rows[arch] = {"auto": auto, "torch": default, "best": picked, "best_mean": mean[picked]}
        measures += [
            Measure(f"{arch} ({depth}): auto", accuracy[arch]["auto"],
                    f"≥ best hand-picked − 1 pt: {mean[picked]:.1%} ({picked})", ".1%"),
            Measure(f"{arch} ({depth}): torch default", accuracy[arch]["torch"], "", ".1%"),
        ]  # fmt: skip
        if not auto >= max(mean[picked], default) - 0.01:  # NaN (auto refused): a miss
            misses.append(f"{arch}: auto {auto:.1%}, {picked} {mean[picked]:.1%}, "
                          f"default {default:.1%}")  # fmt: skip
    fig, (ax,) = figure(1, width=9, height=3.4)
    schemes = list(dict.fromkeys(s for a in setups for s in plan[a]))
    width = 0.8 / len(schemes)
    for k, scheme in enumerate(schemes):
        xs = [
            i + (k - len(schemes) / 2) * width
            for i, a in enumerate(setups)
            if scheme in accuracy[a]
        ]
        runs = [accuracy[a][scheme] for a in setups if scheme in accuracy[a]]
        ax.bar(xs, [spread(r)[0] for r in runs], width, yerr=[spread(r)[1] for r in runs],
               label=scheme, capsize=1.5, edgecolor="black" if scheme == "auto" else None)  # fmt: skip
    ax.set_xticks(range(len(setups)), [f"{a}\n(depth {d})" for a, d in setups.items()], fontsize=8)
    ax.set(ylabel="test accuracy")
    ax.axhline(0.1, color="grey", lw=0.6, ls="--")
    ax.legend(fontsize=7, ncol=5)
    path = save(fig, ctx.figure("autoinit"), "MNIST-1D, one training setup per architecture: "
                "auto (outlined) against the default and the hand-picked inits")  # fmt: skip
    holds = not misses
    verdict = (
        "auto is within 1 point of the best hand-picked init, or better, and not below the "
        f"default, on all {len(setups)} architectures"
        if holds else f"auto falls more than 1 point short on {len(misses)} of {len(setups)} "
        "architecture(s): " + "; ".join(misses)
    )  # fmt: skip
    return Outcome(measures, holds, verdict, [path], {"accuracy": accuracy, "summary": rows})


REPRODUCTION = Reproduction(
    number=12,
    name="autoinit",
    title="Analytic, data-free init across architectures (AutoInit)",
    paper="Bingham & Miikkulainen 2023, AutoInit: Analytic Signal-Preserving Weight "
    "Initialization for Neural Networks (AAAI), Tables 1-3",
    claim="an analytic, data-free init matches or beats the default and the hand-picked inits "
    "across MLPs, CNNs, residual nets and Transformers without normalization",
    setup="MNIST-1D; MLPs (relu, tanh, gelu) and a 1-D CNN of 20 layers, a 20-block residual "
    "MLP, a 6-block Transformer without LayerNorm; one optimizer and learning rate per "
    "architecture for every init (SGD 0.01; Adam 1e-3 for the Transformer), 10 epochs "
    "(Transformer 5); quick: "
    "three 10-deep nets, 3 epochs on 1000 examples",
    experiment=_experiment,
)
