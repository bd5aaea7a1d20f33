"""Runs one scenario with one strategy in a fresh process and prints JSON timings.

Used by ``tests/bench/test_bench.py``; run alone with
``python tests/bench/bench_run.py SCENARIO STRATEGY [USERS DAYS]``.
"""

from __future__ import annotations

import json
import sys
import time

from rss import peak_rss_mib

import scenarios
from sim.runner import build_strategies, prepare, simulate


def main() -> None:
    name, strategy = sys.argv[1], sys.argv[2]
    scenario, _ = scenarios.load(name)
    if len(sys.argv) > 4:
        scenario = scenario.with_overrides(users=int(sys.argv[3]), days=int(sys.argv[4]))
    scenario = scenario.with_overrides(strategies=[strategy])
    (built,) = build_strategies(scenario, name)
    t0 = time.perf_counter()
    parts = prepare(scenario, name, "bench", None)
    t1 = time.perf_counter()
    run = simulate(parts, built)
    t2 = time.perf_counter()
    print(
        json.dumps(
            {
                "users": scenario.users,
                "days": scenario.days,
                "turns": len(run.turns),
                "calls": len(run.calls),
                "workload_s": t1 - t0,
                "simulate_s": t2 - t1,
                "peak_rss_mib": peak_rss_mib(),
            }
        )
    )


if __name__ == "__main__":
    main()
