"""The leak-incident scenario at full size (``make bench``), next to the incident's figures.

Runs ``memsim run leak-incident --workers 2`` (10,000 users × 30 days) in a fresh
process and writes the table into docs/benchmarks.md between the
``bench:leak-incident`` markers. Run alone on a finished output folder:
``python tests/bench/test_bench_incident.py OUTDIR`` prints the section.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_bench import ROOT, machine, write_between

LEAK, FIX = "per-turn-extract", "batched-dedup-budget"
DAY = 86_400.0


def _p99(turns: pd.DataFrame, first: int, last: int) -> float:
    """p99 latency of the answered turns that started on days ``first``..``last - 1``."""
    day = turns["start_s"] // DAY
    ok = turns[(turns["error"] == "") & (day >= first) & (day < last)]
    return float(np.percentile(ok["latency_s"], 99))


def figures(out: Path) -> dict[str, dict[str, float]]:
    """The compared figures of each strategy, from a run's output folder."""
    summary = json.loads((out / "summary.json").read_text())
    turns = pd.read_parquet(out / "turns.parquet")
    days = summary["days"]
    result = {}
    for name, block in summary["strategies"].items():
        per_day = np.array(block["tokens_per_day"], dtype=float)
        own = turns[turns["strategy"] == name]
        result[name] = {
            "turns": block["turns"],
            "day1": per_day[0],
            "week1": per_day[:7].mean(),
            "week4": per_day[-7:].mean(),
            "last3": per_day[-3:].mean(),
            "p99_day1": _p99(own, 0, 1),
            "p99_last3": _p99(own, days - 3, days),
            "p99_month": block["latency_p99_s"],
            "memories_mean": block["memories_per_user_mean"],
            "memories_max": block["memories_per_user_max"],
            "injected_mean": block["injected_tokens_mean"],
            "usd": block["usd_total"],
        }
    return result


def section(fig: dict[str, dict[str, float]], wall_s: float | None) -> str:
    """The markdown between the bench markers."""
    leak, fix = fig[LEAK], fig[FIX]
    timing = f"; {wall_s:.0f} s" if wall_s is not None else ""

    def m(x: float) -> str:
        return f"{x / 1e6:.2f}M"

    rows = [
        ("daily tokens, day 1", "about 2M", m(leak["day1"]), m(fix["day1"])),
        ("daily tokens, mean of the first week", "", m(leak["week1"]), m(fix["week1"])),
        ("daily tokens, mean of the last week", "", m(leak["week4"]), m(fix["week4"])),
        (
            "daily tokens, mean of the last 3 days",
            "toward about 6.5M",
            m(leak["last3"]),
            m(fix["last3"]),
        ),
        (
            "p99 latency, day 1",
            "about 1.2 s",
            f"{leak['p99_day1']:.2f} s",
            f"{fix['p99_day1']:.2f} s",
        ),
        (
            "p99 latency, last 3 days",
            "toward about 4.7 s",
            f"{leak['p99_last3']:.2f} s",
            f"{fix['p99_last3']:.2f} s",
        ),
        ("p99 latency, whole month", "", f"{leak['p99_month']:.2f} s", f"{fix['p99_month']:.2f} s"),
        (
            "memories per user at the end (mean / max)",
            "",
            f"{leak['memories_mean']:.1f} / {leak['memories_max']}",
            f"{fix['memories_mean']:.1f} / {fix['memories_max']}",
        ),
        (
            "injected memory tokens per prompt (mean)",
            "",
            f"{leak['injected_mean']:.0f}",
            f"{fix['injected_mean']:.0f}",
        ),
        ("USD, month", "", f"${leak['usd']:,.2f}", f"${fix['usd']:,.2f}"),
    ]
    lines = [
        f"Measured {date.today().isoformat()} on {machine()} with `make bench` "
        f"(`memsim run leak-incident --workers 2`: 10,000 users × 30 days, seed 42, "
        f"{leak['turns']:,} turns per strategy{timing}). The parameters and why they were "
        "chosen are in the header of `scenarios/leak-incident.toml`. Daily tokens are "
        "`summary.json` `tokens_per_day` (every billed call, embeddings included); p99 is "
        "over the answered turns of the days named (`turns.parquet`).",
        "",
        f"| figure | target (the incident) | `{LEAK}` (the leak) | `{FIX}` (the fix) |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
        "",
        f"The leak: daily tokens ×{leak['last3'] / leak['day1']:.2f} from day 1 to the "
        f"last three days (the incident: ×3.25), p99 ×{leak['p99_last3'] / leak['p99_day1']:.2f} "
        f"(the incident: ×3.9). The fix ends the month at "
        f"{fix['last3'] / leak['last3']:.0%} of the leak's daily tokens and "
        f"{fix['p99_last3'] / leak['p99_last3']:.0%} of its p99.",
    ]
    return "\n".join(lines)


@pytest.mark.bench
def test_leak_incident_full_size(tmp_path):
    out = tmp_path / "leak"
    start = time.perf_counter()
    command = ["memsim", "run", "leak-incident", "--workers", "2", "-q", "--out", str(out)]
    subprocess.run([sys.executable, "-m", "memsim", *command[1:]], check=True, cwd=ROOT)
    wall = time.perf_counter() - start
    fig = figures(out)
    write_between("leak-incident", section(fig, wall))
    leak, fix = fig[LEAK], fig[FIX]
    # The incident's shape: the leak climbs about threefold, the fix stays low.
    assert 2.5 < leak["last3"] / leak["day1"] < 4.5
    assert 2.5 < leak["p99_last3"] / leak["p99_day1"] < 5.0
    assert fix["last3"] < 0.3 * leak["last3"]
    assert fix["p99_last3"] < 0.3 * leak["p99_last3"]


if __name__ == "__main__":
    print(section(figures(Path(sys.argv[1])), None))
