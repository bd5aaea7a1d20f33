"""Mem0-like memory: MockLLM.update, the Mem0 prompts, and the two mem0-like strategies."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import pytest

from helpers import make_scenario, single_user_context
from reports.summary import build_summary
from sim.config import LLMConfig
from sim.context import take_spans
from sim.llm import ADD, DELETE, NONE, UPDATE, Factoid, MockLLM
from sim.runner import run_scenario
from sim.store import normalized_hash
from sim.textbank import (
    EXTRACT_SYSTEM_PROMPT,
    INFERENCES,
    MEM0_EXTRACT_SYSTEM_PROMPT,
    MEM0_UPDATE_PROMPT,
    MEMORY_HEADER,
    SLOT_BY_KEY,
)
from sim.tokens import REPLY_PRIMING_TOKENS, TokenCounter, encoding
from sim.workload import Fact, Message, TextCatalog
from strategies.mem0_like import Mem0Like, Mem0LikeAddOnly, Mem0LikeConfig

COUNTER = TokenCounter()


def n_tokens(text: str) -> int:
    return len(encoding().encode_ordinary(text))


def make_llm(seed: int = 0, **cfg: Any) -> MockLLM:
    return MockLLM(LLMConfig(**cfg), COUNTER, TextCatalog(), seed=seed)


@dataclass
class Stored:
    """A stored memory as the update call sees it."""

    id: int
    text: str
    facts: tuple[tuple[str, int], ...] = ()


def factoid(slot: str, value: str, version: int = 0) -> Factoid:
    text = SLOT_BY_KEY[slot].memories[0].format(v=value)
    return Factoid(
        text, SLOT_BY_KEY[slot].importance, SLOT_BY_KEY[slot].category, ((slot, version),)
    )


def stored(id_: int, slot: str, value: str, version: int = 0) -> Stored:
    return Stored(id_, SLOT_BY_KEY[slot].memories[0].format(v=value), ((slot, version),))


BERLIN, LISBON = factoid("city", "Berlin"), factoid("city", "Lisbon", 1)
NAME = stored(7, "name", "Priya")
PLAN = stored(8, "plan", "Pro")


def decide(fact: Factoid, candidates: list, **cfg: Any):
    result = make_llm(update_error_rate=0.0, **cfg).update(0, fact, candidates)
    return result, result.decision


# -- MockLLM.update: ground truth ---------------------------------------------------------


def test_no_candidate_about_the_slot_is_an_add():
    _, empty = decide(BERLIN, [])
    assert (empty.event, empty.target, empty.expected) == (ADD, None, ADD)
    assert [(e.event, e.memory_id, e.text) for e in empty.events] == [(ADD, None, BERLIN.content)]
    _, unrelated = decide(BERLIN, [NAME, PLAN])
    assert unrelated.event == ADD and unrelated.target is None
    assert [(e.event, e.memory_id) for e in unrelated.events] == [(NONE, 7), (NONE, 8), (ADD, None)]


def test_the_same_version_is_no_change():
    same = stored(3, "city", "Berlin")
    _, decision = decide(BERLIN, [NAME, same])
    assert (decision.event, decision.target) == (NONE, 3)
    assert all(e.event == NONE for e in decision.events) and len(decision.events) == 2
    # A reworded memory of the same fact is still the same fact.
    reworded = Stored(4, SLOT_BY_KEY["city"].memories[2].format(v="Berlin"), (("city", 0),))
    assert decide(BERLIN, [reworded])[1].event == NONE
    # A newer version already stored: the (stale) fact changes nothing.
    newer = stored(5, "city", "Lisbon", 1)
    assert decide(BERLIN, [newer])[1].event == NONE


def test_an_older_version_is_updated_and_other_outdated_copies_deleted():
    old = stored(3, "city", "Berlin")
    _, decision = decide(LISBON, [NAME, old])
    assert (decision.event, decision.target) == (UPDATE, 3)
    update = decision.events[1]
    assert (update.event, update.memory_id, update.text, update.old_memory) == (
        UPDATE,
        3,
        LISBON.content,
        old.text,
    )
    # Two outdated copies: the most similar (first) is updated, the other deleted.
    older = Stored(9, "The user is based in Berlin.", (("city", 0),))
    _, both = decide(LISBON, [old, NAME, older])
    assert [(e.event, e.memory_id) for e in both.events] == [(UPDATE, 3), (NONE, 7), (DELETE, 9)]
    # The current version present as well: no change, and the outdated copy goes.
    current = stored(4, "city", "Lisbon", 1)
    _, mixed = decide(LISBON, [old, current])
    assert (mixed.event, mixed.target) == (NONE, 4)
    assert [(e.event, e.memory_id) for e in mixed.events] == [(DELETE, 3), (NONE, 4)]


def test_inferences_are_added_unless_the_same_text_is_stored():
    guess = Factoid(INFERENCES[0], 3, "other")
    assert decide(guess, [NAME, PLAN])[1].event == ADD
    same = Stored(11, INFERENCES[0])
    _, decision = decide(guess, [NAME, same])
    assert (decision.event, decision.target) == (NONE, 11)
    # An inference never updates a stated fact, even one that sounds alike.
    assert decide(guess, [Stored(12, INFERENCES[1])])[1].event == ADD


def test_update_answers_in_mem0_json_and_bills_real_tokens():
    old = stored(3, "city", "Berlin")
    candidates = [NAME, old, PLAN]
    result, decision = decide(LISBON, candidates)
    answer = {
        "memory": [
            {"id": "0", "text": NAME.text, "event": "NONE"},
            {"id": "1", "text": LISBON.content, "event": "UPDATE", "old_memory": old.text},
            {"id": "2", "text": PLAN.text, "event": "NONE"},
        ]
    }
    assert result.purpose == "update" and result.error == ""
    assert result.tokens_out == n_tokens(json.dumps(answer, ensure_ascii=False))
    request = (
        MEM0_UPDATE_PROMPT
        + "Current memory (the elements most similar to the new fact):\n```\n"
        + json.dumps([{"id": str(i), "text": c.text} for i, c in enumerate(candidates)])
        + "\n```\n\nNew fact:\n```\n"
        + json.dumps(LISBON.content)
        + "\n```\n"
    )
    # One user message holding everything (as Mem0 sends it), counted exactly.
    assert result.tokens_in == REPLY_PRIMING_TOKENS + 3 + 1 + n_tokens(request)
    added, _ = decide(BERLIN, [NAME])
    added_answer = {
        "memory": [
            {"id": "0", "text": NAME.text, "event": "NONE"},
            {"id": "1", "text": BERLIN.content, "event": "ADD"},
        ]
    }
    assert added.tokens_out == n_tokens(json.dumps(added_answer))
    assert decision.events[1].text == json.loads(json.dumps(answer))["memory"][1]["text"]


def test_update_is_deterministic_per_user_stream():
    a, b = make_llm(seed=4, update_error_rate=0.5), make_llm(seed=4, update_error_rate=0.5)
    old = stored(3, "city", "Berlin")
    calls_a = [a.update(u % 3, LISBON, [NAME, old]) for u in range(30)]
    calls_b = [b.update(u % 3, LISBON, [NAME, old]) for u in range(30)]
    assert calls_a == calls_b


# -- MockLLM.update: errors ----------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.05, 0.3])
def test_measured_update_error_rate(rate):
    llm = make_llm(seed=6, update_error_rate=rate)
    old = stored(3, "city", "Berlin")
    cases = [(LISBON, [NAME, old]), (BERLIN, [NAME, old]), (BERLIN, []), (BERLIN, [PLAN])]
    wrong = total = 0
    for user in range(300):
        for fact, candidates in cases:
            decision = llm.update(user, fact, candidates).decision
            wrong += decision.event != decision.expected
            total += 1
    sd = math.sqrt(rate * (1 - rate) / total)
    assert abs(wrong / total - rate) < 5 * sd, wrong / total


def test_every_answer_is_wrong_at_rate_one_and_stays_applicable():
    llm = make_llm(seed=2, update_error_rate=1.0)
    old = stored(3, "city", "Berlin")
    seen = set()
    for user in range(200):
        empty = llm.update(user, BERLIN, []).decision
        assert (empty.expected, empty.event, empty.target) == (ADD, NONE, None)
        assert empty.events == []  # nothing to add, nothing to touch
        decision = llm.update(user, LISBON, [NAME, old]).decision
        assert decision.expected == UPDATE and decision.event != UPDATE
        seen.add(decision.event)
        if decision.event == ADD:
            assert decision.target is None and decision.events[-1].event == ADD
        else:
            assert decision.target == 3  # the wrong event lands on the memory it was about
    assert seen == {ADD, DELETE, NONE}


# -- prompts -------------------------------------------------------------------------------


def test_mem0_prompt_sizes():
    extract_tokens = COUNTER.count(MEM0_EXTRACT_SYSTEM_PROMPT)
    update_tokens = COUNTER.count(MEM0_UPDATE_PROMPT)
    assert 900 <= extract_tokens <= 1_100, extract_tokens
    assert 1_530 <= update_tokens <= 1_870, update_tokens


def test_extract_bills_the_given_system_prompt_and_answers_the_same():
    messages = [Message("user", "I live in Berlin.", 5, "state", (Fact("city", 0, "Berlin"),))]
    default = make_llm(seed=1).extract(0, messages)
    mem0 = make_llm(seed=1).extract(0, messages, MEM0_EXTRACT_SYSTEM_PROMPT)
    assert mem0.factoids == default.factoids and mem0.tokens_out == default.tokens_out
    extra = n_tokens(MEM0_EXTRACT_SYSTEM_PROMPT) - n_tokens(EXTRACT_SYSTEM_PROMPT)
    assert mem0.tokens_in - default.tokens_in == extra
    assert 1_000 < mem0.tokens_in < 1_150


def test_update_prompt_is_about_1700_tokens_plus_the_memories():
    llm = make_llm(update_error_rate=0.0)
    alone = llm.update(0, BERLIN, []).tokens_in
    assert 1_700 <= alone <= 1_800
    ten = [Stored(i, f"User fact number {i} is about something else.") for i in range(10)]
    with_ten = llm.update(0, BERLIN, ten).tokens_in
    listed = n_tokens(json.dumps([{"id": str(i), "text": c.text} for i, c in enumerate(ten)]))
    assert abs(with_ten - alone - listed) <= 20  # the list, plus the heading that replaces "empty"


# -- the strategies, turn by turn ---------------------------------------------------------


class Driver:
    """One user's context over a noise-free mock LLM; jobs run inline."""

    def __init__(self, strategy, **llm: Any):
        self.ctx, self.catalog, self.store, _ = single_user_context(**llm)
        self.strategy = strategy
        self.turn = 0

    def say(self, slot: str, value: str, version: int = 0):
        fact = Fact(slot, version, value)
        text = SLOT_BY_KEY[slot].statements[0].format(v=value)
        self.catalog.register(text, (("fact", slot, value, "statement", 0),))
        msg = Message("user", text, COUNTER.count(text), "state", (fact,), None, 0, 0, self.turn)
        self.turn += 1
        prompt = self.strategy.build_prompt(self.ctx, msg)
        reply = Message("assistant", "Sure.", COUNTER.count("Sure."), user=0)
        self.strategy.after_turn(self.ctx, msg, reply)
        return prompt

    def purposes(self) -> list[str]:
        return [s.purpose for s in take_spans(self.ctx)]


