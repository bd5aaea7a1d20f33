"""``langmem-like``: the debounced reflection, its searches, its tool calls and their bill."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace

import pytest
from sealing import SealedFactoid, SealedMemory, SealedMessage, as_flag

import scenarios
import sim.context
import sim.llm
from helpers import single_user_context
from reports.output import summarize
from sim.context import take_spans, take_stated
from sim.llm import MockLLM
from sim.runner import run_scenario
from sim.store import Memory, NumpyStore
from sim.textbank import SLOT_BY_KEY
from sim.tokens import REPLY_PRIMING_TOKENS, tool_tokens
from sim.workload import Fact, Message
from strategies.langmem_like import (
    MEMORY_INSTRUCTIONS,
    MEMORY_SUBROUTINE,
    MEMORY_TOOL,
    PATCH_DOC_TOOL,
    LangMemLike,
    LangMemLikeConfig,
    _dilated_windows,
    _doc_id,
    message_title,
    remove_doc_tool,
    user_message,
)

NAME = "langmem-like"
DELAY = LangMemLikeConfig().delay_s


class Driver:
    """One user's application on simulated time: jobs wait until :meth:`tick` runs them."""

    def __init__(self, message_cls=Message, **config):
        self.message_cls = message_cls
        self.jobs: list = []
        self.ctx, self.catalog, self.store, self.tokens = single_user_context(
            defer=lambda user, job: self.jobs.append(job)
        )
        self.strategy = LangMemLike(LangMemLikeConfig(**config))
        self.turn = 0
        self.extractions: list[list[Message]] = []  # the messages of each extraction call
        self.spans: list = []  # of the last reflections run

    def message(self, slot, value, version=0, session=0):
        text = SLOT_BY_KEY[slot].statements[0].format(v=value)
        self.catalog.register(text, (("fact", slot, value, "statement", 0),))
        fact = Fact(slot, version, value)
        msg = self.message_cls(
            "user", text, self.tokens.count(text), "state", (fact,), None, 0, session
        )
        msg.turn, self.turn = self.turn, self.turn + 1
        return msg

    def say(self, at, slot, value, version=0, session=0, reply="Sure."):
        """Answer one message at ``at``; return the prompt and the calls made for it."""
        self.ctx.now = at
        take_spans(self.ctx)
        msg = self.message(slot, value, version, session)
        prompt = self.strategy.build_prompt(self.ctx, msg)
        planned = take_spans(self.ctx)
        answer = Message("assistant", reply, self.tokens.count(reply), user=0, session=session)
        self.strategy.after_turn(self.ctx, msg, answer)
        return prompt, planned

    def tick(self, at):
        """The engine's tick at ``at``, then every deferred job, as a worker runs them."""
        self.ctx.now = at
        self.strategy.on_tick(SimpleNamespace(now=at, contexts=lambda: [self.ctx]))
        take_spans(self.ctx)
        jobs, self.jobs = self.jobs, []
        for job in jobs:
            job(self.ctx)
        self.spans = take_spans(self.ctx)
        self.extractions += take_stated(self.ctx) or []

    def texts(self):
        return sorted(m.text for m in self.store.memories(0))


# -- the debounce ---------------------------------------------------------------------------
def test_a_message_within_the_delay_replaces_the_pending_reflection():
    d = Driver()
    d.say(0, "city", "Berlin")
    d.say(60, "plan", "Pro")
    d.tick(DELAY + 30)  # the first submission's delay is over, but it was cancelled
    assert d.extractions == []
    d.tick(DELAY + 60)
    assert len(d.extractions) == 1
    assert [m.role for m in d.extractions[0]] == ["user", "assistant"] * 2
    assert (d.strategy.submissions, d.strategy.cancelled) == (2, 1)
    assert d.texts() == ["User is on the Pro plan.", "User lives in Berlin."]


def test_spaced_messages_make_one_reflection_each():
    d = Driver()
    d.say(0, "city", "Berlin")
    d.tick(DELAY)
    d.say(DELAY + 600, "plan", "Pro")
    d.tick(2 * DELAY + 600)
    assert [len(batch) for batch in d.extractions] == [2, 2]
    assert d.strategy.cancelled == 0


