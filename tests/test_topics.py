"""Topics in the workload (``topic_persistence``), what they do to lazy-retrieval, and how
both embedders place same-topic messages; memory lengths (``memory_words``) and the
generated fact bank (``facts_per_user`` beyond the 14 hand-written slots)."""

from __future__ import annotations

import itertools
import random
from typing import Any

import numpy as np
import pytest

from helpers import make_scenario
from sim.calibration import load_profile
from sim.config import ConfigError, MemoryWords, parse_scenario
from sim.embed import LatentEmbedder
from sim.runner import run_scenario
from sim.textbank import (
    ATTRIBUTES,
    GENERATED_SLOTS,
    GENERATED_THINGS,
    MEMORY_CONTEXT,
    QUESTIONS,
    SLOT_BY_KEY,
    SLOTS,
    Slot,
)
from sim.tokens import TokenCounter
from sim.workload import TextCatalog, Workload, generate_workload
from strategies.batched_dedup_budget import BatchedDedupBudget
from strategies.lazy_retrieval import LazyRetrieval


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter()


def workload(counter: TokenCounter, **fields: Any) -> Workload:
    """A workload of ``make_scenario(**fields)``, 40 users over 20 days unless told."""
    fields = {"users": 40, "days": 20, "seed": 9, **fields}
    return generate_workload(make_scenario(**fields), counter)


def topic_of(components: tuple[tuple, ...]) -> str | None:
    """The slot a message is about (its first fact, its probe or its question), if any."""
    return next((c[1] for c in components if c[0] in ("fact", "probe", "ask")), None)


def same_topic_share(wl: Workload) -> float:
    """Of consecutive messages of a session that both have a topic, the share on the same."""
    same = pairs = 0
    for session in (s for u in wl.users for s in u.sessions):
        topics = [topic_of(wl.catalog.topics[m.text]) for m in session.messages]
        for a, b in itertools.pairwise(topics):
            if a and b:
                pairs, same = pairs + 1, same + (a == b)
    return same / pairs


# -- the workload's topics ------------------------------------------------------------------


def test_persistence_sets_how_often_the_next_message_stays_on_the_topic(counter):
    shares = {
        p: same_topic_share(workload(counter, workload={"topic_persistence": p}))
        for p in (0.0, 0.5, 0.75, 0.9)
    }
    assert shares[0.0] < 0.2  # independent picks: the same fact by chance only
    assert shares[0.0] < shares[0.5] < shares[0.75] < shares[0.9]
    assert shares[0.75] == pytest.approx(0.75, abs=0.07)  # the default, as documented


def test_at_persistence_zero_no_message_is_steered_by_a_topic(counter):
    wl = workload(counter, workload={"topic_persistence": 0.0})
    components = [
        c
        for m in (m for u in wl.users for s in u.sessions for m in s.messages)
        for c in wl.catalog.topics[m.text]
    ]
    assert not [c for c in components if c[0] == "ask"]  # questions are the general ones


def test_at_persistence_one_restatements_probes_and_questions_follow_the_topic(counter):
    """Replays the rule: once a session has a topic, every message that can be about it is."""
    wl = workload(counter, workload={"topic_persistence": 1.0})
    followed: dict[str, int] = dict.fromkeys(("restate", "probe", "update", "ask"), 0)
    for session in (s for u in wl.users for s in u.sessions):
        topic = None
        for msg in session.messages:
            comps = wl.catalog.topics[msg.text]
            slots = [c[1] for c in comps if c[0] in ("fact", "probe")]
            if topic is not None and msg.kind in ("restate", "probe"):
                assert slots == [topic], (msg.text, topic)
                followed[msg.kind] += 1
            if topic is not None and msg.kind == "update" and SLOT_BY_KEY[topic].mutable:
                assert slots == [topic]
                followed["update"] += 1
            topic = slots[0] if slots else topic
            for kind, *index in (c for c in comps if c[0] in ("ask", "question")):
                if topic is None:  # a general question: the session has no topic (yet)
                    assert kind == "question"
                else:  # a question after or inside a message on a topic is about it
                    assert (kind, index[0]) == ("ask", topic)
                    followed["ask"] += 1
            if any(c[0] == "question" for c in comps):
                topic = None
    assert min(followed.values()) > 20, followed


