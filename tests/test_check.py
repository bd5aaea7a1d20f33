"""CI mode: baseline, check, exit codes, the table, Markdown and JUnit outputs."""

from __future__ import annotations

import json
import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from memsim.cli import app
from reports.check import (
    METRICS,
    CheckedInvariant,
    Comparison,
    markdown,
    outcome,
    parse_invariant_scopes,
    parse_tolerances,
)
from reports.invariants import NAMES, Invariant
from reports.terminal import print_check
from sim.config import ConfigError

runner = CliRunner()
LEAKY = str(Path(__file__).parent / "data" / "leaky.toml")
README = Path(__file__).parents[1] / "README.md"
EXTRACTION = "extraction_calls_per_session_within_limit"


def invoke(*args: str, columns: int = 200):
    env = {"COLUMNS": str(columns), "GITHUB_STEP_SUMMARY": ""}
    return runner.invoke(app, list(args), env=env)


def table(stdout: str, part: str = "metrics") -> dict[tuple[str, str], list[str]]:
    """One part of the check's table as ``{(strategy, name): [cells..., verdict]}``.

    ``metrics``: rows against the baseline, by metric; ``invariants``: rows under
    each strategy's ``invariant`` heading, by the quantity measured.
    """
    rows, strategy, in_part = {}, None, False
    for line in stdout.splitlines():
        cells = line.split()
        if line.startswith("wrote "):
            break
        if line.startswith("strategy: "):
            strategy, in_part = cells[1], part == "metrics"
        elif cells[:2] == ["invariant", "limit"]:
            in_part = part == "invariants"
        elif strategy and in_part and len(cells) >= 2:
            rows[strategy, cells[0]] = cells[1:]
    return rows


