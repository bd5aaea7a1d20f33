"""What a finished run keeps in memory, and why its RSS is larger than that.

Runs support-bot (``USERS`` users × 30 days, shards of 500 users,
batched-dedup-budget) in this process: first with every shard's records kept
and joined in memory, to read the resident set before the run, with its
records alive, and after they are freed and the heap trimmed; then under
``tracemalloc``, to list what Python still holds after the run (by allocating
line); then in a fresh process as ``memsim run`` runs a sharded run, each
shard's records spooled to disk as it finishes (:mod:`reports.spool`), to read
the resident set the run leaves. Run alone (docs/benchmarks.md, "What grows
with turns"):

    .venv/bin/python tests/bench/retained.py 4000
"""

from __future__ import annotations

import ctypes
import gc
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import scenarios
from reports.spool import Spool
from sim.runner import run_scenario


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


def _scenario(users: int):
    return scenarios.load("support-bot")[0].with_overrides(
        users=users, days=30, shard_users=500, strategies=["batched-dedup-budget"]
    )


def spooled(users: int) -> None:
    """RSS before and after a run whose shards' records are spooled to disk as they finish."""
    scenario = _scenario(users)
    before = rss_mib()
    with tempfile.TemporaryDirectory() as folder:
        result = run_scenario(scenario, sink=Spool(Path(folder), ["batched-dedup-budget"]))
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        turns = sum(len(p.turns) for p in result.runs[0].pieces({"turns": ["user"]}))
        after = rss_mib()
    print(
        f"spooled: turns {turns:,}; RSS {before:.0f} MiB before the run, {after:.0f} MiB "
        f"after it, heap trimmed ({(after - before) * 2**20 / turns:.0f} B/turn)"
    )


def main() -> None:
    users = int(sys.argv[1])
    if len(sys.argv) > 2 and sys.argv[2] == "--spooled":
        spooled(users)
        return
    scenario = _scenario(users)
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
    del result
    subprocess.run([sys.executable, __file__, str(users), "--spooled"], check=True)


if __name__ == "__main__":
    main()