def test_a_message_after_the_delay_but_before_the_tick_starts_the_due_reflection():
    d = Driver(poll_s=600)
    d.say(0, "city", "Berlin")
    d.say(DELAY + 1, "plan", "Pro")  # the first is due; no tick has started it yet
    assert len(d.jobs) == 1 and d.strategy.cancelled == 0
    d.tick(2 * DELAY + 600)
    assert [len(batch) for batch in d.extractions] == [2, 2]


def test_threads_are_sessions_and_no_delay_reflects_every_reply():
    d = Driver()
    d.say(0, "city", "Berlin", session=0)
    d.say(10, "plan", "Pro", session=1)  # another thread: nothing cancelled
    d.tick(DELAY + 10)
    assert [len(batch) for batch in d.extractions] == [2, 2] and d.strategy.cancelled == 0
    assert d.strategy.tick_period_s == d.strategy.config.poll_s
    now = Driver(delay_s=0)
    assert now.strategy.tick_period_s is None
    now.say(0, "city", "Berlin")
    now.say(1, "plan", "Pro")
    assert len(now.jobs) == 2


# -- the searches ---------------------------------------------------------------------------
def test_search_before_extraction_queries_the_last_message_twice():
    d = Driver()
    d.say(0, "city", "Berlin", reply="Noted.")
    d.tick(DELAY)
    purposes = [s.purpose for s in d.spans]
    assert purposes[:5] == ["embed", "store_query", "embed", "store_query", "extract"]
    query = message_title("assistant") + "\n\nNoted."
    assert d.spans[0].tokens_in == d.spans[2].tokens_in == d.tokens.count(query)
    assert purposes[5:] == ["embed", "store_write"]  # one put: embedded, then written


def test_search_tool_at_answer_time_injects_the_nearest_memories():
    d = Driver(search_limit=2)
    for i, (slot, value) in enumerate([("city", "Berlin"), ("plan", "Pro"), ("device", "Pixel 8")]):
        d.say(i * 2 * DELAY, slot, value)
        d.tick(i * 2 * DELAY + DELAY)
    assert d.store.count(0) == 3
    prompt, planned = d.say(10 * DELAY, "city", "Lisbon", 1)
    assert [s.purpose for s in planned] == ["embed", "store_query"]
    assert planned[0].tokens_in == prompt.user.tokens  # the query is the user's message
    assert len(prompt.memories) == 2
    assert prompt.memories[0].text == "User lives in Berlin."  # the nearest first


# -- tool calls reaching the store ----------------------------------------------------------
def test_inserts_patches_and_restatements():
    d = Driver()
    d.say(0, "city", "Berlin")
    d.tick(DELAY)
    (berlin,) = d.store.memories(0)
    d.say(2 * DELAY, "city", "Berlin")  # restated: the model sees it, no call
    d.tick(3 * DELAY)
    assert [s.purpose for s in d.spans if s.purpose.startswith("store_")] == ["store_query"] * 2
    d.say(4 * DELAY, "city", "Lisbon", 1)  # moved: a patch of the memory shown
    d.tick(5 * DELAY)
    (lisbon,) = d.store.memories(0)
    assert (lisbon.id, lisbon.created_at, lisbon.text) == (
        berlin.id,
        berlin.created_at,
        "User lives in Lisbon.",
    )
    assert lisbon.facts == (("city", 1),)


def _copies(d, n):
    """``n`` stored copies of the user's city at version 0."""
    facts = (("city", 0),)
    memories = [
        Memory(100 + i, "User lives in Berlin.", 7, 5, "background", 0.0, "m", "", facts, owner=0)
        for i in range(n)
    ]
    d.ctx.store.add(memories, d.ctx.embedder.embed([m.text for m in memories]))


@pytest.mark.parametrize("deletes", [False, True])
def test_outdated_copies_shown_are_removed_only_with_deletes(deletes):
    d = Driver(enable_deletes=deletes)
    _copies(d, 2)
    d.say(0, "city", "Lisbon", 1)
    d.tick(DELAY)
    facts = sorted(m.facts for m in d.store.memories(0))
    if deletes:
        assert facts == [(("city", 1),)]
        assert [s.purpose for s in d.spans][-1] == "store_delete"
    else:
        assert facts == [(("city", 0),), (("city", 1),)]


