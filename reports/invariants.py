"""Invariants a strategy must keep whatever the baseline: budget, cap, extraction rate, isolation.

:func:`check_invariants` reads one strategy's ``summary.json`` block, its resolved
configuration (``config.json``'s ``strategy[name]``) and its turns (and, if given,
its calls). Budget and cap are checked only when the configuration has them
(``budget_tokens``, ``max_memories_per_user``). Each :class:`Invariant` carries what
it measured (``measure``, ``measured``) and the bound it held that to (``bound``),
so that a check's table can show "16, limit 10" and not only "failed".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from reports.alerts import AlertThresholds, extraction_calls_by_session
from sim.records import StrategyRun

EXTRACTIONS_PER_SESSION = AlertThresholds().extraction_calls_per_session
NAMES = (
    "injected_tokens_within_budget",
    "memories_per_user_within_cap",
    "extraction_calls_per_session_within_limit",
    "no_cross_user_memory",
)
"""Every invariant :func:`check_invariants` knows, in the order it checks them."""


@dataclass(frozen=True, slots=True)
class Invariant:
    """One checked invariant: its name, whether it held, and what was seen.

    ``measured`` is the worst value of ``measure`` over the run (``None`` when it
    could not be measured) and ``bound`` the most it may be.
    """

    name: str
    passed: bool
    detail: str
    measure: str = ""
    measured: float | None = None
    bound: float | None = None


def check_invariants(
    summary_block: dict[str, Any],
    config: dict[str, Any],
    turns_df: pd.DataFrame,
    calls_df: pd.DataFrame | None = None,
    *,
    max_extractions_per_session: int = EXTRACTIONS_PER_SESSION,
) -> list[Invariant]:
    """The invariants of one strategy's run, in a fixed order.

    Args:
        summary_block: The strategy's block of ``summary.json``.
        config: The strategy's resolved configuration.
        turns_df: The strategy's turns (``turns.parquet`` rows of that strategy).
        calls_df: Its calls; without them the extraction check reads the
            ``extraction_calls_per_session`` alert (only at the default limit).
        max_extractions_per_session: Most LLM extraction calls one session may make.
    """
    out = []
    budget = config.get("budget_tokens")
    if budget is not None:
        worst = int(turns_df["memory_tokens"].max()) if len(turns_df) else 0
        worst = max(worst, int(summary_block.get("injected_tokens_max", 0)))
        out.append(
            Invariant(
                "injected_tokens_within_budget",
                worst <= budget,
                f"largest memory block {worst:,} tokens, budget {budget:,}",
                "injected_tokens_max",
                worst,
                budget,
            )
        )
    cap = config.get("max_memories_per_user")
    if cap is not None:
        worst = int(turns_df["store_size"].max()) if len(turns_df) else 0
        worst = max(worst, int(summary_block.get("memories_per_user_max", 0)))
        out.append(
            Invariant(
                "memories_per_user_within_cap",
                worst <= cap,
                f"largest store {worst:,} memories, cap {cap:,}",
                "memories_per_user_max",
                worst,
                cap,
            )
        )
    limit = max_extractions_per_session
    passed, detail, worst = _extractions(summary_block, turns_df, calls_df, limit)
    out.append(
        Invariant(
            "extraction_calls_per_session_within_limit",
            passed,
            detail,
            "extraction_calls_per_session_max",
            worst,
            limit,
        )
    )
    measure = "cross_user_memory_prompts"  # prompts that held another user's memory
    if "foreign_memories" in turns_df:
        foreign = turns_df["foreign_memories"]
        bad = int((foreign > 0).sum())
        detail = (
            f"{int(foreign.sum()):,} items of other users in {bad:,} prompts"
            if bad
            else f"no prompt of {len(turns_df):,} held another user's memory"
        )
        out.append(Invariant("no_cross_user_memory", bad == 0, detail, measure, bad, 0))
    else:
        detail = "not verifiable: no foreign_memories column"
        out.append(Invariant("no_cross_user_memory", False, detail, measure, None, 0))
    return out


def _extractions(
    block: dict[str, Any], turns: pd.DataFrame, calls: pd.DataFrame | None, limit: int
) -> tuple[bool, str, int | None]:
    """Whether every session kept to ``limit`` LLM extraction calls, what was seen, the most.

    From the summary's alert alone the most calls in one session is not known (``None``).
    """
    if calls is None:
        alert = (block.get("alerts") or {}).get("extraction_calls_per_session")
        if alert is None or limit != EXTRACTIONS_PER_SESSION:
            raise ValueError(
                "extraction calls per session: pass calls_df (summary.json records only the "
                f"alert at the default limit {EXTRACTIONS_PER_SESSION})"
            )
        if alert["fired"]:
            day = alert["first_fired_day"] + 1
            return False, f"over {limit} in a session, first on day {day}", None
        return True, f"at most {limit} in every session", None
    run = StrategyRun("", turns, calls, pd.DataFrame(), pd.DataFrame())
    per_call = extraction_calls_by_session(run)
    if not len(per_call):
        return True, "no extraction calls", 0
    worst = int(per_call.groupby(["user", "session"]).size().max())
    return worst <= limit, f"at most {worst:,} in a session, limit {limit:,}", worst
