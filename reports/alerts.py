"""Alert rules replayed on the simulated timeline: when would production have paged?

It is long because each alert rule is replayed on the simulated timeline by its own
function, beside its threshold and its source.

Each rule is evaluated per strategy on the recorded DataFrames and answers: did it
fire, at which simulated second (and 0-based day) did it first fire, and how many
dollars had the strategy spent by then (every call with ``start_s`` at or before
that time). The thresholds are the field's usual defaults (:class:`AlertThresholds`).

Rules (names are the keys of ``summary.json``'s ``alerts`` block):

* ``memories_per_user``: a user's store holds more than 500 memories. Seen at the
  start of each of the user's turns (``turns.store_size``) and in the end-of-day
  snapshots (``store_daily``); fires at the first such observation.
* ``extraction_calls_per_session``: more than 10 LLM extraction calls in one
  session. A call belongs to the user's session that started last at or before
  it (background extraction that runs after a session ends counts for it); fires
  at the 11th call's start.
* ``injected_tokens_per_prompt``: a prompt's memory block is over 2,000 tokens;
  fires at that turn's start.
* ``retrieval_p99``: the p99 of retrieval latency over a trailing simulated hour
  (``retrieval_window_s``) is over 200 ms. Each turn that spent time before its
  chat call is one sample, timed when its retrieval ended; the window is
  re-evaluated at every sample and fires at the first one that tips it over.
* ``embedding_switch_without_reembed``: the scenario switches the embedding model
  (``embedding.switch_at_day``) within the run and ``reembed_on_switch`` is off,
  and the strategy had embedded something before the switch (its stored vectors
  are now from another model). Fires at the switch.
* ``daily_tokens_growth``: a day's tokens are more than 25% above the first
  week's level. 25%, not less: a memory strategy fills its store during the
  first week, so even a bounded one grows per turn then (batched-dedup-budget
  in ``memsim run support-bot``: up to 13% above its trailing level within the
  first week, 24% above the first week's level at the month's end), while a leak
  passes 25% within days (the leaky test run: 31% on day 2).
  Decisions, so that it can fire *within* the first week and is not set off by
  the workload itself:

  - The level is tokens **per user turn** of the day (the day's billed tokens of
    every call, divided by the user turns that started that day), not the raw
    daily total: the simulated users return in waves (gamma-spaced sessions that
    all start at t=0) and day 0 is a warm-up, so raw daily totals swing by
    ±10-30% for every strategy; per turn, only what each request costs is
    compared, which is what a leak grows. ``per_turn = False`` compares raw totals.
  - Day ``d ≥ 2`` is compared with the mean level of the days before it within
    the first week (days ``0 … min(d, 7) - 1``): a trailing baseline while the
    first week runs, then fixed at the mean of days 0-6 from day 7 on.
  - A day is judged when it closes: the rule fires at the end of the first day
    over the threshold (1 ms before the next day starts, so the reported day is
    the day judged; the spend then is the spend through that day).
  - A strategy whose memory block has a token budget (the ``budget_tokens``
    setting of batched-dedup-budget, lazy-retrieval, mem0-like, external-mem0)
    grows while its block fills toward that budget, and stops there: that growth
    is bounded, not a leak. For such a strategy each day's level is first reduced
    by how much its mean memory block per turn (capped at the budget) grew over
    the baseline days' mean; only what is left is compared. When the raw level
    was over the threshold and the rest never was, the rule does not fire and its
    entry says so (``filling``: the budget, the first week's and the last day's
    mean block); so does it when the last week's daily tokens are over the first
    week's by the threshold (the measure of report.md's "leaks tokens" finding,
    which then says the block is filling instead). A strategy without a budget is
    judged on its raw level: an unbounded block that grows is what a leak is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

import strategies
from reports.compare import growth
from reports.exact import ExactSum, Percentiles
from reports.numbers import rounded
from reports.views import day_index, day_spans
from sim.config import ConfigError, Scenario
from sim.records import Records, StrategyRun
from sim.workload import SECONDS_PER_DAY

_CLOSE = 1e-3
"""A day is closed 1 ms before the next one starts, so its close keeps its own day number."""

RULES = (
    "memories_per_user",
    "extraction_calls_per_session",
    "injected_tokens_per_prompt",
    "retrieval_p99",
    "embedding_switch_without_reembed",
    "daily_tokens_growth",
)


class AlertThresholds(BaseModel):
    """Alert thresholds; the defaults are the field's usual ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    memories_per_user: Annotated[int, Field(ge=0)] = 500
    """Fires when any user's store holds more than this many memories."""
    extraction_calls_per_session: Annotated[int, Field(ge=0)] = 10
    """Fires when any session makes more than this many LLM extraction calls."""
    injected_tokens_per_prompt: Annotated[int, Field(ge=0)] = 2_000
    """Fires when any prompt's memory block is over this many tokens."""
    retrieval_p99_s: Annotated[float, Field(ge=0)] = 0.2
    """Fires when the p99 retrieval latency over ``retrieval_window_s`` is over this."""
    retrieval_window_s: Annotated[float, Field(gt=0)] = 3_600.0
    """Trailing window of the retrieval p99, in simulated seconds (one hour)."""
    daily_tokens_growth: Annotated[float, Field(ge=0)] = 0.25
    """Fires when a day's level is more than this share above the first week's."""
    baseline_days: Annotated[int, Field(ge=1)] = 7
    """Length of the "first week" the daily level is compared with."""
    first_compared_day: Annotated[int, Field(ge=1)] = 2
    """First (0-based) day compared; earlier days only build the baseline."""
    per_turn: bool = True
    """Compare tokens per user turn of each day (``False``: raw daily totals)."""


