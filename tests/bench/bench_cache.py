"""Simulation speed with and without the prompt cache, in one process; prints JSON.

Used by ``tests/bench/test_bench_cache.py``; run alone with
``python tests/bench/bench_cache.py [SCENARIO] [REPEATS]``. The workload is made once;
each strategy is then simulated with ``[llm.cache] mode = "none"`` and with the
scenario's own mode in turn, ``REPEATS`` times each, and the fastest of each kept
(the least disturbed by other load on the machine).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time

import scenarios
from sim.runner import build_strategies, prepare, simulate


def with_mode(scenario, mode: str):
    """``scenario`` with ``[llm.cache] mode`` set."""
    cache = scenario.llm.cache.model_copy(update={"mode": mode})
    return scenario.model_copy(update={"llm": scenario.llm.model_copy(update={"cache": cache})})


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "support-bot"
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    scenario, _ = scenarios.load(name)
    parts = prepare(scenario, name, "bench", None)
    modes = {"none": with_mode(scenario, "none"), "cached": scenario}
    rows = []
    for index, strategy in enumerate(build_strategies(scenario, name)):
        best = {mode: float("inf") for mode in modes}
        turns = 0
        for _ in range(repeats):
            for mode, variant in modes.items():
                built = build_strategies(variant, name)[index]  # fresh state every run
                start = time.perf_counter()
                run = simulate(dataclasses.replace(parts, scenario=variant), built)
                best[mode] = min(best[mode], time.perf_counter() - start)
                turns = len(run.turns)
        rows.append({"strategy": strategy.name, "turns": turns, **best})
    print(
        json.dumps({"scenario": name, "users": scenario.users, "days": scenario.days, "rows": rows})
    )


if __name__ == "__main__":
    main()