def test_classic_updates_in_place_and_ignores_restatements():
    d = Driver(Mem0Like())
    d.say("city", "Berlin")
    (first,) = d.store.memories(0)
    assert d.purposes() == ["extract", "embed", "store_query", "update", "store_write"]
    d.say("city", "Berlin")  # restated: NONE
    assert [m.text for m in d.store.memories(0)] == ["User lives in Berlin."]
    d.say("city", "Lisbon", 1)  # moved: UPDATE
    (moved,) = d.store.memories(0)
    assert (moved.text, moved.facts) == ("User lives in Lisbon.", (("city", 1),))
    assert (moved.id, moved.importance, moved.created_at) == (
        first.id,
        first.importance,
        first.created_at,
    )
    take_spans(d.ctx)
    prompt = d.say("plan", "Pro")
    assert [m.text for m in prompt.memories] == ["User lives in Lisbon."]
    assert d.purposes()[:2] == ["embed", "store_query"]  # the search before the answer


def test_add_only_keeps_every_version_and_drops_exact_repeats():
    d = Driver(Mem0LikeAddOnly())
    for args in [("city", "Berlin"), ("city", "Berlin"), ("city", "Lisbon", 1)]:
        d.say(*args)
    assert [m.facts for m in d.store.memories(0)] == [(("city", 0),), (("city", 1),)]
    hashes = [m.content_hash for m in d.store.memories(0)]
    assert len(set(hashes)) == len(hashes) and hashes[0] == normalized_hash("User lives in Berlin.")
    assert "update" not in d.purposes()


