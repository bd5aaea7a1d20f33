"""Incident scenarios, at reduced size: each shows its failure next to the fix.

``buffer-not-cleared``, ``cron-saturation`` and ``procedural-injection``: every
test runs the shipped scenario with fewer users (a few seconds) and asserts the
direction and the size of the effect the scenario reproduces.
"""

from __future__ import annotations

import pandas as pd
import pytest

import scenarios
import strategies
from helpers import make_scenario
from reports.output import summarize
from sim.config import LLMConfig
from sim.llm import CONTEXT_LENGTH_EXCEEDED, MockLLM
from sim.runner import RunResult, run_scenario
from sim.textbank import INSTRUCTION_CATEGORY, INSTRUCTION_SLOT, INSTRUCTIONS
from sim.tokens import TokenCounter
from sim.workload import Message, TextCatalog, generate_workload, iter_messages

WEEK_S = 7 * 86_400.0


def _run(name: str, strategy: str, users: int, **overrides) -> RunResult:
    """The shipped scenario ``name`` with ``users`` users, ``strategy`` configured as the
    scenario says plus ``overrides``."""
    scenario = scenarios.load(name)[0].with_overrides(users=users)
    cls = strategies.resolve(strategy)
    config = cls.Config.model_validate({**scenario.strategy.get(strategy, {}), **overrides})
    return run_scenario(scenario, strategies=[cls(config)])


# -- the pieces -------------------------------------------------------------------------
def _llm(**cfg) -> MockLLM:
    return MockLLM(LLMConfig(**cfg), TokenCounter(), TextCatalog(), seed=3)


def _said(text: str, instruction: int = -1) -> Message:
    kind = "instruction" if instruction >= 0 else "filler"
    return Message("user", text, TokenCounter().count(text), kind, instruction=instruction)


def test_extraction_over_the_context_window_fails_like_the_api_and_draws_nothing():
    long = [_said("My invoice is wrong again and I need help with it. " * 40)] * 12
    fits = _llm().extract(0, long)
    assert not fits.error and fits.tokens_in > 5_000
    llm = _llm(context_window=fits.tokens_in + 1_023)  # 1,024 more would fit: max_output_tokens
    failed = llm.extract(0, long)
    assert failed.error == CONTEXT_LENGTH_EXCEEDED
    assert "maximum context length is" in failed.error_message
    assert (failed.tokens_in, failed.tokens_out, failed.factoids) == (0, 0, [])
    # Nothing was drawn: the user's next extraction is the one it would have been.
    short = [_said("I moved to Lisbon.")]
    assert llm.extract(0, short).latency_s == _llm().extract(0, short).latency_s


def test_extractor_keeps_planted_instructions_at_its_rate():
    llm = _llm(extract_instruction_rate=0.8, extract_hallucination_rate=0)
    text, memory = INSTRUCTIONS[1]
    kept = [llm.extract(0, [_said(text, instruction=1)]).factoids for _ in range(2_000)]
    share = sum(bool(f) for f in kept) / len(kept)
    assert 0.77 < share < 0.83
    factoid = next(f for found in kept for f in found)
    assert (factoid.content, factoid.category) == (memory, INSTRUCTION_CATEGORY)
    assert factoid.facts == ((f"{INSTRUCTION_SLOT}1", 0),)
    never = _llm(extract_instruction_rate=0, extract_hallucination_rate=0)
    assert never.extract(0, [_said(text, instruction=1)]).factoids == []


def test_instruction_messages_follow_their_share_of_the_mix():
    mix = {"state": 0.8, "restate": 0.12, "update": 0.03, "probe": 0.15, "filler": 0.35}
    scenario = make_scenario(users=40, days=10, workload={"mix": {**mix, "instruction": 0.3}})
    messages = list(iter_messages(generate_workload(scenario, TokenCounter())))
    planted = [m for m in messages if m.kind == "instruction"]
    assert 0.08 < len(planted) / len(messages) < 0.25
    assert all(m.text == INSTRUCTIONS[m.instruction][0] and not m.facts for m in planted)
    assert all(m.instruction == -1 for m in messages if m.kind != "instruction")
    # Off by default: the default mix never plants one.
    default = list(iter_messages(generate_workload(make_scenario(users=40), TokenCounter())))
    assert not any(m.kind == "instruction" for m in default)


