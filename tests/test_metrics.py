"""Columns declared once in ``sim.metrics``, rows recorded by keyword."""

from __future__ import annotations

import pandas as pd
import pytest

from sim import metrics
from sim.metrics import (
    CALL_COLUMNS,
    CALLS,
    DTYPES,
    STORE_COLUMNS,
    STORE_DAILY,
    STORE_FINAL,
    STORE_FINAL_COLUMNS,
    TURN_COLUMNS,
    TURNS,
    Column,
    Recorder,
    call_recorder,
    store_final_recorder,
    store_recorder,
    turn_recorder,
)

TABLES = {"turns": TURNS, "calls": CALLS, "store_daily": STORE_DAILY, "store_final": STORE_FINAL}


@pytest.mark.parametrize("table", TABLES.values(), ids=TABLES.keys())
def test_every_column_is_declared_once_with_a_dtype_and_a_meaning(table):
    names = [column.name for column in table]
    assert len(names) == len(set(names))
    for column in table:
        assert isinstance(column, Column)
        assert column.dtype in DTYPES, column
        assert column.doc.strip(), column


def test_the_name_to_dtype_views_are_the_declarations():
    for view, table in (
        (TURN_COLUMNS, TURNS),
        (CALL_COLUMNS, CALLS),
        (STORE_COLUMNS, STORE_DAILY),
        (STORE_FINAL_COLUMNS, STORE_FINAL),
    ):
        assert list(view.items()) == [(c.name, c.dtype) for c in table]


@pytest.mark.parametrize(
    "bad",
    [
        (Column("user", "int32", "a"), Column("user", "int64", "b")),  # twice
        (Column("user", "int16", "a"),),  # unknown dtype
        (Column("user", "int32", " "),),  # no meaning
        (Column("_a0", "int32", "clashes with the compiled add's names"),),
        (Column("not a name", "int32", "a"),),
    ],
)
def test_a_bad_declaration_is_refused(bad):
    with pytest.raises(ValueError, match="column"):
        metrics._declare(*bad)


def _store_row(**overrides) -> dict:
    return {"day": 1, "user": 7, "memories": 3, "duplicates": 1, **overrides}


def test_rows_are_recorded_by_keyword_in_any_order():
    recorder = store_recorder()
    recorder.add(**_store_row())
    recorder.add(duplicates=0, memories=5, user=8, day=2)  # the order of keywords is free
    frame = recorder.frame()
    assert len(recorder) == 2
    assert frame.to_dict("list") == {
        "day": [1, 2],
        "user": [7, 8],
        "memories": [3, 5],
        "duplicates": [1, 0],
    }


def test_a_missing_column_is_an_error_naming_it():
    recorder = store_recorder()
    row = _store_row()
    del row["duplicates"]
    with pytest.raises(TypeError, match=r"store_daily\.add\(\) missing .*'duplicates'"):
        recorder.add(**row)
    assert len(recorder) == 0  # nothing half-recorded


def test_an_unknown_column_is_an_error_naming_it():
    recorder = store_recorder()
    with pytest.raises(TypeError, match="unexpected keyword argument 'size'"):
        recorder.add(**_store_row(size=4))
    assert len(recorder) == 0


def test_values_by_position_are_refused():
    with pytest.raises(TypeError, match="positional"):
        store_recorder().add(1, 7, 3, 1)


def test_a_writer_takes_the_columns_it_named_in_its_order():
    recorder = store_recorder()
    write = recorder.writer("user", "duplicates", "day", "memories")
    write(8, 0, 2, 5)
    recorder.add(**_store_row())  # the same columns, in the order rows come
    assert len(recorder) == 2
    assert recorder.frame().to_dict("list") == {
        "day": [2, 1],
        "user": [8, 7],
        "memories": [5, 3],
        "duplicates": [0, 1],
    }


@pytest.mark.parametrize(
    "names",
    [("day", "user", "memories"), ("day", "user", "memories", "size"), ("day",) * 4],
    ids=["missing", "unknown", "repeated"],
)
def test_a_writer_must_name_every_column_once(names):
    with pytest.raises(ValueError, match="store_daily: a writer names every column once"):
        store_recorder().writer(*names)


def test_each_table_needs_every_one_of_its_columns():
    for recorder, table in (
        (turn_recorder(), TURNS),
        (call_recorder(), CALLS),
        (store_recorder(), STORE_DAILY),
        (store_final_recorder(), STORE_FINAL),
    ):
        row = {column.name: 0 for column in table}
        recorder.add(**row)
        for name in row:
            partial = {k: v for k, v in row.items() if k != name}
            with pytest.raises(TypeError, match=f"'{name}'"):
                recorder.add(**partial)
        assert len(recorder) == 1


def test_an_empty_recorder_gives_the_declared_columns_and_dtypes():
    frame = Recorder("t", TURNS).frame()
    assert list(frame.columns) == list(TURN_COLUMNS)
    assert {n: str(d) for n, d in frame.dtypes.items()} == TURN_COLUMNS


def _dtypes(frame: pd.DataFrame) -> dict[str, str]:
    return {name: str(dtype) for name, dtype in frame.dtypes.items()}


def test_a_run_s_frames_have_exactly_the_declared_columns(tiny_run):
    for run in tiny_run.runs:
        assert _dtypes(run.turns) == TURN_COLUMNS
        assert _dtypes(run.calls) == CALL_COLUMNS
        assert _dtypes(run.store_daily) == STORE_COLUMNS
        assert _dtypes(run.store_final) == STORE_FINAL_COLUMNS
        assert list(run.turns.columns) == [c.name for c in TURNS]  # in declared order
        assert list(run.store_final.columns) == [c.name for c in STORE_FINAL]
