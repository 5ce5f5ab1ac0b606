"""Reproductions: each paper's claim about initialization, measured here at CPU scale.

``weightinit reproduce --list`` lists them; ``weightinit reproduce NAME [--quick] [--seeds N]
[--out DIR]`` runs one (or ``all``): it trains on locally generated data (MNIST-1D, scikit-learn's
digits, synthetic tasks), draws the figure, prints the measured numbers next to the claim, says
whether the qualitative claim holds here and writes the results as JSON. docs/reproductions.md
shows every figure with the command that made it. Needs the ``reproduce`` extra
(scikit-learn, matplotlib, mnist1d, rich).
"""

from weightinit.reproduce.catalog import get, reproductions
from weightinit.reproduce.core import Context, Measure, Outcome, Reproduction, Result
from weightinit.reproduce.runner import run

__all__ = ["Context", "Measure", "Outcome", "Reproduction", "Result", "get", "reproductions", "run"]
