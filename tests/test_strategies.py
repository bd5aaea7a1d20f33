"""Each built-in strategy's behaviour, driven turn by turn without the engine."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import single_user_context
from sim.context import take_spans
from sim.llm import Factoid
from sim.textbank import SLOT_BY_KEY
from sim.workload import Fact, Message
from strategies.base import memory_part_tokens
from strategies.batched_dedup_budget import BatchedDedupBudget, BatchedDedupBudgetConfig
from strategies.naive_append import NaiveAppend
from strategies.per_turn_extract import PerTurnExtract


class Driver:
    """One user's context; deferred jobs are queued and run on demand."""

    def __init__(self, strategy, **llm):
        self.jobs = []
        defer = lambda user, job: self.jobs.append(job)  # noqa: E731 - run on demand
        self.ctx, self.catalog, self.store, self.tokens = single_user_context(defer, **llm)
        self.strategy = strategy
        self.turn = 0

    def message(self, text, facts=(), session=0, probe=None):
        self.catalog.register(
            text,
            tuple(("fact", f.slot, f.value, "statement", 0) for f in facts) or (("text", text),),
        )
        msg = Message(
            "user",
            text,
            self.tokens.count(text),
            "state" if facts else "filler",
            tuple(facts),
            probe,
            0,
            session,
            self.turn,
        )
        self.turn += 1
        return msg

    def say(self, msg):
        prompt = self.strategy.build_prompt(self.ctx, msg)
        reply = Message("assistant", "Sure.", self.tokens.count("Sure."), user=0)
        self.strategy.after_turn(self.ctx, msg, reply)
        return prompt

    def run_jobs(self):
        while self.jobs:
            self.jobs.pop(0)(self.ctx)


def fact(slot, value, version=0):
    return Fact(slot, version, value)


CITY = fact("city", "Lisbon")
PLAN = fact("plan", "Pro")


def test_naive_append_sends_everything_ever_said():
    d = Driver(NaiveAppend())
    first = d.message("I live in Lisbon.", [CITY], session=0)
    d.say(first)
    prompt = d.say(d.message("Thanks!", session=5))
    assert prompt.history[0] is first and len(prompt.history) == 2  # message + reply
    assert prompt.tokens(d.tokens).history == sum(3 + 1 + m.tokens for m in prompt.history)
    assert (CITY.slot, CITY.version) in prompt.facts()


def test_per_turn_extract_stores_every_restatement_and_injects_all():
    d = Driver(PerTurnExtract())
    for _ in range(3):
        d.say(d.message("I live in Lisbon.", [CITY]))
    assert d.store.count(0) == 3 and d.store.duplicates(0) == 2
    take_spans(d.ctx)
    prompt = d.strategy.build_prompt(d.ctx, d.message("Any news?"))
    assert len(prompt.memories) == 3
    assert [s.purpose for s in take_spans(d.ctx)] == ["store_query"]


def test_batched_extracts_every_n_messages_and_clears_the_buffer():
    d = Driver(BatchedDedupBudget(BatchedDedupBudgetConfig(extract_every_messages=3)))
    for _ in range(2):
        d.say(d.message("Hello there."))
    assert d.jobs == []
    d.say(d.message("I live in Lisbon.", [CITY]))
    assert len(d.jobs) == 1
    d.run_jobs()
    extract = [s for s in take_spans(d.ctx) if s.purpose == "extract"]
    assert len(extract) == 1
    assert d.store.count(0) == 1
    d.say(d.message("Hello there."))
    assert d.jobs == []  # the buffer started again from zero


def test_batched_extracts_when_the_buffer_passes_its_token_limit():
    d = Driver(BatchedDedupBudget(BatchedDedupBudgetConfig(extract_buffer_tokens=30)))
    d.say(d.message("I live in Lisbon, and I would like to talk about my invoice today please."))
    assert d.jobs == []  # the user's 17 tokens + the reply's 2 are not yet 30
    d.say(d.message("It shows two charges for the same month and I do not understand why."))
    assert len(d.jobs) == 1


def test_batched_drops_exact_duplicates():
    d = Driver(BatchedDedupBudget(BatchedDedupBudgetConfig(extract_every_messages=1)))
    for _ in range(4):
        d.say(d.message("I live in Lisbon.", [CITY]))
        d.run_jobs()
    assert [m.text for m in d.store.memories(0)] == ["User lives in Lisbon."]


def test_batched_drops_rewordings_at_or_above_the_threshold():
    threshold = 0.85
    config = BatchedDedupBudgetConfig(extract_every_messages=1, dedup_threshold=threshold)
    d = Driver(BatchedDedupBudget(config), extract_reword_rate=1.0)
    slot = SLOT_BY_KEY["city"]
    phrasings = [m.format(v="Lisbon") for m in slot.memories[1:]]
    for _ in range(8):
        d.say(d.message("I live in Lisbon.", [CITY]))
        d.run_jobs()
    stored = [m.text for m in d.store.memories(0)]
    assert set(stored) <= set(phrasings) and len(stored) >= 1
    vectors = d.ctx._services.embedder.embed(phrasings)
    similar = float(vectors[0] @ vectors[1]) >= threshold
    # Both rewordings were extracted; the second is kept only if it is not similar enough.
    assert len(stored) == (1 if similar else 2)


