"""`memsim serve-mock`: the OpenAI-compatible mock server, through the real openai client."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import openai
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import scenarios
from memsim.cli import app
from sim.serve import (
    MockBackend,
    MockServer,
    classify,
    content_deltas,
    create_app,
    split_transcript,
)
from sim.tokens import encoding
from sim.workload import Fact, Message

ROOT = Path(__file__).parents[1]


def cl100k(text: str) -> int:
    return len(encoding().encode_ordinary(text))


def chat_prompt_tokens(messages: list[dict]) -> int:
    """OpenAI's accounting as sim/tokens.py bills it: 3 + role + content per message, 3 more."""
    return 3 + sum(3 + cl100k(m["role"]) + cl100k(m["content"]) for m in messages)


@pytest.fixture(scope="module")
def served():
    scenario = scenarios.load("tiny")[0]
    backend = MockBackend.from_scenario(scenario)
    with MockServer(backend) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        yield backend, server, client


def test_chat_usage_is_the_exact_cl100k_count_and_answers_repeat(served):
    backend, _, client = served
    messages = [
        {"role": "system", "content": "You are a helpful support assistant."},
        {"role": "user", "content": "Hi! My name is Ana and I work at Acme in Lisbon."},
    ]
    first = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    again = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    text = first.choices[0].message.content
    assert first.usage.prompt_tokens == chat_prompt_tokens(messages)
    assert first.usage.completion_tokens == cl100k(text)
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens
    assert text and again.choices[0].message.content == text
    assert first.model_dump() == again.model_dump()  # same request, same bytes
    record = backend.records[-1]
    assert (record.endpoint, record.purpose, record.kind) == (
        "/v1/chat/completions",
        "chat",
        "chat",
    )
    assert (record.tokens_in, record.tokens_out) == (first.usage.prompt_tokens, cl100k(text))
    assert record.latency_s > 0


def test_latency_is_reported_in_a_header(served):
    _, _, client = served
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Where is my order?"}]
    )
    assert float(raw.headers["x-memsim-latency-s"]) > 0
    assert raw.headers["x-memsim-purpose"] == "chat"


def test_embeddings_usage_vectors_and_determinism(served):
    backend, _, client = served
    inputs = ["I live in Lisbon.", "What plan am I on?"]
    first = client.embeddings.create(model="text-embedding-3-small", input=inputs)
    floats = client.embeddings.create(
        model="text-embedding-3-small", input=inputs, encoding_format="float"
    )
    assert first.usage.prompt_tokens == sum(cl100k(t) for t in inputs)
    vectors = np.array([d.embedding for d in first.data])
    assert vectors.shape == (2, backend.embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(vectors, np.array([d.embedding for d in floats.data]), atol=1e-6)
    assert backend.records[-1].purpose == "embed" and backend.records[-1].items == 2


def test_models_lists_the_scenario_models(served):
    _, _, client = served
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini", "text-embedding-3-small"]


def test_bad_requests_get_openai_shaped_errors(served):
    backend, server, client = served
    with pytest.raises(openai.BadRequestError) as too_long:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "word " * 130_000}]
        )
    assert too_long.value.code == "context_length_exceeded"
    assert "maximum context length is 128000 tokens" in too_long.value.message
    assert backend.records[-1].status == 400
    assert backend.records[-1].error == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as bad_dims:
        client.embeddings.create(model="text-embedding-3-small", input="x", dimensions=7)
    assert bad_dims.value.param == "dimensions"
    request = urllib.request.Request(
        server.base_url + "/chat/completions", data=b"{not json", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as raw:
        urllib.request.urlopen(request, timeout=10)
    body = json.loads(raw.value.read())
    assert raw.value.code == 400 and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"]


def test_requests_are_classified_from_their_prompts():
    assert classify([("system", "\n# ROLE\n\nYou are a Memory Extractor — …")]) == "mem0-additive"
    assert classify([("system", "You are a Personal Information Organizer, …")]) == "mem0-facts"
    assert classify([("user", "You are a smart memory manager which …")]) == "mem0-update"
    assert classify([("system", "Summarize the conversation so far.")]) == "summarize"
    assert classify([("system", "You are helpful."), ("user", "Hi")]) == "chat"
    assert split_transcript("user: a\nb\nassistant: c\n") == [("user", "a\nb"), ("assistant", "c")]


def test_registered_text_is_extracted_from_ground_truth_and_unknown_text_by_heuristic(served):
    backend, _, client = served
    said = Message("user", "I moved to Porto last month.", 8, "update", (Fact("city", 1, "Porto"),))
    system = "You are a Personal Information Organizer. Return json."
    ask = [
        {"role": "system", "content": system},
        {"role": "user", "content": f"Input:\nuser: {said.text}\n"},
    ]
    with backend.expect([said]) as found:
        answer = client.chat.completions.create(
            model="gpt-4o-mini", messages=ask, response_format={"type": "json_object"}
        )
    facts = json.loads(answer.choices[0].message.content)["facts"]
    assert facts and all(found[f].facts == (("city", 1),) for f in facts if found[f].facts)
    unknown = [
        {"role": "system", "content": system},
        {"role": "user", "content": "Input:\nuser: My sister works at the hospital in Graz.\n"},
    ]
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=unknown)
    assert json.loads(answer.choices[0].message.content) == {
        "facts": ["My sister works at the hospital in Graz."]
    }


