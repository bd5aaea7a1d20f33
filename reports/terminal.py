"""Tables on the terminal (rich), laid out to fit the terminal's width.

A table wider than the terminal is not left to rich's column collapsing, which
cuts words (``batched-dedup-bu…``, ``$4,1…``): :func:`fitted_tables` gives each
column at least its longest word, wraps cells only between words, and when even
that is too wide splits the value columns over several tables, each repeating
the key columns (the measurement, or the strategy and size), so every strategy
name and every number is printed whole at any width from about 60 columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from reports.compare import comparison_rows
from reports.views import RunView
from sim.records import Records

FRAME = 3
"""Columns a table spends on each of its columns besides the text: a space of padding on
either side and the rule on its left (rich's default box, padding ``(0, 1)``)."""


@dataclass(frozen=True, slots=True)
class Column:
    """A column of a fitted table: its header (may hold line breaks), alignment, style."""

    header: str
    justify: Literal["left", "right"] = "right"
    style: str | None = None


@dataclass(frozen=True, slots=True)
class Line:
    """A row of a fitted table: one text per column, a row style, a rule below it."""

    cells: list[str]
    style: str | None = None
    end_section: bool = False


@dataclass(slots=True)
class _Extent:
    least: int = 0  # the longest word: narrower would cut it
    most: int = 0  # the longest line: wider is never needed
    texts: list[str] = field(default_factory=list)


def _extents(columns: list[Column], rows: list[Line]) -> list[_Extent]:
    extents = []
    for i, column in enumerate(columns):
        texts = [column.header, *(row.cells[i] for row in rows)]
        words = [cell_len(w) for t in texts for w in t.split()]
        lines = [cell_len(line) for t in texts for line in t.splitlines()]
        extents.append(_Extent(max(words, default=1), max(lines, default=1), texts))
    return extents


def _needed(extents: list[_Extent], chosen: list[int]) -> int:
    return sum(extents[i].least for i in chosen) + FRAME * len(chosen) + 1


def _groups(extents: list[_Extent], keys: int, width: int) -> list[list[int]]:
    """Value columns in order, cut into runs that fit ``width`` beside the key columns."""
    key_columns = list(range(keys))
    groups: list[list[int]] = [[]]
    for i in range(keys, len(extents)):
        if groups[-1] and _needed(extents, key_columns + groups[-1] + [i]) > width:
            groups.append([])
        groups[-1].append(i)
    return [key_columns + group for group in groups]


def _widths(extents: list[_Extent], chosen: list[int], keys: int, width: int) -> list[int]:
    """Each column's longest word, then the room left: value columns first, keys last.

    Value columns come first so that a figure such as ``2.82 / 6.03 / 8.33`` stays on
    one line while a label wraps between its words.
    """
    widths = {i: extents[i].least for i in chosen}
    spare = width - _needed(extents, chosen)
    for i in [c for c in chosen if c >= keys] + [c for c in chosen if c < keys]:
        grow = max(0, min(spare, extents[i].most - widths[i]))
        widths[i] += grow
        spare -= grow
    return [widths[i] for i in chosen]


def fitted_tables(
    columns: list[Column],
    rows: list[Line],
    width: int,
    keys: int = 1,
    title: str | None = None,
) -> list[Table]:
    """The rows as one table, or as several printed one after the other, within ``width``.

    The first ``keys`` columns are repeated in every table; the title goes on the
    first one, "(continued)" on the others. Words are never cut unless the key
    columns and a single value column are wider than ``width`` at their longest words.
    """
    extents = _extents(columns, rows)
    groups = _groups(extents, keys, width)
    tables = []
    for n, chosen in enumerate(groups):
        table = Table(
            title=title if n == 0 else "(continued)",
            title_justify="left",
        )
        fits = _needed(extents, chosen) <= width
        widths = _widths(extents, chosen, keys, width) if fits else [None] * len(chosen)
        for i, w in zip(chosen, widths, strict=True):
            c = columns[i]
            table.add_column(c.header, justify=c.justify, style=c.style, width=w, overflow="fold")
        for row in rows:
            table.add_row(
                *(row.cells[i] for i in chosen), style=row.style, end_section=row.end_section
            )
        tables.append(table)
    return tables


def print_comparison(
    console: Console, summary: dict[str, Any], runs: Sequence[Records | RunView]
) -> None:
    """Print one column per strategy, one row per measurement, within the console's width."""
    columns = [Column("measurement", "left", "bold"), *(Column(r.strategy) for r in runs)]
    rows = [Line([row.label, *row.cells]) for row in comparison_rows(summary, runs)]
    title = (
        f"{summary['scenario']}: {summary['users']:,} users × {summary['days']} days "
        f"(seed {summary['seed']})"
    )
    for table in fitted_tables(columns, rows, console.width, title=title):
        console.print(table)


def print_calibration(console: Console, profile: dict[str, Any]) -> None:
    """Print a calibration profile: similarity by pair kind, store latency by layout."""
    sims = Table(title=f"similarities ({profile['embedder']})", title_justify="left")
    for col in ("pair", "n", "mean", "sd", "p05", "p50", "p95"):
        sims.add_column(col, justify="left" if col == "pair" else "right")
    for kind, s in profile["similarity"]["pairs"].items():
        sims.add_row(kind, *(f"{s[k]}" for k in ("n", "mean", "sd", "p05", "p50", "p95")))
    console.print(sims)
    if "store" not in profile:
        return
    store = Table(title="ChromaDB latency (ms)", title_justify="left")
    for col in ("layout", "users", "add p50", "add p99", "query p50", "query p99", "cross-user"):
        store.add_column(col, justify="left" if col == "layout" else "right")
    for layout, sizes in profile["store"].items():
        for users, s in sizes.items():
            store.add_row(
                layout,
                users,
                *(
                    f"{s[k] * 1000:.1f}"
                    for k in ("add_p50_s", "add_p99_s", "query_p50_s", "query_p99_s")
                ),
                str(s["cross_user_results"]),
            )
    console.print(store)


def print_check(
    console: Console, comparisons: list, invariants: list = (), title: str = "memsim check"
) -> None:
    """Print a check, one block of rows per strategy: its metrics, then its invariants.

    A metric row reads baseline, now, change, verdict; an invariant row reads its
    bound (``limit``) and the worst value measured (``now``). The title says whether
    the check passed; every row that made it fail says ``regressed`` or ``FAILED``.
    Strategies head their blocks instead of filling a column, so that the table
    fits 80 columns.
    """
    from rich import box  # imported here: this module's imports belong to its other tables
    from rich.text import Text

    from reports.check import fmt_bound, fmt_change, fmt_number, outcome

    verdict = outcome(comparisons, invariants)
    table = Table(
        title=f"{title}: {verdict}",
        title_justify="left",
        title_style="bold red" if verdict != "passed" else "bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),  # with the box's blank rule: two spaces between columns
    )
    table.add_column("metric", overflow="fold")
    for col in ("baseline", "now", "change"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    styles = {"regressed": "bold red", "FAILED": "bold red", "improved": "green", "skipped": "dim"}
    names = [c.strategy for c in comparisons] + [i.strategy for i in invariants]
    for n, strategy in enumerate(dict.fromkeys(names)):
        if n:
            table.add_row()  # a blank line between strategies
        table.add_row(Text(f"strategy: {strategy}", style="bold"))
        for c in (c for c in comparisons if c.strategy == strategy):
            table.add_row(
                c.metric,
                fmt_number(c.baseline),
                fmt_number(c.now),
                fmt_change(c.change),
                Text(c.verdict, style=styles.get(c.verdict, "")),
            )
        rows = [i for i in invariants if i.strategy == strategy]
        if rows:
            table.add_row(Text("invariant", style="italic"), Text("limit", style="italic"))
        for i in rows:
            table.add_row(
                i.invariant.measure,
                fmt_bound(i.invariant),
                fmt_number(i.invariant.measured),
                "",
                Text(i.verdict, style=styles.get(i.verdict, "")),
            )
    console.print(table)
