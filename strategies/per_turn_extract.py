"""``per-turn-extract``: extract after every user message, store everything, inject all.

The design behind the classic token-leak incident: no deduplication and no
budget, so every restatement becomes another memory and every memory is sent
with every request.

Defaults: ``inject_format = "lines"`` (one ``- text`` line per memory, as every
other strategy injects). ``"records"`` injects each memory as the JSON record a
memory API returns for it (id, text, category, importance, creation time), as
bots that paste their memory layer's search results into the prompt do: a line of about 9 tokens
becomes a record of about 58 (means on support-bot).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from strategies.api import (
    CallFailed,
    ExtractionConfig,
    Memory,
    Message,
    Prompt,
    SessionHistories,
    Strategy,
    TokenCounter,
    TurnContext,
    hit_all,
    register,
)

RECORD_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
"""Simulated time 0 as the ``created_at`` of injected memory records."""


class PerTurnExtractConfig(ExtractionConfig):
    """Settings of ``per-turn-extract``."""

    inject_format: Literal["lines", "records"] = "lines"
    """How each memory is written into the prompt: ``lines`` (``- text``) or
    ``records`` (``- {"id": …, "memory": text, "category": …, "importance": …,
    "created_at": …}``, the memory API's JSON record)."""


@dataclass(slots=True)
class MemoryRecord:
    """A memory injected as its JSON record; ground truth passes through."""

    text: str
    line_tokens: int
    facts: tuple[tuple[str, int], ...]
    owner: int


def memory_record(tokens: TokenCounter, memory: Memory) -> MemoryRecord:
    """``memory`` as the JSON record a memory API returns for it, and its line's tokens."""
    created = RECORD_EPOCH + timedelta(seconds=round(memory.created_at))
    text = json.dumps(
        {
            "id": f"mem-{memory.owner}-{memory.id}",
            "memory": memory.text,
            "category": memory.category,
            "importance": memory.importance,
            "created_at": created.isoformat(timespec="seconds"),
        }
    )
    return MemoryRecord(text, tokens.count(f"- {text}\n"), memory.facts, memory.owner)


@register
class PerTurnExtract(Strategy):
    """One extraction call per user message; all stored memories in every prompt."""

    name = "per-turn-extract"
    Config = PerTurnExtractConfig

    def __init__(self, config: PerTurnExtractConfig | None = None) -> None:
        super().__init__(config)
        self._sessions = SessionHistories()
        self._records: dict[tuple[int, int], MemoryRecord] = {}  # by (user, memory id)

    def build_prompt(self, ctx: TurnContext, msg: Message) -> Prompt:
        """System prompt + every stored memory + this session's messages + the new one."""
        history = self._sessions.of(ctx.user, msg.session)
        memories = ctx.store.memories() if ctx.store.count() else []
        hit_all(memories, ctx.now)
        if self.config.inject_format == "records":
            memories = [self._record(ctx, m) for m in memories]
        return history.prompt(msg, memories, self.config.memory_position)

    def _record(self, ctx: TurnContext, memory: Memory) -> MemoryRecord:
        """The memory's record, rendered and counted once (memory ids are per user)."""
        key = (ctx.user, memory.id)
        record = self._records.get(key)
        if record is None:
            record = self._records[key] = memory_record(ctx.tokens, memory)
        return record

    def after_turn(self, ctx: TurnContext, msg: Message, reply: Message | None) -> None:
        """Extract facts from the user's message and store every one of them."""
        history = self._sessions.of(ctx.user, msg.session)
        history.exchange(ctx.tokens, msg, reply)
        try:
            factoids = self.extract(ctx, [msg])
            if factoids:
                vectors = ctx.embedder.embed([f.content for f in factoids])
                ctx.store.add([ctx.new_memory(f) for f in factoids], vectors)
        except CallFailed:  # the per-message write path: log and drop, never block the chat
            return