def test_batches_every_n_turns_and_budget_limits_injection():
    one_line = 3 + 1 + COUNTER.count(MEMORY_HEADER) + 9  # room for one memory line, not two
    d = Driver(Mem0Like(Mem0LikeConfig(add_every_turns=2, budget_tokens=one_line)))
    d.say("city", "Berlin")
    assert "extract" not in d.purposes()
    d.say("plan", "Pro")
    assert d.purposes().count("extract") == 1 and d.store.count(0) == 2
    prompt = d.say("device", "Pixel 8")
    assert prompt.tokens(COUNTER).memories <= one_line
    assert len(prompt.memories) == 1
    roomy = Driver(Mem0Like(Mem0LikeConfig(add_every_turns=2, search_limit=1)))
    roomy.say("city", "Berlin")
    roomy.say("plan", "Pro")
    assert len(roomy.say("device", "Pixel 8").memories) == 1  # the search limit binds


# -- the strategies, over a run ------------------------------------------------------------


@pytest.fixture(scope="module")
def update_heavy_runs():
    scenario = make_scenario(
        seed=11,
        users=6,
        days=8,
        workload={"facts_per_user": 8, "sessions_per_user_per_day": 1.0, "mix": {"update": 0.3}},
        llm={"update_error_rate": 0.05},
    )
    result = run_scenario(scenario, strategies=[Mem0Like(), Mem0LikeAddOnly()])
    return scenario, {run.strategy: run for run in result.runs}


