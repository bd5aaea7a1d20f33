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
from typer.testing import CliRunner

import scenarios
from sim.cli import app
from sim.serve import MockBackend, MockServer, classify, split_transcript
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_mock_starts_answers_records_and_stops(tmp_path):
    port, record = free_port(), tmp_path / "requests.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "sim", "serve-mock", "tiny", "--port", str(port)]
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
