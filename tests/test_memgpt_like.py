"""``memgpt-like``: core block, archival search on demand, summarize-and-evict, flush."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sealing import SealedMemory, SealedMessage, as_flag

import sim.context
import sim.runner
from helpers import make_scenario, single_user_context
from sim.llm import MockLLM
from sim.store import NumpyStore
from sim.textbank import SLOT_BY_KEY
from sim.tokens import TokenCounter
from sim.workload import Fact, Message
from strategies.base import Prompt
from strategies.memgpt_like import MemGPTLike, MemGPTLikeConfig

NAME = "memgpt-like"
FILLER = " ".join(["We talked about the weekly export and the dashboard layout."] * 4)


class Driver:
    """One user's agent driven turn by turn; spans of each phase are kept by purpose."""

    def __init__(self, message_cls=Message, **config):
        self.ctx, self.catalog, self.store, self.tokens = single_user_context()
        self.strategy = MemGPTLike(MemGPTLikeConfig(**config))
        self.message_cls = message_cls
        self.turn = 0
        self.planned: list[str] = []
        self.after: list[str] = []

    def message(self, text, facts=(), probe=None):
        components = tuple(("fact", f.slot, f.value, "statement", 0) for f in facts)
        self.catalog.register(text, components or (("text", text),))
        kind = "probe" if probe else "state" if facts else "filler"
        msg = self.message_cls(
            "user", text, self.tokens.count(text), kind, tuple(facts), probe, 0, 0, self.turn
        )
        self.turn += 1
        return msg

    def state(self, slot, value, version=0):
        text = SLOT_BY_KEY[slot].statements[0].format(v=value)
        return self.message(text, [Fact(slot, version, value)])

    def probe(self, slot, version=0):
        text = SLOT_BY_KEY[slot].probes[0]
        self.catalog.register(text, (("probe", slot, 0),))
        return self.message(text, probe=(slot, version))

    def say(self, msg, reply="Sure."):
        sim.context.take_spans(self.ctx)
        prompt = self.strategy.build_prompt(self.ctx, msg)
        self.planned = [s.purpose for s in sim.context.take_spans(self.ctx)]
        answer = Message("assistant", reply, self.tokens.count(reply), user=0)
        self.strategy.after_turn(self.ctx, msg, answer)
        self.after = [s.purpose for s in sim.context.take_spans(self.ctx)]
        return prompt

    def total(self, prompt):
        return prompt.tokens(self.tokens).total


def fact_keys(prompt):
    return {slot for slot, _ in prompt.facts()}


# -- the queue: summarize at the warning share, flush at the window ------------------


def test_summarize_fires_on_the_first_prompt_past_the_warning_share():
    d = Driver(context_window_tokens=1_000)
    said: list[Message] = []
    for _ in range(30):
        msg = d.message(FILLER)
        # The prompt the agent would send without eviction: nothing was evicted yet.
        before = d.total(Prompt(msg, history=list(said)))
        prompt = d.say(msg)
        if before > 700:
            break
        assert "summarize" not in d.planned, f"summarized at {before} tokens"
        assert prompt.history == said
        said += [msg, *d.strategy._agents[0].queue.messages[-1:]]
    else:
        pytest.fail("the conversation never reached the warning share")
    assert d.planned.count("summarize") == 1
    assert d.total(prompt) <= 700  # the oldest 75% of the queue's tokens left the window


def test_the_warning_threshold_is_strict():
    """A prompt exactly at the warning share does not trigger; one token more does."""
    probe = Driver()
    msgs = [probe.message(FILLER) for _ in range(3)]
    for m in msgs[:2]:
        probe.say(m)
    exact = probe.total(probe.strategy.build_prompt(probe.ctx, msgs[2]))
    for threshold, summarized in ((exact, False), (exact - 1, True)):
        d = Driver(context_window_tokens=1_000, warning_share=threshold / 1_000)
        assert (threshold / 1_000) * 1_000 == threshold  # the share is exact in floating point
        for m in msgs[:2]:
            d.say(d.message(m.text))
        d.say(d.message(msgs[2].text))
        assert ("summarize" in d.planned) is summarized


def test_evicted_messages_leave_the_prompt_and_the_summary_keeps_their_facts():
    d = Driver(context_window_tokens=1_000, keep_last_messages=3, core_block_tokens=0)
    first = d.state("city", "Lisbon")
    d.say(first)
    while "summarize" not in d.planned:
        prompt = d.say(d.message(FILLER))
    assert first not in prompt.history
    queue = d.strategy._agents[0].queue
    assert prompt.history == queue.messages[:-2]  # this turn's message and reply came after
    assert len(queue.messages) >= 3
    # The recursive summary is the block's first line; it carries the evicted fact.
    assert prompt.memories[0].text == "User lives in Lisbon."
    assert ("city", 0) in prompt.facts()
    assert d.total(prompt) <= 1_000


