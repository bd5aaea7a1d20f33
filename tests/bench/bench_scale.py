"""Runs one sharded scenario in a fresh process and prints JSON: turns, wall time, peak RSS.

Used by ``tests/bench/test_bench_scale.py``; run alone with
``python tests/bench/bench_scale.py SCENARIO STRATEGY USERS DAYS WORKERS``.
Wall time covers the whole run: each shard's workload generation and simulation,
and joining the shards' records.
"""

from __future__ import annotations

import json
import sys
import time

from rss import ChildPeak, peak_rss_mib

import scenarios
from sim.runner import run_scenario
from sim.shards import plan


def main() -> None:
    name, strategy = sys.argv[1], sys.argv[2]
    users, days, workers = (int(a) for a in sys.argv[3:6])
    scenario, _ = scenarios.load(name)
    scenario = scenario.with_overrides(users=users, days=days, strategies=[strategy])
    started = time.perf_counter()
    with ChildPeak() as children:
        (run,) = run_scenario(scenario, name, workers=workers).runs
    wall = time.perf_counter() - started
    frames = sum(
        f.memory_usage(deep=True).sum()
        for f in (run.turns, run.calls, run.store_daily, run.store_final)
    )
    print(
        json.dumps(
            {
                "users": users,
                "days": days,
                "workers": workers,
                "shards": len(plan(scenario)),
                "turns": len(run.turns),
                "calls": len(run.calls),
                "wall_s": wall,
                "records_mib": frames / 2**20,
                "peak_rss_mib": peak_rss_mib(),
                "worker_peak_rss_mib": children.mib if workers > 1 else 0.0,
            }
        )
    )


if __name__ == "__main__":
    main()