def _switch(scenario: Scenario | dict[str, Any]) -> tuple[float | None, bool]:
    """``(switch_at_day, reembed_on_switch)`` of a scenario or its resolved-config dict."""
    if isinstance(scenario, Scenario):
        emb = scenario.embedding
        return emb.switch_at_day, emb.reembed_on_switch
    emb = scenario.get("embedding") or {}
    return emb.get("switch_at_day"), bool(emb.get("reembed_on_switch", False))


# -- the rules: each returns (first time it fired or None, observed value, detail) ---------


def _memories(run: Records, limit: int) -> tuple[float | None, float]:
    times, peak = [], 0
    for piece in run.pieces({"turns": ["start_s", "store_size"], "store_daily": _STORE}):
        turns, daily = piece.turns, piece.store_daily
        over = turns[turns["store_size"] > limit]
        if len(over):
            times.append(float(over["start_s"].min()))
        full = daily[daily["memories"] > limit]
        if len(full):  # the snapshot closing the day, a hair before the next day starts
            times.append(float(full["day"].min() + 1) * SECONDS_PER_DAY - _CLOSE)
        if len(turns):
            peak = max(peak, int(turns["store_size"].max()))
        if len(daily):
            peak = max(peak, int(daily["memories"].max()))
    return (min(times) if times else None), peak


_STORE = ["day", "memories"]


def session_starts(turns: pd.DataFrame) -> pd.DataFrame:
    """``user, session, start_s`` of each session's first turn, sorted by time."""
    starts = turns.groupby(["user", "session"], observed=True, as_index=False)["start_s"].min()
    return starts.sort_values(["start_s", "user", "session"], kind="stable")


def extraction_calls_by_session(run: StrategyRun) -> pd.DataFrame:
    """LLM extraction calls with the session each belongs to, in time order.

    A call belongs to its user's session that started last at or before it; a
    call retried after a fault counts once (its first attempt). Users are
    independent: a piece of whole users gives its users' rows.
    """
    calls = run.calls
    extract = calls[(calls["endpoint"] == "llm") & (calls["purpose"] == "extract")]
    if "attempt" in extract:
        extract = extract[extract["attempt"] == 0]
    extract = extract[["user", "start_s"]].sort_values("start_s", kind="stable")
    if not len(extract) or not len(run.turns):
        return extract.assign(session=pd.Series(dtype="int32"))
    starts = session_starts(run.turns)
    merged = pd.merge_asof(
        extract.astype({"user": "int64"}),
        starts.astype({"user": "int64"}).rename(columns={"start_s": "session_start_s"}),
        left_on="start_s",
        right_on="session_start_s",
        by="user",
        direction="backward",
    )
    # Calls before the user's first turn cannot happen; keep them on session 0 anyway.
    merged["session"] = merged["session"].fillna(0).astype("int32")
    return merged[["user", "session", "start_s"]]