def test_no_dedup_beyond_what_the_search_shows():
    """Under ``query_limit = 4`` there is no window to search: every fact is inserted again."""
    d = Driver(query_limit=3)
    d.say(0, "city", "Berlin")
    d.tick(DELAY)
    d.say(2 * DELAY, "city", "Berlin")
    d.tick(3 * DELAY)
    assert d.spans[0].purpose == "extract"  # no search before it
    assert d.texts() == ["User lives in Berlin."] * 2
    seen = Driver()
    seen.say(0, "city", "Berlin")
    seen.tick(DELAY)
    seen.say(2 * DELAY, "city", "Berlin")
    seen.tick(3 * DELAY)
    assert seen.texts() == ["User lives in Berlin."]  # shown to the model: not written again


def test_query_limit_sets_the_dilated_windows():
    d = Driver(query_limit=8)  # 8 // 4 = 2 windows: the last message, the last two
    d.say(0, "city", "Berlin", reply="Noted.")
    d.tick(DELAY)
    embeds = [s.tokens_in for s in d.spans if s.purpose == "embed"][:4]
    last = message_title("assistant") + "\n\nNoted."
    both = message_title("user") + "\n\n" + d.extractions[0][0].text + "\n\n" + last
    assert embeds == [d.tokens.count(last), d.tokens.count(both)] * 2
    utils = pytest.importorskip("langmem.utils")
    chat = [{"role": m.role, "content": m.text} for m in d.extractions[0]]
    assert _dilated_windows(d.extractions[0], 2) == utils.get_dialated_windows(chat, 2)
    assert _dilated_windows(d.extractions[0], 3) == utils.get_dialated_windows(chat, 3)


# -- the bill -------------------------------------------------------------------------------
def _extract_span(d):
    (span,) = [s for s in d.spans if s.purpose == "extract"]
    return span


def function_tokens(tokens, tools):
    """The tools' input tokens as serve-mock bills them (the OpenAI cookbook's rule)."""
    return tool_tokens(tools, tokens.count_split)


def test_extraction_bills_tools_existing_memories_and_the_session():
    d = Driver()
    tokens = d.tokens
    d.say(0, "city", "Berlin")
    d.tick(DELAY)
    batch = d.extractions[-1]
    session = str(uuid.uuid5(uuid.NAMESPACE_URL, "memsim:u0:0"))
    first = _extract_span(d).tokens_in
    assert first == (
        REPLY_PRIMING_TOKENS
        + tokens.message("system", tokens.count(MEMORY_SUBROUTINE))
        + function_tokens(tokens, [MEMORY_TOOL])
        + tokens.message("user", tokens.count(user_message(batch, session)))
    )
    assert MEMORY_INSTRUCTIONS in user_message(batch, session)
    bills = [first]
    for i, (slot, value) in enumerate([("plan", "Pro"), ("device", "Pixel 8")], start=1):
        d.say(2 * i * DELAY, slot, value)
        d.tick(2 * i * DELAY + DELAY)
        bills.append(_extract_span(d).tokens_in)
    # Tools appear with the first memory shown, and every memory shown adds its instance.
    tools = function_tokens(tokens, [PATCH_DOC_TOOL, MEMORY_TOOL])
    assert bills[1] - bills[0] > tools - function_tokens(tokens, [MEMORY_TOOL]) + 30
    assert bills[2] - bills[1] > 30
    deleting = Driver(enable_deletes=True)
    _copies(deleting, 2)
    deleting.say(0, "plan", "Pro")
    deleting.tick(DELAY)
    plain = Driver()
    _copies(plain, 2)
    plain.say(0, "plan", "Pro")
    plain.tick(DELAY)
    removal = function_tokens(tokens, [PATCH_DOC_TOOL, MEMORY_TOOL, remove_doc_tool(["a" * 32])])
    assert _extract_span(deleting).tokens_in - _extract_span(plain).tokens_in > removal - tools


