"""The strategy comparison: one row per measurement, one column per strategy.

Shared by the terminal table and ``report.md`` so both always show the same figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from reports.numbers import DAYS_PER_MONTH
from reports.views import RunView, as_views
from sim.records import Records, StrategyRun


@dataclass(frozen=True, slots=True)
class Row:
    """One measurement across strategies: a label and formatted cells."""

    label: str
    cells: list[str]


def _week_means(per_day: list[float]) -> tuple[float, float]:
    """Mean of the first and of the last (up to) seven days."""
    week = min(7, len(per_day))
    return float(np.mean(per_day[:week])), float(np.mean(per_day[-week:]))


def growth(per_day: list[float]) -> float:
    """Last week's daily mean over the first week's (1.0 = flat)."""
    first, last = _week_means(per_day)
    return last / first if first else 0.0


RECALL_UNAVAILABLE = "unavailable (no probes)"
"""The recall cell of a run without probe questions (a trace without ground truth)."""


def recall_available(block: dict[str, Any]) -> bool:
    """Whether a summary block measured recall (runs saved before ``probes`` existed did)."""
    return block.get("probes", 1) > 0


def _recall_cell(block: dict[str, Any], run: RunView) -> str:
    if not recall_available(block):
        return RECALL_UNAVAILABLE
    return f"{block['recall']:.1%} ({block['stale_share']:.1%})"


def comparison_rows(summary: dict[str, Any], records: Sequence[Records | RunView]) -> list[Row]:
    """The rows of the comparison table, in display order (one column per run)."""
    users, days = summary["users"], summary["days"]
    runs = as_views(records, days)
    blocks = [summary["strategies"][r.strategy] for r in runs]

    def row(label: str, fmt) -> Row:
        return Row(label, [fmt(b, r) for b, r in zip(blocks, runs, strict=True)])

    def month(b: dict) -> float:
        return b["usd_total"] / days * DAYS_PER_MONTH

    rows = [
        row("turns (errors)", lambda b, r: f"{b['turns']:,} ({b['error_turns']:,})"),
        row("tokens, total", lambda b, r: f"{b['tokens_total']:,}"),
        row(
            "tokens/day, first → last week",
            lambda b, r: "{:,.0f} → {:,.0f}".format(*_week_means(b["tokens_per_day"])),
        ),
        row("USD, total", lambda b, r: f"${b['usd_total']:,.2f}"),
        row("USD/month (30 days)", lambda b, r: f"${month(b):,.2f}"),
        row("USD/user/month", lambda b, r: f"${month(b) / users:,.4f}"),
        row(
            "prompt tokens/turn (mean)",
            lambda b, r: f"{r.prompt_means['prompt']:,.0f}" if r.turns else "0",
        ),
        row(
            "LLM calls: chat / extract",
            lambda b, r: (
                f"{b['llm_calls_by_purpose']['chat']:,} / {b['llm_calls_by_purpose']['extract']:,}"
            ),
        ),
        row(
            "extraction calls/session", lambda b, r: f"{b['extraction_calls_per_session_mean']:.2f}"
        ),
        row(
            "latency p50 / p95 / p99 (s)",
            lambda b, r: (
                f"{b['latency_p50_s']:.2f} / {b['latency_p95_s']:.2f} / {b['latency_p99_s']:.2f}"
            ),
        ),
        row("retrieval p99 (ms)", lambda b, r: f"{b['retrieval_latency_p99_s'] * 1000:.0f}"),
        row(
            "memories/user mean / p99 / max",
            lambda b, r: (
                f"{b['memories_per_user_mean']:.1f} / {b['memories_per_user_p99']:.0f} / "
                f"{b['memories_per_user_max']}"
            ),
        ),
        row("duplicate ratio", lambda b, r: f"{b['duplicate_ratio']:.1%}"),
        row(
            "injected tokens mean / p99 / max",
            lambda b, r: (
                f"{b['injected_tokens_mean']:.0f} / {b['injected_tokens_p99']:.0f} / "
                f"{b['injected_tokens_max']}"
            ),
        ),
        row("recall (stale)", _recall_cell),
    ]
    if any(b.get("probes") and "probe_prompt_tokens_mean" in b for b in blocks):
        rows.append(
            row(
                "per question: prompt tokens / p50 / p95 (s)",
                lambda b, r: (
                    f"{b.get('probe_prompt_tokens_mean', 0):,.0f} / "
                    f"{b.get('probe_latency_p50_s', 0):.2f} / {b.get('probe_latency_p95_s', 0):.2f}"
                ),
            )
        )
    if any(b.get("cached_input_tokens") or b.get("cache_write_tokens") for b in blocks):
        at = next(i for i, r in enumerate(rows) if r.label == "USD/user/month") + 1
        rows[at:at] = [
            row("prompt cache hit share (chat input)", lambda b, r: f"{b['cache_hit_share']:.1%}"),
            row(
                "USD/month without cache (saved)",
                lambda b, r: (
                    f"${b['usd_total_uncached'] / days * DAYS_PER_MONTH:,.2f} "
                    f"(${b['usd_saved_by_cache'] / days * DAYS_PER_MONTH:,.2f})"
                ),
            ),
        ]
    if any(b.get("degraded_turns") or b.get("retries") for b in blocks):  # faults injected
        rows.insert(
            1,
            row(
                "turns degraded / failed; retries; facts lost",
                lambda b, r: (
                    f"{b.get('degraded_turns', 0):,} / {b['error_turns']:,}; "
                    f"{b.get('retries', 0):,}; {b.get('facts_lost_to_faults', 0):,}"
                ),
            ),
        )
    return rows


CACHE_RULES = {
    "openai": "OpenAI's automatic prefix caching",
    "anthropic": "Anthropic's cache breakpoints",
    "gemini": "Gemini's implicit caching",
}


def prompt_cache_text(resolved: dict[str, Any]) -> str:
    """The run's prompt-cache rule and prices in one sentence (``config.json``'s resolved part)."""
    rule = resolved.get("prompt_cache") or {"provider": "none"}
    provider = rule["provider"]
    if provider == "none":
        return "none: every input token billed at the full input price"
    prices = resolved["chat_usd_per_million_tokens"]
    text = CACHE_RULES.get(provider, provider)
    if rule.get("breakpoints"):
        text += f" (after {', '.join(rule['breakpoints'])})"
    step = f" in steps of {rule['step_tokens']:,}" if rule.get("step_tokens", 1) > 1 else ""
    text += (
        f": prefixes from {rule['min_tokens']:,} tokens{step}, kept {rule['ttl_s']:,.0f} s "
        f"after their last use; cached input ${prices.get('cache_read', 0):g} per 1M"
    )
    if rule.get("write_ttl"):
        text += f", writes ${prices.get('cache_write', 0):g} per 1M ({rule['write_ttl']} entries)"
    return text


MEMORY_WORK_TITLE = "Memory work per turn (real libraries measured through serve-mock)"


def memory_work_lead(real: list[str]) -> str:
    """The Markdown sentence above the memory-work table (``report.md`` and ``report.html``)."""
    return (
        f"{', '.join(f'**{n}**' for n in real)} ran a real memory library against "
        "`memsim serve-mock`: its figures are the requests and store calls the library "
        "made. One `add` per turn, so per turn is per add."
    )


def memory_work_rows(summary: dict[str, Any], runs: list[StrategyRun]) -> list[Row]:
    """Memory work per turn: the calls and tokens each strategy spends to remember.

    For a real library (an external strategy) these are the requests and store calls
    it made; with one ``add`` (or ingestion) per turn they are its figures per add.
    """
    per_turn = {}
    for run in runs:
        calls, turns = run.calls, max(len(run.turns), 1)
        llm = calls[(calls["endpoint"] == "llm") & (calls["purpose"] != "chat")]
        embed = calls[calls["purpose"] == "embed"]
        store = calls[calls["endpoint"] == "store"]
        extract = llm[llm["purpose"] == "extract"]
        per_turn[run.strategy] = (
            len(extract) / turns,
            (len(llm) - len(extract)) / turns,
            len(embed) / turns,
            len(store) / turns,
            float((llm["tokens_in"] + llm["tokens_out"]).sum() + embed["tokens_in"].sum()) / turns,
            float(extract["tokens_in"].mean()) if len(extract) else 0.0,
        )

    def row(label: str, i: int, fmt: str) -> Row:
        return Row(label, [format(per_turn[r.strategy][i], fmt) for r in runs])

    blocks = [summary["strategies"][r.strategy] for r in runs]
    return [
        row("extraction calls/turn", 0, ".2f"),
        row("other memory LLM calls/turn (update, summarize)", 1, ".2f"),
        row("embedding calls/turn", 2, ".2f"),
        row("store calls/turn", 3, ".2f"),
        row("memory tokens/turn (LLM + embeddings)", 4, ",.0f"),
        row("input tokens per extraction call", 5, ",.0f"),
        Row(
            "memories/user mean / max",
            [f"{b['memories_per_user_mean']:.1f} / {b['memories_per_user_max']}" for b in blocks],
        ),
    ]


def _reply_ends(turns: pd.DataFrame) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per user, the turns' start times (sorted) and when their reply came."""
    out = {}
    for user, group in turns.groupby("user", sort=True, observed=True):
        group = group.sort_values("start_s", kind="stable")
        start = group["start_s"].to_numpy()
        out[int(user)] = (start, start + group["latency_s"].to_numpy())
    return out


