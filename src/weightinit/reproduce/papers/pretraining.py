"""13. Greedy layer-wise pre-training (stacked denoising autoencoders) vs data-free init.

Erhan et al. (2010) and Vincent et al. (2010) initialize a deep MLP layer by layer: layer k's
encoder ``h_k = tanh(W_k h_{k-1} + b_k)`` is trained as a denoising autoencoder on the previous
layer's codes, minimizing ``|| V_k h_k(mask(h_{k-1})) + c_k - h_{k-1} ||^2`` where ``mask``
zeroes each input with probability p (masking noise) and ``V_k`` is an untied linear decoder;
then the encoders are stacked, a fresh output layer is put on top and the whole net is
fine-tuned with supervised SGD. Their result: pre-trained nets reach a lower test error than the
same nets from random init (``U(±1/sqrt(fan_in))``, torch's default), the more so the deeper.
The modern claim tested here: a data-free init that keeps the signal at scale (Glorot, LeCun,
"auto", LSUV) gets the same from the fine-tuning budget alone, in milliseconds instead of seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import weightinit as wi
from weightinit.reproduce.core import Context, Measure, Outcome, Reproduction, spread
from weightinit.reproduce.data import Task, mnist1d
from weightinit.reproduce.figures import figure, save
from weightinit.reproduce.training import evaluate, fit
from weightinit.zoo import mlp

__all__ = ["REPRODUCTION", "pretrain", "pretrained_net", "reconstruction_loss"]

WIDTH, NOISE, LRS, VALIDATION = 128, 0.25, (0.01, 0.03), 500
PRETRAIN = "DAE pre-training"
DATA_FREE: dict[str, Callable[[nn.Module, torch.Tensor, int], object]] = {
    "torch default": lambda net, x, seed: [m.reset_parameters() for m in net[::2]],
    "glorot": lambda net, x, seed: wi.init(net, "glorot", seed=seed),
    "lecun": lambda net, x, seed: wi.init(net, "lecun", seed=seed),
    "auto": lambda net, x, seed: wi.init(net, "auto", example_input=x, seed=seed),
    "lsuv": lambda net, x, seed: wi.init(net, "lsuv", data=x, seed=seed),
}
METHODS = (*DATA_FREE, PRETRAIN)


@torch.no_grad()
def reconstruction_loss(encoder: nn.Linear, decoder: nn.Linear, h: torch.Tensor) -> float:
    """The clean reconstruction error ``mean (decoder(tanh(encoder(h))) - h)^2`` on codes ``h``.

    Example:
        >>> enc, dec = nn.Linear(3, 3), nn.Linear(3, 3)
        >>> for p in (*enc.parameters(), *dec.parameters()):
        ...     _ = p.data.zero_()
        >>> reconstruction_loss(enc, dec, torch.ones(4, 3))
        1.0
    """
    return F.mse_loss(decoder(torch.tanh(encoder(h))), h).item()


def pretrain(
    encoders: list[nn.Linear], x: torch.Tensor, held_out: torch.Tensor, *, epochs: int, seed: int
) -> list[tuple[float, float]]:
    """Train each encoder in turn (in place) as a denoising autoencoder on the tanh codes of the
    ones before it (masking noise ``NOISE``, a fresh untied linear decoder, Adam lr 1e-3, batch
    64); return each layer's clean reconstruction loss on the ``held_out`` codes, before and after.

    Example:
        >>> torch.manual_seed(0) and None
        >>> encoders = [nn.Linear(6, 4), nn.Linear(4, 4)]
        >>> losses = pretrain(encoders, torch.randn(256, 6), torch.randn(64, 6), epochs=2, seed=0)
        >>> len(losses), all(after < before for before, after in losses)
        (2, True)
    """
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for encoder in encoders:
        decoder = nn.Linear(encoder.out_features, encoder.in_features)
        before = reconstruction_loss(encoder, decoder, held_out)
        params = [*encoder.parameters(), *decoder.parameters()]
        opt = torch.optim.Adam(params, lr=1e-3)
        for _ in range(epochs):
            for index in torch.randperm(len(x), generator=gen).split(64):
                h = x[index]
                keep = (torch.rand(h.shape, generator=gen) >= NOISE).to(h.dtype)
                loss = F.mse_loss(decoder(torch.tanh(encoder(h * keep))), h)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        losses.append((before, reconstruction_loss(encoder, decoder, held_out)))
        with torch.no_grad():
            x, held_out = torch.tanh(encoder(x)), torch.tanh(encoder(held_out))
    return losses


def pretrained_net(encoders: list[nn.Linear], classes: int) -> nn.Sequential:
    """A tanh MLP whose hidden layers are copies of ``encoders`` and whose output layer is fresh
    (torch's default init): what fine-tuning starts from.

    Example:
        >>> net = pretrained_net([nn.Linear(5, 4), nn.Linear(4, 4)], 3)
        >>> len(net), net(torch.zeros(2, 5)).shape
        (5, torch.Size([2, 3]))
    """
    net = mlp(len(encoders) + 1, "tanh", width=encoders[0].out_features,
              in_features=encoders[0].in_features, out_features=classes)[0]  # fmt: skip
    with torch.no_grad():
        for layer, encoder in zip(net[:-1:2], encoders, strict=True):
            layer.weight.copy_(encoder.weight)
            layer.bias.copy_(encoder.bias)
    return net


def _run(method: str, task: Task, hidden: int, lr: float, epochs: int, seed: int) -> dict:
    torch.manual_seed(seed)
    net = mlp(hidden + 1, "tanh", width=WIDTH, in_features=task.features)[0]
    start = time.process_time()
    dae: list[tuple[float, float]] = []
    if method == PRETRAIN:
        encoders = list(net[:-1:2])
        dae = pretrain(encoders, task.x, task.x_test, epochs=epochs // 4, seed=seed)
        net = pretrained_net(encoders, task.classes)
    else:
        DATA_FREE[method](net, task.x[:256], seed)
    init_seconds = time.process_time() - start
    start = time.process_time()
    curve = fit(net, task, epochs=epochs, lr=lr, seed=seed, batch=64)
    return {"init_s": init_seconds, "fit_s": time.process_time() - start, "net": net,
            "validation": curve.accuracy, "dae": dae}  # fmt: skip


def _experiment(ctx: Context) -> Outcome:
    full = mnist1d()
    if ctx.quick:
        full = full.subset(2000 + VALIDATION)
    tune, test = full.holdout(VALIDATION)  # the lr is chosen on validation, never on the test set
    depths, epochs = ((6,), 12) if ctx.quick else ((2, 6), 20)
    ctx.steps(len(depths) * len(METHODS) * len(LRS) * len(ctx.seeds))
    acc: dict[int, dict[str, list[float]]] = {d: {} for d in depths}
    init_s: dict[str, list[float]] = {m: [] for m in METHODS}
    fit_s: dict[str, list[float]] = {m: [] for m in METHODS}
    chosen: dict[int, dict[str, float]] = {d: {} for d in depths}
    dae: list[list[tuple[float, float]]] = []
    for hidden in depths:
        for method in METHODS:
            runs = {}
            for lr in LRS:
                runs[lr] = [_run(method, tune, hidden, lr, epochs, seed) for seed in ctx.seeds]
                ctx.advance(len(ctx.seeds))
            lr = max(LRS, key=lambda r: spread([run["validation"] for run in runs[r]])[0])
            chosen[hidden][method] = lr
            acc[hidden][method] = [evaluate(run["net"], test)[1] for run in runs[lr]]
            if hidden == depths[-1]:
                init_s[method] = [run["init_s"] for run in runs[lr]]
                fit_s[method] = [run["fit_s"] for run in runs[lr]]
                dae += [run["dae"] for run in runs[lr] if run["dae"]]
    deep = depths[-1]
    mean = {d: {m: spread(acc[d][m])[0] for m in METHODS} for d in depths}
    gain = {d: mean[d][PRETRAIN] - mean[d]["torch default"] for d in depths}
    best = max(("auto", "lsuv"), key=lambda m: mean[deep][m])
    era = gain[deep] > 0 and (len(depths) == 1 or gain[deep] > gain[depths[0]])
    cost = max(init_s[best]) < 0.1 * min(init_s[PRETRAIN])
    modern = mean[deep][best] >= mean[deep][PRETRAIN] - 0.02 and cost
    path = _figure(ctx, depths, acc, init_s, fit_s)
    measures = [Measure(f"test accuracy, {d} hidden, {m} (lr {chosen[d][m]})", acc[d][m],
                        _expected(m, d == deep), ".1%")
                for d in depths for m in METHODS]  # fmt: skip
    measures += [
        Measure(
            f"seconds, {m}: initialization",
            init_s[m],
            "ms" if m != PRETRAIN else "seconds (a training run of its own)",
            ".2g",
        )
        for m in METHODS
    ]
    measures.append(
        Measure(
            "seconds, fine-tuning (any method)",
            [s for m in METHODS for s in fit_s[m]],
            "same budget for all",
            ".2g",
        )
    )
    measures.append(Measure("DAE held-out reconstruction loss, after / before (mean of layers)",
                            [spread([a / b for b, a in run])[0] for run in dae], "< 1", ".2f"))  # fmt: skip
    verdict = (
        f"At {deep} hidden tanh layers, DAE pre-training reaches {mean[deep][PRETRAIN]:.1%} test "
        f"accuracy vs {mean[deep]['torch default']:.1%} for torch's default init (era claim "
        f"{'holds' if era else 'does not hold'} here) and {mean[deep][best]:.1%} for {best}, "
        f"whose init takes {spread(init_s[best])[0] * 1e3:.0f} ms vs "
        f"{spread(init_s[PRETRAIN])[0]:.1f} s of pre-training: the modern claim "
        f"{'holds' if modern else 'does not hold'} (within 2 points or better, at under 10% of "
        "the cost)."
    )
    data = {"accuracy": acc, "chosen_lr": chosen, "init_seconds": init_s, "fit_seconds": fit_s,
            "dae_losses": dae, "era_claim_holds": era, "modern_claim_holds": modern}  # fmt: skip
    return Outcome(measures, modern, verdict, [path], data)


def _expected(method: str, deep: bool) -> str:
    if method == PRETRAIN:
        return "best of the era (Erhan et al. 2010)" + (", gap grows with depth" if deep else "")
    if method == "torch default":
        return "worse than pre-training (Erhan's random init)"
    return "matches pre-training (modern claim)" if method in ("auto", "lsuv") else ""


def _figure(ctx, depths, acc, init_s, fit_s):
    fig, (left, right) = figure(2, width=5.2)
    x = torch.arange(len(METHODS), dtype=torch.float64)
    step = 0.8 / len(depths)
    for k, d in enumerate(depths):
        stats = [spread(acc[d][m]) for m in METHODS]
        left.bar(x + k * step - 0.4 + step / 2, [s[0] for s in stats], step,
                 yerr=[s[1] for s in stats], capsize=3, label=f"{d} hidden layers")  # fmt: skip
    left.set_xticks(x, METHODS, rotation=30, ha="right", fontsize=8)
    left.set(ylabel="test accuracy (mean ± std over seeds)", ylim=(0.3, None))
    left.legend(fontsize=8)
    for k, (times, label) in enumerate(((init_s, "initialization (incl. pre-training)"),
                                        (fit_s, "supervised fine-tuning"))):  # fmt: skip
        stats = [spread(times[m]) for m in METHODS]
        right.bar(x + 0.2 * (2 * k - 1), [max(s[0], 1e-5) for s in stats], 0.4,
                  yerr=[s[1] for s in stats], capsize=3, label=label)  # fmt: skip
    right.set_xticks(x, METHODS, rotation=30, ha="right", fontsize=8)
    right.set(ylabel=f"CPU seconds ({depths[-1]} hidden layers)", yscale="log", ylim=(1e-5, 1e2))
    right.legend(fontsize=8, loc="upper left")
    title = f"tanh MLP (width {WIDTH}) on MNIST-1D: DAE pre-training vs data-free init"
    return save(fig, ctx.figure("pretraining"), title)


REPRODUCTION = Reproduction(
    number=13,
    name="pretraining",
    title="Layer-wise DAE pre-training vs data-free init",
    paper="Erhan et al. 2010, Why Does Unsupervised Pre-training Help Deep Learning? (JMLR), "
    "Figs. 1-2 (test error with vs without pre-training as depth grows); Vincent et al. 2010",
    claim="era: greedy layer-wise denoising-autoencoder pre-training beats random init, more so "
    "with depth; modern (tested): a good data-free init (auto, LSUV) matches pre-training at a "
    "fraction of its cost",
    setup=f"tanh MLPs with 2 and 6 hidden layers of width {WIDTH} on MNIST-1D (3500 train, 500 "
    "validation for the lr, 1000 test); DAE: masking noise 0.25, untied linear decoder, Adam, "
    "5 epochs per layer; fine-tuning for every method: SGD (momentum 0.9, batch 64), 20 epochs, "
    f"lr from {{{', '.join(map(str, LRS))}}} by validation accuracy (quick: 6 hidden, 2000 "
    "train, 12 epochs, 1 seed)",
    experiment=_experiment,
)
