"""The CI check: run a scenario and hold it against a baseline and the invariants.

``memsim baseline`` records a run's figures; ``memsim check`` runs the same
scenario again through :func:`memsim.api.run` (the runner, shards and workers
included) and compares: :mod:`reports.check` does the arithmetic of each
comparison and renders the table, ``check.md`` and ``junit.xml``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import strategies
from memsim import api
from reports import check as ci
from sim.config import ConfigError, Scenario
from sim.executors import ExecutorName
from sim.runner import ProgressFactory, build_strategies, rates_for, resolve_config
from sim.traces import bind_trace


@dataclass(frozen=True)
class CheckRun:
    """What a check found: each comparison and invariant with its verdict."""

    scenario: str
    comparisons: list[ci.Comparison]
    invariants: list[ci.CheckedInvariant]

    @property
    def passed(self) -> bool:
        """Whether no row regressed and no invariant broke."""
        return ci.outcome(self.comparisons, self.invariants) == "passed"

    @property
    def title(self) -> str:
        """``memsim check <scenario>``: the table's and the JUnit suite's name."""
        return f"memsim check {self.scenario}"

    def markdown(self) -> str:
        """``check.md``."""
        return ci.markdown(self.comparisons, self.scenario, self.invariants)

    def junit_xml(self) -> str:
        """``junit.xml``."""
        return ci.junit_xml(self.comparisons, self.title, self.invariants)


def baseline(
    spec: str,
    selected: Sequence[str] = (),
    settings: Sequence[str] = (),
    progress: ProgressFactory | None = None,
    **parallel: Any,
) -> dict[str, Any]:
    """The baseline document of a run of ``spec`` (its ``selected`` strategies, default all)."""
    with tempfile.TemporaryDirectory(prefix="memsim-baseline-") as scratch:
        results = api.run(
            spec,
            settings=settings,
            strategies=list(selected) or None,
            workdir=Path(scratch),
            progress=progress,
            **parallel,
        )
    return ci.baseline_document(results.summary, results.result.resolved)


def run_check(
    spec: str,
    baseline_file: Path,
    tolerances: Sequence[str] = (),
    selected: Sequence[str] = (),
    invariant_scopes: Sequence[str] = (),
    settings: Sequence[str] = (),
    progress: ProgressFactory | None = None,
    workers: int = 1,
    executor: ExecutorName = "local",
    address: str | None = None,
) -> CheckRun:
    """Run ``spec`` and check it against the baseline in ``baseline_file``.

    Args:
        spec: The scenario's name or path, as the baseline was run.
        baseline_file: A file written by ``memsim baseline``.
        tolerances: ``METRIC=PCT%`` specs (``--tolerance``).
        selected: Strategies to check (``-s``); default: those the baseline holds.
        invariant_scopes: ``NAME=STRATEGY,...`` specs (``--invariant``).
        settings: ``KEY=VALUE`` settings (``--set``), as the baseline was run.
        progress: ``progress(name, total)`` returns a callback of simulated turns.
        workers: Processes for the shards of a large run.
        executor: ``local`` or ``ray``.
        address: An existing Ray cluster.

    Raises:
        ConfigError: A missing, corrupt or mismatched baseline, an unknown metric,
            invariant or strategy: one line naming it.
    """
    source = str(baseline_file)
    reference = ci.load_baseline(baseline_file)
    limits = ci.parse_tolerances(list(tolerances))
    names = [strategies.resolve(s).name for s in selected] if selected else None
    checked = ci.checked_strategies(reference, names, source)
    scopes = ci.parse_invariant_scopes(list(invariant_scopes), checked)
    scn, scn_source = api.load_scenario_with_source(spec, settings=settings)
    scn = scn.with_overrides(strategies=list(selected) or _specs_of(scn, checked))
    bound, trace = bind_trace(scn, scn_source)
    resolved = resolve_config(
        bound, build_strategies(bound, scn_source), rates_for(bound, scn_source), trace
    )
    ci.check_scenario(reference, resolved, source)
    with tempfile.TemporaryDirectory(prefix="memsim-check-") as scratch:
        results = api.run(
            scn,
            source=scn_source,
            workdir=Path(scratch),
            progress=progress,
            workers=workers,
            executor=executor,
            address=address,
        )
    comparisons = ci.compare(reference, results.summary, limits, source, checked)
    invariants = ci.run_invariants(results.result, results.summary, scopes)
    return CheckRun(scn.name, comparisons, invariants)


def _specs_of(scenario: Scenario, names: list[str]) -> list[str]:
    """How the scenario spells each strategy (``module:Class`` for a user's), else its name."""
    spelled = {}
    for spec in scenario.strategies:
        try:
            spelled[strategies.resolve(spec).name] = spec
        except ConfigError:
            continue  # not checked unless the baseline names it; then its name is the error
    return [spelled.get(name, name) for name in names]
