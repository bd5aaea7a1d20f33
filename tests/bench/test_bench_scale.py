"""Scale benchmarks (``make bench``): sharded throughput and peak memory against turns.

Each measurement runs in a fresh process (``bench_scale.py``). The figures are
written into docs/benchmarks.md between the ``bench:scale`` markers.
"""

from __future__ import annotations

import json
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


MEMORY_TURNS = (1_000_000, 3_000_000, 10_000_000)
MAIN_LIMIT_MIB = 1_536  # the main process under 1.5 GB at 10M turns
GROWTH_LIMIT = 1.10  # and growing less than 10% from 3M to 10M turns


def _memory_rows() -> list[dict]:
    rows = []
    for turns in MEMORY_TURNS:
        users = round(turns / TURNS_PER_USER_MONTH)
        rows.append(measure("batched-dedup-budget", users, 30, 2))
    return rows


@pytest.mark.bench
def test_scale_throughput_10k_users():
    speed = _speed_rows()
    lines = [
        f"Measured {date.today().isoformat()} on {machine()} with `make bench` "
        "(one fresh process per row; wall time covers workload generation, simulation, "
        "spooling the shards to disk and the summary; shard_users = 2,500).",
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
def test_scale_peak_memory_is_flat_in_turns():
    rows = _memory_rows()
    small, mid, large = rows
    lines = [
        f"Measured {date.today().isoformat()} on {machine()} with `make bench` "
        "(`tests/bench/test_bench_scale.py`: one fresh process per row running what "
        "`memsim run --workers 2` runs, outputs and reports included; shard_users = 2,500).",
        "",
        "| batched-dedup-budget, 30 days, 2 workers | users | shards | turns | run (s) "
        "| write outputs (s) | peak RSS, main (MiB) | peak RSS, largest worker (MiB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['turns'] / 1e6:.0f}M turns | {r['users']:,} | {r['shards']} | {r['turns']:,} "
            f"| {r['wall_s']:.0f} | {r['write_s']:.0f} | {r['peak_rss_mib']:,.0f} "
            f"| {r['worker_peak_rss_mib']:,.0f} |"
        )
    growth = large["peak_rss_mib"] / mid["peak_rss_mib"]
    slope = (large["peak_rss_mib"] - mid["peak_rss_mib"]) * 2**20 / (large["turns"] - mid["turns"])
    lines += [
        "",
        f"From {mid['turns'] / 1e6:.0f}M to {large['turns'] / 1e6:.0f}M turns the main "
        f"process's peak grows {growth - 1:+.1%} ({slope:,.1f} bytes per additional turn); "
        f"at {large['turns'] / 1e6:.0f}M turns it is {large['peak_rss_mib']:,.0f} MiB "
        f"(targets: under {MAIN_LIMIT_MIB:,} MiB, growth under {GROWTH_LIMIT - 1:.0%}).",
    ]
    write_between("scale-memory", "\n".join(lines))
    assert small["turns"] < mid["turns"] < large["turns"]
    assert large["peak_rss_mib"] < MAIN_LIMIT_MIB
    assert growth < GROWTH_LIMIT, f"main process grows {growth - 1:.1%} from 3M to 10M turns"
