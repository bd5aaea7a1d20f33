"""What the reports show of a strategy's records beyond ``summary.json``, read piece by piece.

report.md, report.html, the charts and the terminal table need a few figures
the summary does not hold: the mean prompt by part, the latency percentiles of
each day, the memory block's histogram and the store's size at the end of each
day. :func:`view` computes them from a run's records, held in memory or read
back a shard at a time (:meth:`~sim.records.Records.pieces`), with memory that
does not grow with the run: sums and value counts add up piece by piece, and each
day's latencies are read a span of days at a time (:data:`LATENCY_BATCH`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from reports.exact import CountedPercentiles
from sim.records import Records
from sim.workload import SECONDS_PER_DAY

PROMPT_COLUMNS = (
    "prompt_tokens",
    "system_tokens",
    "memory_tokens",
    "history_tokens",
    "user_tokens",
)
"""The prompt's billed input tokens and its parts (``turns`` columns)."""
INJECTED_BIN_EDGES = (0, 1, 100, 200, 400, 800, 1600, 3200)
"""Memory tokens per prompt: fixed bin edges, the same for every run, so that two
reports can be compared by eye. The first bin holds prompts with no memories."""
LATENCY_BATCH = 1_000_000
"""Answered turns' latencies read at once (8 MB) for the per-day percentiles."""


@dataclass(frozen=True, slots=True)
class DayLatency:
    """One simulated day's answered turns (0-based ``day``) and their latency percentiles."""

    day: int
    turns: int
    p50: float
    p95: float
    p99: float


@dataclass(frozen=True, slots=True)
class DayStore:
    """The users' store sizes in one end-of-day snapshot (0-based ``day``)."""

    day: int
    mean: float
    p99: float
    max: int


@dataclass(frozen=True, slots=True)
class RunView:
    """One strategy's figures for the reports (see the module docstring)."""

    strategy: str
    turns: int
    prompt_means: dict[str, float]  # PROMPT_COLUMNS without "_tokens": mean per turn
    latency_per_day: list[DayLatency]
    injected: list[int]  # prompts per bin of INJECTED_BIN_EDGES
    store_days: list[DayStore]

    def parts(self) -> dict[str, float]:
        """Mean chat-prompt tokens per turn by part: system, memory, history, user."""
        return {k: v for k, v in self.prompt_means.items() if k != "prompt"}


def day_index(start_s: np.ndarray | pd.Series, days: int) -> np.ndarray:
    """The 0-based simulated day of each start time (work past the horizon: the last day)."""
    return np.minimum((np.asarray(start_s) // SECONDS_PER_DAY).astype(np.int64), days - 1)


def view(run: Records, days: int) -> RunView:
    """The report figures of ``run`` over ``days`` simulated days."""
    turns, sums = 0, dict.fromkeys(PROMPT_COLUMNS, 0)
    injected = np.zeros(len(INJECTED_BIN_EDGES), dtype=np.int64)
    answered = np.zeros(days, dtype=np.int64)
    sizes: dict[int, CountedPercentiles] = {}
    columns = {"turns": ["start_s", "error", *PROMPT_COLUMNS], "calls": []}
    for piece in run.pieces(columns):
        t = piece.turns
        turns += len(t)
        for column in PROMPT_COLUMNS:
            sums[column] += int(t[column].sum())
        block = t["memory_tokens"].to_numpy()
        index = np.searchsorted(INJECTED_BIN_EDGES, block, side="right") - 1
        injected += np.bincount(index, minlength=len(INJECTED_BIN_EDGES))
        ok = (t["error"] == "").to_numpy()
        answered += np.bincount(day_index(t["start_s"].to_numpy()[ok], days), minlength=days)
        store = piece.store_daily
        for day, memories in store.groupby("day", sort=True)["memories"]:
            sizes.setdefault(int(day), CountedPercentiles()).count(memories.to_numpy())
    means = {
        c.removesuffix("_tokens"): (float(sums[c] / turns) if turns else 0.0)
        for c in PROMPT_COLUMNS
    }
    store_days = [
        DayStore(day, s.total() / s.n, s.at(99) or 0.0, s.max()) for day, s in sorted(sizes.items())
    ]
    return RunView(
        run.strategy,
        turns,
        means,
        _latency_per_day(run, days, answered),
        [int(c) for c in injected],
        store_days,
    )


def _latency_per_day(run: Records, days: int, answered: np.ndarray) -> list[DayLatency]:
    """Each day's p50/p95/p99 latency of answered turns, read a span of days at a time."""
    out = []
    columns = {"turns": ["start_s", "error", "latency_s"], "calls": [], "store_daily": []}
    for first, last in day_spans(answered, LATENCY_BATCH):
        found = []
        for piece in run.pieces(columns):
            t = piece.turns
            ok = (t["error"] == "").to_numpy()
            day = day_index(t["start_s"].to_numpy()[ok], days)
            keep = (day >= first) & (day <= last)
            found.append((day[keep], t["latency_s"].to_numpy()[ok][keep]))
        day = np.concatenate([f[0] for f in found])
        latency = np.concatenate([f[1] for f in found])
        for d in range(first, last + 1):
            values = latency[day == d]
            if len(values):
                p50, p95, p99 = np.percentile(values, [50, 95, 99])
                out.append(DayLatency(d, len(values), float(p50), float(p95), float(p99)))
    return out


def day_spans(per_day: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Consecutive day spans ``(first, last)`` covering ``per_day``.

    Each holds at most ``budget`` values (a single day may hold more).
    """
    spans, start, held = [], 0, 0
    for day, count in enumerate(per_day.tolist()):
        if held and held + count > budget:
            spans.append((start, day - 1))
            start, held = day, 0
        held += count
    if len(per_day):
        spans.append((start, len(per_day) - 1))
    return spans


def as_views(runs: Sequence[Records | RunView], days: int) -> list[RunView]:
    """``runs`` as views: records are read (:func:`view`), views are kept."""
    return [r if isinstance(r, RunView) else view(r, days) for r in runs]
