"""Charts, report.html and `memsim report`: the numbers behind every chart are pinned for
tiny.toml (regenerate after an intended change with

    MEMSIM_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_reports.py

and explain the change in the commit message), and reports redraw from saved files.
"""

import json
import os
import shutil
from html import escape
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from memsim.cli import app
from reports import chartdata, charts, html
from reports.chartdata import INJECTED_BIN_EDGES, pareto_front
from reports.compare import Row, comparison_rows
from reports.results import load_results
from reports.views import PROMPT_COLUMNS, view
from sim.config import ConfigError
from sim.records import StrategyRun

GOLDEN = Path(__file__).parent / "golden" / "tiny_charts.json"
CHART_NAMES = [spec.name for spec in charts.SPECS]
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A folder written by `memsim run tiny`, as a user gets it."""
    out = tmp_path_factory.mktemp("reports") / "tiny"
    result = invoke("run", "tiny", "--out", str(out), "-q")
    assert result.exit_code == 0, result.stderr
    return out


def _copy(saved: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(saved, tmp_path / "copy"))


def _jsonable(frames: dict[str, pd.DataFrame]) -> dict:
    def cell(value):
        return round(value, 6) + 0.0 if isinstance(value, float) else value

    return {
        name: [{k: cell(v) for k, v in row.items()} for row in frame.to_dict("records")]
        for name, frame in frames.items()
    }


def _dump(golden: dict) -> str:
    """JSON with one chart row per line, for readable diffs."""
    blocks = [
        f"  {json.dumps(name)}: [\n"
        + ",\n".join(f"    {json.dumps(row, ensure_ascii=False)}" for row in rows)
        + "\n  ]"
        for name, rows in golden.items()
    ]
    return "{\n" + ",\n".join(blocks) + "\n}\n"


# -- the numbers behind the charts -------------------------------------------------


def test_chart_data_matches_golden(saved):
    results = load_results(saved)
    actual = _jsonable(chartdata.chart_data(results.summary, results.runs()))
    if os.environ.get("MEMSIM_UPDATE_GOLDEN"):
        GOLDEN.write_text(_dump(actual))
    expected = json.loads(GOLDEN.read_text())
    assert list(actual) == list(expected)
    for name in expected:
        assert actual[name] == expected[name], name


def test_chart_golden_is_not_trivial():
    """Guards the golden file: every chart has real, consistent, distinct numbers."""
    g = {name: pd.DataFrame(rows) for name, rows in json.loads(GOLDEN.read_text()).items()}
    # The charts are those of `memsim run tiny`: the default, cached run.
    summary = json.loads(
        (Path(__file__).parent / "golden" / "tiny_cached_summary.json").read_text()
    )
    names, days = list(summary["strategies"]), summary["days"]
    cost = g["cost_per_day"]
    assert len(cost) == len(names) * days and (cost["tokens"] > 0).all()
    for name, block in summary["strategies"].items():
        own = cost[cost["strategy"] == name]
        assert own["tokens"].sum() == block["tokens_total"]
        assert own["usd"].sum() == pytest.approx(block["usd_total"], abs=1e-5)
    mem = g["memories_over_time"].set_index(["strategy", "day"])
    assert (mem.loc["naive-append", "mean"] == 0).all()
    extract = mem.loc["per-turn-extract"]
    assert extract["mean"].iloc[-1] > extract["mean"].iloc[0] > 0
    assert (extract["p99"] >= extract["mean"]).all()
    latency = g["latency_per_day"]
    assert set(latency["strategy"]) == set(names) and (latency["p50"] > 0).all()
    assert ((latency["p50"] <= latency["p95"]) & (latency["p95"] <= latency["p99"])).all()
    assert latency.groupby("strategy")["turns"].sum().to_dict() == {
        n: b["turns"] - b["error_turns"] for n, b in summary["strategies"].items()
    }
    hist = g["injected_tokens_histogram"]
    assert len(hist) == len(names) * len(INJECTED_BIN_EDGES)
    assert hist.groupby("strategy")["share"].sum().round(6).eq(1.0).all()
    assert (
        hist[hist["strategy"] != "naive-append"]
        .groupby("strategy")["prompts"]
        .agg(lambda p: (p > 0).sum())
        >= 2
    ).all()
    points = g["recall_vs_cost"]
    assert points["pareto"].any() and points["usd_per_month"].nunique() == len(names)
    cache = g["prompt_cache_per_day"]
    assert len(cache) == len(names) * days
    for name, block in summary["strategies"].items():
        own = cache[cache["strategy"] == name]
        assert own["cached"].sum() == block["cached_input_tokens"]
        assert (own["cached"] + own["uncached"]).tolist() == block["llm_input_tokens_per_day"]
    assert cache.loc[cache["strategy"] == "naive-append", "cached"].sum() > 0
    purposes = g["tokens_by_purpose"].set_index(["strategy", "purpose"])["tokens"]
    assert purposes["per-turn-extract", "extract"] > 0 and purposes["naive-append", "extract"] == 0
    parts = g["prompt_parts"].set_index(["strategy", "part"])["tokens"]
    assert parts["naive-append", "memory"] == 0 and parts["per-turn-extract", "memory"] > 0
    assert parts["naive-append", "history"] > parts["batched-dedup-budget", "history"]


@pytest.mark.parametrize(
    ("cost", "recall", "front"),
    [
        ([], [], []),
        ([1.0], [0.5], [True]),
        ([1.0, 2.0], [0.5, 0.9], [True, True]),  # dearer but recalls more: both on the front
        ([1.0, 2.0], [0.9, 0.5], [True, False]),  # dearer and recalls less
        ([1.0, 1.0], [0.5, 0.9], [False, True]),  # same cost, less recall
        ([1.0, 2.0], [0.7, 0.7], [True, False]),  # same recall, dearer
        ([1.0, 1.0], [0.7, 0.7], [True, True]),  # identical points do not dominate each other
        ([3.0, 1.0, 2.0], [0.7, 0.5, 0.8], [False, True, True]),
        ([1.0, 2.0, 3.0, 4.0], [0.9, 0.8, 0.95, 0.95], [True, False, True, False]),
    ],
)
def test_pareto_front(cost, recall, front):
    assert pareto_front(cost, recall) == front


def test_recall_vs_cost_is_monthly_and_flags_the_front():
    def block(usd, recall):
        return {"usd_total": usd, "recall": recall}

    summary = {
        "days": 10,
        "strategies": {"a": block(1.0, 0.9), "b": block(2.0, 0.8), "c": block(3.0, 0.95)},
    }
    frame = chartdata.recall_vs_cost(summary)
    assert frame.to_dict("list") == {
        "strategy": ["a", "b", "c"],
        "usd_per_month": [3.0, 6.0, 9.0],
        "recall": [0.9, 0.8, 0.95],
        "pareto": [True, False, True],
    }


def test_injected_tokens_bins_are_fixed_and_exact():
    tokens = [0, 0, 1, 99, 100, 1599, 1600, 3199, 3200, 50_000]
    turns = pd.DataFrame({"start_s": 0.0, "error": "", "latency_s": 1.0, "memory_tokens": tokens})
    for column in PROMPT_COLUMNS:
        turns[column] = turns.get(column, 0)
    store = pd.DataFrame({"day": [0], "user": [0], "memories": [0], "duplicates": [0]})
    run = StrategyRun("s", turns, pd.DataFrame(), store, store)
    frame = chartdata.injected_tokens_histogram({"strategies": {"s": {}}}, [view(run, 1)])
    assert frame["bin"].tolist() == [
        "0", "1–99", "100–199", "200–399", "400–799", "800–1,599", "1,600–3,199", "3,200+"
    ]  # fmt: skip
    assert frame["prompts"].tolist() == [2, 2, 1, 0, 0, 1, 2, 2]
    assert frame["share"].sum() == pytest.approx(1.0)


# -- memsim run / memsim report -------------------------------------------------------


def test_run_writes_charts_and_html(saved):
    for name in CHART_NAMES:
        assert (saved / "charts" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in (saved / "charts" / f"{name}.svg").read_bytes()
    page = (saved / "report.html").read_text()
    for name in CHART_NAMES:
        assert page.count(f'id="chart-{name}"') == 1
    assert page.count('src="data:image/svg+xml;base64,') == len(CHART_NAMES)
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    for name in json.loads((saved / "summary.json").read_text())["strategies"]:
        assert f"<th scope=col>{name}</th>" in page


def test_report_redraws_from_saved_files_byte_identically(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    before = {p: (folder / p).read_bytes() for p in ("report.md", "report.html")}
    svgs = {p.name: p.read_bytes() for p in (folder / "charts").glob("*.svg")}
    shutil.rmtree(folder / "charts")
    for name in before:
        (folder / name).unlink()
    result = invoke("report", str(folder))
    assert result.exit_code == 0, result.stderr
    assert (folder / "report.md").read_bytes() == before["report.md"]
    assert (folder / "report.html").read_bytes() == before["report.html"]  # deterministic SVGs
    assert {p.name: p.read_bytes() for p in (folder / "charts").glob("*.svg")} == svgs
    assert len(svgs) == len(CHART_NAMES)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda f: shutil.rmtree(f), "copy"),
        (lambda f: (f / "summary.json").unlink(), "summary.json"),
        (lambda f: _truncate(f / "summary.json"), "summary.json"),
        (lambda f: (f / "summary.json").write_text('{"scenario": "tiny"}'), "summary.json"),
        (lambda f: (f / "config.json").write_text("[]"), "config.json"),
        (lambda f: _truncate(f / "turns.parquet"), "turns.parquet"),
        (lambda f: (f / "calls.parquet").write_bytes(b"not parquet"), "calls.parquet"),
        (lambda f: pd.DataFrame({"day": [0]}).to_parquet(f / "store.parquet"), "store.parquet"),
    ],
    ids=[
        "no-folder",
        "no-summary",
        "truncated-summary",
        "summary-keys",
        "config-not-object",
        "truncated-turns",
        "garbage-calls",
        "store-columns",
    ],
)
def test_damaged_folder_fails_with_one_line_naming_the_file(saved, tmp_path, damage, named):
    folder = _copy(saved, tmp_path)
    damage(folder)
    with pytest.raises(ConfigError) as err:
        load_results(folder)
    assert named in str(err.value) and "\n" not in str(err.value)
    result = invoke("report", str(folder))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and named in result.stderr
    assert result.stderr.startswith("memsim: error: ")


# -- report.html ---------------------------------------------------------------------


def test_html_escapes_everything_it_inserts(saved):
    results = load_results(saved)
    hostile = "<script>alert('x')</script> & co"
    config = {**results.config, "description": hostile}
    summary = {**results.summary, "scenario": hostile}
    chart = charts.Chart("c<1>", hostile, hostile, png=b"", svg=b"<svg/>")
    page = html.render(
        summary, config, [Row(hostile, [hostile])], [f"- **{hostile}** costs"], [chart]
    )
    assert "<script>" not in page and "alert(&#x27;x&#x27;)" in page
    assert "&lt;script&gt;" in page and "&amp; co" in page
    assert "<strong>&lt;script&gt;" in page  # findings keep their bold, escaped
    assert 'id="chart-c&lt;1&gt;"' in page


def test_html_table_and_findings_match_the_markdown(saved):
    results = load_results(saved)
    page = (saved / "report.html").read_text()
    markdown = (saved / "report.md").read_text()
    for row in comparison_rows(results.summary, results.runs()):
        cells = "".join(f"<td>{escape(c)}</td>" for c in row.cells)
        assert f"<th scope=row>{escape(row.label)}</th>{cells}" in page
        assert f"| {row.label} | {' | '.join(row.cells)} |" in markdown
    assert page.count("<li>") == markdown.split("## Comparison")[0].count("\n- ") + 4  # + notes
    assert "<details>" in page and "&quot;budget_tokens&quot;: 120" in page
