"""``--otel FILE``: a run's calls as OpenTelemetry spans, in the OTLP/JSON shape.

Built from the records alone (each strategy's turns and calls tables), so the file
is the same whether it is written right after a run or later from saved records.
It follows the OpenTelemetry GenAI semantic conventions (status: Development):
the client spans of inference and embeddings calls
(https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/) with
``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``,
``gen_ai.usage.input_tokens``, ``gen_ai.usage.output_tokens``,
``gen_ai.usage.cache_read.input_tokens`` and ``error.type``, and the opt-in
content attributes ``gen_ai.input.messages`` / ``gen_ai.output.messages`` (the
JSON message shape of the conventions' "Capturing instructions, inputs, and
outputs" section); memory-store calls follow the memory operations of the GenAI
registry (``create_memory``, ``search_memory``, ``delete_memory``). Attribute
names come from ``opentelemetry-semantic-conventions`` where it has them; the
memory attributes it does not have yet are written as the GenAI memory proposal
names them (open-telemetry/semantic-conventions issue 2664 and pull request
3250: ``gen_ai.memory.store.id``, ``gen_ai.memory.record.id``,
``gen_ai.memory.record.count``), with ``gen_ai.memory.store.name`` beside them.

The mapping:

* **One ``resourceSpans`` per strategy**, its resource ``service.name = memsim``,
  ``memsim.scenario``, ``memsim.strategy`` and ``memsim.seed``; one scope,
  ``memsim``.
* **One trace per user** (per strategy). Each user turn is an internal span
  ``turn`` (``session.id``, ``memsim.turn``, ``memsim.kind``); it lasts what the
  user waited plus the after-reply calls. A user's foreground call belongs to the
  turn whose window holds its start: from the turn's start to the user's next
  turn. Background calls (``ctx.defer`` jobs, ticks) are not tied to a turn in
  the records, so they go under one internal span ``background`` per user,
  spanning the first to the last of them; so does a foreground call made before
  the user's first turn.
* **One client span per call row** (a retry is a row, so a span of its own):
  LLM calls (chat, extract, summarize, update) are ``chat`` operations with
  ``memsim.purpose`` telling which; embedding calls are ``embeddings``; store
  calls are ``search_memory`` (``store_query``), ``create_memory``
  (``store_write``) and ``delete_memory`` (``store_delete``) with the store
  backend as the store id and name, the memories read, written or deleted as the
  record count and, when a call touched exactly one memory, its id as the record
  id (the records keep one id per call, not lists). A failed
  call has ``error.type`` and status ERROR. Its span starts when it was sent
  and ends after its queueing and service time.
* **Time** is simulated: the scenario's day 0 is midnight UTC of its
  ``[pricing] price_date``, plus each row's ``start_s``.
* **Ids** are the first bytes of a SHA-256 of (seed, scenario, strategy, user,
  table and row index), so the same run writes the same bytes.
* **Content** (opt-in, ``--otel-content``): the last chat call of a turn carries
  the user's message as ``gen_ai.input.messages`` and, where the workload scripts
  it (a replayed trace), the reply as ``gen_ai.output.messages``; the mock's
  generated replies are not recorded, so they are left out. Turn and chat spans
  then carry ``user.id`` and ``session.id`` as well: what ``[trace] format =
  "otel"`` (:mod:`sim.traces`) reads back.

64-bit integers are strings and ids are hex, as the OTLP/JSON encoding says;
``tests/test_otel.py`` parses the file back into an ``ExportTraceServiceRequest``.
"""

from __future__ import annotations

import hashlib
import json
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv._incubating.attributes import session_attributes, user_attributes
from opentelemetry.semconv.attributes import error_attributes, service_attributes

from sim.records import RunResult, StrategyRun

SCOPE = "memsim"
MEMORY_STORE_ID = "gen_ai.memory.store.id"
MEMORY_STORE_NAME = "gen_ai.memory.store.name"
MEMORY_RECORD_ID = "gen_ai.memory.record.id"
MEMORY_RECORD_COUNT = "gen_ai.memory.record.count"
OPERATIONS = {
    "chat": "chat",
    "extract": "chat",
    "summarize": "chat",
    "update": "chat",
    "embed": "embeddings",
    "store_query": "search_memory",
    "store_write": "create_memory",
    "store_delete": "delete_memory",
}
"""``gen_ai.operation.name`` of each call purpose (another purpose keeps its own name)."""
SPAN_KIND_INTERNAL, SPAN_KIND_CLIENT = 1, 3
STATUS_ERROR = 2
_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class TurnContent:
    """What a turn said, for ``--otel-content``: ids as the workload names them, texts."""

    user_id: str
    session_id: str
    message: str
    reply: str | None


