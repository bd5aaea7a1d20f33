"""Runs one sharded scenario in a fresh process and prints JSON: turns, wall time, peak RSS.

Used by ``tests/bench/test_bench_scale.py``; run alone with
``python tests/bench/bench_scale.py SCENARIO STRATEGY USERS DAYS WORKERS``.
It runs what ``memsim run`` runs: ``wall_s`` covers each shard's workload
generation and simulation, writing the shards' records to the spool and the
summary; ``write_s`` writing the output folder (parquet files, reports, charts).
Peak RSS covers both.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from rss import ChildPeak, peak_rss_mib

import scenarios
from memsim import api
from sim.shards import plan


def main() -> None:
    name, strategy = sys.argv[1], sys.argv[2]
    users, days, workers = (int(a) for a in sys.argv[3:6])
    scenario, _ = scenarios.load(name)
    scenario = scenario.with_overrides(users=users, days=days, strategies=[strategy])
    started = time.perf_counter()
    with ChildPeak() as children, tempfile.TemporaryDirectory() as out:
        results = api.run(scenario, workers=workers)
        simulated = time.perf_counter()
        results.write(Path(out))  # the parquet files, summary.json and every report
        written = time.perf_counter()
    print(
        json.dumps(
            {
                "users": users,
                "days": days,
                "workers": workers,
                "shards": len(plan(scenario)),
                "turns": results.summary["strategies"][strategy]["turns"],
                "wall_s": simulated - started,
                "write_s": written - simulated,
                "peak_rss_mib": peak_rss_mib(),
                "worker_peak_rss_mib": children.mib if workers > 1 else 0.0,
            }
        )
    )


if __name__ == "__main__":
    main()
