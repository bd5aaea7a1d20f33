"""Shared fixtures: small scenarios built in code, and one cached run of tiny.toml."""

from __future__ import annotations

import pytest

import scenarios
from chroma_server import running_server
from reports.output import summarize
from sim.config import Scenario
from sim.runner import RunResult, run_scenario


@pytest.fixture(scope="session")
def chroma_http(tmp_path_factory):
    """``(host, port)`` of a real ChromaDB server, started once for the session."""
    with running_server(tmp_path_factory.mktemp("chroma-server")) as address:
        yield address


@pytest.fixture(scope="session")
def tiny() -> Scenario:
    return scenarios.load("tiny")[0]


@pytest.fixture(scope="session")
def tiny_run(tiny: Scenario) -> RunResult:
    return run_scenario(tiny)


@pytest.fixture(scope="session")
def tiny_summary(tiny_run: RunResult) -> dict:
    return summarize(tiny_run)


@pytest.fixture(scope="session")
def tiny_uncached_summary(tiny: Scenario) -> dict:
    """tiny.toml with ``[llm.cache] mode = "none"``: every input token at the full price."""
    llm = tiny.llm.model_copy(update={"cache": tiny.llm.cache.model_copy(update={"mode": "none"})})
    return summarize(run_scenario(tiny.model_copy(update={"llm": llm})))
