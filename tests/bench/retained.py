"""What a finished run keeps in memory, and why its RSS is larger than that.

Runs support-bot (``USERS`` users × 30 days, shards of 500 users,
batched-dedup-budget) twice in this process: first plain, to read the resident
set before the run, with its records alive, and after they are freed and the
heap trimmed; then under ``tracemalloc``, to list what Python still holds after
the run (by allocating line). Run alone (docs/benchmarks.md, "What grows with turns"):

    .venv/bin/python tests/bench/retained.py 4000
"""

from __future__ import annotations

import ctypes
import gc
import sys
import tracemalloc
from pathlib import Path

import scenarios
from sim.runner import run_scenario


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    users = int(sys.argv[1])
    scenario = scenarios.load("support-bot")[0].with_overrides(
        users=users, days=30, shard_users=500, strategies=["batched-dedup-budget"]
    )
    before = rss_mib()
    result = run_scenario(scenario)
    gc.collect()
    turns = sum(len(r.turns) for r in result.runs)
    kept = sum(
        r.turns.memory_usage(deep=True).sum() + r.calls.memory_usage(deep=True).sum()
        for r in result.runs
    )
    alive = rss_mib()
    del result
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    print(
        f"turns {turns:,}; records {kept / turns:.0f} B/turn; RSS {before:.0f} MiB before "
        f"the run, {alive:.0f} MiB with the records alive, {rss_mib():.0f} MiB once they "
        "are freed and the heap trimmed"
    )
    tracemalloc.start(1)
    result = run_scenario(scenario)  # kept alive while the snapshot is taken
    gc.collect()
    snapshot = tracemalloc.take_snapshot()
    tracemalloc.stop()
    assert sum(len(r.turns) for r in result.runs) == turns
    stats = snapshot.statistics("lineno")
    print(f"turns {turns:,}; Python holds {sum(s.size for s in stats) / turns:.0f} B/turn:")
    for stat in stats[:5]:
        frame = stat.traceback[0]
        print(f"  {stat.size / turns:7.1f} B/turn  {frame.filename.split('/')[-1]}:{frame.lineno}")


if __name__ == "__main__":
    main()
