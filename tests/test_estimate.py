"""`memsim run` estimates turns, time and peak memory first, and refuses what won't fit."""

import json

import pytest
from typer.testing import CliRunner

import scenarios
import strategies
from memsim.cli import app
from sim import estimate as model
from sim.runner import run_scenario

runner = CliRunner()


@pytest.mark.parametrize(("name", "users", "days"), [("tiny", 6, 4), ("support-bot", 60, 10)])
def test_expected_turns_are_within_a_tenth_of_the_simulated_ones(name, users, days):
    scenario = scenarios.load(name)[0].with_overrides(
        users=users, days=days, strategies=["naive-append"]
    )
    simulated = len(run_scenario(scenario).runs[0].turns)
    assert abs(model.expected_turns(scenario) - simulated) / simulated < 0.10


def test_estimate_adds_strategies_and_splits_over_workers():
    scenario = scenarios.load("support-bot")[0]
    one = model.estimate(scenario, set(strategies.external_strategies()))
    assert one.turns == 3 * model.expected_turns(scenario) == 3 * 63_000
    assert one.peak_bytes == model.BASE_BYTES + model.BYTES_PER_TURN * one.turns
    expected_s = 63_000 * sum(1 / r for r in model.TURNS_PER_S.values())
    assert one.wall_s == pytest.approx(expected_s)
    if (model.os.cpu_count() or 1) >= 2:
        two = model.estimate(scenario, set(), workers=2)
        assert two.wall_s == pytest.approx(expected_s / (2 * model.WORKER_EFFICIENCY))
    real = scenario.with_overrides(strategies=["external-mem0"])
    slow = model.estimate(real, {"external-mem0"})
    assert slow.wall_s == pytest.approx(63_000 / model.EXTERNAL_TURNS_PER_S)


def test_a_run_that_would_not_fit_is_refused_with_its_estimate(tmp_path, monkeypatch):
    monkeypatch.setattr(model, "available_memory", lambda: 100 * 2**20)
    out = tmp_path / "out"
    (out).mkdir()
    (out / "summary.json").write_text("{}")  # a user's earlier results stay as they are
    result = runner.invoke(app, ["run", "tiny", "--out", str(out)], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "tiny.toml" in lines[0]
    assert "turns" in lines[0] and "of 0.1 GB available" in lines[0] and "--force" in lines[0]
    assert (out / "summary.json").read_text() == "{}"
    forced = runner.invoke(app, ["run", "tiny", "-q", "--force", "--out", str(out)])
    assert forced.exit_code == 0, forced.output
    assert json.loads((out / "summary.json").read_text())["scenario"] == "tiny"


def test_the_estimate_is_printed_before_the_run_and_quiet_with_q(tmp_path):
    small = ["run", "tiny", "--users", "2", "--days", "1"]
    loud = runner.invoke(app, [*small, "--out", str(tmp_path / "a")])
    assert loud.exit_code == 0 and "memsim run: about 30 turns" in loud.output
    quiet = runner.invoke(app, [*small, "-q", "--out", str(tmp_path / "b")])
    assert quiet.exit_code == 0 and "estimated" not in quiet.output


def test_a_sharded_run_is_estimated_to_hold_one_shard_per_process():
    scenario = scenarios.load("support-bot")[0].with_overrides(strategies=["naive-append"])
    three, ten = (scenario.with_overrides(users=u) for u in (47_468, 158_228))
    flat = model.estimate(ten, set(), 2).peak_bytes / model.estimate(three, set(), 2).peak_bytes
    assert flat == pytest.approx(1.0, abs=0.01)  # shards of nearly the same size
    alone = model.estimate(ten, set(), 1)  # one process keeps a little heap per turn
    assert alone.peak_bytes > model.estimate(three, set(), 1).peak_bytes
    assert alone.peak_bytes < model.BASE_BYTES + model.BYTES_PER_TURN * alone.turns / 3