Content = dict[tuple[int, int, int], TurnContent]
"""Turn content by ``(user, session, turn)`` index, as the turns table numbers them."""


def write_otel(result: RunResult, path: Path, content: Content | None = None) -> None:
    """Write ``result`` as an OTLP/JSON trace export to ``path`` (one line, UTF-8)."""
    path.write_text(otel_json(result, content) + "\n", encoding="utf-8")


def otel_json(result: RunResult, content: Content | None = None) -> str:
    """The OTLP/JSON ``ExportTraceServiceRequest`` document of ``result``."""
    document = {"resourceSpans": [resource_spans(result, run, content) for run in result.runs]}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def scenario_epoch_ns(price_date: str) -> int:
    """Nanoseconds since 1970 of simulated time 0: midnight UTC of ``price_date``."""
    day = date.fromisoformat(price_date)
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * _NS


def resource_spans(result: RunResult, run: StrategyRun, content: Content | None) -> dict:
    """One strategy's ``ResourceSpans``: its resource, one scope, every span."""
    scn = result.scenario
    resource = [
        _attr(service_attributes.SERVICE_NAME, "memsim"),
        _attr("memsim.scenario", scn.name),
        _attr("memsim.strategy", run.strategy),
        _attr("memsim.seed", scn.seed),
    ]
    spans = list(_Spans(result, run, content or {}).all())
    return {
        "resource": {"attributes": resource},
        "scopeSpans": [{"scope": {"name": SCOPE}, "spans": spans}],
    }


class _Spans:
    """The spans of one strategy's records, user by user; rows by position in their table."""

    def __init__(self, result: RunResult, run: StrategyRun, content: Content) -> None:
        scn = result.scenario
        self.key = f"{scn.seed}|{scn.name}|{run.strategy}"
        self.epoch = scenario_epoch_ns(scn.pricing.price_date)
        self.content = content
        self.models = {"llm": scn.llm.model, "embedding": scn.embedding.model}
        self.provider, self.store = scn.llm.provider, scn.store
        self.t = {name: run.turns[name].tolist() for name in run.turns.columns}
        self.c = {name: run.calls[name].tolist() for name in run.calls.columns}

    def all(self) -> Iterator[dict]:
        turn_rows, call_rows = _rows_by_user(self.t["user"]), _rows_by_user(self.c["user"])
        for user in sorted(set(turn_rows) | set(call_rows)):
            yield from self._user(user, turn_rows.get(user, []), call_rows.get(user, []))

    def _id(self, size: int, *parts: object) -> str:
        text = "|".join([self.key, *map(str, parts)])
        return hashlib.sha256(text.encode()).hexdigest()[: 2 * size]

    def _ns(self, seconds: float) -> str:
        return str(self.epoch + round(seconds * _NS))

    def _user(self, user: int, turn_rows: list[int], call_rows: list[int]) -> Iterator[dict]:
        t_start, c_start, c = self.t["start_s"], self.c["start_s"], self.c
        trace = self._id(16, "user", user)
        order = sorted(turn_rows, key=lambda row: (t_start[row], row))
        starts = [t_start[row] for row in order]
        parents: dict[int, list[int]] = {}  # turn position (-1: background) → call rows
        for row in call_rows:
            at = -1 if c["background"][row] else bisect_right(starts, c_start[row]) - 1
            parents.setdefault(at, []).append(row)
        for position, row in enumerate(order):
            turn_span = self._id(8, "turn", row)
            texts = self._content(row)
            yield self._turn(trace, turn_span, row, texts)
            rows = parents.get(position, [])
            chats = [(c_start[r], r) for r in rows if c["purpose"][r] == "chat"]
            last_chat = max(chats)[1] if chats else None
            for call in rows:
                yield self._call(trace, turn_span, call, texts if call == last_chat else None)
        background = parents.get(-1, [])
        if background:
            span = self._id(8, "background", user)
            yield self._background(trace, span, user, background)
            for call in background:
                yield self._call(trace, span, call, None)

    def _content(self, row: int) -> TurnContent | None:
        t = self.t
        return self.content.get((t["user"][row], t["session"][row], t["turn"][row]))

    def _turn(self, trace: str, span: str, row: int, texts: TurnContent | None) -> dict:
        t = self.t
        start = t["start_s"][row]
        attrs = [
            _attr("memsim.user", t["user"][row]),
            _attr("memsim.session", t["session"][row]),
            _attr("memsim.turn", t["turn"][row]),
            _attr("memsim.kind", t["kind"][row]),
        ]
        if texts is not None:
            attrs += _ids(texts)
        body = _span(trace, span, "", "turn", SPAN_KIND_INTERNAL, self._ns(start))
        end = start + t["latency_s"][row] + t["post_reply_s"][row]
        body |= {"endTimeUnixNano": self._ns(end), "attributes": attrs}
        if t["error"][row]:
            body["status"] = {"code": STATUS_ERROR, "message": t["error"][row]}
        return body

    def _end(self, row: int) -> float:
        c = self.c
        return c["start_s"][row] + c["queue_s"][row] + c["latency_s"][row]

    def _background(self, trace: str, span: str, user: int, rows: list[int]) -> dict:
        start = min(self.c["start_s"][row] for row in rows)
        end = max(self._end(row) for row in rows)
        body = _span(trace, span, "", "background", SPAN_KIND_INTERNAL, self._ns(start))
        body |= {"endTimeUnixNano": self._ns(end), "attributes": [_attr("memsim.user", user)]}
        return body

    def _call(self, trace: str, parent: str, row: int, texts: TurnContent | None) -> dict:
        c = self.c
        purpose, endpoint, error = c["purpose"][row], c["endpoint"][row], c["error"][row]
        operation = OPERATIONS.get(purpose, purpose)
        attrs = [_attr(gen_ai.GEN_AI_OPERATION_NAME, operation), _attr("memsim.purpose", purpose)]
        if endpoint == "store":
            name = f"{operation} {self.store}"
            attrs += [
                _attr(MEMORY_STORE_ID, self.store),
                _attr(MEMORY_STORE_NAME, self.store),
                _attr(MEMORY_RECORD_COUNT, c["items"][row]),
            ]
            if c["record_id"][row] >= 0:
                attrs.append(_attr(MEMORY_RECORD_ID, str(c["record_id"][row])))
        else:
            model = self.models.get(endpoint, endpoint)
            name = f"{operation} {model}"
            attrs += [
                _attr(gen_ai.GEN_AI_PROVIDER_NAME, self.provider),
                _attr(gen_ai.GEN_AI_REQUEST_MODEL, model),
                _attr(gen_ai.GEN_AI_USAGE_INPUT_TOKENS, c["tokens_in"][row]),
                _attr(gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS, c["tokens_out"][row]),
            ]
            if c["cached_tokens"][row]:
                cached = c["cached_tokens"][row]
                attrs.append(_attr(gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, cached))
        attrs += [
            _attr("memsim.user", c["user"][row]),
            _attr("memsim.background", c["background"][row]),
            _attr("memsim.attempt", c["attempt"][row]),
            _attr("memsim.usd", c["usd"][row]),
        ]
        if texts is not None:
            attrs += [*_ids(texts), *_messages(texts)]
        if error:
            attrs.append(_attr(error_attributes.ERROR_TYPE, error))
        span = self._id(8, "call", row)
        body = _span(trace, span, parent, name, SPAN_KIND_CLIENT, self._ns(c["start_s"][row]))
        body |= {"endTimeUnixNano": self._ns(self._end(row)), "attributes": attrs}
        if error:
            body["status"] = {"code": STATUS_ERROR, "message": error}
        return body


