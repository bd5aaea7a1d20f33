"""``summary.json``: the stable per-strategy measurements users' CI scripts read.

The schema is fixed (see the README); keys may be added, none renamed or removed
without a version bump. Floats are rounded by :func:`reports.numbers.rounded` (6
decimals) so the file is byte-identical across runs and platforms.

Definitions:

* ``tokens_*`` count billed input + output tokens of every call (chat,
  extraction, summarization, update, embedding); ``tokens_per_day[d]`` and
  ``usd_per_day[d]`` bill each call to the simulated day it started on.
* latency percentiles are over turns that got a reply; ``error_turns`` counts
  the others (timeouts, context overflow), ``timeout_turns`` the timeouts alone.
  These failed turns include those whose request still failed after its retries
  of injected faults (error ``rate_limited`` or ``timeout``).
* ``degraded_turns`` counts turns that got a reply without the vector store
  (a store outage of ``[faults]``); ``retries`` the retried LLM and embedding
  attempts; ``rate_limited_calls`` the attempts answered 429 (never billed).
* ``llm_calls_by_purpose`` and ``extraction_calls`` count calls, each once however
  many times it was retried; ``extraction_attempts`` counts every attempt of them.
  ``facts_lost_to_faults`` counts the facts users stated whose extraction never
  succeeded because of a fault (every extraction that was sent them failed, or
  its job stopped at a failed call) and that are not in the store at the end.
* ``retrieval_latency_p99_s`` is over turns that spent time before the chat call.
* ``memories_per_user_*`` and ``duplicate_ratio`` describe the store after the
  last turn; a duplicate is a memory of a fact another memory already holds.
* ``injected_tokens_*`` is the memory block per prompt, chat overhead included.
* ``factoids_extracted`` counts the facts extraction calls returned,
  ``memories_written`` the memories stored; ``dedup_rate`` is the share of
  extracted factoids that were never stored (dropped as duplicates, or over a cap).
* ``memory_usd_total`` is the USD of all memory work (every call but the chat
  answer); ``memories_never_retrieved_share`` the share of the memories stored at
  the end that no prompt ever held.
* ``recall`` is the share of probe questions whose prompt held the latest version
  of the fact asked about (in memories or verbatim history); ``stale_share`` the
  share whose prompt held an outdated version of it. ``probes`` counts the probe
  questions; with none (a trace without ground truth) recall and stale share are
  unavailable: both stay 0.0 in the file, and the reports say so.
* ``cached_input_tokens`` counts the input tokens of LLM calls (chat and memory
  work) served from the provider's prompt cache, ``cache_write_tokens`` those
  written to it at the write price (Anthropic); ``cache_hit_share`` is the share of
  chat calls' input tokens that were cached; ``usd_saved_by_cache`` is what the
  same calls would have cost billed without a cache, less ``usd_total`` (negative
  when write premiums outweigh the reads), and ``usd_total_uncached`` that bill.
  ``cached_input_tokens_per_day`` and ``llm_input_tokens_per_day`` split them by
  day. All are 0 with ``[llm.cache] mode = "none"``.
* ``probe_prompt_tokens_mean`` and ``probe_memory_tokens_mean`` are the mean prompt
  and memory block of a probe question, ``probe_latency_p50_s`` and ``_p95_s`` the
  answered probe turns' latency: per-question figures, as LoCoMo evaluations
  tabulate them.
* ``alerts`` holds, per rule of :mod:`reports.alerts`, whether it fired on the
  simulated timeline, when it first fired (``first_fired_s``, 0-based
  ``first_fired_day``) and the USD spent by then (``null`` when it did not fire).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reports import alerts
from reports.exact import CountedPercentiles, ExactSum, Percentiles
from reports.numbers import rounded
from reports.views import day_index
from sim import __version__
from sim.config import Scenario
from sim.records import Records, StrategyRun

TOKEN_PURPOSES = ("chat", "extract", "summarize", "update", "embed")
LLM_PURPOSES = ("chat", "extract", "summarize", "update")


def _pct(values: pd.Series | np.ndarray, q: float) -> float:
    return rounded(np.percentile(values, q)) if len(values) else 0.0


def call_days(calls: pd.DataFrame, days: int) -> np.ndarray:
    """The simulated day each call is billed to (work past the horizon goes to the last day)."""
    return day_index(calls["start_s"], days)


TURN_FIELDS = [
    "user",
    "session",
    "error",
    "degraded",
    "latency_s",
    "retrieval_s",
    "recall",
    "stale",
    "prompt_tokens",
    "memory_tokens",
    "instructions_injected",
]
CALL_FIELDS = [
    "start_s",
    "purpose",
    "endpoint",
    "attempt",
    "tokens_in",
    "tokens_out",
    "usd",
    "usd_saved",
    "error",
    "items",
    "cached_tokens",
    "cache_write_tokens",
]


class _Tally:
    """What a strategy's summary adds up piece by piece (see :func:`strategy_summary`).

    Counts, integer sums and per-day integer sums add exactly; USD sums are
    :class:`~reports.exact.ExactSum`; percentiles are :class:`~reports.exact.Percentiles`.
    """

    def __init__(self, days: int) -> None:
        self.days = days
        self.n: dict[str, int] = dict.fromkeys(
            (
                "turns",
                "error_turns",
                "timeout_turns",
                "degraded_turns",
                "sessions",
                "retries",
                "rate_limited_calls",
                "tokens_total",
                "factoids_extracted",
                "memories_written",
                "probes",
                "recall",
                "stale",
                "probe_prompt_tokens",
                "probe_memory_tokens",
                "injected_instructions",
                "instruction_turns",
                "cached_input_tokens",
                "cache_write_tokens",
                "chat_input_tokens",
                "chat_cached_tokens",
            ),
            0,
        )
        self.by_purpose: dict[str, int] = {}
        self.llm_calls: dict[str, int] = {}
        self.attempts: dict[str, int] = {}
        self.tokens_per_day = np.zeros(days)
        self.cached_per_day = np.zeros(days)
        self.input_per_day = np.zeros(days)
        self.usd, self.usd_saved, self.memory_usd = ExactSum(), ExactSum(), ExactSum()
        self.usd_per_day = [ExactSum() for _ in range(days)]
        self.latency = Percentiles((50, 95, 99))
        self.retrieval = Percentiles((99, 50, 95))
        self.probe_latency = Percentiles((50, 95))
        self.memory_block = CountedPercentiles()  # memory tokens per prompt

    def series(self, turns: pd.DataFrame) -> list[tuple[Percentiles, np.ndarray]]:
        """The values of each percentile series in one piece's turns."""
        ok = (turns["error"] == "").to_numpy()
        latency = turns["latency_s"].to_numpy()
        retrieval = turns["retrieval_s"].to_numpy()
        probe = (turns["recall"] >= 0).to_numpy()
        return [
            (self.latency, latency[ok]),
            (self.retrieval, retrieval[retrieval > 0]),
            (self.probe_latency, latency[probe & ok]),
        ]

    def add(self, piece: StrategyRun) -> None:
        """Count one piece (whole users) of the run."""
        turns, calls, n = piece.turns, piece.calls, self.n
        for stats, values in self.series(turns):
            stats.count(values)
        error = turns["error"]
        n["turns"] += len(turns)
        n["error_turns"] += int((error != "").sum())
        n["timeout_turns"] += int((error == "timeout").sum())
        n["degraded_turns"] += int(turns["degraded"].sum()) if "degraded" in turns else 0
        n["sessions"] += len(turns[["user", "session"]].drop_duplicates())
        probes = turns[turns["recall"] >= 0]
        n["probes"] += len(probes)
        n["recall"] += int(probes["recall"].sum())
        n["stale"] += int(probes["stale"].sum())
        n["probe_prompt_tokens"] += int(probes["prompt_tokens"].sum())
        n["probe_memory_tokens"] += int(probes["memory_tokens"].sum())
        self.memory_block.count(turns["memory_tokens"].to_numpy())
        if "instructions_injected" in turns:
            injected = turns["instructions_injected"]
            n["injected_instructions"] += int(injected.sum())
            n["instruction_turns"] += int((injected > 0).sum())
        self._add_calls(calls)

    def _add_calls(self, calls: pd.DataFrame) -> None:
        n, days = self.n, self.days
        tokens = calls["tokens_in"] + calls["tokens_out"]
        day = call_days(calls, days)
        self.tokens_per_day += np.bincount(day, weights=tokens, minlength=days)
        usd = calls["usd"].to_numpy()
        self.usd.add(usd)
        for d in np.unique(day).tolist():
            self.usd_per_day[d].add(usd[day == d])
        _add_counts(self.by_purpose, tokens.groupby(calls["purpose"], observed=True).sum())
        llm = calls[calls["endpoint"] == "llm"]
        first = llm[llm["attempt"] == 0] if "attempt" in llm else llm  # a call, not its retries
        _add_counts(self.llm_calls, first.groupby("purpose", observed=True).size())
        _add_counts(self.attempts, llm.groupby("purpose", observed=True).size())
        n["retries"] += int((calls["attempt"] > 0).sum()) if "attempt" in calls else 0
        n["rate_limited_calls"] += int((calls["error"] == "rate_limited").sum())
        n["tokens_total"] += int(tokens.sum())
        done = calls[calls["error"] == ""]
        n["factoids_extracted"] += int(done.loc[done["purpose"] == "extract", "items"].sum())
        n["memories_written"] += int(done.loc[done["purpose"] == "store_write", "items"].sum())
        self.memory_usd.add(calls.loc[calls["purpose"] != "chat", "usd"].to_numpy())
        # The provider's prompt cache (see the module docstring).
        is_llm = (calls["endpoint"] == "llm").to_numpy()
        tokens_in = calls["tokens_in"].to_numpy()
        cached = calls["cached_tokens"].to_numpy()
        chat = (calls["purpose"] == "chat").to_numpy() & is_llm
        n["cached_input_tokens"] += int(cached.sum())
        n["cache_write_tokens"] += int(calls["cache_write_tokens"].sum())
        n["chat_input_tokens"] += int(tokens_in[chat].sum())
        n["chat_cached_tokens"] += int(cached[chat].sum())
        self.usd_saved.add(calls["usd_saved"].to_numpy())
        self.cached_per_day += np.bincount(day[is_llm], weights=cached[is_llm], minlength=days)
        self.input_per_day += np.bincount(day[is_llm], weights=tokens_in[is_llm], minlength=days)


