"""Background jobs any strategy can schedule: consolidation and re-embedding.

A job is a function of a :class:`~strategies.api.TurnContext`; a strategy runs it
with ``ctx.defer(job)`` (or from ``on_tick`` for every user), so its LLM,
embedding and store calls run on the background workers and compete for the
same rate limits as user traffic. That is how an hourly consolidation cron
shows up as latency spikes.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sim.llm import DELETE, NONE, UPDATE, Factoid
from sim.store import Memory
from sim.types import SECONDS_PER_DAY, SECONDS_PER_HOUR
from strategies.base import CallFailed, TickContext, TurnContext

PERIODS = {"hourly": SECONDS_PER_HOUR, "nightly": SECONDS_PER_DAY}


class ConsolidationConfig(BaseModel):
    """How and when to consolidate a user's memories.

    Defaults follow common production guidance for long-term memory stores
    (memory-system write-ups around Mem0, LangMem and Zep): merge near-duplicates,
    expire after 30 days, prune what is never used, and cap the store.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    every: Literal["hourly", "nightly"] = "nightly"
    merge_threshold: Annotated[float, Field(gt=0, le=1)] = 0.9
    """Cosine at or above which two memories are merge candidates."""
    llm_merge: bool = True
    """Let an update call (Mem0-style) confirm each merge: NONE drops the candidate,
    UPDATE drops the outdated memory it was compared with, ADD keeps both. Off: the
    less important of two candidates goes, no LLM call."""
    ttl_days: Annotated[float, Field(gt=0)] = 30.0
    """A memory not used for this long (since its last use, or its creation) expires."""
    min_hits: Annotated[int, Field(ge=0)] = 5
    """A memory older than ``hit_window_days`` with fewer hits than this is pruned."""
    hit_window_days: Annotated[float, Field(gt=0)] = 30.0
    max_memories_per_user: Annotated[int, Field(ge=1)] = 500
    reembed: bool = True
    """Re-embed every memory in each pass (one embedding call per user), as
    consolidation jobs that compare fresh embeddings do — the cost behind
    ``cron-saturation``. Off: compare the vectors already in the store (one store
    read, no embedding tokens)."""

    @property
    def period_s(self) -> float:
        """Seconds between two runs."""
        return PERIODS[self.every]


def _merge_candidates(
    memories: list[Memory], vectors: np.ndarray, threshold: float
) -> list[tuple[Memory, Memory]]:
    """Pairs ``(candidate, kept)`` with cosine ≥ ``threshold``.

    Memories are visited most important (then newest) first; each becomes the
    candidate of the first kept memory it is too similar to, or is kept itself.
    """
    order = sorted(
        range(len(memories)), key=lambda i: (-memories[i].importance, -memories[i].created_at)
    )
    sims = vectors @ vectors.T
    pairs, kept = [], []
    for i in order:
        close = [k for k in kept if sims[i, k] >= threshold]
        if close:
            pairs.append((memories[i], memories[close[0]]))
        else:
            kept.append(i)
    return pairs


def _merge(ctx: TurnContext, pairs: list[tuple[Memory, Memory]], use_llm: bool) -> set[int]:
    """Ids the merges remove; with ``use_llm``, one update call decides each pair."""
    doomed: set[int] = set()
    for candidate, kept in pairs:
        if not use_llm:
            doomed.add(candidate.id)
            continue
        fact = Factoid(candidate.text, candidate.importance, candidate.category, candidate.facts)
        try:
            event = ctx.llm.update(fact, [kept]).event
        except CallFailed:  # undecided: both stay until the next pass
            continue
        if event == NONE:  # the kept memory already says it
            doomed.add(candidate.id)
        elif event in (UPDATE, DELETE):  # the kept memory is the outdated one
            doomed.add(kept.id)
    return doomed


def consolidate(ctx: TurnContext, cfg: ConsolidationConfig) -> None:
    """One consolidation pass over the user's memories.

    Re-embeds every memory (one embedding call, as consolidation jobs that
    compare memories do; with ``reembed`` off it reads the stored vectors
    instead), then deletes in one write: expired memories (unused
    for ``ttl_days``), rarely used ones (older than ``hit_window_days`` with
    fewer than ``min_hits`` hits), near-duplicates (each merge confirmed by an
    update call unless ``llm_merge`` is off), and the least important (then
    oldest) beyond the cap.
    """
    if not ctx.store.count():
        return
    if cfg.reembed:
        memories = ctx.store.memories()
        vectors = ctx.embedder.embed([m.text for m in memories])
    else:
        memories, vectors = ctx.store.memories_with_vectors()
    if not memories:  # the store is down: nothing to consolidate this time
        return
    now, ttl, window = (
        ctx.now,
        cfg.ttl_days * SECONDS_PER_DAY,
        cfg.hit_window_days * SECONDS_PER_DAY,
    )
    doomed = {
        m.id
        for m in memories
        if now - (m.created_at if m.last_used_at is None else m.last_used_at) > ttl
        or (now - m.created_at > window and m.hit_count < cfg.min_hits)
    }
    live = [i for i, m in enumerate(memories) if m.id not in doomed]
    pairs = _merge_candidates([memories[i] for i in live], vectors[live], cfg.merge_threshold)
    doomed |= _merge(ctx, pairs, cfg.llm_merge)
    survivors = [m for m in memories if m.id not in doomed]
    excess = len(survivors) - cfg.max_memories_per_user
    if excess > 0:
        survivors.sort(key=lambda m: (m.importance, m.created_at, m.id))
        doomed |= {m.id for m in survivors[:excess]}
    if doomed:
        ctx.store.delete(sorted(doomed))


def schedule_consolidation(tick: TickContext, cfg: ConsolidationConfig) -> None:
    """Defer one consolidation job per user that has memories (call from ``on_tick``)."""
    job = partial(consolidate, cfg=cfg)
    for ctx in tick.contexts():
        if ctx.store.count():
            ctx.defer(job)


def reembed(ctx: TurnContext) -> None:
    """Re-embed the user's memories with the current embedding model and rewrite them.

    One embedding call for all of them, then one delete and one add: the store
    then holds vectors that the current model's queries can be compared with.
    """
    stale = [m for m in ctx.store.memories() if m.embedding_model != ctx.embedder.model]
    if not stale:
        return
    vectors = ctx.embedder.embed([m.text for m in stale])
    ctx.store.delete([m.id for m in stale])
    for memory in stale:
        memory.embedding_model = ctx.embedder.model
    ctx.store.add(stale, vectors)
