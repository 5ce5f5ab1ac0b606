"""Residual streams under "auto": what each choice of option ``residual`` does to training.

A 50-block residual MLP without normalization (an input Linear 40 -> 128, 50 blocks
``x + fc2(relu(fc1(x)))`` of width 128, a Linear head to 10 classes: ``zoo.residual_mlp``) is
initialized by each scheme and trained on MNIST-1D (4000 training and 1000 test sequences,
generated locally by ``mnist1d``'s ``make_dataset``, never downloaded) with SGD (momentum 0.9,
batch 128, one fixed learning rate, no schedule), with the same seeds for every scheme (a seed
draws the weights and the order of the batches). Schemes: "he"; "auto" with residual="unit" (the
default), "stable" and "zero"; "fixup" and "skipinit" on the model their recipes prepare
(``add_fixup_scalars``, ``add_residual_gains``; their scalars train with the rest).

For each: the residual stream's std at initialization (the input of the head, on the first
1000 training inputs) and the output's, the training loss (on all 4000) before training and
after 1 and N epochs, the final test accuracy (mean and std over the seeds; losses and stds
are means over the seeds where they are finite, "nan" where none is), and in how many seeds
training diverged (a non-finite loss).

    python benchmarks/train_residual_mnist1d.py          # about 5 minutes (one CPU thread)
    python benchmarks/train_residual_mnist1d.py --lr 0.003
    python benchmarks/train_residual_mnist1d.py --quick  # 1 epoch, 1 seed: a smoke run

One CPU thread (``torch.set_num_threads(1)``): the machine is shared, and width-128 matrices
gain little from a second one. ``--figure`` writes the loss curves (matplotlib, Agg).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import weightinit as wi
from weightinit import zoo
from weightinit.commands.demo import load_mnist1d, tensors
from weightinit.recipes import add_fixup_scalars, add_residual_gains

DEPTH, WIDTH = 50, 128


def _auto(residual: str) -> Callable[[nn.Module, torch.Tensor, int], None]:
    def initialize(model: nn.Module, batch: torch.Tensor, seed: int) -> None:
        wi.init(model, "auto", example_input=batch, seed=seed, residual=residual)

    return initialize


def _prepared(scheme: str, prepare: Callable) -> Callable[[nn.Module, torch.Tensor, int], None]:
    def initialize(model: nn.Module, batch: torch.Tensor, seed: int) -> None:
        prepare(model, example_input=batch)
        wi.init(model, scheme, example_input=batch, seed=seed)

    return initialize


SCHEMES: dict[str, Callable[[nn.Module, torch.Tensor, int], None]] = {
    "he": lambda model, batch, seed: wi.init(model, "he", seed=seed),
    "auto (unit)": _auto("unit"),
    "auto (stable)": _auto("stable"),
    "auto (zero)": _auto("zero"),
    "fixup": _prepared("fixup", add_fixup_scalars),
    "skipinit": _prepared("skipinit", add_residual_gains),
}


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return F.cross_entropy(model(x), y).item()


def run(name: str, data: tuple, epochs: int, seed: int, lr: float) -> dict:
    """Initialize a fresh model by scheme ``name``, train it; what the table reports."""
    x, y, xt, yt = data
    torch.manual_seed(seed)
    model, _ = zoo.residual_mlp(DEPTH, width=WIDTH, in_features=x.shape[1], out_features=10)
    SCHEMES[name](model, x[:256], seed)
    probe = x[:1000]
    with torch.no_grad():
        stream = model[:-1](probe)
        out = model(probe)
    losses = [_loss(model, x, y)]
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(x), generator=gen).split(128):
            loss = F.cross_entropy(model(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        losses.append(_loss(model, x, y))
        if not math.isfinite(losses[-1]):
            break
    model.eval()
    with torch.no_grad():
        accuracy = (model(xt).argmax(1) == yt).float().mean().item()
    return {
        "stream": stream.std().item(),
        "out": out.std().item(),
        "losses": losses,
        "accuracy": accuracy,
        "diverged": not all(map(math.isfinite, losses)),
    }


def figure(results: dict[str, list[dict]], path: str, lr: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    top = 4.0  # "he" starts at a loss of ~1e7: diverged runs end at an x on the top edge
    for k, (name, runs) in enumerate(results.items()):
        diverged = sum(r["diverged"] for r in runs)
        label = f"{name} (diverged {diverged}/{len(runs)})" if diverged else name
        for i, r in enumerate(runs):
            finite = [v if math.isfinite(v) else float("nan") for v in r["losses"]]
            ax.plot(range(len(finite)), finite, marker="o", ms=3, color=f"C{k}", alpha=0.8,
                    label=label if i == 0 else None)  # fmt: skip
            if r["diverged"]:
                ax.plot([len(finite) - 1], [top], marker="x", ms=8, color=f"C{k}", clip_on=False)
    ax.set_yscale("log")
    ax.set_ylim(0.1, top)
    ax.set_yticks([0.1, 0.2, 0.5, 1, 2, 4], ["0.1", "0.2", "0.5", "1", "2", "4"])
    ax.minorticks_off()
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss on all 4000 (one line per seed)")
    ax.set_title(f"MNIST-1D, {DEPTH}-block residual MLP (width {WIDTH}), SGD lr {lr}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schemes", default=",".join(SCHEMES), help="comma-separated")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--quick", action="store_true", help="1 epoch, 1 seed: a smoke run")
    parser.add_argument("--figure", default=None, help="write the loss curves to this PNG")
    args = parser.parse_args()
    names = [s.strip() for s in args.schemes.split(",") if s.strip()]
    unknown = [n for n in names if n not in SCHEMES]
    if unknown:
        raise SystemExit(f"--schemes: unknown {unknown}; the schemes are {', '.join(SCHEMES)}")
    epochs, seeds = (1, 1) if args.quick else (args.epochs, args.seeds)
    torch.set_flush_denormal(True)
    torch.set_num_threads(1)
    start = time.perf_counter()
    data = tensors(load_mnist1d())
    print(
        f"MNIST-1D, {DEPTH}-block residual MLP (width {WIDTH}, no normalization), SGD "
        f"(momentum 0.9, batch 128, lr {args.lr}), {epochs} epochs, seeds 0-{seeds - 1}; torch "
        f"{torch.__version__}, threads: {torch.get_num_threads()}\n"
    )
    print("| scheme | stream std at init | output std at init | loss: init | 1 epoch "
          f"| {epochs} epochs | test accuracy | diverged |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    results = {}
    for name in names:
        runs = results[name] = [run(name, data, epochs, seed, args.lr) for seed in range(seeds)]

        def mean(values: list[float]) -> str:
            finite = [v for v in values if math.isfinite(v)]
            return f"{statistics.mean(finite):.3g}" if finite else "nan"

        losses = [mean([r["losses"][k] if k < len(r["losses"]) else math.nan for r in runs])
                  for k in (0, 1, epochs)]  # fmt: skip
        accuracy = [r["accuracy"] for r in runs]
        spread = f" ± {statistics.stdev(accuracy):.1%}" if len(runs) > 1 else ""
        print(
            f"| {name} | {mean([r['stream'] for r in runs])} | {mean([r['out'] for r in runs])} "
            f"| {' | '.join(losses)} | {statistics.mean(accuracy):.1%}{spread} | "
            f"{sum(r['diverged'] for r in runs)}/{len(runs)} |",
            flush=True,
        )
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    if args.figure:
        figure(results, args.figure, args.lr)
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
