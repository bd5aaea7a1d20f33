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

from strategies.api import (
    CallFailed,
    ConsolidationConfig,
    ExtractionConfig,
    Factoid,
    Memory,
    Message,
    Prompt,
    SessionHistories,
    Strategy,
    TickContext,
    TokenCounter,
    TurnContext,
    fill_budget,
    hit_all,
    memory_room,
    normalized_hash,
    query_vector,
    register,
    schedule_consolidation,
)


class BatchedDedupBudgetConfig(ExtractionConfig):
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
    clear_buffer_after_extraction: bool = True
    """Empty the extraction buffer once its batch is handed to extraction. ``false``
    reproduces a known bug: the buffer keeps every message, so each extraction
    prompt holds the user's whole conversation so far and eventually passes the
    model's context window (the batch cadence is unchanged)."""


class _Ranking:
    """What ranking needs of one snapshot of a user's memories, computed once per snapshot.

    ``neg_importance`` is ``-importance`` as float32 (``sims * neg_importance``
    is bit for bit ``-(sims * importance)``: IEEE multiplication rounds the
    magnitude the same whatever the signs), ``line_tokens`` the lines' total.
    """

    __slots__ = ("line_tokens", "neg_importance", "records")

    def __init__(self, records: list[Memory]) -> None:
        self.records = records
        importance = np.fromiter((m.importance for m in records), np.float32, len(records))
        self.neg_importance = -importance
        self.line_tokens = sum(m.line_tokens for m in records)


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
        self._rankings: dict[int, _Ranking] = {}
        self._room_counter: TokenCounter | None = None
        self._room_tokens = 0

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
        memories = self.select(ctx, msg) if ctx.store.count() else []
        cfg = self.config
        return history.prompt(msg, cfg.arrange(memories), cfg.memory_position)

    def select(self, ctx: TurnContext, msg: Message) -> list[Memory]:
        """The memories injected to answer ``msg``, best first: this family's extension hook.

        Called by :meth:`build_prompt` when the user has memories. By default one
        retrieval (:meth:`retrieve`); a subclass overrides it to decide when and how
        to retrieve (``lazy-retrieval`` reuses its last selection until the topic
        changes) and calls :meth:`retrieve` for the ranking.
        """
        return self.retrieve(ctx, msg)

    def retrieve(
        self, ctx: TurnContext, msg: Message, query: np.ndarray | None = None
    ) -> list[Memory]:
        """Greedy fill of the budget by relevance × importance: one store query.

        ``query`` is the message's embedding when the caller already paid for it;
        without one the message is embedded here (nothing, if that call fails for
        good: the turn is marked degraded). With no room in the budget nothing is
        called. The memories selected are marked used now.
        """
        room = self._room(ctx.tokens)
        if room <= 0:
            return []
        if query is None:
            query = query_vector(ctx, msg)
            if query is None:
                return []
        records, sims = ctx.store.query(query)
        ranking = self._ranking(ctx.user, records)
        order = np.multiply(sims, ranking.neg_importance).argsort(kind="stable").tolist()
        ranked = list(map(records.__getitem__, order))
        if ranking.line_tokens > room:
            ranked = fill_budget(ranked, room)
        hit_all(ranked, ctx.now)
        return ranked

    def _room(self, tokens: TokenCounter) -> int:
        """``memory_room`` for the budget, computed once per token counter (it is constant)."""
        if self._room_counter is not tokens:
            self._room_counter = tokens
            self._room_tokens = memory_room(tokens, self.config.budget_tokens)
        return self._room_tokens

    def _ranking(self, user: int, records: list[Memory]) -> _Ranking:
        """The ranking data of ``records``, reused while the store returns the same snapshot.

        Safe because a store's query list is read-only and a store hands out the same
        list object only while the memories are unchanged (``VectorStore.query``);
        holding it here keeps its identity from being reused. Memories' importance
        and line tokens never change once stored.
        """
        ranking = self._rankings.get(user)
        if ranking is None or ranking.records is not records:
            ranking = self._rankings[user] = _Ranking(records)
        return ranking

    def after_turn(self, ctx: TurnContext, msg: Message, reply: Message | None) -> None:
        """Buffer the exchange; when the buffer is full, extract it in the background."""
        history = self._sessions.of(ctx.user, msg.session)
        history.exchange(ctx.tokens, msg, reply)
        buffer = self._buffers.get(ctx.user)
        if buffer is None:
            buffer = self._buffers[ctx.user] = _Buffer()
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
            self._buffers[ctx.user] = self._next_buffer(batch)
            ctx.defer(lambda job_ctx: self._extract_and_store(job_ctx, batch))

    def _next_buffer(self, batch: list[Message]) -> _Buffer:
        """The buffer after a batch: empty, or (the bug) still holding every message of it.

        The triggers count afresh either way, so the uncleared buffer is sent every
        ``extract_every_messages`` messages, each time longer.
        """
        fresh = _Buffer()
        if not self.config.clear_buffer_after_extraction:
            fresh.messages = list(batch)  # a copy: the deferred job owns ``batch``
        return fresh

    # -- background -------------------------------------------------------------
    def _extract_and_store(self, ctx: TurnContext, batch: list[Message]) -> None:
        """The extraction job of one batch; a call that fails for good puts it back.

        Extraction and embedding come before any write, so a failed batch stored
        nothing: it goes back to the front of the user's buffer and is sent again
        with the next batch (as a worker re-queues a failed job). With the buffer
        never cleared (``clear_buffer_after_extraction = false``) it is there already.
        """
        try:
            self._store_batch(ctx, batch)
        except CallFailed:
            if self.config.clear_buffer_after_extraction:
                buffer = self._buffers.setdefault(ctx.user, _Buffer())
                buffer.messages[:0] = batch
                buffer.tokens += sum(m.tokens for m in batch)

    def _store_batch(self, ctx: TurnContext, batch: list[Message]) -> None:
        hashes = self._hashes.setdefault(ctx.user, set())
        fresh: dict[object, Factoid] = {}
        for i, factoid in enumerate(self.extract(ctx, batch)):
            digest = normalized_hash(factoid.content)
            if not self.config.exact_dedup:
                fresh[i] = factoid
            elif digest not in hashes:
                fresh.setdefault(digest, factoid)
        if not fresh:
            return
        vectors = ctx.embedder.embed([f.content for f in fresh.values()])
        kept = self._novel(ctx, vectors)
        if not kept:
            return
        factoids = list(fresh.values())
        new = [ctx.new_memory(factoids[i]) for i in kept]
        new, new_vectors = self._enforce_cap(ctx, new, vectors[kept], hashes)
        if new:
            ctx.store.add(new, new_vectors)
            hashes.update(m.content_hash for m in new)

    def _novel(self, ctx: TurnContext, vectors: np.ndarray) -> list[int]:
        """Indices of the vectors below ``dedup_threshold`` to the store and to earlier kept ones.

        One store query per vector. Until one is kept there is nothing earlier to
        compare with (the batch maximum would be the -1 floor, never above the
        store's, which also starts at -1), so only the store's maximum is taken.
        """
        threshold, kept = self.config.dedup_threshold, []
        for i in range(len(vectors)):
            vector = vectors[i]
            _, sims = ctx.store.query(vector)
            closest = sims.max(initial=-1.0)
            if kept:
                closest = max(closest, (vectors[kept] @ vector).max(initial=-1.0))
            if closest < threshold:
                kept.append(i)
        return kept

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
