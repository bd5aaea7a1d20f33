"""Writing a run's files: each goes to a temporary name first, then is renamed into place.

A crash halfway leaves the previous results intact; a finished run replaces them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from reports import markdown, prometheus
from reports.compare import comparison_rows, memory_work_rows
from reports.results import Results
from reports.summary import build_summary, dumps
from sim.config import ConfigError, canonical_json
from sim.runner import RunResult
from strategies.registry import external_strategies

FILES = (
    "summary.json",
    "turns.parquet",
    "calls.parquet",
    "store.parquet",
    "report.md",
    "config.json",
    "report.html",
    "charts",  # <name>.png and <name>.svg for every chart of report.html
    "metrics.prom",
)


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it to ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _combined(result: RunResult, attr: str) -> pd.DataFrame:
    frames = [getattr(r, attr).assign(strategy=r.strategy) for r in result.runs]
    frame = pd.concat(frames, ignore_index=True)
    frame["strategy"] = frame["strategy"].astype("category")
    return frame


def prepare_out_dir(out: Path) -> None:
    """Create the output folder, or fail with one line if it cannot be written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"{out}: cannot create output folder: {err.strerror}") from None
    if not os.access(out, os.W_OK):
        raise ConfigError(f"{out}: output folder is not writable")


def summarize(result: RunResult) -> dict:
    """The ``summary.json`` document of a run."""
    s = result.scenario
    return build_summary(s.name, s.seed, result.config_sha256, s.users, s.days, result.runs, s)


def write_outputs(result: RunResult, out: Path, summary: dict | None = None) -> dict:
    """Write every file of a run into ``out``; returns the summary."""
    prepare_out_dir(out)
    summary = summary if summary is not None else summarize(result)
    for attr, name in (
        ("turns", "turns.parquet"),
        ("calls", "calls.parquet"),
        ("store_daily", "store.parquet"),
    ):
        frame = _combined(result, attr)
        atomic_write(out / name, lambda tmp, f=frame: f.to_parquet(tmp, index=False))
    _write_text(out / "config.json", canonical_json(result.resolved))
    _write_text(
        out / "report.md",
        markdown.render(summary, result.runs, result.resolved, result.scenario.description),
    )
    _write_text(out / "metrics.prom", prometheus.render(summary))
    _write_text(out / "summary.json", dumps(summary))
    return summary


def write_reports(results: Results) -> None:
    """Draw ``report.md``, ``report.html`` and ``charts/`` into the results' folder.

    Reads nothing but ``results``, so a saved run can be drawn again without re-running.
    """
    # matplotlib loads here, not with the command line: `memsim list` stays quick.
    from reports import chartdata, charts, html

    out, summary, runs = results.out_dir, results.summary, results.runs()
    drawn = charts.render(
        chartdata.chart_data(summary, results.turns, results.store), results.strategies
    )
    real = [n for n in results.strategies if n in external_strategies()]
    page = html.render(
        summary,
        results.config,
        comparison_rows(summary, runs),
        markdown.findings(summary, results.strategies, results.config),
        drawn,
        (real, memory_work_rows(summary, runs)) if real else None,
    )
    try:
        (out / "charts").mkdir(exist_ok=True)
        for chart in drawn:
            for suffix, data in (("png", chart.png), ("svg", chart.svg)):
                atomic_write(
                    out / "charts" / f"{chart.name}.{suffix}", lambda t, d=data: t.write_bytes(d)
                )
        _write_text(
            out / "report.md", markdown.render(summary, runs, results.config, results.description)
        )
        _write_text(out / "report.html", page)
        _write_text(out / "metrics.prom", prometheus.render(summary))
    except OSError as err:
        raise ConfigError(f"{out}: cannot write the report: {err.strerror or err}") from None
