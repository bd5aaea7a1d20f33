"""stateless, sliding-window, summary-buffer and lazy-retrieval, turn by turn and in a run."""

from __future__ import annotations

import pytest
from test_properties import checked
from test_strategies import CITY, PLAN, Driver

from helpers import make_scenario
from reports.output import summarize
from sim.context import take_spans
from sim.runner import run_scenario
from strategies.batched_dedup_budget import BatchedDedupBudget, BatchedDedupBudgetConfig
from strategies.lazy_retrieval import LazyRetrieval, LazyRetrievalConfig
from strategies.sliding_window import SlidingWindow, SlidingWindowConfig
from strategies.stateless import Stateless
from strategies.summary_buffer import SummaryBuffer, SummaryBufferConfig

EXCHANGE = 15  # "I live in Lisbon." (5 + 4 overhead) and the reply "Sure." (2 + 4)


def purposes(d: Driver) -> list[str]:
    return [s.purpose for s in take_spans(d.ctx)]


def foreground_store_queries(run) -> int:
    calls = run.calls
    return int(((calls["purpose"] == "store_query") & ~calls["background"]).sum())


def background_calls(run) -> dict[str, int]:
    calls = run.calls
    return calls.loc[calls["background"], "purpose"].value_counts().to_dict()


# -- stateless -------------------------------------------------------------------------
def test_stateless_keeps_the_session_and_forgets_it_after():
    d = Driver(Stateless())
    first = d.message("I live in Lisbon.", [CITY], session=0)
    d.say(first)
    same = d.say(d.message("Thanks!", session=0))
    assert same.history[0] is first and len(same.history) == 2
    assert same.tokens(d.tokens).history == EXCHANGE
    later = d.say(d.message("Where do I live?", session=1))
    assert later.history == [] and later.memories == [] and later.facts() == set()
    assert purposes(d) == []  # no calls at all besides the engine's chat


# -- sliding-window ----------------------------------------------------------------------
def test_sliding_window_keeps_the_newest_whole_messages_across_sessions():
    d = Driver(SlidingWindow(SlidingWindowConfig(window_tokens=2 * EXCHANGE)))
    sent = []
    for session in range(3):
        msg = d.message("I live in Lisbon.", [CITY], session=session)
        prompt = d.say(msg)
        sent.append(msg)
    # After three exchanges (45 tokens) the first one no longer fits in 30.
    assert prompt.history[0] is sent[0] and len(prompt.history) == 4
    prompt = d.say(d.message("Hello.", session=3))
    assert [m for m in prompt.history if m.role == "user"] == sent[1:]
    assert prompt.tokens(d.tokens).history == 2 * EXCHANGE
    assert d.tokens.chat(prompt.render()) == prompt.tokens(d.tokens).total
    assert purposes(d) == []