def test_output_tokens_are_the_tool_calls_as_serve_mock_bills_them():
    """An insert bills ``Memory`` and its JSON arguments; a restatement an empty ``PatchDoc``."""
    d = Driver()
    tokens = d.tokens
    d.say(0, "city", "Berlin")
    d.tick(DELAY)
    args = json.dumps({"content": "User lives in Berlin."})
    assert _extract_span(d).tokens_out == tokens.count("Memory") + tokens.count_split(args)
    (berlin,) = d.store.memories(0)
    d.say(2 * DELAY, "city", "Berlin")
    d.tick(3 * DELAY)
    doc = json.dumps(
        {
            "json_doc_id": _doc_id("u0", berlin.id),
            "planned_edits": "No change needed.",
            "patches": [],
        }
    )
    assert _extract_span(d).tokens_out == tokens.count("PatchDoc") + tokens.count_split(doc)


def test_update_errors_come_from_the_mock_llm():
    """With ``update_error_rate = 1`` every decision is wrong: a restated fact is never NONE."""
    d = Driver()
    d.ctx._services.llm.cfg = d.ctx._services.llm.cfg.model_copy(update={"update_error_rate": 1})
    d.say(0, "city", "Berlin")
    d.tick(DELAY)  # nothing shown: the right call is an insert, a wrong one nothing
    assert d.store.count(0) == 0
    d.say(2 * DELAY, "city", "Berlin")
    d.tick(3 * DELAY)
    assert d.store.count(0) == 0


def _library_tools(tools):
    from langchain_core.utils.function_calling import convert_to_openai_tool

    return [convert_to_openai_tool(tool)["function"] for tool in tools]


def test_request_tokens_equal_langmem_and_trustcall_requests(monkeypatch):
    """The bill equals the request the installed LangMem and trustcall build.

    Messages in the chat format, and the tools trustcall binds counted as serve-mock
    counts them (the cookbook's rule, nested ``JsonPatch`` properties included), on a
    5-message conversation: nothing shown, two memories shown, and with deletes.
    """
    extraction = pytest.importorskip("langmem.knowledge.extraction")
    trustcall = pytest.importorskip("trustcall._base")
    from langchain_core.messages import HumanMessage, SystemMessage

    d = Driver()
    tokens, llm = d.tokens, d.ctx._services.llm

    class Model:  # what trustcall needs of a chat model to build its request
        bound = property(lambda self: self)

        def bind_tools(self, tools, tool_choice=None):
            return self

    assert MEMORY_INSTRUCTIONS == extraction._MEMORY_INSTRUCTIONS
    session = uuid.UUID("12345678-1234-5678-1234-567812345678")
    monkeypatch.setattr(extraction.uuid, "uuid4", lambda: session)
    chat = [
        ("user", "I live in Lisbon."),
        ("assistant", "Noted. Anything else?"),
        ("user", "My plan is Pro."),
        ("user", "And I use a Pixel 8."),
        ("assistant", "Great."),
    ]
    prepared = extraction.MemoryManager._prepare_messages(
        SimpleNamespace(instructions=extraction._MEMORY_INSTRUCTIONS),
        [{"role": r, "content": t} for r, t in chat],
    )
    batch = [Message(r, t, tokens.count(t)) for r, t in chat]
    assert user_message(batch, str(session)) == prepared[1]["content"]
    shown = [
        Memory(1, "User lives in Lisbon.", 7, 5, "background", 0.0, "m", ""),
        Memory(2, "User's plan is Pro.", 7, 5, "background", 0.0, "m", ""),
    ]
    ids = ["a" * 32, "b" * 32]
    schemas = {"Memory": extraction.Memory, "PatchDoc": trustcall.PatchDoc}
    bills = []
    for deletes in (None, False, True):
        existing = [(i, "Memory", {"content": m.text}) for i, m in zip(ids, shown, strict=True)]
        messages = [SystemMessage(prepared[0]["content"]), HumanMessage(prepared[1]["content"])]
        if deletes is None:  # nothing shown: trustcall's extract node, the Memory tool alone
            tools = [extraction.Memory]
        else:
            updates = trustcall._ExtractUpdates(
                Model(), schemas, enable_inserts=True, enable_deletes=deletes
            )
            state = SimpleNamespace(messages=messages, existing=existing)
            messages, _, removal, _ = updates._setup(state)
            tools = updates.bound_tools + ([removal] if removal else [])
        expected = REPLY_PRIMING_TOKENS + tool_tokens(_library_tools(tools), tokens.count_split)
        expected += sum(
            tokens.message(r, tokens.count(m.content))
            for r, m in zip(("system", "user"), messages, strict=True)
        )
        strategy = LangMemLike(LangMemLikeConfig(enable_deletes=bool(deletes)))
        seen = shown if deletes is not None else []
        system = strategy.system_message(seen, ids)
        assert system == messages[0].content
        prompt = user_message(batch, str(session))
        result = llm.tool_extract(0, batch, system, prompt, strategy.tools(seen, ids), seen, ids)
        assert result.tokens_in == expected, deletes
        bills.append(result.tokens_in)
    # Nested JsonPatch properties: 124 of the tokens with memories shown.
    assert bills == [555, 1098, 1160]
    assert message_title("user") + "\n\nhi" == HumanMessage("hi").pretty_repr()


