"""``weightinit bench``: every scheme that applies, on every architecture, at depths 4, 30 and
100, trained on MNIST-1D; best of a small learning-rate grid, several seeds.

Each run (architecture, depth, scheme, learning rate, seed) initializes a fresh model, trains it
with :func:`~weightinit.reproduce.training.fit` and records the test accuracy. Runs are stored in
``<out>/bench.json`` as they finish, so an interrupted grid resumes where it stopped. The
summary takes, for each (architecture, depth, scheme), the learning rate with the best mean test
accuracy over the seeds, writes a markdown table (``bench.md``) and an accuracy-vs-depth figure
(``bench.png``), and reports, without gating on them, two targets: "auto" within 1 point of the
best scheme in every cell, and at depth 30 every activation-aware scheme at >= 95% of its
depth-4 accuracy. A scheme that refuses a model is recorded as refused, with its message.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import multiprocessing
import statistics
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from weightinit.reproduce.architectures import ACTIVATION_AWARE, ARCHITECTURES, PEER, initialize
from weightinit.reproduce.core import spread
from weightinit.reproduce.data import mnist1d
from weightinit.reproduce.training import evaluate, fit

__all__ = ["FULL", "QUICK", "Grid", "best", "measure", "peer_ratios", "run", "summarize", "targets"]


@dataclass(frozen=True)
class Grid:
    """What a grid runs: architectures, depths, schemes (None: every one that applies), seeds,
    the training examples used, of which the last ``validation`` are held out to choose the
    learning rate on, and, for a quick slice, the epochs and learning rates that replace each
    architecture's own."""

    architectures: tuple[str, ...]
    depths: tuple[int, ...]
    seeds: int
    train: int = 4000
    validation: int = 500
    schemes: tuple[str, ...] | None = None
    epochs: int | None = None
    lrs: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.validation < self.train:
            raise ValueError(f"Grid: validation must be in [0, train={self.train}), "
                             f"got {self.validation}")  # fmt: skip

    def runs(self, peer: bool) -> list[tuple[str, int, str, float, int]]:
        """Every (architecture, depth, scheme, lr, seed): shallow depths first (an interrupted
        grid has every architecture at the cheap depths), schemes interleaved innermost."""
        schemes = {name: self._schemes(name, peer) for name in self.architectures}
        return [
            (name, depth, s, lr, seed)
            for depth in self.depths
            for name in self.architectures
            for seed in range(self.seeds)
            for lr in self.lrs or ARCHITECTURES[name].lrs
            for s in schemes[name]
        ]

    def _schemes(self, name: str, peer: bool) -> list[str]:
        """The schemes run on architecture ``name``: its own, filtered by ``schemes``, and the
        ``lsuv`` package where it applies (plain SGD nets without channels or residual gains)."""
        arch = ARCHITECTURES[name]
        schemes = [s for s in arch.schemes if self.schemes is None or s in self.schemes]
        if peer and not arch.channels and arch.optimizer == "sgd" and name != "residual-mlp":
            schemes.append(PEER)
        return schemes


FULL = Grid(tuple(ARCHITECTURES), (4, 30, 100), seeds=3)
QUICK = Grid(("mlp-relu", "mlp-tanh", "residual-mlp"), (4, 30), seeds=1, train=2000, validation=0,
             schemes=("torch", "glorot", "he", "orthogonal", "lsuv", "auto", "fixup"),
             epochs=4, lrs=(0.01,))  # fmt: skip


def _key(name: str, depth: int, scheme: str, lr: float, seed: int) -> str:
    return f"{name}/{depth}/{scheme}/{lr:g}/{seed}"


