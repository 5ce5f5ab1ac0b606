"""Diagnostics: the signal at every layer of a model, its verdict, tables, plots and HTML.

``diagnose(model, inputs)`` hooks every weighted layer for one forward and backward pass and
estimates the input-output Jacobian spectrum; :class:`Report` renders the result
(:mod:`weightinit.diagnostics.report`), :mod:`weightinit.diagnostics.figures` draws it.
"""

from weightinit.diagnostics.report import (
    THRESHOLDS,
    Comparison,
    LayerStats,
    Report,
    compare,
    diagnose,
    jacobian_singular_values,
)

__all__ = [
    "THRESHOLDS",
    "Comparison",
    "LayerStats",
    "Report",
    "compare",
    "diagnose",
    "jacobian_singular_values",
]