def test_tool_definitions_are_trustcalls_and_langmems():
    extraction = pytest.importorskip("langmem.knowledge.extraction")
    trustcall = pytest.importorskip("trustcall._base")

    count = Driver().tokens.count_split
    for spec, tool in [
        (MEMORY_TOOL, extraction.Memory),
        (PATCH_DOC_TOOL, trustcall.PatchDoc),
        (remove_doc_tool(["b", "a"]), trustcall._create_remove_doc_schema(("a", "b"))),
    ]:
        (f,) = _library_tools([tool])
        assert (spec["name"], spec["description"]) == (f["name"], f["description"])
        props = f["parameters"]["properties"]
        assert {k: p["description"] for k, p in spec["parameters"]["properties"].items()} == {
            k: p["description"] for k, p in props.items()
        }
        assert tool_tokens([spec], count) == tool_tokens([f], count)


# -- no hidden ground truth ----------------------------------------------------------------


@pytest.mark.parametrize("deletes", [False, True])
def test_the_strategy_never_reads_hidden_ground_truth(monkeypatch, deletes):
    """Ground truth raises while the strategy runs, its reflections included, except inside
    the mock LLM, the store and the context's memory factory (which copies a fact's ground
    truth into the record the harness grades)."""
    monkeypatch.setattr(sim.context, "Memory", SealedMemory)
    monkeypatch.setattr(sim.llm, "Factoid", SealedFactoid)
    harness = [
        (MockLLM, "tool_extract"),
        (NumpyStore, "add"),
        (NumpyStore, "delete"),
        (sim.context.TurnContext, "new_memory"),
    ]
    for cls, method in harness:
        monkeypatch.setattr(cls, method, as_flag("oracle_running", getattr(cls, method)))
    for method in ("build_prompt", "after_turn", "on_tick", "_reflect"):
        monkeypatch.setattr(
            LangMemLike, method, as_flag("strategy_running", getattr(LangMemLike, method))
        )
    d = Driver(SealedMessage, enable_deletes=deletes)
    script = [
        ("city", "Berlin", 0),
        ("plan", "Pro", 0),
        ("city", "Lisbon", 1),
        ("city", "Lisbon", 1),
    ]
    for i, (slot, value, version) in enumerate(script):
        d.say(2 * i * DELAY, slot, value, version)
        d.tick(2 * i * DELAY + DELAY)
    msg = d.message("city", "Porto")
    with pytest.raises(AssertionError, match="hidden ground truth"):
        as_flag("strategy_running", lambda: msg.facts)()  # the seal works
    calls = [s.purpose for s in d.spans]
    assert "extract" in calls
    held = sorted(m._sealed_facts for m in d.store.memories(0))
    assert held == [(("city", 1),), (("plan", 0),)]  # Berlin patched to Lisbon, then known


# -- runs -----------------------------------------------------------------------------------
def _run_summary(**config):
    scenario = scenarios.load("tiny")[0]
    result = run_scenario(scenario, strategies=[LangMemLike(LangMemLikeConfig(**config))])
    return result, summarize(result)


def test_same_seed_same_summary():
    _, first = _run_summary()
    _, second = _run_summary()
    first.pop("memsim_version", None)
    second.pop("memsim_version", None)
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    block = first["strategies"][NAME]
    assert block["error_turns"] == 0 and block["recall"] > 0.9
    assert block["llm_calls_by_purpose"]["extract"] < block["turns"] / 3


def test_no_delay_extracts_after_every_reply():
    _, summary = _run_summary(delay_s=0)
    block = summary["strategies"][NAME]
    assert block["llm_calls_by_purpose"]["extract"] == block["turns"]
