"""The first hour of a new user (issue 16, item 5): the shipped example scenario, a report
header that describes the run that happened, terminal tables that fit 80 columns, help
that shows flags as flags, a recommendation closing the findings, growth toward a memory
budget told from a leak, and charts and a page that keep strategies and tables readable.

The browser check of the 700 px page is in ``tests/test_report_browser.py``.
"""

from __future__ import annotations

import io
import re
from dataclasses import replace

import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest
import typer
from rich.cells import cell_len
from rich.console import Console
from typer.testing import CliRunner

import scenarios
from memsim.cli import app
from reports import alerts, charts, html, projection
from reports.compare import comparison_rows
from reports.markdown import MAX_FAILED_SHARE, RECALL_MARGIN, findings, recommendation
from reports.terminal import print_comparison
from sim.records import StrategyRun
from sim.workload import SECONDS_PER_DAY

runner = CliRunner()
BOX = re.compile(r"[\u2500-\u257f]")  # rich's box-drawing characters


def invoke(*args: str, columns: int = 200):
    return runner.invoke(app, list(args), env={"COLUMNS": str(columns)})


# -- b. the tour's scenario file ---------------------------------------------------------


def test_the_example_scenario_validates():
    result = invoke("validate", "examples/my-scenario.toml")
    assert result.exit_code == 0, result.stderr
    assert "examples/my-scenario.toml: ok (200 users × 14 days" in result.stdout
    scenario, _ = scenarios.load("examples/my-scenario.toml")
    assert scenario.embedder == "latent" and scenario.store == "numpy"  # top level, not [llm]


# -- c. the report's header is the run's size --------------------------------------------


def test_report_header_says_the_size_after_overrides(tmp_path):
    """tiny.toml describes "Six users over four days"; this run has 3 users over 2 days."""
    out = tmp_path / "small"
    result = invoke("run", "tiny", "--users", "3", "--days", "2", "--out", str(out), "-q")
    assert result.exit_code == 0, result.stderr
    first = (out / "report.md").read_text().split("\n\n")[1]
    assert first == (
        "**3 users × 2 simulated days**, seed 7. "
        "Scenario description: “Six users over four days; pinned by the golden tests.”"
    )
    page = (out / "report.html").read_text()
    assert '<p class="lede"><strong>3 users × 2 simulated days</strong>, seed 7.' in page
    assert "<dt>scenario description</dt>" in page


# -- d. terminal tables at 80 columns ----------------------------------------------------


def rendered(draw, width: int) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    draw(console)
    return console.export_text()


def words(text: str) -> set[str]:
    return set(BOX.sub(" ", text).split())


def assert_whole(text: str, width: int, names: list[str], cells: list[str]) -> None:
    """Nothing cut: no line too wide, no ellipsis, every name and every cell's words shown."""
    assert max(cell_len(line) for line in text.splitlines()) <= width
    assert "…" not in text
    shown = words(text)
    assert [n for n in names if n not in shown] == []
    assert sorted({w for c in cells for w in c.split()} - shown) == []


def _many(tiny_run, tiny_summary, copies: int):
    """tiny's strategies ``copies`` times over, renamed: a run of many strategies."""
    if copies == 1:
        return tiny_summary, tiny_run.runs
    names = [f"{r.strategy}-{i}" for i in range(copies) for r in tiny_run.runs]
    blocks = [tiny_summary["strategies"][r.strategy] for _ in range(copies) for r in tiny_run.runs]
    summary = {**tiny_summary, "strategies": dict(zip(names, blocks, strict=True))}
    runs = [replace(r, strategy=n) for r, n in zip(tiny_run.runs * copies, names, strict=True)]
    return summary, runs


@pytest.mark.parametrize("copies", [1, 2])
def test_comparison_table_fits_80_columns_whole(tiny_run, tiny_summary, copies):
    summary, runs = _many(tiny_run, tiny_summary, copies)
    text = rendered(lambda c: print_comparison(c, summary, runs), 80)
    rows = comparison_rows(summary, runs)
    names = [r.strategy for r in runs]
    assert_whole(text, 80, names, [c for row in rows for c in (row.label, *row.cells)])
    tables = text.count("measurement")  # the key column, repeated in every table
    assert tables == 1 if copies == 1 else tables >= 2  # three fit side by side; six do not
    wide = rendered(lambda c: print_comparison(c, summary, runs), 250)
    assert wide.count("measurement") == 1  # a wide terminal: one table, as before