# -- embedders: same topic closer than different topics ----------------------------------------


def bank_messages(slots: list[Slot], catalog: TextCatalog | None = None) -> dict[str, list[str]]:
    """Per slot: statements of three values, its probes and its questions (registered)."""
    texts: dict[str, list[str]] = {}
    for slot in slots:
        found = []
        for value in slot.values[:3]:
            for i, template in enumerate(slot.statements):
                found.append(template.format(v=value))
                if catalog is not None:
                    catalog.register(found[-1], (("fact", slot.key, value, "statement", i),))
        for kind, texts_of_kind in (("probe", slot.probes), ("ask", slot.questions)):
            for i, text in enumerate(texts_of_kind):
                found.append(text)
                if catalog is not None:
                    catalog.register(text, ((kind, slot.key, i),))
        texts[slot.key] = found
    return texts


def topic_similarities(texts: dict[str, list[str]], embedder) -> tuple[float, float, list[str]]:
    """Mean cosine of pairs of messages on one topic, on different topics, and the slots
    whose own messages are not closer to each other than to the other slots' messages."""
    flat = sorted({t for group in texts.values() for t in group})
    vectors = dict(zip(flat, embedder.embed(flat), strict=True))
    same, different, weak = [], [], []
    for key, group in texts.items():
        own = [float(vectors[a] @ vectors[b]) for a, b in itertools.combinations(group, 2)]
        other = [
            float(vectors[a] @ vectors[b])
            for a in group
            for other_key, other_group in texts.items()
            if other_key != key
            for b in other_group
        ]
        same += own
        different += other
        if np.mean(own) <= np.mean(other):
            weak.append(key)
    return float(np.mean(same)), float(np.mean(different)), weak


def some_slots() -> list[Slot]:
    """The hand-written slots and 14 generated ones."""
    return list(SLOTS) + random.Random(0).sample(GENERATED_SLOTS, 14)


def test_latent_embedder_places_same_topic_messages_closer():
    catalog = TextCatalog()
    texts = bank_messages(some_slots(), catalog)
    similarity = load_profile("default")["similarity"]
    embedder = LatentEmbedder(384, catalog.topics, 42, similarity)
    same, different, weak = topic_similarities(texts, embedder)
    assert same > different + 0.08, (same, different)
    assert weak == []


def test_minilm_places_same_topic_messages_closer():
    pytest.importorskip("sentence_transformers")
    from sim.embed import MiniLMEmbedder

    same, different, weak = topic_similarities(bank_messages(some_slots()), MiniLMEmbedder())
    assert same > different + 0.2, (same, different)
    assert weak == []


# -- what topics do to lazy-retrieval ----------------------------------------------------------


def retrieval_queries(run) -> int:
    """Store queries made while a user waits (retrieval), not the write path's dedup."""
    calls = run.calls
    return int(((calls["purpose"] == "store_query") & ~calls["background"]).sum())


def test_lazy_retrieval_saves_store_queries_only_when_users_stay_on_a_topic():
    counts = {}
    for persistence in (0.75, 0.0):
        scenario = make_scenario(
            users=60, days=14, seed=3, workload={"topic_persistence": persistence}
        )
        batched, lazy = run_scenario(
            scenario, strategies=[BatchedDedupBudget(), LazyRetrieval()]
        ).runs
        counts[persistence] = (retrieval_queries(batched), retrieval_queries(lazy))
        recall = [run.turns["recall"][run.turns["recall"] >= 0].mean() for run in (batched, lazy)]
        assert recall[1] == pytest.approx(recall[0], abs=0.03)
    at_default, at_zero = counts[0.75], counts[0.0]
    assert at_default[1] < 0.9 * at_default[0], counts  # clearly fewer
    assert at_zero[1] > 0.95 * at_zero[0], counts  # next to nothing saved