def test_sliding_window_history_never_exceeds_the_window():
    window = 40
    d = Driver(SlidingWindow(SlidingWindowConfig(window_tokens=window)))
    texts = ["Hi.", "I live in Lisbon and I am on the Pro plan.", "Thanks!", "A" * 200, "Ok."]
    for i in range(20):
        prompt = d.say(d.message(texts[i % len(texts)], session=i // 4))
        assert prompt.tokens(d.tokens).history == sum(
            d.tokens.message(m.role, m.tokens) for m in prompt.history
        )
        assert prompt.tokens(d.tokens).history <= window


def test_sliding_window_drops_a_message_larger_than_the_window():
    d = Driver(SlidingWindow(SlidingWindowConfig(window_tokens=8)))
    d.say(d.message("I live in Lisbon."))  # 9 tokens: too big; the 6-token reply stays
    assert [m.role for m in d.say(d.message("Hi.")).history] == ["assistant"]


def test_sliding_window_default_is_langchains_token_buffer():
    assert SlidingWindow().config.window_tokens == 2_000


# -- summary-buffer ----------------------------------------------------------------------
def test_summary_buffer_folds_every_k_turns_and_clears_the_buffer():
    config = SummaryBufferConfig(summarize_every_turns=3)
    d = Driver(SummaryBuffer(config))
    d.say(d.message("I live in Lisbon.", [CITY]))
    d.say(d.message("I'm on the Pro plan.", [PLAN]))
    assert "summarize" not in purposes(d)
    prompt = d.say(d.message("Hello.", session=1))  # the buffer spans sessions
    assert len(prompt.history) == 4 and prompt.memories == []
    assert purposes(d) == ["summarize"]
    prompt = d.say(d.message("Where do I live?", session=1))
    assert prompt.history == []
    (line,) = prompt.memories
    assert line.owner == 0 and set(line.facts) == {("city", 0), ("plan", 0)}
    assert prompt.facts() == {("city", 0), ("plan", 0)}
    assert d.tokens.chat(prompt.render()) == prompt.tokens(d.tokens).total
    # The next fold passes the previous summary on: its facts survive (no drift here).
    for _ in range(3):
        d.say(d.message("Thanks!", session=2))
    assert set(d.say(d.message("Bye.", session=2)).memories[0].facts) == set(line.facts)


def test_summary_buffer_folds_when_the_buffer_passes_its_share_of_the_limit():
    config = SummaryBufferConfig(buffer_token_limit=40, summarize_trigger_share=0.5)
    d = Driver(SummaryBuffer(config))
    d.say(d.message("I live in Lisbon.", [CITY]))  # 15 tokens: not past 20
    assert "summarize" not in purposes(d)
    d.say(d.message("I live in Lisbon.", [CITY]))  # 30 tokens: past 20
    assert purposes(d) == ["summarize"]
    for i in range(12):
        prompt = d.say(d.message("I live in Lisbon and I am on the Pro plan." * (i % 3 + 1)))
        assert prompt.tokens(d.tokens).history <= 20


def test_summary_buffer_drift_lowers_recall():
    def recall(drift: float) -> tuple[float, int]:
        scenario = make_scenario(
            users=4,
            days=4,
            workload={"sessions_per_user_per_day": 2.0, "turns_per_session_mean": 6},
            llm={"summarize_drift": drift},
        )
        strategy = SummaryBuffer(SummaryBufferConfig(summarize_every_turns=2))
        block = summarize(run_scenario(scenario, strategies=[strategy]))["strategies"]
        stats = block["summary-buffer"]
        return stats["recall"], stats["llm_calls_by_purpose"]["summarize"]

    (exact, folds), (some, _), (much, more_folds) = recall(0.0), recall(0.2), recall(0.6)
    assert folds == more_folds > 20  # drift changes what a summary holds, not when it is made
    assert exact == 1.0  # without drift every stated fact stays in the summary or the buffer
    assert exact > some > much


# -- lazy-retrieval ----------------------------------------------------------------------
def _with_memories(strategy) -> Driver:
    """A driver whose store holds the user's city and plan; spans taken."""
    d = Driver(strategy)
    for f, text in ((CITY, "I live in Lisbon."), (PLAN, "I'm on the Pro plan.")):
        d.say(d.message(text, [f]))
        d.run_jobs()
    assert d.store.count(0) == 2
    take_spans(d.ctx)
    return d


def _probe(d: Driver, slot: str, text: str, session: int = 0):
    d.catalog.register(text, (("probe", slot, 0),))  # same topics, same vector
    return d.say(d.message(text, session=session))


LAZY = LazyRetrievalConfig(extract_every_messages=1)


def test_lazy_retrieval_queries_only_when_the_topic_changes():
    d = _with_memories(LazyRetrieval(LAZY))
    first = _probe(d, "plan", "Which plan am I on?")
    assert purposes(d) == ["embed", "store_query"]
    again = _probe(d, "plan", "Remind me, what plan do I have?")
    assert purposes(d) == ["embed"]  # same topic: the cached selection is injected again
    assert again.memories == first.memories and len(first.memories) == 2
    _probe(d, "city", "Where do you have me living?")
    assert purposes(d) == ["embed", "store_query"]


def test_lazy_retrieval_threshold_is_a_drop_in_similarity():
    plan, city = "Which plan am I on?", "Where do you have me living?"
    d = _with_memories(LazyRetrieval(LAZY))
    d.catalog.register(plan, (("probe", "plan", 0),))
    d.catalog.register(city, (("probe", "city", 0),))
    vectors = d.ctx._services.embedder.embed([plan, city])
    similarity = float(vectors[0] @ vectors[1])
    assert similarity < 0.7  # a change under the default drop
    for drop, expected in (
        (1 - similarity + 0.01, ["embed"]),  # dropped less than this: same topic
        (1 - similarity - 0.01, ["embed", "store_query"]),  # dropped more: a change
    ):
        d = _with_memories(
            LazyRetrieval(LazyRetrievalConfig(extract_every_messages=1, topic_change_drop=drop))
        )
        _probe(d, "plan", plan)
        take_spans(d.ctx)
        _probe(d, "city", city)
        assert purposes(d) == expected


def test_lazy_retrieval_refreshes_after_the_ttl_and_on_a_new_session():
    d = _with_memories(LazyRetrieval(LAZY))
    d.ctx.now = 1_000.0
    _probe(d, "plan", "Which plan am I on?")
    d.ctx.now = 1_600.0  # exactly the TTL old: still fresh
    _probe(d, "plan", "Which plan am I on?")
    assert purposes(d) == ["embed", "store_query", "embed"]
    d.ctx.now = 1_600.5  # older than the TTL
    _probe(d, "plan", "Which plan am I on?")
    assert purposes(d) == ["embed", "store_query"]
    _probe(d, "plan", "Which plan am I on?", session=1)
    assert purposes(d) == ["embed", "store_query"]


def test_lazy_retrieval_caches_nothing_while_the_store_is_empty():
    d = Driver(LazyRetrieval(LAZY))
    _probe(d, "plan", "Which plan am I on?")
    assert purposes(d) == []
    d.say(d.message("I'm on the Pro plan.", [PLAN]))
    d.run_jobs()
    take_spans(d.ctx)
    prompt = _probe(d, "plan", "Which plan am I on?")
    assert purposes(d) == ["embed", "store_query"] and prompt.facts() == {("plan", 0)}


def test_lazy_retrieval_queries_less_than_batched_on_the_same_conversation():
    counts = {}
    for strategy in (
        BatchedDedupBudget(BatchedDedupBudgetConfig(extract_every_messages=1)),
        LazyRetrieval(LAZY),
    ):
        d = _with_memories(strategy)
        for slot in ("plan", "plan", "plan", "city", "city", "plan"):
            _probe(d, slot, f"Tell me about my {slot}.")
        counts[strategy.name] = purposes(d).count("store_query")
    assert counts == {"batched-dedup-budget": 6, "lazy-retrieval": 3}


def test_lazy_retrieval_makes_fewer_store_queries_than_batched_in_a_run(tiny):
    # Users who dwell on one topic (one fact each; they state it and ask about it).
    dwelling = make_scenario(
        users=3,
        days=2,
        workload={
            "facts_per_user": 1,
            "facts_per_statement_max": 1,
            "question_probability": 0.0,
            "sessions_per_user_per_day": 2.0,
            "turns_per_session_mean": 6,
            "mix": {"state": 1, "restate": 0, "update": 0, "probe": 1, "filler": 0},
        },
    )
    for scenario, fewer in ((dwelling, True), (tiny, False)):
        pair = [BatchedDedupBudget(), LazyRetrieval()]
        batched, lazy = run_scenario(scenario, strategies=pair).runs
        assert foreground_store_queries(lazy) <= foreground_store_queries(batched)
        if fewer:
            assert 2 * foreground_store_queries(lazy) < foreground_store_queries(batched)
        # One write path: the same extraction calls and background dedup queries.
        assert background_calls(lazy) == background_calls(batched)


# -- all four ----------------------------------------------------------------------------
NEW = [Stateless, SlidingWindow, SummaryBuffer, LazyRetrieval]


@pytest.mark.parametrize("cls", NEW)
def test_a_failed_reply_is_not_remembered(cls):
    d = Driver(cls())
    msg = d.message("Hello there.")
    d.strategy.build_prompt(d.ctx, msg)
    d.strategy.after_turn(d.ctx, msg, None)
    prompt = d.strategy.build_prompt(d.ctx, d.message("Again."))
    assert [m.role for m in prompt.history] in ([], ["user"])


def test_tight_settings_keep_isolation_and_token_accounting():
    """The property test runs defaults; this runs every trigger of the four often."""
    scenario = make_scenario(users=3, days=2, workload={"sessions_per_user_per_day": 2.0})
    instances = [
        Stateless(),
        SlidingWindow(SlidingWindowConfig(window_tokens=120)),
        SummaryBuffer(SummaryBufferConfig(summarize_every_turns=2, buffer_token_limit=300)),
        LazyRetrieval(LazyRetrievalConfig(extract_every_messages=2, cache_ttl_s=30)),
    ]
    violations: list[str] = []
    checked_instances = [checked(type(s), violations)(s.config) for s in instances]
    result = run_scenario(scenario, strategies=checked_instances)
    assert violations == []
    by_name = {run.strategy: run for run in result.runs}
    assert (by_name["sliding-window"].turns["history_tokens"] <= 120).all()
    assert (by_name["summary-buffer"].turns["history_tokens"] <= 240).all()
    assert (by_name["lazy-retrieval"].turns["memory_tokens"] <= 1_500).all()
