"""``memsim run --otel``: GenAI spans in OTLP/JSON, and OTel exports replayed as a trace."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import scenarios
from memsim.api import turn_content
from reports.results import load_results
from sim.config import TraceConfig
from sim.traces import read_trace

MEMSIM = [sys.executable, "-m", "memsim"]
SPAN_KIND_CLIENT = 3


def _memsim(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*MEMSIM, *args], capture_output=True, text=True, cwd=cwd, check=False)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``memsim run tiny --otel`` twice (with content), into two folders."""
    root = tmp_path_factory.mktemp("otel")
    for name in ("a", "b"):
        done = _memsim(
            "run", "tiny", "-q", "--out", str(root / name), "--otel",
            str(root / f"{name}.json"), "--otel-content",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    return root


def _attributes(span) -> dict:
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in span.attributes}


def test_export_parses_and_matches_calls_and_tokens(exported):
    request = json_format.Parse((exported / "a.json").read_text(), ExportTraceServiceRequest())
    summary = json.loads((exported / "a" / "summary.json").read_text())
    results = load_results(exported / "a")
    calls = results.calls.groupby("strategy", observed=True).size()
    turns = results.turns.groupby("strategy", observed=True).size()
    assert len(request.resource_spans) == len(calls) == len(summary["strategies"])
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource)
        strategy = resource["memsim.strategy"]
        assert resource["service.name"] == "memsim"
        assert resource["memsim.scenario"] == "tiny" and resource["memsim.seed"] == 7
        spans = [s for scope in resource_spans.scope_spans for s in scope.spans]
        client = [s for s in spans if s.kind == SPAN_KIND_CLIENT]
        assert len(client) == calls[strategy]
        tokens = 0
        for span in client:
            attrs = _attributes(span)
            assert attrs["gen_ai.operation.name"]
            tokens += attrs.get("gen_ai.usage.input_tokens", 0)
            tokens += attrs.get("gen_ai.usage.output_tokens", 0)
        assert tokens == summary["strategies"][strategy]["tokens_total"]
        ids = {s.span_id for s in spans}
        assert len(ids) == len(spans)
        assert all(s.parent_span_id in ids for s in client)  # under a turn or background span
        assert sum(s.name == "turn" for s in spans) == turns[strategy]


def test_memory_calls_are_memory_operations(exported):
    request = json_format.Parse((exported / "a.json").read_text(), ExportTraceServiceRequest())
    operations = defaultdict(set)
    single_ids = defaultdict(set)
    for resource_spans in request.resource_spans:
        for span in resource_spans.scope_spans[0].spans:
            attrs = _attributes(span)
            if "memsim.purpose" in attrs:
                operations[attrs["memsim.purpose"]].add(attrs["gen_ai.operation.name"])
                if attrs["gen_ai.operation.name"].endswith("_memory"):
                    assert attrs["gen_ai.memory.store.id"] == "numpy"
                    assert attrs["gen_ai.memory.store.name"] == "numpy"
                    one = int(attrs["gen_ai.memory.record.count"]) == 1
                    assert ("gen_ai.memory.record.id" in attrs) == one, attrs
                    if one:
                        single_ids[attrs["memsim.purpose"]].add(attrs["gen_ai.memory.record.id"])
    # a memory written alone is then found alone under the same id
    assert single_ids["store_write"] and single_ids["store_write"] & single_ids["store_query"]
    assert operations["store_write"] == {"create_memory"}
    assert operations["store_query"] == {"search_memory"}
    assert operations["embed"] == {"embeddings"}
    assert operations["chat"] == operations["extract"] == {"chat"}


def test_export_is_byte_identical_across_runs(exported):
    assert (exported / "a.json").read_bytes() == (exported / "b.json").read_bytes()


