"""The numbers kernel of every report: rounding, the month, JSON text, tables, figures.

``summary.json``'s promise — the same scenario and seed give the same bytes —
rests on :func:`rounded` and :func:`dumps`; every file memsim writes rounds and
serializes through them.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable
from typing import Any

DIGITS = 6
"""Decimals kept in the files: a millionth of a dollar, a microsecond."""
SIGNIFICANT = 6
"""Significant digits kept at least by :func:`rounded_significant`, so small costs keep theirs."""
DAYS_PER_MONTH = 30
"""A month of the reports: USD per month is the daily mean × 30."""


def rounded(x: float) -> float:
    """``x`` rounded to :data:`DIGITS` decimals; -0.0 and NaN become 0.0 so output is stable."""
    x = float(x)
    return 0.0 if math.isnan(x) or x == 0 else round(x, DIGITS)


def rounded_significant(x: float) -> float:
    """At least :data:`DIGITS` decimals and :data:`SIGNIFICANT` significant digits.

    For statistics over runs whose values can be tiny (a USD per user-turn).
    Not finite, or 0: 0.0.
    """
    x = float(x)
    if x == 0 or not math.isfinite(x):
        return 0.0
    return round(x, max(DIGITS, SIGNIFICANT - 1 - math.floor(math.log10(abs(x)))))


def dumps(document: dict[str, Any]) -> str:
    """The exact text of a JSON file memsim writes (indented, UTF-8, a final newline)."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def md_table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    """A Markdown table's lines."""
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def figure_bytes(fig: Any, fmt: str, **kwargs: Any) -> bytes:
    """A matplotlib figure as ``fmt`` bytes on a white background, drawn off-screen (Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buffer, format=fmt, facecolor="white", **kwargs)
    return buffer.getvalue()
