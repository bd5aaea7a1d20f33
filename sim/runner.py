"""One run: resolve a scenario's strategies, generate the workload once, simulate each.

The workload and the embedder's vectors are shared by all strategies (common
random numbers); each strategy gets a fresh store, a fresh mock LLM (its
per-user generators restart) and a fresh SimPy environment.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sim import calibration
from sim.config import ConfigError, Scenario, config_sha256, format_validation_error
from sim.context import Services, StoreLatency
from sim.embed import Embedder, LatentEmbedder, MiniLMEmbedder, SwitchingEmbedder
from sim.engine import Engine, StrategyRun
from sim.llm import MockLLM
from sim.pricing import Rates, scenario_rates
from sim.store import NumpyStore, VectorStore
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


@dataclass
class Components:
    """What every strategy of a run shares: workload, tokens, prices, embedder, store setup."""

    scenario: Scenario
    workload: Workload
    tokens: TokenCounter
    rates: tuple[Rates, Rates]
    embedder: Embedder
    store_latency: StoreLatency
    store_dir: Path | None
    namespace: str
    switch_to: Embedder | None = None  # the model a mid-run embedding switch moves to

    def new_embedder(self) -> Embedder:
        """The embedder one strategy's run uses (a fresh switch state per strategy)."""
        if self.switch_to is None:
            return self.embedder
        return SwitchingEmbedder(self.embedder, self.switch_to)

    def new_store(self, strategy: str) -> VectorStore:
        """A fresh, empty store for one strategy's simulation."""
        scn = self.scenario
        cfg, dim = scn.vector_store, self.embedder.dim
        if scn.store == "numpy":
            return NumpyStore(dim)
        from sim.chroma import embedded_store, http_store  # chromadb loads only when used

        namespace = f"{self.namespace}-{strategy}"
        measure = cfg.latency == "measured"
        if scn.store == "chroma-http":
            try:
                return http_store(cfg.host, cfg.port, dim, cfg.layout, namespace, measure)
            except ConnectionError as err:
                raise ConfigError(f"field 'store' = 'chroma-http': {err}") from None
        assert self.store_dir is not None
        return embedded_store(self.store_dir / strategy, dim, cfg.layout, namespace, measure)


def store_latency_model(scenario: Scenario, profile: dict | None) -> StoreLatency:
    """Modelled store latency: the profile's medians for the layout, or the scalars."""
    cfg = scenario.vector_store
    measured = calibration.store_latency(profile, cfg.layout, scenario.users) if profile else None
    if measured is None:
        return StoreLatency(
            cfg.query_latency_base_s, cfg.query_latency_s_per_vector, cfg.write_latency_s
        )
    query_s, add_s = measured
    return StoreLatency(query_s, 0.0, add_s)


def build_embedder(scenario: Scenario, workload: Workload, profile: dict | None) -> Embedder:
    """The scenario's embedder: the real MiniLM, or the latent mock calibrated by ``profile``."""
    if scenario.embedder == "minilm":
        return MiniLMEmbedder()
    similarity = similarity_of(scenario, profile)
    return LatentEmbedder(
        scenario.embedding.dim, workload.catalog.topics, scenario.seed, similarity
    )


def similarity_of(scenario: Scenario, profile: dict | None) -> dict:
    """The similarity profile the latent embedder follows: the calibration, or the scalars."""
    if profile:
        return profile["similarity"]
    emb = scenario.embedding
    return calibration.scalar_profile(
        emb.paraphrase_similarity,
        emb.same_slot_similarity,
        emb.statement_similarity,
        emb.probe_similarity,
    )


def prepare(
    scenario: Scenario, source: str, config_hash: str, store_dir: Path | None
) -> Components:
    """Generate the workload once and set up the services every strategy shares."""
    profile = None
    if scenario.calibration != "none":
        try:
            profile = calibration.load_profile(scenario.calibration)
        except ConfigError as err:
            raise ConfigError(f"{source}: field 'calibration': {err}") from None
    tokens = TokenCounter()
    workload = generate_workload(scenario, tokens)
    embedder = build_embedder(scenario, workload, profile)
    switch_to = None
    if scenario.embedding.switch_at_day is not None:
        if not isinstance(embedder, LatentEmbedder):
            raise ConfigError(
                f"{source}: field 'embedding.switch_at_day': a model switch needs embedder 'latent'"
            )
        switch_to = LatentEmbedder(
            embedder.dim,
            workload.catalog.topics,
            scenario.seed,
            similarity_of(scenario, profile),
            model=scenario.embedding.switch_model,
            space=1,
        )
    return Components(
        scenario,
        workload,
        tokens,
        rates_for(scenario, source),
        embedder,
        store_latency_model(scenario, profile),
        store_dir,
        f"ms-{config_hash[:10]}",
        switch_to,
    )


def run_scenario(
    scenario: Scenario,
    source: str = "<scenario>",
    progress: ProgressFactory | None = None,
    strategies: list[Strategy] | None = None,
    workdir: Path | None = None,
) -> RunResult:
    """Simulate every strategy of ``scenario`` on one shared workload.

    ``strategies`` replaces the scenario's list with ready-made instances (for
    notebooks and tests); by default they are built from the scenario.
    ``workdir`` holds the embedded ChromaDB (``store = "chroma"``) when the
    scenario names no ``vector_store.path``; without it a temporary folder is used.
    """
    if strategies is None:
        strategies = build_strategies(scenario, source)
    rates = rates_for(scenario, source)
    resolved = resolve_config(scenario, strategies, rates)
    config_hash = config_sha256(resolved)
    with tempfile.TemporaryDirectory(prefix="memsim-") as scratch:
        store_dir = Path(scenario.vector_store.path or (workdir or Path(scratch)) / "chroma")
        parts = prepare(scenario, source, config_hash, store_dir)
        runs = [simulate(parts, strategy, progress) for strategy in strategies]
    return RunResult(scenario, resolved, config_hash, runs, *rates)


def simulate(
    parts: Components, strategy: Strategy, progress: ProgressFactory | None = None
) -> StrategyRun:
    """Simulate one strategy on the shared workload with a fresh store and mock LLM."""
    scn, workload = parts.scenario, parts.workload
    llm = MockLLM(scn.llm, parts.tokens, workload.catalog, scn.seed)
    services = Services(
        scn,
        parts.tokens,
        llm,
        parts.new_embedder(),
        parts.new_store(strategy.name),
        *parts.rates,
        parts.store_latency,
    )
    advance = progress(strategy.name, workload.turns) if progress else None
    return Engine(scn, workload, strategy, services, advance).run()