def test_a_flush_at_the_full_window_keeps_only_the_last_messages():
    d = Driver(context_window_tokens=1_000, keep_last_messages=3, recall_top_k=0)
    for _ in range(3):
        prompt = d.say(d.message(FILLER))
    assert "summarize" not in d.planned and d.total(prompt) < 700
    queued = list(d.strategy._agents[0].queue.messages)
    huge = d.message(" ".join([FILLER] * 17))
    assert d.total(Prompt(huge, history=queued)) > 1_000
    prompt = d.say(huge)
    assert d.planned.count("summarize") == 1
    assert prompt.history == queued[-3:]
    assert d.total(prompt) <= 1_000


def run_checked(scenario):
    """Run the strategy alone; list every prompt over the window, miscounted or foreign."""
    window = scenario.strategy[NAME]["context_window_tokens"]
    counter, problems = TokenCounter(), []

    class Checked(MemGPTLike):
        def build_prompt(self, ctx, msg):
            prompt = super().build_prompt(ctx, msg)
            total = prompt.tokens(counter).total
            if total > window:
                problems.append(f"{total} tokens > {window}")
            if counter.chat(prompt.render()) != total:
                problems.append(f"accounting differs from the rendered prompt: {prompt!r}")
            if any(m.owner != ctx.user for m in prompt.memories):
                problems.append(f"user {ctx.user} saw another user's memory")
            return prompt

    Checked.name = NAME
    strategy = Checked(MemGPTLikeConfig(**scenario.strategy[NAME]))
    return sim.runner.run_scenario(scenario, strategies=[strategy]).runs[0], problems


def test_the_prompt_never_exceeds_the_window_in_a_run():
    window = 2_500
    scenario = make_scenario(
        users=4,
        days=5,
        seed=11,
        strategies=[NAME],
        workload={
            "turns_per_session_mean": 7,
            "facts_per_user": 10,
            "sessions_per_user_per_day": 2,
        },
        strategy={NAME: {"context_window_tokens": window, "core_block_tokens": 300}},
    )
    run, problems = run_checked(scenario)
    assert problems == []
    calls = run.calls["purpose"].value_counts()
    assert calls["summarize"] >= 4  # the window was under pressure
    assert (run.turns["prompt_tokens"] <= window).all()
    probes = run.turns[run.turns["recall"] >= 0]
    assert len(probes) >= 5 and probes["recall"].mean() > 0


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    window=st.integers(1_500, 5_000),
    core=st.integers(0, 600),
    keep=st.integers(0, 5),
    warning=st.floats(0.3, 1.0),
    evict=st.floats(0.1, 1.0),
    every=st.integers(1, 4),
    turns=st.floats(1.0, 10.0),
)
def test_window_accounting_and_isolation_hold_for_any_settings(
    seed, window, core, keep, warning, evict, every, turns
):
    settings_ = {
        "context_window_tokens": window,
        "core_block_tokens": core,
        "keep_last_messages": keep,
        "warning_share": warning,
        "evict_share": evict,
        "extract_every_messages": every,
    }
    scenario = make_scenario(
        seed=seed,
        users=2,
        days=3,
        strategies=[NAME],
        workload={"turns_per_session_mean": turns, "sessions_per_user_per_day": 2},
        strategy={NAME: settings_},
    )
    assert run_checked(scenario)[1] == []


def test_recall_is_measured_on_a_small_scenario(tiny):
    scenario = tiny.with_overrides(strategies=[NAME], users=3)
    run = sim.runner.run_scenario(scenario).runs[0]
    probes = run.turns[run.turns["recall"] >= 0]
    assert len(probes) > 0 and probes["recall"].mean() > 0
    assert (run.turns["error"] == "").all()


# -- core memory -------------------------------------------------------------------


def test_an_update_replaces_the_core_line_and_archival_keeps_both():
    d = Driver()
    d.say(d.state("city", "Lisbon"))
    assert d.after == ["extract", "embed", "store_write"]
    d.say(d.state("city", "Porto", version=1))
    core = d.strategy._agents[0].core
    assert [m.text for m in core.lines] == ["User lives in Porto."]
    assert [m.text for m in d.store.memories(0)] == [
        "User lives in Lisbon.",
        "User lives in Porto.",
    ]
    d.say(d.state("city", "Porto", version=1))  # verbatim in the block: nothing to write
    assert d.after == ["extract"] and d.store.count(0) == 2


