"""``batched-dedup-budget``: batched extraction, write-time dedup, a token budget, a cap.

The fix for the token leak, as practitioners describe it:

* extract every ``extract_every_messages`` user messages, or as soon as the
  buffered conversation passes ``extract_buffer_tokens``, then clear the buffer;
  extraction runs as a background job, off the user's critical path;
* at write time, drop a factoid whose normalised text hashes like a stored one
  (exact dedup), or whose embedding has cosine ≥ ``dedup_threshold`` with a
  stored memory or an earlier factoid of the batch (semantic dedup);
* inject the memories ranked by relevance × importance (cosine to the user's
  message × importance / 10) while the memory block fits ``budget_tokens``;
* keep at most ``max_memories_per_user``, evicting the least important (then
  the oldest) first.

The buffer carries over between sessions: a session's last few messages are
extracted with the next batch.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

from sim.llm import Factoid
from sim.store import Memory, normalized_hash
from sim.workload import Message
from strategies.base import (
    Prompt,
    Strategy,
    StrategyConfig,
    TickContext,
    TurnContext,
    fill_budget,
    memory_room,
)
from strategies.history import SessionHistories
from strategies.jobs import ConsolidationConfig, schedule_consolidation
from strategies.registry import register


class BatchedDedupBudgetConfig(StrategyConfig):
    """Defaults follow common production guidance for extraction-based memory."""

    extract_every_messages: Annotated[int, Field(ge=1)] = 5
    extract_buffer_tokens: Annotated[int, Field(ge=1)] = 2_000
    exact_dedup: bool = True
    """Drop a fact whose normalized text hashes like a stored one (off: keep every copy)."""
    dedup_threshold: Annotated[float, Field(gt=0, le=1.01)] = 0.85
    """Cosine at or above which a fact is a duplicate; above 1 turns semantic dedup off."""
    budget_tokens: Annotated[int, Field(ge=0)] = 1_500
    max_memories_per_user: Annotated[int, Field(ge=1)] = 500
    consolidation: ConsolidationConfig | None = None
    """Run :func:`strategies.jobs.consolidate` for every user hourly or nightly (off by
    default); e.g. ``consolidation = {every = "nightly"}``."""


class _Buffer:
    __slots__ = ("messages", "tokens", "user_messages")

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.tokens = 0
        self.user_messages = 0


@register
class BatchedDedupBudget(Strategy):
    """Batched extraction with exact + cosine dedup, budgeted injection and a hard cap."""

    name = "batched-dedup-budget"
    Config = BatchedDedupBudgetConfig
    config: BatchedDedupBudgetConfig

    def __init__(self, config: BatchedDedupBudgetConfig | None = None) -> None:
        super().__init__(config)
        self._sessions = SessionHistories()
        self._buffers: dict[int, _Buffer] = {}
        self._hashes: dict[int, set[str]] = {}

    @property
    def tick_period_s(self) -> float | None:
        """Consolidation's period, if it is on."""
        cfg = self.config.consolidation
        return cfg.period_s if cfg else self.config.tick_period_s

    def on_tick(self, ctx: TickContext) -> None:
        """Schedule consolidation for every user with memories."""
        if self.config.consolidation:
            schedule_consolidation(ctx, self.config.consolidation)

    # -- foreground -------------------------------------------------------------
    def build_prompt(self, ctx: TurnContext, msg: Message) -> Prompt:
        """System prompt + the best memories within budget + this session + the message."""
        history = self._sessions.of(ctx.user, msg.session)
        memories = self._select(ctx, msg) if ctx.store.count() else []
        return history.prompt(msg, memories)

    def _select(
        self, ctx: TurnContext, msg: Message, query: np.ndarray | None = None
    ) -> list[Memory]:
        """Greedy fill of the budget by relevance × importance.

        ``query`` is the message's embedding when the caller already paid for it.
        """
        room = memory_room(ctx.tokens, self.config.budget_tokens)
        if room <= 0:
            return []
        if query is None:
            query = ctx.embedder.embed([msg.text])[0]
        records, sims = ctx.store.query(query)
        importance = np.fromiter((m.importance for m in records), np.float32, len(records))
        ranked = [records[i] for i in np.argsort(-(sims * importance), kind="stable")]
        if sum(m.line_tokens for m in ranked) > room:
            ranked = fill_budget(ranked, room)
        for memory in ranked:
            memory.hit(ctx.now)
        return ranked

    def after_turn(self, ctx: TurnContext, msg: Message, reply: Message | None) -> None:
        """Buffer the exchange; when the buffer is full, extract it in the background."""
        history = self._sessions.of(ctx.user, msg.session)
        history.exchange(ctx.tokens, msg, reply)
        buffer = self._buffers.setdefault(ctx.user, _Buffer())
        for m in (msg, reply) if reply is not None else (msg,):
            buffer.messages.append(m)
            buffer.tokens += m.tokens
        buffer.user_messages += 1
        cfg = self.config
        if (
            buffer.user_messages >= cfg.extract_every_messages
            or buffer.tokens >= cfg.extract_buffer_tokens
        ):
            batch = buffer.messages
            self._buffers[ctx.user] = _Buffer()
            ctx.defer(lambda job_ctx: self._extract_and_store(job_ctx, batch))

    # -- background -------------------------------------------------------------
    def _extract_and_store(self, ctx: TurnContext, batch: list[Message]) -> None:
        hashes = self._hashes.setdefault(ctx.user, set())
        fresh: dict[object, Factoid] = {}
        for i, factoid in enumerate(ctx.llm.extract(batch)):
            digest = normalized_hash(factoid.content)
            if not self.config.exact_dedup:
                fresh[i] = factoid
            elif digest not in hashes:
                fresh.setdefault(digest, factoid)
        if not fresh:
            return
        vectors = ctx.embedder.embed([f.content for f in fresh.values()])
        kept: list[int] = []
        for i in range(len(vectors)):
            _, sims = ctx.store.query(vectors[i])
            batch_sims = vectors[kept] @ vectors[i] if kept else sims[:0]
            if (
                max(sims.max(initial=-1.0), batch_sims.max(initial=-1.0))
                < self.config.dedup_threshold
            ):
                kept.append(i)
        if not kept:
            return
        factoids = list(fresh.values())
        new = [ctx.new_memory(factoids[i]) for i in kept]
        new, new_vectors = self._enforce_cap(ctx, new, vectors[kept], hashes)
        if new:
            ctx.store.add(new, new_vectors)
            hashes.update(m.content_hash for m in new)

    def _enforce_cap(
        self, ctx: TurnContext, new: list[Memory], vectors: np.ndarray, hashes: set[str]
    ) -> tuple[list[Memory], np.ndarray]:
        """Evict the least important (then oldest) memories so the store stays within the cap."""
        excess = ctx.store.count() + len(new) - self.config.max_memories_per_user
        if excess <= 0:
            return new, vectors
        new_ids = {m.id for m in new}
        pool = sorted(ctx.store.memories() + new, key=lambda m: (m.importance, m.created_at, m.id))
        evicted = pool[:excess]
        old = [m for m in evicted if m.id not in new_ids]
        if old:
            ctx.store.delete([m.id for m in old])
            hashes.difference_update(m.content_hash for m in old)
        evicted_ids = {m.id for m in evicted}
        keep = [i for i, m in enumerate(new) if m.id not in evicted_ids]
        return [new[i] for i in keep], vectors[keep]