def test_classic_makes_one_extraction_and_one_update_per_fact(update_heavy_runs):
    _, runs = update_heavy_runs
    calls = runs["mem0-like"].calls
    llm = calls[calls["endpoint"] == "llm"]
    assert (llm["error"] == "").all()
    checked = 0
    for _, user_calls in llm.groupby("user", sort=True):
        rows = list(zip(user_calls["purpose"], user_calls["items"], strict=True))
        for i, (purpose, facts) in enumerate(rows):
            if purpose != "extract":
                continue
            following = [p for p, _ in rows[i + 1 :]]
            end = next((k for k, p in enumerate(following) if p != "update"), len(following))
            assert end == facts, (i, rows[i : i + facts + 2])
            checked += 1
    turns = len(runs["mem0-like"].turns)
    assert checked == turns  # add_every_turns = 1: one extraction per turn
    n_updates = int((llm["purpose"] == "update").sum())
    assert n_updates == int(llm.loc[llm["purpose"] == "extract", "items"].sum()) > 50
    update_in = llm.loc[llm["purpose"] == "update", "tokens_in"]
    assert update_in.min() >= COUNTER.count(MEM0_UPDATE_PROMPT)
    extract_in = llm.loc[llm["purpose"] == "extract", "tokens_in"]
    assert extract_in.min() >= COUNTER.count(MEM0_EXTRACT_SYSTEM_PROMPT)


def test_classic_keeps_the_latest_version_add_only_keeps_them_all(update_heavy_runs):
    scenario, runs = update_heavy_runs
    blocks = {
        name: build_summary("t", 0, "", scenario.users, scenario.days, [run])["strategies"][name]
        for name, run in runs.items()
    }
    classic, add_only = blocks["mem0-like"], blocks["mem0-like-add-only"]
    assert add_only["llm_calls_by_purpose"]["update"] == 0
    assert add_only["tokens_by_purpose"]["update"] == 0
    assert add_only["llm_calls_by_purpose"]["extract"] == classic["llm_calls_by_purpose"]["extract"]
    assert add_only["stale_share"] > 0.1
    assert classic["stale_share"] < add_only["stale_share"] / 2
    assert classic["memories_per_user_mean"] < add_only["memories_per_user_mean"]
    assert classic["tokens_total"] > add_only["tokens_total"]  # the price of the update calls
