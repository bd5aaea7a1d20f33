"""``memsim project``: sizes, rows, prices, rate limits at scale, determinism, bad input."""

import ast
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import scenarios
from memsim.cli import app
from memsim.studies import projection as study
from reports import projection
from reports.output import summarize
from sim.config import ConfigError
from sim.runner import run_scenario
from sim.sizes import parse_size, parse_sizes, size_label

runner = CliRunner()
MODELS = ("gpt-4o-mini", "gpt-4.1-mini")
SIZES = (6, 60, 600)

# tiny's users with an account of 60 requests per minute: plenty for 6 users,
# far too little for 600.
TIGHT = """
name = "tight"
seed = 7
users = 6
days = 4
strategies = ["naive-append", "batched-dedup-budget"]

[workload]
facts_per_user = 6
sessions_per_user_per_day = 1.0
turns_per_session_mean = 5

[limits]
rpm = 60
"""


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def project_cli(scenario: str, out, *extra: str):
    models = [arg for m in MODELS for arg in ("--model", m)]
    sizes = ",".join(str(s) for s in SIZES)
    return invoke(
        "project",
        scenario,
        "--users",
        sizes,
        *models,
        "--sim-users",
        "6",
        "--out",
        str(out),
        *extra,
    )


@pytest.fixture(scope="module")
def tiny_projection(tmp_path_factory):
    out = tmp_path_factory.mktemp("projection")
    result = project_cli("tiny", out)
    assert result.exit_code == 0, result.stderr
    return out, result, json.loads((out / "projection.json").read_text())


def rows_of(document, strategy, model):
    return [r for r in document["rows"] if (r["strategy"], r["model"]) == (strategy, model)]


# -- sizes --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "users"),
    [
        ("2500", 2500),
        ("1k", 1_000),
        ("10k", 10_000),
        ("1.5k", 1_500),
        ("1M", 1_000_000),
        ("2.5m", 2_500_000),
        (" 100K ", 100_000),
        ("10_000", 10_000),
        ("1", 1),
    ],
)
def test_parse_size(text, users):
    assert parse_size(text) == users