def measure(
    name: str,
    depth: int,
    scheme: str,
    lr: float,
    seed: int,
    *,
    train: int = 4000,
    validation: int = 0,
    epochs: int | None = None,
) -> dict[str, Any]:
    """One run: architecture ``name`` at ``depth``, initialized by ``scheme`` (seeded), trained
    on the first ``train`` MNIST-1D examples but the last ``validation`` for ``epochs``
    (default: the architecture's) at ``lr``: its test accuracy (and validation accuracy, when
    examples are held out), final training loss, whether it diverged, and the seconds spent
    initializing and in all; or ``{"refused": message}`` when the scheme refuses the model."""
    arch = ARCHITECTURES[name]
    tune, task = mnist1d(channels=arch.channels).subset(train).holdout(validation)
    torch.manual_seed(seed)
    model = arch.build(depth)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a scheme's advice is in its plan, not the table
            initialize(model, scheme, task.x[:256], seed)
    except (ValueError, TypeError, NotImplementedError) as err:
        return {"refused": " ".join(str(err).split())[:300]}
    init_seconds = time.perf_counter() - start
    curve = fit(model, task, epochs=epochs or arch.epochs, lr=lr, seed=seed,
                optimizer=arch.optimizer)  # fmt: skip
    found = {"accuracy": curve.accuracy, "loss": curve.final, "diverged": curve.diverged,
             "init_seconds": init_seconds, "seconds": time.perf_counter() - start}  # fmt: skip
    if validation:
        found["validation"] = evaluate(model, tune)[1]
    return found


def _measure(job: tuple[tuple, Grid]) -> tuple[tuple, dict[str, Any]]:
    torch.set_num_threads(1)  # a worker process: one thread each
    return _measure_here(job)


def run(
    grid: Grid, out: str | Path, *, jobs: int = 1, console=None, peer: bool | None = None
) -> dict:
    """Run every run of ``grid`` not already stored in ``<out>/bench.json`` (which must have
    been made by the same grid), store each as it finishes, then write the summary (table and
    figure); returns the stored record. ``jobs`` > 1 runs that many worker processes (spawned,
    one torch thread each); the stored results do not depend on it, only the times do."""
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bench.json"
    peer = importlib.util.find_spec("lsuv") is not None if peer is None else peer
    config = {**asdict(grid), "peer": peer, "torch": torch.__version__,
              "threads": 1 if jobs > 1 else torch.get_num_threads(), "jobs": jobs}  # fmt: skip
    record = {"config": config, "runs": {}}
    varies = ("torch", "threads", "jobs")  # may change between sessions of one grid
    if path.exists():
        stored = json.loads(path.read_text())
        mine = _lists({k: v for k, v in config.items() if k not in varies})
        theirs = {k: v for k, v in stored["config"].items() if k not in varies}
        differ = [k for k in mine if mine[k] != theirs.get(k)]
        if differ:
            raise ValueError(
                f"{path} holds the runs of another grid (it differs in {', '.join(differ)}); "
                "name another --out folder, or delete bench.json to start again"
            )
        record["runs"] = stored["runs"]
    todo = [(r, grid) for r in grid.runs(peer) if _key(*r) not in record["runs"]]
    with contextlib.ExitStack() as stack:
        progress = stack.enter_context(Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True))  # fmt: skip
        task = progress.add_task(f"bench: {len(todo)} runs", total=len(todo))
        if jobs > 1:
            pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(jobs))
            done = pool.imap_unordered(_measure, todo)
        else:
            done = map(_measure_here, todo)
        for r, result in done:
            record["runs"][_key(*r)] = result
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(record, indent=0, allow_nan=True))
            tmp.replace(path)
            progress.update(task, advance=1, description=f"{r[0]} depth {r[1]}: {r[2]}")
    summarize(record, out)
    return record


def _measure_here(job: tuple[tuple, Grid]) -> tuple[tuple, dict[str, Any]]:
    run_, grid = job
    return run_, measure(*run_, train=grid.train, validation=grid.validation, epochs=grid.epochs)


def _lists(value: Any) -> Any:
    return json.loads(json.dumps(value))  # tuples as lists, as the stored JSON has them


