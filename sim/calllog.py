"""Reading a team's LLM call logs into one shape, for ``memsim fit``: pure reading.

Three formats, each read into :class:`Call` rows (times in seconds):

* ``openai`` — JSON lines, one call each (the shape is documented in the README,
  "Fit memsim to your own traffic")::

      {"model": "gpt-4o-mini", "purpose": "chat",
       "start_time": 1764770000.10, "first_token_time": 1764770000.61,
       "end_time": 1764770002.40,
       "usage": {"prompt_tokens": 1830, "completion_tokens": 142,
                 "prompt_tokens_details": {"cached_tokens": 1024}}}

  ``model`` may sit in ``request`` or ``response`` instead, ``usage`` in
  ``response``; times are Unix seconds or ISO 8601 strings; instead of
  ``first_token_time`` a line may give ``ttft_s`` (seconds after the start);
  ``purpose`` (or ``metadata.purpose``) defaults to ``chat``. ``usage`` is
  required: a fit without token counts means nothing.
* ``serve-mock`` — the JSON lines ``memsim serve-mock --record`` writes: chat
  requests answered 200, start ``time``, first token ``time + ttft_s``, end
  ``time + latency_s``.
* ``otel`` — OTLP JSON (one document, or one per line as the collector's file
  exporter writes): every span with a ``gen_ai.*`` attribute is a call;
  ``gen_ai.request.model`` (or ``gen_ai.response.model``),
  ``gen_ai.usage.input_tokens``, ``gen_ai.usage.output_tokens``,
  ``gen_ai.usage.cache_read.input_tokens``, the span's start and end, time to
  first token from ``gen_ai.response.time_to_first_chunk`` or ``memsim.ttft_s``
  (seconds), purpose from ``memsim.purpose`` (else ``chat``).

Anything malformed raises :class:`~sim.config.ConfigError` naming the file, the
line (or span) and the field, on one line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sim.config import ConfigError, read_text

FORMATS = ("openai", "serve-mock", "otel")
TTFT_ATTRIBUTES = ("gen_ai.response.time_to_first_chunk", "memsim.ttft_s")


@dataclass(frozen=True, slots=True)
class Call:
    """One measured LLM call. ``first_token_s`` is ``None`` when the log lacks it."""

    model: str
    purpose: str
    tokens_in: int
    tokens_cached: int
    tokens_out: int
    start_s: float
    first_token_s: float | None
    end_s: float
    items: int | None = None
    """Facts an extraction answered, where the log says (serve-mock's records)."""

    @property
    def uncached_in(self) -> int:
        """Input tokens the model had to prefill (not read from a prompt cache)."""
        return max(self.tokens_in - self.tokens_cached, 0)

    @property
    def ttft_s(self) -> float | None:
        """Time to first token, if logged."""
        return None if self.first_token_s is None else self.first_token_s - self.start_s

    @property
    def latency_s(self) -> float:
        """Whole call: start to last token."""
        return self.end_s - self.start_s


def read_calls(path: Path, fmt: str) -> list[Call]:
    """Every call in ``path``, read as ``fmt`` (one of :data:`FORMATS`)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format: {fmt!r}: expected one of {', '.join(FORMATS)}")
    reader = {"openai": _openai, "serve-mock": _serve_mock, "otel": _otel}[fmt]
    calls = list(reader(path))
    if not calls:
        raise ConfigError(f"{path}: no LLM calls found (read as {fmt})")
    return calls


def _lines(path: Path) -> Iterator[tuple[int, Any]]:
    text = read_text(path)
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}:{number}: not JSON: {err.msg}") from None


def _number(where: str, field: str, value: Any, integer: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
    if integer and ok:
        ok = float(value).is_integer()
    if not ok:
        raise ConfigError(f"{where}: field '{field}' = {value!r}: expected a number >= 0")
    return value


def _time(where: str, field: str, value: Any) -> float:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise ConfigError(f"{where}: field '{field}' = {value!r}: not a time") from None
    return float(_number(where, field, value))


def _first(record: dict, *keys: str) -> tuple[str, Any]:
    for key in keys:
        value: Any = record
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            return key, value
    return keys[0], None


def _openai(path: Path) -> Iterator[Call]:
    for number, record in _lines(path):
        where = f"{path}:{number}"
        if not isinstance(record, dict):
            raise ConfigError(f"{where}: expected a JSON object")
        _, model = _first(record, "model", "request.model", "response.model")
        if not model:
            raise ConfigError(f"{where}: field 'model' is required")
        _, usage = _first(record, "usage", "response.usage")
        if not isinstance(usage, dict):
            raise ConfigError(f"{where}: field 'usage' is required (prompt_tokens, …)")
        tokens_in = _number(where, "usage.prompt_tokens", usage.get("prompt_tokens"), True)
        tokens_out = _number(where, "usage.completion_tokens", usage.get("completion_tokens"), True)
        details = usage.get("prompt_tokens_details") or {}
        cached = details.get("cached_tokens") or 0
        cached = _number(where, "usage.prompt_tokens_details.cached_tokens", cached, True)
        key, start = _first(record, "start_time", "started_at", "start")
        if start is None:
            raise ConfigError(f"{where}: field 'start_time' is required")
        start = _time(where, key, start)
        key, end = _first(record, "end_time", "ended_at", "end")
        if end is None:
            raise ConfigError(f"{where}: field 'end_time' is required")
        end = _time(where, key, end)
        key, first = _first(record, "first_token_time", "ttft_s")
        if first is not None:
            first = (
                start + _number(where, key, first) if key == "ttft_s" else _time(where, key, first)
            )
        _, purpose = _first(record, "purpose", "metadata.purpose")
        yield _call(
            where,
            str(model),
            str(purpose or "chat"),
            tokens_in,
            cached,
            tokens_out,
            start,
            first,
            end,
        )


def _call(
    where: str,
    model: str,
    purpose: str,
    tokens_in: float,
    cached: float,
    tokens_out: float,
    start: float,
    first: float | None,
    end: float,
) -> Call:
    if end < start or (first is not None and not start <= first <= end):
        raise ConfigError(f"{where}: times out of order (start, first token, end)")
    return Call(
        model,
        purpose,
        int(tokens_in),
        int(min(cached, tokens_in)),
        int(tokens_out),
        start,
        first,
        end,
    )


def _serve_mock(path: Path) -> Iterator[Call]:
    for number, record in _lines(path):
        where = f"{path}:{number}"
        if not isinstance(record, dict) or "endpoint" not in record:
            raise ConfigError(f"{where}: not a serve-mock record (no 'endpoint')")
        if record["endpoint"] != "/v1/chat/completions" or record.get("status", 200) != 200:
            continue
        if "ttft_s" not in record:
            raise ConfigError(f"{where}: field 'ttft_s' is missing (recorded by an older memsim)")
        start = _number(where, "time", record.get("time"))
        latency = _number(where, "latency_s", record.get("latency_s"))
        ttft = _number(where, "ttft_s", record.get("ttft_s"))
        call = _call(
            where,
            str(record.get("model", "")),
            str(record.get("purpose", "chat")),
            _number(where, "tokens_in", record.get("tokens_in"), True),
            _number(where, "tokens_cached", record.get("tokens_cached", 0), True),
            _number(where, "tokens_out", record.get("tokens_out"), True),
            start,
            start + ttft,
            start + latency,
        )
        items = record.get("items")
        yield replace(call, items=items) if isinstance(items, int) else call


def _attribute_value(value: dict) -> Any:
    for kind in ("stringValue", "doubleValue", "boolValue"):
        if kind in value:
            return value[kind]
    if "intValue" in value:
        return int(value["intValue"])
    return None


def _spans(path: Path) -> Iterator[tuple[str, dict]]:
    text = read_text(path)
    try:
        documents = [(path.name, json.loads(text))]
    except json.JSONDecodeError:
        documents = [(f"{path}:{n}", doc) for n, doc in _lines(path)]
    for where, document in documents:
        if not isinstance(document, dict) or "resourceSpans" not in document:
            raise ConfigError(f"{where}: not OTLP JSON (no 'resourceSpans')")
        for resource in document["resourceSpans"] or []:
            for scope in resource.get("scopeSpans") or []:
                for span in scope.get("spans") or []:
                    yield where, span


def _otel(path: Path) -> Iterator[Call]:
    for index, (where, span) in enumerate(_spans(path)):
        attrs = {
            a.get("key"): _attribute_value(a.get("value") or {})
            for a in span.get("attributes") or []
        }
        if not any(str(k).startswith("gen_ai.") for k in attrs):
            continue
        where = f"{path}: span {index} ({span.get('name', '?')})"
        model = attrs.get("gen_ai.request.model") or attrs.get("gen_ai.response.model")
        if not model:
            raise ConfigError(f"{where}: attribute 'gen_ai.request.model' is required")
        tokens_in = attrs.get("gen_ai.usage.input_tokens")
        tokens_out = attrs.get("gen_ai.usage.output_tokens")
        if tokens_in is None or tokens_out is None:
            raise ConfigError(
                f"{where}: attributes 'gen_ai.usage.input_tokens' and "
                "'gen_ai.usage.output_tokens' are required"
            )
        cached = attrs.get("gen_ai.usage.cache_read.input_tokens") or 0
        try:
            start = int(span["startTimeUnixNano"]) / 1e9
            end = int(span["endTimeUnixNano"]) / 1e9
        except (KeyError, TypeError, ValueError):
            raise ConfigError(
                f"{where}: 'startTimeUnixNano' and 'endTimeUnixNano' are required"
            ) from None
        ttft = next((attrs[k] for k in TTFT_ATTRIBUTES if attrs.get(k) is not None), None)
        first = None if ttft is None else start + _number(where, "time to first token", ttft)
        yield _call(
            where,
            str(model),
            str(attrs.get("memsim.purpose") or "chat"),
            _number(where, "gen_ai.usage.input_tokens", tokens_in, True),
            _number(where, "gen_ai.usage.cache_read.input_tokens", cached, True),
            _number(where, "gen_ai.usage.output_tokens", tokens_out, True),
            start,
            first,
            end,
        )
