"""10. Recurrent recipes on the adding problem (Le, Jaitly & Hinton 2015; Jozefowicz et al. 2015).

The adding problem: a sequence of T random numbers in [0, 1] with two of them marked (one in
each half); the target is the sum of the two marked numbers. Predicting the mean 1 gives an MSE
of Var(u1 + u2) = 2/12 = 1/6 ≈ 0.167; going below it needs a memory of T steps.

IRNN (Le et al.): a ReLU RNN with identity recurrent weights and zero biases copies its state
unchanged from step to step (h_t = relu(h_{t-1} + W x_t) = h_{t-1} + W x_t while positive), so
neither the state nor the gradient decays over time. Forget bias 1 (Jozefowicz et al.): an LSTM
cell keeps c_t = f_t c_{t-1} + ..., with f_t = sigmoid(b_f + ...); b_f = 1 makes f ≈ 0.73
instead of 0.5 at init, so the memory and its gradient decay by 0.73^T instead of 0.5^T.
Each recipe is compared to the same network without it, at the same learning rate.
"""

from __future__ import annotations

import math

import torch
from torch import nn

import weightinit as wi
from weightinit.reproduce.core import Context, Measure, Outcome, Reproduction
from weightinit.reproduce.figures import figure, save

__all__ = ["REPRODUCTION", "Adder", "adding"]

BASELINE = 1 / 6  # the MSE of always predicting 1
HIDDEN, BATCH, LR, CLIP, WINDOW = 32, 32, 3e-3, 1.0, 50
LENGTH, STEPS, LENGTH_QUICK, STEPS_QUICK = 50, 3000, 30, 800
# label: (cell, scheme or None for torch's default, options); pairs: recipe, then its control
MODELS: dict[str, tuple[str, str | None, dict]] = {
    "ReLU RNN, IRNN": ("relu", "irnn", {}),
    "ReLU RNN, torch default": ("relu", None, {}),
    "tanh RNN, torch default": ("tanh", None, {}),
    "LSTM, forget bias 1": ("lstm", "keras", {}),
    "LSTM, forget bias 0": ("lstm", "keras", {"forget_bias": 0.0}),
}
PAIRS = {
    "IRNN": ("ReLU RNN, IRNN", ("ReLU RNN, torch default", "tanh RNN, torch default")),
    "forget bias 1": ("LSTM, forget bias 1", ("LSTM, forget bias 0",)),
}
LEARNED = 0.05  # "well below 0.167": under 30% of the baseline


