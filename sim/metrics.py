"""Columnar recorders for turns, calls and store sizes. They only record.

Every table's columns are declared here once, as :class:`Column` records (name,
dtype, meaning), and nowhere else: a row is recorded by keyword
(``turns.add(user=..., session=..., ...)``), so a missing or unknown column is a
``TypeError`` at the call, and a column inserted here cannot shift the others.
The engine's hot paths take a :meth:`Recorder.writer` instead: it names every
column once, when it is made, and then takes the values by position in that
order (a missing or unknown name is a ``ValueError`` when it is made).
Each recorder appends plain values to one list per column (no per-row objects);
``frame()`` turns them into a pandas DataFrame for ``reports/``.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

DTYPES = frozenset({"int8", "int32", "int64", "float64", "bool", "category"})
"""The dtypes a column may have."""


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a recorded table: its name, its dtype and what it means."""

    name: str
    dtype: str
    doc: str


def _declare(*columns: Column) -> tuple[Column, ...]:
    """``columns`` as a table, checked: each named once, a known dtype, a meaning.

    Names become keyword parameters of the compiled ``add``: identifiers not
    starting with ``_`` (the compiled function's own names do).
    """
    seen: set[str] = set()
    for column in columns:
        name = column.name
        if not name.isidentifier() or name.startswith("_") or name in seen:
            raise ValueError(f"column {name!r}: not a fresh public identifier")
        if column.dtype not in DTYPES:
            raise ValueError(f"column {name!r}: unknown dtype {column.dtype!r}")
        if not column.doc.strip():
            raise ValueError(f"column {name!r}: no meaning given")
        seen.add(name)
    return columns


TURNS = _declare(
    Column("user", "int32", "the user's index in the workload"),
    Column("session", "int32", "the session's index within the user's script"),
    Column("turn", "int32", "the turn's index within the session"),
    Column("start_s", "float64", "simulated time the user's message arrived, seconds"),
    Column("kind", "category", "the message's kind: state, update, probe, filler, trace, ..."),
    Column("latency_s", "float64", "what the user waited: message to reply (retrieval + chat)"),
    Column("queue_s", "float64", "of the latency, time spent waiting for an endpoint"),
    Column("retrieval_s", "float64", "of the latency, time before the chat call (planning calls)"),
    Column("post_reply_s", "float64", "time of the after-turn calls, after the reply"),
    Column("error", "category", "why the turn got no reply (a call's error); empty: it did"),
    Column("prompt_tokens", "int64", "billed input tokens of the chat request"),
    Column("system_tokens", "int64", "of the prompt, the system message and reply priming"),
    Column("memory_tokens", "int64", "of the prompt, the injected memory block"),
    Column("history_tokens", "int64", "of the prompt, the earlier messages sent verbatim"),
    Column("user_tokens", "int64", "of the prompt, the user's message"),
    Column("reply_tokens", "int64", "tokens of the reply; 0 without one"),
    Column("memories_injected", "int32", "memories (or summaries) injected into the prompt"),
    Column("store_size", "int32", "the user's memories in the store when the turn began"),
    Column(
        "recall", "int8", "1 the probed fact's latest version was in the prompt, 0 not, -1 no probe"
    ),
    Column("stale", "int8", "1 an outdated version was in the prompt, 0 not, -1 not a probe"),
    Column("foreign_memories", "int32", "prompt items (memories, history) owned by another user"),
    Column("degraded", "int8", "1: a store call failed in an outage, the turn went on without it"),
    Column(
        "instructions_injected", "int32", "injected memories holding a user-planted instruction"
    ),
)
"""One row per user turn."""

CALLS = _declare(
    Column("user", "int32", "the user the call was made for"),
    Column("start_s", "float64", "simulated time the call was sent, seconds"),
    Column("purpose", "category", "chat, extract, summarize, update, embed, store_query, ..."),
    Column("endpoint", "category", "the endpoint that served it: llm, embedding or store"),
    Column("background", "bool", "made by background work, not while a user waited"),
    Column("tokens_in", "int64", "billed input tokens; 0 when not billed"),
    Column("tokens_out", "int64", "billed output tokens; 0 when not billed"),
    Column("latency_s", "float64", "the call's modelled service time, seconds"),
    Column("queue_s", "float64", "time waiting for a slot or quota before it was served"),
    Column("usd", "float64", "what the call cost; 0 when not billed"),
    Column(
        "error", "category", "why the call failed (timeout, rate_limited, ...); empty: it did not"
    ),
    Column("items", "int32", "factoids extracted, texts embedded, memories read/written/deleted"),
    Column("record_id", "int64", "a store call's memory id when it touched exactly one; else -1"),
    Column("attempt", "int8", "0: first try; n: the n-th retry of an injected fault"),
    Column("cached_tokens", "int32", "input tokens read from the provider's prompt cache"),
    Column("cache_write_tokens", "int32", "input tokens written to it (billed at the write price)"),
    Column("usd_saved", "float64", "what the call would have cost without the cache, less usd"),
)
"""One row per metered call (each attempt of a retried call is a row)."""

STORE_DAILY = _declare(
    Column("day", "int32", "snapshot taken at the end of this simulated day"),
    Column("user", "int32", "the user whose store partition it is"),
    Column("memories", "int32", "memories the user has"),
    Column("duplicates", "int32", "of them, memories repeating a fact another one holds"),
)
"""One row per user per simulated day: the size of the user's memory."""

