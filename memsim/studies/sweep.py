"""Running a sweep: every distinct run of a plan once, saved as it finishes, resumable.

:mod:`sim.sweep` reads and validates the sweep file and plans its runs (their
keys and arguments); this study runs the ones not yet saved in ``runs/`` through
:func:`sim.runner.run_scenario`, in a process pool or on Ray, and
:mod:`reports.sweep` renders the result.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reports.output import atomic_write
from reports.summary import strategy_summary
from sim import __version__
from sim.config import Scenario
from sim.executors import ExecutorName, run_tasks
from sim.records import Run, SweepPlan
from sim.runner import run_scenario
from sim.sweep import Warn


def run_one(scenario: dict[str, Any], source: str) -> dict[str, Any]:
    """Simulate one strategy (the scenario's only one) and return its summary block.

    Top level and plain data in, plain data out: it runs in a spawn process pool
    and on Ray workers.
    """
    parsed = Scenario.model_validate(scenario)
    result = run_scenario(parsed, source)
    summary = strategy_summary(result.runs[0], parsed.days, parsed)
    # Through JSON, so a fresh result is the very data a cached one reads back.
    return json.loads(json.dumps(summary))


class RunCache:
    """``runs/<key>.json``: one finished run each, written atomically."""

    def __init__(self, folder: Path, warn: Warn | None = None) -> None:
        self.folder = folder
        self.warn = warn or (lambda message: None)

    def path(self, key: str) -> Path:
        """Where the run with ``key`` is saved."""
        return self.folder / f"{key}.json"

    def load(self, key: str) -> dict[str, Any] | None:
        """The saved summary block, or ``None`` if absent or damaged (then it is said)."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(record, dict) or record.get("key") != key:
                raise ValueError("it holds another run")
            if not isinstance(record.get("summary"), dict):
                raise ValueError("it holds no summary")
        except (OSError, UnicodeDecodeError, ValueError) as err:
            self.warn(f"{path} is damaged ({err}); running it again")
            return None
        return record["summary"]

    def store(self, run: Run, summary: dict[str, Any]) -> None:
        """Save one finished run."""
        record = {
            "key": run.key,
            "memsim_version": __version__,
            "strategy": run.strategy,
            "seed": run.seed,
            "summary": summary,
        }
        text = json.dumps(record, indent=1, ensure_ascii=False) + "\n"
        atomic_write(self.path(run.key), lambda tmp: tmp.write_text(text, encoding="utf-8"))


@dataclass(frozen=True)
class SweepRuns:
    """The summary block of every distinct run, by key; which were cached and which ran."""

    summaries: dict[str, dict[str, Any]]
    cached: list[str]
    ran: list[str]


def run_sweep(
    plan: SweepPlan,
    out: Path,
    executor: ExecutorName = "local",
    workers: int = 1,
    address: str | None = None,
    warn: Warn | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_run: Callable[[], None] | None = None,
) -> SweepRuns:
    """Run every distinct run of ``plan`` not yet saved in ``out/runs``.

    Args:
        plan: From :func:`load_sweep`.
        out: The sweep's output folder (``runs/`` is created in it).
        executor: ``"local"`` (a process pool of ``workers``) or ``"ray"``.
        workers: Processes, or CPUs of a local Ray instance.
        address: An existing Ray cluster.
        warn: Receives one line per damaged cache file.
        on_start: Called with (cached, to run) before anything runs.
        on_run: Called as each run finishes (its result is saved by then).
    """
    cache = RunCache(out / "runs", warn)
    cache.folder.mkdir(parents=True, exist_ok=True)
    summaries: dict[str, dict[str, Any]] = {}
    todo = []
    for run in plan.distinct_runs():
        saved = cache.load(run.key)
        if saved is None:
            todo.append(run)
        else:
            summaries[run.key] = saved
    cached = list(summaries)
    if on_start is not None:
        on_start(len(cached), len(todo))

    def done(index: int, summary: dict[str, Any]) -> None:
        cache.store(todo[index], summary)
        summaries[todo[index].key] = summary
        if on_run is not None:
            on_run()

    tasks = [plan.payloads[run.key] for run in todo]
    run_tasks(run_one, tasks, executor, workers, address, on_done=done)
    return SweepRuns(summaries, cached, [run.key for run in todo])