def test_the_core_block_keeps_the_most_important_facts_within_its_limit():
    limit = 20
    d = Driver(core_block_tokens=limit)
    for slot, value in [("display", "dark mode"), ("plan", "Pro"), ("device", "Pixel 8")]:
        d.say(d.state(slot, value))
    core = d.strategy._agents[0].core
    assert 0 < core.tokens <= limit and core.tokens == sum(m.line_tokens for m in core.lines)
    kept = {m.text for m in core.lines}
    assert "User is on the Pro plan." in kept  # importance 8 beats display (4) and device (5)
    assert d.store.count(0) == 3  # what left the block is still archived
    prompt = d.say(d.message("Thanks, that worked!"))
    assert [m.text for m in prompt.memories] == [m.text for m in core.lines]


# -- searching on demand ------------------------------------------------------------


@pytest.mark.parametrize(("answer_similarity", "searches"), [(1.0, True), (0.01, False)])
def test_archival_is_searched_only_for_questions_the_core_block_cannot_answer(
    answer_similarity, searches
):
    d = Driver(core_answer_similarity=answer_similarity, core_block_tokens=10)
    d.say(d.state("plan", "Pro"))
    d.say(d.state("company", "Globex"))
    in_core = {m.text for m in d.strategy._agents[0].core.lines}
    (archived_only,) = {m.text for m in d.store.memories(0)} - in_core  # the block holds one
    turns = [
        (d.message("Thanks, that worked!"), False),
        (d.probe("plan"), True),
        (d.message("My dashboard shows no data since yesterday."), False),
        (d.message("How do I reset my password?"), True),
        (d.state("device", "Pixel 8"), False),
    ]
    asked = 0
    for msg, question in turns:
        prompt = d.say(msg)
        searched = "store_query" in d.planned
        assert searched == (question and searches), msg.text
        asked += searched
        if searched:
            assert d.planned == ["embed", "store_query"]
            # The archived fact the small core block could not hold comes back for this turn.
            assert archived_only in {m.text for m in prompt.memories}
    assert d.strategy.searches(0) == (asked, 0)
    # Results are injected for one turn only.
    assert archived_only not in {m.text for m in d.say(d.message("Got it.")).memories}


def test_conversation_search_finds_evicted_messages():
    d = Driver(context_window_tokens=1_000, core_block_tokens=0, archival_top_k=0)
    order = d.state("order", "A-48213")
    d.say(order)
    while "summarize" not in d.planned:
        d.say(d.message(FILLER))
    assert "embed" in d.planned  # evicted messages are embedded for recall storage
    prompt = d.say(d.probe("order"))
    recalled = [m for m in prompt.memories if m.text == "User said earlier: " + order.text]
    assert recalled and recalled[0].facts == (("order", 0),)
    assert d.strategy.searches(0) == (0, 1)


def test_a_failed_reply_is_not_remembered():
    d = Driver()
    msg = d.message("Hello there.")
    d.strategy.build_prompt(d.ctx, msg)
    d.strategy.after_turn(d.ctx, msg, None)
    prompt = d.strategy.build_prompt(d.ctx, d.message("Again."))
    assert prompt.history == [msg]


# -- no hidden ground truth ------------------------------------------------------------


def test_the_strategy_never_reads_hidden_ground_truth(monkeypatch):
    """Ground truth raises while the strategy runs, except inside the mock LLM and the store."""
    monkeypatch.setattr(sim.context, "Memory", SealedMemory)
    for cls, method in [(MockLLM, "extract"), (MockLLM, "summarize"), (NumpyStore, "add")]:
        monkeypatch.setattr(cls, method, as_flag("oracle_running", getattr(cls, method)))
    for method in ("build_prompt", "after_turn"):
        monkeypatch.setattr(
            MemGPTLike, method, as_flag("strategy_running", getattr(MemGPTLike, method))
        )
    d = Driver(SealedMessage, context_window_tokens=1_000, core_block_tokens=30)
    script = [
        d.state("city", "Lisbon"),
        d.state("plan", "Pro"),
        d.state("company", "Globex"),
        *[d.message(FILLER) for _ in range(8)],
        d.state("city", "Porto", version=1),
        d.probe("company"),
        d.probe("city", version=1),
        d.message(" ".join([FILLER] * 5)),  # a flush
        d.probe("plan"),
    ]
    found = set()
    for msg in script:
        with pytest.raises(AssertionError, match="hidden ground truth"):
            as_flag("strategy_running", lambda m=msg: m.facts)()  # the seal works
        prompt = d.say(msg)
        found |= fact_keys(prompt)  # the harness may read it
    searches = d.strategy.searches(0)
    assert searches[0] >= 1 and searches[1] >= 1
    assert {"city", "plan", "company"} <= found
