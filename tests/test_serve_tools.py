"""serve-mock answers tool calls: memory schemas, trustcall's patches, streaming, usage."""

from __future__ import annotations

import json

import openai
import pytest

import scenarios
from sim.serve import MockBackend, MockServer
from sim.tokens import encoding
from sim.workload import Fact, Message

MODEL = "gpt-4o-mini"
MEMORY_TOOL = {  # langmem 0.0.30's Memory schema as trustcall binds it (_Extract)
    "type": "function",
    "function": {
        "name": "Memory",
        "description": "Call this tool once for each new memory you want to record. Use "
        "multi-tool calling to record multiple new memories.",
        "parameters": {
            "properties": {
                "content": {
                    "description": "The memory as a well-written, standalone "
                    "episode/fact/note/preference/etc.",
                    "title": "Content",
                    "type": "string",
                }
            },
            "required": ["content"],
            "title": "Memory",
            "type": "object",
        },
    },
}
WEATHER_TOOL = {  # the OpenAI cookbook's example ("How to count tokens with tiktoken", §7)
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {
                    "type": "string",
                    "description": "The city and state, e.g. San Francisco, CA",
                },
                "unit": {
                    "type": "string",
                    "description": "The unit of temperature to return",
                    "enum": ["celsius", "fahrenheit"],
                },
            },
            "required": ["location"],
        },
    },
}
SAID = Message("user", "I moved to Porto last month.", 8, "update", (Fact("city", 1, "Porto"),))
MOVED = Message("user", "I live in Lisbon now.", 6, "update", (Fact("city", 2, "Lisbon"),))
TITLE = "=" * 32 + " Human Message " + "=" * 33  # langchain_core's pretty_repr title


def cl100k(text: str) -> int:
    return len(encoding().encode_ordinary(text))


def chat_prompt_tokens(messages: list[dict]) -> int:
    return 3 + sum(3 + cl100k(m["role"]) + cl100k(m["content"]) for m in messages)


def cookbook_tool_tokens(tools: list[dict]) -> int:
    """num_tokens_for_tools of the OpenAI cookbook (gpt-4o-mini constants), tools part only."""
    total = 0
    for tool in tools:
        function = tool["function"]
        total += 7 + cl100k(function["name"] + ":" + function["description"].removesuffix("."))
        properties = function["parameters"]["properties"]
        if properties:
            total += 3
            for key, prop in properties.items():
                total += 3
                if "enum" in prop:
                    total += -3 + sum(3 + cl100k(item) for item in prop["enum"])
                line = f"{key}:{prop['type']}:{prop['description'].removesuffix('.')}"
                total += cl100k(line)
    return total + 12


def langmem_messages(*said: Message) -> list[dict]:
    """The request shape of langmem's MemoryManager._prepare_messages (abridged)."""
    conversation = "\n\n".join(f"{TITLE}\n\n{m.text}" for m in said)
    session = f"<session_0>\n{conversation}\n</session_0>"
    return [
        {"role": "system", "content": "You are a memory subroutine for an AI."},
        {"role": "user", "content": f"Enrich, prune, and organize memories. {session}"},
    ]


def existing_block(doc_id: str, text: str) -> str:
    """trustcall's _ExtractUpdates._setup: the existing docs appended to the system message."""
    return (
        "\n\nGenerate JSONPatches to update the existing schema instances. If you need to "
        "extract or insert *new* instances of the schemas, call the relevant function(s).\n"
        f'<existing>\n<instance id={doc_id} schema_type="Memory">\n'
        f"{ {'content': text}!r}\n</instance>\n</existing>\n"
    )


def patch_tools(*names: str) -> list[dict]:
    """trustcall's helper tools by name (parameters abridged), then the Memory schema."""
    tools = [
        {
            "type": "function",
            "function": {
                "name": name,
                "description": f"{name} helper.",
                "parameters": {
                    "type": "object",
                    "properties": {"json_doc_id": {"type": "string", "description": "Doc id."}},
                    "required": ["json_doc_id"],
                },
            },
        }
        for name in names
    ]
    return [*tools, MEMORY_TOOL]


def backend_with(**llm: object) -> MockBackend:
    scenario = scenarios.load("tiny")[0]
    return MockBackend.from_scenario(
        scenario.with_overrides(llm={**scenario.llm.model_dump(), **llm})
    )


@pytest.fixture(scope="module")
def served():
    backend = backend_with(extract_miss_rate=0.0, extract_hallucination_rate=0.0)
    with MockServer(backend) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        yield backend, client


def calls_of(response) -> list[tuple[str, dict]]:
    message = response.choices[0].message
    return [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]