STORE_FINAL = _declare(
    Column("user", "int32", "the user whose store partition it is"),
    Column("memories", "int32", "memories the user has at the end of the run"),
    Column("duplicates", "int32", "of them, memories repeating a fact another one holds"),
    Column("never_retrieved", "int32", "of them, memories never used in a prompt"),
    Column("facts_lost_to_faults", "int32", "facts sent only to failed extractions, not stored"),
)
"""One row per user at the end of the run."""


def dtypes(columns: tuple[Column, ...]) -> dict[str, str]:
    """``{name: dtype}`` of a table's columns, in order."""
    return {column.name: column.dtype for column in columns}


# Name → dtype views of the declarations, for readers of frames and files.
TURN_COLUMNS = dtypes(TURNS)
CALL_COLUMNS = dtypes(CALLS)
STORE_COLUMNS = dtypes(STORE_DAILY)
STORE_FINAL_COLUMNS = dtypes(STORE_FINAL)


# Numeric columns are kept in typed arrays (8 bytes a float instead of a 24-byte
# object plus an 8-byte pointer), so a run of millions of rows stays small.
_ARRAY_CODES = {"int8": "b", "int32": "i", "int64": "q", "float64": "d"}


def _column(dtype: str) -> array | list:
    code = _ARRAY_CODES.get(dtype)
    return array(code) if code else []  # categories and flags: shared objects in a list


class Recorder:
    """Append-only columns with fixed names and dtypes; rows are added by column name.

    By keyword (:attr:`add`), or by position through a :meth:`writer` that named the
    columns once.
    """

    def __init__(self, table: str, columns: tuple[Column, ...]) -> None:
        self.table, self.columns = table, columns
        self._lists: tuple[array | list, ...] = tuple(_column(c.dtype) for c in columns)
        self.add = self._compile_add()

    def _compile_add(self) -> Callable[..., None]:
        """An ``add(*, column=value, ...)`` with one bound ``append`` per column, unrolled.

        Keyword-only parameters without defaults make a missing or unknown column a
        ``TypeError`` at the call, for free. A loop over ``kwargs`` or ``zip`` costs
        several times more per row, and rows number in the millions. (CPython passes
        more than 15 keywords through a dict: about 1 µs more a turn row than values
        by position; the engine's hot paths write through a :meth:`writer` instead.)
        """
        names = [column.name for column in self.columns]
        # Errors then name the table: "turns.add() missing 1 required keyword-only argument".
        return self._compile(
            "add",
            f"*, {', '.join(names)}",
            list(enumerate(names)),
            f"Append one row to {self.table}: every column by keyword, none left out.",
        )

    def writer(self, *names: str) -> Callable[..., None]:
        """An ``append(value, ...)`` taking one value per column, by position, in ``names``' order.

        ``names`` must name every column exactly once; the columns are matched by
        name here, once, so a column inserted in the declarations cannot shift the
        values (the writer is then refused, a ``ValueError``). Rows go to the same
        columns as :attr:`add`'s, in the order they are written.
        """
        index = {column.name: i for i, column in enumerate(self.columns)}
        if sorted(names) != sorted(index):
            raise ValueError(f"{self.table}: a writer names every column once, got {names}")
        return self._compile(
            "append",
            ", ".join(names),
            [(index[name], name) for name in names],
            f"Append one row to {self.table}: {', '.join(names)}, by position.",
        )

    def _compile(
        self, name: str, signature: str, appends: list[tuple[int, str]], doc: str
    ) -> Callable[..., None]:
        """``def name(signature)`` appending each ``(column index, parameter)``, unrolled."""
        body = "; ".join(f"_a{i}({param})" for i, param in appends)
        scope = {f"_a{i}": values.append for i, values in enumerate(self._lists)}
        exec(f"def {name}({signature}):\n    {body}", scope)
        fn = scope[name]
        fn.__code__ = fn.__code__.replace(co_qualname=f"{self.table}.{name}")
        fn.__qualname__ = f"{self.table}.{name}"
        fn.__doc__ = doc
        return fn

    def __len__(self) -> int:
        return len(self._lists[0])

    def frame(self) -> pd.DataFrame:
        """The rows recorded so far as a DataFrame with the declared dtypes."""
        data = {
            column.name: pd.Series(_values(values, column.dtype), dtype=column.dtype)
            for column, values in zip(self.columns, self._lists, strict=True)
        }
        # The columns are fresh copies already: joining them into blocks of one dtype
        # would copy every column again, for the same values.
        return pd.DataFrame(data, copy=False)


def _values(column: array | list, dtype: str) -> np.ndarray | list | pd.Categorical:
    if isinstance(column, array):
        return np.frombuffer(column, dtype=dtype).copy() if len(column) else np.empty(0, dtype)
    if dtype == "category":
        # The same categories and codes as ``Series(values, dtype="category")``, several
        # times faster: that path first converts every value to a string array.
        return pd.Categorical(column)
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
    """A recorder for one row per user turn (:data:`TURNS`)."""
    return Recorder("turns", TURNS)


def call_recorder() -> Recorder:
    """A recorder for one row per metered call (:data:`CALLS`)."""
    return Recorder("calls", CALLS)


def store_recorder() -> Recorder:
    """A recorder for one row per user per simulated day (:data:`STORE_DAILY`)."""
    return Recorder("store_daily", STORE_DAILY)


def store_final_recorder() -> Recorder:
    """A recorder for one row per user at the end of the run (:data:`STORE_FINAL`)."""
    return Recorder("store_final", STORE_FINAL)
