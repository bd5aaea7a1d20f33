"""Real conversation traces replayed as a workload: LoCoMo, chat logs in JSONL, OTel.

It is long because it reads three real formats (LoCoMo, chat logs, OpenTelemetry
exports) and validates them line by line.

A trace loads into the same :class:`~sim.workload.Workload` of users, sessions and
:class:`~sim.workload.Message` objects the synthetic generator makes, so every
strategy and the engine run on it unchanged. Trace messages have the kind
:data:`~sim.workload.TRACE_KIND`; each session lists, beside its user messages,
the assistant's replies the trace recorded (``Session.replies``), and the mock
LLM answers with those instead of generated text: real text, real token counts.

**LoCoMo** (Maharana et al., ACL 2024; ``locomo10.json``, CC BY-NC 4.0: read from
the path you give, never shipped). One conversation is one user.

* Turns are paired in order within a session: the first turn of each pair is the
  user's message, the second its reply. The person who opens a session plays
  the user in it (124 of the 272 sessions of ``locomo10.json`` open with
  ``speaker_b``); a session's odd last turn is a message the mock LLM answers
  with generated text. An image a turn shares adds `` [shared an image: <BLIP
  caption>]`` to its text.
* Times: each conversation's clock starts at midnight of its first session's
  day; a session starts at its ``session_N_date_time`` ("1:56 pm on 8 May,
  2023"); turns within a session are ``think_time_s_mean`` seconds apart
  (``[workload]``, 25 s by default): LoCoMo has no turn times.
* Ground truth: every turn a selected question cites as ``evidence`` states one
  fact, slot ``locomo:<dia_id>`` (e.g. ``locomo:D1:3``), version 0, whose value
  (the memory an extractor makes of it) is ``<speaker>: <text>``, cut to
  :data:`~sim.heuristic.MAX_WORDS` words. Extraction returns it with the
  scenario's miss and rewording rates; other turns go through
  :mod:`sim.heuristic`.
* Probes: LoCoMo asks its questions after the conversation, so do we, from a day
  after the last session starts, in file order (answered with the annotated
  answer as the scripted reply, where there is one). With ``[trace]
  question_context = "fresh"`` (the default, as published evaluations do) each
  question is a session of its own, ``think_time_s_mean`` apart, that the
  strategy answers but does not remember; with ``"session"`` they are one final
  session, each remembered as any message is. A question is recalled when the
  facts of *all* its evidence turns are in the prompt (329 questions of
  ``locomo10.json`` cite turns of several sessions: answering them needs every
  one).
* Questions of the categories not selected (``[trace] categories``; 5,
  adversarial, is off by default) are skipped, as are those with no evidence,
  with an evidence string holding no ``D<session>:<turn>`` reference (``"D"``,
  ``"D:11:26"``), or citing a turn the conversation does not have. A string
  holding several references (``"D8:6; D9:17"``) counts as all of them.
  :class:`TraceInfo` counts each; the run's ``config.json`` and report show them.

**JSONL** (OpenAI-style chat logs): one JSON object per line with ``user_id`` and
``session_id`` (strings, or integers), ``timestamp`` (ISO 8601, e.g.
``2024-05-01T09:30:00Z``, without a zone meaning UTC; or epoch seconds, a number),
``role`` (``user``, ``assistant`` or ``system``) and ``content`` (a string).
Blank lines are skipped; other fields are ignored.

* Users in order of first appearance, each user's sessions by their first
  timestamp, a session's lines by timestamp (ties in file order).
* A ``user`` line is a user message; the ``assistant`` lines after it (joined by a
  line break) are its scripted reply; a user message with none gets a generated
  reply. ``system`` lines, and assistant lines before a session's first user
  line, are not replayed (counted in :class:`TraceInfo`).
* Times: one clock for all users, starting at midnight (UTC) of the earliest
  line's day; a session starts at its first user line, and each later user
  message follows the previous one after the gap between their timestamps.
* No ground truth, so no probes: recall is unavailable, and reports say so.

**OTel** (an OTLP/JSON trace export, ``ExportTraceServiceRequest``: what an
OpenTelemetry collector's file exporter or ``memsim run --otel FILE --otel-content``
writes). The conversations come from GenAI spans that carry message content, the
opt-in ``gen_ai.input.messages`` / ``gen_ai.output.messages`` attributes of the
GenAI semantic conventions (JSON lists of ``{"role", "parts": [{"type": "text",
"content"}]}``). Each such span is one turn: its user message is the text of the
last ``user`` message of ``gen_ai.input.messages`` (at the span's start), its
scripted reply the text of the last ``assistant`` message of
``gen_ai.output.messages`` (at the span's end). The user and the session are the
span's attributes ``[trace] user_attribute`` and ``session_attribute`` (default
``user.id`` and ``session.id``; the resource's attributes count as the span's),
and from there the messages are grouped, ordered and timed as JSONL lines are.

* Spans without ``gen_ai.operation.name`` (turns, HTTP, database spans) and GenAI
  spans without ``gen_ai.input.messages`` (memory-work calls, embeddings) are
  skipped and counted in :class:`TraceInfo`, as is a session a later resource
  repeats: it is read from the first resource that holds it (``memsim run
  --otel`` writes one resource per strategy, each with the same conversations).
* A model call's span (``chat``, ``text_completion``, ``generate_content``,
  ``embeddings``) without ``gen_ai.request.model``, a content span without the
  user or session attribute, messages that are not a JSON list of objects, and
  a file that is not OTLP/JSON stop the run with one line naming the span.

The scenario's ``users`` and ``days`` are replaced by the trace's (see
:func:`bind_trace`). A file that cannot be read or has the wrong shape stops the
run with a :class:`~sim.config.ConfigError` naming the file (and line), the
field and the value.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sim.config import ConfigError, Scenario, TraceConfig
from sim.heuristic import MAX_WORDS
from sim.tokens import TokenCounter
from sim.workload import (
    SECONDS_PER_DAY,
    TRACE_KIND,
    Fact,
    Message,
    Session,
    TextCatalog,
    UserScript,
    Workload,
)

LOCOMO_DATE_FORMAT = "%I:%M %p on %d %B, %Y"
"""``session_N_date_time`` as LoCoMo writes it: ``1:56 pm on 8 May, 2023``."""
LOCOMO_SLOT = "locomo:"
"""Prefix of the slot of an evidence turn's fact: ``locomo:D1:3``."""
PROBE_SESSION_DELAY_S = SECONDS_PER_DAY
"""The questions are asked this long after the start of the conversation's last session."""
JSONL_ROLES = ("user", "assistant", "system")
_EVIDENCE_REF = re.compile(r"D(\d+):(\d+)")
_SESSION_KEY = re.compile(r"session_(\d+)")


