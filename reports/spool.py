"""A large run's records on disk as its shards finish, read back a shard at a time.

A sharded run hands each finished shard's records to a :class:`Spool` (in shard
order) and keeps nothing of them: the spool appends them, as one Parquet row
group per shard and table, to one file per strategy and table
(``<strategy>.turns.parquet``, ``.calls.parquet``, ``.store_daily.parquet``),
written with a streaming writer. Only ``store_final`` (one row per user) stays
in memory. :class:`SpooledRun` is one strategy's records read back: its
:meth:`~SpooledRun.pieces` yields one shard at a time, reading only the columns
asked for, so the summary (:mod:`reports.summary`) is computed with memory that
does not grow with the run. :func:`write_combined` streams the spool into the
run's ``turns.parquet``, ``calls.parquet`` and ``store.parquet``, in the order
and with the ``strategy`` column the in-memory writer gives them.
"""

from __future__ import annotations

import re
import shutil
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sim.metrics import CALL_COLUMNS, STORE_COLUMNS, TURN_COLUMNS, concat_frames
from sim.records import Columns, Records, StrategyRun

TABLES = {"turns": TURN_COLUMNS, "calls": CALL_COLUMNS, "store_daily": STORE_COLUMNS}
"""The spooled tables and their declared columns (:mod:`sim.metrics`)."""