def _extractions(run: Records, limit: int) -> tuple[float | None, float]:
    columns = {
        "turns": ["user", "session", "start_s"],
        "calls": ["user", "start_s", "endpoint", "purpose", "attempt"],
    }
    first, peak = None, 0
    for piece in run.pieces(columns):
        calls = extraction_calls_by_session(piece)
        if not len(calls):
            continue
        nth = calls.groupby(["user", "session"]).cumcount() + 1
        over = calls[nth.to_numpy() > limit]
        peak = max(peak, int(nth.max()))
        if len(over):
            at = float(over["start_s"].min())
            first = at if first is None else min(first, at)
    return first, peak


def _injected(run: Records, limit: int) -> tuple[float | None, float]:
    first, peak = None, 0
    for piece in run.pieces({"turns": ["start_s", "memory_tokens"]}):
        turns = piece.turns
        over = turns[turns["memory_tokens"] > limit]
        if len(turns):
            peak = max(peak, int(turns["memory_tokens"].max()))
        if len(over):
            at = float(over["start_s"].min())
            first = at if first is None else min(first, at)
    return first, peak


RETRIEVAL_BATCH = 1_000_000
"""Retrieval samples read at once to replay the trailing window (16 MB): a longer
run is replayed a span of days at a time, each with the window before it."""


def _retrieval_samples(piece: StrategyRun) -> tuple[np.ndarray, np.ndarray]:
    """``(ends, values)`` of a piece's turns that spent time before the chat call."""
    turns = piece.turns[piece.turns["retrieval_s"] > 0]
    return (turns["start_s"] + turns["retrieval_s"]).to_numpy(), turns["retrieval_s"].to_numpy()


