"""``keyword-memory``: an out-of-tree memsim strategy, and a template for yours.

It spends no LLM call on memory: a user message that talks about the user
("I …", "my …", "we …") is stored verbatim as a memory, once (exact dedup), and
the memories sharing the most words with the new message are injected, within a
token budget. Cheap, and blind to paraphrase; memsim measures how blind.

It imports from :mod:`strategies.api` only: the one module a strategy needs.
Use it by path, ``--strategy keyword_memory:KeywordMemory``, or, installed
(``pip install -e examples/keyword_memory``), by name through the
``memsim.strategies`` entry point: ``--strategy keyword-memory``.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field

from strategies.api import (
    Factoid,
    Message,
    Prompt,
    SessionHistories,
    Strategy,
    StrategyConfig,
    TurnContext,
    fill_budget,
    memory_room,
    normalized_hash,
)

SELF_TALK = re.compile(r"\b(I|I'm|I've|my|me|we|our|us)\b", re.IGNORECASE)
WORD = re.compile(r"[a-z0-9']+")


class KeywordMemoryConfig(StrategyConfig):
    """Its two knobs."""

    budget_tokens: Annotated[int, Field(ge=0)] = 400
    max_memories_per_user: Annotated[int, Field(ge=1)] = 200


class KeywordMemory(Strategy):
    """Store self-descriptions verbatim; inject those sharing most words with the message."""

    name = "keyword-memory"
    Config = KeywordMemoryConfig
    config: KeywordMemoryConfig

    def __init__(self, config: KeywordMemoryConfig | None = None) -> None:
        super().__init__(config)
        self._sessions = SessionHistories()
        self._seen: dict[int, set[str]] = {}

    def build_prompt(self, ctx: TurnContext, msg: Message) -> Prompt:
        """This session's messages plus the best-overlapping memories within budget."""
        history = self._sessions.of(ctx.user, msg.session)
        words = set(WORD.findall(msg.text.lower()))
        ranked = sorted(
            ctx.store.memories() if ctx.store.count() else [],
            key=lambda m: (-len(words & set(WORD.findall(m.text.lower()))), -m.created_at),
        )
        chosen = fill_budget(ranked, memory_room(ctx.tokens, self.config.budget_tokens))
        for memory in chosen:
            memory.hit(ctx.now)
        return history.prompt(msg, chosen)

    def after_turn(self, ctx: TurnContext, msg: Message, reply: Message | None) -> None:
        """Remember the message if it is about the user and new."""
        history = self._sessions.of(ctx.user, msg.session)
        history.exchange(ctx.tokens, msg, reply)
        seen = self._seen.setdefault(ctx.user, set())
        digest = normalized_hash(msg.text)
        if not SELF_TALK.search(msg.text) or digest in seen:
            return
        if ctx.store.count() >= self.config.max_memories_per_user:
            return
        seen.add(digest)
        memory = ctx.new_memory(Factoid(msg.text, 5, "other"))
        ctx.store.add([memory], ctx.embedder.embed([msg.text]))
