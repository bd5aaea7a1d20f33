"""Alert rules on the simulated timeline, invariants, and the Prometheus export."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

import scenarios
from reports import alerts, prometheus
from reports.invariants import check_invariants
from reports.output import summarize
from reports.summary import strategy_summary
from sim.runner import run_scenario
from sim.workload import SECONDS_PER_DAY
from strategies.base import Prompt
from strategies.per_turn_extract import PerTurnExtract

DAY = SECONDS_PER_DAY
# Frequent sessions full of restatements: per-turn-extract stores every one and
# injects them all, so each request costs more every day.
LEAKY_WORKLOAD = {
    "sessions_per_user_per_day": 2.0,
    "turns_per_session_mean": 8,
    "facts_per_user": 14,
    "facts_per_statement_max": 4,
    "mix": {"restate": 0.6},
}


def _support_bot(**changes):
    return scenarios.load("support-bot")[0].with_overrides(**changes)


def _by_rule(found: list[dict]) -> dict[str, dict]:
    return {a["rule"]: a for a in found}


@pytest.fixture(scope="module")
def leaky():
    scenario = _support_bot(
        users=100, days=7, strategies=["per-turn-extract"], workload=LEAKY_WORKLOAD
    )
    return scenario, run_scenario(scenario).runs[0]


@pytest.fixture(scope="module")
def good():
    scenario = _support_bot(users=1000, days=7, strategies=["batched-dedup-budget"])
    return scenario, run_scenario(scenario)


def test_leaky_run_fires_daily_tokens_within_first_week(leaky):
    scenario, run = leaky
    found = _by_rule(alerts.evaluate(run, scenario, scenario.days))
    growth = found["daily_tokens_growth"]
    assert growth["fired"]
    assert 2 <= growth["first_fired_day"] < 7
    # Fires when the day it judged closes; the spend is every call started by then.
    assert growth["first_fired_s"] == pytest.approx((growth["first_fired_day"] + 1) * DAY, abs=1)
    spent = run.calls.loc[run.calls["start_s"] <= growth["first_fired_s"], "usd"].sum()
    assert 0 < growth["usd_by_then"] == pytest.approx(spent, abs=1e-6)
    assert growth["usd_by_then"] < run.calls["usd"].sum()
    # Sessions of eight-odd turns with one extraction per turn: over ten in some session.
    assert found["extraction_calls_per_session"]["fired"]
    assert not found["embedding_switch_without_reembed"]["fired"]


def test_good_run_does_not_fire_daily_tokens(good):
    scenario, result = good
    run = result.runs[0]
    found = _by_rule(alerts.evaluate(run, scenario, scenario.days))
    assert not found["daily_tokens_growth"]["fired"]
    assert found["daily_tokens_growth"]["observed"] < 1.25
    assert not any(a["fired"] for a in found.values())


def test_summary_alerts_block(good):
    _, result = good
    block = summarize(result)["strategies"]["batched-dedup-budget"]["alerts"]
    assert list(block) == list(alerts.RULES)
    for entry in block.values():
        assert entry == {
            "fired": False,
            "first_fired_s": None,
            "first_fired_day": None,
            "usd_by_then": None,
        }


@pytest.mark.parametrize("reembed", [False, True])
def test_embedding_switch_rule(tiny, reembed):
    scenario = tiny.with_overrides(
        strategies=["per-turn-extract", "naive-append"],
        embedding={"switch_at_day": 2.0, "reembed_on_switch": reembed},
    )
    runs = {r.strategy: r for r in run_scenario(scenario).runs}
    switch = _by_rule(alerts.evaluate(runs["per-turn-extract"], scenario, scenario.days))[
        "embedding_switch_without_reembed"
    ]
    if reembed:
        assert not switch["fired"] and switch["first_fired_s"] is None
    else:
        assert switch["fired"]
        assert (switch["first_fired_s"], switch["first_fired_day"]) == (2 * DAY, 2)
        calls = runs["per-turn-extract"].calls
        assert switch["usd_by_then"] == pytest.approx(
            calls.loc[calls["start_s"] <= 2 * DAY, "usd"].sum(), abs=1e-6
        )
    # naive-append embeds nothing: no vectors go stale.
    naive = _by_rule(alerts.evaluate(runs["naive-append"], scenario, scenario.days))
    assert not naive["embedding_switch_without_reembed"]["fired"]
    # The dict form (config.json) gives the same answer.
    as_dict = scenario.model_dump(mode="json")
    assert alerts.evaluate(runs["per-turn-extract"], as_dict, scenario.days) == alerts.evaluate(
        runs["per-turn-extract"], scenario, scenario.days
    )


def test_thresholds_are_overridable(tiny_run, tiny):
    run = next(r for r in tiny_run.runs if r.strategy == "per-turn-extract")
    low = alerts.AlertThresholds(injected_tokens_per_prompt=10, memories_per_user=3)
    found = _by_rule(alerts.evaluate(run, tiny, tiny.days, low))
    first = run.turns.loc[run.turns["memory_tokens"] > 10, "start_s"].min()
    assert found["injected_tokens_per_prompt"]["first_fired_s"] == pytest.approx(first)
    assert found["memories_per_user"]["fired"]
    assert alerts.AlertThresholds().retrieval_p99_s == 0.2


def test_reports_show_alerts(tiny_run, tiny_summary):
    from reports import markdown

    text = markdown.render(tiny_summary, tiny_run.runs, tiny_run.resolved, "")
    section = text.split("## Alerts", 1)[1].split("## How to read this")[0]
    for run in tiny_run.runs:
        assert f"**{run.strategy}**" in section
    fired = tiny_summary["strategies"]["naive-append"]["alerts"]["daily_tokens_growth"]
    assert fired["fired"]
    assert f"`daily_tokens_growth` at {alerts.when(fired['first_fired_s'])}" in section
    assert f"${fired['usd_by_then']:,.2f} spent by then" in section


# -- invariants ------------------------------------------------------------------------


def test_invariants_pass_for_good_run(good):
    _, result = good
    run = result.runs[0]
    block = summarize(result)["strategies"][run.strategy]
    config = result.resolved["strategy"][run.strategy]
    found = check_invariants(block, config, run.turns, run.calls)
    assert [i.name for i in found] == [
        "injected_tokens_within_budget",
        "memories_per_user_within_cap",
        "extraction_calls_per_session_within_limit",
        "no_cross_user_memory",
    ]
    assert all(i.passed for i in found), found
    # Without the calls, the summary's alert answers the extraction check.
    assert all(i.passed for i in check_invariants(block, config, run.turns))


class _OverBudgetConfig(PerTurnExtract.Config):
    budget_tokens: int = 40
    max_memories_per_user: int = 3


class _BrokenStrategy(PerTurnExtract):
    """Declares a budget and a cap, keeps neither, and injects user 0's memories for all."""

    name = "broken-test"
    Config = _OverBudgetConfig

    def build_prompt(self, ctx, msg) -> Prompt:
        prompt = super().build_prompt(ctx, msg)
        if ctx.user != 0:  # only through the harness's private services: ctx.store can't
            prompt.memories = [*prompt.memories, *ctx._services.store.memories(0)[:2]]
        return prompt


