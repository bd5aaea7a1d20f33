"""A run's output folder is replaced as a whole, never file by file.

An interrupt at any point of the writing phase must leave the earlier run or the
new one, each complete (every file compared by hash with a finished run of each
seed), and nothing else beside it. The runs are stopped at exact points through
the test-only hook ``MEMSIM_TEST_SIGNAL_AT`` (``reports/output.py``): the process
signals itself right after writing a named file, or at a step of the swap.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from reports.output import TEST_SIGNAL_AT, ReplacedFolder, earlier_run
from sim.config import ConfigError

MEMSIM = [sys.executable, "-m", "memsim"]
OLD_SEED, NEW_SEED = 1, 2
_OUT = {"capture_output": True, "text": True, "check": True}


def _memsim(*args: str, signal_at: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != TEST_SIGNAL_AT}
    if signal_at is not None:
        env[TEST_SIGNAL_AT] = signal_at
    cmd = [*MEMSIM, *args, "-q"] if args[0] == "run" else [*MEMSIM, *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)


def _run(out: Path, seed: int, signal_at: str | None = None) -> subprocess.CompletedProcess:
    args = ("run", "tiny", "--users", "3", "--days", "2", "--seed", str(seed), "--out", str(out))
    return _memsim(*args, signal_at=signal_at)


def _hashes(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path) with the SHA-256 of its bytes."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> dict[int, Path]:
    """A complete run of each seed, each into a fresh folder (so: no warning)."""
    base = tmp_path_factory.mktemp("finished")
    folders = {}
    for seed in (OLD_SEED, NEW_SEED):
        done = _run(base / f"seed-{seed}", seed)
        assert (done.returncode, done.stderr) == (0, "")
        folders[seed] = base / f"seed-{seed}"
    return folders


@pytest.fixture()
def old_run(tmp_path, finished) -> Path:
    """``tmp_path/out`` holding a copy of the finished old run, and nothing else in tmp_path."""
    out = tmp_path / "out"
    shutil.copytree(finished[OLD_SEED], out)
    return out


def test_the_two_seeds_differ_in_every_data_file(finished):
    old, new = _hashes(finished[OLD_SEED]), _hashes(finished[NEW_SEED])
    assert old.keys() == new.keys()
    assert len(old) > 10 and "charts/recall-vs-cost.svg" in old
    for name in ("summary.json", "turns.parquet", "report.html"):
        assert old[name] != new[name]


# point of the writing phase -> what the folder holds after an interrupt there
POINTS = {
    "turns.parquet": "old",  # the first file the run writes
    "summary.json@SIGTERM": "old",  # the last of the data files
    "recall-vs-cost.svg": "old",  # a chart, midway through the reports
    "report.html@SIGTERM": "old",  # the last new file
    ":staged": "old",  # everything written, nothing swapped
    ":swap": "new",  # between the two renames: the signal waits for the second
    ":swapped@SIGTERM": "new",  # in place, the old folder not yet removed
}


@pytest.mark.parametrize("point", list(POINTS))
def test_interrupt_while_writing_leaves_old_or_new_run_whole(point, old_run, finished):
    done = _run(old_run, NEW_SEED, signal_at=point)
    signum = signal.Signals[point.partition("@")[2] or "SIGINT"]
    assert done.returncode == 128 + signum  # 130 for SIGINT, 143 for SIGTERM
    last = done.stderr.splitlines()[-1]
    assert last.startswith(f"memsim: interrupted ({signum.name}); ")
    expected = POINTS[point]
    if expected == "old":
        assert last.endswith(f"the earlier results in {old_run} are intact")
    else:
        assert last.endswith(f"{old_run} holds the new results, complete")
    seed = OLD_SEED if expected == "old" else NEW_SEED
    assert _hashes(old_run) == _hashes(finished[seed])
    assert [p.name for p in old_run.parent.iterdir()] == ["out"]  # nothing left beside it


def test_a_killed_swap_is_recovered_by_the_next_run(old_run, finished):
    parent = old_run.parent
    killed = _run(old_run, NEW_SEED, signal_at="summary.json@SIGKILL")
    assert killed.returncode == -signal.SIGKILL
    assert _hashes(old_run) == _hashes(finished[OLD_SEED])
    assert len([p for p in parent.iterdir() if ".tmp-" in p.name]) == 1  # its unfinished folder

    # Killed between the two renames: no out/, the old run waits under its aside name.
    killed = _run(old_run, NEW_SEED, signal_at=":swap@SIGKILL")
    assert killed.returncode == -signal.SIGKILL
    assert not old_run.exists()
    (aside,) = [p for p in parent.iterdir() if ".old-" in p.name]
    assert _hashes(aside) == _hashes(finished[OLD_SEED])

    # The next run puts the old one back first and clears what the dead ones left.
    stopped = _run(old_run, NEW_SEED, signal_at="turns.parquet")
    assert stopped.returncode == 130
    assert stopped.stderr.endswith(f"the earlier results in {old_run} are intact\n")
    assert _hashes(old_run) == _hashes(finished[OLD_SEED])
    assert [p.name for p in parent.iterdir()] == ["out"]


def test_replacing_a_run_says_which_on_one_line_and_keeps_other_files(old_run, finished):
    (old_run / "calibration.json").write_text('{"from": "memsim calibrate"}\n')
    done = _run(old_run, NEW_SEED)
    assert done.returncode == 0
    assert done.stderr == (
        f"memsim: warning: replacing the earlier run in {old_run} (scenario tiny, seed 1)\n"
    )
    kept = _hashes(old_run)
    assert (old_run / "calibration.json").read_text() == '{"from": "memsim calibrate"}\n'
    del kept["calibration.json"]
    assert kept == _hashes(finished[NEW_SEED])  # byte-identical to a run into a fresh folder
    assert [p.name for p in old_run.parent.iterdir()] == ["out"]


def test_interrupted_report_leaves_the_earlier_report_whole(old_run, finished):
    (old_run / "charts" / "stale-chart.png").write_bytes(b"drawn by an older memsim")
    before = _hashes(old_run)
    done = _memsim("report", str(old_run), signal_at="report.html")
    assert done.returncode == 130
    assert _hashes(old_run) == before
    done = _memsim("report", str(old_run))
    assert done.returncode == 0
    assert _hashes(old_run) == _hashes(finished[OLD_SEED])  # charts/ redrawn as a whole


@pytest.mark.parametrize(
    ("summary", "said"),
    [
        ('{"scenario": "support-bot", "seed": 42}', "scenario support-bot, seed 42"),
        ('{"previous": "run"}', "its summary.json is unreadable"),
        ("{not json", "its summary.json is unreadable"),
        (None, "its summary.json is missing"),
    ],
)
def test_earlier_run_names_scenario_and_seed_or_says_why_not(tmp_path, summary, said):
    if summary is not None:
        (tmp_path / "summary.json").write_text(summary)
    assert earlier_run(tmp_path) == said


def test_a_failed_block_leaves_the_folder_untouched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("old\n")
    with pytest.raises(RuntimeError), ReplacedFolder(out) as new_dir:
        (new_dir / "summary.json").write_text("new\n")
        raise RuntimeError("the run failed")
    assert (out / "summary.json").read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_dead_processs_aside_folder_is_put_back(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], **_OUT)
    pid = int(dead.stdout)
    aside = tmp_path / f".out.old-{pid}-abc123"
    aside.mkdir()
    (aside / "summary.json").write_text("old\n")
    (tmp_path / f".out.tmp-{pid}-abc123").mkdir()  # its new folder, complete or not
    (tmp_path / f".out.tmp-{os.getpid()}-mine").mkdir()  # a live process's: kept
    ReplacedFolder(tmp_path / "out").recover()
    assert (tmp_path / "out" / "summary.json").read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".out.tmp-{os.getpid()}-mine", "out"]


@pytest.mark.parametrize("where", ["itself", "its parent"])
def test_refuses_to_replace_the_current_folder(tmp_path, monkeypatch, where):
    out = tmp_path / "out"
    (out / "inner").mkdir(parents=True)
    monkeypatch.chdir(out if where == "itself" else out / "inner")
    with pytest.raises(ConfigError, match="holds the current folder"), ReplacedFolder(out):
        pass
    assert (out / "inner").is_dir()


def test_a_file_in_the_way_is_not_a_folder(tmp_path):
    (tmp_path / "out").write_text("keep me")
    with pytest.raises(ConfigError, match="out: not a folder"), ReplacedFolder(tmp_path / "out"):
        pass
    assert (tmp_path / "out").read_text() == "keep me"