def test_serve_mock_help():
    result = CliRunner().invoke(app, ["serve-mock", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--host", "--port", "--simulate-latency", "--record"):
        assert option in result.stdout
    for dialect in ("`stream`", "`n` choices", "model_not_found"):
        assert dialect in result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_mock_starts_answers_records_and_stops(tmp_path):
    port, record = free_port(), tmp_path / "requests.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "memsim", "serve-mock", "tiny", "--port", str(port)]
    proc = subprocess.Popen(
        [*command, "--record", str(record)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/models", timeout=2) as response:
                    models = json.loads(response.read())
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "serve-mock did not start"
                time.sleep(0.2)
        assert [m["id"] for m in models["data"]] == ["gpt-4o-mini", "text-embedding-3-small"]
        client = openai.OpenAI(base_url=base, api_key="test", max_retries=0)
        client.embeddings.create(model="text-embedding-3-small", input="hello")
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped after 2 requests" in out
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert [line["purpose"] for line in lines] == ["models", "embed"]


# -- the OpenAI dialect: streaming, n, models, roles, errors -------------------------------
FACTS_SYSTEM = "You are a Personal Information Organizer. Return json."
STREAMED_REQUESTS = {
    "chat": {
        "messages": [
            {"role": "system", "content": "You are a helpful support assistant."},
            {"role": "user", "content": "Can you check why my invoice doubled?"},
        ]
    },
    "truncated-extraction": {
        "messages": [
            {"role": "system", "content": FACTS_SYSTEM},
            {"role": "user", "content": "Input:\nuser: I live in Graz and I play the cello.\n"},
        ],
        "max_tokens": 5,
    },
}


@pytest.mark.parametrize("name", list(STREAMED_REQUESTS))
def test_stream_chunks_join_to_the_answer_and_the_usage_chunk_is_its_usage(served, name):
    backend, _, client = served
    request = {"model": "gpt-4o-mini", **STREAMED_REQUESTS[name]}
    whole = client.chat.completions.create(**request)
    stream = client.chat.completions.create(
        **request, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    record = backend.records[-1]
    *choice_chunks, usage_chunk = chunks
    assert choice_chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in choice_chunks[1:])
    content = "".join(c.choices[0].delta.content or "" for c in choice_chunks)
    assert content == whole.choices[0].message.content
    assert len(choice_chunks) == 2 + len(encoding().encode_ordinary(content))  # one per token
    finishes = [c.choices[0].finish_reason for c in choice_chunks]
    assert finishes == [None] * (len(choice_chunks) - 1) + [whole.choices[0].finish_reason]
    assert finishes[-1] == ("length" if "max_tokens" in request else "stop")
    assert usage_chunk.choices == [] and usage_chunk.usage == whole.usage
    assert all(c.usage is None for c in choice_chunks)
    assert {(c.id, c.object, c.model, c.created) for c in chunks} == {
        (whole.id, "chat.completion.chunk", "gpt-4o-mini", 0)
    }
    assert (record.tokens_in, record.tokens_out) == (
        whole.usage.prompt_tokens,
        whole.usage.completion_tokens,
    )


def test_stream_is_server_sent_events_ending_with_done(served):
    _, server, _ = served
    payload = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Where is my order?"}],
        "stream": True,
    }
    request = urllib.request.Request(
        server.base_url + "/chat/completions",
        data=json.dumps(payload).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        content_type = response.headers["content-type"]
        events = [e for e in response.read().decode().split("\n\n") if e]
    assert content_type.startswith("text/event-stream")
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert all("usage" not in c for c in chunks)  # no include_usage: no usage field at all
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert chunks[-1]["choices"][0]["delta"] == {}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_content_deltas_keep_multibyte_characters_whole():
    text = "Café 😀 in Zürich — 東京"
    pieces = content_deltas(text)
    assert "".join(pieces) == text
    assert len(pieces) > 1 and "😀" in "".join(p for p in pieces if "😀" in p)
    assert all("\ufffd" not in p for p in pieces)


def test_n_choices_differ_for_prose_repeat_for_extractions_and_bill_every_choice(served):
    _, _, client = served
    messages = [{"role": "user", "content": "Any tips for my trip to Porto?"}]
    one = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    three = client.chat.completions.create(model="gpt-4o-mini", messages=messages, n=3)
    again = client.chat.completions.create(model="gpt-4o-mini", messages=messages, n=3)
    texts = [c.message.content for c in three.choices]
    assert [c.index for c in three.choices] == [0, 1, 2]
    assert texts[0] == one.choices[0].message.content  # choice 0 is the n=1 answer
    assert len(set(texts)) == 3
    assert again.model_dump() == three.model_dump()
    assert three.usage.prompt_tokens == one.usage.prompt_tokens
    assert three.usage.completion_tokens == sum(cl100k(t) for t in texts)
    extraction = STREAMED_REQUESTS["truncated-extraction"]["messages"]
    two = client.chat.completions.create(model="gpt-4o-mini", messages=extraction, n=2)
    assert two.choices[0].message.content == two.choices[1].message.content
    assert two.usage.completion_tokens == 2 * cl100k(two.choices[0].message.content)
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, n=3, stream=True
    )
    joined = ["", "", ""]
    for chunk in stream:
        for choice in chunk.choices:
            joined[choice.index] += choice.delta.content or ""
    assert joined == texts
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="gpt-4o-mini", messages=messages, n=0)
    assert (bad.value.param, bad.value.code) == ("n", "integer_below_min_value")


def test_unknown_model_is_404_model_not_found(served):
    backend, _, client = served
    messages = [{"role": "user", "content": "Hi"}]
    with pytest.raises(openai.NotFoundError) as chat:
        client.chat.completions.create(model="gpt-5", messages=messages)
    assert chat.value.status_code == 404
    assert chat.value.body == {
        "message": "The model `gpt-5` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
    assert (backend.records[-1].status, backend.records[-1].error) == (404, "model_not_found")
    with pytest.raises(openai.NotFoundError) as embed:
        client.embeddings.create(model="text-embedding-ada-002", input="hello")
    assert embed.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError) as wrong_endpoint:
        client.chat.completions.create(model="text-embedding-3-small", messages=messages)
    assert wrong_endpoint.value.code is None and "not a chat model" in wrong_endpoint.value.message
    with pytest.raises(openai.NotFoundError) as retrieve:
        client.models.retrieve("gpt-5")
    assert retrieve.value.code == "model_not_found"
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    snapshot = client.chat.completions.create(model="gpt-4o-mini-2024-07-18", messages=messages)
    assert snapshot.model == "gpt-4o-mini-2024-07-18"


def test_unknown_or_missing_role_is_400_naming_the_message(served):
    backend, _, client = served
    messages = [{"role": "user", "content": "Hi"}, {"role": "bot", "content": "Hello"}]
    with pytest.raises(openai.BadRequestError) as unknown:
        client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert (unknown.value.type, unknown.value.param, unknown.value.code) == (
        "invalid_request_error",
        "messages[1].role",
        "invalid_value",
    )
    assert unknown.value.body["message"] == (
        "Invalid value: 'bot'. Supported values are: "
        "'system', 'assistant', 'user', 'function', 'tool', and 'developer'."
    )
    assert (backend.records[-1].status, backend.records[-1].error) == (400, "invalid_value")
    with pytest.raises(openai.BadRequestError) as missing:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"content": "Hi"}])
    assert (missing.value.param, missing.value.code) == (
        "messages[0].role",
        "missing_required_parameter",
    )