def readme_ci_recipe() -> list[list[str]]:
    """The commands of the README's CI section, as written there (without the program)."""
    section = README.read_text().split("## In CI:", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block, "the README's CI section has no sh code block"
    commands = [
        shlex.split(line, comments=True)
        for line in block.group(1).replace("\\\n", " ").splitlines()
    ]
    commands = [argv for argv in commands if argv]
    assert [Path(argv[0]).name for argv in commands] == ["memsim", "memsim"]
    assert [argv[1] for argv in commands] == ["baseline", "check"]
    return [argv[1:] for argv in commands]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("baseline") / "tiny.json"
    result = invoke("baseline", "tiny", "-o", str(path), "-q")
    assert result.exit_code == 0, result.stderr
    return path


def test_unchanged_code_passes(baseline, tmp_path):
    result = invoke("check", "tiny", "--baseline", str(baseline), "--out", str(tmp_path), "-q")
    assert result.exit_code == 0, result.stderr
    assert "memsim check tiny: passed" in result.stdout
    metrics, invariants = table(result.stdout), table(result.stdout, "invariants")
    for strategy in ("naive-append", "per-turn-extract", "batched-dedup-budget"):
        assert metrics[strategy, "usd_total"][-1] == "ok"
        limit, _, verdict = invariants[strategy, "extraction_calls_per_session_max"][1:]
        assert (limit, verdict) == ("10", "ok")  # the row: ≤ 10, the most measured, ok
    assert invariants["batched-dedup-budget", "injected_tokens_max"][:2] == ["≤", "120"]
    assert invariants["batched-dedup-budget", "memories_per_user_max"][:2] == ["≤", "6"]
    assert len(metrics) == 3 * len(METRICS)
    assert {row[-1] for row in [*metrics.values(), *invariants.values()]} == {"ok"}
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
    # The table (printed with -q too) shows the same rows as failed, and only them.
    rows = table(result.stdout)
    shown = {name for (s, name), cells in rows.items() if cells[-1] == "regressed"}
    assert {s for (s, _), cells in rows.items() if cells[-1] == "regressed"} == {
        "batched-dedup-budget"
    }
    assert shown == regressed
    assert f"memsim check tiny: FAILED: {len(regressed)} regressed" in result.stdout


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


# -- the README's CI recipe, as written ------------------------------------------------


@pytest.fixture(scope="module")
def recipe_folder(tmp_path_factory) -> tuple[Path, list[list[str]]]:
    """A fresh folder where the README's baseline command has run, and the recipe."""
    folder = tmp_path_factory.mktemp("ci-recipe")
    write_baseline, check = readme_ci_recipe()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        result = invoke(*write_baseline)
    assert result.exit_code == 0, result.stderr
    return folder, [write_baseline, check]


def test_readme_ci_recipe_passes_on_an_unchanged_checkout(recipe_folder, monkeypatch):
    folder, (_, check) = recipe_folder
    monkeypatch.chdir(folder)
    result = invoke(*check, columns=80)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "invariant broken" not in result.stderr and "regressed:" not in result.stderr
    assert "memsim check support-bot: passed" in result.stdout
    metrics, invariants = table(result.stdout), table(result.stdout, "invariants")
    assert {strategy for strategy, _ in [*metrics, *invariants]} == {"batched-dedup-budget"}
    assert {cells[-1] for cells in metrics.values()} <= {"ok", "improved"}
    assert {name: cells[-1] for (_, name), cells in invariants.items()} == {
        "injected_tokens_max": "ok",
        "memories_per_user_max": "ok",
        "extraction_calls_per_session_max": "ok",
        "cross_user_memory_prompts": "ok",
    }
    assert invariants["batched-dedup-budget", "injected_tokens_max"][:2] == ["≤", "1,500"]
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    suite = ET.parse(folder / "out" / "support-bot-check" / "junit.xml").getroot()
    assert suite.get("failures") == "0" and suite.get("skipped") == "0"


def test_readme_ci_recipe_fails_on_a_leak(recipe_folder, monkeypatch):
    """The same check with batched-dedup-budget's deduplication off: exit 1, rows regressed."""
    folder, (_, check) = recipe_folder
    monkeypatch.chdir(folder)
    leak = ["--set", "strategy.batched-dedup-budget.exact_dedup=false"]
    leak += ["--set", "strategy.batched-dedup-budget.dedup_threshold=1.01"]
    result = invoke(*check, *leak, "--out", "leak", columns=80)
    assert result.exit_code == 1, result.stdout + result.stderr
    rows = table(result.stdout)
    for metric in ("injected_tokens_p99", "memories_per_user_mean", "duplicate_ratio"):
        assert rows["batched-dedup-budget", metric][-1] == "regressed", rows
    assert "support-bot: FAILED:" in result.stdout
    assert "regressed: batched-dedup-budget injected_tokens_p99" in result.stderr


# -- invariants: in the table, and which strategies they apply to ----------------------


@pytest.fixture(scope="module")
def long_sessions(tmp_path_factory) -> tuple[Path, list[str]]:
    """A per-turn-extract baseline of tiny with sessions long enough to break the limit.

    per-turn-extract makes an extraction call on every turn: with about 12 turns a
    session some session makes more than 10.
    """
    longer = ["--set", "workload.turns_per_session_mean=12"]
    path = tmp_path_factory.mktemp("long") / "long.json"
    result = invoke("baseline", "tiny", "-s", "per-turn-extract", *longer, "-o", str(path), "-q")
    assert result.exit_code == 0, result.stderr
    return path, longer


def test_a_broken_invariant_fails_with_its_row_in_the_table(long_sessions, tmp_path):
    path, longer = long_sessions
    result = invoke("check", "tiny", "-b", str(path), *longer, "--out", str(tmp_path), "-q")
    assert result.exit_code == 1
    cells = table(result.stdout, "invariants")[
        "per-turn-extract", "extraction_calls_per_session_max"
    ]
    assert cells[:2] == ["≤", "10"] and int(cells[2]) > 10 and cells[-1] == "FAILED", cells
    assert "memsim check tiny: FAILED: 1 invariant broken" in result.stdout
    assert result.stderr.startswith(f"invariant broken: per-turn-extract {EXTRACTION}: at most ")
    assert result.stderr.count("\n") == 1
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    assert suite.get("failures") == "1"
    assert "❌ FAILED" in (tmp_path / "check.md").read_text()


def test_an_invariant_not_applied_is_skipped_and_passes(long_sessions, tmp_path):
    path, longer = long_sessions
    result = invoke(
        "check",
        "tiny",
        "-b",
        str(path),
        *longer,
        f"--invariant={EXTRACTION}=",
        "--out",
        str(tmp_path),
        "-q",
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    cells = table(result.stdout, "invariants")[
        "per-turn-extract", "extraction_calls_per_session_max"
    ]
    assert cells[-1] == "skipped" and int(cells[-2]) > 10  # still measured and shown
    assert "memsim check tiny: passed" in result.stdout
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    assert (suite.get("failures"), suite.get("skipped")) == ("0", "1")
    case = next(c for c in suite if c.get("name") == EXTRACTION)
    assert case.find("skipped") is not None


def test_check_selects_strategies_of_the_baseline(baseline, tmp_path):
    result = invoke(
        "check", "tiny", "-b", str(baseline), "-s", "naive-append", "--out", str(tmp_path), "-q"
    )
    assert result.exit_code == 0, result.stderr
    assert {strategy for strategy, _ in table(result.stdout)} == {"naive-append"}
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    assert {c.get("classname").split(".")[1] for c in suite} == {"naive-append"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-s", "mem0-like"], "--strategy: 'mem0-like' is not in the baseline"),
        (["-s", "no-such-strategy"], "--strategy: unknown strategy 'no-such-strategy'"),
        (["--invariant", "no_such_invariant=naive-append"], "expected NAME=STRATEGY"),
        (["--invariant", f"{EXTRACTION}"], "expected NAME=STRATEGY"),
        (
            ["-s", "naive-append", "--invariant", f"{EXTRACTION}=per-turn-extract"],
            "'per-turn-extract' is not a checked strategy (checked: naive-append)",
        ),
    ],
)
def test_bad_selection_exits_2_with_one_line(baseline, args, message):
    result = invoke("check", "tiny", "-b", str(baseline), *args, "-q")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr


def test_invariant_scopes_default_to_every_checked_strategy():
    checked = ["naive-append", "per-turn-extract"]
    scopes = parse_invariant_scopes([], checked)
    assert scopes == dict.fromkeys(NAMES, frozenset(checked))
    scopes = parse_invariant_scopes(
        [f"{EXTRACTION}=naive-append", f"{EXTRACTION}=", "no_cross_user_memory="], checked
    )
    assert scopes[EXTRACTION] == {"naive-append"}
    assert scopes["no_cross_user_memory"] == frozenset()
    assert scopes["injected_tokens_within_budget"] == frozenset(checked)


def _worst_case_check() -> tuple[list[Comparison], list[CheckedInvariant]]:
    """Rows as wide as a check makes them: long names, big numbers, every verdict."""
    long_name = "a-strategy-with-a-longish-name"
    comparisons = [
        Comparison(long_name, "extraction_calls_per_session_mean", 1.23456789e8, 9.8765e10, 0.05),
        Comparison(long_name, "retrieval_latency_p99_s", 0.123456, 0.0123456, 0.05),
    ]
    inv = Invariant(EXTRACTION, False, "at most 16", "extraction_calls_per_session_max", 16, 10)
    cross = Invariant("no_cross_user_memory", True, "none", "cross_user_memory_prompts", 0, 0)
    invariants = [CheckedInvariant(long_name, inv), CheckedInvariant(long_name, cross)]
    invariants.append(CheckedInvariant(long_name, inv, applies=False))
    return comparisons, invariants


def test_the_table_fits_80_columns_and_marks_every_failed_row():
    comparisons, invariants = _worst_case_check()
    console = Console(width=80, record=True, color_system=None)
    print_check(console, comparisons, invariants, "memsim check support-bot")
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text  # nothing cut short
    rows = [line.split() for line in text.splitlines()]
    named = {c.metric for c in comparisons} | {i.invariant.measure for i in invariants}
    assert [(r[0], r[-1]) for r in rows if r and r[0] in named] == [
        ("extraction_calls_per_session_mean", "regressed"),
        ("retrieval_latency_p99_s", "improved"),
        ("extraction_calls_per_session_max", "FAILED"),
        ("cross_user_memory_prompts", "ok"),
        ("extraction_calls_per_session_max", "skipped"),
    ]
    assert "support-bot: FAILED: 1 regressed, 1 invariant broken" in text
    assert outcome(comparisons, invariants) == "FAILED: 1 regressed, 1 invariant broken"


def test_markdown_shows_each_invariant_with_measure_limit_and_verdict():
    comparisons, invariants = _worst_case_check()
    text = markdown(comparisons, "support-bot", invariants)
    assert text.startswith("### memsim check: support-bot — ❌ 1 regressed, 1 invariant broken")
    assert (
        f"| {EXTRACTION} | extraction_calls_per_session_max | 16 | ≤ 10 | ❌ FAILED | at most 16 |"
        in text
    )
    assert f"| {EXTRACTION} | extraction_calls_per_session_max | 16 | ≤ 10 | skipped" in text


def test_the_example_workflow_runs_its_check_as_written(baseline, tmp_path, monkeypatch):
    """The workflow's check command, with tiny and a tiny baseline in place of its files."""
    workflow = (README.parent / "examples" / "ci" / "memsim-check.yml").read_text()
    command = re.search(r"^\s*(memsim check .*?[^\\])$", workflow, re.DOTALL | re.MULTILINE)
    assert command, "the workflow has no `memsim check` step"
    argv = shlex.split(command.group(1).replace("\\\n", " "))
    assert argv[:3] == ["memsim", "check", "scenarios/my-bot.toml"]
    argv[argv.index("memsim/baseline.json")] = str(baseline)
    monkeypatch.chdir(tmp_path)
    result = invoke("check", "tiny", *argv[3:])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert (tmp_path / "memsim-check" / "junit.xml").exists()
    assert "memsim check tiny: passed" in result.stdout  # -q: the table still prints