# -- buffer-not-cleared ---------------------------------------------------------------
@pytest.fixture(scope="module")
def buffer_runs() -> dict[bool, RunResult]:
    """The scenario with the bug (False) and with the buffer cleared (True)."""
    return {
        clear: _run(
            "buffer-not-cleared", "batched-dedup-budget", 40, clear_buffer_after_extraction=clear
        )
        for clear in (False, True)
    }


def _extractions(run: RunResult) -> pd.DataFrame:
    calls = run.runs[0].calls
    extract = calls[calls.purpose == "extract"].copy()
    extract["failed"] = extract.error.astype(str) == CONTEXT_LENGTH_EXCEEDED
    return extract


def _needs_memory(run: RunResult) -> set[tuple[int, int, int]]:
    """(user, session, turn) of the probes whose facts were not stated earlier in their
    session: only memory (not the session's own history) can answer them."""
    workload = generate_workload(run.scenario, TokenCounter())
    keys = set()
    for script in workload.users:
        for s, session in enumerate(script.sessions):
            said: set[tuple[str, int]] = set()
            for t, message in enumerate(session.messages):
                if message.probe is not None:
                    probe = message.probe
                    needed = probe if isinstance(probe[0], tuple) else (probe,)
                    if not set(needed) <= said:
                        keys.add((script.user, s, t))
                said.update((f.slot, f.version) for f in message.facts)
    return keys


def _late_recall(run: RunResult) -> float:
    """Recall of the probes asked in the last week that only memory can answer."""
    turns = run.runs[0].turns
    days = run.scenario.days
    late = turns[(turns.recall >= 0) & (turns.start_s >= (days - 7) * 86_400.0)]
    needs = _needs_memory(run)
    keys = zip(late.user, late.session, late.turn, strict=True)
    late = late[[key in needs for key in keys]]
    assert len(late) > 50  # enough probes to measure
    return float(late.recall.mean())


def test_uncleared_buffer_grows_extraction_prompts(buffer_runs):
    ok = {c: _extractions(r) for c, r in buffer_runs.items()}
    ok = {c: e[~e.failed] for c, e in ok.items()}
    first_day = {c: e[e.start_s < 86_400].tokens_in.mean() for c, e in ok.items()}
    largest = {c: e.tokens_in.max() for c, e in ok.items()}
    # Cleared: every prompt is one batch (about 1k tokens) and stays so.
    assert largest[True] < 2_500
    # The bug: prompts start alike, then grow to the edge of the 8k window.
    assert first_day[False] < 2_000
    window = buffer_runs[False].scenario.llm.context_window
    max_output = buffer_runs[False].scenario.llm.max_output_tokens
    assert window - max_output - 600 < largest[False] <= window - max_output


def test_uncleared_buffer_extractions_fail_once_past_the_window(buffer_runs):
    extract = {c: _extractions(r) for c, r in buffer_runs.items()}
    assert extract[True].failed.sum() == 0
    bug = extract[False]
    last_week = bug[bug.start_s >= (buffer_runs[False].scenario.days - 7) * 86_400.0]
    assert last_week.failed.all() and len(last_week) > 100
    # Once a user's buffer has passed the window, it never fits again.
    for _, calls in bug.groupby("user"):
        failed = calls.failed.to_numpy()
        if failed.any():
            assert failed[failed.argmax() :].all()
    assert (bug.groupby("user").failed.any()).mean() == 1.0
    assert (bug[bug.failed].tokens_in == 0).all()  # a failed request is not billed


def test_uncleared_buffer_loses_facts(buffer_runs):
    late = {c: _late_recall(r) for c, r in buffer_runs.items()}
    # Facts stated or updated after the overflow are never stored: recall of the
    # last week's probes that only memory can answer falls from 0.68 to 0.44 (40 users).
    assert late[True] > 0.6
    assert late[True] - late[False] > 0.2


