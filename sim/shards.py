"""Splitting a scenario's users into shards that are simulated independently.

A large run is cut into ``ceil(users / shard_users)`` shards of consecutive
users, as equal in size as possible. Each shard is a complete simulation of its
users (their scripts, mock LLM streams and embeddings do not depend on the other
users), run with its **pro-rata share** of everything the users share: the chat
and embedding endpoints' ``rpm``, ``tpm`` and ``concurrency``, the vector
store's ``concurrency`` and the pool of ``background_workers``, all multiplied
by ``shard users / users`` (counts rounded to the nearest whole one, at least 1).

The split is fixed by the scenario, never by the number of worker processes, so
the results are the same whether the shards run one after the other in one
process, on two workers or on a Ray cluster. It is an approximation only where a
limit binds: k shards with 1/k of the capacity each queue a little more than one
pool with all of it (a pooled queue is more efficient), and round-off of small
counts can give a shard slightly more or less than its exact share. The load on
the chat endpoint also widens its latency jitter (:mod:`sim.latency`): a shard
reads its own busy slots against its share of ``concurrency``, the same ratio on
average as the whole pool's, but not call for call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sim.config import EndpointLimits, Scenario


@dataclass(frozen=True, slots=True)
class Shard:
    """One shard: its position, its users (global indices) and its share of the limits."""

    index: int
    users: range
    share: float


def plan(scenario: Scenario) -> list[Shard]:
    """The scenario's shards, in order; one shard when ``users <= shard_users``."""
    total = scenario.users
    count = math.ceil(total / scenario.shard_users)
    bounds = [k * total // count for k in range(count + 1)]
    return [
        Shard(k, range(bounds[k], bounds[k + 1]), (bounds[k + 1] - bounds[k]) / total)
        for k in range(count)
    ]


def _count_share(count: int, share: float) -> int:
    return max(1, math.floor(count * share + 0.5))


def share_limits(limits: EndpointLimits, share: float) -> EndpointLimits:
    """An endpoint's limits cut to ``share`` (rpm and tpm exactly, concurrency rounded)."""
    return limits.model_copy(
        update={
            "rpm": limits.rpm * share,
            "tpm": limits.tpm * share,
            "concurrency": _count_share(limits.concurrency, share),
        }
    )


def shard_scenario(scenario: Scenario, shard: Shard) -> Scenario:
    """The scenario as one shard sees it: the full user count, its share of the limits.

    ``users`` stays the scenario's (the store's modelled latency and the report
    speak of the whole population); the shard simulates only ``shard.users``.
    """
    return share_scenario(scenario, shard.share)


def share_scenario(scenario: Scenario, share: float) -> Scenario:
    """The scenario with ``share`` of everything its users share (see the module docstring).

    The one scaling rule of memsim: shards and ``memsim project`` both use it.
    """
    if share == 1.0:
        return scenario
    return scenario.model_copy(
        update={
            "limits": share_limits(scenario.limits, share),
            "embedding": scenario.embedding.model_copy(
                update={"limits": share_limits(scenario.embedding.limits, share)}
            ),
            "vector_store": scenario.vector_store.model_copy(
                update={"concurrency": _count_share(scenario.vector_store.concurrency, share)}
            ),
            "background_workers": _count_share(scenario.background_workers, share),
        }
    )
