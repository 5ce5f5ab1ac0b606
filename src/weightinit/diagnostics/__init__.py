"""Diagnostics: the signal at every layer of a model, its verdict, tables, plots and HTML.

``diagnose(model, inputs)`` hooks every weighted layer for one forward and backward pass and
estimates the input-output Jacobian spectrum; :class:`Report` renders the result
(:mod:`weightinit.diagnostics.report`), :mod:`weightinit.diagnostics.figures` draws it.
"""

# the public names, listed once, in report.__all__
from weightinit.diagnostics.report import *
from weightinit.diagnostics.report import __all__  # noqa: F401