@dataclass(slots=True)
class TraceTurn:
    """One user message of a trace and the reply it recorded (text only, no tokens yet)."""

    text: str
    gap_s: float
    reply: str | None = None
    facts: tuple[Fact, ...] = ()
    reply_facts: tuple[Fact, ...] = ()
    probe: tuple | None = None


@dataclass(slots=True)
class TraceSession:
    """One session of a trace: its start (simulated seconds) and its turns.

    ``remember``: ``False`` for a benchmark question asked in a fresh context.
    """

    start_s: float
    turns: list[TraceTurn]
    remember: bool = True


@dataclass(slots=True)
class TraceUser:
    """One user (a LoCoMo conversation, a ``user_id`` of a log) and their sessions."""

    user_id: str
    sessions: list[TraceSession]


@dataclass(slots=True)
class TraceInfo:
    """What a trace held and what was left out; saved in ``config.json`` (``resolved.trace``).

    ``sessions`` and ``turns`` count what is replayed, LoCoMo's final session of
    questions and its ``probes`` included; ``questions`` counts LoCoMo's QA items,
    and ``skipped``, by reason, those not asked; ``ignored`` counts JSONL lines
    not replayed (``system`` lines, assistant lines before a session's first
    user line).
    """

    format: str
    sha256: str
    users: int
    sessions: int
    turns: int
    probes: int
    days: int
    questions: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    ignored: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, keys in a fixed order."""
        return {
            "format": self.format,
            "sha256": self.sha256,
            "users": self.users,
            "sessions": self.sessions,
            "turns": self.turns,
            "probes": self.probes,
            "days": self.days,
            "questions": self.questions,
            "skipped": dict(sorted(self.skipped.items())),
            "ignored": dict(sorted(self.ignored.items())),
        }


@dataclass(slots=True)
class Trace:
    """A loaded trace: its users and what it held."""

    users: list[TraceUser]
    info: TraceInfo


# -- entry points ---------------------------------------------------------------
def read_trace(cfg: TraceConfig, think_time_s: float = 25.0) -> Trace:
    """Load the trace ``cfg`` names (``think_time_s``: the gap between LoCoMo turns)."""
    path = Path(cfg.path)
    data = _read_bytes(path)
    digest = hashlib.sha256(data).hexdigest()
    if cfg.format == "locomo":
        users, questions, skipped = load_locomo(
            path,
            cfg.categories,
            think_time_s,
            data,
            cfg.max_users,
            cfg.max_sessions,
            cfg.question_context,
        )
        ignored: dict[str, int] = {}
    else:
        if cfg.format == "otel":
            users, ignored = load_otel(path, data, cfg.user_attribute, cfg.session_attribute)
        else:
            users, ignored = load_jsonl(path, data)
        users = [
            TraceUser(u.user_id, u.sessions[: cfg.max_sessions]) for u in users[: cfg.max_users]
        ]
        questions, skipped = 0, {}
    info = TraceInfo(
        cfg.format,
        digest,
        len(users),
        sum(len(u.sessions) for u in users),
        sum(len(s.turns) for u in users for s in u.sessions),
        sum(t.probe is not None for u in users for s in u.sessions for t in s.turns),
        _days(users),
        questions,
        skipped,
        ignored,
    )
    if not users:
        raise ConfigError(f"{path}: the trace holds no user message")
    return Trace(users, info)


def bind_trace(scenario: Scenario, source: str = "<scenario>") -> tuple[Scenario, TraceInfo | None]:
    """The scenario with ``users`` and ``days`` taken from its trace, and the trace's info.

    Without a trace the scenario is returned unchanged with ``None``.
    """
    if scenario.trace is None:
        return scenario, None
    info = read_trace(scenario.trace, scenario.workload.think_time_s_mean).info
    if info.days > 3650:
        raise ConfigError(
            f"{source}: field 'trace.path' = {json.dumps(scenario.trace.path)}: "
            f"the trace spans {info.days} days, more than 3650"
        )
    bound = scenario.model_copy(update={"users": info.users, "days": info.days})
    return bound, info


def trace_workload(trace: Trace, tokens: TokenCounter, users: range | None = None) -> Workload:
    """The :class:`~sim.workload.Workload` of ``trace`` (its ``users`` only, by index)."""
    indices = users if users is not None else range(len(trace.users))
    scripts = [_script(i, trace.users[i], tokens) for i in indices]
    return Workload(scripts, trace.info.days, TextCatalog())


def _script(index: int, user: TraceUser, tokens: TokenCounter) -> UserScript:
    sessions = []
    for s, session in enumerate(user.sessions):
        messages, replies = [], []
        for t, turn in enumerate(session.turns):
            kind = "probe" if turn.probe is not None else TRACE_KIND
            msg = Message("user", turn.text, tokens.count(turn.text), kind, turn.facts)
            msg.probe, msg.gap_s = turn.probe, turn.gap_s
            msg.user, msg.session, msg.turn = index, s, t
            messages.append(msg)
            reply = None
            if turn.reply is not None:
                reply = Message(
                    "assistant", turn.reply, tokens.count(turn.reply), TRACE_KIND, turn.reply_facts
                )
                reply.user, reply.session, reply.turn = index, s, t
            replies.append(reply)
        sessions.append(Session(session.start_s, messages, replies, session.remember))
    return UserScript(index, user.user_id, sessions)


def _days(users: list[TraceUser]) -> int:
    """Simulated days the trace needs: up to the day of its last message, plus one."""
    last = 0.0
    for user in users:
        for session in user.sessions:
            last = max(last, session.start_s + sum(t.gap_s for t in session.turns))
    return max(1, math.floor(last / SECONDS_PER_DAY) + 1)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such trace file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: a folder, not a trace file") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror or err}") from None


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    if not _is_unicode(text):  # a lone surrogate cannot be printed: escape it
        text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _valid_text(where: str, name: str, value: str) -> str:
    """``value`` if it is valid Unicode, else a one-line error.

    A JSON escape such as a lone high surrogate makes a string no tokenizer or file
    accepts.
    """
    if not _is_unicode(value):
        raise _bad(where, name, value, "not valid Unicode (a lone surrogate)")
    return value


def _bad(where: str, name: str, value: Any, problem: str) -> ConfigError:
    """One line naming the file (and line), the field, the value and the problem."""
    return ConfigError(f"{where}: field '{name}' = {_shown(value)}: {problem}")


# -- LoCoMo ---------------------------------------------------------------------
def load_locomo(
    path: Path,
    categories: Iterable[int] = (1, 2, 3, 4),
    think_time_s: float = 25.0,
    data: bytes | None = None,
    max_users: int | None = None,
    max_sessions: int | None = None,
    question_context: str = "fresh",
) -> tuple[list[TraceUser], int, dict[str, int]]:
    """The conversations of a LoCoMo file as users, the number of questions, the skips.

    See the module docstring for the mapping. ``data``: the file's bytes, if read;
    ``max_users``: only the first conversations; ``max_sessions``: only the first
    sessions of each (questions citing a later one are skipped); ``question_context``:
    ``fresh`` or ``session`` (see :class:`~sim.config.TraceConfig`).
    """
    try:
        records = json.loads(data if data is not None else _read_bytes(path))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: not JSON: {err}") from None
    if not isinstance(records, list) or not records:
        raise ConfigError(f"{path}: expected a list of LoCoMo conversations, got {_shown(records)}")
    wanted = set(categories)
    users, questions, skipped = [], 0, {}
    for i, record in enumerate(records[:max_users]):
        where = f"[{i}]"
        if not isinstance(record, dict):
            raise _bad(str(path), where, record, "expected a conversation object")
        user, asked = _locomo_user(
            path, where, record, (wanted, max_sessions, question_context), think_time_s, skipped
        )
        users.append(user)
        questions += asked
    return users, questions, skipped


def _field(path: Path, where: str, obj: dict, key: str, kind: type | tuple) -> Any:
    if key not in obj:
        raise ConfigError(f"{path}: field '{where}.{key}' is missing")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise _bad(str(path), f"{where}.{key}", value, f"expected {names}")
    return value


def _locomo_user(
    path: Path,
    where: str,
    record: dict,
    selection: tuple[set[int], int | None, str],
    think_time_s: float,
    skipped: dict[str, int],
) -> tuple[TraceUser, int]:
    """One conversation as a user; returns it and its number of questions.

    ``selection``: the QA categories asked, the number of sessions replayed, and the
    questions' context (``fresh``: a session each, not remembered; ``session``: one).
    """
    categories, max_sessions, question_context = selection
    sample_id = _field(path, where, record, "sample_id", str)
    conv = _field(path, where, record, "conversation", dict)
    cwhere = f"{where}.conversation"
    numbers = sorted(int(m.group(1)) for k in conv if (m := _SESSION_KEY.fullmatch(k)))
    if not numbers:
        raise ConfigError(f"{path}: field '{cwhere}' has no session_N list")
    raw_sessions, starts, origin = [], [], None
    for n in numbers:
        turns = _field(path, cwhere, conv, f"session_{n}", list)
        stamp = _field(path, cwhere, conv, f"session_{n}_date_time", str)
        try:
            moment = datetime.strptime(stamp, LOCOMO_DATE_FORMAT)
        except ValueError:
            raise _bad(
                str(path),
                f"{cwhere}.session_{n}_date_time",
                stamp,
                "expected '1:56 pm on 8 May, 2023'",
            ) from None
        if origin is None:
            origin = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        starts.append((moment - origin).total_seconds())
        raw_sessions.append(
            [_locomo_turn(path, f"{cwhere}.session_{n}[{j}]", t) for j, t in enumerate(turns)]
        )
    by_id = {turn["dia_id"]: turn for session in raw_sessions for turn in session}
    raw_sessions, starts = raw_sessions[:max_sessions], starts[:max_sessions]
    replayed = {turn["dia_id"] for session in raw_sessions for turn in session}
    probes, asked = _locomo_questions(path, where, record, categories, (by_id, replayed), skipped)
    sessions = [
        TraceSession(start, _pair(turns, think_time_s))
        for start, turns in zip(starts, raw_sessions, strict=True)
        if turns
    ]
    if probes:
        first = max(starts) + PROBE_SESSION_DELAY_S
        if question_context == "fresh":  # one question a session, think time apart
            sessions += [
                TraceSession(
                    first + k * think_time_s, [TraceTurn(text, 0.0, reply, probe=needed)], False
                )
                for k, (text, reply, needed) in enumerate(probes)
            ]
        else:
            questions = [
                TraceTurn(text, think_time_s if k else 0.0, reply, probe=needed)
                for k, (text, reply, needed) in enumerate(probes)
            ]
            sessions.append(TraceSession(first, questions))
    return TraceUser(sample_id, sessions), asked


def _locomo_turn(path: Path, where: str, turn: Any) -> dict:
    """A turn checked and reduced to ``speaker``, ``dia_id``, ``text`` and its fact."""
    if not isinstance(turn, dict):
        raise _bad(str(path), where, turn, "expected a turn object")
    speaker = _field(path, where, turn, "speaker", str)
    dia_id = _field(path, where, turn, "dia_id", str)
    text = _valid_text(str(path), f"{where}.text", _field(path, where, turn, "text", str))
    _valid_text(str(path), f"{where}.speaker", speaker)
    caption = turn.get("blip_caption")
    if isinstance(caption, str) and caption:
        _valid_text(str(path), f"{where}.blip_caption", caption)
        text = f"{text} [shared an image: {caption}]"
    words = " ".join(f"{speaker}: {text}".split()).split(" ")
    fact = Fact(LOCOMO_SLOT + dia_id, 0, " ".join(words[:MAX_WORDS]))
    return {"speaker": speaker, "dia_id": dia_id, "text": text, "fact": fact, "evidence": False}


def _locomo_questions(
    path: Path,
    where: str,
    record: dict,
    categories: set[int],
    turns: tuple[dict[str, dict], set[str]],
    skipped: dict[str, int],
) -> tuple[list[tuple[str, str | None, tuple]], int]:
    """The selected, usable questions as ``(text, answer, needed facts)``; marks evidence.

    ``turns``: every turn of the conversation by ``dia_id``, and the ids replayed.
    """
    by_id, replayed = turns
    qa = _field(path, where, record, "qa", list)
    probes = []
    for k, item in enumerate(qa):
        qwhere = f"{where}.qa[{k}]"
        if not isinstance(item, dict):
            raise _bad(str(path), qwhere, item, "expected a question object")
        question = _field(path, qwhere, item, "question", str)
        category = _field(path, qwhere, item, "category", int)
        evidence = _field(path, qwhere, item, "evidence", list)
        reason, needed = _evidence(evidence, by_id, replayed)
        if category not in categories:
            reason = f"category {category} not selected"
        if reason:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        for dia_id in needed:
            by_id[dia_id]["evidence"] = True
        facts = tuple((LOCOMO_SLOT + d, 0) for d in needed)
        answer = item.get("answer")
        reply = str(answer) if isinstance(answer, str | int | float) and str(answer) else None
        probes.append((question, reply, facts[0] if len(facts) == 1 else facts))
    return probes, len(qa)


def _evidence(evidence: list, by_id: dict[str, dict], replayed: set[str]) -> tuple[str, list[str]]:
    """``(reason to skip, [])`` or ``("", the dia_ids cited, in order, without repeats)``."""
    if not evidence:
        return "no evidence", []
    cited: list[str] = []
    for entry in evidence:
        refs = _EVIDENCE_REF.findall(entry) if isinstance(entry, str) else []
        if not refs:
            return "malformed evidence", []
        cited += [f"D{s}:{t}" for s, t in refs]
    if any(dia_id not in by_id for dia_id in cited):
        return "evidence names no turn", []
    if any(dia_id not in replayed for dia_id in cited):
        return "evidence in a session not replayed", []
    return "", list(dict.fromkeys(cited))


def _pair(turns: list[dict], think_time_s: float) -> list[TraceTurn]:
    """A session's turns paired in order: (message, reply), …; facts on evidence turns."""
    out = []
    for k in range(0, len(turns), 2):
        said = turns[k]
        answer = turns[k + 1] if k + 1 < len(turns) else None
        out.append(
            TraceTurn(
                said["text"],
                think_time_s if k else 0.0,
                answer["text"] if answer else None,
                (said["fact"],) if said["evidence"] else (),
                (answer["fact"],) if answer and answer["evidence"] else (),
            )
        )
    return out


