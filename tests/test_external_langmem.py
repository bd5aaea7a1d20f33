"""`external-langmem`: real LangMem in-process against serve-mock, metered like any strategy."""

from __future__ import annotations

import copy
import importlib.util
from collections import Counter

import pytest

import scenarios
import strategies
from reports.numbers import dumps
from reports.output import summarize
from sim.runner import run_scenario
from sim.serve import MockBackend
from strategies.external_langmem import LangMemExternal, stored_memories

if importlib.util.find_spec("langmem") is None:  # not imported here: the adapter imports it
    pytest.skip("langmem is not installed (make setup)", allow_module_level=True)

SMALL = {"users": 2, "days": 3, "strategies": ["external-langmem"]}


def small_scenario():
    return scenarios.load("mem0-real")[0].with_overrides(**SMALL)


@pytest.fixture(scope="module")
def runs():
    """Two runs of the same scenario and seed; the second keeps LangMem open and logs its
    tool-calling requests: (kind, tools offered, tool_choice, tool calls answered)."""
    first = run_scenario(small_scenario())
    real, log = LangMemExternal(), []
    answer = MockBackend.tool_calls

    def logged(self, kind, tools, choice, messages, pairs):
        calls, items = answer(self, kind, tools, choice, messages, pairs)
        log.append((kind, [t["name"] for t in tools], choice, [name for name, _ in calls]))
        return calls, items

    MockBackend.tool_calls = logged
    try:
        second = run_scenario(small_scenario(), strategies=[real])
    finally:
        MockBackend.tool_calls = answer
    yield first, second, real, log
    real.close()


def test_registered_as_external_not_simulated():
    assert "external-langmem" in strategies.external_strategies()
    assert "external-langmem" not in strategies.builtins()
    assert strategies.resolve("external-langmem") is LangMemExternal


def test_one_llm_call_per_add_two_searches_and_one_embedding_per_put(runs):
    """langmem 0.0.30, langmem/knowledge/extraction.py, ``MemoryStoreManager.invoke``:
    ``store.search(namespace, query=…)`` (result unused), then the same search with
    ``limit=query_limit`` on its executor — two queries, each embedding the last
    message (``utils.get_dialated_windows(messages, query_limit // 4)``, one window);
    one ``memory_manager.invoke`` (``max_steps`` 1: ``MemoryManager.invoke`` runs the
    trustcall extractor once; our calls validate, so trustcall's ``_Patch`` repair
    never runs); then one ``store.put`` per new or changed memory (LangGraph
    ``InMemoryStore.batch``: one ``embed_documents`` per put). No deletes
    (``create_memory_store_manager(enable_deletes=False)``). The app's search adds one
    query and one embedding per turn."""
    _, result, _, _ = runs
    run = result.runs[0]
    turns = len(run.turns)
    count = run.calls.groupby("purpose").size().to_dict()
    writes = count.get("store_write", 0)
    assert count["extract"] == turns and count.get("update", 0) == 0
    assert count["store_query"] == 3 * turns
    assert writes > 0 and count.get("store_delete", 0) == 0
    assert count["embed"] == 3 * turns + writes
    assert (run.calls["error"] == "").all()


def test_tool_calls_per_extraction_follow_trustcall(runs):
    """trustcall 0.0.39, trustcall/_base.py, ``create_extractor``: with no existing docs
    the ``extract`` node binds the schemas alone (``_Extract``; ``MemoryManager`` passes
    no ``tool_choice``: the model may answer without a call); with existing docs
    ``_ExtractUpdates`` binds ``PatchDoc`` and the schemas with ``tool_choice="any"``
    (``enable_inserts``), sent as ``"required"``: at least one call per extraction."""
    _, result, _, log = runs
    turns = len(result.runs[0].turns)
    assert len(log) == turns  # one tool-calling request per add
    first = [entry for entry in log if entry[0] == "tools-extract"]
    later = [entry for entry in log if entry[0] == "trustcall-patch"]
    assert len(first) + len(later) == turns and first and later
    assert all(tools == ["Memory"] and choice == "auto" for _, tools, choice, _ in first)
    assert all(
        tools == ["PatchDoc", "Memory"] and choice == "required" and calls
        for _, tools, choice, calls in later
    )


def test_summary_is_byte_identical_across_runs(runs):
    first, second, _, _ = runs
    assert dumps(summarize(first)) == dumps(summarize(second))


def test_store_size_per_user_is_what_langmem_holds(runs):
    _, result, real, _ = runs
    sizes = real.store_sizes()
    assert sizes and all(held == mirrored > 0 for held, mirrored in sizes.values())
    run = result.runs[0]
    final = dict(zip(run.store_final["user"], run.store_final["memories"], strict=True))
    assert {user: held for user, (held, _) in sizes.items()} == final
    texts = stored_memories(real, real._run.user_ids[0])
    assert len(texts) == sizes[0][0] and all(texts)


def test_recall_and_prompts_are_measured(runs, capsys):
    _, result, _, log = runs
    block = summarize(result)["strategies"]["external-langmem"]
    assert block["memories_per_user_mean"] > 0
    assert block["injected_tokens_mean"] > 0
    assert block["recall"] > 0
    assert block["llm_calls_by_purpose"]["chat"] == block["turns"]
    run = result.runs[0]
    calls, turns = run.calls, len(run.turns)
    memory = calls[(calls["endpoint"] == "llm") & (calls["purpose"] != "chat")]
    embed = calls[calls["purpose"] == "embed"]
    tokens = (memory["tokens_in"] + memory["tokens_out"]).sum() + embed["tokens_in"].sum()
    tool_calls = Counter(name for *_, names in log for name in names)
    with capsys.disabled():
        print(
            f"\nexternal-langmem per add: {len(memory) / turns:.2f} LLM calls, "
            f"{len(embed) / turns:.2f} embedding calls, {tokens / turns:,.0f} memory tokens; "
            f"tool calls per extraction {sum(tool_calls.values()) / len(log):.2f} "
            f"({dict(tool_calls)}); memories per user {block['memories_per_user_mean']:.1f}"
        )


def test_a_copy_carries_settings_only(runs):
    _, _, real, _ = runs
    clone = copy.deepcopy(real)
    assert clone.config == real.config and clone._run is None


def test_two_workers_give_the_same_summary():
    scenario = small_scenario().with_overrides(users=4, days=2, shard_users=2)
    one, two = run_scenario(scenario), run_scenario(scenario, workers=2)
    assert dumps(summarize(one)) == dumps(summarize(two))


def test_every_store_call_is_a_span_and_deletes_are_kept():
    from langgraph.store.memory import InMemoryStore

    from strategies.external_langmem import MeteredLangGraphStore

    class Models:
        def __init__(self):
            self.calls = []

        def store_call(self, purpose, items, wall_s):
            self.calls.append((purpose, items))

    models = Models()
    store = MeteredLangGraphStore(InMemoryStore(), models)
    namespace = ("memories", "u1")
    store.put(namespace, "a", {"kind": "Memory", "content": {"content": "User likes tea."}})
    store.put(namespace, "b", {"kind": "Memory", "content": {"content": "User lives in Porto."}})
    found = store.search(namespace, limit=5)
    store.delete(namespace, "a")
    assert [item.key for item in found] == ["a", "b"]
    assert models.calls == [
        ("store_write", 1),
        ("store_write", 1),
        ("store_query", 2),
        ("store_delete", 1),
    ]
    assert store.deleted == ["a"]
    assert [item.key for item in store.search(namespace)] == ["b"]