def test_replaying_the_export_reproduces_the_conversations(exported):
    trace = read_trace(TraceConfig(format="otel", path=str(exported / "a.json")))
    wanted: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    for (_, session, _), said in sorted(turn_content(scenarios.load("tiny")[0]).items()):
        wanted[said.user_id][session].append(said.message)
    got = {u.user_id: [[t.text for t in s.turns] for s in u.sessions] for u in trace.users}
    assert got == {user: [by[s] for s in sorted(by)] for user, by in wanted.items()}
    turns = load_results(exported / "a").turns
    assert trace.info.turns == (turns["strategy"] == "naive-append").sum()


def test_otel_trace_scenario_runs(exported, tmp_path):
    scenario = tmp_path / "replay.toml"
    scenario.write_text(
        'name = "replay"\nstrategies = ["naive-append"]\nembedder = "latent"\n'
        f'[trace]\nformat = "otel"\npath = "{exported / "a.json"}"\n'
    )
    done = _memsim("validate", str(scenario))
    assert done.returncode == 0, done.stderr
    assert "121 user turns" in done.stdout


def _otel_span(**attrs) -> dict:
    values = [{"key": k, "value": {"stringValue": v}} for k, v in attrs.items()]
    return {
        "traceId": "0" * 31 + "1",
        "spanId": "0" * 15 + "1",
        "name": "chat",
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000001000000000",
        "attributes": values,
    }


MESSAGES = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}])


def _one_span_file(**attributes: str) -> str:
    """An OTLP/JSON document holding one span with ``attributes``."""
    span = _otel_span(**attributes)
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})


CHAT = {"gen_ai.operation.name": "chat", "gen_ai.input.messages": MESSAGES, "user.id": "u"}
BAD_OTEL = {
    "no model": (
        _one_span_file(**CHAT, **{"session.id": "s"}),
        ["resourceSpans[0].scopeSpans[0].spans[0]", "'attributes.gen_ai.request.model'"],
    ),
    "not OTLP": ('{"user_id": "u", "role": "user"}', ["not OTLP/JSON"]),
    "not JSON": ("hello\n", ["not OTLP/JSON"]),
    "bad span field": (
        json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": 5}]}]}]}),
        ["not OTLP/JSON"],
    ),
    "no session": (
        _one_span_file(**CHAT, **{"gen_ai.request.model": "gpt-4o-mini"}),
        ["'attributes.session.id' is missing"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_OTEL))
def test_bad_otel_input_is_one_line_exit_2(tmp_path, case):
    text, words = BAD_OTEL[case]
    path = tmp_path / "spans.json"
    path.write_text(text)
    scenario = tmp_path / "bad.toml"
    scenario.write_text(f'name = "bad"\n[trace]\nformat = "otel"\npath = "{path}"\n')
    done = _memsim("validate", str(scenario))
    assert done.returncode == 2
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("memsim: error: "), done.stderr
    for word in [str(path), *words]:
        assert word in lines[0]


def test_unwritable_otel_path_fails_before_the_run(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    done = _memsim("run", "tiny", "-q", "--out", str(tmp_path / "o"), "--otel", f"{blocker}/x.json")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_a_replayed_chat_log_round_trips_with_its_replies(tmp_path):
    chat_log = Path(__file__).parent / "data" / "chat_log.jsonl"
    spans = tmp_path / "spans.json"
    done = _memsim(
        "run", "tiny", "-q", "--trace", str(chat_log), "--set", "embedder=latent",
        "-s", "naive-append", "--out", str(tmp_path / "o"), "--otel", str(spans), "--otel-content",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    replayed = read_trace(TraceConfig(format="otel", path=str(spans)))
    original = read_trace(TraceConfig(format="jsonl", path=str(chat_log)))

    def conversations(trace):
        return [
            (u.user_id, [[(t.text, t.reply) for t in s.turns] for s in u.sessions])
            for u in trace.users
        ]

    assert conversations(replayed) == conversations(original)
    assert any(t.reply for u in replayed.users for s in u.sessions for t in s.turns)