# -- cron-saturation --------------------------------------------------------------------
CRON_SIZE = {"users": 500, "days": 4}  # the cron needs this many users' memories to saturate


@pytest.fixture(scope="module")
def cron_turns() -> dict[str, pd.DataFrame]:
    """Answered turns of the hourly scenario and of its nightly fix, with ``minute`` of hour."""
    turns = {}
    for name in ("cron-saturation", "cron-saturation-nightly"):
        scenario = scenarios.load(name)[0].with_overrides(**CRON_SIZE)
        frame = run_scenario(scenario).runs[0].turns
        frame = frame[frame.error.astype(str) == ""]
        turns[name] = frame.assign(minute=(frame.start_s % 3_600.0) // 60.0)
    return turns


def test_hourly_consolidation_spikes_latency_at_the_top_of_the_hour(cron_turns):
    turns = cron_turns["cron-saturation"]
    top, rest = turns[turns.minute == 0], turns[turns.minute > 0]
    # Turns in the cron's minute queue behind its embedding calls; the others never do.
    assert (top.queue_s > 1.0).mean() > 0.2
    assert top.queue_s.quantile(0.99) > 5.0
    assert (rest.queue_s > 0).sum() == 0
    assert top.latency_s.quantile(0.99) > rest.latency_s.quantile(0.99) + 2.0


def test_nightly_consolidation_removes_the_hourly_spikes(cron_turns):
    hourly, nightly = cron_turns["cron-saturation"], cron_turns["cron-saturation-nightly"]
    assert len(hourly) == len(nightly)  # same workload, same turns
    top, rest = nightly[nightly.minute == 0], nightly[nightly.minute > 0]
    assert (top.queue_s > 1.0).mean() < 0.02
    assert abs(top.latency_s.quantile(0.99) - rest.latency_s.quantile(0.99)) < 0.5
    hourly_top = hourly[hourly.minute == 0]
    assert hourly_top.latency_s.quantile(0.99) - top.latency_s.quantile(0.99) > 2.0


# -- procedural-injection -------------------------------------------------------------
def _injection_summary(guard: bool) -> dict:
    scenario = scenarios.load("procedural-injection")[0].with_overrides(users=30, days=10)
    built = []
    for name in scenario.strategies:
        cls = strategies.resolve(name)
        overrides = {**scenario.strategy.get(name, {}), "instruction_guard": guard}
        built.append(cls(cls.Config.model_validate(overrides)))
    return summarize(run_scenario(scenario, strategies=built))["strategies"]


@pytest.fixture(scope="module")
def injection() -> dict[bool, dict]:
    """Per-strategy summary blocks without (False) and with (True) the instruction guard."""
    return {guard: _injection_summary(guard) for guard in (False, True)}


def test_planted_instructions_reach_the_prompt_of_every_strategy_that_stores_memories(
    injection,
):
    assert set(injection[False]) == {
        "per-turn-extract",
        "batched-dedup-budget",
        "lazy-retrieval",
        "mem0-like",
        "mem0-like-add-only",
        "memgpt-like",
    }
    for name, block in injection[False].items():
        # Once planted, an instruction sits in most later prompts of that user: more
        # than a third of all prompts hold one, most of them more than one.
        assert block["instruction_turns"] > 0.35 * block["turns"], name
        assert block["injected_instructions"] > 1.5 * block["instruction_turns"], name


def test_instruction_guard_blocks_every_planted_instruction(injection):
    for name, block in injection[True].items():
        assert block["injected_instructions"] == 0, name
        assert block["instruction_turns"] == 0, name
        unguarded = injection[False][name]
        assert block["turns"] == unguarded["turns"]
        assert block["memories_written"] < unguarded["memories_written"], name
    # Where no update call's noise depends on what was stored, the guard costs no recall.
    for name in ("per-turn-extract", "batched-dedup-budget", "mem0-like-add-only"):
        assert injection[True][name]["recall"] == injection[False][name]["recall"], name