def test_a_memory_schema_gets_one_insert_call_per_new_fact(served):
    backend, client = served
    messages = langmem_messages(SAID)
    with backend.expect([SAID]) as found:
        answer = client.chat.completions.create(model=MODEL, messages=messages, tools=[MEMORY_TOOL])
    calls = calls_of(answer)
    assert [name for name, _ in calls] == ["Memory"]
    assert found[calls[0][1]["content"]].facts == (("city", 1),)
    assert answer.choices[0].finish_reason == "tool_calls"
    assert answer.choices[0].message.content is None
    record = backend.records[-1]
    assert (record.kind, record.purpose, record.items) == ("tools-extract", "extract", 1)


def test_usage_bills_the_tool_definitions_by_the_cookbook_rule(served):
    _, client = served
    messages = [
        {
            "role": "system",
            "content": "You are a helpful assistant that can answer to "
            "questions about the weather.",
        },
        {"role": "user", "content": "What's the weather like in San Francisco?"},
    ]
    plain = client.chat.completions.create(model=MODEL, messages=messages)
    with_tools = client.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER_TOOL]
    )
    assert plain.usage.prompt_tokens == chat_prompt_tokens(messages)
    assert with_tools.usage.prompt_tokens == (
        chat_prompt_tokens(messages) + cookbook_tool_tokens([WEATHER_TOOL])
    )
    # tool_choice "auto" and no memory schema: the model answers in prose.
    assert with_tools.choices[0].message.tool_calls is None
    assert with_tools.choices[0].finish_reason == "stop"


def test_completion_tokens_are_the_calls_names_and_arguments(served):
    backend, client = served
    messages = langmem_messages(SAID)
    with backend.expect([SAID]):
        answer = client.chat.completions.create(model=MODEL, messages=messages, tools=[MEMORY_TOOL])
    function = answer.choices[0].message.tool_calls[0].function
    assert answer.usage.prompt_tokens == (
        chat_prompt_tokens(messages) + cookbook_tool_tokens([MEMORY_TOOL])
    )
    assert answer.usage.completion_tokens == cl100k(function.name) + cl100k(function.arguments)
    assert backend.records[-1].tokens_out == answer.usage.completion_tokens


def test_streamed_tool_calls_join_to_the_unstreamed_answer(served):
    backend, client = served
    messages = langmem_messages(SAID, MOVED)
    with backend.expect([SAID, MOVED]):
        whole = client.chat.completions.create(model=MODEL, messages=messages, tools=[MEMORY_TOOL])
        chunks = list(
            client.chat.completions.create(
                model=MODEL,
                messages=messages,
                tools=[MEMORY_TOOL],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    calls: dict[int, dict] = {}
    for chunk in chunks[:-2]:
        for delta in chunk.choices[0].delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"arguments": ""})
            if delta.id:
                assert delta.function.arguments == ""  # opened with empty arguments
                call.update(id=delta.id, type=delta.type, name=delta.function.name)
            else:
                assert delta.id is None and delta.function.name is None
                call["arguments"] += delta.function.arguments
    first = chunks[0].choices[0].delta
    assert first.role == "assistant" and first.tool_calls[0].index == 0
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    expected = whole.choices[0].message.tool_calls
    assert len(expected) == 2
    assert [calls[i] for i in range(len(calls))] == [
        {
            "id": c.id,
            "type": "function",
            "name": c.function.name,
            "arguments": c.function.arguments,
        }
        for c in expected
    ]
    # More than one fragment per call: arguments stream token by token.
    assert len(chunks) > 2 + 2 * len(expected)


def test_the_same_request_gets_the_same_bytes(served):
    backend, client = served
    messages = langmem_messages(SAID, MOVED)
    with backend.expect([SAID, MOVED]):
        first = client.chat.completions.create(model=MODEL, messages=messages, tools=[MEMORY_TOOL])
        again = client.chat.completions.create(model=MODEL, messages=messages, tools=[MEMORY_TOOL])
    assert first.model_dump() == again.model_dump()
    assert len({c.id for c in first.choices[0].message.tool_calls}) == 2


def test_trustcall_patches_a_doc_whose_fact_has_a_new_version(served):
    backend, client = served
    old = "User lives in Porto."
    messages = langmem_messages(MOVED)
    messages[0]["content"] += existing_block("doc-1", old)
    with backend.expect([MOVED], {old: (("city", 1),)}) as found:
        answer = client.chat.completions.create(
            model=MODEL, messages=messages, tools=patch_tools("PatchDoc"), tool_choice="required"
        )
    [(name, args)] = calls_of(answer)
    assert name == "PatchDoc" and args["json_doc_id"] == "doc-1"
    [patch] = args["patches"]
    assert patch["op"] == "replace" and patch["path"] == "/content"
    assert found[patch["value"]].facts == (("city", 2),)
    record = backend.records[-1]
    assert (record.kind, record.purpose, record.items) == ("trustcall-patch", "extract", 1)


def test_without_patchdoc_the_old_doc_is_removed_and_the_new_inserted(served):
    backend, client = served
    old = "User lives in Porto."
    messages = langmem_messages(MOVED)
    messages[0]["content"] += existing_block("doc-1", old)
    with backend.expect([MOVED], {old: (("city", 1),)}):
        answer = client.chat.completions.create(
            model=MODEL, messages=messages, tools=patch_tools("RemoveDoc"), tool_choice="required"
        )
    assert [name for name, _ in calls_of(answer)] == ["RemoveDoc", "Memory"]
    assert calls_of(answer)[0][1] == {"json_doc_id": "doc-1"}


