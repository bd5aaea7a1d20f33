"""The comparison table on the terminal (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from reports.compare import comparison_rows
from sim.engine import StrategyRun


def print_comparison(console: Console, summary: dict[str, Any], runs: list[StrategyRun]) -> None:
    """Print one column per strategy, one row per measurement."""
    table = Table(
        title=f"{summary['scenario']}: {summary['users']:,} users × {summary['days']} days "
        f"(seed {summary['seed']})",
        title_justify="left",
    )
    table.add_column("measurement", style="bold")
    for run in runs:
        table.add_column(run.strategy, justify="right", overflow="fold")
    for row in comparison_rows(summary, runs):
        table.add_row(row.label, *row.cells)
    console.print(table)
