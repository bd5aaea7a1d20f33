"""Every built-in strategy on every shipped scenario (reduced), start to finish."""

from __future__ import annotations

import pytest

import scenarios
import strategies
from reports.output import summarize
from sim.runner import run_scenario

SMALL = {"users": 8, "days": 3}


@pytest.mark.parametrize("scenario_name", sorted(scenarios.shipped()))
@pytest.mark.parametrize("strategy_name", list(strategies.builtins()))
def test_strategy_runs_on_scenario(scenario_name, strategy_name):
    scenario = scenarios.load(scenario_name)[0].with_overrides(**SMALL)
    strategy = strategies.resolve(strategy_name)(
        strategies.resolve(strategy_name).Config.model_validate(
            scenario.strategy.get(strategy_name, {})
        )
    )
    result = run_scenario(scenario, strategies=[strategy])
    block = summarize(result)["strategies"][strategy_name]
    assert block["turns"] > 0 and block["tokens_total"] > 0 and block["usd_total"] > 0
    assert block["llm_calls_by_purpose"]["chat"] == block["turns"]
    assert len(block["tokens_per_day"]) == SMALL["days"]
    assert block["error_turns"] == 0
