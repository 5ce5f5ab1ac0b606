"""What a reproduction is: a paper's claim, an experiment that measures it here, and the verdict.

A :class:`Reproduction` names the paper (and its figure or table), states the qualitative claim,
and holds the experiment: a function of a :class:`Context` (quick or full, the seeds, the output
folder, the progress bar) that returns an :class:`Outcome`: the measured numbers next to what the
paper claims (:class:`Measure`), whether the qualitative claim holds here, a one-sentence verdict
(an honest "does not hold here, because ..." is a result), and the figures it drew.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "FULL_SEEDS", "QUICK_SEEDS", "Context", "Measure", "Outcome", "Reproduction", "Result", "spread"
]  # fmt: skip

FULL_SEEDS, QUICK_SEEDS = 3, 1  # by default: error bars in the full run, speed in --quick


def spread(values: Sequence[float]) -> tuple[float, float]:
    """``(mean, std)`` of the finite ``values`` (std over seeds, 0 for one value; both NaN when
    none is finite).

    Example:
        >>> spread([1.0, 3.0, float("nan")])
        (2.0, 1.4142135623730951)
    """
    finite = [float(v) for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


@dataclass(frozen=True)
class Measure:
    """One measured quantity: its value per seed, and what the paper reports or implies for it.

    Example:
        >>> m = Measure("loss, He", [0.91, 0.93], "decreases")
        >>> m.text()
        '0.92 ± 0.014'
        >>> Measure("test accuracy, He", [0.91, 0.93], fmt=".1%").text()
        '92.0% ± 1.4%'
    """

    label: str
    values: tuple[float, ...]
    expected: str = ""
    fmt: str = ".3g"

    def __init__(self, label: str, values: Iterable[float], expected: str = "", fmt: str = ".3g"):
        object.__setattr__(self, "label", label)
        object.__setattr__(self, "values", tuple(float(v) for v in values))
        object.__setattr__(self, "expected", expected)
        object.__setattr__(self, "fmt", fmt)

    @property
    def mean(self) -> float:
        """The mean of the finite values (NaN when none is)."""
        return spread(self.values)[0]

    @property
    def std(self) -> float:
        """The standard deviation of the finite values over the seeds (0 for one)."""
        return spread(self.values)[1]

    def text(self) -> str:
        """The mean, with ``± std`` over the seeds when there are several, and ``(k of n
        seeds)`` when only ``k`` of the ``n`` values are finite (the others: diverged, or never
        reached).

        Example:
            >>> Measure("first step below 0.05", [1350, float("nan"), 1500]).text()
            '1.42e+03 ± 1.1e+02 (2 of 3 seeds)'
        """
        mean, std = spread(self.values)
        finite = self.finite
        if finite < 2:
            text = format(mean, self.fmt)
        else:
            spread_fmt = self.fmt if self.fmt.endswith("%") else ".2g"  # percentages alike
            text = f"{mean:{self.fmt}} ± {std:{spread_fmt}}"
        if 0 < finite < len(self.values):
            text += f" ({finite} of {len(self.values)} seeds)"
        return text

    @property
    def finite(self) -> int:
        """How many of the values are finite."""
        return sum(math.isfinite(v) for v in self.values)

    def to_dict(self) -> dict[str, Any]:
        """The measure as JSON-ready data: label, text, mean, std, values (null: not finite)."""
        mean, std = spread(self.values)
        return {"label": self.label, "text": self.text(), "mean": _finite(mean),
                "std": _finite(std), "values": [_finite(v) for v in self.values],
                "expected": self.expected}  # fmt: skip


@dataclass
class Outcome:
    """What an experiment returns: the measures, whether the claim holds here and why."""

    measures: list[Measure]
    holds: bool
    verdict: str
    figures: list[Path] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # raw curves and numbers, for the JSON


@dataclass
class Context:
    """What an experiment is given: ``quick`` (a small slice for tests and CI, about 20 s) or
    the full run, the ``seeds``, the ``out`` folder for its figures, and ``advance`` to move the
    progress bar (``total`` steps, announced by :meth:`steps`)."""

    quick: bool
    seeds: tuple[int, ...]
    out: Path
    _progress: Callable[[int | None, int], None] = lambda total, advance: None

    def steps(self, total: int) -> None:
        """Announce how many :meth:`advance` calls the experiment will make."""
        self._progress(total, 0)

    def advance(self, n: int = 1) -> None:
        self._progress(None, n)

    def figure(self, name: str) -> Path:
        """The path for a figure named ``name`` (a PNG in :attr:`out`)."""
        self.out.mkdir(parents=True, exist_ok=True)
        return self.out / f"{name}.png"


@dataclass(frozen=True)
class Reproduction:
    """A paper's claim and the experiment that measures it here.

    ``number`` orders the list; ``paper`` names the paper and its figure or table; ``claim`` is
    the qualitative statement the verdict is about; ``setup`` says what is run, at what scale.
    """

    number: int
    name: str
    title: str
    paper: str
    claim: str
    setup: str
    experiment: Callable[[Context], Outcome]


@dataclass
class Result:
    """A finished run: the reproduction, the context it ran in, its outcome and its duration."""

    reproduction: Reproduction
    quick: bool
    seeds: tuple[int, ...]
    outcome: Outcome
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        r, o = self.reproduction, self.outcome
        return {
            "name": r.name, "number": r.number, "title": r.title, "paper": r.paper,
            "claim": r.claim, "setup": r.setup, "quick": self.quick, "seeds": list(self.seeds),
            "seconds": round(self.seconds, 1), "holds": o.holds, "verdict": o.verdict,
            "measures": [m.to_dict() for m in o.measures],
            "figures": [p.name for p in o.figures], "data": _jsonable(o.data),
        }  # fmt: skip

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=False)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no NaN: null


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return _finite(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return _jsonable(value.tolist())
    return value
