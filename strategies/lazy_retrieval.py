"""``lazy-retrieval``: batched-dedup-budget's memory, retrieved only on a topic change.

Memory is written exactly as ``batched-dedup-budget`` writes it (this class
inherits its ``after_turn`` and background extraction, dedup and cap), and a
retrieval ranks and budgets memories the same way (``BatchedDedupBudget.retrieve``);
this class overrides only its extension hook, ``select``. What differs is when it
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

What it saves depends on how long users stay on one topic
(``[workload] topic_persistence``, README "Topics"): on support-bot, at the
default persistence it skips about one store query in seven, at persistence 0
(every message about a fact picked at random) almost none.

Defaults (those of batched-dedup-budget, plus):
    topic_change_drop = 0.55: a cosine below 0.45 is a new topic. Messages on one
        topic are rarely near-paraphrases: consecutive user turns of LoCoMo score a
        MiniLM cosine of 0.38 on average (0.18 for random pairs of its turns), so
        0.7 (1 - 0.3, this setting's value before topics) re-queried 97.8% of
        LoCoMo's turns, as if no two were on one topic. 0.45 lies just above what
        unrelated texts reach 95% of the time in every measurement memsim has
        (MiniLM, 95th percentile: memories of different facts in the shipped
        calibration profile 0.43; random pairs of LoCoMo user turns 0.38; of
        support-bot's messages 0.36): a change to something unrelated is caught,
        a message that shares its topic's words is not taken for one.
        ``examples/topics/topic_runs.py`` measures all of these.
    cache_ttl_s = 600: chosen, ten simulated minutes: longer than a typical
        session (six turns, 25 s think time), so within a session only a topic
        change refreshes; it bounds how stale a long session's selection gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import Field

from strategies.api import Memory, Message, TurnContext, query_vector, register
from strategies.batched_dedup_budget import BatchedDedupBudget, BatchedDedupBudgetConfig


class LazyRetrievalConfig(BatchedDedupBudgetConfig):
    """batched-dedup-budget's settings, plus when a cached selection is reused."""

    topic_change_drop: Annotated[float, Field(gt=0, le=2)] = 0.55
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

    def select(self, ctx: TurnContext, msg: Message) -> list[Memory]:
        """The cached selection, or a fresh one when the topic, the session or time moved on."""
        query = query_vector(ctx, msg)
        if query is None:
            return []
        cached = self._cache.get(ctx.user)
        if cached is None or self._changed(cached, query, ctx.now, msg.session):
            memories = self.retrieve(ctx, msg, query)
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