def projection_document(models: list[str], strategies: list[str]) -> dict:
    """A projection of support-bot's size range with large figures and a saturated size."""
    sizes = [1_000, 10_000, 100_000, 1_000_000]
    rows = []
    for si, strategy in enumerate(strategies):
        for mi, model in enumerate(models):
            for users in sizes:
                saturated = users == sizes[-1]
                rows.append(
                    {
                        "strategy": strategy,
                        "model": model,
                        "users": users,
                        "simulated_users": min(users, 500),
                        "usd_per_month": 0.0365 * users * (1 + si) * (1 + 3 * mi),
                        "usd_per_user_per_month": 0.0365 * (1 + si) * (1 + 3 * mi),
                        "tokens_per_month": 355_861 * users,
                        "error_share": 0.818 if saturated else 0.0,
                        "timeout_share": 0.818 if saturated else 0.0,
                        "call_timeout_share": 0.909 if saturated else 0.0,
                        "latency_p99_s": 47.02 if saturated else 8.33,
                        "queue_mean_s": 49.55 if saturated else 0.0,
                    }
                )
    prices = {
        m: {"input_usd_per_million_tokens": 0.15, "output_usd_per_million_tokens": 0.6}
        for m in models
    }
    return {
        "scenario": "support-bot",
        "price_date": "2026-11-01",
        "sim_users": 500,
        "prices": prices,
        "sizes": [{"users": u} for u in sizes],
        "rows": rows,
    }


def test_projection_table_fits_80_columns_whole():
    names = ["naive-append", "per-turn-extract", "batched-dedup-budget"]
    document = projection_document(["gpt-4o-mini", "claude-sonnet-4-5"], names)
    text = rendered(lambda c: projection.print_projection(c, document), 80)
    table = text.split("rate limits:", 1)[0]  # the notes below are plain wrapped text
    cells = [c for r in document["rows"] for c in projection._cells(r)[2:]]
    usd = [projection._usd(r["usd_per_month"]) for r in document["rows"]]
    assert_whole(table, 80, names, cells[:2] + [c for c in cells if "%" in c] + usd)
    for figure in ("$36,500", "$438,000", "47.02", "49.55", "90.9%", "1M", "356B"):
        assert figure in words(table), figure
    assert table.count("(continued)") == 1


# -- e. --help shows flags as flags ------------------------------------------------------


def test_help_of_every_command_shows_no_value_for_a_flag():
    commands = list(typer.main.get_command(app).commands)
    assert {"run", "project", "check", "sweep", "validate"} <= set(commands)
    for args in ([], *([name] for name in commands)):
        result = invoke(*args, "--help", columns=120)
        assert result.exit_code == 0, args
        assert "<bool>" not in result.stdout, args
        assert "--help" in result.stdout
    quiet = next(line for line in invoke("run", "--help").stdout.splitlines() if "--quiet" in line)
    assert "<" not in quiet and "No progress bar" in quiet
    assert "<int range>" in invoke("run", "--help").stdout  # options with values keep a type


# -- f. the recommendation ---------------------------------------------------------------


def block(usd: float, recall: float, **more) -> dict:
    """A summary block with what the findings read; 100 users × 30 days unless told."""
    return {
        "usd_total": usd,
        "recall": recall,
        "tokens_per_day": [1000] * 30,
        "duplicate_ratio": 0.0,
        "error_turns": 0,
        "timeout_turns": 0,
        "turns": 1000,
        "memories_per_user_mean": 0.0,
    } | more


def summary_of(**blocks: dict) -> dict:
    return {"users": 100, "days": 30, "strategies": blocks}


@pytest.mark.parametrize(
    ("blocks", "expected"),
    [
        (  # the cheapest within 5 points of the best recall
            {"full": block(36.54, 1.0), "lean": block(16.02, 0.97), "mid": block(16.38, 0.979)},
            "- Ship **lean**: the cheapest within 5 points of the best recall (97.0% vs 100.0% "
            "for **full**; $0.1602 vs $0.3654 per user-month).",
        ),
        (  # the cheapest recalls too little: the best recall, and why not the cheaper one
            {"full": block(36.54, 1.0), "forgets": block(10.0, 0.80)},
            "- Ship **full**: the best recall (100.0%); the cheaper **forgets** recalls 80.0%, "
            "more than 5 points less ($0.3654 vs $0.1000 per user-month).",
        ),
        (  # one is both
            {"a": block(10.0, 0.99), "b": block(20.0, 0.95)},
            "- Ship **a**: the cheapest ($0.1000 per user-month) and the best recall (99.0%).",
        ),
        (  # cheap because it fails: left out
            {"fails": block(5.0, 0.99, error_turns=300), "ok": block(10.0, 0.98)},
            "- Ship **ok**: the cheapest ($0.1000 per user-month) and the best recall (98.0%) "
            "(not **fails**, which failed 30% of its turns).",
        ),
        (  # a trace without ground truth: cost alone
            {"a": block(10.0, 0.0, probes=0), "b": block(8.0, 0.0, probes=0)},
            "- Ship **b**: the cheapest ($0.0800 per user-month); recall is unavailable, so "
            "cost alone decides.",
        ),
    ],
    ids=["within-margin", "best-recall", "both", "failing-left-out", "no-recall"],
)
def test_recommendation_rule(blocks, expected):
    summary = summary_of(**blocks)
    assert recommendation(summary, list(blocks)) == [expected]
    assert findings(summary, list(blocks))[-1] == expected  # the findings end with it


