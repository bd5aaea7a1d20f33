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

import math
from typing import Any

import numpy as np
import pandas as pd

from reports import alerts
from reports.numbers import rounded
from sim import __version__
from sim.config import Scenario
from sim.records import StrategyRun
from sim.workload import SECONDS_PER_DAY

TOKEN_PURPOSES = ("chat", "extract", "summarize", "update", "embed")
LLM_PURPOSES = ("chat", "extract", "summarize", "update")


def _pct(values: pd.Series | np.ndarray, q: float) -> float:
    return rounded(np.percentile(values, q)) if len(values) else 0.0


def call_days(calls: pd.DataFrame, days: int) -> np.ndarray:
    """The simulated day each call is billed to (work past the horizon goes to the last day)."""
    return np.minimum((calls["start_s"].to_numpy() // SECONDS_PER_DAY).astype(int), days - 1)


def strategy_summary(
    run: StrategyRun, days: int, scenario: Scenario | dict[str, Any] | None = None
) -> dict[str, Any]:
    """The summary block of one strategy (``scenario`` tells the alerts of a model switch)."""
    turns, calls, final = run.turns, run.calls, run.store_final
    tokens = calls["tokens_in"] + calls["tokens_out"]
    day = call_days(calls, days)
    tokens_per_day = np.bincount(day, weights=tokens, minlength=days)
    usd_by_day = [math.fsum(calls["usd"][day == d]) for d in range(days)]
    by_purpose = tokens.groupby(calls["purpose"], observed=True).sum()
    llm = calls[calls["endpoint"] == "llm"]
    first = llm[llm["attempt"] == 0] if "attempt" in llm else llm  # a call, not its retries
    llm_calls = first.groupby("purpose", observed=True).size()
    attempts = llm.groupby("purpose", observed=True).size()
    sessions = len(turns[["user", "session"]].drop_duplicates())
    ok = turns[turns["error"] == ""]
    retrieval = turns.loc[turns["retrieval_s"] > 0, "retrieval_s"]
    probes = turns[turns["recall"] >= 0]
    memories = final["memories"]
    total_memories = int(memories.sum())
    done = calls[calls["error"] == ""]
    extracted = int(done.loc[done["purpose"] == "extract", "items"].sum())
    written = int(done.loc[done["purpose"] == "store_write", "items"].sum())
    return {
        "turns": len(turns),
        "error_turns": int((turns["error"] != "").sum()),
        "timeout_turns": int((turns["error"] == "timeout").sum()),
        "degraded_turns": int(turns["degraded"].sum()) if "degraded" in turns else 0,
        "retries": int((calls["attempt"] > 0).sum()) if "attempt" in calls else 0,
        "rate_limited_calls": int((calls["error"] == "rate_limited").sum()),
        "tokens_total": int(tokens.sum()),
        "usd_total": rounded(math.fsum(calls["usd"])),
        "tokens_by_purpose": {p: int(by_purpose.get(p, 0)) for p in TOKEN_PURPOSES},
        "tokens_per_day": [int(t) for t in tokens_per_day],
        "usd_per_day": [rounded(u) for u in usd_by_day],
        "llm_calls_by_purpose": {p: int(llm_calls.get(p, 0)) for p in LLM_PURPOSES},
        "extraction_calls_per_session_mean": rounded(
            llm_calls.get("extract", 0) / max(sessions, 1)
        ),
        "extraction_calls": int(llm_calls.get("extract", 0)),
        "extraction_attempts": int(attempts.get("extract", 0)),
        "facts_lost_to_faults": int(final["facts_lost_to_faults"].sum())
        if "facts_lost_to_faults" in final
        else 0,
        "latency_p50_s": _pct(ok["latency_s"], 50),
        "latency_p95_s": _pct(ok["latency_s"], 95),
        "latency_p99_s": _pct(ok["latency_s"], 99),
        "retrieval_latency_p99_s": _pct(retrieval, 99),
        "retrieval_latency_p50_s": _pct(retrieval, 50),
        "retrieval_latency_p95_s": _pct(retrieval, 95),
        "memories_per_user_mean": rounded(memories.mean()) if len(memories) else 0.0,
        "memories_per_user_p99": _pct(memories, 99),
        "memories_per_user_max": int(memories.max()) if len(memories) else 0,
        "duplicate_ratio": rounded(final["duplicates"].sum() / total_memories)
        if total_memories
        else 0.0,
        "injected_tokens_mean": rounded(turns["memory_tokens"].mean()) if len(turns) else 0.0,
        "injected_tokens_p99": _pct(turns["memory_tokens"], 99),
        "injected_tokens_max": int(turns["memory_tokens"].max()) if len(turns) else 0,
        "factoids_extracted": extracted,
        "memories_written": written,
        "dedup_rate": rounded(max(1 - written / extracted, 0.0)) if extracted else 0.0,
        "recall": rounded(probes["recall"].mean()) if len(probes) else 0.0,
        "probes": len(probes),
        "stale_share": rounded(probes["stale"].mean()) if len(probes) else 0.0,
        **_question_keys(probes),
        **_memory_use_keys(calls, final, total_memories),
        **_instruction_keys(turns),
        **_cache_keys(calls, day, days),
        "alerts": alerts.summary_block(alerts.evaluate(run, scenario or {}, days)),
    }


def _memory_use_keys(
    calls: pd.DataFrame, final: pd.DataFrame, total_memories: int
) -> dict[str, float]:
    """What memory cost, and whether it was ever used.

    ``memory_usd_total``: USD of every call other than the chat answer (extraction,
    summarization, update, embedding, store); ``memories_never_retrieved_share``:
    share of the memories stored at the end never injected into a prompt (0 with no
    memories, or for runs saved before the count existed).
    """
    memory_usd = math.fsum(calls.loc[calls["purpose"] != "chat", "usd"])
    never = int(final["never_retrieved"].sum()) if "never_retrieved" in final else 0
    return {
        "memory_usd_total": rounded(memory_usd),
        "memories_never_retrieved_share": rounded(never / total_memories)
        if total_memories
        else 0.0,
    }


def _question_keys(probes: pd.DataFrame) -> dict[str, float]:
    """Per-question figures, as LoCoMo evaluations tabulate them (0 without probes).

    ``probe_prompt_tokens_mean`` and ``probe_memory_tokens_mean``: the prompt of a
    probe question and its memory block; ``probe_latency_p50_s``/``_p95_s``: over the
    answered probe turns.
    """
    answered = probes.loc[probes["error"] == "", "latency_s"]
    return {
        "probe_prompt_tokens_mean": rounded(probes["prompt_tokens"].mean()) if len(probes) else 0.0,
        "probe_memory_tokens_mean": rounded(probes["memory_tokens"].mean()) if len(probes) else 0.0,
        "probe_latency_p50_s": _pct(answered, 50),
        "probe_latency_p95_s": _pct(answered, 95),
    }


def _cache_keys(calls: pd.DataFrame, day: np.ndarray, days: int) -> dict[str, Any]:
    """What the provider's prompt cache served, wrote and saved (see the module docstring).

    Runs saved before the cache columns existed load with them at 0
    (``reports.results.LATER_COLUMNS``): they read as uncached.
    """
    llm = (calls["endpoint"] == "llm").to_numpy()
    tokens_in = calls["tokens_in"].to_numpy()
    cached, written = calls["cached_tokens"].to_numpy(), calls["cache_write_tokens"].to_numpy()
    saved = math.fsum(calls["usd_saved"])
    chat = (calls["purpose"] == "chat").to_numpy() & llm
    chat_in = int(tokens_in[chat].sum())
    per_day = np.bincount(day[llm], weights=cached[llm], minlength=days)
    input_per_day = np.bincount(day[llm], weights=tokens_in[llm], minlength=days)
    return {
        "cached_input_tokens": int(cached.sum()),
        "cache_write_tokens": int(written.sum()),
        "cache_hit_share": rounded(cached[chat].sum() / chat_in) if chat_in else 0.0,
        "usd_saved_by_cache": rounded(saved),
        "usd_total_uncached": rounded(math.fsum(calls["usd"]) + saved),
        "cached_input_tokens_per_day": [int(t) for t in per_day],
        "llm_input_tokens_per_day": [int(t) for t in input_per_day],
    }


def _instruction_keys(turns: pd.DataFrame) -> dict[str, int]:
    """The planted-instruction counts of a run's turns.

    ``injected_instructions``: user-planted instruction memories injected, over all
    prompts; ``instruction_turns``: prompts that held at least one (both 0 for runs
    saved before the column existed).
    """
    if "instructions_injected" not in turns:
        return {"injected_instructions": 0, "instruction_turns": 0}
    injected = turns["instructions_injected"]
    return {
        "injected_instructions": int(injected.sum()),
        "instruction_turns": int((injected > 0).sum()),
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