@pytest.mark.parametrize("text", ["", "0", "-5", "1.2345k", "abc", "1x", "1e3", "k", "0.5", "1kk"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_parse_sizes_sorts_and_dedupes_and_fails_in_one_line():
    assert parse_sizes("1M,1k,10k,1k") == [1_000, 10_000, 1_000_000]
    with pytest.raises(ConfigError, match=r"^--users: '10x': expected"):
        parse_sizes("1k,10x")
    with pytest.raises(ConfigError):
        parse_sizes(" , ")


@pytest.mark.parametrize("users", [1, 999, 1_000, 1_500, 2_345, 10_000, 1_000_000, 2_500_000])
def test_size_label_round_trips(users):
    assert parse_size(size_label(users).replace(",", "")) == users


def test_bad_size_on_the_command_line_exits_2_with_one_line(tmp_path):
    result = invoke("project", "tiny", "--users", "1k,lots", "--out", str(tmp_path / "o"), "-q")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "'lots'" in result.stderr
    assert not (tmp_path / "o").exists()


# -- scaling ------------------------------------------------------------------------
def test_limits_are_scaled_pro_rata_and_unscaled_when_everyone_is_simulated():
    scn = scenarios.load("support-bot")[0]
    same = study.scaled_scenario(scn, 300, 500)
    assert same.users == 300 and same.limits == scn.limits
    assert same.embedding.limits == scn.embedding.limits
    scaled = study.scaled_scenario(scn, 100_000, 500)
    assert scaled.users == 500
    assert math.isclose(scaled.limits.rpm, scn.limits.rpm / 200)
    assert math.isclose(scaled.limits.tpm, scn.limits.tpm / 200)
    assert scaled.limits.concurrency == 1  # 200 / 200
    assert math.isclose(scaled.embedding.limits.tpm, scn.embedding.limits.tpm / 200)
    assert scaled.limits.timeout_s == scn.limits.timeout_s
    assert study.scaled_scenario(scn, 10_000_000, 500).limits.concurrency == 1  # floor


def test_unscaled_projection_equals_a_run_with_that_model(tiny):
    """n == N: the projection is the plain run's cost, re-priced exactly per model."""
    document = study.project(tiny, "tiny", [tiny.users], list(MODELS), sim_users=50)
    for model in MODELS:
        scn = tiny.model_copy(update={"llm": tiny.llm.model_copy(update={"model": model})})
        summary = summarize(run_scenario(scn))
        for name, block in summary["strategies"].items():
            (row,) = rows_of(document, name, model)
            monthly = block["usd_total"] / tiny.days * 30
            assert row["usd_per_month"] == pytest.approx(monthly, abs=1e-5)
            assert row["tokens_per_month"] == round(block["tokens_total"] / tiny.days * 30)
            assert row["error_share"] == block["error_turns"] / block["turns"]
            assert row["latency_p99_s"] == block["latency_p99_s"]


# -- the projection -----------------------------------------------------------------
def test_rows_for_every_strategy_model_and_size(tiny_projection, tiny):
    out, _, document = tiny_projection
    assert {p.name for p in out.iterdir()} == set(projection.FILES)
    keys = [(r["strategy"], r["model"], r["users"]) for r in document["rows"]]
    expected = [(s, m, n) for s in tiny.strategies for m in MODELS for n in SIZES]
    assert keys == expected
    assert [s["users"] for s in document["sizes"]] == list(SIZES)
    assert all(r["simulated_users"] == min(r["users"], 6) for r in document["rows"])
    assert document["price_date"] == tiny.pricing.price_date


def test_cost_grows_with_users_and_with_the_model_price(tiny_projection, tiny):
    _, _, document = tiny_projection
    for strategy in tiny.strategies:
        cheap, dear = (rows_of(document, strategy, m) for m in MODELS)
        for rows in (cheap, dear):
            usd = [r["usd_per_month"] for r in rows]
            assert usd == sorted(usd) and usd[0] < usd[-1]
        for a, b in zip(cheap, dear, strict=True):
            assert a["tokens_per_month"] == b["tokens_per_month"]  # same tokens ...
            assert b["usd_per_month"] > 2 * a["usd_per_month"]  # ... at 0.40/1.60 vs 0.15/0.60
    prices = document["prices"]
    assert prices["gpt-4o-mini"]["input_usd_per_million_tokens"] == 0.15
    assert prices["gpt-4.1-mini"]["output_usd_per_million_tokens"] == 1.6


def test_terminal_markdown_and_chart(tiny_projection, tiny):
    out, result, document = tiny_projection
    for strategy in tiny.strategies:
        assert strategy in result.stdout
    assert "genai-prices at 2026-11-01" in result.stdout
    assert "600 users (n=6)" in result.stderr  # the progress bar, on stderr
    md = (out / "projection.md").read_text()
    assert "2026-11-01" in md and "## Method" in md
    assert "| gpt-4o-mini | 0.15 | 0.6 |" in md and "| gpt-4.1-mini | 0.4 | 1.6 |" in md
    assert md.count("\n| ") >= len(document["rows"])
    assert (out / "projection.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (out / "projection.svg").read_bytes()[:500]


def test_tight_limits_show_failures_at_scale_that_linear_extrapolation_misses(tmp_path):
    scenario = tmp_path / "tight.toml"
    scenario.write_text(TIGHT)
    result = project_cli(str(scenario), tmp_path / "o", "-q")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    document = json.loads((tmp_path / "o" / "projection.json").read_text())
    for strategy in ("naive-append", "batched-dedup-budget"):
        rows = rows_of(document, strategy, "gpt-4o-mini")
        errors = [r["error_share"] for r in rows]
        assert errors[0] == 0  # 6 users alone on the account: no failures
        assert errors == sorted(errors) and errors[-1] > 0.05
        assert rows[-1]["timeout_share"] > 0.05 and rows[-1]["call_timeout_share"] > 0.05
        assert rows[-1]["latency_p99_s"] > 5 * rows[0]["latency_p99_s"]
        # A linear extrapolation of the small run would bill every turn.
        linear = rows[0]["usd_per_user_per_month"] * rows[-1]["users"]
        assert rows[-1]["usd_per_month"] < 0.9 * linear
    notes = projection.bite_notes(document)
    assert all("users" in n and "time out" in n and "below a linear" in n for n in notes)


def test_projection_json_is_deterministic(tmp_path, tiny_projection):
    first = tiny_projection[0] / "projection.json"
    result = project_cli("tiny", tmp_path / "again", "-q")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "again" / "projection.json").read_bytes() == first.read_bytes()
    assert (tmp_path / "again" / "projection.md").read_bytes() == (
        first.with_name("projection.md").read_bytes()
    )


def test_unknown_model_exits_2_with_one_line(tmp_path):
    result = invoke(
        "project",
        "tiny",
        "--users",
        "6",
        "-m",
        "gpt-4o-mini",
        "-m",
        "gpt-9-ultra",
        "--out",
        str(tmp_path / "o"),
        "-q",
    )
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "--model: 'gpt-9-ultra'" in result.stderr and "genai-prices" in result.stderr
    assert not (tmp_path / "o").exists()


def test_projection_bills_with_the_prompt_cache(tiny_projection):
    """Rows are priced with the cache's reads; the uncached bill is beside them."""
    _, _, document = tiny_projection
    for row in document["rows"]:
        assert row["usd_per_month"] <= row["usd_per_month_uncached"]
    naive = [r for r in document["rows"] if r["strategy"] == "naive-append"]
    assert all(r["cached_tokens_per_month"] > 0 for r in naive)
    assert all(r["usd_per_month"] < r["usd_per_month_uncached"] for r in naive)


def test_projection_and_shards_cut_an_account_by_one_rule(tiny):
    """n of N users hold n/N of the limits, the store's concurrency and the workers."""
    from sim.shards import plan, shard_scenario

    scenario = tiny.with_overrides(users=40, shard_users=10, background_workers=8)
    shard = plan(scenario)[0]
    sharded = shard_scenario(scenario, shard)
    scaled = study.scaled_scenario(scenario, 40, 10)
    assert shard.share == 10 / 40 and scaled.users == 10
    for field in ("limits", "embedding", "vector_store", "background_workers"):
        assert getattr(scaled, field) == getattr(sharded, field), field
    assert scaled.background_workers == 2 < scenario.background_workers
    assert scaled.vector_store.concurrency == 16 < scenario.vector_store.concurrency


def test_a_sample_above_shard_users_runs_in_shards_like_any_run(tmp_path):
    """A sample is simulated by the runner, shards included (their queues differ)."""
    (tmp_path / "tight.toml").write_text(TIGHT)
    scenario, source = scenarios.load(str(tmp_path / "tight.toml"))
    scenario = scenario.with_overrides(shard_users=3)  # a sample of 6: two shards of 3
    document = study.project(scenario, source, [60], [], sim_users=6)
    sample = study.scaled_scenario(scenario, 60, 6)
    summary = summarize(run_scenario(sample, source, store_latency_users=60))
    for name, block in summary["strategies"].items():
        (row,) = rows_of(document, name, scenario.llm.model)
        monthly = block["usd_total"] / scenario.days * 30 * 10  # 60 users, 6 simulated
        assert row["usd_per_month"] == pytest.approx(monthly, rel=1e-4)  # usd_total is rounded
        assert row["latency_p99_s"] == block["latency_p99_s"]


# -- layers -------------------------------------------------------------------------
RENDER_ONLY = Path(projection.__file__)
FORBIDDEN = ("sim.runner", "sim.engine", "memsim")


def test_the_projection_report_imports_no_runner_engine_or_study():
    """reports/projection.py renders a document: it never simulates."""
    imported = set()
    for node in ast.walk(ast.parse(RENDER_ONLY.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
            imported |= {f"{node.module}.{alias.name}" for alias in node.names}
    bad = [m for m in imported if m in FORBIDDEN or m.startswith(tuple(f + "." for f in FORBIDDEN))]
    assert bad == []
    # Nor through what it imports.
    code = (
        "import sys, reports.projection; "
        f"print([m for m in sys.modules if m.split('.')[0] == 'memsim' or m in {FORBIDDEN!r}])"
    )
    root = Path(__file__).resolve().parents[1]
    run = [sys.executable, "-c", code]
    loaded = subprocess.run(run, capture_output=True, text=True, check=True, cwd=root)
    assert loaded.stdout.strip() == "[]"
