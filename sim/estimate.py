"""What a run will take, from its scenario alone: turns, wall time and peak memory.

``memsim run`` prints the estimate before it simulates and refuses a run whose
peak memory would not fit in the machine's available memory. The model is the
measured one of ``docs/benchmarks.md`` (``make bench``, AMD EPYC, 2 cores):

* **Turns**: users × days × ``sessions_per_user_per_day`` ×
  ``turns_per_session_mean`` per strategy (capped by ``max_sessions_per_user``),
  or a trace's messages. support-bot (1,000 users × 30 days) expects 63,000 and
  simulates 63,274 (``turns`` in ``memsim run support-bot``'s summary.json);
  ``tiny`` 120 and 121.
* **Wall time**: each strategy's turns at its measured end-to-end rate in one
  process (:data:`TURNS_PER_S`; "Throughput", support-bot 10,000 users × 30
  days), times :data:`WORKER_EFFICIENCY` per worker process up to the CPU count.
* **Peak memory** of every process of the run together. A run of one shard
  keeps its records in memory: :data:`BASE_BYTES` plus :data:`BYTES_PER_TURN`
  per simulated turn of every strategy (1,167 MiB at 1.0M turns and 2,934 MiB at
  3.0M in one process, a slope of 929 bytes per turn, measured when every run
  kept its records). A sharded run spools each finished shard to disk
  (:mod:`reports.spool`), so a process holds one shard's records at a time:
  :data:`SHARDED_BASE_BYTES` plus :data:`BYTES_PER_TURN` per turn of its largest
  shard (every strategy). With worker processes, that is each worker's peak and
  the main process adds :data:`MAIN_BYTES`. In one process, the heap it cannot
  give back adds :data:`RETAINED_BYTES_PER_TURN` per turn of the whole run
  (docs/benchmarks.md, "Peak memory against turns": main 728 MiB and the largest
  worker 715 MiB at 10M turns in shards of about 155,700).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from sim.config import Scenario
from sim.shards import plan

TURNS_PER_S = {
    "batched-dedup-budget": 7_362.0,
    "per-turn-extract": 8_433.0,
    "naive-append": 12_699.0,
}
"""End-to-end turns per second of one process (docs/benchmarks.md, "Throughput")."""
DEFAULT_TURNS_PER_S = 7_362.0
"""A built-in strategy not measured there: the slowest measured one."""
EXTERNAL_TURNS_PER_S = 25.0
"""A real library in-process (``external-*``): ``external-langmem`` simulates the 409
turns of ``library-comparison`` in about 15 s after start-up, ``external-mem0`` in
about 10 s (``memsim run library-comparison -s external-langmem``)."""
WORKER_EFFICIENCY = 0.92
"""Speed-up per worker process: the three rows' mean of (2-worker rate) / (2 ×
1-worker rate) in docs/benchmarks.md, "Throughput" (1.97, 1.52 and 2.03 for 2)."""
BASE_BYTES = 282 * 2**20
"""Peak RSS before the first turn: 1,167 MiB at 998,957 turns less 929 B a turn."""
BYTES_PER_TURN = 929
"""Peak RSS per simulated turn held in memory (batched-dedup-budget, records kept)."""
SHARDED_BASE_BYTES = 577 * 2**20
"""A process of a sharded run, its shard aside: the largest worker's 715 MiB at 10M
turns (64 shards of about 155,700 turns) less 929 B a turn of one shard."""
MAIN_BYTES = 728 * 2**20
"""The main process of a sharded run on worker processes: 728 MiB at 10M turns
(726 at 3M): it holds no shard for long, so it does not grow with the run."""
RETAINED_BYTES_PER_TURN = 170
"""Heap a single process keeps per turn of a spooled run (``tests/bench/retained.py
USERS --spooled``: 41 MiB more from 253,563 to 507,130 turns)."""


@dataclass(frozen=True, slots=True)
class Estimate:
    """A run's expected size and cost in time and memory."""

    turns: int
    """Simulated user turns, all strategies together."""
    wall_s: float
    peak_bytes: int
    available_bytes: int | None
    """Memory the machine has available now; ``None`` where it cannot be read."""

    @property
    def fits(self) -> bool:
        """Whether the peak fits in the available memory (unknown: assumed to)."""
        return self.available_bytes is None or self.peak_bytes <= self.available_bytes

    def line(self) -> str:
        """One line: ``about 63,000 turns, 19 s, peak 0.3 GB of 22.1 GB available``."""
        of = "" if self.available_bytes is None else f" of {_gb(self.available_bytes)} available"
        return (
            f"about {self.turns:,} turns, {_duration(self.wall_s)}, peak {_gb(self.peak_bytes)}{of}"
        )


def expected_turns(scenario: Scenario) -> int:
    """User turns one strategy simulates, expected from the workload settings."""
    if scenario.trace is not None:
        return 0  # a replayed trace: known only once read
    w = scenario.workload
    sessions = scenario.days * w.sessions_per_user_per_day
    if w.max_sessions_per_user is not None:
        sessions = min(sessions, w.max_sessions_per_user)
    return round(scenario.users * sessions * w.turns_per_session_mean)


def estimate(
    scenario: Scenario, external: set[str], workers: int = 1, turns: int | None = None
) -> Estimate:
    """The run of ``scenario``'s strategies on ``workers`` processes.

    ``external`` names the strategies that drive a real library; ``turns`` is the
    turns per strategy when already known (a trace).
    """
    per_strategy = expected_turns(scenario) if turns is None else turns
    seconds = 0.0
    for name in scenario.strategies:
        if name in external:
            rate = EXTERNAL_TURNS_PER_S
        else:
            rate = TURNS_PER_S.get(name, DEFAULT_TURNS_PER_S)
        seconds += per_strategy / rate
    processes = min(max(workers, 1), os.cpu_count() or 1)
    if processes > 1:
        seconds /= processes * WORKER_EFFICIENCY
    total = per_strategy * len(scenario.strategies)
    peak = peak_bytes(scenario, per_strategy, processes)
    return Estimate(total, seconds, peak, available_memory())


def peak_bytes(scenario: Scenario, per_strategy: int, processes: int) -> int:
    """Peak memory of the run's processes together (see the module docstring)."""
    strategies = len(scenario.strategies)
    shards = len(plan(scenario))
    if shards == 1:
        return BASE_BYTES + BYTES_PER_TURN * per_strategy * strategies
    shard_turns = math.ceil(per_strategy / shards) * strategies
    process = SHARDED_BASE_BYTES + BYTES_PER_TURN * shard_turns
    if processes == 1:
        return process + RETAINED_BYTES_PER_TURN * per_strategy * strategies
    return MAIN_BYTES + min(processes, shards) * process


def available_memory() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes; ``None`` where there is none."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{math.ceil(seconds)} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
