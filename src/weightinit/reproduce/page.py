"""The page that shows every reproduction: written from the JSON results and figures in an
output folder, so that ``weightinit reproduce all --out docs/reproductions --page
docs/reproductions.md`` regenerates the whole page, numbers and figures, in one command."""

from __future__ import annotations

import importlib
import inspect
import json
import os
from pathlib import Path
from typing import Any

from weightinit.reproduce.catalog import get
from weightinit.reproduce.core import FULL_SEEDS, QUICK_SEEDS

__all__ = ["write_page"]

HEADER = """# Reproductions: each paper's claim, measured here

Every section below states a claim from the literature on initialization, the experiment that
tests it at CPU scale (locally generated data: MNIST-1D, scikit-learn's digits, synthetic tasks),
the figure, the measured numbers next to what the paper reports, and whether the qualitative
claim holds here. A claim that does not hold at this scale says so, with the numbers and the
likely reason. This page is generated: `{command}` reruns every experiment (full runs:
{seeds} seeds, one torch thread) and rewrites the page, figures and JSON results; the command
under each section reruns that one. `--quick` runs a small slice of each in seconds (what the tests run).
"""


def _command(data: dict[str, Any], out: str) -> str:
    flags = " --quick" if data["quick"] else ""
    default = QUICK_SEEDS if data["quick"] else FULL_SEEDS
    if len(data["seeds"]) != default:
        flags += f" --seeds {len(data['seeds'])}"
    return f"weightinit reproduce {data['name']}{flags} --out {out}"


def _why(name: str) -> str:
    module = importlib.import_module(get(name).experiment.__module__)
    paragraphs = inspect.cleandoc(module.__doc__ or "").split("\n\n")
    return "\n\n".join(paragraphs[1:])  # the first paragraph is the title


def write_page(out: str | Path, page: str | Path) -> Path:
    """Write ``page`` (markdown) from every reproduction result in ``out``, in the order of
    the list: a summary table, then per reproduction the paper, claim, setup, why, figure,
    measured numbers, verdict and the command that made them. Returns the page's path."""
    out, page = Path(out), Path(page)
    results = []
    for path in sorted(out.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if "claim" in data and "measures" in data:
            results.append(data)
    results.sort(key=lambda d: d["number"])
    where = os.path.relpath(out, page.parent)
    command = f"weightinit reproduce all --out {out} --page {page}"
    lines = [HEADER.format(command=command, seeds=FULL_SEEDS), "",
             "| # | claim | holds here | run |", "|---|---|---|---|"]  # fmt: skip
    for d in results:
        anchor = f"{d['number']}-{d['name']}"
        mode = "quick" if d["quick"] else "full"
        lines.append(f"| {d['number']} | [{d['title']}](#{anchor}) | "
                     f"{'yes' if d['holds'] else '**no**'} | {mode}, {len(d['seeds'])} seed(s), "
                     f"{d['seconds']:.0f} s |")  # fmt: skip
    for d in results:
        lines += ["", f'<a id="{d["number"]}-{d["name"]}"></a>', "",
                  f"## {d['number']}. {d['title']}", "",
                  f"**Paper:** {d['paper']}.  ", f"**Claim:** {d['claim']}.  ",
                  f"**Setup:** {d['setup']}.", "", _why(d["name"]), ""]  # fmt: skip
        lines += [f"![{d['title']}]({where}/{f})" for f in d["figures"]]
        lines += ["", "| measured | value | paper / expected |", "|---|---:|---|"]
        lines += [f"| {m['label']} | {m['text']} | {m['expected']} |" for m in d["measures"]]
        verdict = "Holds here" if d["holds"] else "Does not hold here"
        lines += ["", f"**{verdict}:** {d['verdict']}.", "", "```bash",
                  _command(d, str(out)), "```"]  # fmt: skip
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return page
