"""The figure helpers the reproductions share (matplotlib, Agg): a mean curve with a band of one
standard deviation over the seeds, and saving a figure where the run's output goes."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["band", "figure", "save"]


def figure(columns: int = 1, rows: int = 1, *, width: float = 4.2, height: float = 3.2):
    """A matplotlib figure and its axes (always a flat array), drawn off screen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    return fig, axes.ravel()


def band(ax, x: Sequence[float], runs: Sequence[Sequence[float]], label: str, **style) -> None:
    """Plot the mean over ``runs`` (one sequence per seed, NaN where a run had diverged) against
    ``x``, with a band of one standard deviation when there are several seeds."""
    values = np.asarray(runs, dtype=float).reshape(len(runs), -1)
    with warnings.catch_warnings():  # a point where every seed diverged stays NaN: a gap
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
    (line,) = ax.plot(x, mean, label=label, **style)
    if len(runs) > 1:
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)


def save(fig, path: Path, title: str | None = None) -> Path:
    """Write ``fig`` to ``path`` (PNG, 110 dpi), close it and return the path."""
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