def call_sides(run: StrategyRun) -> pd.DataFrame:
    """The run's calls with the user's ``turn`` they fall in and the ``side`` they serve.

    ``turn`` is the index among the user's turns (-1 before the first); ``side`` is
    ``read`` for a call made while a user waited for the reply (retrieval and the
    chat call), ``write`` for the rest (after the reply or in the background:
    extraction, updates, their embeddings and store writes).
    """
    calls = run.calls
    ends = _reply_ends(run.turns)
    turn = np.full(len(calls), -1)
    read = np.zeros(len(calls), dtype=bool)
    users, starts = calls["user"].to_numpy(), calls["start_s"].to_numpy()
    background = calls["background"].to_numpy()
    for user, (start, reply_end) in ends.items():
        mine = np.flatnonzero(users == user)
        at = np.searchsorted(start, starts[mine], side="right") - 1
        turn[mine] = at
        waited = (at >= 0) & (starts[mine] < reply_end[np.maximum(at, 0)])
        read[mine] = waited & ~background[mine]
    return calls.assign(turn=turn, side=np.where(read, "read", "write"))


def library_figures(run: StrategyRun, block: dict[str, Any], users: int, days: int) -> dict:
    """What a team weighing memory libraries compares, from one strategy's records.

    Per user message: LLM calls and tokens (LLM and embeddings) on the read side and
    the write side (:func:`call_sides`); USD per user per month; memories per user and
    their duplicate share at the end (and the memories at the run's middle day); the
    write work's time per message that wrote
    (the write-side calls' service and queueing time, summed per turn) and the
    answer latency, p50/p95; recall and the share of probes shown an outdated fact;
    the input tokens of the extraction calls in the first and the last week.
    """
    calls = call_sides(run)
    messages = max(len(run.turns), 1)
    llm = calls["endpoint"] == "llm"
    metered = llm | (calls["purpose"] == "embed")
    tokens = (calls["tokens_in"] + calls["tokens_out"]).where(metered, 0)
    figures: dict[str, Any] = {}
    for side in ("read", "write"):
        mine = calls["side"] == side
        figures[f"{side}_llm_calls"] = float((llm & mine).sum()) / messages
        figures[f"{side}_tokens"] = float(tokens[mine].sum()) / messages
    write = calls[(calls["side"] == "write") & (calls["turn"] >= 0)]
    took = (write["latency_s"] + write["queue_s"]).groupby([write["user"], write["turn"]]).sum()
    answer = run.turns["latency_s"].to_numpy()
    for q in (50, 95):
        figures[f"add_p{q}_s"] = float(np.percentile(took, q)) if len(took) else 0.0
        figures[f"answer_p{q}_s"] = float(np.percentile(answer, q)) if len(answer) else 0.0
    extract = calls[calls["purpose"] == "extract"]
    week = 7 * 86_400.0
    last = days * 86_400.0 - week
    figures["extract_tokens_in_first_week"] = _mean(extract, extract["start_s"] < week)
    figures["extract_tokens_in_last_week"] = _mean(extract, extract["start_s"] >= last)
    figures["usd_per_user_month"] = block["usd_total"] / max(users, 1) * DAYS_PER_MONTH / days
    daily = run.store_daily
    mid = daily[daily["day"] == (days - 1) // 2]["memories"]
    figures["memories_per_user_mid_run"] = float(mid.sum()) / max(users, 1)
    for key in ("memories_per_user_mean", "duplicate_ratio", "recall", "stale_share"):
        figures[key] = block[key]
    figures["injected_tokens_p99"] = block["injected_tokens_p99"]
    return figures


def _mean(calls: pd.DataFrame, where: pd.Series) -> float:
    picked = calls.loc[where, "tokens_in"]
    return float(picked.mean()) if len(picked) else 0.0
