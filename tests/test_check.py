"""CI mode: baseline, check, exit codes, Markdown and JUnit outputs."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reports.check import METRICS, Comparison, parse_tolerances
from sim.cli import app
from sim.config import ConfigError

runner = CliRunner()
LEAKY = str(Path(__file__).parent / "data" / "leaky.toml")


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200", "GITHUB_STEP_SUMMARY": ""})


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("baseline") / "tiny.json"
    result = invoke("baseline", "tiny", "-o", str(path), "-q")
    assert result.exit_code == 0, result.stderr
    return path


def test_unchanged_code_passes(baseline, tmp_path):
    result = invoke("check", "tiny", "--baseline", str(baseline), "--out", str(tmp_path), "-q")
    assert result.exit_code == 0, result.stderr
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    invariants = [c for c in suite if c.get("classname").endswith(".invariant")]
    names = {c.get("name") for c in invariants}
    assert {
        "injected_tokens_within_budget",
        "memories_per_user_within_cap",
        "extraction_calls_per_session_within_limit",
        "no_cross_user_memory",
    } <= names
    assert int(suite.get("tests")) == 3 * len(METRICS) + len(invariants)
    assert suite.get("failures") == "0"
    assert "within tolerance" in (tmp_path / "check.md").read_text()


def test_leaky_variant_fails_and_names_the_regressed_metrics(baseline, tmp_path):
    result = invoke("check", LEAKY, "--baseline", str(baseline), "--out", str(tmp_path), "-q")
    assert result.exit_code == 1
    regressed = {
        line.split()[2]
        for line in result.stderr.splitlines()
        if line.startswith("regressed: batched-dedup-budget")
    }
    assert {
        "injected_tokens_p99",
        "injected_tokens_mean",
        "memories_per_user_mean",
        "duplicate_ratio",
    } <= regressed
    assert not any(
        line.startswith("regressed: naive-append") for line in result.stderr.splitlines()
    )
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    failed = {
        c.get("name")
        for c in suite
        if c.get("classname") == "memsim.batched-dedup-budget" and c.find("failure") is not None
    }
    assert failed == regressed
    assert "❌" in (tmp_path / "check.md").read_text()


def test_a_wide_tolerance_lets_it_pass(baseline, tmp_path):
    wide = [f"--tolerance={m}=100000%" for m in METRICS]
    result = invoke(
        "check", LEAKY, "--baseline", str(baseline), *wide, "--out", str(tmp_path), "-q"
    )
    assert result.exit_code == 0, result.stdout


def test_corrupt_baseline_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"memsim_baseline": 1, "scenario_sha')
    result = invoke("check", "tiny", "--baseline", str(bad), "-q")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert str(bad) in result.stderr and "not a memsim baseline" in result.stderr


def test_missing_baseline_exits_2(tmp_path):
    result = invoke("check", "tiny", "--baseline", str(tmp_path / "none.json"), "-q")
    assert result.exit_code == 2 and "no such baseline file" in result.stderr


def test_baseline_of_another_scenario_exits_2(baseline, tmp_path):
    result = invoke("check", "support-bot", "--baseline", str(baseline), "-q")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "the scenario changed since the baseline was written" in result.stderr


def test_baseline_missing_a_metric_exits_2(baseline, tmp_path):
    data = json.loads(baseline.read_text())
    del data["strategies"]["naive-append"]["recall"]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data))
    result = invoke("check", "tiny", "--baseline", str(broken), "-q")
    assert result.exit_code == 2 and "strategies.naive-append.recall" in result.stderr


def test_tolerances_parse_and_reject():
    tolerances = parse_tolerances(["usd_total=2%", "recall=0.01"])
    assert tolerances["usd_total"] == 0.02 and tolerances["recall"] == 0.01
    assert tolerances["tokens_total"] == 0.05
    for bad in ("usd=2%", "usd_total", "usd_total=lots", "usd_total=-1%"):
        with pytest.raises(ConfigError):
            parse_tolerances([bad])


@pytest.mark.parametrize(
    ("metric", "baseline", "now", "verdict"),
    [
        ("usd_total", 100, 105, "ok"),
        ("usd_total", 100, 105.1, "regressed"),
        ("usd_total", 100, 90, "improved"),
        ("recall", 0.9, 0.8, "regressed"),  # lower recall is worse
        ("recall", 0.8, 0.9, "improved"),
        ("error_turns", 0, 3, "regressed"),  # from zero: any rise
        ("error_turns", 0, 0, "ok"),
    ],
)
def test_verdicts(metric, baseline, now, verdict):
    assert Comparison("s", metric, baseline, now, 0.05).verdict == verdict