def adding(n: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` adding-problem sequences (n, length, 2): channel 0 the numbers, U[0, 1], channel 1
    the markers, one in each half; and the targets (n, 1), the sums of the marked numbers.

    Example:
        >>> x, y = adding(4, 10, torch.Generator().manual_seed(0))
        >>> x.shape, y.shape, x[..., 1].sum(1).tolist()
        (torch.Size([4, 10, 2]), torch.Size([4, 1]), [2.0, 2.0, 2.0, 2.0])
    """
    numbers = torch.rand(n, length, generator=generator)
    first = torch.randint(0, length // 2, (n,), generator=generator)
    second = torch.randint(length // 2, length, (n,), generator=generator)
    markers = torch.zeros(n, length)
    markers[torch.arange(n), first] = 1.0
    markers[torch.arange(n), second] = 1.0
    return torch.stack([numbers, markers], -1), (numbers * markers).sum(1, keepdim=True)


class Adder(nn.Module):
    """A one-layer recurrent net (``"relu"``, ``"tanh"`` RNN or ``"lstm"``) and a linear read-out
    of its last hidden state.

    Example:
        >>> Adder("lstm", 8)(torch.zeros(3, 5, 2)).shape
        torch.Size([3, 1])
    """

    def __init__(self, cell: str, hidden: int = HIDDEN):
        super().__init__()
        if cell == "lstm":
            self.rnn: nn.Module = nn.LSTM(2, hidden, batch_first=True)
        else:
            self.rnn = nn.RNN(2, hidden, nonlinearity=cell, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


def _train(label: str, length: int, steps: int, seed: int) -> dict:
    """One run: Adam with gradient-norm clipping on fresh minibatches; the training MSE per
    window of steps and the test MSE on 1000 held-out sequences at the end."""
    cell, scheme, options = MODELS[label]
    torch.manual_seed(seed)
    model = Adder(cell)
    if scheme is not None:
        wi.init(model, scheme, seed=seed, **options)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    data = torch.Generator().manual_seed(1000 + seed)
    losses = []
    for _ in range(steps):
        x, y = adding(BATCH, length, data)
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        losses.append(loss.item())
    x, y = adding(1000, length, torch.Generator().manual_seed(2000 + seed))
    with torch.no_grad():
        test = nn.functional.mse_loss(model(x), y).item()
    curve = torch.tensor(losses).reshape(-1, WINDOW).mean(1).tolist()
    below = [k for k, v in enumerate(curve) if v < LEARNED]
    return {"curve": curve, "test": test,
            "learned_at": WINDOW * (below[0] + 1) if below else math.nan}  # fmt: skip


def _experiment(ctx: Context) -> Outcome:
    length, steps = (LENGTH_QUICK, STEPS_QUICK) if ctx.quick else (LENGTH, STEPS)
    ctx.steps(len(MODELS) * len(ctx.seeds))
    runs: dict[str, list[dict]] = {label: [] for label in MODELS}
    for label in MODELS:
        for seed in ctx.seeds:
            runs[label].append(_train(label, length, steps, seed))
            ctx.advance()
    fig, axes = figure(len(PAIRS))
    x = [WINDOW * (k + 1) for k in range(steps // WINDOW)]
    for ax, (recipe, controls) in zip(axes, PAIRS.values(), strict=True):
        for label, color in zip((recipe, *controls), ("C0", "C1", "C2"), strict=False):
            curves = [r["curve"] for r in runs[label]]
            for curve in curves:  # every seed, thin: a std band is meaningless on a log scale
                ax.plot(x, curve, color=color, lw=0.6, alpha=0.4)
            ax.plot(x, [sum(v) / len(v) for v in zip(*curves, strict=True)], color=color,
                    lw=1.8, label=label)  # fmt: skip
        ax.axhline(BASELINE, color="grey", lw=0.8, ls="--", label="predict 1: MSE 1/6")
        ax.axhline(LEARNED, color="grey", lw=0.8, ls=":", label=f"learned: MSE {LEARNED:g}")
        ax.set(xlabel="training step", ylabel="training MSE (mean; thin: each seed)",
               yscale="log")  # fmt: skip
        ax.legend(fontsize=8)
    title = f"adding problem, T = {length}: {HIDDEN} units, Adam lr {LR:g}, clip {CLIP:g}"
    path = save(fig, ctx.figure("recurrent"), title)
    test = {label: [r["test"] for r in v] for label, v in runs.items()}
    recipes = [recipe for recipe, _ in PAIRS.values()]
    measures = [
        Measure(f"test MSE, {label}", test[label],
                f"< {LEARNED:g} (learns)" if label in recipes
                else f"≈ {BASELINE:.3f} (does not learn), or learns later")
        for label in MODELS
    ] + [
        Measure(f"first step with training MSE < {LEARNED:g}, {label}",
                [r["learned_at"] for r in runs[label]],
                "earlier than the controls" if label in recipes else "later or never (nan)",
                ".0f")
        for label in MODELS
    ]  # fmt: skip
    mean = {label: sum(v) / len(v) for label, v in test.items()}
    # the step at which MSE < LEARNED is first reached, mean over seeds; never = the budget
    when = {label: sum(steps if math.isnan(r["learned_at"]) else r["learned_at"] for r in v)
            / len(v) for label, v in runs.items()}  # fmt: skip
    parts = {
        name: mean[recipe] < LEARNED and all(when[recipe] < when[c] for c in controls)
        for name, (recipe, controls) in PAIRS.items()
    }

    def said(label: str) -> str:
        reached = f"step {when[label]:.0f}" if when[label] < steps else "never"
        return f"{label} {mean[label]:.3g} ({reached})"

    verdict = "; ".join(
        f"{name} {'holds' if ok else 'does not hold'}: test MSE (first step < {LEARNED:g}) "
        + ", ".join(said(label) for label in (PAIRS[name][0], *PAIRS[name][1]))
        for name, ok in parts.items()
    )
    if not parts["IRNN"] and mean["ReLU RNN, torch default"] < LEARNED:
        verdict += "; with Adam and gradient clipping the default ReLU RNN learns as well"
    return Outcome(measures, all(parts.values()), verdict, [path],
                   {"runs": runs, "length": length, "steps": steps})  # fmt: skip


REPRODUCTION = Reproduction(
    number=10,
    name="recurrent",
    title="IRNN and forget bias 1 on the adding problem",
    paper="Le, Jaitly & Hinton 2015, A Simple Way to Initialize Recurrent Networks of Rectified "
    "Linear Units, Fig. 2-3 (adding problem); Jozefowicz, Zaremba & Sutskever 2015, An Empirical "
    "Exploration of Recurrent Network Architectures (forget-gate bias 1)",
    claim="on the adding problem, a ReLU RNN with identity recurrent weights (IRNN) learns (MSE "
    "well below 1/6) where the default-initialized RNNs do not or only later, and an LSTM with "
    "forget-gate bias 1 learns where the same LSTM with bias 0 does not or only later",
    setup=f"one recurrent layer of {HIDDEN} units and a linear read-out; T = {LENGTH}, "
    f"{STEPS} steps of Adam (lr {LR:g}, gradient norm clipped at {CLIP:g}) on fresh batches "
    f"of {BATCH} (quick: T = {LENGTH_QUICK}, {STEPS_QUICK} steps); LSTMs: the 'keras' scheme "
    f"with forget_bias 1 or 0; each part holds if the recipe's mean test MSE is < {LEARNED:g} "
    f"and it reaches a training MSE < {LEARNED:g} earlier than every control (mean over seeds, "
    "never = the step budget)",
    experiment=_experiment,
)
