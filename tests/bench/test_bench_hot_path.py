"""The hot path against the code before its speed-up, side by side (``make bench``).

The commit :data:`BASE` (the code before the hot-path changes) is checked out in
a temporary git worktree; ``bench_run.py`` simulates support-bot (1,000 users ×
30 days, one process) with batched-dedup-budget in fresh processes, the two
checkouts alternating, so both see the same machine. Then ``memsim run`` of both
must write the same summary.json bytes. Figures go into docs/benchmarks.md
between the ``bench:hot-path`` markers.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from test_bench import ROOT, machine, write_between

BASE = "22cbf17"
"""The last commit before the hot-path changes."""
REPEATS = 3
TARGET_SPEED_UP = 2.0
STRATEGY = "batched-dedup-budget"


def _run(checkout: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(checkout)}  # imports resolve to that checkout
    return subprocess.run(
        [sys.executable, *args], check=True, capture_output=True, text=True, cwd=checkout, env=env
    )


def _simulate_s(checkout: Path) -> tuple[float, int]:
    out = json.loads(_run(checkout, "tests/bench/bench_run.py", "support-bot", STRATEGY).stdout)
    return out["simulate_s"], out["turns"]


@pytest.fixture
def base(tmp_path):
    where = tmp_path / "base"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(where), BASE],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    yield where
    subprocess.run(
        ["git", "worktree", "remove", "--force", str(where)], cwd=ROOT, capture_output=True
    )


@pytest.mark.bench
def test_hot_path_against_the_code_before_it(base, tmp_path):
    times: dict[str, list[float]] = {"before": [], "now": []}
    turns = set()
    for _ in range(REPEATS):
        for side, checkout in (("before", base), ("now", ROOT)):
            seconds, n = _simulate_s(checkout)
            times[side].append(seconds)
            turns.add(n)
    summaries = {}
    for side, checkout in (("before", base), ("now", ROOT)):
        out = tmp_path / side
        _run(
            checkout, "-m", "memsim", "run", "support-bot", "-s", STRATEGY, "--out", str(out), "-q"
        )
        summaries[side] = (out / "summary.json").read_bytes()
    (n,) = turns
    before, now = statistics.median(times["before"]), statistics.median(times["now"])
    speed_up = before / now
    same = summaries["before"] == summaries["now"]
    lines = [
        f"Measured {date.today().isoformat()} on {machine()} with `make bench` "
        f"(`tests/bench/test_bench_hot_path.py`): `bench_run.py support-bot {STRATEGY}` "
        f"(1,000 users × 30 days, {n:,} turns, one process), {REPEATS} fresh processes "
        f"per checkout, alternating; commit {BASE} in a temporary git worktree.",
        "",
        "| checkout | simulate (s), each run | median | turns/s |",
        "|---|---|---|---|",
    ]
    for side, label in (("before", f"before ({BASE})"), ("now", "this commit")):
        runs = " / ".join(f"{t:.2f}" for t in times[side])
        median = statistics.median(times[side])
        lines.append(f"| {label} | {runs} | {median:.2f} | {n / median:,.0f} |")
    lines += [
        "",
        f"Speed-up {speed_up:.2f}× (target {TARGET_SPEED_UP:.0f}×); `memsim run support-bot "
        f"-s {STRATEGY}` writes {'the same' if same else 'different'} summary.json bytes "
        "in both checkouts.",
    ]
    write_between("hot-path", "\n".join(lines))
    assert same, "the hot-path changes changed a result"
    assert speed_up >= TARGET_SPEED_UP, f"{speed_up:.2f}× the previous code's speed"