def _retrieval(
    run: Records, limit_s: float, window_s: float, worst: float | None
) -> tuple[float | None, float]:
    """When the trailing window's p99 first went over ``limit_s`` (``worst``: the run's p99).

    Samples are replayed in the order of their end times; a run read in pieces is
    replayed a span of days at a time (at most :data:`RETRIEVAL_BATCH` samples),
    each span with the samples of the window before it, which gives the same windows.
    """
    if worst is None:
        return None, 0.0
    columns = {"turns": ["start_s", "retrieval_s"]}
    per_day = np.zeros(0, dtype=np.int64)
    for piece in run.pieces(columns):
        ends, _ = _retrieval_samples(piece)
        counts = np.bincount((ends // SECONDS_PER_DAY).astype(np.int64))
        width = max(len(per_day), len(counts))
        per_day = np.pad(per_day, (0, width - len(per_day))) + np.pad(
            counts, (0, width - len(counts))
        )
    for first_day, last_day in day_spans(per_day, RETRIEVAL_BATCH):
        begin, end = first_day * SECONDS_PER_DAY, (last_day + 1) * SECONDS_PER_DAY
        if last_day == len(per_day) - 1:
            end = math.inf
        found: list[tuple[np.ndarray, np.ndarray]] = []
        for piece in run.pieces(columns):
            ends, values = _retrieval_samples(piece)
            keep = (ends >= begin - window_s) & (ends < end)
            found.append((ends[keep], values[keep]))
        ends = np.concatenate([f[0] for f in found])
        values = np.concatenate([f[1] for f in found])
        fired = _first_window_over(ends, values, begin, limit_s, window_s)
        if fired is not None:
            return fired
    return None, worst


def _first_window_over(
    ends: np.ndarray, values: np.ndarray, begin: float, limit_s: float, window_s: float
) -> tuple[float, float] | None:
    """The first sample ending at or after ``begin`` whose trailing window's p99 is over the limit.

    ``ends``/``values``: every sample ending from ``begin - window_s`` on, in the
    order they were recorded.
    """
    order = np.argsort(ends, kind="stable")
    ends, values = ends[order], values[order]
    firsts = np.searchsorted(ends, ends - window_s, side="left")
    slow = values > limit_s
    slow_before = np.concatenate(([0], np.cumsum(slow)))
    candidates = np.flatnonzero((slow_before[1:] - slow_before[firsts] > 0) & (ends >= begin))
    for i in candidates:
        # p99 > limit needs a slow sample in the window; only those windows are computed.
        p99 = float(np.percentile(values[firsts[i] : i + 1], 99))
        if p99 > limit_s:
            return float(ends[i]), p99
    return None


def _embedding_switch(
    run: Records, scenario: Scenario | dict[str, Any], days: int
) -> tuple[float | None, float]:
    switch_day, reembed = _switch(scenario)
    if switch_day is None or reembed or switch_day * SECONDS_PER_DAY > days * SECONDS_PER_DAY:
        return None, 0
    at = float(switch_day) * SECONDS_PER_DAY
    embedded, items = 0, 0
    for piece in run.pieces({"calls": ["purpose", "start_s", "items"]}):
        calls = piece.calls
        before = calls[(calls["purpose"] == "embed") & (calls["start_s"] <= at)]
        embedded += len(before)
        items += int(before["items"].sum())
    return (at if embedded else None), items


@dataclass(frozen=True, slots=True)
class Daily:
    """Per simulated day: user turns started, billed tokens, and memory-block tokens."""

    turns: np.ndarray
    tokens: np.ndarray
    block: np.ndarray

    @classmethod
    def of(cls, run: Records, days: int) -> Daily:
        """Count ``run`` piece by piece (all per-day sums of integers: exact in any order)."""
        turns, tokens, block = np.zeros(days, np.int64), np.zeros(days), np.zeros(days)
        columns = {
            "turns": ["start_s", "memory_tokens"],
            "calls": ["start_s", "tokens_in", "tokens_out"],
        }
        for piece in run.pieces(columns):
            day = day_index(piece.turns["start_s"], days)
            turns += np.bincount(day, minlength=days)
            block += np.bincount(
                day, weights=piece.turns["memory_tokens"].to_numpy(dtype=float), minlength=days
            )
            calls = piece.calls
            tokens += np.bincount(
                day_index(calls["start_s"], days),
                weights=(calls["tokens_in"] + calls["tokens_out"]).to_numpy(),
                minlength=days,
            )
        return cls(turns, tokens, block)

    def levels(self, per_turn: bool = True) -> np.ndarray:
        """Each day's billed tokens, per user turn started that day when ``per_turn``."""
        if not per_turn:
            return self.tokens
        days = len(self.turns)
        return np.divide(self.tokens, self.turns, out=np.zeros(days), where=self.turns > 0)

    def memory_block(self) -> np.ndarray:
        """Each day's mean memory block per prompt (``turns.memory_tokens``); 0 without turns."""
        days = len(self.turns)
        return np.divide(self.block, self.turns, out=np.zeros(days), where=self.turns > 0)


MEMORY_BUDGET_SETTING = "budget_tokens"
"""The strategy setting that caps the memory block of every prompt: memories are added in
rank order while they fit (:func:`strategies.base.fill_budget`), so the block never
passes it. A strategy without this setting has no memory budget."""


def memory_budget(scenario: Scenario | dict[str, Any], strategy: str) -> int | None:
    """The token budget of ``strategy``'s memory block in this scenario, or ``None``.

    ``scenario`` is a :class:`Scenario` or its dict (``config.json``, or a model dump);
    settings it does not give take the strategy's defaults.
    """
    if isinstance(scenario, Scenario):
        settings = scenario.strategy.get(strategy, {})
    else:
        settings = (scenario.get("strategy") or {}).get(strategy) or {}
    try:
        config = strategies.resolve(strategy).Config
    except ConfigError:  # a strategy this installation does not have: its own settings only
        budget = settings.get(MEMORY_BUDGET_SETTING)
        return None if budget is None else int(budget)
    if MEMORY_BUDGET_SETTING not in config.model_fields:
        return None
    return int(getattr(config.model_validate(settings), MEMORY_BUDGET_SETTING))


def _daily_growth(
    daily: Daily, t: AlertThresholds, budget: int | None
) -> tuple[float | None, float, dict[str, Any] | None]:
    """First day over the threshold, the ratio, and the ``filling`` note (see the module)."""
    days = len(daily.turns)
    levels = daily.levels(t.per_turn)
    mean_block = daily.memory_block()
    # Growth of the block up to its budget is excused; without a budget, none is.
    block = np.minimum(mean_block, 0 if budget is None else budget)
    scale = np.ones(days) if t.per_turn else daily.turns.astype(float)
    worst, held_back = 0.0, False
    for d in range(t.first_compared_day, days):
        first = min(d, t.baseline_days)
        base = float(np.mean(levels[:first]))
        if base <= 0:
            continue
        filled = max(0.0, float(block[d] - np.mean(block[:first]))) * scale[d]
        ratio = float(levels[d] - filled) / base
        held_back |= float(levels[d]) / base > 1 + t.daily_tokens_growth
        worst = max(worst, ratio)
        if ratio > 1 + t.daily_tokens_growth:
            return float((d + 1) * SECONDS_PER_DAY - _CLOSE), ratio, None
    # The weekly totals too: report.md's "leaks tokens" finding reads them.
    held_back |= growth(daily.levels(per_turn=False)) > 1 + t.daily_tokens_growth
    active = np.flatnonzero(daily.turns)
    if budget is None or not held_back or not len(active):
        return None, worst, None
    last = int(active[-1])
    first_week = float(np.mean(mean_block[: t.baseline_days]))
    if mean_block[last] <= first_week:  # the block did not grow: filling explains nothing
        return None, worst, None
    filling = {
        "budget_tokens": budget,
        "block_tokens_first_week": rounded(first_week),
        "block_tokens_last_day": rounded(mean_block[last]),
        "last_day": last,
    }
    return None, worst, filling


def filling_text(filling: dict[str, Any]) -> str:
    """``filling toward its budget of 1,500 tokens: day-30 block 259 tokens`` (day 1 first)."""
    return (
        f"filling toward its budget of {filling['budget_tokens']:,} tokens: "
        f"day-{filling['last_day'] + 1} block {filling['block_tokens_last_day']:,.0f} tokens"
    )


def evaluate(
    run: Records,
    scenario: Scenario | dict[str, Any],
    days: int,
    thresholds: AlertThresholds | None = None,
    retrieval_p99: float | None = None,
) -> list[dict[str, Any]]:
    """Every rule of :data:`RULES` for one strategy's run, in that order.

    Each entry: ``rule``, ``fired``, ``first_fired_s``, ``first_fired_day`` (0-based),
    ``usd_by_then`` (all ``None`` when it did not fire), ``threshold``, ``observed``
    (the value that fired it, else the worst value seen) and ``filling`` (for
    ``daily_tokens_growth`` held back by a memory block filling toward its budget:
    the budget, the first week's and the last day's mean block; else ``None``).

    The run is read piece by piece (:meth:`~sim.records.Records.pieces`);
    ``retrieval_p99``: the run's p99 retrieval latency, when the caller has it
    (else it is computed).
    """
    t = thresholds or AlertThresholds()
    if retrieval_p99 is None:
        retrieval_p99 = _retrieval_p99(run)
    found = {
        "memories_per_user": (_memories(run, t.memories_per_user), t.memories_per_user),
        "extraction_calls_per_session": (
            _extractions(run, t.extraction_calls_per_session),
            t.extraction_calls_per_session,
        ),
        "injected_tokens_per_prompt": (
            _injected(run, t.injected_tokens_per_prompt),
            t.injected_tokens_per_prompt,
        ),
        "retrieval_p99": (
            _retrieval(run, t.retrieval_p99_s, t.retrieval_window_s, retrieval_p99),
            t.retrieval_p99_s,
        ),
        "embedding_switch_without_reembed": (_embedding_switch(run, scenario, days), 0),
    }
    budget = memory_budget(scenario, run.strategy)
    *daily, filling = _daily_growth(Daily.of(run, days), t, budget)
    found["daily_tokens_growth"] = (tuple(daily), 1 + t.daily_tokens_growth)
    spent_by = _spent_by(run, {at for (at, _), _ in found.values() if at is not None})
    out = []
    for rule in RULES:
        (at, observed), threshold = found[rule]
        fired = at is not None
        spent = spent_by[at] if fired else None
        out.append(
            {
                "rule": rule,
                "fired": fired,
                "first_fired_s": rounded(at) if fired else None,
                "first_fired_day": int(min(at // SECONDS_PER_DAY, days - 1)) if fired else None,
                "usd_by_then": rounded(spent) if fired else None,
                "threshold": threshold,
                "observed": rounded(observed),
                "filling": filling if rule == "daily_tokens_growth" else None,
            }
        )
    return out


def _retrieval_p99(run: Records) -> float | None:
    """The p99 of every retrieval latency of the run (``None`` without any)."""
    stats = Percentiles((99,))
    columns = {"turns": ["start_s", "retrieval_s"]}
    for piece in run.pieces(columns):
        stats.count(_retrieval_samples(piece)[1])
    if stats.needs_second_pass:
        for piece in run.pieces(columns):
            stats.collect(_retrieval_samples(piece)[1])
    return stats.at()[0]


def _spent_by(run: Records, times: set[float]) -> dict[float, float]:
    """USD of every call started at or before each of ``times`` (``math.fsum``'s sum)."""
    if not times:
        return {}
    spent = {at: ExactSum() for at in times}
    for piece in run.pieces({"calls": ["start_s", "usd"]}):
        starts, usd = piece.calls["start_s"].to_numpy(), piece.calls["usd"].to_numpy()
        for at, total in spent.items():
            total.add(usd[starts <= at])
    return {at: total.value for at, total in spent.items()}


def summary_block(alerts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The ``alerts`` block of a strategy in ``summary.json``.

    ``daily_tokens_growth`` gains a ``filling`` entry only when it was held back by a
    memory block filling toward its budget (see the module docstring).
    """
    keys = ("fired", "first_fired_s", "first_fired_day", "usd_by_then")
    block = {}
    for a in alerts:
        block[a["rule"]] = {k: a[k] for k in keys}
        if a.get("filling"):
            block[a["rule"]]["filling"] = a["filling"]
    return block


def _held_back(block: dict[str, Any]) -> str:
    """`` (daily_tokens_growth held back: filling toward …)`` or ``""``."""
    filling = (block.get("daily_tokens_growth") or {}).get("filling")
    return f" (`daily_tokens_growth` held back: {filling_text(filling)})" if filling else ""


def when(seconds: float) -> str:
    """A simulated time for people: ``day 3, 14:05`` (day 1 is the first simulated day)."""
    day, rest = divmod(int(seconds), int(SECONDS_PER_DAY))
    return f"day {day + 1}, {rest // 3600:02d}:{rest % 3600 // 60:02d}"


def fired_rows(summary: dict[str, Any], names: list[str]) -> list[tuple[str, str, str, str]]:
    """``(strategy, rule, when, usd by then)`` per fired rule, in firing order per strategy.

    A strategy with none gets one row with ``rule`` ``"none fired"`` (or ``"not recorded"``
    for a summary.json written before alerts existed) and empty cells.
    """
    rows = []
    for name in names:
        block = summary["strategies"][name].get("alerts")
        if block is None:
            rows.append((name, "not recorded", "", ""))
            continue
        fired = sorted(
            ((rule, a) for rule, a in block.items() if a["fired"]),
            key=lambda ra: (ra[1]["first_fired_s"], ra[0]),
        )
        rows += [
            (name, rule, when(a["first_fired_s"]), f"${a['usd_by_then']:,.2f}") for rule, a in fired
        ]
        if not fired:
            rows.append((name, "none fired" + _held_back(block).replace("`", ""), "", ""))
    return rows


def fired_lines(summary: dict[str, Any], names: list[str]) -> list[str]:
    """One Markdown bullet per strategy: the rules that fired, when, and the spend by then."""
    lines = []
    for name in names:
        block = summary["strategies"][name].get("alerts")
        if block is None:
            lines.append(f"- **{name}**: alerts not recorded in this summary.json.")
            continue
        fired = [(rule, a) for rule, a in block.items() if a["fired"]]
        if not fired:
            lines.append(f"- **{name}**: no alert fired{_held_back(block)}.")
            continue
        fired.sort(key=lambda ra: (ra[1]["first_fired_s"], ra[0]))
        parts = [
            f"`{rule}` at {when(a['first_fired_s'])} (${a['usd_by_then']:,.2f} spent by then)"
            for rule, a in fired
        ]
        lines.append(f"- **{name}**: " + "; ".join(parts) + ".")
    return lines