def _add_counts(into: dict[str, int], counts: pd.Series) -> None:
    for key, value in counts.items():
        into[str(key)] = into.get(str(key), 0) + int(value)


def tally(run: Records, days: int) -> _Tally:
    """Count ``run`` piece by piece (a second pass only for percentiles of a large run)."""
    t = _Tally(days)
    for piece in run.pieces({"turns": TURN_FIELDS, "calls": CALL_FIELDS}):
        t.add(piece)
    series = (t.latency, t.retrieval, t.probe_latency)
    if any(stats.needs_second_pass for stats in series):
        for piece in run.pieces({"turns": TURN_FIELDS, "calls": []}):
            for stats, values in t.series(piece.turns):
                if stats.needs_second_pass:
                    stats.collect(values)
    return t


def _pcts(stats: Percentiles) -> list[float]:
    return [rounded(v) if v is not None else 0.0 for v in stats.at()]


def strategy_summary(
    run: Records, days: int, scenario: Scenario | dict[str, Any] | None = None
) -> dict[str, Any]:
    """The summary block of one strategy (``scenario`` tells the alerts of a model switch).

    Every figure is computed piece by piece (:meth:`~sim.records.Records.pieces`),
    so a run on disk is summarized without holding its records, to the same bytes.
    """
    t = tally(run, days)
    n, final = t.n, run.store_final
    memories = final["memories"]
    total_memories = int(memories.sum())
    extracted, written = n["factoids_extracted"], n["memories_written"]
    p50, p95, p99 = _pcts(t.latency)
    r99, r50, r95 = _pcts(t.retrieval)
    q50, q95 = _pcts(t.probe_latency)
    probes, turns = n["probes"], n["turns"]
    saved = t.usd_saved.value
    chat_in = n["chat_input_tokens"]
    never = int(final["never_retrieved"].sum()) if "never_retrieved" in final else 0
    extract_calls = t.llm_calls.get("extract", 0)
    return {
        "turns": turns,
        "error_turns": n["error_turns"],
        "timeout_turns": n["timeout_turns"],
        "degraded_turns": n["degraded_turns"],
        "retries": n["retries"],
        "rate_limited_calls": n["rate_limited_calls"],
        "tokens_total": n["tokens_total"],
        "usd_total": rounded(t.usd.value),
        "tokens_by_purpose": {p: t.by_purpose.get(p, 0) for p in TOKEN_PURPOSES},
        "tokens_per_day": [int(x) for x in t.tokens_per_day],
        "usd_per_day": [rounded(u.value) for u in t.usd_per_day],
        "llm_calls_by_purpose": {p: t.llm_calls.get(p, 0) for p in LLM_PURPOSES},
        "extraction_calls_per_session_mean": rounded(extract_calls / max(n["sessions"], 1)),
        "extraction_calls": extract_calls,
        "extraction_attempts": t.attempts.get("extract", 0),
        "facts_lost_to_faults": int(final["facts_lost_to_faults"].sum())
        if "facts_lost_to_faults" in final
        else 0,
        "latency_p50_s": p50,
        "latency_p95_s": p95,
        "latency_p99_s": p99,
        "retrieval_latency_p99_s": r99,
        "retrieval_latency_p50_s": r50,
        "retrieval_latency_p95_s": r95,
        "memories_per_user_mean": rounded(memories.mean()) if len(memories) else 0.0,
        "memories_per_user_p99": _pct(memories, 99),
        "memories_per_user_max": int(memories.max()) if len(memories) else 0,
        "duplicate_ratio": rounded(final["duplicates"].sum() / total_memories)
        if total_memories
        else 0.0,
        "injected_tokens_mean": rounded(t.memory_block.total() / turns) if turns else 0.0,
        "injected_tokens_p99": rounded(t.memory_block.at(99) or 0.0),
        "injected_tokens_max": t.memory_block.max(),
        "factoids_extracted": extracted,
        "memories_written": written,
        "dedup_rate": rounded(max(1 - written / extracted, 0.0)) if extracted else 0.0,
        "recall": rounded(n["recall"] / probes) if probes else 0.0,
        "probes": probes,
        "stale_share": rounded(n["stale"] / probes) if probes else 0.0,
        # Per-question figures, as LoCoMo evaluations tabulate them (0 without probes).
        "probe_prompt_tokens_mean": rounded(n["probe_prompt_tokens"] / probes) if probes else 0.0,
        "probe_memory_tokens_mean": rounded(n["probe_memory_tokens"] / probes) if probes else 0.0,
        "probe_latency_p50_s": q50,
        "probe_latency_p95_s": q95,
        # What memory cost (every call but the chat answer), and whether it was used.
        "memory_usd_total": rounded(t.memory_usd.value),
        "memories_never_retrieved_share": rounded(never / total_memories)
        if total_memories
        else 0.0,
        "injected_instructions": n["injected_instructions"],
        "instruction_turns": n["instruction_turns"],
        "cached_input_tokens": n["cached_input_tokens"],
        "cache_write_tokens": n["cache_write_tokens"],
        "cache_hit_share": rounded(n["chat_cached_tokens"] / chat_in) if chat_in else 0.0,
        "usd_saved_by_cache": rounded(saved),
        "usd_total_uncached": rounded(t.usd.value + saved),
        "cached_input_tokens_per_day": [int(x) for x in t.cached_per_day],
        "llm_input_tokens_per_day": [int(x) for x in t.input_per_day],
        "alerts": alerts.summary_block(
            alerts.evaluate(run, scenario or {}, days, retrieval_p99=t.retrieval.at()[0])
        ),
    }


def build_summary(
    scenario_name: str,
    seed: int,
    config_hash: str,
    users: int,
    days: int,
    runs: list[StrategyRun],
    scenario: Scenario | dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole ``summary.json`` document (``scenario`` as for :func:`strategy_summary`)."""
    return {
        "memsim_version": __version__,
        "scenario": scenario_name,
        "seed": seed,
        "config_sha256": config_hash,
        "users": users,
        "days": days,
        "strategies": {run.strategy: strategy_summary(run, days, scenario) for run in runs},
    }