def test_batched_keeps_updates_as_new_memories():
    d = Driver(BatchedDedupBudget(BatchedDedupBudgetConfig(extract_every_messages=1)))
    d.say(d.message("I live in Lisbon.", [CITY]))
    d.run_jobs()
    d.say(d.message("I just moved to Porto.", [fact("city", "Porto", 1)]))
    d.run_jobs()
    assert [m.facts for m in d.store.memories(0)] == [(("city", 0),), (("city", 1),)]


def test_batched_cap_evicts_least_important_then_oldest():
    strategy = BatchedDedupBudget(BatchedDedupBudgetConfig(max_memories_per_user=2))
    d = Driver(strategy)
    stored = []
    for i, (text, importance) in enumerate([("a", 5), ("b", 9), ("c", 5)]):
        d.ctx.now = float(i)
        factoid = Factoid(f"User fact {text}.", importance, "other", ((text, 0),))
        memory = d.ctx.new_memory(factoid)
        new, vectors = strategy._enforce_cap(d.ctx, [memory], np.ones((1, 384), np.float32), set())
        d.store.add(0, new, vectors)
        stored.append(memory.id)
    # 'a' (importance 5, oldest) went first; 'b' (9) and 'c' (5, newest) stay.
    assert [m.text for m in d.store.memories(0)] == ["User fact b.", "User fact c."]


def test_batched_fills_the_budget_by_relevance_times_importance():
    config = BatchedDedupBudgetConfig(extract_every_messages=1, budget_tokens=60)
    d = Driver(BatchedDedupBudget(config))
    facts = [
        CITY,
        PLAN,
        fact("company", "Globex"),
        fact("device", "Pixel 8"),
        fact("order", "A-48213"),
        fact("team_size", "12"),
    ]
    for f in facts:
        d.say(d.message(SLOT_BY_KEY[f.slot].statements[0].format(v=f.value), [f]))
        d.run_jobs()
    assert d.store.count(0) == len(facts)
    d.catalog.register("Which plan am I on?", (("probe", "plan", 0),))
    prompt = d.say(d.message("Which plan am I on?"))
    block = memory_part_tokens(d.tokens, prompt.memories)
    assert 0 < block <= 60 and len(prompt.memories) < len(facts)
    assert prompt.memories[0].facts == (("plan", 0),)  # the relevant memory ranks first


def test_batched_budget_too_small_for_the_header_injects_nothing():
    d = Driver(
        BatchedDedupBudget(BatchedDedupBudgetConfig(budget_tokens=10, extract_every_messages=1))
    )
    d.say(d.message("I live in Lisbon.", [CITY]))
    d.run_jobs()
    assert d.say(d.message("Where do I live?")).memories == []


@pytest.mark.parametrize("cls", [NaiveAppend, PerTurnExtract, BatchedDedupBudget])
def test_a_failed_reply_is_not_remembered(cls):
    d = Driver(cls())
    msg = d.message("Hello there.")
    d.strategy.build_prompt(d.ctx, msg)
    d.strategy.after_turn(d.ctx, msg, None)
    prompt = d.strategy.build_prompt(d.ctx, d.message("Again."))
    assert all(m.role == "user" for m in prompt.history)


def test_per_turn_extract_records_inject_the_same_facts_in_more_tokens():
    lines = Driver(PerTurnExtract())
    records = Driver(PerTurnExtract(PerTurnExtract.Config(inject_format="records")))
    prompts = []
    for d in (lines, records):
        d.say(d.message("I live in Lisbon.", [CITY]))
        d.say(d.message("I'm on the Pro plan.", [PLAN]))
        prompts.append(d.strategy.build_prompt(d.ctx, d.message("Any news?")))
    plain, rich = prompts
    assert rich.facts() == plain.facts() and len(rich.memories) == len(plain.memories) == 2
    for line, record in zip(plain.memories, rich.memories, strict=True):
        fields = json.loads(record.text)
        assert fields["memory"] == line.text and fields["id"] == f"mem-0-{line.id}"
        assert record.line_tokens == records.tokens.count(f"- {record.text}\n")
        assert record.line_tokens > 3 * line.line_tokens
    assert rich.tokens(records.tokens).memories > plain.tokens(lines.tokens).memories
    # The stored memories count their uses alike, whatever the format.
    hits = [[m.hit_count for m in d.store.memories(0)] for d in (lines, records)]
    assert hits[0] == hits[1] == [2, 1]
