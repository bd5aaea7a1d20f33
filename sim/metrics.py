"""Columnar recorders for turns, calls and store sizes. They only record.

Each recorder appends plain values to one list per column (no per-row objects);
``frame()`` turns them into a pandas DataFrame for ``reports/``. Column names
live here and nowhere else.
"""

from __future__ import annotations

from array import array

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

TURN_COLUMNS: dict[str, str] = {
    "user": "int32",
    "session": "int32",
    "turn": "int32",
    "start_s": "float64",
    "kind": "category",
    "latency_s": "float64",
    "queue_s": "float64",
    "retrieval_s": "float64",
    "post_reply_s": "float64",
    "error": "category",
    "prompt_tokens": "int64",
    "system_tokens": "int64",
    "memory_tokens": "int64",
    "history_tokens": "int64",
    "user_tokens": "int64",
    "reply_tokens": "int64",
    "memories_injected": "int32",
    "store_size": "int32",
    "recall": "int8",  # 1 hit, 0 miss, -1 not a probe
    "stale": "int8",  # 1 an outdated version was in the prompt, 0 not, -1 not a probe
    "foreign_memories": "int32",  # prompt items (memories, history) owned by another user
    "degraded": "int8",  # 1: a store call failed in an outage, the turn went on without it
    "instructions_injected": "int32",  # injected memories holding a user-planted instruction
}

CALL_COLUMNS: dict[str, str] = {
    "user": "int32",
    "start_s": "float64",
    "purpose": "category",
    "endpoint": "category",
    "background": "bool",
    "tokens_in": "int64",
    "tokens_out": "int64",
    "latency_s": "float64",
    "queue_s": "float64",
    "usd": "float64",
    "error": "category",
    "items": "int32",  # factoids extracted, texts embedded, memories read/written/deleted
    "attempt": "int8",  # 0: first try; n: the n-th retry of an injected fault
    "cached_tokens": "int32",  # input tokens read from the provider's prompt cache
    "cache_write_tokens": "int32",  # input tokens written to it (billed at the write price)
    "usd_saved": "float64",  # what the call would have cost without the cache, less ``usd``
}

STORE_COLUMNS: dict[str, str] = {
    "day": "int32",  # snapshot taken at the end of this simulated day
    "user": "int32",
    "memories": "int32",
    "duplicates": "int32",
}


# Numeric columns are kept in typed arrays (8 bytes a float instead of a 24-byte
# object plus an 8-byte pointer), so a run of millions of rows stays small.
_ARRAY_CODES = {"int8": "b", "int32": "i", "int64": "q", "float64": "d"}


def _column(dtype: str) -> array | list:
    code = _ARRAY_CODES.get(dtype)
    return array(code) if code else []  # categories and flags: shared objects in a list


class Recorder:
    """Append-only columns with fixed names and dtypes."""

    def __init__(self, columns: dict[str, str]) -> None:
        self.columns = columns
        self._lists: tuple[array | list, ...] = tuple(_column(d) for d in columns.values())
        self.add = self._compile_add()

    def _compile_add(self):
        """An ``add(*values)`` with one bound ``append`` per column, unrolled.

        A loop over ``zip`` costs several times more per row, and rows number in
        the millions.
        """
        names = [f"v{i}" for i in range(len(self._lists))]
        body = "; ".join(f"a{i}({n})" for i, n in enumerate(names))
        scope = {f"a{i}": lst.append for i, lst in enumerate(self._lists)}
        exec(f"def add({', '.join(names)}):\n    {body}", scope)
        add = scope["add"]
        add.__doc__ = "Append one row, values in column order."
        return add

    def __len__(self) -> int:
        return len(self._lists[0])

    def frame(self) -> pd.DataFrame:
        """The rows recorded so far as a DataFrame with the declared dtypes."""
        data = {
            name: pd.Series(_values(values, dtype), dtype=dtype)
            for (name, dtype), values in zip(self.columns.items(), self._lists, strict=True)
        }
        return pd.DataFrame(data)


def _values(column: array | list, dtype: str) -> np.ndarray | list:
    if isinstance(column, array):
        return np.frombuffer(column, dtype=dtype).copy() if len(column) else np.empty(0, dtype)
    return column


def concat_frames(frames: list[pd.DataFrame], columns: dict[str, str]) -> pd.DataFrame:
    """Frames of the same recorder joined in order, with the declared dtypes kept.

    Consumes ``frames``: each one is released as soon as it is copied, so joining
    needs about one frame's worth of memory beyond the result, not a second copy
    of everything. Categories are re-derived from the joined values, sorted, as
    :meth:`Recorder.frame` derives them, so a joined frame equals one recorded in
    one piece.
    """
    total = sum(len(frame) for frame in frames)
    plain = {n: np.empty(total, d) for n, d in columns.items() if d != "category"}
    categorical: dict[str, list[pd.Categorical]] = {
        n: [] for n, d in columns.items() if d == "category"
    }
    start = 0
    while frames:
        frame = frames.pop(0)
        stop = start + len(frame)
        for name, target in plain.items():
            target[start:stop] = frame[name].to_numpy()
        for name, pieces in categorical.items():
            pieces.append(frame[name].array)
        start = stop
        del frame
    data: dict[str, object] = {n: pd.Series(v, copy=False) for n, v in plain.items()}
    for name, pieces in categorical.items():
        data[name] = pd.Series(union_categoricals(pieces, sort_categories=True))
    return pd.DataFrame({name: data[name] for name in columns})


def turn_recorder() -> Recorder:
    """A recorder for one row per user turn."""
    return Recorder(TURN_COLUMNS)


def call_recorder() -> Recorder:
    """A recorder for one row per metered call."""
    return Recorder(CALL_COLUMNS)


def store_recorder() -> Recorder:
    """A recorder for one row per user per simulated day (store size)."""
    return Recorder(STORE_COLUMNS)
