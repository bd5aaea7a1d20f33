"""A finished run read back from its output folder, for reports that need no re-run.

``load_results`` reads ``summary.json``, ``config.json`` and the three parquet
files, and checks what the reports rely on (keys, columns, strategies). A folder
that is missing, or a file that is missing or corrupt, raises
:class:`~sim.config.ConfigError` with one line naming the file.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sim.config import ConfigError
from sim.metrics import CALL_COLUMNS, STORE_COLUMNS, TURN_COLUMNS
from sim.records import Records, StrategyRun

SUMMARY_KEYS = ("scenario", "seed", "config_sha256", "users", "days", "strategies")
# The per-strategy keys the reports read (a subset of the documented schema).
STRATEGY_KEYS = (
    "turns",
    "error_turns",
    "timeout_turns",
    "tokens_total",
    "usd_total",
    "tokens_by_purpose",
    "tokens_per_day",
    "usd_per_day",
    "llm_calls_by_purpose",
    "extraction_calls_per_session_mean",
    "latency_p50_s",
    "latency_p95_s",
    "latency_p99_s",
    "retrieval_latency_p99_s",
    "memories_per_user_mean",
    "memories_per_user_p99",
    "memories_per_user_max",
    "duplicate_ratio",
    "injected_tokens_mean",
    "injected_tokens_p99",
    "injected_tokens_max",
    "recall",
    "stale_share",
)
# Columns added after the first release: a results folder written before them reads
# as if they were all 0 (no fault injection then: no degraded turn, no retry; no
# prompt cache then: nothing cached or written, nothing saved).
LATER_COLUMNS = {
    "degraded": 0,
    "attempt": 0,
    "cached_tokens": 0,  # runs from before the prompt cache: nothing was cached
    "cache_write_tokens": 0,
    "usd_saved": 0.0,
}
CONFIG_KEYS = ("description", "llm", "embedding", "pricing", "resolved")


@dataclass(frozen=True, slots=True)
class Results:
    """One run's saved outputs: the summary, the resolved config and the raw frames.

    The frames hold every strategy, told apart by their ``strategy`` column, in the
    order the run wrote them.
    """

    out_dir: Path
    summary: dict[str, Any]
    config: dict[str, Any]
    turns: pd.DataFrame
    calls: pd.DataFrame
    store: pd.DataFrame
    records: list[Records] | None = None
    """The run's records read piece by piece (a large run's spool), instead of the frames."""

    @property
    def strategies(self) -> list[str]:
        """Strategy names in the run's order."""
        return list(self.summary["strategies"])

    @property
    def description(self) -> str:
        """The scenario's one-line description."""
        return self.config.get("description") or ""

    def runs(self) -> list[StrategyRun]:
        """Per-strategy records as the engine returned them, for the shared report code.

        ``store_final`` is not saved; the last daily snapshot stands in for it.
        With ``records`` (a run just simulated in shards), those.
        """
        if self.records is not None:
            return list(self.records)
        return [self._run(name) for name in self.strategies]

    def _run(self, name: str) -> StrategyRun:
        def own(frame: pd.DataFrame) -> pd.DataFrame:
            rows = frame[frame["strategy"] == name].drop(columns="strategy")
            return rows.reset_index(drop=True)

        store = own(self.store)
        last = store[store["day"] == store["day"].max()] if len(store) else store
        final = last[["user", "memories", "duplicates"]].reset_index(drop=True)
        return StrategyRun(name, own(self.turns), own(self.calls), store, final)


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {_one_line(err)}") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON: {_one_line(err)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data


def _read_parquet(path: Path, columns: dict[str, str]) -> pd.DataFrame:
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise ConfigError(f"{path}: not a readable parquet file: {_one_line(err)}") from None
    for column in sorted(LATER_COLUMNS.keys() & columns.keys() - set(frame.columns)):
        frame[column] = pd.Series(LATER_COLUMNS[column], index=frame.index, dtype=columns[column])
    missing = [c for c in (*columns, "strategy") if c not in frame.columns]
    if missing:
        raise ConfigError(f"{path}: missing columns: {', '.join(missing)}")
    return frame


def _check_summary(path: Path, summary: dict[str, Any]) -> None:
    missing = [k for k in SUMMARY_KEYS if k not in summary]
    if missing:
        raise ConfigError(f"{path}: missing keys: {', '.join(missing)}")
    blocks = summary["strategies"]
    if not isinstance(blocks, dict) or not blocks:
        raise ConfigError(f"{path}: 'strategies' holds no strategy")
    for name, block in blocks.items():
        lacking = [k for k in STRATEGY_KEYS if not isinstance(block, dict) or k not in block]
        if lacking:
            raise ConfigError(f"{path}: strategy {name!r}: missing keys: {', '.join(lacking)}")
        for key, value in block.items():
            if key not in NON_NUMERIC_KEYS:
                _check_numbers(path, f"strategies.{name}.{key}", value)
        if len(block["tokens_per_day"]) != summary["days"]:
            raise ConfigError(f"{path}: strategy {name!r}: tokens_per_day has the wrong length")


NON_NUMERIC_KEYS = frozenset({"alerts"})
"""Keys of a strategy's summary block that hold more than numbers (checked where read)."""


def _check_numbers(path: Path, field: str, value: Any) -> None:
    """``value`` is a finite number, or a list or mapping of them; else a one-line error."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_numbers(path, f"{field}.{key}", item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_numbers(path, f"{field}[{i}]", item)
    elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        shown = json.dumps(value, default=str)[:60]
        raise ConfigError(f"{path}: field '{field}' = {shown}: expected a number")


def _check_config(path: Path, config: dict[str, Any]) -> None:
    missing = [k for k in CONFIG_KEYS if k not in config]
    if missing:
        raise ConfigError(f"{path}: missing keys: {', '.join(missing)}")


def load_results(out_dir: Path, records: list[Records] | None = None) -> Results:
    """Read a run's output folder; raise ``ConfigError`` (one line) if it is unusable.

    ``records``: the run's records, already at hand piece by piece (a large run's
    spool): the parquet files are then not read into memory.
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise ConfigError(f"{out_dir}: no such results folder")
    summary = _read_json(out_dir / "summary.json")
    _check_summary(out_dir / "summary.json", summary)
    config = _read_json(out_dir / "config.json")
    _check_config(out_dir / "config.json", config)
    frames = {}
    if records is not None:
        empty = {t: pd.DataFrame() for t in ("turns", "calls", "store")}
        return Results(out_dir, summary, config, **empty, records=records)
    for name, columns in (
        ("turns.parquet", TURN_COLUMNS),
        ("calls.parquet", CALL_COLUMNS),
        ("store.parquet", STORE_COLUMNS),
    ):
        frame = _read_parquet(out_dir / name, columns)
        unknown = sorted(set(frame["strategy"].astype(str)) - set(summary["strategies"]))
        if unknown:
            raise ConfigError(
                f"{out_dir / name}: strategies not in summary.json: {', '.join(unknown)}"
            )
        frames[name.split(".")[0]] = frame
    return Results(out_dir, summary, config, **frames)