# -- memory lengths --------------------------------------------------------------------------


def memory_word_counts(catalog: TextCatalog) -> list[int]:
    """Words of the memory text of every fact and phrasing of the bank (hand-written and
    generated slots, every value)."""
    return [
        len(catalog.memory_text(slot, value, variant).split())
        for slot in SLOTS + GENERATED_SLOTS
        for value in slot.values
        for variant in range(len(slot.memories))
    ]


@pytest.mark.parametrize("mean, sigma", [(18.0, 0.47), (30.0, 0.3), (24.0, 0.6)])
def test_memory_words_follow_the_setting(mean, sigma):
    words = np.array(
        memory_word_counts(TextCatalog(memory_words=MemoryWords(mean=mean, sigma=sigma), seed=1))
    )
    assert words.size > 5_000
    assert words.mean() == pytest.approx(mean, rel=0.06)
    # The spread of the log-normal: bare phrasings (4 to 8 words) floor the short draws.
    assert np.log(words).std() == pytest.approx(sigma, abs=0.1 if mean < 15 else 0.05)


@pytest.mark.parametrize("mean", [3.0, 10.0, 40.0])
def test_each_memory_has_the_drawn_length_to_the_word_or_its_bare_phrasing(mean):
    """With sigma 0 every draw is ``mean``: a memory has that many words, or its bare
    phrasing's when that is longer."""
    bare = memory_word_counts(TextCatalog())
    sized = memory_word_counts(TextCatalog(memory_words=MemoryWords(mean=mean, sigma=0.0)))
    assert sized == [max(b, round(mean)) for b in bare]


def test_memory_words_templates_and_catalogs_outside_a_scenario_keep_the_bare_phrasings():
    bare = memory_word_counts(TextCatalog())
    assert bare == memory_word_counts(
        TextCatalog(memory_words=MemoryWords(distribution="templates"))
    )
    assert max(bare) <= 14 and np.mean(bare) < 9


def test_a_lengthened_memory_keeps_its_fact_and_topics_and_is_fixed_by_the_seed():
    slot, words = SLOT_BY_KEY["city"], MemoryWords(mean=25, sigma=0.3)
    one, again, other = (TextCatalog(memory_words=words, seed=s) for s in (1, 1, 2))
    texts = [c.memory_text(slot, "Lisbon", 0) for c in (one, again, other)]
    assert texts[0] == texts[1]
    assert texts[0].startswith("User lives in Lisbon, ") and texts[0].endswith(".")
    assert one.topics[texts[0]] == (("fact", "city", "Lisbon", "memory", 0),)
    clauses = texts[0][len("User lives in Lisbon, ") : -1].split(", ")
    assert set(clauses) <= set(MEMORY_CONTEXT)
    lengths = [
        len(c.memory_text(slot, v, i).split())
        for c in (one, other)
        for v in slot.values
        for i in range(3)
    ]
    assert len(set(lengths)) > 5  # a distribution, not one length


def test_memory_texts_of_a_run_follow_the_scenario(counter):
    scenario = make_scenario(users=5, days=5, seed=4, workload={"memory_words": {"mean": 22}})
    catalog = generate_workload(scenario, counter).catalog
    assert catalog.memory_words == scenario.workload.memory_words and catalog.seed == 4


# -- the generated fact bank -------------------------------------------------------------------


