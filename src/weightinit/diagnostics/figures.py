"""Figures and pages for diagnostics (matplotlib, from the ``demo`` extra).

One report gives one figure: output std per layer, gradient std per layer (both log scale) and
the histogram of the Jacobian's singular values. Several reports (``compare``) are overlaid in
one figure, with histograms of the activations at a few depths.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

__all__ = ["figure", "page", "save_png"]

if TYPE_CHECKING:  # pragma: no cover
    from weightinit.diagnostics.report import Report


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - the extra is part of the test install
        raise ImportError(
            "plots need matplotlib: pip install -c constraints.txt 'weightinit[demo]'"
        ) from err
    return plt


def figure(reports: Mapping[str, Report], title: str = "", samples: Mapping | None = None):
    """A matplotlib figure overlaying ``reports`` (name -> Report); ``samples`` (name -> list of
    (depth label, 1-D array of activations)) adds activation histograms."""
    plt = _pyplot()
    panels = 3 + (1 if samples else 0)
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 4.0), constrained_layout=True)
    for name, report in reports.items():
        depth = range(1, len(report.layers) + 1)
        label = f"{name} ({report.verdict})"
        axes[0].plot(depth, [max(l.std, 1e-30) for l in report.layers], marker=".", label=label)
        grads = [l.grad_std if l.grad_std else float("nan") for l in report.layers]
        axes[1].plot(depth, grads, marker=".", label=label)
        positive = [v for v in report.singular_values if v > 0]
        if positive:
            axes[2].hist(positive, bins=_log_bins(reports), alpha=0.5, label=label)
    axes[0].set(title="Activation std per layer", xlabel="layer (execution order)",
                ylabel="std of layer output", yscale="log")  # fmt: skip
    axes[1].set(title="Gradient std per layer", xlabel="layer (execution order)",
                ylabel="std of d loss / d output", yscale="log")  # fmt: skip
    how = next(iter(reports.values())).jacobian if reports else ""
    axes[2].set(title=f"Jacobian singular values ({how})", xlabel="singular value (log scale)",
                ylabel="count", xscale="log")  # fmt: skip
    axes[2].axvline(1.0, color="gray", linestyle="--", linewidth=1)  # dynamical isometry
    for ax in axes[:3]:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    if samples:
        ax = axes[3]
        for name, series in samples.items():
            for depth, values in series:
                ax.hist(values, bins=60, histtype="step", density=True, label=f"{name}, {depth}")
        ax.set(title="Activation values at two depths", xlabel="activation value",
               ylabel="density (log scale)", yscale="log")  # fmt: skip
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return fig


def _log_bins(reports: Mapping[str, Report], count: int = 40):
    import numpy as np

    values = [v for r in reports.values() for v in r.singular_values if v > 0]
    if not values:
        return count
    low, high = min(values), max(values)
    if high / low < 1.01:
        low, high = low / 1.1, high * 1.1
    return np.geomspace(low, high, count)


def save_png(reports: Mapping[str, Report], path: str | Path, **kw) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = figure(reports, **kw)
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def page(reports: Mapping[str, Report], title: str, **kw) -> str:
    """One self-contained HTML page: the figure embedded, then each report's verdict and table."""
    buffer = io.BytesIO()
    fig = figure(reports, title=title, **kw)
    fig.savefig(buffer, format="png", dpi=110)
    _pyplot().close(fig)
    image = base64.b64encode(buffer.getvalue()).decode("ascii")
    sections = []
    for name, report in reports.items():
        rows = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in (
                l.name, l.module, l.activation or "-", l.mean, l.std, l.std_ratio, l.dead,
                l.saturated, l.grad_std, l.weight_grad_std, l.grad_to_weight)) + "</tr>"
            for l in report.layers
        )  # fmt: skip
        head = "".join(f"<th>{h}</th>" for h in (
            "layer", "module", "then", "mean", "std", "std/first", "dead", "saturated",
            "grad std", "dW std", "|dW|/|W|"))  # fmt: skip
        sv = report.singular_values
        jac = f"max {max(sv):.3g}, min {min(sv):.3g} ({report.jacobian})" if sv else report.jacobian
        sections.append(
            f"<h2>{html.escape(name)}: <span class='v {report.verdict}'>{report.verdict}</span>"
            f"</h2><p>{html.escape(', '.join(report.flags) or 'no other flags')}; Jacobian "
            f"singular values {jac}; output cosine similarity {report.output_cosine:.3f} "
            f"(inputs {report.input_cosine:.3f}).</p><table><tr>{head}</tr>{rows}</table>"
        )
    rules = "".join(
        f"<li><b>{k}</b>: {html.escape(v)}</li>"
        for k, v in next(iter(reports.values())).thresholds.items()
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
table {{ border-collapse: collapse; font-size: 13px; margin-bottom: 2em; }}
td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: right; }}
.v {{ padding: 0 6px; border-radius: 4px; color: white; background: #c0392b; }}
.v.healthy {{ background: #27ae60; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<img alt="signal propagation per layer" src="data:image/png;base64,{image}">
{"".join(sections)}
<h2>Verdicts</h2><p>Checked in this order; the first that holds names the run.</p><ul>{rules}</ul>
</body></html>
"""


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)