def best(record: dict) -> dict[tuple[str, int, str], dict[str, Any]]:
    """For each (architecture, depth, scheme): the learning rate with the best mean validation
    accuracy over the seeds (test accuracy where no examples were held out), its mean test
    accuracy, the std over the seeds and the number of diverged runs; or
    ``{"refused": message}``.

    Example:
        >>> record = {"runs": {"a/4/he/0.1/0": {"accuracy": 0.5, "diverged": False},
        ...                    "a/4/he/0.1/1": {"accuracy": 0.7, "diverged": False},
        ...                    "a/4/he/0.01/0": {"accuracy": 0.4, "diverged": False}}}
        >>> best(record)[("a", 4, "he")]["lr"], round(best(record)[("a", 4, "he")]["mean"], 3)
        (0.1, 0.6)
    """
    grouped: dict[tuple[str, int, str], dict[float, list[dict]]] = {}
    for key, value in record["runs"].items():
        name, depth, scheme, lr, _ = key.split("/")
        grouped.setdefault((name, int(depth), scheme), {}).setdefault(float(lr), []).append(value)
    found = {}
    for cell, by_lr in grouped.items():
        runs = [v for vs in by_lr.values() for v in vs]
        if any("refused" in v for v in runs):
            found[cell] = {"refused": next(v["refused"] for v in runs if "refused" in v)}
            continue
        chosen_on = {lr: spread([v.get("validation", v["accuracy"]) for v in vs])[0]
                     for lr, vs in by_lr.items()}  # fmt: skip
        lr = max(chosen_on, key=lambda k: chosen_on[k] if math.isfinite(chosen_on[k]) else -1)
        scored = {lr: spread([v["accuracy"] for v in vs]) for lr, vs in by_lr.items()}
        found[cell] = {"lr": lr, "mean": scored[lr][0], "std": scored[lr][1],
                       "seeds": len(by_lr[lr]), "diverged": sum(v["diverged"] for v in by_lr[lr])}  # fmt: skip
    return found


def targets(cells: dict) -> dict[str, list[str]]:
    """The two targets, as lists of the cells that miss them (empty: met): "auto" within 1
    point of the best scheme of its cell, and each activation-aware scheme at depth 30 at 95%
    or more of its depth-4 accuracy.

    Example:
        >>> cell = lambda mean: {"mean": mean}
        >>> targets({("m", 4, "auto"): cell(0.80), ("m", 4, "he"): cell(0.85)})
        {'auto within 1 point of the best': ['m depth 4: auto 80.0%, he 85.0%'], \
'activation-aware at depth 30 >= 95% of depth 4': []}
    """
    missed_auto, missed_depth = [], []
    for name, depth in sorted({(n, d) for n, d, _ in cells}):
        scored = {s: c for (n, d, s), c in cells.items() if (n, d) == (name, depth) and "mean" in c}
        if "auto" in scored:
            top = max(scored, key=lambda s: scored[s]["mean"])
            gap = scored[top]["mean"] - scored["auto"]["mean"]
            if gap > 0.01:
                missed_auto.append(f"{name} depth {depth}: auto {scored['auto']['mean']:.1%}, "
                                   f"{top} {scored[top]['mean']:.1%}")  # fmt: skip
        if depth == 30:
            for s in ACTIVATION_AWARE:
                shallow = cells.get((name, 4, s), {})
                if s in scored and "mean" in shallow and scored[s]["mean"] < 0.95 * shallow["mean"]:
                    missed_depth.append(f"{name} {s}: {scored[s]['mean']:.1%} at depth 30, "
                                        f"{shallow['mean']:.1%} at depth 4")  # fmt: skip
    return {
        "auto within 1 point of the best": missed_auto,
        "activation-aware at depth 30 >= 95% of depth 4": missed_depth,
    }


def peer_ratios(record: dict) -> list[float]:
    """For each run of the peer, its initialization time over weightinit's "lsuv" time on the
    same architecture, depth, learning rate and seed.

    Example:
        >>> runs = {"m/4/lsuv/0.1/0": {"init_seconds": 0.01},
        ...         f"m/4/{PEER}/0.1/0": {"init_seconds": 0.03}}
        >>> peer_ratios({"runs": runs})
        [3.0]
    """
    found = []
    for key, value in record["runs"].items():
        name, depth, scheme, lr, seed = key.split("/")
        ours = record["runs"].get(f"{name}/{depth}/lsuv/{lr}/{seed}", {})
        if scheme == PEER and "init_seconds" in value and "init_seconds" in ours:
            found.append(value["init_seconds"] / ours["init_seconds"])
    return found


