"""One run: resolve a scenario's strategies, generate the workload once, simulate each.

It is long because it is the one way to run a scenario: models, workload, shards,
workers and executors, and the join of the shards' records.

The workload and the embedder's vectors are shared by all strategies (common
random numbers); each strategy gets a fresh store, a fresh mock LLM (its
per-user generators restart) and a fresh SimPy environment.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import gc
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pydantic import ValidationError

from sim import calibration
from sim.config import ConfigError, Scenario, config_sha256, format_validation_error
from sim.context import Services, StoreLatency
from sim.embed import Embedder, LatentEmbedder, MiniLMEmbedder, SwitchingEmbedder
from sim.engine import Engine
from sim.executors import ExecutorName, Report, run_tasks
from sim.latency import resolve as resolve_latency
from sim.llm import MockLLM
from sim.metrics import CALL_COLUMNS, STORE_COLUMNS, TURN_COLUMNS, concat_frames
from sim.pricing import MILLION, Rates, scenario_rates
from sim.prompt_cache import cache_rule, new_cache
from sim.records import RunResult, ShardSink, StrategyRun
from sim.shards import Shard, plan, shard_scenario
from sim.store import NumpyStore, VectorStore
from sim.tokens import ENCODING_NAME, TokenCounter
from sim.traces import TraceInfo, bind_trace, read_trace, trace_workload
from sim.workload import Workload, generate_workload
from strategies import resolve
from strategies.base import Strategy

# Progress hook: called with (strategy name, total turns); returns an ``advance(turns)``.
ProgressFactory = Callable[[str, int], Callable[[int], None]]


def build_workload(
    scenario: Scenario, tokens: TokenCounter, users: range | None = None
) -> Workload:
    """The scenario's workload: its trace replayed, or its synthetic users generated.

    It depends only on the scenario and its seed (and ``users``, a shard's range).
    """
    if scenario.trace is not None:
        trace = read_trace(scenario.trace, scenario.workload.think_time_s_mean)
        return trace_workload(trace, tokens, users)
    return generate_workload(scenario, tokens, users)


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
    scenario: Scenario,
    strategies: list[Strategy],
    rates: tuple[Rates, Rates],
    trace: TraceInfo | None = None,
) -> dict:
    """The fully resolved configuration: every default spelled out (hashed, and saved).

    ``trace``: what the scenario's trace held (its SHA-256, users, probes, what
    was skipped), saved as ``resolved.trace``: a changed trace file changes the hash.
    """
    data = scenario.model_dump(mode="json")
    if data["trace"] is None:
        del data["trace"]  # synthetic runs resolve (and hash) as they did before traces
    if data["llm"].get("profile") is None:
        del data["llm"]["profile"]  # no profile file: resolved (and hashed) as before
    data["strategy"] = {s.name: s.config.model_dump(mode="json") for s in strategies}
    data["strategies"] = [s.name for s in strategies]
    chat = rates[0]
    rule = cache_rule(scenario.llm)
    prices = {
        "input": chat.input_usd_per_token * MILLION,
        "output": chat.output_usd_per_token * MILLION,
        "source": chat.source,
    }
    if rule is not None:
        prices["cache_read"] = (chat.cache_read_usd_per_token or 0.0) * MILLION
        prices["cache_write"] = (chat.cache_write_usd_per_token or 0.0) * MILLION
    data["resolved"] = {
        "token_encoding": ENCODING_NAME,
        "chat_usd_per_million_tokens": prices,
        "embedding_usd_per_million_tokens": rates[1].input_usd_per_token * MILLION,
        "prompt_cache": rule.as_dict() if rule is not None else {"provider": "none"},
        "latency": resolve_latency(scenario.llm).as_dict(),
    }
    if trace is not None:
        data["resolved"]["trace"] = trace.as_dict()
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


def _with_users(scenario: Scenario, users: int | None) -> Scenario:
    return scenario if users is None else scenario.model_copy(update={"users": users})


def store_latency_model(scenario: Scenario, profile: dict | None) -> StoreLatency:
    """Modelled store latency: the profile's distributions for the layout, or the scalars.

    From a calibration profile: the query and add medians and spreads at the run's
    number of users (:func:`sim.calibration.store_latency`), drawn per call. From
    the scalar ``[vector_store]`` parameters (``calibration = "none"``): fixed.
    """
    cfg = scenario.vector_store
    measured = calibration.store_latency(profile, cfg.layout, scenario.users) if profile else None
    if measured is None:
        return StoreLatency(
            cfg.query_latency_base_s,
            cfg.query_latency_s_per_vector,
            cfg.write_latency_s,
            seed=scenario.seed,
        )
    return StoreLatency(
        measured.query_p50_s,
        measured.query_s_per_vector,
        measured.add_p50_s,
        measured.query_sigma,
        measured.add_sigma,
        measured.reference_vectors,
        seed=scenario.seed,
    )


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
    scenario: Scenario,
    source: str,
    config_hash: str,
    store_dir: Path | None,
    users: range | None = None,
    store_latency_users: int | None = None,
) -> Components:
    """Generate the workload once and set up the services every strategy shares.

    ``users`` limits the workload to those users (one shard); all by default.
    ``store_latency_users``: model the store's latency at this many users instead
    of the scenario's (a projection's sample stands for a larger population).
    """
    profile = None
    if scenario.calibration != "none":
        try:
            profile = calibration.load_profile(scenario.calibration)
        except ConfigError as err:
            raise ConfigError(f"{source}: field 'calibration': {err}") from None
    tokens = TokenCounter()
    workload = build_workload(scenario, tokens, users)
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
        store_latency_model(_with_users(scenario, store_latency_users), profile),
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
    workers: int = 1,
    executor: ExecutorName = "local",
    address: str | None = None,
    store_latency_users: int | None = None,
    sink: ShardSink | None = None,
) -> RunResult:
    """Simulate every strategy of ``scenario`` on one shared workload.

    ``strategies`` replaces the scenario's list with ready-made instances (for
    notebooks and tests); by default they are built from the scenario.
    ``workdir`` holds the embedded ChromaDB (``store = "chroma"``) when the
    scenario names no ``vector_store.path``; without it a temporary folder is used.

    A scenario with a ``[trace]`` replays it (:mod:`sim.traces`): its ``users`` and
    ``days`` become the trace's, in the returned result too.

    A scenario with more users than ``shard_users`` is simulated shard by shard
    (:mod:`sim.shards`) on ``workers`` processes of ``executor`` (``address``: an
    existing Ray cluster); the shards' records are joined in shard order, so the
    result does not depend on ``workers`` or ``executor``.

    ``store_latency_users``: see :func:`prepare` (``memsim project``).

    ``sink``: each shard's records are handed to it as they come in (in shard
    order) and not kept, so memory does not grow with the run; the result's runs
    are what ``sink.finish()`` returns (records read back from disk).
    """
    scenario, trace = bind_trace(scenario, source)
    if strategies is None:
        strategies = build_strategies(scenario, source)
    rates = rates_for(scenario, source)
    resolved = resolve_config(scenario, strategies, rates, trace)
    config_hash = config_sha256(resolved)
    shards = plan(scenario)
    with tempfile.TemporaryDirectory(prefix="memsim-") as scratch:
        store_dir = Path(scenario.vector_store.path or (workdir or Path(scratch)) / "chroma")
        # Each shard's strategies start fresh, wherever the shard runs.
        fresh = (lambda: copy.deepcopy(strategies)) if len(shards) > 1 else (lambda: strategies)
        tasks = [
            (scenario, source, shard, fresh(), config_hash, store_dir, store_latency_users)
            for shard in shards
        ]
        reporter = _ShardProgress(progress) if progress else None
        if sink is not None:
            run_tasks(
                simulate_shard,
                tasks,
                executor,
                workers,
                address,
                on_done=_InShardOrder(sink),
                on_progress=reporter,
                keep=False,
            )
            return RunResult(scenario, resolved, config_hash, sink.finish(), *rates)
        per_shard = run_tasks(
            simulate_shard, tasks, executor, workers, address, on_progress=reporter
        )
    runs = []
    for i in range(len(strategies)):
        pieces = [shard_runs[i] for shard_runs in per_shard]
        for shard_runs in per_shard:
            shard_runs[i] = None  # the merge releases each shard's records as it copies them
        runs.append(merge_runs(pieces))
    return RunResult(scenario, resolved, config_hash, runs, *rates)


class _InShardOrder:
    """Hands finished shards to a sink in shard order, holding the early ones until then."""

    def __init__(self, sink: ShardSink) -> None:
        self.sink = sink
        self.next = 0
        self.early: dict[int, list[StrategyRun]] = {}

    def __call__(self, index: int, runs: list[StrategyRun]) -> None:
        self.early[index] = runs
        while self.next in self.early:
            self.sink.add(self.early.pop(self.next))
            self.next += 1


def simulate_shard(
    scenario: Scenario,
    source: str,
    shard: Shard,
    strategies: list[Strategy],
    config_hash: str,
    store_dir: Path,
    store_latency_users: int | None = None,
    report: Report | None = None,
) -> list[StrategyRun]:
    """Simulate every strategy on one shard's users with the shard's share of the limits.

    ``report((strategy, shard index), total turns, turns done)`` tells progress.
    """
    sharded = len(range(scenario.users)) != len(shard.users)
    if sharded:
        store_dir = store_dir / f"shard-{shard.index:05d}"
        config_hash = f"{config_hash[:10]}-s{shard.index}"
    shard_view = shard_scenario(scenario, shard)
    parts = prepare(shard_view, source, config_hash, store_dir, shard.users, store_latency_users)
    runs = []
    for strategy in strategies:
        factory = _reporting_factory(report, shard.index) if report else None
        runs.append(simulate(parts, strategy, factory))
    large = parts.workload.turns >= LARGE_RUN_TURNS
    del parts
    if large:
        _return_freed_memory()
    return runs


def _return_freed_memory() -> None:
    """Give the memory of a finished shard back to the operating system.

    glibc keeps freed heap memory below the highest live allocation, and the
    shard's records are allocated last: without a trim, each shard's transient
    state would stay in the process's resident set until the run ends.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reporting_factory(report: Report, shard: int) -> ProgressFactory:
    """A progress factory that reports cumulative turns, at most about 100 times per total."""

    def factory(name: str, total: int) -> Callable[[int], None]:
        done, last, step = 0, 0, max(total // 100, 1)
        report((name, shard), total, 0)

        def advance(turns: int) -> None:
            nonlocal done, last
            done += turns
            if done - last >= step or done == total:
                last = done
                report((name, shard), total, done)

        return advance

    return factory


class _ShardProgress:
    """Turns shards' cumulative reports into ``advance(turns)`` calls.

    The progress factory is called once per (strategy, shard) with the shard's
    total; a display that keys its bars by strategy adds the totals up.
    """

    def __init__(self, progress: ProgressFactory) -> None:
        self.progress = progress
        self.advance: dict[tuple[str, int], Callable[[int], None]] = {}
        self.done: dict[tuple[str, int], int] = {}

    def __call__(self, key: tuple[str, int], total: int, done: int) -> None:
        if key not in self.advance:
            self.advance[key], self.done[key] = self.progress(key[0], total), 0
        if done > self.done[key]:
            self.advance[key](done - self.done[key])
            self.done[key] = done


def merge_runs(runs: list[StrategyRun]) -> StrategyRun:
    """One strategy's records from every shard, joined in shard order.

    Consumes the shards' frames (each is released once copied), so the join does
    not hold two copies of a large run's records at once.
    """
    if len(runs) == 1:
        return runs[0]
    joined = {}
    for attr, columns in (
        ("calls", CALL_COLUMNS),
        ("turns", TURN_COLUMNS),
        ("store_daily", STORE_COLUMNS),
    ):
        frames = [getattr(run, attr) for run in runs]
        for run in runs:
            setattr(run, attr, None)
        joined[attr] = concat_frames(frames, columns)
    final = pd.concat([run.store_final for run in runs], ignore_index=True)
    return StrategyRun(runs[0].strategy, store_final=final, **joined)


def simulate(
    parts: Components, strategy: Strategy, progress: ProgressFactory | None = None
) -> StrategyRun:
    """Simulate one strategy on the shared workload with a fresh store and mock LLM."""
    scn, workload = parts.scenario, parts.workload
    llm = MockLLM(scn.llm, parts.tokens, workload.catalog, scn.seed, new_cache(scn.llm))
    services = Services(
        scn,
        parts.tokens,
        llm,
        parts.new_embedder(),
        parts.new_store(strategy.name),
        *parts.rates,
        parts.store_latency.fresh(),
    )
    advance = progress(strategy.name, workload.turns) if progress else None
    with _rare_full_collections(collect=workload.turns >= LARGE_RUN_TURNS):
        return Engine(scn, workload, strategy, services, advance).run()


LARGE_RUN_TURNS = 20_000
"""From this many turns a finished engine or shard is freed at once (a full
collection, a heap trim); smaller ones are left to the collector's next pass, as
a full collection in a big process takes longer than the whole run."""


@contextmanager
def _rare_full_collections(collect: bool) -> Iterator[None]:
    """Keep Python's cyclic garbage collector off the simulation's hot path.

    With the default thresholds the collector runs every 700 allocations and
    regularly walks every live object (the workload, the stores, the recorded
    columns): on a run of a few hundred thousand turns that was a third of the
    time. The objects alive at the start are frozen (never scanned), young
    objects are collected in bigger batches, and full collections are rare; the
    simulation creates few reference cycles, so memory hardly grows while it
    runs; one full collection at the end frees the engine. Results do not depend
    on when garbage is collected.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, 20, 1_000)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        # The finished engine is one big reference cycle (contexts hold its defer
        # hook): free it now, or every shard's state would stay until the run ends.
        if collect:
            gc.collect()
