"""9. T-Fixup: a Transformer without LayerNorm trains without warm-up (Huang et al. 2020).

Without LayerNorm, a post-norm block x + f(x) under Xavier init lets Adam's first updates grow
the residual stream unchecked: the effective update of a block is about its weight scale times
the learning rate, summed over 2N blocks, and without warm-up the first steps blow up. T-Fixup
bounds that sum: in an encoder of N layers it scales the value, attention-output and MLP weights
by 0.67 N^(-1/4) relative to Xavier and the token embeddings to N(0, d^-1) (9N)^(-1/4), so that
the total update stays O(lr) and Adam can start at its full learning rate.

The experiment trains the same encoder (post-norm blocks with their norms replaced by Identity,
no dropout, learned positions) to reverse random token sequences with Adam at a fixed learning
rate from the first step, from Xavier (fairseq's baseline: N(0, d^-1) embeddings) and T-Fixup.
"""

from __future__ import annotations

import math

import torch
from torch import nn

import weightinit as wi
from weightinit.reproduce.core import Context, Measure, Outcome, Reproduction
from weightinit.reproduce.figures import figure, save

__all__ = ["REPRODUCTION", "NoNormEncoder", "initialize", "reversal"]

VOCAB, LENGTH, D, HEADS, LAYERS, BATCH = 16, 8, 32, 2, 6, 32
LRS = (1e-3, 3e-3, 1e-2)
INITS = ("Xavier", "T-Fixup")
WINDOW = 10  # the curves are means over windows of this many steps


