"""The numbers behind each chart, as small DataFrames; no plotting here.

Every function is pure: it reads the summary or a saved frame (with its
``strategy`` column) and returns a tidy frame with one row per plotted point or
bar. Days are numbered from 1, as in ``report.md``. Strategies keep the run's
order (the order of ``summary["strategies"]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from reports.numbers import DAYS_PER_MONTH
from reports.summary import TOKEN_PURPOSES
from reports.views import INJECTED_BIN_EDGES, RunView, as_views
from sim.records import Records

PROMPT_PARTS = ("system", "memory", "history", "user")


def _names(summary: dict[str, Any]) -> list[str]:
    return list(summary["strategies"])


def _ordered(summary: dict[str, Any], runs: list[RunView]) -> list[RunView]:
    """``runs`` in the order of ``summary["strategies"]``."""
    by_name = {run.strategy: run for run in runs}
    return [by_name[name] for name in _names(summary)]


def cost_per_day(summary: dict[str, Any]) -> pd.DataFrame:
    """Billed tokens and USD per simulated day, by strategy.

    Columns: ``strategy, day, tokens, usd`` (the summary's per-day lists).
    """
    rows = [
        (name, day + 1, tokens, usd)
        for name, block in summary["strategies"].items()
        for day, (tokens, usd) in enumerate(
            zip(block["tokens_per_day"], block["usd_per_day"], strict=True)
        )
    ]
    return pd.DataFrame(rows, columns=["strategy", "day", "tokens", "usd"])


def memories_over_time(summary: dict[str, Any], runs: list[RunView]) -> pd.DataFrame:
    """Memories per user at the end of each simulated day: mean and p99, by strategy.

    Columns: ``strategy, day, mean, p99`` (``store.parquet`` snapshots).
    """
    rows = [
        (run.strategy, s.day + 1, float(s.mean), float(s.p99))
        for run in _ordered(summary, runs)
        for s in run.store_days
    ]
    return pd.DataFrame(rows, columns=["strategy", "day", "mean", "p99"])


def latency_per_day(summary: dict[str, Any], runs: list[RunView]) -> pd.DataFrame:
    """Turn latency percentiles per simulated day, over turns that got a reply.

    Columns: ``strategy, day, turns, p50, p95, p99``; a day without such turns has
    no row.
    """
    rows = [
        (run.strategy, d.day + 1, d.turns, d.p50, d.p95, d.p99)
        for run in _ordered(summary, runs)
        for d in run.latency_per_day
    ]
    return pd.DataFrame(rows, columns=["strategy", "day", "turns", "p50", "p95", "p99"])


def _bin_label(lo: int, hi: int | None) -> str:
    if lo == 0 and hi == 1:
        return "0"
    return f"{lo:,}+" if hi is None else f"{lo:,}–{hi - 1:,}"


def injected_tokens_histogram(summary: dict[str, Any], runs: list[RunView]) -> pd.DataFrame:
    """How many memory tokens each prompt carried: prompts per fixed bin, by strategy.

    Columns: ``strategy, bin, lo, hi, prompts, share``; ``lo`` inclusive, ``hi``
    exclusive (``-1``: no upper bound); ``share`` of the strategy's prompts.
    """
    edges = [*INJECTED_BIN_EDGES, None]
    rows = []
    for run in _ordered(summary, runs):
        total = sum(run.injected)
        for i, count in enumerate(run.injected):
            lo, hi = edges[i], edges[i + 1]
            share = float(count / total) if total else 0.0
            rows.append(
                (run.strategy, _bin_label(lo, hi), lo, -1 if hi is None else hi, count, share)
            )
    return pd.DataFrame(rows, columns=["strategy", "bin", "lo", "hi", "prompts", "share"])


def pareto_front(cost: list[float], recall: list[float]) -> list[bool]:
    """Which points no other point dominates.

    A point dominates another when it costs no more and recalls no less, and is
    strictly better in one of the two; identical points do not dominate each other.
    """
    points = list(zip(cost, recall, strict=True))
    return [
        not any(
            c2 <= c and r2 >= r and (c2 < c or r2 > r)
            for j, (c2, r2) in enumerate(points)
            if j != i
        )
        for i, (c, r) in enumerate(points)
    ]


def recall_vs_cost(summary: dict[str, Any]) -> pd.DataFrame:
    """One point per strategy: monthly USD (``usd_total / days × 30``) against recall.

    Columns: ``strategy, usd_per_month, recall, pareto``. Strategies whose run asked
    no probe question (``probes`` = 0: recall unavailable) have no point.
    """
    days = summary["days"]
    names = [n for n in _names(summary) if summary["strategies"][n].get("probes", 1)]
    monthly = [summary["strategies"][n]["usd_total"] / days * DAYS_PER_MONTH for n in names]
    recall = [summary["strategies"][n]["recall"] for n in names]
    frame = pd.DataFrame({"strategy": names, "usd_per_month": monthly, "recall": recall})
    frame["pareto"] = pareto_front(monthly, recall)
    return frame


def tokens_by_purpose(summary: dict[str, Any]) -> pd.DataFrame:
    """Billed tokens over the whole run by call purpose (chat, extract, …), by strategy.

    Columns: ``strategy, purpose, tokens``.
    """
    rows = [
        (name, purpose, block["tokens_by_purpose"].get(purpose, 0))
        for name, block in summary["strategies"].items()
        for purpose in TOKEN_PURPOSES
    ]
    return pd.DataFrame(rows, columns=["strategy", "purpose", "tokens"])


def prompt_parts(summary: dict[str, Any], runs: list[RunView]) -> pd.DataFrame:
    """Mean chat-prompt tokens per turn by part (system, memory, history, user), by strategy.

    Columns: ``strategy, part, tokens`` (the figures of ``report.md``'s parts table).
    """
    rows = []
    for run in _ordered(summary, runs):
        means = run.parts()
        rows += [(run.strategy, part, means[part]) for part in PROMPT_PARTS]
    return pd.DataFrame(rows, columns=["strategy", "part", "tokens"])


def prompt_cache_per_day(summary: dict[str, Any]) -> pd.DataFrame:
    """LLM input tokens per simulated day, cached and not, by strategy.

    Columns: ``strategy, day, cached, uncached`` (the summary's per-day lists; a
    summary without these figures reads as all uncached).
    """
    rows = []
    for name, block in summary["strategies"].items():
        inputs = block.get("llm_input_tokens_per_day") or [0] * len(block["tokens_per_day"])
        cached = block.get("cached_input_tokens_per_day") or [0] * len(inputs)
        rows += [
            (name, day + 1, hit, total - hit)
            for day, (hit, total) in enumerate(zip(cached, inputs, strict=True))
        ]
    return pd.DataFrame(rows, columns=["strategy", "day", "cached", "uncached"])


def chart_data(
    summary: dict[str, Any], records: Sequence[Records | RunView]
) -> dict[str, pd.DataFrame]:
    """Every chart's numbers, keyed by name, in the order the report shows them."""
    runs = as_views(records, summary["days"])
    return {
        "cost_per_day": cost_per_day(summary),
        "recall_vs_cost": recall_vs_cost(summary),
        "memories_over_time": memories_over_time(summary, runs),
        "latency_per_day": latency_per_day(summary, runs),
        "injected_tokens_histogram": injected_tokens_histogram(summary, runs),
        "tokens_by_purpose": tokens_by_purpose(summary),
        "prompt_parts": prompt_parts(summary, runs),
        "prompt_cache_per_day": prompt_cache_per_day(summary),
    }
