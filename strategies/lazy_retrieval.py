"""``lazy-retrieval``: batched-dedup-budget's memory, retrieved only on a topic change.

Memory is written exactly as ``batched-dedup-budget`` writes it (this class
inherits its ``after_turn`` and background extraction, dedup and cap), and a
retrieval ranks and budgets memories the same way. What differs is when it
retrieves: each user message is embedded and compared with the query of the
cached selection, and the store is queried again only if

* the cosine similarity dropped by more than ``topic_change_drop`` (that is,
  ``similarity < 1 - topic_change_drop``): the user changed topic;
* the cached selection is older than ``cache_ttl_s`` of simulated time
  (memories extracted since then get a chance to be injected); or
* the message opens a new session (a new visit is always a change).

Otherwise the cached memories are injected again: the embedding call is still
paid, the store query is saved. A selection is cached only when a query ran
(while the store is empty nothing is cached), and cached memories may since
have been evicted by the cap; they are injected until the cache expires.

With the MiniLM-calibrated embedder, two different sentences of the synthetic
support workload score a cosine of about 0.2-0.4, so the default drop treats
nearly every message as a new topic: savings show when users dwell on one
topic (ask again, restate), not on the default mix.

Defaults (those of batched-dedup-budget, plus):
    topic_change_drop = 0.3: chosen (similarity below 0.7 means a new topic;
        MiniLM paraphrases of one fact score 0.8-0.9, different facts far less).
    cache_ttl_s = 600: chosen, ten simulated minutes: longer than a typical
        session (six turns, 25 s think time), so within a session only a topic
        change refreshes; it bounds how stale a long session's selection gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import Field

from sim.store import Memory
from sim.workload import Message
from strategies.base import TurnContext
from strategies.batched_dedup_budget import BatchedDedupBudget, BatchedDedupBudgetConfig
from strategies.registry import register


class LazyRetrievalConfig(BatchedDedupBudgetConfig):
    """batched-dedup-budget's settings, plus when a cached selection is reused."""

    topic_change_drop: Annotated[float, Field(gt=0, le=2)] = 0.3
    """Query again when cosine(message, cached query) < 1 - this."""
    cache_ttl_s: Annotated[float, Field(gt=0)] = 600.0
    """Query again when the cached selection is older than this (simulated seconds)."""


@dataclass(slots=True)
class _Selection:
    """Memories one store query selected, and for which query, session and time."""

    query: np.ndarray
    memories: list[Memory]
    session: int
    at: float


@register
class LazyRetrieval(BatchedDedupBudget):
    """Batched, deduplicated, budgeted memory; the store is queried only on a topic change."""

    name = "lazy-retrieval"
    Config = LazyRetrievalConfig
    config: LazyRetrievalConfig

    def __init__(self, config: LazyRetrievalConfig | None = None) -> None:
        super().__init__(config)
        self._cache: dict[int, _Selection] = {}

    def _select(self, ctx: TurnContext, msg: Message) -> list[Memory]:
        """The cached selection, or a fresh one when the topic, the session or time moved on."""
        query = ctx.embedder.embed([msg.text])[0]
        cached = self._cache.get(ctx.user)
        if cached is None or self._changed(cached, query, ctx.now, msg.session):
            memories = super()._select(ctx, msg, query)
            cached = self._cache[ctx.user] = _Selection(query, memories, msg.session, ctx.now)
        else:
            for memory in cached.memories:
                memory.hit(ctx.now)
        return list(cached.memories)

    def _changed(self, cached: _Selection, query: np.ndarray, now: float, session: int) -> bool:
        """Whether the cached selection no longer answers this message."""
        cfg = self.config
        return (
            session != cached.session
            or now - cached.at > cfg.cache_ttl_s
            or float(query @ cached.query) < 1 - cfg.topic_change_drop
        )