def _rows_by_user(users: list[int]) -> dict[int, list[int]]:
    """Row positions by user, in row order."""
    rows: dict[int, list[int]] = {}
    for row, user in enumerate(users):
        rows.setdefault(user, []).append(row)
    return rows


def _span(trace: str, span: str, parent: str, name: str, kind: int, start: str) -> dict:
    body: dict[str, Any] = {"traceId": trace, "spanId": span}
    if parent:
        body["parentSpanId"] = parent
    return body | {"name": name, "kind": kind, "startTimeUnixNano": start}


def _ids(texts: TurnContent) -> list[dict]:
    return [
        _attr(user_attributes.USER_ID, texts.user_id),
        _attr(session_attributes.SESSION_ID, texts.session_id),
    ]


def _messages(texts: TurnContent) -> list[dict]:
    said = [{"role": "user", "parts": [{"type": "text", "content": texts.message}]}]
    attrs = [_attr(gen_ai.GEN_AI_INPUT_MESSAGES, json.dumps(said, ensure_ascii=False))]
    if texts.reply is not None:
        parts = [{"type": "text", "content": texts.reply}]
        reply = [{"role": "assistant", "parts": parts, "finish_reason": "stop"}]
        attrs.append(_attr(gen_ai.GEN_AI_OUTPUT_MESSAGES, json.dumps(reply, ensure_ascii=False)))
    return attrs


def _attr(key: str, value: object) -> dict:
    """An OTLP ``KeyValue``: 64-bit integers as strings, as OTLP/JSON encodes them."""
    if isinstance(value, bool | np.bool_):
        typed: dict[str, Any] = {"boolValue": bool(value)}
    elif isinstance(value, int | np.integer):
        typed = {"intValue": str(int(value))}
    elif isinstance(value, float | np.floating):
        typed = {"doubleValue": float(value)}
    else:
        typed = {"stringValue": str(value)}
    return {"key": key, "value": typed}