def test_generated_slots_have_every_template_and_distinct_texts():
    assert len(GENERATED_SLOTS) == len(ATTRIBUTES) * len(GENERATED_THINGS) >= 300
    keys = [s.key for s in SLOTS + GENERATED_SLOTS]
    assert len(set(keys)) == len(keys)
    owner: dict[str, str] = {text: "general" for text in QUESTIONS}
    for slot in SLOTS + GENERATED_SLOTS:
        assert SLOT_BY_KEY[slot.key] is slot and SLOT_BY_KEY.get(slot.key) is slot
        assert len(slot.memories) == 3 and slot.probes and slot.questions and slot.statements
        if slot.mutable:
            assert slot.updates
        assert len(set(slot.values)) == len(slot.values) >= 4
        for template in slot.statements + slot.updates + slot.memories:
            assert "{v}" in template and "{e}" not in template and template.endswith("."), template
        texts = [
            t.format(v=v)
            for t in slot.statements + slot.updates + slot.memories
            for v in slot.values
        ]
        for text in texts + list(slot.probes + slot.questions):
            # One text, one slot: the catalog keeps a text's first topics.
            assert owner.setdefault(text, slot.key) == slot.key, text
    assert SLOT_BY_KEY.get("locomo:D1:3") is None and len(SLOT_BY_KEY) == len(SLOTS)


def test_a_heavy_user_has_hundreds_of_distinct_facts_hand_written_first(counter):
    state_only = {"state": 1.0, "restate": 0.0, "update": 0.0, "probe": 0.0, "filler": 0.0}
    wl = workload(
        counter,
        users=2,
        days=40,
        workload={
            "facts_per_user": 300,
            "mix": state_only,
            "intro_probability": 0.0,
            "sessions_per_user_per_day": 3.0,
            "turns_per_session_mean": 8,
        },
    )
    for script in wl.users:
        facts = [f for s in script.sessions for m in s.messages for f in m.facts]
        slots = {f.slot for f in facts}
        assert len(slots) == len(facts) == 300  # each stated once: 300 distinct facts
        assert {s.key for s in SLOTS} <= slots
        for fact in facts:
            assert fact.value in SLOT_BY_KEY[fact.slot].values


def test_up_to_fourteen_facts_come_from_the_hand_written_slots(counter):
    wl = workload(counter, workload={"facts_per_user": 14})
    slots = {f.slot for u in wl.users for s in u.sessions for m in s.messages for f in m.facts}
    assert slots <= {s.key for s in SLOTS}


def test_same_seed_same_workload_with_topics_memories_and_generated_slots(counter):
    fields = {"workload": {"facts_per_user": 120, "memory_words": {"mean": 20}}}

    def view(wl: Workload) -> list[tuple]:
        memories = [
            wl.catalog.memory_text(SLOT_BY_KEY[f.slot], f.value, 1)
            for u in wl.users
            for s in u.sessions
            for m in s.messages
            for f in m.facts
        ]
        messages = [
            (s.start_s, m.text, m.kind, m.facts, m.probe, m.gap_s)
            for u in wl.users
            for s in u.sessions
            for m in s.messages
        ]
        return messages + memories

    first, second = (view(workload(counter, users=8, days=10, **fields)) for _ in range(2))
    assert first == second
    assert view(workload(counter, users=8, days=10, seed=10, **fields)) != first


@pytest.mark.parametrize(
    "workload_fields, named",
    [
        ({"facts_per_user": len(SLOTS) + len(GENERATED_SLOTS) + 1}, "workload.facts_per_user"),
        ({"topic_persistence": 1.5}, "workload.topic_persistence"),
        ({"memory_words": {"mean": 0}}, "workload.memory_words.mean"),
        ({"memory_words": {"distribution": "gamma"}}, "workload.memory_words.distribution"),
    ],
)
def test_bad_workload_settings_are_one_line_errors(workload_fields, named):
    with pytest.raises(ConfigError) as err:
        parse_scenario({"name": "x", "workload": workload_fields}, "bad.toml")
    message = str(err.value)
    assert "\n" not in message and named in message and message.startswith("bad.toml")