def test_nothing_new_is_done_or_an_empty_patch(served):
    backend, client = served
    held = "User lives in Porto."
    messages = langmem_messages(SAID)
    messages[0]["content"] += existing_block("doc-1", held)
    with backend.expect([SAID], {held: (("city", 1),)}):
        done = client.chat.completions.create(
            model=MODEL,
            messages=messages,
            tools=patch_tools("PatchDoc", "Done"),
            tool_choice="required",
        )
        empty = client.chat.completions.create(
            model=MODEL, messages=messages, tools=patch_tools("PatchDoc"), tool_choice="required"
        )
    assert calls_of(done) == [("Done", {})]
    [(name, args)] = calls_of(empty)
    assert name == "PatchDoc" and args["json_doc_id"] == "doc-1" and args["patches"] == []
    assert backend.records[-1].items == 0


def test_update_only_requests_are_metered_as_updates(served):
    backend, client = served
    tools = patch_tools("PatchDoc")[:-1]  # enable_inserts=False: no memory schema
    messages = langmem_messages(SAID)
    messages[0]["content"] += existing_block("doc-1", "User lives in Porto.")
    client.chat.completions.create(
        model=MODEL, messages=messages, tools=tools, tool_choice="required"
    )
    assert (backend.records[-1].kind, backend.records[-1].purpose) == ("trustcall-update", "update")


def test_trustcall_repair_adds_the_missing_required_field(served):
    backend, client = served
    schema = MEMORY_TOOL["function"]["parameters"]
    error = (
        "Error:\n\n```\n1 validation error for Memory\ncontent\n  Field required\n```\n"
        f"Expected Parameter Schema:\n\n```json\n{json.dumps(schema)}\n```\n"
        "Please use PatchFunctionErrors to fix all validation errors. for json_doc_id=[call_1]."
    )
    messages = [
        {"role": "user", "content": "Extract memories."},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "Memory", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "content": error, "tool_call_id": "call_1"},
    ]
    tools = patch_tools("PatchFunctionErrors", "PatchFunctionName")[:-1]
    answer = client.chat.completions.create(
        model=MODEL, messages=messages, tools=tools, tool_choice="required"
    )
    [(name, args)] = calls_of(answer)
    assert name == "PatchFunctionErrors" and args["json_doc_id"] == "call_1"
    assert [p["path"] for p in args["patches"]] == ["/content"]
    assert backend.records[-1].kind == "trustcall-repair"
    # The assistant's earlier tool call is billed as input too.
    assert backend.records[-1].tokens_in > chat_prompt_tokens(
        [{**m, "content": m["content"]} for m in messages]
    )


def test_a_forced_other_tool_is_called_and_metered_as_chat(served):
    backend, client = served
    messages = [{"role": "user", "content": "Weather in Lisbon?"}]
    answer = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_current_weather"}},
    )
    assert calls_of(answer) == [("get_current_weather", {"location": "Weather in Lisbon?"})]
    assert (backend.records[-1].kind, backend.records[-1].purpose) == ("tools-call", "chat")


def test_a_malformed_tool_is_refused_as_the_api_does(served):
    _, client = served
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            tools=[{"type": "function", "function": {"description": "no name"}}],
        )
    assert err.value.body["param"] == "tools[0].function.name"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], tool_choice="required"
        )
    assert err.value.body["param"] == "tool_choice"


@pytest.mark.parametrize(
    ("knob", "kinds"),
    [
        ({"extract_miss_rate": 1.0, "extract_hallucination_rate": 0.0}, []),
        ({"extract_miss_rate": 0.0, "extract_hallucination_rate": 0.0}, ["PatchDoc"]),
        (
            {"extract_miss_rate": 0.0, "extract_hallucination_rate": 0.0, "update_error_rate": 1.0},
            ["Memory"],
        ),
        ({"extract_miss_rate": 0.0, "extract_hallucination_rate": 1.0}, ["PatchDoc", "Memory"]),
    ],
)
def test_the_scenarios_noise_knobs_shape_the_calls(knob, kinds):
    backend = backend_with(**knob)
    old = "User lives in Porto."
    messages = langmem_messages(MOVED)
    messages[0]["content"] += existing_block("doc-1", old)
    with MockServer(backend) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        with backend.expect([MOVED], {old: (("city", 1),)}):
            answer = client.chat.completions.create(
                model=MODEL, messages=messages, tools=patch_tools("PatchDoc")
            )
    # tool_choice "auto": nothing found is answered in prose.
    assert [name for name, _ in calls_of(answer)] == kinds
    assert answer.choices[0].finish_reason == ("tool_calls" if kinds else "stop")