def test_recommendation_constants_a_single_strategy_and_no_user_count():
    assert (RECALL_MARGIN, MAX_FAILED_SHARE) == (0.05, 0.01)
    assert recommendation(summary_of(only=block(1.0, 0.9)), ["only"]) == []
    # A summary without its user count (as some callers build them) ranks by the month.
    blocks = {"a": block(10.0, 0.99), "b": block(20.0, 0.95)}
    assert recommendation({"days": 30, "strategies": blocks}, ["a", "b"]) == [
        "- Ship **a**: the cheapest ($10.00 a month) and the best recall (99.0%)."
    ]


# -- g. growth toward a memory budget is not a leak --------------------------------------

DAYS = 21
TURNS_PER_DAY = 40


def growing_run(name: str, extra_per_day: int = 0) -> StrategyRun:
    """A run whose memory block grows 60 tokens a day to 1,200 (under a 1,500 budget).

    Each turn is one chat call of 500 + block + ``extra_per_day`` × day input tokens
    and 100 output tokens, so a turn's tokens grow exactly with its block, plus the extra.
    """
    day = np.repeat(np.arange(DAYS), TURNS_PER_DAY)
    start = day * SECONDS_PER_DAY + 3_600 + np.tile(np.arange(TURNS_PER_DAY), DAYS) * 600.0
    memory = np.minimum(60 * day, 1_200)
    n = len(day)
    turns = pd.DataFrame(
        {
            "user": np.zeros(n, dtype="int32"),
            "session": day.astype("int32"),
            "start_s": start,
            "memory_tokens": memory,
            "store_size": np.zeros(n, dtype="int32"),
            "retrieval_s": np.zeros(n),
        }
    )
    tokens_in = 500 + memory + extra_per_day * day
    calls = pd.DataFrame(
        {
            "user": np.zeros(n, dtype="int32"),
            "start_s": start,
            "endpoint": "llm",
            "purpose": "chat",
            "tokens_in": tokens_in,
            "tokens_out": np.full(n, 100),
            "usd": (tokens_in + 100) * 1e-7,
            "items": np.ones(n, dtype="int32"),
        }
    )
    store = pd.DataFrame({"day": np.arange(DAYS), "memories": np.zeros(DAYS, dtype="int32")})
    return StrategyRun(name, turns, calls, store, store.iloc[:0])


def growth_alert(run: StrategyRun, scenario: dict) -> dict:
    found = {a["rule"]: a for a in alerts.evaluate(run, scenario, DAYS)}
    return found["daily_tokens_growth"]


def test_a_leaky_strategy_without_a_budget_fires():
    alert = growth_alert(growing_run("per-turn-extract"), {})
    assert alert["fired"] and alert["first_fired_day"] == 6  # 960 / 750 tokens a turn: +28%
    assert alert["filling"] is None


def test_a_budgeted_strategy_still_filling_does_not_fire():
    alert = growth_alert(growing_run("batched-dedup-budget"), {})
    assert not alert["fired"] and alert["observed"] == pytest.approx(1.0)
    assert alert["filling"] == {
        "budget_tokens": 1_500,  # batched-dedup-budget's default
        "block_tokens_first_week": 180.0,
        "block_tokens_last_day": 1_200.0,
        "last_day": DAYS - 1,
    }
    # A budget too small to explain the growth excuses only the growth up to it.
    small = {"strategy": {"batched-dedup-budget": {"budget_tokens": 300}}}
    assert growth_alert(growing_run("batched-dedup-budget"), small)["fired"]


def test_a_budgeted_strategy_that_grows_beyond_its_block_fires():
    """Extraction prompts that grow by 40 tokens a day (a buffer never cleared) are a leak."""
    alert = growth_alert(growing_run("batched-dedup-budget", extra_per_day=40), {})
    assert alert["fired"] and alert["filling"] is None


