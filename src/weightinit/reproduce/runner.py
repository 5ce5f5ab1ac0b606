"""Run reproductions: seeds, threads and output folder set up, a rich progress bar, the measured
numbers printed next to the claims, and one JSON file (plus the figures) per reproduction."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from weightinit.reproduce.catalog import get, reproductions
from weightinit.reproduce.core import FULL_SEEDS, QUICK_SEEDS, Context, Reproduction, Result
from weightinit.reproduce.page import write_page

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["EXTRA", "INSTALL", "print_result", "run", "select"]

EXTRA = ("matplotlib", "mnist1d", "rich", "sklearn")  # the modules of the `reproduce` extra
INSTALL = 'pip install "weightinit[reproduce]"'


def select(names: Sequence[str]) -> list[Reproduction]:
    """The reproductions named (``"all"``: every one), in the order of the list, each once."""
    if "all" in names:
        return reproductions()
    chosen = {r.name: r for r in map(get, names)}
    return sorted(chosen.values(), key=lambda r: r.number)


def run(
    names: Sequence[str],
    *,
    quick: bool = False,
    seeds: int | None = None,
    out: str | Path = "weightinit-reproduce",
    threads: int = 1,
    page: str | Path | None = None,
    console: Console | bool | None = None,
) -> list[Result]:
    """Run each reproduction named, write ``<out>/<name>.json`` and its figures, print its
    numbers and verdict, and write ``page`` (markdown; default ``<out>/README.md``) from every
    result in ``out``; returns the results. ``console=False`` prints nothing. Each experiment
    runs inside ``torch.random.fork_rng``: the caller's random state is left as it was.
    ``threads`` sets torch's intra-op threads for the run (restored afterwards): one thread
    gives steady timings on a shared machine.

    Example:
        >>> import tempfile
        >>> [r] = run(["symmetry"], quick=True, out=tempfile.mkdtemp(), console=False)
        >>> r.outcome.holds
        True
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    chosen = select(names)
    n_seeds = seeds if seeds is not None else (QUICK_SEEDS if quick else FULL_SEEDS)
    if n_seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {n_seeds}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    quiet = console is False
    console = Console(quiet=quiet) if console in (None, False) else console
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    results = []
    try:
        with Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(), console=console, transient=True, disable=quiet,
        ) as progress:  # fmt: skip
            for r in chosen:
                task = progress.add_task(f"{r.number}. {r.name}", total=None)

                def report(total: int | None, advance: int, task=task) -> None:
                    if total is not None:
                        progress.update(task, total=total)
                    progress.advance(task, advance)

                context = Context(quick, tuple(range(n_seeds)), out, report)
                start = time.perf_counter()
                with torch.random.fork_rng():  # the caller's random state is left as it was
                    outcome = r.experiment(context)
                result = Result(r, quick, context.seeds, outcome, time.perf_counter() - start)
                progress.remove_task(task)
                (out / f"{r.name}.json").write_text(result.to_json() + "\n", encoding="utf-8")
                print_result(result, console)
                results.append(result)
    finally:
        torch.set_num_threads(previous)
    write_page(out, page if page is not None else out / "README.md")
    return results


def print_result(result: Result, console: Console) -> None:
    """The claim, the measured numbers next to what the paper reports, and the verdict."""
    from rich.table import Table

    r, o = result.reproduction, result.outcome
    mode = "quick" if result.quick else "full"
    table = Table(title=f"{r.number}. {r.title}", title_justify="left", caption_justify="left",
                  caption=f"{r.paper}. {mode} run, {len(result.seeds)} seed(s), "
                          f"{result.seconds:.0f} s")  # fmt: skip
    table.add_column("measured")
    table.add_column("value", justify="right")
    table.add_column("paper / expected")
    for m in o.measures:
        table.add_row(m.label, m.text(), m.expected)
    console.print(table)
    console.print(f"claim: {r.claim}")
    mark = "[green]holds[/green]" if o.holds else "[red]does not hold here[/red]"
    console.print(f"{mark}: {o.verdict}")
    for path in o.figures:
        console.print(f"figure: {path}")
    console.print()
