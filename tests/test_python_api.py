"""The Python API (``import memsim``): the README's snippet, and the same bytes as the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import memsim
from memsim.cli import app
from reports.numbers import dumps
from sim.config import ConfigError, Scenario

ROOT = Path(__file__).resolve().parent.parent


def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## From Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_snippet_runs_and_writes_what_memsim_run_writes(tmp_path, monkeypatch):
    code = readme_snippet().replace("users=100,\n    days=7", "users=8,\n    days=2")
    assert code != readme_snippet()  # the size was found and shrunk for the test
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    results = namespace["results"]
    assert set(results.summary["strategies"]) == {"naive-append", "batched-dedup-budget"}
    assert set(results.turns["strategy"]) == {"naive-append", "batched-dedup-budget"}
    assert len(namespace["daily"]) > 0
    out = tmp_path / "out" / "notebook"
    for name in ("summary.json", "turns.parquet", "report.md", "report.html", "metrics.prom"):
        assert (out / name).exists(), name


def test_api_and_cli_give_the_same_summary_bytes(tmp_path):
    results = memsim.run("tiny", seed=3, strategies=["naive-append"])
    out = tmp_path / "cli"
    done = CliRunner().invoke(
        app, ["run", "tiny", "--seed", "3", "-s", "naive-append", "--out", str(out), "-q"]
    )
    assert done.exit_code == 0, done.output
    assert dumps(results.summary) == (out / "summary.json").read_text(encoding="utf-8")
    assert results.store["strategy"].tolist() == ["naive-append"] * results.scenario.users


def test_a_scenario_object_runs_as_given():
    scenario = memsim.load_scenario("tiny", users=2, days=1)
    assert isinstance(scenario, Scenario) and scenario.users == 2
    results = memsim.run(scenario)
    assert results.summary["users"] == 2 and results.runs.keys() == set(scenario.strategies)
    with pytest.raises(ConfigError, match="takes no trace, settings or overrides"):
        memsim.run(scenario, users=3)


def test_bad_input_raises_the_cli_line():
    with pytest.raises(
        ConfigError, match=r"tiny.toml: --set 'strategy\.naive-append\.bogus' = 1: no such field"
    ):
        memsim.run("tiny", settings=["strategy.naive-append.bogus=1"])