def _summary(runs: list[StrategyRun]) -> dict:
    blocks = {}
    for run in runs:
        per_day = np.bincount(
            (run.calls["start_s"] // SECONDS_PER_DAY).astype(int),
            weights=run.calls["tokens_in"] + run.calls["tokens_out"],
        )
        evaluated = alerts.evaluate(run, {}, DAYS)
        blocks[run.strategy] = block(
            run.calls["usd"].sum(),
            0.97,
            tokens_per_day=[int(t) for t in per_day],
            alerts=alerts.summary_block(evaluated),
        )
    return {"users": 1, "days": DAYS, "strategies": blocks}


def test_findings_and_alerts_say_filling_not_leaking():
    runs = [growing_run("per-turn-extract"), growing_run("batched-dedup-budget")]
    summary = _summary(runs)
    lines = findings(summary, [r.strategy for r in runs])
    leak = [line for line in lines if "leaks tokens" in line]
    filling = [line for line in lines if "filling toward" in line]
    assert leak == [
        "- **per-turn-extract** leaks tokens: its daily tokens in the last week are 2.1× "
        "those of the first week."
    ]
    assert filling == [
        "- **batched-dedup-budget** is filling toward its budget of 1,500 tokens: day-21 "
        "block 1,200 tokens (mean per prompt); its daily tokens in the last week are 2.1× "
        "the first week's, growth that stops when the block reaches its budget: not a leak."
    ]
    fired = alerts.fired_lines(summary, ["batched-dedup-budget"])
    assert fired == [
        "- **batched-dedup-budget**: no alert fired (`daily_tokens_growth` held back: filling "
        "toward its budget of 1,500 tokens: day-21 block 1,200 tokens)."
    ]
    assert (
        "filling" in summary["strategies"]["batched-dedup-budget"]["alerts"]["daily_tokens_growth"]
    )
    assert (
        "filling" not in summary["strategies"]["per-turn-extract"]["alerts"]["daily_tokens_growth"]
    )


def test_memory_budget_comes_from_the_scenario_or_the_strategy_defaults(tiny, tiny_run):
    support_bot = scenarios.load("support-bot")[0]
    assert alerts.memory_budget(tiny, "batched-dedup-budget") == 120  # tiny.toml sets it
    assert alerts.memory_budget(tiny_run.resolved, "batched-dedup-budget") == 120
    assert alerts.memory_budget(support_bot, "lazy-retrieval") == 1_500  # a default
    assert alerts.memory_budget(support_bot, "mem0-like") == 1_500
    assert alerts.memory_budget(support_bot, "per-turn-extract") is None
    assert alerts.memory_budget({}, "naive-append") is None


# -- h. charts and the page --------------------------------------------------------------


def test_latency_chart_gives_each_strategy_its_own_panel():
    names = ["naive-append", "per-turn-extract", "batched-dedup-budget", "mem0-like"]
    # The same latency for all: on one panel the lines would lie on top of each other.
    frame = pd.DataFrame(
        [(n, d, 10, 2.8, 6.0, 8.3) for n in names for d in (1, 2, 3)],
        columns=["strategy", "day", "turns", "p50", "p95", "p99"],
    )
    palette = charts.colors(names)
    with mpl.rc_context(charts.STYLE):
        fig = charts.latency_per_day(frame, palette)
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_lines()]
    assert [ax.get_title() for ax in panels] == names
    for ax, name in zip(panels, names, strict=True):
        assert {line.get_color() for line in ax.get_lines()} == {palette[name]}
        assert [line.get_linestyle() for line in ax.get_lines()] == ["-", "--", ":"]
    assert len({ax.get_ylim() for ax in panels}) == 1  # one scale


def _dash_period(style: str, width: float) -> float:
    """Points one repeat of a dash pattern spans at line width ``width`` (matplotlib's)."""
    name = {"--": "dashed", ":": "dotted", "-.": "dashdot"}[style]
    return sum(mpl.rcParams[f"lines.{name}_pattern"]) * width


def test_projection_legend_draws_each_model_with_its_line_style():
    models = ["gpt-4o-mini", "gpt-4.1-mini", "claude-haiku-4-5", "gemini-2.5-flash"]
    document = projection_document(models, ["naive-append", "batched-dedup-budget"])
    fig = projection.draw_chart(document)
    ax = fig.axes[0]
    legend = ax.get_legend()
    key = dict(zip([t.get_text() for t in legend.get_texts()], legend.legend_handles, strict=True))
    size = legend.get_texts()[0].get_fontsize()
    for model in models:
        styles = {ln.get_linestyle() for ln in ax.get_lines() if ln.get_label().endswith(model)}
        handle = key[model]
        assert styles == {handle.get_linestyle()}, model
        assert handle.get_marker() in ("None", "", None)  # a marker would hide the dashes
        if handle.get_linestyle() != "-":  # two repeats of the pattern fit in the entry
            period = _dash_period(handle.get_linestyle(), handle.get_linewidth())
            assert legend.handlelength * size >= 2 * period, model
    assert "≥1% of turns or calls timed out" in key


def test_html_tables_scroll_in_their_own_box(tiny_run, tiny_summary):
    page = html.render(
        tiny_summary,
        tiny_run.resolved,
        comparison_rows(tiny_summary, tiny_run.runs),
        [],
        [],
    )
    assert ".table-scroll { overflow-x: auto; }" in html.STYLE
    for table in ("comparison-table", "alerts-table"):
        assert f'<div class="table-scroll">\n<table id="{table}">' in page
