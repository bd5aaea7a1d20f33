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


def print_check(console: Console, comparisons: list) -> None:
    """Print a check: metric, baseline, now, change, verdict."""
    table = Table(title="memsim check", title_justify="left")
    for col in ("strategy", "metric", "baseline", "now", "change", "verdict"):
        table.add_column(
            col, justify="left" if col in ("strategy", "metric", "verdict") else "right"
        )
    styles = {"regressed": "bold red", "improved": "green", "ok": ""}
    for c in comparisons:
        change = "new" if abs(c.change) == float("inf") else f"{c.change:+.1%}"
        table.add_row(
            c.strategy,
            c.metric,
            f"{c.baseline:,.6g}",
            f"{c.now:,.6g}",
            change,
            f"[{styles[c.verdict]}]{c.verdict}[/]" if styles[c.verdict] else c.verdict,
        )
    console.print(table)
