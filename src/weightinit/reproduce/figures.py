"""The figure helpers the reproductions share (matplotlib's Agg canvas, no pyplot): a mean curve
with a band of one standard deviation over the seeds, and saving a figure where the run's output
goes."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["band", "figure", "save"]


def figure(
    columns: int = 1, rows: int = 1, *, width: float = 4.2, height: float = 3.2
) -> tuple[Figure, np.ndarray]:
    """A matplotlib figure and its axes (always a flat array), drawn off screen with the Agg
    canvas, without pyplot: the caller's backend (a notebook's) is left alone.

    Example:
        >>> fig, axes = figure(2)
        >>> len(axes)
        2
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * columns, height * rows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, columns, squeeze=False)
    return fig, axes.ravel()


def band(
    ax: Axes, x: Sequence[float], runs: Sequence[Sequence[float]], label: str, **style: Any
) -> None:
    """Plot the mean over ``runs`` (one sequence per seed, NaN where a run had diverged) against
    ``x``, with a band of one standard deviation when there are several seeds.

    Example:
        >>> fig, (ax,) = figure()
        >>> band(ax, [0, 1, 2], [[1.0, 2.0, 3.0], [3.0, 2.0, float("nan")]], "loss")
        >>> [round(float(v), 1) for v in ax.lines[0].get_ydata()]
        [2.0, 2.0, 3.0]
    """
    values = np.asarray(runs, dtype=float).reshape(len(runs), -1)
    with warnings.catch_warnings():  # a point where every seed diverged stays NaN: a gap
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
    (line,) = ax.plot(x, mean, label=label, **style)
    if len(runs) > 1:
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)


def save(fig: Figure, path: Path, title: str | None = None, *, bottom: float = 0.0) -> Path:
    """Write ``fig`` to ``path`` (PNG, 110 dpi) and return the path; ``bottom`` keeps that
    fraction of the height free below the axes (for a figure-wide legend)."""
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if bottom:
        fig.subplots_adjust(bottom=bottom)
    fig.savefig(path, dpi=110)
    return path