_ARROW = {
    "int8": pa.int8(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "category": pa.dictionary(pa.int32(), pa.string()),
}


def arrow_schema(columns: dict[str, str]) -> pa.Schema:
    """The Arrow schema of a table's declared columns (categories as dictionaries)."""
    return pa.schema([(name, _ARROW[dtype]) for name, dtype in columns.items()])


def _file_name(strategy: str, table: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", strategy)
    return f"{safe}.{table}.parquet"


@dataclass
class SpooledRun:
    """One strategy's records in a spool folder: a :class:`~sim.records.Records`."""

    strategy: str
    folder: Path
    groups: dict[str, list[int]] = field(default_factory=dict)  # table → row groups per shard
    finals: list[pd.DataFrame] = field(default_factory=list)  # store_final per shard
    owner: object = field(default=None, repr=False)
    """What removes a temporary spool folder once no run reads it (:class:`Spool`)."""

    @property
    def store_final(self) -> pd.DataFrame:
        """One row per user at the end of the run, every shard's."""
        return pd.concat(self.finals, ignore_index=True)

    @property
    def turns(self) -> pd.DataFrame:
        """Every turn, read into memory at once (see :func:`whole`)."""
        return whole(self).turns

    @property
    def calls(self) -> pd.DataFrame:
        """Every call, read into memory at once (see :func:`whole`)."""
        return whole(self).calls

    @property
    def store_daily(self) -> pd.DataFrame:
        """Every daily store snapshot, read into memory at once (see :func:`whole`)."""
        return whole(self).store_daily

    @property
    def shards(self) -> int:
        """How many shards the records hold."""
        return len(self.finals)

    def path(self, table: str) -> Path:
        """The spool file of one of :data:`TABLES`."""
        return self.folder / _file_name(self.strategy, table)

    def pieces(self, columns: Columns | None = None) -> Iterator[StrategyRun]:
        """One :class:`~sim.records.StrategyRun` per shard, in shard order.

        ``columns``: per table, the columns to read (a table not named is read
        whole; an empty list reads no column, only the row count).
        """
        files = {table: pq.ParquetFile(self.path(table)) for table in TABLES}
        first = dict.fromkeys(TABLES, 0)
        for shard in range(self.shards):
            frames = {}
            for table, declared in TABLES.items():
                wanted = list(declared) if columns is None else columns.get(table, list(declared))
                count = self.groups[table][shard]
                groups = list(range(first[table], first[table] + count))
                first[table] += count
                frames[table] = _read(files[table], groups, wanted, declared)
            yield StrategyRun(self.strategy, store_final=self.finals[shard], **frames)


def _read(
    file: pq.ParquetFile, groups: list[int], columns: list[str], declared: dict[str, str]
) -> pd.DataFrame:
    if not groups:
        return pd.DataFrame({c: pd.Series(dtype=declared[c]) for c in columns})
    table = file.read_row_groups(groups, columns=columns)
    frame = table.to_pandas()
    if not columns:  # pyarrow keeps the row count only in the table
        frame = pd.DataFrame(index=pd.RangeIndex(table.num_rows))
    return frame


class _Removal:
    """Removes a folder when the last object holding this one is collected."""

    def __init__(self, folder: Path) -> None:
        weakref.finalize(self, shutil.rmtree, folder, True)


class Spool:
    """Appends each shard's records, in shard order, to per-strategy Parquet files.

    ``temporary``: the folder is removed once no :class:`SpooledRun` of it is left
    (or when the process exits), and by :meth:`remove`.
    """

    def __init__(self, folder: Path, strategies: list[str], temporary: bool = False) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        owner = _Removal(folder) if temporary else None
        self.runs = [
            SpooledRun(name, folder, {t: [] for t in TABLES}, owner=owner) for name in strategies
        ]
        self.writers: dict[tuple[str, str], pq.ParquetWriter] = {}

    def remove(self) -> None:
        """Close the files and remove the folder (a run that failed)."""
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()
        shutil.rmtree(self.folder, ignore_errors=True)

    def add(self, runs: list[StrategyRun]) -> None:
        """One shard's records, one :class:`StrategyRun` per strategy in the run's order."""
        for spooled, run in zip(self.runs, runs, strict=True):
            for table, declared in TABLES.items():
                frame = getattr(run, table)
                if len(frame):
                    schema = arrow_schema(declared)
                    data = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
                    writer = self._writer(spooled, table, schema)
                    writer.write_table(data, row_group_size=len(frame))
                spooled.groups[table].append(1 if len(frame) else 0)
            spooled.finals.append(run.store_final)
        # Arrow's allocator keeps freed buffers for reuse; a shard's are not reused.
        pa.default_memory_pool().release_unused()

    def _writer(self, run: SpooledRun, table: str, schema: pa.Schema) -> pq.ParquetWriter:
        key = (run.strategy, table)
        if key not in self.writers:  # uncompressed: dictionary and run-length encoding
            # already make the spool about as small as snappy does, and it writes faster
            self.writers[key] = pq.ParquetWriter(run.path(table), schema, compression="none")
        return self.writers[key]

    def finish(self) -> list[SpooledRun]:
        """Close the files; the runs, readable piece by piece."""
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()
        for run in self.runs:  # a table no shard wrote to is still a (empty) file
            for table, declared in TABLES.items():
                if not run.path(table).exists():
                    pq.write_table(arrow_schema(declared).empty_table(), run.path(table))
        return self.runs


COMBINED = {"turns": "turns.parquet", "calls": "calls.parquet", "store_daily": "store.parquet"}
"""Each spooled table and the run's file it goes into."""


def write_combined(runs: list[SpooledRun], table: str, path: Path) -> None:
    """Stream one table of every strategy's spool into ``path``, strategy after strategy.

    The rows, their order and the ``strategy`` column (a category of every
    strategy name) are those :func:`reports.output.write_outputs` writes for a run
    held in memory; each shard is one row group.
    """
    declared = TABLES[table]
    names = sorted(run.strategy for run in runs)
    strategy_type = pa.dictionary(pa.int32(), pa.string())
    schema = arrow_schema(declared).append(pa.field("strategy", strategy_type))
    with pq.ParquetWriter(path, schema) as writer:
        for run in runs:
            source = pq.ParquetFile(run.path(table))
            code = names.index(run.strategy)
            for group in range(source.num_row_groups):
                data = source.read_row_group(group)
                codes = pa.array(np.full(data.num_rows, code, dtype=np.int32))
                strategy = pa.DictionaryArray.from_arrays(codes, pa.array(names, pa.string()))
                data = data.append_column("strategy", strategy)
                writer.write_table(data, row_group_size=max(data.num_rows, 1))


def whole(run: Records) -> StrategyRun:
    """All of ``run``'s records in memory, as one :class:`~sim.records.StrategyRun`.

    For the few readers that need every row at once (a real library's memory-work
    table, the API's frames); the summary and the reports read piece by piece.
    """
    if isinstance(run, StrategyRun):
        return run
    frames: dict[str, list[pd.DataFrame]] = {table: [] for table in TABLES}
    for piece in run.pieces():
        for table in TABLES:
            frames[table].append(getattr(piece, table))
    joined = {table: concat_frames(frames[table], TABLES[table]) for table in TABLES}
    return StrategyRun(run.strategy, store_final=run.store_final, **joined)
