"""The Python API: run a scenario from a notebook and get its records back.

>>> import memsim
>>> results = memsim.run("support-bot", users=200, days=14, strategies=["naive-append"])
>>> results.summary["strategies"]["naive-append"]["usd_total"]  # doctest: +SKIP
>>> results.turns.groupby("strategy")["prompt_tokens"].mean()  # doctest: +SKIP

:func:`run` is what ``memsim run`` does, less the terminal: the same loading (a
shipped scenario's name or a TOML path, ``--users``-style overrides, ``--set``
settings, a trace), the same runner (shards and workers included) and the same
``summary.json``. :meth:`Results.write` writes the files ``memsim run`` writes.
The command line is a thin layer over these calls.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

import scenarios
from reports.otel import Content, TurnContent, write_otel
from reports.output import summarize, write_outputs, write_reports
from reports.results import load_results
from reports.spool import Spool, SpooledRun
from reports.views import RunView, as_views
from sim.config import ConfigError, Scenario, format_validation_error
from sim.executors import ExecutorName
from sim.records import RunResult, StrategyRun
from sim.runner import ProgressFactory, build_strategies, build_workload, rates_for, run_scenario
from sim.shards import plan
from sim.sweep import with_settings
from sim.tokens import TokenCounter

__all__ = ["Results", "load_scenario", "run"]


TRACE_FORMATS = {".json": "locomo", ".jsonl": "jsonl", ".ndjson": "jsonl"}
"""The trace format ``--trace`` assumes from the file's suffix, when the scenario has none."""


def _with_trace(scenario: Scenario, trace: Path | None, overrides: dict) -> Scenario:
    """The scenario with ``--trace`` (read from the current folder) and ``--users``.

    The trace's format comes from its suffix, else from the scenario's ``[trace]``.
    With a trace, ``--users N`` replays its first N users (``max_users``), and
    ``--days`` is refused: a trace sets the days itself.
    """
    if trace is not None:
        fmt = TRACE_FORMATS.get(trace.suffix.lower()) or (
            scenario.trace.format if scenario.trace else None
        )
        if fmt is None:
            raise ConfigError(
                f"--trace: {trace}: cannot tell the format from the suffix (.json: LoCoMo, "
                ".jsonl: chat log); set [trace] format in the scenario"
            )
        settings = scenario.trace.model_dump() if scenario.trace else {}
        settings |= {"format": fmt, "path": str(trace.expanduser().resolve())}
        data = scenario.model_dump() | {"trace": settings}
        if "embedder" not in scenario.model_fields_set:
            del data["embedder"]  # a trace's default embedder (see Scenario.embedder)
        scenario = Scenario.model_validate(data)
    if scenario.trace is None:
        return scenario
    if overrides.get("days") is not None:
        raise ConfigError("--days: a trace sets the simulated days itself")
    users = overrides.pop("users", None)
    if users is not None:
        settings = scenario.trace.model_dump() | {"max_users": users}
        scenario = Scenario.model_validate(scenario.model_dump() | {"trace": settings})
    return scenario


def load_scenario_with_source(
    spec: str | Path,
    trace: Path | None = None,
    settings: Sequence[str] | None = None,
    **overrides: object,
) -> tuple[Scenario, str]:
    """:func:`load_scenario`, and the path it was read from (names it in error messages)."""
    scenario, path = scenarios.load(str(spec))
    try:
        scenario = _with_trace(scenario, trace, overrides)
        scenario = scenario.with_overrides(**overrides)
    except ValidationError as err:
        raise ConfigError(
            format_validation_error(f"{path} (with command-line overrides)", err)
        ) from None
    return with_settings(scenario, list(settings or []), str(path)), str(path)


def load_scenario(
    spec: str | Path,
    trace: Path | None = None,
    settings: Sequence[str] = (),
    **overrides: object,
) -> Scenario:
    """A scenario by shipped name or TOML path, with overrides, as ``memsim run`` loads it.

    Args:
        spec: ``support-bot`` or ``path/to/scenario.toml``.
        trace: A LoCoMo ``.json`` or chat-log ``.jsonl`` to replay (``--trace``).
        settings: ``KEY=VALUE`` with dotted keys (``--set``), e.g.
            ``"strategy.batched-dedup-budget.budget_tokens=2000"``.
        overrides: Top-level fields: ``users``, ``days``, ``seed``, ``strategies``,
            ``shard_users``, ``embedder``, ``store`` (``None`` keeps the scenario's).

    Raises:
        ConfigError: One line naming the file, the field and the value.
    """
    return load_scenario_with_source(spec, trace, settings, **overrides)[0]


