"""Start a throw-away ChromaDB server for tests (a helper module, not a test file).

Usage in a test module::

    @pytest.fixture(scope="session")
    def chroma_http(tmp_path_factory):
        with running_server(tmp_path_factory.mktemp("chroma-server")) as (host, port):
            yield host, port
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

HOST = "127.0.0.1"
LOG_TAIL_CHARS = 4000


def chroma_executable() -> Path:
    """The ``chroma`` CLI installed next to this Python; skips the test if absent."""
    exe = Path(sys.executable).parent / "chroma"
    if not exe.exists():
        pytest.skip(f"no ChromaDB server: {exe} does not exist (pip install chromadb)")
    return exe


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))  # the OS picks a free port
        return sock.getsockname()[1]


def _log_tail(log: Path) -> str:
    text = log.read_text(errors="replace") if log.exists() else "(no log)"
    return text[-LOG_TAIL_CHARS:]


def _answers(port: int) -> bool:
    """Whether a ChromaDB server answers a heartbeat on ``port``."""
    import chromadb  # imported late: the skip for a missing install happens first

    from sim.chroma import chroma_settings

    try:
        chromadb.HttpClient(host=HOST, port=port, settings=chroma_settings()).heartbeat()
    except Exception:  # refused, reset, not ready: all mean "not yet"
        return False
    return True


def wait_until_up(proc: subprocess.Popen, port: int, log: Path, timeout_s: float) -> None:
    """Poll the heartbeat until it answers; fail with the server's log if it never does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"chroma server exited with code {proc.returncode} before answering; "
                f"log:\n{_log_tail(log)}"
            )
        if _answers(port):
            return
        time.sleep(0.2)
    raise TimeoutError(
        f"chroma server on {HOST}:{port} gave no heartbeat in {timeout_s:.0f} s; "
        f"log:\n{_log_tail(log)}"
    )


def _stop(proc: subprocess.Popen) -> None:
    """Terminate the server and reap it; kill it if it ignores SIGTERM."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def running_server(folder: Path, timeout_s: float = 60.0) -> Iterator[tuple[str, int]]:
    """Run ``chroma run`` on a free port with its data and log in ``folder``.

    Args:
        folder: Empty folder for the database (``data/``) and ``server.log``.
        timeout_s: How long to wait for the first heartbeat.

    Yields:
        ``(host, port)`` of the running server.
    """
    pytest.importorskip("chromadb")
    exe = chroma_executable()
    port = free_port()
    log = folder / "server.log"
    command = [exe, "run", "--path", folder / "data", "--host", HOST, "--port", str(port)]
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}  # nothing may leave the machine
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_until_up(proc, port, log, timeout_s)
        yield HOST, port
    finally:
        _stop(proc)