class NoNormEncoder(nn.Module):
    """Token and learned position embeddings, ``layers`` post-norm encoder blocks whose norms
    are ``Identity`` (no dropout), a linear head over the vocabulary.

    Example:
        >>> NoNormEncoder(layers=2)(torch.zeros(3, LENGTH, dtype=torch.long)).shape
        torch.Size([3, 8, 16])
    """

    def __init__(self, vocab: int = VOCAB, length: int = LENGTH, d: int = D, layers: int = LAYERS):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, d)
        self.embed_positions = nn.Embedding(length, d)
        blocks = []
        for _ in range(layers):
            block = nn.TransformerEncoderLayer(d, HEADS, 2 * d, dropout=0.0, batch_first=True)
            block.norm1, block.norm2 = nn.Identity(), nn.Identity()
            blocks.append(block)
        self.layers = nn.ModuleList(blocks)
        self.head = nn.Linear(d, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        d = self.embed_tokens.embedding_dim
        x = self.embed_tokens(tokens) * math.sqrt(d) + self.embed_positions(positions)  # fairseq
        for block in self.layers:
            x = block(x)
        return self.head(x)


def initialize(model: NoNormEncoder, how: str, seed: int) -> wi.Plan:
    """``"T-Fixup"``: the "t-fixup" scheme; ``"Xavier"``: the paper's baseline, Glorot weights
    and N(0, d^-1) embeddings (fairseq). Returns the plan."""
    if how == "T-Fixup":
        return wi.init(model, "t-fixup", seed=seed)
    return wi.init(model, "glorot", embedding_std=model.embed_tokens.embedding_dim**-0.5, seed=seed)


def reversal(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random sequences of ``LENGTH`` tokens out of ``VOCAB`` and their reversals.

    Example:
        >>> x, y = reversal(2, torch.Generator().manual_seed(0))
        >>> bool((y[:, 0] == x[:, -1]).all()), x.shape
        (True, torch.Size([2, 8]))
    """
    x = torch.randint(0, VOCAB, (n, LENGTH), generator=generator)
    return x, x.flip(1)


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1))


def _train(how: str, lr: float, seed: int, steps: int, layers: int) -> dict:
    """One run: the training loss per window of steps (NaN after a non-finite loss), and the
    final loss and token accuracy on 512 fresh sequences."""
    torch.manual_seed(seed)
    model = NoNormEncoder(layers=layers)
    initialize(model, how, seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)  # fixed lr from the first step
    data = torch.Generator().manual_seed(1000 + seed)
    losses: list[float] = []
    for _ in range(steps):
        loss = _loss(model, *reversal(BATCH, data))
        if not torch.isfinite(loss):
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    nonfinite = len(losses) < steps
    losses += [math.nan] * (steps - len(losses))
    curve = torch.tensor(losses).reshape(-1, WINDOW).mean(1).tolist()
    x, y = reversal(512, data)
    with torch.no_grad():
        logits = model(x)
    final = nn.functional.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1)).item()
    accuracy = (logits.argmax(-1) == y).float().mean().item()
    nonfinite = nonfinite or not math.isfinite(final)
    return {"curve": curve, "loss": math.inf if nonfinite else final,
            "accuracy": 0.0 if nonfinite else accuracy, "nonfinite": nonfinite}  # fmt: skip


def _experiment(ctx: Context) -> Outcome:
    steps, layers, lrs = (250, 4, LRS[1:]) if ctx.quick else (500, LAYERS, LRS)
    ctx.steps(len(INITS) * len(lrs) * len(ctx.seeds))
    runs = {how: {lr: [] for lr in lrs} for how in INITS}
    for how in INITS:
        for lr in lrs:
            for seed in ctx.seeds:
                runs[how][lr].append(_train(how, lr, seed, steps, layers))
                ctx.advance()
    chance = math.log(VOCAB)
    # diverged: a non-finite loss, or a final loss above the uniform guess's ln V
    failed = {h: {lr: [r["nonfinite"] or r["loss"] > chance for r in runs[h][lr]] for lr in lrs}
              for h in INITS}  # fmt: skip
    fig, axes = figure(len(lrs))
    x = [WINDOW * (k + 1) for k in range(steps // WINDOW)]
    for ax, lr in zip(axes, lrs, strict=True):
        for how, color in zip(INITS, ("C3", "C0"), strict=True):
            curves = [r["curve"] for r in runs[how][lr]]
            for curve in curves:  # every seed, thin: a std band is meaningless on a log scale
                ax.plot(x, curve, color=color, lw=0.6, alpha=0.4)
            ax.plot(x, torch.tensor(curves).mean(0), color=color, lw=1.8, label=how)
            for r, bad in zip(runs[how][lr], failed[how][lr], strict=True):
                finite = [(s, v) for s, v in zip(x, r["curve"], strict=True) if math.isfinite(v)]
                if bad and finite:
                    ax.plot(*finite[-1], "x", color=color, ms=9, mew=2)
        ax.axhline(chance, color="grey", lw=0.8, ls="--", label=f"uniform guess: ln {VOCAB}")
        ax.set(xlabel="step", ylabel="training loss (mean; thin: each seed)", yscale="log",
               title=f"Adam, lr {lr:g}")  # fmt: skip
    axes[0].plot([], [], "kx", label=f"blown up (final loss > ln {VOCAB})")
    axes[0].legend(fontsize=8)
    path = save(
        fig,
        ctx.figure("t-fixup"),
        f"{layers}-layer Transformer encoder without LayerNorm, no warm-up: reversal",
    )
    measures = []
    for lr in lrs:
        for how in INITS:
            expected = "≈ 100% (trains)" if how == "T-Fixup" else "low (diverges or trains worse)"
            measures.append(
                Measure(
                    f"token accuracy, {how}, lr {lr:g}",
                    [r["accuracy"] for r in runs[how][lr]],
                    expected,
                    ".1%",
                )
            )
    for how in INITS:
        for lr in lrs:
            measures.append(
                Measure(f"final loss, {how}, lr {lr:g}", [r["loss"] for r in runs[how][lr]], "")
            )
    for how in INITS:
        counts = [sum(f[i] for f in failed[how].values()) for i in range(len(ctx.seeds))]
        measures.append(
            Measure(
                f"diverged runs of {len(lrs)} (per seed), {how}",
                counts,
                "0" if how == "T-Fixup" else f"up to {len(lrs)}",
                ".2g",
            )
        )
    accuracy = {h: {lr: [r["accuracy"] for r in runs[h][lr]] for lr in lrs} for h in INITS}
    trains = all(a >= 0.9 for v in accuracy["T-Fixup"].values() for a in v)
    worse = all(sum(v) / len(v) < 0.5 for v in accuracy["Xavier"].values())
    n = len(ctx.seeds)

    def said(how: str, lr: float) -> str:
        blown = sum(failed[how][lr])
        return f"{how} {sum(accuracy[how][lr]) / n:.0%}" + (
            f" ({blown}/{n} blown up)" * bool(blown)
        )

    nonfinite = sum(r["nonfinite"] for v in runs.values() for w in v.values() for r in w)
    verdict = (
        f"token accuracy (chance {1 / VOCAB:.0%}): "
        + "; ".join(f"lr {lr:g}: {said('T-Fixup', lr)}, {said('Xavier', lr)}" for lr in lrs)
        + f" (blown up: final loss > ln {VOCAB}; {nonfinite} runs reached a non-finite loss)"
    )
    return Outcome(
        measures,
        trains and worse,
        verdict,
        [path],
        {"runs": runs, "steps": steps, "layers": layers, "failed": failed},
    )


REPRODUCTION = Reproduction(
    number=9,
    name="t-fixup",
    title="T-Fixup trains a Transformer without LayerNorm or warm-up",
    paper="Huang, Perez, Ba & Volkovs 2020, Improving Transformer Optimization Through Better "
    "Initialization (ICML), §3 and Table 1/Fig. 1 (no LayerNorm, no warm-up)",
    claim="without LayerNorm and without learning-rate warm-up, a Transformer trains under "
    "T-Fixup but diverges or trains much worse under Xavier at the same Adam learning rate",
    setup=f"a {LAYERS}-layer post-norm encoder (d {D}, {HEADS} heads, norms removed) reversing "
    f"random sequences of {LENGTH} tokens out of {VOCAB}; Adam at fixed lr "
    f"{', '.join(f'{lr:g}' for lr in LRS)} from step 1, batch {BATCH}, 500 steps (quick: 4 "
    f"layers, 250 steps, lr {LRS[1]:g} and {LRS[2]:g}); holds if T-Fixup reaches ≥ 90% token "
    "accuracy in every run and Xavier's mean accuracy is < 50% at every lr",
    experiment=_experiment,
)