@dataclass
class Results:
    """One finished run: its records, and the ``summary.json`` document of them."""

    result: RunResult
    summary: dict[str, Any]
    source: str = "<scenario>"
    _frames: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)
    _views: list[RunView] | None = field(default=None, repr=False)

    @property
    def scenario(self) -> Scenario:
        """The scenario as run (a trace's users and days included)."""
        return self.result.scenario

    @property
    def runs(self) -> dict[str, StrategyRun]:
        """Each strategy's records, by name."""
        return {run.strategy: run for run in self.result.runs}

    def _all(self, table: str) -> pd.DataFrame:
        frame = self._frames.get(table)
        if frame is None:
            frames = [getattr(run, table).assign(strategy=run.strategy) for run in self.result.runs]
            frame = self._frames[table] = pd.concat(frames, ignore_index=True)
        return frame

    @property
    def turns(self) -> pd.DataFrame:
        """Every strategy's ``turns.parquet`` rows, with a ``strategy`` column."""
        return self._all("turns")

    @property
    def calls(self) -> pd.DataFrame:
        """Every strategy's ``calls.parquet`` rows, with a ``strategy`` column."""
        return self._all("calls")

    @property
    def store(self) -> pd.DataFrame:
        """Every strategy's store at the end of the run, one row per user."""
        return self._all("store_final")

    def views(self) -> list[RunView]:
        """Each strategy's report figures beyond the summary (read once, then kept)."""
        if self._views is None:
            self._views = as_views(self.result.runs, self.summary["days"])
        return self._views

    def write(self, out: str | Path) -> Path:
        """Write what ``memsim run`` writes into the folder ``out`` (made if needed).

        ``memsim run`` writes into a new folder and swaps it in; this writes in place.
        """
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        write_outputs(self.result, folder, self.summary)
        spooled = [run for run in self.result.runs if isinstance(run, SpooledRun)]
        write_reports(load_results(folder, spooled or None))
        return folder

    def write_otel(self, path: str | Path, content: bool = False) -> Path:
        """Write every simulated call as OpenTelemetry GenAI spans (OTLP/JSON) to ``path``.

        ``content``: the chat spans carry the user's messages (and a trace's scripted
        replies) as ``gen_ai.input.messages`` / ``gen_ai.output.messages``, with
        ``user.id`` and ``session.id``: a file ``[trace] format = "otel"`` replays.
        See :mod:`reports.otel`.
        """
        target = Path(path)
        write_otel(self.result, target, turn_content(self.scenario) if content else None)
        return target


def turn_content(scenario: Scenario) -> Content:
    """The text of every turn of ``scenario``'s workload, by ``(user, session, turn)``.

    The workload is generated (or the trace read) again: it depends only on the
    scenario and its seed, so it is the one the run replayed.
    """
    workload = build_workload(scenario, TokenCounter())
    content: Content = {}
    for script in workload.users:
        for s, session in enumerate(script.sessions):
            replies = session.replies or [None] * len(session.messages)
            for t, (msg, reply) in enumerate(zip(session.messages, replies, strict=True)):
                text = reply.text if reply is not None else None
                session_id = f"{script.user_id}/{s}"
                content[(script.user, s, t)] = TurnContent(
                    script.user_id, session_id, msg.text, text
                )
    return content


def run(
    scenario: str | Path | Scenario,
    *,
    trace: Path | None = None,
    settings: Sequence[str] = (),
    workers: int = 1,
    executor: ExecutorName = "local",
    address: str | None = None,
    workdir: Path | None = None,
    progress: ProgressFactory | None = None,
    source: str | None = None,
    **overrides: object,
) -> Results:
    """Simulate a scenario with each of its strategies and summarize it.

    Args:
        scenario: A shipped scenario's name, a TOML path, or a :class:`Scenario`.
        trace: A trace to replay, as :func:`load_scenario`.
        settings: ``KEY=VALUE`` settings, as :func:`load_scenario`.
        workers: Processes for the shards of a large run (``--workers``); the
            results do not depend on it.
        executor: ``local`` (a process pool) or ``ray``.
        address: An existing Ray cluster (``--address``).
        workdir: Holds an embedded ChromaDB store (default: a temporary folder).
        progress: ``progress(name, total)`` returns a callback of simulated turns.
        source: What a :class:`Scenario` object was read from, for error messages.
        **overrides: Top-level fields, as :func:`load_scenario`.

    Returns:
        The records and the ``summary.json`` document; byte-identical to the CLI's
        for the same scenario and seed.

    Raises:
        ConfigError: Bad input, one line naming the file, the field and the value.
    """
    if isinstance(scenario, Scenario):
        if trace is not None or settings or overrides:
            raise ConfigError("run: a Scenario object takes no trace, settings or overrides")
        scn, source = scenario, source or "<scenario>"
    else:
        scn, source = load_scenario_with_source(scenario, trace, settings, **overrides)
    build_strategies(scn, source)  # fail fast on bad strategy names, overrides, prices
    rates_for(scn, source)
    if executor not in ("local", "ray"):
        raise ConfigError(f"--executor: unknown executor {executor!r} (local or ray)")
    spool = None
    if len(plan(scn)) > 1:  # shard by shard to disk: memory does not grow with the run
        folder = Path(tempfile.mkdtemp(prefix="memsim-spool-"))
        spool = Spool(folder, [s.name for s in build_strategies(scn, source)], temporary=True)
    try:
        result = run_scenario(
            scn,
            source,
            progress,
            workdir=workdir,
            workers=workers,
            executor=executor,
            address=address,
            sink=spool,
        )
    except BaseException:
        if spool is not None:
            spool.remove()
        raise
    return Results(result, summarize(result), source)