# -- JSONL ------------------------------------------------------------------------
_JSONL_FIELDS = ("user_id", "session_id", "timestamp", "role", "content")


def load_jsonl(path: Path, data: bytes | None = None) -> tuple[list[TraceUser], dict[str, int]]:
    """The users of a JSONL chat log and the count of lines not replayed, by reason.

    See the module docstring for the format. ``data``: the file's bytes, if read.
    """
    raw = data if data is not None else _read_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text: {err}") from None
    lines: list[tuple[str, str, float, str, str, int]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            lines.append(_jsonl_line(f"{path}:{number}", line, number))
    if not lines:
        raise ConfigError(f"{path}: the trace holds no line")
    return _chat_users(lines)


def _chat_users(lines: list[tuple[str, str, float, str, str, int]]) -> tuple[list[TraceUser], dict]:
    """Chat lines ``(user_id, session_id, epoch s, role, content, order)`` as users.

    Users in order of first appearance, sessions by first timestamp, lines by
    timestamp (ties by ``order``); see the module docstring (JSONL).
    """
    origin = min(line[2] for line in lines)
    origin -= origin % SECONDS_PER_DAY  # midnight (UTC) of the earliest line's day
    grouped: dict[str, dict[str, list]] = {}
    for line in lines:
        grouped.setdefault(line[0], {}).setdefault(line[1], []).append(line)
    ignored: dict[str, int] = {}
    users = []
    for user_id, by_session in grouped.items():
        sessions = []
        for rows in by_session.values():
            rows.sort(key=lambda r: (r[2], r[5]))
            session = _jsonl_session(rows, origin, ignored)
            if session is not None:
                sessions.append(session)
        sessions.sort(key=lambda s: s.start_s)
        if sessions:
            users.append(TraceUser(user_id, sessions))
    return users, ignored


def _jsonl_line(where: str, line: str, number: int) -> tuple[str, str, float, str, str, int]:
    """One checked line as ``(user_id, session_id, epoch seconds, role, content, number)``."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{where}: not a JSON object: {err.msg}") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: not a JSON object: {_shown(obj)}")
    for key in _JSONL_FIELDS:
        if key not in obj:
            raise ConfigError(f"{where}: field '{key}' is missing")
    ids = []
    for key in ("user_id", "session_id"):
        value = obj[key]
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            raise _bad(where, key, value, "expected a non-empty string or an integer")
        ids.append(str(value))
    role, content = obj["role"], obj["content"]
    if role not in JSONL_ROLES:
        raise _bad(where, "role", role, "expected user, assistant or system")
    if not isinstance(content, str):
        raise _bad(where, "content", content, "expected a string")
    _valid_text(where, "content", content)
    for key, value in zip(("user_id", "session_id"), ids, strict=True):
        _valid_text(where, key, value)
    return ids[0], ids[1], _epoch(where, obj["timestamp"]), role, content, number


def _epoch(where: str, stamp: Any) -> float:
    """Seconds since the epoch of an ISO 8601 string (UTC when zoneless) or of a number."""
    if isinstance(stamp, int | float) and not isinstance(stamp, bool) and math.isfinite(stamp):
        return float(stamp)
    if isinstance(stamp, str):
        try:
            moment = datetime.fromisoformat(stamp)
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return moment.timestamp()
    raise _bad(where, "timestamp", stamp, "expected ISO 8601 or epoch seconds")


def _jsonl_session(rows: list, origin: float, ignored: dict[str, int]) -> TraceSession | None:
    """One session's sorted lines as turns; ``None`` when it has no user line."""
    turns: list[TraceTurn] = []
    replies: list[list[str]] = []
    start = previous = None
    for _, _, stamp, role, content, _ in rows:
        if role == "system":
            ignored["system line"] = ignored.get("system line", 0) + 1
        elif role == "assistant":
            if not turns:
                ignored["assistant line before any user line"] = (
                    ignored.get("assistant line before any user line", 0) + 1
                )
            else:
                replies[-1].append(content)
        else:
            if start is None:
                start = previous = stamp
            turns.append(TraceTurn(content, stamp - previous))
            replies.append([])
            previous = stamp
    if start is None:
        return None
    for turn, parts in zip(turns, replies, strict=True):
        turn.reply = "\n".join(parts) if parts else None
    return TraceSession(start - origin, turns)


# -- OTel ---------------------------------------------------------------------------
OTEL_MODEL_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})
"""``gen_ai.operation.name`` values of model calls: their spans must name the model."""