def test_unknown_route_and_wrong_method_answer_in_openai_shape(served):
    _, _, client = served
    with pytest.raises(openai.NotFoundError) as route:
        client.post("/chat/complete", body={}, cast_to=object)
    assert route.value.body == {
        "message": "Invalid URL (POST /v1/chat/complete)",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    with pytest.raises(openai.APIStatusError) as method:
        client.get("/chat/completions", cast_to=object)
    assert method.value.status_code == 405
    assert method.value.body == {
        "message": "Invalid method for URL (GET /v1/chat/completions)",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert method.value.response.headers["allow"] == "POST"
    with pytest.raises(openai.BadRequestError) as options:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Hi"}],
            stream_options={"include_usage": True},
        )
    assert options.value.param == "stream_options"


def test_validation_errors_are_400_and_crashes_500_in_openai_shape():
    backend = MockBackend.from_scenario(scenarios.load("tiny")[0])
    app = create_app(backend)

    @app.get("/v1/typed")
    async def typed(limit: int) -> dict:
        return {"limit": limit}

    @app.get("/v1/crash")
    async def crash() -> dict:
        raise RuntimeError("boom")

    http = TestClient(app, raise_server_exceptions=False)
    invalid = http.get("/v1/typed", params={"limit": "many"})
    assert invalid.status_code == 400
    error = invalid.json()["error"]
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        "limit",
        None,
    )
    assert error["message"].startswith("Invalid 'limit': ")
    crashed = http.get("/v1/crash")
    assert crashed.status_code == 500
    assert crashed.json()["error"]["type"] == "server_error"
