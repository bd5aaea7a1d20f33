"""The records of a run: plain dataclasses of DataFrames, what reports read.

A run's results travel from the engine and the runner to the reports, the
studies and the files on disk as these types and nothing else, so ``reports/``
imports this module and never the engine, the runner or a study. The columns of
each DataFrame are declared once, in :mod:`sim.metrics`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from sim.config import Scenario
from sim.pricing import Rates


@dataclass(slots=True)
class StrategyRun:
    """Everything one strategy's simulation recorded."""

    strategy: str
    turns: pd.DataFrame
    calls: pd.DataFrame
    store_daily: pd.DataFrame
    store_final: pd.DataFrame

    def pieces(self, columns: Columns | None = None) -> Iterator[StrategyRun]:
        """The records in pieces of whole users: an in-memory run is one piece (itself)."""
        yield self


Columns = dict[str, list[str]]
"""The columns a reader needs, by table (``turns``, ``calls``, ``store_daily``)."""


class Records(Protocol):
    """One strategy's records, in memory (:class:`StrategyRun`) or on disk, read in pieces.

    Each piece is a :class:`StrategyRun` of whole users (a shard of a large run),
    so per-user figures can be computed piece by piece; the pieces come in the
    order the records were written. ``store_final`` (one row per user) is whole.
    ``columns`` lets a reader from disk read only those columns; a piece may hold more.
    """

    strategy: str
    store_final: pd.DataFrame

    def pieces(self, columns: Columns | None = None) -> Iterator[StrategyRun]:
        """Every piece, in order."""
        ...


class ShardSink(Protocol):
    """Takes a sharded run's records shard by shard, so the runner keeps none of them."""

    def add(self, runs: list[StrategyRun]) -> None:
        """One shard's records (one per strategy, in the run's order), in shard order."""
        ...

    def finish(self) -> list[Records]:
        """Every strategy's records, once the last shard was added."""
        ...


@dataclass(slots=True)
class RunResult:
    """A finished run: its scenario, resolved configuration and per-strategy records."""

    scenario: Scenario
    resolved: dict[str, Any]
    config_sha256: str
    runs: list[Any]  # StrategyRun, or Records on disk for a run spooled shard by shard
    chat_rates: Rates
    embedding_rates: Rates


@dataclass(frozen=True, slots=True)
class Point:
    """One combination of grid values: ``coords[i]`` indexes the i-th grid key's values."""

    index: int
    coords: tuple[int, ...]
    params: dict[str, Any]
    scenario: Scenario  # with the sweep's strategies and the scenario's own seed


@dataclass(frozen=True, slots=True)
class Run:
    """One (point, seed, strategy) of the sweep and the key of its resolved configuration."""

    point: int
    seed: int
    strategy: str
    key: str


@dataclass(frozen=True)
class SweepPlan:
    """A validated, expanded sweep: every point and every run, in task order."""

    path: Path
    scenario_spec: str
    scenario_name: str
    strategies: list[str]
    seeds: list[int]
    overrides: dict[str, Any]
    grid: dict[str, list[Any]]
    axes: tuple[str | None, str | None]
    points: list[Point]
    runs: list[Run]  # point-major, then seed, then strategy
    payloads: dict[str, tuple[dict[str, Any], str]]  # key → run_one's arguments

    @property
    def name(self) -> str:
        """The sweep file's stem: names the default output folder."""
        return self.path.stem

    def describe(self, out: Path, cached: int, to_run: int) -> str:
        """One line: the size of the sweep, how many runs are saved and how many will run."""
        return (
            f"sweep {self.name}: {len(self.points)} point(s) × {len(self.seeds)} seed(s) × "
            f"{len(self.strategies)} strateg{'y' if len(self.strategies) == 1 else 'ies'} = "
            f"{len(self.runs)} runs, {cached + to_run} distinct: {cached} saved in "
            f"{out / 'runs'}, {to_run} to run"
        )

    def distinct_runs(self) -> list[Run]:
        """The first run of each key, in task order: what has to be computed."""
        first: dict[str, Run] = {}
        for run in self.runs:
            first.setdefault(run.key, run)
        return list(first.values())
