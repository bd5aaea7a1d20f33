"""Peak resident memory of this process and of its child processes, for the benchmarks.

``resource.getrusage(...).ru_maxrss`` is not reset by ``exec``: a process started
from a big one (a benchmark script started by pytest, a worker started by the
script) reports its parent's resident set if that was larger than its own. The
kernel's ``VmHWM`` (``/proc/PID/status``) belongs to the address space and starts
again at ``exec``, so it is what these helpers read (Linux only).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import TracebackType


def peak_rss_mib(pid: int | str = "self") -> float:
    """Peak resident set of process ``pid`` (``VmHWM``) in MiB; 0 if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _children() -> list[int]:
    """Pids of this process's children (every thread's)."""
    pids = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return pids


class ChildPeak:
    """Samples the children's ``VmHWM`` every ``period_s`` while the block runs.

    ``mib`` is the largest peak seen in one child. The high-water mark only grows,
    so what a child adds after its last sample (at most ``period_s`` before it
    exits) is all that can be missed.
    """

    def __init__(self, period_s: float = 0.1) -> None:
        self.period_s, self.mib = period_s, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.period_s):
            for pid in _children():
                self.mib = max(self.mib, peak_rss_mib(pid))

    def __enter__(self) -> ChildPeak:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
