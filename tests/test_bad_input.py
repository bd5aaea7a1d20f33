"""Malformed input, end to end: one clear line on stderr, exit code 2, earlier output kept.

Every case runs the real command line in a fresh process against an output folder
that already holds a previous run's files, and checks that none of them changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

MEMSIM = [sys.executable, "-m", "memsim"]
SENTINELS = {"summary.json": '{"previous": "run"}\n', "report.md": "# previous run\n"}


def _previous_output(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    for name, text in SENTINELS.items():
        (out / name).write_text(text)
    return out


def _assert_kept(out: Path) -> None:
    for name, text in SENTINELS.items():
        assert (out / name).read_text() == text
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary files


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("memsim: ")
    return lines[0]


def _scenario(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text('name = "bad"\nusers = 2\ndays = 1\n' + body)
    return path


CASES = {
    "wrong type": ('workload = { facts_per_user = "many" }\n', ["workload.facts_per_user", "many"]),
    "negative rate": ("[limits]\nrpm = -5\n", ["limits.rpm", "-5"]),
    "unknown key": ("colour = 'blue'\n", ["colour"]),
    "unknown nested key": ("[llm]\ntemprature = 0.2\n", ["llm.temprature"]),
    "unknown strategy": (
        'strategies = ["per-turn-extrakt"]\n',
        ["per-turn-extrakt", "did you mean 'per-turn-extract'"],
    ),
    "bad strategy setting": (
        "[strategy.batched-dedup-budget]\nbudget_tokens = -1\n",
        ["strategy.batched-dedup-budget.budget_tokens", "-1"],
    ),
    "infinite rate": (
        "[workload]\nsessions_per_user_per_day = inf\n",
        ["workload.sessions_per_user_per_day", "Infinity", "finite"],
    ),
    "infinite latency": ("[llm]\nttft_base_s = inf\n", ["llm.ttft_base_s", "finite"]),
    "not a number": ("[limits]\ntimeout_s = nan\n", ["limits.timeout_s", "NaN", "finite"]),
    "misspelled key in a list of tables": (
        "[faults]\nstore_outages = [{ start_day = 1, hourz = 2 }]\n",
        ["unknown field 'faults.store_outages.0.hourz'"],
    ),
}
WHOLE_FILE_CASES = {
    "too many users": (
        'name = "bad"\nusers = 1000000000000\n',
        ["field 'users' = 1000000000000", "turns per strategy", "GB"],
    ),
    "keys under a [scenario] table": (
        '[scenario]\nname = "bad"\nusers = 2\n',
        ["unknown table [scenario]"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_scenario(tmp_path, case):
    body, words = CASES[case]
    scenario = _scenario(tmp_path, body)
    out = _previous_output(tmp_path)
    done = subprocess.run([*MEMSIM, "run", str(scenario), "--out", str(out), "-q"], **_TEXT)
    assert done.returncode == 2
    line = _one_error_line(done.stderr)
    for word in [str(scenario), *words]:
        assert word in line
    _assert_kept(out)


_TEXT = {"capture_output": True, "text": True, "timeout": 120}


@pytest.mark.parametrize("case", sorted(WHOLE_FILE_CASES))
def test_malformed_scenario_file(tmp_path, case):
    body, words = WHOLE_FILE_CASES[case]
    scenario = tmp_path / "bad.toml"
    scenario.write_text(body)
    out = _previous_output(tmp_path)
    for command in (["validate", str(scenario)], ["run", str(scenario), "--out", str(out), "-q"]):
        done = subprocess.run([*MEMSIM, *command], **_TEXT)
        assert done.returncode == 2, command
        line = _one_error_line(done.stderr)
        assert "{…}" not in line
        for word in [str(scenario), *words]:
            assert word in line, (command, line)
    _assert_kept(out)


def test_trace_with_a_lone_surrogate_names_file_line_and_field(tmp_path):
    trace = tmp_path / "chats.jsonl"
    good = '{"user_id": "u1", "session_id": "s1", "timestamp": 0, "role": "user", "content": "hi"}'
    bad = good.replace('"hi"', '"hi \\ud83d there"').replace('"timestamp": 0', '"timestamp": 9')
    trace.write_text(good + "\n" + bad + "\n")
    out = _previous_output(tmp_path)
    done = subprocess.run(
        [*MEMSIM, "run", "tiny", "--trace", str(trace), "--out", str(out), "-q"], **_TEXT
    )
    assert done.returncode == 2
    line = _one_error_line(done.stderr)
    assert f"{trace}:2" in line and "field 'content'" in line and "not valid Unicode" in line
    _assert_kept(out)


def test_abstract_strategy_class_is_refused(tmp_path):
    out = _previous_output(tmp_path)
    done = subprocess.run(
        [*MEMSIM, "run", "tiny", "-s", "strategies:Strategy", "--out", str(out), "-q"], **_TEXT
    )
    assert done.returncode == 2
    line = _one_error_line(done.stderr)
    assert "strategies:Strategy" in line and "abstract" in line and "build_prompt" in line
    _assert_kept(out)


@pytest.mark.parametrize(
    ("path", "value", "shown"),
    [
        (("strategies", "naive-append", "usd_total"), "lots", '"lots"'),
        (("strategies", "naive-append", "tokens_per_day", 0), None, "null"),
        (("strategies", "naive-append", "tokens_by_purpose", "chat"), True, "true"),
    ],
    ids=["a string", "a null in a list", "a boolean in a mapping"],
)
def test_report_of_a_damaged_summary_is_bad_input(tmp_path, path, value, shown):
    out = tmp_path / "run"
    done = subprocess.run([*MEMSIM, "run", "tiny", "--days", "1", "--out", str(out), "-q"], **_TEXT)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    node = summary
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    (out / "summary.json").write_text(json.dumps(summary))
    done = subprocess.run([*MEMSIM, "report", str(out)], **_TEXT)
    assert done.returncode == 2
    line = _one_error_line(done.stderr)
    assert str(out / "summary.json") in line and shown in line and "expected a number" in line


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: p / "missing.toml", ["missing.toml", "no such file"]),
        (lambda p: (p / "a-folder.toml").mkdir() or p / "a-folder.toml", ["cannot read"]),
        (lambda p: _write_bytes(p / "latin1.toml", b"name = 'caf\xe9'\n"), ["cannot read"]),
        (lambda p: _write_bytes(p / "broken.toml", b"name = 'x\n"), ["invalid TOML"]),
    ],
    ids=["missing", "a folder", "not UTF-8", "not TOML"],
)
def test_unreadable_scenario_file(tmp_path, make, words):
    path = make(tmp_path)
    out = _previous_output(tmp_path)
    done = subprocess.run([*MEMSIM, "run", str(path), "--out", str(out), "-q"], **_TEXT)
    assert done.returncode == 2
    line = _one_error_line(done.stderr)
    assert str(path) in line and all(w in line for w in words)
    _assert_kept(out)


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_unknown_strategy_flag_suggests_the_closest(tmp_path):
    out = _previous_output(tmp_path)
    done = subprocess.run(
        [*MEMSIM, "run", "tiny", "-s", "mem0-lik", "--out", str(out), "-q"], **_TEXT
    )
    assert done.returncode == 2
    assert "did you mean 'mem0-like'" in _one_error_line(done.stderr)
    _assert_kept(out)


def test_output_folder_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    done = subprocess.run([*MEMSIM, "run", "tiny", "--out", str(blocker / "out"), "-q"], **_TEXT)
    assert done.returncode == 2
    line = _one_error_line(done.stderr)
    assert str(blocker / "out") in line and "cannot create output folder" in line
    assert blocker.read_text() == "keep me"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_output_folder_that_is_not_writable(tmp_path):
    out = _previous_output(tmp_path)
    out.chmod(0o500)
    try:
        done = subprocess.run([*MEMSIM, "run", "tiny", "--out", str(out), "-q"], **_TEXT)
    finally:
        out.chmod(0o700)
    assert done.returncode == 2
    assert "not writable" in _one_error_line(done.stderr)
    _assert_kept(out)


def _cpu_seconds(process: psutil.Process) -> float:
    """User CPU of a process and its live children (the workers of a sharded run)."""
    total = process.cpu_times().user
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += child.cpu_times().user
    return total


@pytest.mark.parametrize(
    ("signum", "workers"),
    [(signal.SIGINT, "1"), (signal.SIGTERM, "1"), (signal.SIGTERM, "2")],
    ids=["ctrl-c", "sigterm", "sigterm-2-workers"],
)
def test_interrupted_run_exits_128_plus_signal_and_keeps_earlier_output(tmp_path, signum, workers):
    out = _previous_output(tmp_path)
    args = ["run", "support-bot", "--users", "6000", "--shard-users", "3000", "-w", workers]
    proc = subprocess.Popen(
        [*MEMSIM, *args, "--out", str(out), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watched = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    # Past the imports (about 1.5 s of CPU per process) and into the simulation.
    while _cpu_seconds(watched) < 6 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    children = watched.children(recursive=True)
    proc.send_signal(signum)  # to memsim alone: its workers must be stopped by it
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum  # 130 for SIGINT, 143 for SIGTERM; not 2 (bad input)
    line = _one_error_line(stderr)
    assert "interrupted" in line and f"the earlier results in {out} are intact" in line
    _assert_kept(out)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # its unfinished new folder is gone
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"worker processes left running: {alive}"
