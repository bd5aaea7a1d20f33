"""The command line: list, validate, run; bad input exits 2 with one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from memsim.cli import app
from reports.output import FILES

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_list_shows_strategies_and_scenarios_one_line_each():
    result = invoke("list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    for name in ("naive-append", "per-turn-extract", "batched-dedup-budget"):
        assert sum(line.split()[:2] == ["strategy", name] for line in lines) == 1
    for name in ("support-bot", "tiny"):
        assert sum(line.split()[:2] == ["scenario", name] for line in lines) == 1


def test_validate_ok_and_bad(tmp_path):
    assert invoke("validate", "support-bot").exit_code == 0
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nusers = -3\n')
    result = invoke("validate", str(bad))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert str(bad) in result.stderr and "users" in result.stderr and "-3" in result.stderr


def test_unknown_strategy_flag_exits_2_with_suggestion(tmp_path):
    result = invoke("run", "tiny", "--strategy", "naive-apend", "--out", str(tmp_path / "o"), "-q")
    assert result.exit_code == 2
    assert "did you mean 'naive-append'" in result.stderr
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "o" / "summary.json").exists()


def test_missing_scenario_file_exits_2():
    result = invoke("validate", "no/such/file.toml")
    assert result.exit_code == 2
    assert "no/such/file.toml: no such file" in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_out_dir_exits_2(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result = invoke("run", "tiny", "--out", str(locked / "o"), "-q")
    assert result.exit_code == 2


def test_out_path_that_is_a_file_exits_2(tmp_path):
    target = tmp_path / "a-file"
    target.write_text("keep me")
    result = invoke("run", "tiny", "--out", str(target), "-q")
    assert result.exit_code == 2
    assert target.read_text() == "keep me"


def test_run_writes_every_output(tmp_path):
    out = tmp_path / "out"
    result = invoke("run", "tiny", "--out", str(out), "--users", "3", "--days", "2")
    assert result.exit_code == 0, result.stderr
    assert {p.name for p in out.iterdir()} == set(FILES)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["users"] == 3 and summary["days"] == 2
    turns = pd.read_parquet(out / "turns.parquet")
    assert set(turns["strategy"]) == set(summary["strategies"])
    assert len(turns) == sum(s["turns"] for s in summary["strategies"].values())
    report = (out / "report.md").read_text()
    for name in summary["strategies"]:
        assert name in report
    assert "batched-dedup-budget" in result.stdout  # the comparison table
    config = json.loads((out / "config.json").read_text())
    assert config["strategy"]["batched-dedup-budget"]["budget_tokens"] == 120


def test_same_seed_gives_byte_identical_summary(tmp_path):
    """Two separate processes, so no cache or global state is shared."""
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        subprocess.run(
            [sys.executable, "-m", "memsim", "run", "tiny", "--out", str(out), "-q"],
            check=True,
            cwd=Path(__file__).parent,
        )
    assert (outs[0] / "summary.json").read_bytes() == (outs[1] / "summary.json").read_bytes()


def test_different_seed_gives_different_summary(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert invoke("run", "tiny", "--out", str(a), "-q").exit_code == 0
    assert invoke("run", "tiny", "--out", str(b), "--seed", "8", "-q").exit_code == 0
    assert (a / "summary.json").read_bytes() != (b / "summary.json").read_bytes()


def test_outputs_are_ordinary_readable_files(tmp_path):
    out = tmp_path / "out"
    assert (
        invoke("run", "tiny", "--users", "2", "--days", "1", "--out", str(out), "-q").exit_code == 0
    )
    umask = os.umask(0)
    os.umask(umask)
    for name in ("summary.json", "report.html", "turns.parquet"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    assert not list(out.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("scenario", "out"),
    [
        ("support-bot", "out/support-bot"),
        ("scenarios/tiny.toml", "out/tiny"),
        ("my.v2", "out/my.v2"),
    ],
)
def test_make_run_writes_to_the_scenarios_stem(scenario, out):
    """`make run SCENARIO=path.toml` writes to out/<stem>/, not out/<path>/."""
    root = Path(__file__).parents[1]
    done = subprocess.run(
        ["make", "-s", "-n", "run", f"SCENARIO={scenario}"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split()[-2:] == ["--out", out]
