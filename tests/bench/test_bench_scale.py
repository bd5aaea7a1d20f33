"""Scale benchmarks (``make bench``): sharded throughput and peak memory against turns.

Each measurement runs in a fresh process (``bench_scale.py``). The figures are
written into docs/benchmarks.md between the ``bench:scale`` markers.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from test_bench import ROOT, machine, write_between

TARGET_TURNS_PER_S = 50_000
TURNS_PER_USER_MONTH = 63.2  # support-bot: about 2.1 user turns per user per day


def measure(strategy: str, users: int, days: int, workers: int) -> dict:
    script = Path(__file__).parent / "bench_scale.py"
    args = [sys.executable, str(script), "support-bot", strategy, str(users), str(days)]
    out = subprocess.run(
        [*args, str(workers)], check=True, capture_output=True, text=True, cwd=ROOT
    )
    return json.loads(out.stdout)


def _speed_rows() -> list[dict]:
    rows = []
    for strategy in ("batched-dedup-budget", "per-turn-extract", "naive-append"):
        for workers in (1, 2):
            rows.append(measure(strategy, 10_000, 30, workers) | {"strategy": strategy})
    return rows


def _memory_rows() -> list[dict]:
    rows = []
    for turns in (1_000_000, 3_000_000):
        users = round(turns / TURNS_PER_USER_MONTH)
        rows.append(measure("batched-dedup-budget", users, 30, 1))
    return rows


@pytest.mark.bench
def test_scale_throughput_10k_users():
    speed = _speed_rows()
    lines = [
        f"Measured {date.today().isoformat()} on {machine()} with `make bench` "
        "(one fresh process per row; wall time covers workload generation, simulation "
        "and joining the shards; shard_users = 2,500).",
        "",
        "| support-bot, 10,000 users × 30 days | workers | shards | turns | wall (s) "
        "| turns/s | peak RSS, main / largest worker (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in speed:
        rate = r["turns"] / r["wall_s"]
        lines.append(
            f"| {r['strategy']} | {r['workers']} | {r['shards']} | {r['turns']:,} "
            f"| {r['wall_s']:.1f} | {rate:,.0f} | {r['peak_rss_mib']:,.0f} / "
            f"{r['worker_peak_rss_mib']:,.0f} |"
        )
    best = max(speed, key=lambda r: r["turns"] / r["wall_s"])
    rate = best["turns"] / best["wall_s"]
    met = "meets" if rate >= TARGET_TURNS_PER_S else "is below"
    lines += [
        "",
        f"The fastest row ({best['strategy']}, {best['workers']} workers), {rate:,.0f} "
        f"turns/s, {met} the {TARGET_TURNS_PER_S:,} turns/s target.",
    ]
    write_between("scale-speed", "\n".join(lines))
    assert all(r["turns"] == speed[0]["turns"] for r in speed)  # one workload for every row


@pytest.mark.bench
def test_scale_peak_memory_grows_sub_linearly_in_turns():
    small, large = _memory_rows()
    assert large["turns"] > 2.5 * small["turns"]
    growth = large["peak_rss_mib"] / small["peak_rss_mib"]
    exponent = math.log(growth) / math.log(large["turns"] / small["turns"])
    slope = (large["peak_rss_mib"] - small["peak_rss_mib"]) * 2**20
    slope /= large["turns"] - small["turns"]
    records = large["records_mib"] * 2**20 / large["turns"]
    lines = [
        f"Measured {date.today().isoformat()} on {machine()} with `make bench` "
        "(one fresh process per row, shard_users = 2,500).",
        "",
        "| batched-dedup-budget, 30 days, 1 process | users | shards | turns | wall (s) "
        "| peak RSS (MiB) | kept records (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in (small, large):
        lines.append(
            f"| {r['turns'] / 1e6:.1f}M turns | {r['users']:,} | {r['shards']} | {r['turns']:,} "
            f"| {r['wall_s']:.0f} | {r['peak_rss_mib']:,.0f} | {r['records_mib']:,.0f} |"
        )
    lines += [
        "",
        f"Peak RSS grows {growth:.2f}× for {large['turns'] / small['turns']:.2f}× the turns: "
        f"RSS ∝ turns^{exponent:.2f} over this range, a slope of {slope:,.0f} bytes per "
        f"additional turn. The per-turn and per-call records kept for the report take "
        f"{records:,.0f} bytes per turn.",
    ]
    write_between("scale-memory", "\n".join(lines))
    assert exponent < 1.0, f"peak memory grows linearly or worse: exponent {exponent:.2f}"