def test_invariants_fail_for_broken_strategy(tiny):
    scenario = tiny.with_overrides(days=2)
    result = run_scenario(scenario, strategies=[_BrokenStrategy()])
    run = result.runs[0]
    block = strategy_summary(run, scenario.days, scenario)
    config = result.resolved["strategy"]["broken-test"]
    found = {i.name: i for i in check_invariants(block, config, run.turns, run.calls)}
    assert not found["injected_tokens_within_budget"].passed
    assert not found["memories_per_user_within_cap"].passed
    assert not found["no_cross_user_memory"].passed
    assert "other users" in found["no_cross_user_memory"].detail
    tight = check_invariants(block, config, run.turns, run.calls, max_extractions_per_session=1)
    assert not tight[2].passed


def test_honest_strategies_inject_no_foreign_memories(tiny_run):
    for run in tiny_run.runs:
        assert int(run.turns["foreign_memories"].sum()) == 0, run.strategy


# -- Prometheus --------------------------------------------------------------------------


def test_prometheus_export_parses(tiny_summary):
    text = prometheus.render(tiny_summary)
    assert text == prometheus.render(tiny_summary)  # deterministic
    assert "_created" not in text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert set(prometheus.FAMILIES) <= set(families)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    block = tiny_summary["strategies"]["per-turn-extract"]

    def sample(name, **labels):
        labels |= {"scenario": "tiny", "strategy": "per-turn-extract"}
        return samples[(name, tuple(sorted(labels.items())))]

    assert sample("extraction_calls_total") == block["llm_calls_by_purpose"]["extract"]
    assert sample("usd_total") == pytest.approx(block["usd_total"])
    assert sample("tokens_total", purpose="chat") == block["tokens_by_purpose"]["chat"]
    assert sample("memory_store_size_per_user", stat="max") == block["memories_per_user_max"]
    assert sample("retrieval_latency_seconds", stat="p99") == pytest.approx(
        block["retrieval_latency_p99_s"]
    )
    fired = block["alerts"]["extraction_calls_per_session"]["fired"]
    assert sample("alerts_fired", rule="extraction_calls_per_session") == float(fired)
    assert families["extraction_calls"].type == "counter"


def test_html_alerts_table(tiny_summary):
    from reports import html

    table = html._alerts_table(alerts.fired_rows(tiny_summary, list(tiny_summary["strategies"])))
    table = table.split('<table id="alerts-table">', 1)[1].split("</table>", 1)[0]
    fired = tiny_summary["strategies"]["naive-append"]["alerts"]["daily_tokens_growth"]
    assert (
        "<tr><th scope=row>naive-append</th><td>daily_tokens_growth</td>"
        f"<td>{alerts.when(fired['first_fired_s'])}</td><td>${fired['usd_by_then']:,.2f}</td></tr>"
    ) in table
    assert "<tr><th scope=row>per-turn-extract</th><td>none fired</td>" in table
