"""``mem0-like`` and ``mem0-like-add-only``: Mem0's memory pipeline, and its add-only variant.

``mem0-like`` (classic) follows the Mem0 paper (Chhikara et al., "Mem0: Building
Production-Ready AI Agents with Scalable Long-Term Memory", arXiv 2504.19413, §2.1)
and Mem0 OSS (``mem0/memory/main.py``, ``Memory.add`` with ``infer=True``):

1. **Extraction.** Messages are buffered the way an application calls
   ``memory.add(messages)``; every ``add_every_turns`` turns the buffered exchanges
   go to one extraction call, billed with a Mem0-like fact-extraction system
   prompt of about 1,000 tokens (``MEM0_EXTRACT_SYSTEM_PROMPT``).
2. **Update, per fact.** Each extracted fact is embedded (one embedding call), the
   user's ``update_candidates`` most similar memories are fetched, and one update
   call (``MEM0_UPDATE_PROMPT``, about 1,700 tokens, plus the candidates) answers
   ADD, UPDATE, DELETE or NONE. ADD stores the fact; UPDATE replaces the old
   memory's text in place (same id, importance and creation time, the fact's
   vector); DELETE removes a memory; NONE changes nothing. The fact's embedding is
   reused for ADD and UPDATE, as Mem0 does (``new_message_embeddings``).
3. **Retrieval.** Before each answer the user's message is embedded and the
   ``search_limit`` most similar memories are injected, in similarity order, while
   the memory block fits ``budget_tokens``.

``mem0-like-add-only`` keeps steps 1 and 3 but never calls the update model: a fact
whose normalised text hashes like a stored memory is dropped, every other fact is
added (one embedding call per batch). That is the shape of Mem0 v2's additive
extraction (``ADDITIVE_EXTRACTION_PROMPT``: "Only ADD new facts... Downstream logic
will handle deduplication"); Mem0 keeps an MD5 hash of every memory's text. It
costs one LLM call per batch instead of 1 + facts, and keeps outdated facts.

Defaults and their sources:

* ``add_every_turns = 1``: Mem0's README quick-start calls
  ``memory.add(messages, user_id=...)`` after every reply, with the user message
  and the assistant's answer; the paper likewise extracts per message pair.
* ``update_candidates = 10``: the paper's s = 10 similar memories per fact. Mem0
  OSS instead searches ``limit=5`` per fact and sends all facts and their merged
  candidates in *one* update call per ``add``; memsim follows the paper (one call
  per fact), which is what the ADD/UPDATE/DELETE/NONE tool call of §2.1 describes.
* ``search_limit = 100``: the default ``limit`` of Mem0 OSS ``Memory.search``
  (the hosted platform's ``top_k`` defaults to 10; the README example passes 3).
* ``budget_tokens = 1_500``: Mem0 has no token budget (it injects whatever the
  search returns); memsim caps the memory block like ``batched-dedup-budget`` so
  the two compare on equal terms. Raise it to model an unbounded injection.
* ``background = False``: Mem0 OSS ``Memory.add`` is synchronous, so ingestion runs
  after the reply, before the user's next message; ``True`` defers it to a
  background worker (like the platform's async mode).

Not modelled: the paper's extra extraction context (a conversation summary and
the last m = 10 messages), Mem0's graph memory and its history database. The
extraction answer keeps memsim's ``[{"content", "importance", "category"}]`` shape
rather than Mem0's ``{"facts": ["..."]}`` (a few tokens more per fact).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Annotated

import numpy as np
from pydantic import Field

from strategies.api import (
    ADD,
    DELETE,
    MEM0_EXTRACT_SYSTEM_PROMPT,
    UPDATE,
    CallFailed,
    Factoid,
    Memory,
    MemoryLayoutConfig,
    Message,
    Prompt,
    SessionHistories,
    Strategy,
    TurnContext,
    UpdateDecision,
    fill_budget,
    memory_room,
    normalized_hash,
    query_vector,
    register,
)


class Mem0AddOnlyConfig(MemoryLayoutConfig):
    """Batching, retrieval and budget (sources in the module docstring)."""

    add_every_turns: Annotated[int, Field(ge=1)] = 1
    search_limit: Annotated[int, Field(ge=1)] = 100
    budget_tokens: Annotated[int, Field(ge=0)] = 1_500
    background: bool = False


class Mem0LikeConfig(Mem0AddOnlyConfig):
    """Adds the number of similar memories each update call sees (the paper's s)."""

    update_candidates: Annotated[int, Field(ge=1)] = 10


class _Buffer:
    """What the application has passed to ``memory.add`` since the last ingestion."""

    __slots__ = ("messages", "turns")

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.turns = 0


class _Mem0Base(Strategy):
    """Buffering like ``memory.add`` and injection like ``memory.search``; subclasses ingest."""

    config: Mem0AddOnlyConfig

    def __init__(self, config: Mem0AddOnlyConfig | None = None) -> None:
        super().__init__(config)
        self._sessions = SessionHistories()
        self._buffers: dict[int, _Buffer] = {}

    # -- foreground -------------------------------------------------------------
    def build_prompt(self, ctx: TurnContext, msg: Message) -> Prompt:
        """System prompt + the most similar memories within budget + this session + the message."""
        history = self._sessions.of(ctx.user, msg.session)
        memories = self._search(ctx, msg) if ctx.store.count() else []
        cfg = self.config
        return history.prompt(msg, cfg.arrange(memories), cfg.memory_position)

    def _search(self, ctx: TurnContext, msg: Message) -> list[Memory]:
        """The ``search_limit`` most similar memories, in order, while they fit the budget."""
        room = memory_room(ctx.tokens, self.config.budget_tokens)
        if room <= 0:
            return []
        query = query_vector(ctx, msg)
        if query is None:
            return []
        records, sims = ctx.store.query(query)
        nearest = np.argsort(-sims, kind="stable")[: self.config.search_limit]
        chosen = fill_budget([records[i] for i in nearest], room)
        for memory in chosen:
            memory.hit(ctx.now)
        return chosen

    def after_turn(self, ctx: TurnContext, msg: Message, reply: Message | None) -> None:
        """Buffer the exchange; every ``add_every_turns`` turns, ingest the buffer."""
        history = self._sessions.of(ctx.user, msg.session)
        history.exchange(ctx.tokens, msg, reply)
        buffer = self._buffers.setdefault(ctx.user, _Buffer())
        buffer.messages.append(msg)
        if reply is not None:
            buffer.messages.append(reply)
        buffer.turns += 1
        if buffer.turns < self.config.add_every_turns:
            return
        batch = buffer.messages
        self._buffers[ctx.user] = _Buffer()
        if self.config.background:
            ctx.defer(lambda job_ctx: self._ingest(job_ctx, batch))
        else:
            self._ingest(ctx, batch)

    @abc.abstractmethod
    def _ingest(self, ctx: TurnContext, batch: list[Message]) -> None:
        """Turn one batch of messages into stored memories."""


@register
class Mem0Like(_Mem0Base):
    """Mem0 classic: one extraction per batch, then one ADD/UPDATE/DELETE/NONE call per fact."""

    name = "mem0-like"
    Config = Mem0LikeConfig
    config: Mem0LikeConfig

    def _ingest(self, ctx: TurnContext, batch: list[Message]) -> None:
        for factoid in self.extract(ctx, batch, MEM0_EXTRACT_SYSTEM_PROMPT):
            vector = ctx.embedder.embed([factoid.content])
            records, sims = ctx.store.query(vector[0])
            nearest = np.argsort(-sims, kind="stable")[: self.config.update_candidates]
            candidates = [records[i] for i in nearest]
            try:
                decision = ctx.llm.update(factoid, candidates)
            except CallFailed:  # Mem0 logs a failed update call and applies no event
                continue
            self._apply(ctx, factoid, vector, decision, {m.id: m for m in candidates})

    @staticmethod
    def _apply(
        ctx: TurnContext,
        factoid: Factoid,
        vector: np.ndarray,
        decision: UpdateDecision,
        candidates: dict[int, Memory],
    ) -> None:
        """Carry out the answer's events: deletes in one store call, writes in another."""
        deleted: list[int] = []
        written: list[Memory] = []
        for event in decision.events:
            if event.event == ADD:
                written.append(ctx.new_memory(factoid))
            elif event.event == UPDATE and event.memory_id is not None:
                old = candidates[event.memory_id]
                deleted.append(old.id)
                written.append(_rewritten(ctx, old, factoid, event.text))
            elif event.event == DELETE and event.memory_id is not None:
                deleted.append(event.memory_id)
        if deleted:
            ctx.store.delete(deleted)
        if written:
            # Every written text is the fact's own (ADD, or UPDATE to the fact): reuse its vector.
            ctx.store.add(written, np.repeat(vector, len(written), axis=0))


def _rewritten(ctx: TurnContext, old: Memory, factoid: Factoid, text: str) -> Memory:
    """``old`` updated in place: new text and ground truth; same id, importance, creation time."""
    return dataclasses.replace(
        old,
        text=text,
        line_tokens=ctx.tokens.count("- " + text + "\n"),
        category=factoid.category,
        embedding_model=ctx.embedder.model,
        content_hash=normalized_hash(text),
        facts=factoid.facts,
    )


@register
class Mem0LikeAddOnly(_Mem0Base):
    """Mem0 add-only: one extraction per batch; exact-hash dedup; never updates or deletes."""

    name = "mem0-like-add-only"
    Config = Mem0AddOnlyConfig

    def __init__(self, config: Mem0AddOnlyConfig | None = None) -> None:
        super().__init__(config)
        self._hashes: dict[int, set[str]] = {}

    def _ingest(self, ctx: TurnContext, batch: list[Message]) -> None:
        hashes = self._hashes.setdefault(ctx.user, set())
        fresh: dict[str, Factoid] = {}
        for factoid in self.extract(ctx, batch, MEM0_EXTRACT_SYSTEM_PROMPT):
            digest = normalized_hash(factoid.content)
            if digest not in hashes:
                fresh.setdefault(digest, factoid)
        if fresh:
            vectors = ctx.embedder.embed([f.content for f in fresh.values()])
            ctx.store.add([ctx.new_memory(f) for f in fresh.values()], vectors)
            hashes.update(fresh)