def load_otel(
    path: Path,
    data: bytes | None = None,
    user_attribute: str = "user.id",
    session_attribute: str = "session.id",
) -> tuple[list[TraceUser], dict[str, int]]:
    """The users of an OTLP/JSON trace export and the count of spans not replayed, by reason.

    See the module docstring for the mapping. ``data``: the file's bytes, if read.
    """
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    raw = data if data is not None else _read_bytes(path)
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: not OTLP/JSON: not JSON: {err}") from None
    if not isinstance(document, dict) or not isinstance(document.get("resourceSpans"), list):
        raise ConfigError(f"{path}: not OTLP/JSON: expected an object with a resourceSpans list")
    try:
        request = json_format.ParseDict(document, ExportTraceServiceRequest())
    except json_format.ParseError as err:
        problem = " ".join(str(err).split())
        raise ConfigError(f"{path}: not OTLP/JSON: {problem}") from None
    lines: list[tuple[str, str, float, str, str, int]] = []
    ignored: dict[str, int] = {}
    ids = (user_attribute, session_attribute)
    owners: dict[tuple[str, str], int] = {}  # (user, session) → the resource read for it
    for i, resource_spans in enumerate(request.resource_spans):
        resource = _otel_attributes(resource_spans.resource.attributes)
        for j, scope_spans in enumerate(resource_spans.scope_spans):
            for k, span in enumerate(scope_spans.spans):
                where = f"{path}: resourceSpans[{i}].scopeSpans[{j}].spans[{k}]"
                attrs = resource | _otel_attributes(span.attributes)
                reason = _otel_span(where, span, attrs, ids, (lines, owners, i))
                if reason:
                    ignored[reason] = ignored.get(reason, 0) + 1
    if not lines:
        raise ConfigError(f"{path}: no GenAI span carries gen_ai.input.messages")
    users, skipped = _chat_users(lines)
    return users, ignored | skipped


