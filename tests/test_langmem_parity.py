"""``langmem-like`` against ``external-langmem`` (real LangMem via serve-mock), same workload.

``external-langmem`` makes one synchronous add per turn; ``langmem-like`` matches it
with ``delay_s = 0`` (one reflection per reply, nothing debounced) and LangMem's
defaults otherwise (``query_limit`` 5: one window, the last message; deletes off).
Both then make, per add, two searches before the extraction (each one embedding
and one store query), one LLM call, and one embedding and one write per put; the
application's search at answer time adds one embedding and one query per turn.

Two runs of the ``mem0-real`` scenario (5 users × 5 days, 108 turns): with the
scenario's extraction noise, where the figures must agree within 15%, and without
it, where the two must make the same tool calls and keep the same memories, so
that what differs under noise is the noise's draws (serve-mock keys them by the
request, the mock LLM by the user's call sequence), not the model. Where a figure
differs for a reason of the library's, a test names it. ``pytest -s`` prints the
figures.
"""

from __future__ import annotations

import importlib.util
import json
from collections import Counter

import pytest

import scenarios
import sim.context
from reports.output import summarize
from sim.config import Scenario
from sim.llm import NONE, MockLLM
from sim.runner import run_scenario
from sim.serve import MockBackend
from sim.tokens import TokenCounter
from strategies.langmem_like import LangMemLike, LangMemLikeConfig

if importlib.util.find_spec("langmem") is None:  # not imported here: the adapter imports it
    pytest.skip("langmem is not installed (make setup)", allow_module_level=True)

from strategies.external_langmem import LangMemExternal, ServedEmbeddings

LIKE, REAL = "langmem-like", "external-langmem"
TOLERANCE = 0.15
NOISE_FREE = {
    "extract_miss_rate": 0,
    "extract_hallucination_rate": 0,
    "extract_reword_rate": 0,
    "update_error_rate": 0,
}


def scenario(noise: bool) -> Scenario:
    data = scenarios.load("mem0-real")[0].model_dump()
    data.update(users=5, days=5, strategies=[REAL])
    if not noise:
        data["llm"].update(NOISE_FREE)
    return Scenario.model_validate(data)


class Logs:
    """What each strategy asked of the models: its tool calls and the texts it embedded."""

    def __init__(self):
        self.calls = {LIKE: Counter(), REAL: Counter()}
        self.embedded: dict[str, list[str]] = {LIKE: [], REAL: []}


def _run(noise: bool, monkeypatch: pytest.MonkeyPatch):
    logs = Logs()
    tool_calls, tool_extract = MockBackend.tool_calls, MockLLM.tool_extract
    embed, embed_documents = sim.context.EmbeddingClient.embed, ServedEmbeddings.embed_documents

    def real_calls(self, kind, tools, choice, messages, pairs):
        calls, items = tool_calls(self, kind, tools, choice, messages, pairs)
        for name, args in calls:
            empty = name == "PatchDoc" and not args.get("patches")
            logs.calls[REAL][name + ("-" if empty else "")] += 1
        return calls, items

    def like_calls(self, *args, **kwargs):
        result = tool_extract(self, *args, **kwargs)
        for call in result.tool_decision.calls:
            logs.calls[LIKE][call.name + ("-" if call.event == NONE else "")] += 1
        return result

    def like_embed(self, texts):
        logs.embedded[LIKE] += list(texts)
        return embed(self, texts)

    def real_embed(self, texts):
        logs.embedded[REAL] += list(texts)
        return embed_documents(self, texts)

    with monkeypatch.context() as patch:
        patch.setattr(MockBackend, "tool_calls", real_calls)
        patch.setattr(MockLLM, "tool_extract", like_calls)
        patch.setattr(sim.context.EmbeddingClient, "embed", like_embed)
        patch.setattr(ServedEmbeddings, "embed_documents", real_embed)
        real = LangMemExternal()
        try:
            like = LangMemLike(LangMemLikeConfig(delay_s=0))
            result = run_scenario(scenario(noise), strategies=[like, real])
        finally:
            real.close()
    return result, logs