def summarize(record: dict, out: Path) -> str:
    """Write ``bench.md`` (a table per architecture: schemes by depth, best learning rate's
    mean ± std test accuracy, the best of each column in bold; then the targets) and
    ``bench.png``; returns the markdown."""
    cells = best(record)
    config = record["config"]
    intro = (
        f"MNIST-1D test accuracy, mean ± std over {config['seeds']} seed(s), at the learning "
        f"rate of the grid with the best mean validation accuracy; "
        f"{config['train'] - config['validation']} training examples, "
        f"{config['validation']} for validation (none: chosen on test accuracy) "
        f"(torch {config['torch']}, {config['threads']} thread(s))."
    )
    lines = [intro, ""]
    for name in dict.fromkeys(n for n, _, _ in cells):
        depths = sorted({d for n, d, _ in cells if n == name})
        schemes = list(dict.fromkeys(s for n, _, s in cells if n == name))
        top = {
            d: max((cells[name, d, s].get("mean", -1) for s in schemes), default=-1) for d in depths
        }
        lines += [f"**{name}**", "", "| scheme | " + " | ".join(f"depth {d}" for d in depths) + " |",
                  "|---|" + "---:|" * len(depths)]  # fmt: skip
        for s in schemes:
            row = []
            for d in depths:
                c = cells.get((name, d, s), {})
                if "refused" in c:
                    row.append("refused")
                    continue
                text = f"{c['mean']:.1%}" + (f" ± {c['std']:.1%}" if c["seeds"] > 1 else "")
                if c["seeds"] < config["seeds"]:
                    text += f" ({c['seeds']} of {config['seeds']} seeds)"
                text += f" (lr {c['lr']:g})"
                if c["diverged"]:
                    text += f", {c['diverged']} diverged"
                row.append(f"**{text}**" if c["mean"] == top[d] else text)
            lines.append(f"| {s} | " + " | ".join(row) + " |")
        lines.append("")
    grid = Grid(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()
                   if k in Grid.__dataclass_fields__})  # fmt: skip
    planned = len(grid.runs(config["peer"]))
    if len(record["runs"]) < planned:
        partial = (f"- partial: {len(record['runs'])} of {planned} runs so far; the same "
                   "command resumes the grid from bench.json, and the tables fill in")  # fmt: skip
        lines += [partial, ""]
    for target, missed in targets(cells).items():
        verdict = "met" if not missed else f"missed in {len(missed)} cell(s): " + "; ".join(missed)
        lines.append(f"- target, {target}: {verdict}")
    ratios = peer_ratios(record)
    if ratios:
        lines.append(f"- peer: the `lsuv` package's LSUV took {statistics.median(ratios):.2g}x "
                     f"weightinit's \"lsuv\" time to initialize (median over {len(ratios)} "
                     "pairs of runs on the same model, seed and batch, run one after the other)")  # fmt: skip
    text = "\n".join(lines) + "\n"
    (out / "bench.md").write_text(text, encoding="utf-8")
    _figure(cells, out / "bench.png")
    return text


def _figure(cells: dict, path: Path) -> None:
    from matplotlib.lines import Line2D

    from weightinit.reproduce.figures import figure, save

    names = list(dict.fromkeys(n for n, _, _ in cells))
    schemes = list(dict.fromkeys(s for _, _, s in cells))
    color = {s: f"C{k % 10}" for k, s in enumerate(schemes)}  # one color per scheme everywhere
    style = {s: "-" if k < 10 else "--" for k, s in enumerate(schemes)}
    depths = sorted({d for _, d, _ in cells})
    columns = min(4, len(names))
    fig, axes = figure(columns, math.ceil(len(names) / columns), width=3.6, height=2.8)
    for ax, name in zip(axes, names, strict=False):
        for s in dict.fromkeys(s for n, _, s in cells if n == name):
            points = sorted(
                (d, c) for (n, d, t), c in cells.items() if n == name and t == s and "mean" in c
            )
            if points:
                ax.errorbar([d for d, _ in points], [c["mean"] for _, c in points],
                            [c["std"] for _, c in points], label=s, marker=".", capsize=2, lw=1,
                            color=color[s], ls=style[s])  # fmt: skip
        ax.set(title=name, xscale="log", xlabel="depth", ylabel="test accuracy")
        ax.set_xticks(depths, [str(d) for d in depths])
        ax.minorticks_off()
        ax.axhline(0.1, color="grey", lw=0.6, ls=":")
    for ax in axes[len(names) :]:
        ax.axis("off")
    handles = [Line2D([], [], color=color[s], ls=style[s], marker=".") for s in schemes]
    fig.legend(handles, schemes, loc="lower center", ncol=min(len(schemes), 8), fontsize=8)
    save(fig, path, "MNIST-1D test accuracy vs depth (best learning rate; chance 10%)",
         bottom=0.06 + 0.03 * math.ceil(len(schemes) / 8))  # fmt: skip