def _otel_attributes(attributes: Iterable[Any]) -> dict[str, Any]:
    """OTLP ``KeyValue`` messages as a dict of plain values (arrays and maps left out)."""
    values = {}
    for kv in attributes:
        kind = kv.value.WhichOneof("value")
        if kind in ("string_value", "int_value", "bool_value", "double_value"):
            values[kv.key] = getattr(kv.value, kind)
    return values


def _otel_span(
    where: str,
    span: Any,
    attrs: dict[str, Any],
    ids: tuple[str, str],
    into: tuple[list[tuple[str, str, float, str, str, int]], dict[tuple[str, str], int], int],
) -> str:
    """Add a GenAI span's user message and reply to ``lines``; else why it is not replayed.

    ``into``: the lines, the resource each (user, session) was first read from, and
    the index of this span's resource: a session another resource holds is not read.
    """
    lines, owners, resource = into
    operation = attrs.get("gen_ai.operation.name")
    if operation is None:
        return "span without gen_ai.operation.name"
    if operation in OTEL_MODEL_OPERATIONS and not attrs.get("gen_ai.request.model"):
        raise ConfigError(f"{where}: field 'attributes.gen_ai.request.model' is missing")
    if "gen_ai.input.messages" not in attrs:
        return "GenAI span without gen_ai.input.messages"
    said = _otel_text(where, "gen_ai.input.messages", attrs["gen_ai.input.messages"], "user")
    if said is None:
        return "GenAI span without a user message"
    owner = []
    for name in ids:
        value = attrs.get(name)
        if value is None or isinstance(value, bool) or value == "":
            raise ConfigError(f"{where}: field 'attributes.{name}' is missing")
        owner.append(_valid_text(where, f"attributes.{name}", str(value)))
    if owners.setdefault((owner[0], owner[1]), resource) != resource:
        return "session already read from an earlier resource"
    order = 2 * len(lines)
    lines.append((*owner, span.start_time_unix_nano / 1e9, "user", said, order))
    if "gen_ai.output.messages" in attrs:
        reply = _otel_text(where, "gen_ai.output.messages", attrs["gen_ai.output.messages"])
        if reply is not None:
            lines.append((*owner, span.end_time_unix_nano / 1e9, "assistant", reply, order + 1))
    return ""


def _otel_text(where: str, name: str, value: Any, role: str = "assistant") -> str | None:
    """The text parts of the last ``role`` message of a GenAI messages attribute (JSON)."""
    field_name = f"attributes.{name}"
    try:
        messages = json.loads(value) if isinstance(value, str) else None
    except json.JSONDecodeError:
        messages = None
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise _bad(where, field_name, value, "expected a JSON list of message objects")
    said = [m for m in messages if m.get("role") == role]
    if not said:
        return None
    parts = said[-1].get("parts")
    if not isinstance(parts, list):
        raise _bad(where, field_name, value, f"the {role} message has no parts list")
    texts = [
        p["content"]
        for p in parts
        if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("content"), str)
    ]
    if not texts:
        return None
    return _valid_text(where, field_name, "\n".join(texts))
