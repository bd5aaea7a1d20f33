"""Shared fixtures: small scenarios built in code, and one cached run of tiny.toml."""

from __future__ import annotations

import pytest

import scenarios
from reports.output import summarize
from sim.config import Scenario
from sim.runner import RunResult, run_scenario


@pytest.fixture(scope="session")
def tiny() -> Scenario:
    return scenarios.load("tiny")[0]


@pytest.fixture(scope="session")
def tiny_run(tiny: Scenario) -> RunResult:
    return run_scenario(tiny)


@pytest.fixture(scope="session")
def tiny_summary(tiny_run: RunResult) -> dict:
    return summarize(tiny_run)
