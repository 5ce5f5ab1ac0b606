"""Plain-text tables: aligned columns, long cells wrapped, no dependency."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from itertools import zip_longest


def format_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    max_widths: Sequence[int | None] | None = None,
) -> str:
    """Left-aligned columns two spaces apart, a rule under the header; a cell longer than its
    column's ``max_widths`` entry wraps onto continuation lines."""
    limits = list(max_widths or [None] * len(headers))

    def wrap(text: object, limit: int | None) -> list[str]:
        text = str(text)
        return textwrap.wrap(text, limit) or [""] if limit and len(text) > limit else [text]

    wrapped = [[wrap(c, lim) for c, lim in zip(row, limits)] for row in rows]
    widths = [
        max([len(h), *(len(line) for row in wrapped for line in row[i])])
        for i, h in enumerate(headers)
    ]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    out = [line(headers), "  ".join("-" * w for w in widths)]
    for row in wrapped:
        out.extend(line(parts) for parts in zip_longest(*row, fillvalue=""))
    return "\n".join(out)
