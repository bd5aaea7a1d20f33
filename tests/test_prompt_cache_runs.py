"""Prompt caching in whole runs: determinism, latency, layouts, bills, findings, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from genai_prices import Usage, calc_price
from typer.testing import CliRunner

from helpers import make_scenario
from memsim.cli import app
from reports.markdown import cache_findings
from reports.numbers import dumps
from reports.output import summarize
from sim.config import LLMConfig
from sim.llm import MockLLM
from sim.prompt_cache import new_cache
from sim.runner import run_scenario
from sim.store import Memory
from sim.tokens import REPLY_PRIMING_TOKENS, TokenCounter
from sim.workload import Message, TextCatalog
from strategies.base import AFTER_HISTORY, MemoryLayoutConfig, Prompt
from strategies.history import History

runner = CliRunner()


def _scenario(**fields):
    """Small, but with prompts long enough to cache (OpenAI's rule, a 256-token minimum)."""
    base = {
        "users": 12,
        "days": 3,
        "seed": 3,
        "shard_users": 5,
        "llm": {"cache": {"mode": "openai", "min_tokens": 256}},
    }
    return make_scenario(**{**base, **fields})


def test_cached_runs_are_byte_identical_across_reruns_and_workers():
    scenario = _scenario(strategies=["naive-append", "batched-dedup-budget"])
    one = dumps(summarize(run_scenario(scenario)))
    assert dumps(summarize(run_scenario(scenario))) == one
    assert dumps(summarize(run_scenario(scenario, workers=2))) == one
    blocks = json.loads(one)["strategies"]
    assert blocks["naive-append"]["cached_input_tokens"] > 0  # the cache was exercised


def test_a_cached_call_skips_prefill_for_its_cached_tokens_only():
    """Same draws with and without the cache; latency differs by the prefill of the cached."""
    cfg = LLMConfig(cache={"mode": "openai"}, jitter_sigma=0, jitter_sigma_per_1k_tokens=0)
    tokens, catalog = TokenCounter(), TextCatalog()
    cached_llm = MockLLM(cfg, tokens, catalog, 1, new_cache(cfg))
    plain_llm = MockLLM(cfg, tokens, catalog, 1)
    history = History()
    first = Message("user", "word " * 1500, 1500)
    prompt = history.prompt(first)
    layout = prompt.cache_layout(cached_llm.cache, tokens)
    total = prompt.tokens(tokens).total
    first_prefix = (total - REPLY_PRIMING_TOKENS) // 128 * 128  # what the next turn can read
    assert cached_llm.chat(0, total, layout=layout, now=0.0).cached_tokens == 0
    plain_llm.chat(0, total)
    history.exchange(tokens, first, Message("assistant", "ok", 1))
    second = history.prompt(Message("user", "and then?", 3))
    total = second.tokens(tokens).total
    hit = cached_llm.chat(0, total, layout=second.cache_layout(cached_llm.cache, tokens), now=30)
    miss = plain_llm.chat(0, total)
    assert hit.cached_tokens == first_prefix > 1024  # the first prompt, in steps of 128
    assert hit.reply.text == miss.reply.text and hit.tokens_in == miss.tokens_in
    saved = cached_llm.profile.prefill_s_per_token * first_prefix
    assert miss.latency_s - hit.latency_s == pytest.approx(saved)


def test_after_history_renders_the_memory_block_before_the_message():
    memory = Memory(1, "User lives in Lisbon.", 8, 5, "place", 0.0, "m", "h")
    msg, reply = Message("user", "hi", 1), Message("assistant", "hello", 1)
    before = Prompt(Message("user", "where?", 2), memories=[memory], history=[msg, reply])
    after = Prompt(before.user, before.memories, before.history, memory_position=AFTER_HISTORY)
    assert [r for r, _ in before.render()] == ["system", "system", "user", "assistant", "user"]
    assert [r for r, _ in after.render()] == ["system", "user", "assistant", "system", "user"]
    counter = TokenCounter()
    assert before.tokens(counter) == after.tokens(counter)


def test_stable_memory_order_is_creation_order():
    older = Memory(1, "older", 3, 2, "x", 10.0, "m", "a")
    newer = Memory(2, "newer", 3, 9, "x", 20.0, "m", "b")
    ranked = [newer, older]
    assert MemoryLayoutConfig().arrange(ranked) == ranked
    assert MemoryLayoutConfig(stable_memory_order=True).arrange(ranked) == [older, newer]


def test_layouts_change_the_bill_not_the_tokens_or_recall():
    """batched-dedup-budget re-ranks its memories for every message, before the history."""
    runs = {}
    for position in ("before-history", "after-history"):
        for stable in (False, True):
            scenario = _scenario(
                strategies=["batched-dedup-budget"],
                strategy={
                    "batched-dedup-budget": {
                        "memory_position": position,
                        "stable_memory_order": stable,
                    }
                },
            )
            runs[(position, stable)] = summarize(run_scenario(scenario))["strategies"][
                "batched-dedup-budget"
            ]
    default = runs[("before-history", False)]
    for block in runs.values():
        assert block["tokens_total"] == default["tokens_total"]
        assert block["recall"] == default["recall"]
        assert block["usd_total_uncached"] == default["usd_total_uncached"]
    for layout in (("after-history", False), ("before-history", True)):
        assert runs[layout]["cache_hit_share"] > default["cache_hit_share"]
        assert runs[layout]["usd_total"] < default["usd_total"]


def test_an_anthropic_run_bills_each_call_as_genai_prices_does():
    scenario = _scenario(
        users=4,
        shard_users=2500,
        strategies=["naive-append", "batched-dedup-budget"],
        llm={"model": "claude-sonnet-4-5", "provider": "anthropic", "cache": {"mode": "auto"}},
    )
    result = run_scenario(scenario)
    assert result.resolved["resolved"]["prompt_cache"]["provider"] == "anthropic"
    for run in result.runs:
        calls = run.calls[run.calls["endpoint"] == "llm"]
        for row in calls.itertuples():
            usage = Usage(
                input_tokens=row.tokens_in,
                output_tokens=row.tokens_out,
                cache_read_tokens=row.cached_tokens,
                cache_write_tokens=row.cache_write_tokens,
            )
            price = calc_price(usage, "claude-sonnet-4-5", provider_id="anthropic").total_price
            assert row.usd == pytest.approx(float(price), rel=1e-12, abs=1e-15)
    naive = summarize(result)["strategies"]["naive-append"]
    assert naive["cache_write_tokens"] > 0 and naive["cached_input_tokens"] > 0


def _block(usd: float, uncached: float, share: float = 0.5) -> dict:
    return {
        "usd_total": usd,
        "usd_total_uncached": uncached,
        "usd_saved_by_cache": uncached - usd,
        "cache_hit_share": share,
        "cached_input_tokens": 1000,
        "cache_write_tokens": 0,
    }


def test_a_finding_says_when_the_cache_changes_the_cheapest_strategy():
    blocks = {"append": _block(30.0, 60.0, 0.8), "extract": _block(40.0, 45.0, 0.1)}
    lines = cache_findings(blocks, days=30)
    assert "changes which strategy is cheapest: **append**" in lines[0]
    assert "**extract** would be" in lines[0]
    assert any("saves **append** $30.00 a month (50% of its bill)" in line for line in lines)
    same = cache_findings({"a": _block(10.0, 12.0), "b": _block(20.0, 21.0)}, days=30)
    assert not any("cheapest" in line or "ranking" in line for line in same)
    waste = cache_findings({"a": _block(11.0, 10.0), "b": _block(20.0, 21.0)}, days=30)
    assert any("**a** pays $1.00 a month more with prompt caching" in line for line in waste)
    untouched = {n: {**b, "cached_input_tokens": 0} for n, b in blocks.items()}
    assert cache_findings(untouched, days=30) == []


def test_set_changes_any_field_and_bad_settings_exit_2(tmp_path):
    out = tmp_path / "run"
    args = ["run", "tiny", "--users", "2", "--days", "1", "-q", "--out", str(out)]
    result = runner.invoke(
        app, [*args, "--set", "llm.cache.mode=none", "--set", "strategy.*.stable_memory_order=true"]
    )
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["llm"]["cache"]["mode"] == "none"
    assert config["strategy"]["batched-dedup-budget"]["stable_memory_order"] is True
    assert "stable_memory_order" not in config["strategy"]["naive-append"]
    for setting, words in (
        ("llm.cache.mode=lots", "--set 'llm.cache.mode' = \"lots\""),
        ("strategy.*.nosuch=1", "no strategy run here has a setting 'nosuch'"),
        ("nosuch=1", "--set 'nosuch' = 1: no such field"),
        ("users", "expected KEY=VALUE"),
    ):
        bad = runner.invoke(app, [*args, "--set", setting])
        assert bad.exit_code == 2, setting
        assert words in bad.output, bad.output
        assert len(bad.output.strip().splitlines()) == 1


def test_the_report_shows_the_cache(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "tiny", "-q", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = (out / "report.md").read_text()
    assert "prompt cache hit share (chat input)" in text
    assert "The prompt cache saves **naive-append**" in text
    assert (out / "charts" / "prompt-cache.svg").exists()
    assert "prompt_cache_hit_share{" in (out / "metrics.prom").read_text()
    html = (out / "report.html").read_text()
    assert "Prompt cache: input tokens per day" in html


def test_summary_keys_are_documented():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for key in (
        "cached_input_tokens",
        "cache_write_tokens",
        "cache_hit_share",
        "usd_saved_by_cache",
    ):
        assert f"`{key}`" in readme


def test_results_written_before_the_cache_redraw_as_uncached(tmp_path):
    """A folder from before the cache columns and keys: `memsim report` still draws it."""
    out = tmp_path / "old"
    assert runner.invoke(app, ["run", "tiny", "-q", "--out", str(out)]).exit_code == 0
    calls = pd.read_parquet(out / "calls.parquet")
    calls.drop(columns=["cached_tokens", "cache_write_tokens", "usd_saved"]).to_parquet(
        out / "calls.parquet"
    )
    summary = json.loads((out / "summary.json").read_text())
    for block in summary["strategies"].values():
        for key in [k for k in block if "cache" in k or k.startswith("probe_")]:
            del block[key]  # usd_total_uncached among them
        del block["llm_input_tokens_per_day"]
    (out / "summary.json").write_text(json.dumps(summary))
    config = json.loads((out / "config.json").read_text())
    del config["resolved"]["prompt_cache"]
    (out / "config.json").write_text(json.dumps(config))
    result = runner.invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    text = (out / "report.md").read_text()
    assert "Prompt cache: none" in text and "prompt cache hit share" not in text
