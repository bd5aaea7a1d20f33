"""``report.md``: the run explained for a person, from the summary and the DataFrames.

It is long because every finding of ``report.md`` lives here, each with its rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reports.alerts import AlertThresholds, filling_text, fired_lines
from reports.compare import (
    MEMORY_WORK_TITLE,
    Row,
    comparison_rows,
    growth,
    memory_work_lead,
    memory_work_rows,
    prompt_cache_text,
    recall_available,
)
from reports.numbers import DAYS_PER_MONTH
from reports.views import RunView, as_views
from sim.records import Records
from strategies.registry import external_strategies

# Definitions for the reader, one Markdown bullet each (shared with ``report.html``).
NOTES = (
    "- *Recall*: share of probe questions (a user asking about a fact stated earlier) "
    "whose prompt held the fact's latest version; *stale*: share whose prompt held an "
    "outdated version.",
    "- *Latency* is from the user's message to the reply, including queueing at the rate "
    "limits; extraction that runs after the reply or in the background is not in it.",
    "- *Duplicate ratio*: share of stored memories that repeat a fact another memory holds.",
    "- Full definitions: `summary.json` keys in the README; raw data in `turns.parquet` and "
    "`calls.parquet`.",
)


_DEFAULTS = AlertThresholds()
ALERTS_LEAD = (
    "Production alert rules replayed on the simulated timeline (default thresholds: over "
    f"{_DEFAULTS.memories_per_user:,} memories per user, over "
    f"{_DEFAULTS.extraction_calls_per_session} extraction calls per session, over "
    f"{_DEFAULTS.injected_tokens_per_prompt:,} injected tokens per prompt, retrieval p99 over "
    f"{_DEFAULTS.retrieval_p99_s * 1000:g} ms in a trailing hour, an embedding-model switch "
    f"without re-embedding, daily tokens per turn over {_DEFAULTS.daily_tokens_growth:.0%} "
    "above the first week's level, not counting a memory block's growth toward its token "
    "budget): when each first fired and the dollars spent by then. "
    "Day 1 is the first simulated day."
)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def findings(
    summary: dict[str, Any], names: list[str], config: dict[str, Any] | None = None
) -> list[str]:
    """What stands out in a run, one Markdown bullet each (shared with ``report.html``).

    Strategy names are in ``**bold**``; nothing else is marked up. ``config`` (the
    resolved configuration) tells a replayed trace: its skipped questions, and
    why recall is unavailable when it has no probe.
    """
    blocks = {name: summary["strategies"][name] for name in names}
    cheapest = min(blocks, key=lambda n: blocks[n]["usd_total"])
    dearest = max(blocks, key=lambda n: blocks[n]["usd_total"])
    best_recall = max(blocks, key=lambda n: blocks[n]["recall"])
    days = summary["days"]
    lines = []
    if cheapest != dearest and blocks[cheapest]["usd_total"] > 0:
        ratio = blocks[dearest]["usd_total"] / blocks[cheapest]["usd_total"]
        lines.append(
            f"- **{dearest}** costs {ratio:.1f}× what **{cheapest}** costs "
            f"(${blocks[dearest]['usd_total'] / days * DAYS_PER_MONTH:,.2f} vs "
            f"${blocks[cheapest]['usd_total'] / days * DAYS_PER_MONTH:,.2f} a month)."
        )
    for name, block in blocks.items():
        lines += _growth(name, block, days)
        if block["duplicate_ratio"] >= 0.2:
            lines.append(
                f"- **{name}** stores duplicates: {block['duplicate_ratio']:.0%} of its "
                f"{block['memories_per_user_mean']:.0f} memories per user repeat a fact it "
                "already holds."
            )
        if block["error_turns"]:
            lines.append(
                f"- **{name}** failed {block['error_turns']:,} of {block['turns']:,} turns "
                f"({block['timeout_turns']:,} timeouts)."
            )
        if block.get("degraded_turns"):
            lines.append(
                f"- **{name}** answered {block['degraded_turns']:,} of {block['turns']:,} turns "
                "degraded, without memory: the vector store was down or a retrieval call failed."
            )
        if block.get("facts_lost_to_faults"):
            lines.append(
                f"- **{name}** lost {block['facts_lost_to_faults']:,} facts users stated to "
                "faults: every extraction sent them failed, and they are not stored."
            )
        if block.get("retries"):
            lines.append(
                f"- **{name}** made {block['retries']:,} retries of failed requests "
                f"({block['rate_limited_calls']:,} attempts were answered 429, rate limited)."
            )
        lines += _unused_memory(name, block)
        if block.get("instruction_turns"):
            lines.append(
                f"- **{name}** put instructions users planted in memory into "
                f"{block['instruction_turns']:,} of {block['turns']:,} prompts "
                f"({block['injected_instructions']:,} injected in all); "
                "the strategy setting instruction_guard = true blocks them at write time."
            )
    lines += cache_findings(blocks, days)
    trace = ((config or {}).get("resolved") or {}).get("trace")
    if not all(recall_available(b) for b in blocks.values()):
        why = "the trace has no ground truth" if trace else "the run asked no probe question"
        lines.append(f"- Recall unavailable: {why} (0 probes), so no recall figure is shown.")
    else:
        lines.append(
            f"- Best recall: **{best_recall}** ({blocks[best_recall]['recall']:.1%} of probe "
            "questions had the latest fact in the prompt)."
        )
    if trace:
        lines.append(trace_finding(trace))
    return lines + recommendation(summary, names)


LEAK_GROWTH = 1 + _DEFAULTS.daily_tokens_growth
"""Last week's daily tokens over the first week's above which a strategy is said to leak:
the threshold of the ``daily_tokens_growth`` alert (see :mod:`reports.alerts`)."""


def _growth(name: str, block: dict[str, Any], days: int) -> list[str]:
    """The "leaks tokens" finding, or why growth is not a leak (a block filling its budget).

    Needs two weeks (a first and a last one that do not overlap). A strategy whose
    ``daily_tokens_growth`` alert was held back because its memory block is still
    filling toward its token budget is said to be filling, with the budget and the
    last day's block: that growth stops at the budget.
    """
    g = growth(block["tokens_per_day"])
    if days < 14 or g <= LEAK_GROWTH:
        return []
    filling = ((block.get("alerts") or {}).get("daily_tokens_growth") or {}).get("filling")
    if filling:
        return [
            f"- **{name}** is {filling_text(filling)} (mean per prompt); its daily tokens in "
            f"the last week are {g:.1f}× the first week's, growth that stops when the block "
            "reaches its budget: not a leak."
        ]
    return [
        f"- **{name}** leaks tokens: its daily tokens in the last week are {g:.1f}× "
        "those of the first week."
    ]


RECALL_MARGIN = 0.05
"""Recall (a share) a recommended strategy may give up against the best one: 5 points.
Wider than recall's seed-to-seed noise: over the 3 seeds of every point of
``examples/sweeps/dedup-budget.toml`` (support-bot, 200 users × 14 days) its 95%
interval is ±0.5 points at the median and ±3.2 at most, so strategies closer than 5
points are not reliably told apart by recall."""
MAX_FAILED_SHARE = 0.01
"""Share of failed turns above which a strategy is not recommended: a failed turn is not
billed, so a strategy that fails is cheap for the wrong reason. 1%: the share at which
``memsim project`` flags timeouts."""


def recommendation(summary: dict[str, Any], names: list[str]) -> list[str]:
    """One bullet recommending a strategy, and why; nothing when one strategy ran.

    The rule: leave out strategies that failed more than :data:`MAX_FAILED_SHARE` of
    their turns (unless all did); of the rest, keep those whose recall is within
    :data:`RECALL_MARGIN` of the best one's; recommend the cheapest of those (USD per
    user-month; ties: the better recall, then the run's order). Without recall (a
    trace without ground truth) the cheapest is recommended on cost alone.
    """
    if len(names) < 2:
        return []
    blocks = {n: summary["strategies"][n] for n in names}
    # Every strategy served the same users: per user-month ranks as per month does.
    users = summary.get("users") or 1
    unit, digits = ("per user-month", 4) if "users" in summary else ("a month", 2)

    usd = {n: blocks[n]["usd_total"] / users / summary["days"] * DAYS_PER_MONTH for n in names}

    def dollars(n: str) -> str:
        return f"${usd[n]:,.{digits}f}"

    def failed(n: str) -> float:
        return blocks[n]["error_turns"] / blocks[n]["turns"] if blocks[n]["turns"] else 0.0

    eligible = [n for n in names if failed(n) <= MAX_FAILED_SHARE] or list(names)
    recall = {n: blocks[n]["recall"] for n in names}
    left_out = [n for n in names if n not in eligible]
    why_not = (
        " (not "
        + ", ".join(f"**{n}**, which failed {failed(n):.0%} of its turns" for n in left_out)
        + ")"
        if left_out
        else ""
    )
    cheapest = min(eligible, key=lambda n: (usd[n], -recall[n], names.index(n)))
    if not all(recall_available(blocks[n]) for n in names):
        return [
            f"- Ship **{cheapest}**: the cheapest ({dollars(cheapest)} {unit}); "
            f"recall is unavailable, so cost alone decides{why_not}."
        ]
    best = max(eligible, key=lambda n: (recall[n], -usd[n], -names.index(n)))
    close = [n for n in eligible if recall[n] >= recall[best] - RECALL_MARGIN]
    pick = min(close, key=lambda n: (usd[n], -recall[n], names.index(n)))
    margin = f"{RECALL_MARGIN * 100:.0f} points"
    if pick == best == cheapest:
        reason = f"the cheapest ({dollars(pick)} {unit}) and the best recall ({recall[pick]:.1%})"
    elif pick == best:
        reason = (
            f"the best recall ({recall[pick]:.1%}); the cheaper **{cheapest}** recalls "
            f"{recall[cheapest]:.1%}, more than {margin} less "
            f"({dollars(pick)} vs {dollars(cheapest)} {unit})"
        )
    else:
        reason = (
            f"the cheapest within {margin} of the best recall ({recall[pick]:.1%} vs "
            f"{recall[best]:.1%} for **{best}**; {dollars(pick)} vs {dollars(best)} "
            f"{unit})"
        )
    return [f"- Ship **{pick}**: {reason}{why_not}."]


def cache_findings(blocks: dict[str, dict[str, Any]], days: int) -> list[str]:
    """What the provider's prompt cache did to the bill: the ranking, the savings, waste.

    Nothing when no call touched the cache (``[llm.cache] mode = "none"``, or prompts
    all under the provider's minimum).
    """
    touched = ("cached_input_tokens", "cache_write_tokens")
    if not any(b.get(key) for b in blocks.values() for key in touched):
        return []

    def month(usd: float) -> str:
        return f"${usd / days * DAYS_PER_MONTH:,.2f}"

    with_cache = sorted(blocks, key=lambda n: blocks[n]["usd_total"])
    without = sorted(blocks, key=lambda n: blocks[n]["usd_total_uncached"])
    lines = []
    if with_cache[0] != without[0]:
        cheap, plain = with_cache[0], without[0]
        lines.append(
            f"- The prompt cache changes which strategy is cheapest: **{cheap}** "
            f"({month(blocks[cheap]['usd_total'])} a month, "
            f"{blocks[cheap]['cache_hit_share']:.0%} of its chat input cached), where billed "
            f"without a cache **{plain}** would be ({month(blocks[plain]['usd_total_uncached'])} "
            f"vs {month(blocks[cheap]['usd_total_uncached'])})."
        )
    elif with_cache != without:
        lines.append(
            "- The prompt cache changes the ranking by cost: "
            + " < ".join(f"**{n}**" for n in with_cache)
            + " with it, "
            + " < ".join(f"**{n}**" for n in without)
            + " without."
        )
    saver = max(blocks, key=lambda n: blocks[n]["usd_saved_by_cache"])
    saved = blocks[saver]["usd_saved_by_cache"]
    if saved > 0:
        share = saved / blocks[saver]["usd_total_uncached"]
        lines.append(
            f"- The prompt cache saves **{saver}** {month(saved)} a month ({share:.0%} of its "
            f"bill): {blocks[saver]['cache_hit_share']:.0%} of its chat input is read from it."
        )
    for name, block in blocks.items():
        if block["usd_saved_by_cache"] < 0:
            lines.append(
                f"- **{name}** pays {month(-block['usd_saved_by_cache'])} a month more with "
                "prompt caching than without: it writes prefixes to the cache (at the write "
                "price) that later requests do not read."
            )
    return lines


def trace_finding(trace: dict[str, Any]) -> str:
    """One bullet on the replayed trace: what it held and what was left out."""
    kind = "LoCoMo conversations" if trace["format"] == "locomo" else "users of a chat log"
    line = (
        f"- Replayed a real trace: {trace['users']:,} {kind}, {trace['sessions']:,} sessions, "
        f"{trace['turns']:,} user turns of which {trace['probes']:,} probe questions"
    )
    skipped = trace.get("skipped") or {}
    if trace.get("questions"):
        line += f" of {trace['questions']:,} QA items"
    if skipped:
        line += " (skipped: " + ", ".join(f"{n:,} {why}" for why, n in skipped.items()) + ")"
    ignored = trace.get("ignored") or {}
    if ignored:
        line += "; lines not replayed: " + ", ".join(f"{n:,} {why}" for why, n in ignored.items())
    return line + "."


UNUSED_MEMORY_SHARE = 0.9
"""Share of stored memories never used above which memory spend is reported as waste."""


def _unused_memory(name: str, block: dict[str, Any]) -> list[str]:
    """A finding when a strategy paid for memory that (almost) no prompt ever used."""
    spent, never = block.get("memory_usd_total", 0.0), block.get("memories_never_retrieved_share")
    if not spent or never is None or never < UNUSED_MEMORY_SHARE:
        return []
    share = spent / block["usd_total"] if block["usd_total"] else 0.0
    return [
        f"- **{name}** paid ${spent:,.2f} ({share:.0%} of its cost) for memory that was "
        f"almost never used: {never:.0%} of the memories it stored never reached a prompt."
    ]


def _memory_rows(runs: list[RunView], days: int) -> list[list[str]]:
    shown = sorted({*range(0, days, 7), days - 1})
    by_day = [{s.day: s for s in run.store_days} for run in runs]
    rows = []
    for day in shown:
        cells = []
        for sizes in by_day:
            s = sizes.get(day)
            cells.append(f"{s.mean:.1f} / {s.p99:.0f} / {s.max}" if s else "–")
        rows.append([str(day + 1), *cells])
    return rows


def run_size(summary: dict[str, Any], description: str) -> str:
    """The report's first line: the run's own size, then the scenario's description.

    The size comes from ``summary.json`` (after ``--users``, ``--days``, a trace), so
    it is the run that happened; the description is the scenario file's text, which
    may speak of another size, and is marked as the scenario's.
    """
    size = (
        f"**{summary['users']:,} users × {summary['days']} simulated days**, "
        f"seed {summary['seed']}."
    )
    return f"{size} Scenario description: “{description}”" if description else size


def render(
    summary: dict[str, Any],
    records: Sequence[Records | RunView],
    resolved: dict[str, Any],
    description: str,
    work: list[Row] | None = None,
) -> str:
    """The Markdown text of the report.

    ``work``: the memory-work rows of a run with a real library
    (:func:`~reports.compare.memory_work_rows`); computed from ``records`` if not given.
    """
    runs = as_views(records, summary["days"])
    names = [r.strategy for r in runs]
    extra = resolved["resolved"]
    out = [
        f"# memsim report: {summary['scenario']}",
        "",
        run_size(summary, description),
        "",
        f"Model {resolved['llm']['model']} ({extra['chat_usd_per_million_tokens']['source']}), "
        f"embeddings {resolved['embedding']['model']} at "
        f"${extra['embedding_usd_per_million_tokens']:g}/1M tokens. "
        f"Prompt cache: {prompt_cache_text(extra)}. "
        f"Tokens counted with `{extra['token_encoding']}`. "
        f"memsim {summary['memsim_version']}, config sha256 `{summary['config_sha256'][:12]}…`.",
        "",
        "## Findings",
        "",
        *findings(summary, names, resolved),
        "",
        "## Comparison",
        "",
        *_table(
            ["measurement", *names], [[r.label, *r.cells] for r in comparison_rows(summary, runs)]
        ),
        "",
        "## Where prompt tokens go (mean per turn)",
        "",
    ]
    parts = {r.strategy: r.parts() for r in runs}
    out += _table(
        ["part", *names],
        [
            [p, *(f"{parts[n][p]:,.0f}" for n in names)]
            for p in ("system", "memory", "history", "user")
        ],
    )
    real = [n for n in names if n in external_strategies()]
    if real:
        out += ["", f"## {MEMORY_WORK_TITLE}", "", memory_work_lead(real), ""]
        if work is None:
            work = memory_work_rows(summary, list(records))  # type: ignore[arg-type]
        out += _table(["measurement", *names], [[r.label, *r.cells] for r in work])
    out += ["", "## Memories per user over time (mean / p99 / max at the end of the day)", ""]
    out += _table(["day", *names], _memory_rows(runs, summary["days"]))
    out += ["", "## Tokens per simulated day", ""]
    days = summary["days"]
    out += _table(
        ["day", *names],
        [
            [str(d + 1), *(f"{summary['strategies'][n]['tokens_per_day'][d]:,}" for n in names)]
            for d in range(days)
        ],
    )
    out += ["", "## Alerts", "", ALERTS_LEAD, "", *fired_lines(summary, names)]
    out += [
        "",
        "## How to read this",
        "",
        *NOTES,
        "",
    ]
    return "\n".join(out)
