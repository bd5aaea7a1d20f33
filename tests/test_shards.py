"""Sharded runs: the split, the pro-rata limits, and results independent of the workers."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from helpers import make_scenario
from memsim.cli import app
from reports.numbers import dumps
from reports.output import summarize
from sim.runner import run_scenario
from sim.shards import plan, shard_scenario

TURN_KEY = ["user", "session", "turn"]


def _scenario(**fields):
    base = {"users": 24, "days": 3, "shard_users": 10, "seed": 5}
    return make_scenario(**{**base, **fields})


def test_plan_covers_every_user_once_in_near_equal_shards():
    shards = plan(_scenario(users=103, shard_users=25))
    assert len(shards) == 5
    users = [u for s in shards for u in s.users]
    assert users == list(range(103))
    sizes = [len(s.users) for s in shards]
    assert max(sizes) - min(sizes) <= 1
    assert sum(s.share for s in shards) == pytest.approx(1.0)
    assert [s.index for s in shards] == list(range(5))


def test_a_scenario_within_shard_users_is_one_shard():
    (shard,) = plan(_scenario(users=10, shard_users=10))
    assert shard.users == range(10) and shard.share == 1.0


def test_a_shard_holds_its_pro_rata_share_of_every_shared_limit():
    scenario = _scenario(
        users=40,
        shard_users=10,
        limits={"rpm": 1000, "tpm": 80_000, "concurrency": 10},
        embedding={"limits": {"rpm": 400, "tpm": 1_000_000, "concurrency": 2}},
        vector_store={"concurrency": 8},
        background_workers=6,
    )
    shard = plan(scenario)[1]
    scaled = shard_scenario(scenario, shard)
    assert shard.share == 0.25
    assert (scaled.limits.rpm, scaled.limits.tpm, scaled.limits.concurrency) == (250, 20_000, 3)
    assert scaled.embedding.limits.rpm == 100
    assert scaled.embedding.limits.concurrency == 1  # 0.5 rounds to at least one
    assert scaled.vector_store.concurrency == 2
    assert scaled.background_workers == 2  # 1.5 rounds half up
    assert scaled.users == 40  # the population the report speaks of
    assert scaled.limits.timeout_s == scenario.limits.timeout_s


def _summary_text(scenario, **parallel) -> str:
    return dumps(summarize(run_scenario(scenario, **parallel)))


def test_summary_is_byte_identical_for_one_two_and_three_workers():
    scenario = _scenario(strategies=["naive-append", "batched-dedup-budget"])
    assert len(plan(scenario)) == 3
    one = _summary_text(scenario)
    assert _summary_text(scenario, workers=2) == one
    assert _summary_text(scenario, workers=3) == one


def test_summary_is_byte_identical_on_local_ray():
    scenario = _scenario(strategies=["batched-dedup-budget"])
    assert _summary_text(scenario, executor="ray", workers=2) == _summary_text(scenario)


def test_with_limits_that_never_bind_sharding_changes_no_user_turn():
    """Users are independent except through shared limits and the load on the chat
    endpoint (which widens its latency jitter): without the latter, each turn is the same."""
    loose = {
        "strategies": ["per-turn-extract", "batched-dedup-budget"],
        "llm": {"jitter_sigma_load": 0.0},
    }
    sharded = run_scenario(_scenario(**loose)).runs
    whole = run_scenario(_scenario(shard_users=1000, **loose)).runs
    for a, b in zip(sharded, whole, strict=True):
        left = a.turns.sort_values(TURN_KEY, ignore_index=True)
        right = b.turns.sort_values(TURN_KEY, ignore_index=True)
        pd.testing.assert_frame_equal(left, right)
        assert len(a.calls) == len(b.calls)
        assert a.calls["usd"].sum() == pytest.approx(b.calls["usd"].sum(), rel=1e-12)
        pd.testing.assert_frame_equal(
            a.store_final.sort_values("user", ignore_index=True), b.store_final
        )


def test_binding_limits_are_split_not_copied():
    """Shards with a copy of the full limit each would queue less than the whole run;
    with a third each they queue at least as much (a pooled limit is the more efficient)."""
    tight = {"limits": {"tpm": 300, "timeout_s": 36_000}, "strategies": ["naive-append"]}
    whole = run_scenario(_scenario(shard_users=1000, **tight)).runs[0]
    sharded = run_scenario(_scenario(**tight)).runs[0]
    assert whole.turns["queue_s"].mean() > 1.0
    assert sharded.turns["queue_s"].mean() >= whole.turns["queue_s"].mean()


def test_progress_adds_up_every_shard_of_every_strategy():
    totals: dict[str, int] = {}
    done: dict[str, int] = {}

    def factory(name: str, total: int):
        totals[name] = totals.get(name, 0) + total

        def advance(turns: int) -> None:
            done[name] = done.get(name, 0) + turns

        return advance

    result = run_scenario(_scenario(strategies=["naive-append"]), progress=factory, workers=2)
    turns = len(result.runs[0].turns)
    assert totals == {"naive-append": turns}
    assert done == {"naive-append": turns}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--executor", "dask"], "--executor: unknown executor 'dask'"),
        (["--workers", "0"], "--workers"),
    ],
)
def test_bad_parallel_options_exit_2(tmp_path, args, message):
    result = CliRunner().invoke(app, ["run", "tiny", "-q", "--out", str(tmp_path), *args])
    assert result.exit_code == 2
    assert message in result.output