@pytest.fixture(scope="module")
def runs():
    """``{noise: (result, logs)}`` for the scenario's noise and for none."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield {noise: _run(noise, monkeypatch) for noise in (True, False)}


def figures(result) -> dict[str, dict[str, float]]:
    """Per strategy, per add (= per turn): calls, tokens and the memories kept."""
    summary = summarize(result)["strategies"]
    out = {}
    for run in result.runs:
        calls, turns = run.calls, len(run.turns)
        llm = calls[(calls["endpoint"] == "llm") & (calls["purpose"] != "chat")]
        embed = calls[calls["purpose"] == "embed"]
        count = calls.groupby("purpose").size().to_dict()
        final = dict(zip(run.store_final["user"], run.store_final["memories"], strict=True))
        out[run.strategy] = {
            "llm_calls": len(llm) / turns,
            "llm_tokens_in": llm["tokens_in"].sum() / turns,
            "llm_tokens_out": llm["tokens_out"].sum() / turns,
            "embed_calls": len(embed) / turns,
            "embed_tokens": embed["tokens_in"].sum() / turns,
            "store_queries": count.get("store_query", 0) / turns,
            "store_writes": count.get("store_write", 0) / turns,
            "store_deletes": count.get("store_delete", 0) / turns,
            "memory_tokens": (
                llm["tokens_in"].sum() + llm["tokens_out"].sum() + embed["tokens_in"].sum()
            )
            / turns,
            "memories_per_user": summary[run.strategy]["memories_per_user_mean"],
            "final": final,
            "turns": turns,
        }
    return out


def _differs(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b))


ROWS = [
    ("LLM calls", "llm_calls", "{:.2f}"),
    ("LLM input tokens", "llm_tokens_in", "{:,.0f}"),
    ("LLM output tokens", "llm_tokens_out", "{:,.1f}"),
    ("embedding calls", "embed_calls", "{:.2f}"),
    ("embedding tokens", "embed_tokens", "{:,.0f}"),
    ("memory tokens (LLM + embeddings)", "memory_tokens", "{:,.0f}"),
    ("store queries", "store_queries", "{:.2f}"),
    ("store writes", "store_writes", "{:.2f}"),
    ("store deletes", "store_deletes", "{:.2f}"),
    ("memories per user (mean)", "memories_per_user", "{:.2f}"),
]


def test_print_the_figures(runs, capsys):
    lines = ["", "| per add (= per turn) | noise | langmem-like | external-langmem | diff |"]
    lines.append("|---|---|---|---|---|")
    for noise in (True, False):
        fig = figures(runs[noise][0])
        for label, key, fmt in ROWS:
            a, b = fig[LIKE][key], fig[REAL][key]
            diff = f"{_differs(a, b):.1%}" if max(a, b) else "—"
            tag = "scenario's" if noise else "none"
            lines.append(f"| {label} | {tag} | {fmt.format(a)} | {fmt.format(b)} | {diff} |")
        calls = runs[noise][1].calls
        lines.append(
            f"| tool calls, all adds | {'scenario' if noise else 'none'} | "
            f"{dict(sorted(calls[LIKE].items()))} | {dict(sorted(calls[REAL].items()))} | |"
        )
    with capsys.disabled():
        print("\n".join(lines))


def test_the_same_call_sequence_per_add(runs):
    """One LLM call per add; LangMem's two searches plus the application's: three queries
    and three query embeddings per turn; one embedding and one write per put."""
    for noise in (True, False):
        fig = figures(runs[noise][0])
        for name in (LIKE, REAL):
            f = fig[name]
            assert f["llm_calls"] == 1.0, name
            assert f["store_queries"] == 3.0, name
            puts = f["store_writes"]
            assert f["embed_calls"] == pytest.approx(3.0 + puts), name


def test_figures_agree_within_15_percent(runs):
    """With the scenario's noise: LLM calls, memory tokens (LLM + embeddings) per add and
    memories per user within 15%."""
    fig = figures(runs[True][0])
    for key in ("llm_calls", "memory_tokens", "llm_tokens_in", "embed_tokens"):
        assert _differs(fig[LIKE][key], fig[REAL][key]) <= TOLERANCE, key
    assert _differs(fig[LIKE]["memories_per_user"], fig[REAL]["memories_per_user"]) <= TOLERANCE


def test_without_noise_the_two_make_the_same_tool_calls_and_keep_the_same_memories(runs):
    result, logs = runs[False]
    assert logs.calls[LIKE] == logs.calls[REAL]
    fig = figures(result)
    assert fig[LIKE]["final"] == fig[REAL]["final"]
    assert fig[LIKE]["memories_per_user"] == fig[REAL]["memories_per_user"]


def test_langgraph_embeds_the_whole_json_value(runs):
    """The store's index embeds each put's whole value (default fields ``["$"]``:
    ``json.dumps(value, sort_keys=True)``, langgraph/store/base/embed.py
    ``get_text_at_path``), where langmem-like embeds the memory's text; the queries
    are the same texts. Without noise that is the whole difference in embedding tokens."""
    result, logs = runs[False]
    like, real = logs.embedded[LIKE], logs.embedded[REAL]
    assert len(like) == len(real)
    tokens = TokenCounter()
    wrapped = 0
    for mine, theirs in zip(like, real, strict=True):
        if mine != theirs:
            value = {"kind": "Memory", "content": {"content": mine}}
            assert theirs == json.dumps(value, sort_keys=True, ensure_ascii=False)
            wrapped += tokens.count(theirs) - tokens.count(mine)
    fig = figures(result)
    assert wrapped > 0
    turns = fig[LIKE]["turns"]
    assert (fig[REAL]["embed_tokens"] - fig[LIKE]["embed_tokens"]) * turns == pytest.approx(wrapped)


def test_a_patch_is_one_put_in_langgraph_and_a_delete_and_a_write_in_memsim(runs):
    """LangGraph's ``put`` on an existing key overwrites it; memsim's store replaces a
    memory by deleting it and adding it under the same id. With deletes off, every
    store delete of langmem-like is a patch."""
    result, logs = runs[False]
    fig = figures(result)
    turns = fig[LIKE]["turns"]
    assert fig[REAL]["store_deletes"] == 0
    assert fig[LIKE]["store_deletes"] * turns == logs.calls[LIKE]["PatchDoc"] > 0
