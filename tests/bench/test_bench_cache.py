"""What modelling the prompt cache costs in simulation speed (``make bench``).

The target: with the cache on (support-bot's default, OpenAI's rule) the
simulation of support-bot takes at most 15% longer than with ``mode = "none"``,
measured in one process on one workload (``bench_cache.py``). Writes
docs/benchmarks.md between the ``bench:prompt-cache`` markers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from test_bench import ROOT, machine, write_between

MAX_SLOWDOWN = 1.15


@pytest.mark.bench
def test_the_prompt_cache_costs_at_most_15_percent_of_simulation_speed():
    out = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "bench_cache.py"), "support-bot", "3"],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    result = json.loads(out.stdout)
    rows = result["rows"]
    none = sum(r["none"] for r in rows)
    cached = sum(r["cached"] for r in rows)
    ratio = cached / none
    lines = [
        f"Measured {date.today().isoformat()} on {machine()} with `make bench` "
        "(`python tests/bench/bench_cache.py support-bot 3`: one process, one workload, "
        "each strategy simulated 3 times in each mode, fastest kept):",
        "",
        "| strategy | turns | mode none (s) | cache on (s) | ratio |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['strategy']} | {r['turns']:,} | {r['none']:.2f} | {r['cached']:.2f} | "
        f"{r['cached'] / r['none']:.3f} |"
        for r in rows
    ]
    lines += [
        f"| **support-bot, all three** | {sum(r['turns'] for r in rows):,} | {none:.2f} | "
        f"{cached:.2f} | **{ratio:.3f}** |",
        "",
        f"Target: at most {MAX_SLOWDOWN:.2f} for the whole scenario; "
        f"{'met' if ratio <= MAX_SLOWDOWN else 'NOT met'}.",
    ]
    write_between("prompt-cache", "\n".join(lines))
    assert ratio <= MAX_SLOWDOWN
