"""A large run read back shard by shard gives the bytes of the run held in memory.

The exact sums and percentiles of reports/exact.py against math.fsum and
np.percentile; then whole runs: a sharded run spooled to disk (reports/spool.py)
and summarized piece by piece against the same run joined in memory, with the
piecewise paths forced (second percentile passes, replays of a few days at a time).
"""

from __future__ import annotations

import gc
import math

import numpy as np
import pandas as pd
import pytest

import scenarios
from reports import alerts, views
from reports.exact import CountedPercentiles, ExactSum, Percentiles
from reports.numbers import dumps
from reports.output import summarize, write_outputs
from reports.spool import Spool, whole
from sim.executors import run_tasks
from sim.runner import _InShardOrder, run_scenario


@pytest.mark.parametrize("seed", range(40))
def test_exact_sum_is_fsum_in_any_pieces(seed):
    rng = np.random.default_rng(seed)
    values = rng.lognormal(-6, 3, 500) * rng.choice([-1, 1], 500)
    values[:5] = [0.0, 1e300, -1e300, 5e-324, 1e-310]  # cancellation and subnormals
    total = ExactSum()
    for piece in np.array_split(rng.permutation(values), 7):
        total.add(piece)
    assert total.value == math.fsum(values)


@pytest.mark.parametrize("seed", range(40))
def test_percentiles_in_two_passes_are_numpys(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    values = rng.lognormal(0, 1, n) if seed % 2 else np.round(rng.normal(5, 2, n), 1)
    qs = (0, 50, 95, 99, 99.9, 100)
    stats = Percentiles(qs, keep=0)  # nothing kept: counted, then collected
    pieces = np.array_split(values, 5)
    for piece in pieces:
        stats.count(piece)
    assert stats.needs_second_pass
    for piece in reversed(pieces):
        stats.collect(piece)
    assert stats.at() == [float(np.percentile(values, q)) for q in qs]
    counted = CountedPercentiles()
    integers = rng.integers(0, 2_000, n)
    for piece in np.array_split(integers, 3):
        counted.count(piece)
    assert [counted.at(q) for q in qs] == [float(np.percentile(integers, q)) for q in qs]
    assert counted.max() == integers.max()


def test_no_values_have_no_percentile():
    assert Percentiles((50,)).at() == [None]
    assert CountedPercentiles().at(50) is None


def test_shards_reach_the_sink_in_shard_order():
    got = []

    class Sink:
        def add(self, runs):
            got.append(runs)

    order = _InShardOrder(Sink())
    for index in (2, 0, 3, 1):
        order(index, [index])
    assert got == [[0], [1], [2], [3]]


def _square(x: int) -> int:
    return x * x


def test_results_not_kept_are_only_handed_over():
    seen = {}
    kept = run_tasks(_square, [(i,) for i in range(4)], keep=False, on_done=seen.__setitem__)
    assert kept == [None] * 4 and seen == {0: 0, 1: 1, 2: 4, 3: 9}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """support-bot, 90 users × 8 days in 3 shards: joined in memory, and spooled."""
    scenario, _ = scenarios.load("support-bot")
    scenario = scenario.with_overrides(users=90, days=8, shard_users=30)
    memory = run_scenario(scenario, "support-bot")
    names = [run.strategy for run in memory.runs]
    spool = Spool(tmp_path_factory.mktemp("spool"), names)
    spooled = run_scenario(scenario, "support-bot", sink=spool)
    return memory, spooled


def test_a_spooled_run_has_the_summary_bytes_of_the_run_in_memory(pair, monkeypatch):
    memory, spooled = pair
    assert all(run.shards == 3 for run in spooled.runs)
    # The piecewise paths of a large run, forced on a small one.
    monkeypatch.setattr(Percentiles, "KEEP", 10)
    monkeypatch.setattr(alerts, "RETRIEVAL_BATCH", 50)
    assert dumps(summarize(spooled)) == dumps(summarize(memory))


def test_alerts_replayed_a_day_at_a_time_fire_when_in_memory(pair, monkeypatch):
    memory, spooled = pair
    low = alerts.AlertThresholds(retrieval_p99_s=0.0, memories_per_user=3)
    at = [run.strategy for run in memory.runs].index("batched-dedup-budget")
    want = alerts.evaluate(memory.runs[at], {}, 8, low)
    monkeypatch.setattr(alerts, "RETRIEVAL_BATCH", 50)
    assert want == alerts.evaluate(spooled.runs[at], {}, 8, low)
    assert {a["rule"] for a in want if a["fired"]} >= {"retrieval_p99", "memories_per_user"}


def test_report_figures_read_in_pieces_are_those_in_memory(pair, monkeypatch):
    memory, spooled = pair
    monkeypatch.setattr(views, "LATENCY_BATCH", 50)
    for held, read in zip(memory.runs, spooled.runs, strict=True):
        assert views.view(read, 8) == views.view(held, 8)


def test_the_spooled_files_hold_the_rows_of_the_run_in_memory(pair, tmp_path):
    memory, spooled = pair
    write_outputs(memory, tmp_path / "memory")
    write_outputs(spooled, tmp_path / "spooled")
    for name in ("turns.parquet", "calls.parquet", "store.parquet"):
        held = pd.read_parquet(tmp_path / "memory" / name)
        read = pd.read_parquet(tmp_path / "spooled" / name)
        for frame in (held, read):
            for column in frame.select_dtypes("category"):
                frame[column] = frame[column].astype(str)
        pd.testing.assert_frame_equal(read, held)
    for held, read in zip(memory.runs, spooled.runs, strict=True):
        pd.testing.assert_frame_equal(whole(read).calls, held.calls)


def test_a_temporary_spool_is_removed_once_no_run_reads_it(tmp_path):
    folder = tmp_path / "spool"
    runs = Spool(folder, ["a", "b"], temporary=True).finish()
    assert sorted(p.name for p in folder.iterdir())[0] == "a.calls.parquet"
    first = runs.pop(0)
    gc.collect()
    assert folder.is_dir()  # "b" still reads it
    del runs, first
    gc.collect()
    assert not folder.exists()
