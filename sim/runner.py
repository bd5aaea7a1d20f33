"""One run: resolve a scenario's strategies, generate the workload once, simulate each.

The workload and the embedder's vectors are shared by all strategies (common
random numbers); each strategy gets a fresh store, a fresh mock LLM (its
per-user generators restart) and a fresh SimPy environment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from sim.config import ConfigError, Scenario, config_sha256, format_validation_error
from sim.context import Services
from sim.embed import LatentEmbedder
from sim.engine import Engine, StrategyRun
from sim.llm import MockLLM
from sim.pricing import Rates, scenario_rates
from sim.store import NumpyStore
from sim.tokens import ENCODING_NAME, TokenCounter
from sim.workload import Workload, generate_workload
from strategies import resolve
from strategies.base import Strategy

# Progress hook: called with (strategy name, total turns); returns an ``advance(turns)``.
ProgressFactory = Callable[[str, int], Callable[[int], None]]


@dataclass(slots=True)
class RunResult:
    """A finished run: its scenario, resolved configuration and per-strategy records."""

    scenario: Scenario
    resolved: dict[str, Any]
    config_sha256: str
    runs: list[StrategyRun]
    chat_rates: Rates
    embedding_rates: Rates


def build_strategies(scenario: Scenario, source: str) -> list[Strategy]:
    """Instantiate the scenario's strategies with their validated overrides."""
    for name in sorted(set(scenario.strategy) - set(scenario.strategies)):
        try:
            resolve(name)  # overrides for strategies not selected are kept, but must exist
        except ConfigError as err:
            raise ConfigError(f"{source}: field 'strategy.{name}': {err}") from None
    built = []
    for spec in scenario.strategies:
        try:
            cls = resolve(spec)
        except ConfigError as err:
            raise ConfigError(f"{source}: field 'strategies': {err}") from None
        try:
            config = cls.Config.model_validate(scenario.strategy.get(spec, {}))
        except ValidationError as err:
            line = format_validation_error(source, err)
            raise ConfigError(line.replace("field '", f"field 'strategy.{spec}.", 1)) from None
        built.append(cls(config))
    names = [s.name for s in built]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: field 'strategies': a strategy is listed twice: {names}")
    return built


def rates_for(scenario: Scenario, source: str) -> tuple[Rates, Rates]:
    """The scenario's chat and embedding prices; an unknown model names the file."""
    try:
        return scenario_rates(scenario)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def resolve_config(
    scenario: Scenario, strategies: list[Strategy], rates: tuple[Rates, Rates]
) -> dict:
    """The fully resolved configuration: every default spelled out (hashed, and saved)."""
    data = scenario.model_dump(mode="json")
    data["strategy"] = {s.name: s.config.model_dump(mode="json") for s in strategies}
    data["strategies"] = [s.name for s in strategies]
    data["resolved"] = {
        "token_encoding": ENCODING_NAME,
        "chat_usd_per_million_tokens": {
            "input": rates[0].input_usd_per_token * 1e6,
            "output": rates[0].output_usd_per_token * 1e6,
            "source": rates[0].source,
        },
        "embedding_usd_per_million_tokens": rates[1].input_usd_per_token * 1e6,
    }
    return data


def run_scenario(
    scenario: Scenario,
    source: str = "<scenario>",
    progress: ProgressFactory | None = None,
    strategies: list[Strategy] | None = None,
) -> RunResult:
    """Simulate every strategy of ``scenario`` on one shared workload.

    ``strategies`` replaces the scenario's list with ready-made instances (for
    notebooks and tests); by default they are built from the scenario.
    """
    if strategies is None:
        strategies = build_strategies(scenario, source)
    rates = rates_for(scenario, source)
    resolved = resolve_config(scenario, strategies, rates)
    tokens = TokenCounter()
    workload = generate_workload(scenario, tokens)
    embedder = LatentEmbedder(scenario.embedding, workload.catalog.topics, scenario.seed)
    runs = [
        simulate(scenario, workload, strategy, tokens, embedder, rates, progress)
        for strategy in strategies
    ]
    return RunResult(scenario, resolved, config_sha256(resolved), runs, *rates)


def simulate(
    scenario: Scenario,
    workload: Workload,
    strategy: Strategy,
    tokens: TokenCounter,
    embedder: LatentEmbedder,
    rates: tuple[Rates, Rates],
    progress: ProgressFactory | None = None,
) -> StrategyRun:
    """Simulate one strategy on a workload with fresh services."""
    llm = MockLLM(scenario.llm, tokens, workload.catalog, scenario.seed)
    store = NumpyStore(embedder.dim)
    services = Services(scenario, tokens, llm, embedder, store, *rates)
    advance = progress(strategy.name, workload.turns) if progress else None
    return Engine(scenario, workload, strategy, services, advance).run()
