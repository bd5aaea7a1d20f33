"""Every built-in strategy on every shipped scenario (reduced), start to finish."""

from __future__ import annotations

from pathlib import Path

import pytest

import scenarios
import strategies
from reports.output import summarize
from sim.llm import CONTEXT_LENGTH_EXCEEDED
from sim.runner import run_scenario

SMALL = {"users": 8, "days": 3}


def small(scenario):
    """The scenario reduced: 8 users × 3 days, or a trace's first user and 2 sessions.

    A trace scenario runs on the latent embedder here (speed; the real one is
    tested in tests/test_traces.py), and is skipped when its file is absent
    (LoCoMo is not shipped).
    """
    if scenario.trace is None:
        return scenario.with_overrides(**SMALL)
    if not Path(scenario.trace.path).is_file():
        pytest.skip(f"trace {scenario.trace.path} not found (not shipped)")
    trace = scenario.trace.model_copy(update={"max_users": 1, "max_sessions": 2})
    return scenario.model_copy(update={"trace": trace, "embedder": "latent"})


@pytest.mark.parametrize("scenario_name", sorted(scenarios.shipped()))
@pytest.mark.parametrize("strategy_name", list(strategies.builtins()))
def test_strategy_runs_on_scenario(scenario_name, strategy_name):
    scenario = small(scenarios.load(scenario_name)[0])
    strategy = strategies.resolve(strategy_name)(
        strategies.resolve(strategy_name).Config.model_validate(
            scenario.strategy.get(strategy_name, {})
        )
    )
    result = run_scenario(scenario, strategies=[strategy])
    summary = summarize(result)
    block = summary["strategies"][strategy_name]
    assert block["turns"] > 0 and block["tokens_total"] > 0 and block["usd_total"] > 0
    assert block["llm_calls_by_purpose"]["chat"] == block["turns"]
    assert len(block["tokens_per_day"]) == summary["days"]
    if strategy_name == "naive-append" and scenario.llm.context_window < 32_000:
        # Full history in a small window (buffer-not-cleared's 8,192 tokens): a busy
        # user's history outgrows it, and the API refuses those requests.
        errors = set(result.runs[0].turns["error"].astype(str)) - {""}
        assert errors <= {CONTEXT_LENGTH_EXCEEDED}
    else:
        assert block["error_turns"] == 0
