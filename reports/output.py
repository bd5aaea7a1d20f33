"""Writing a run's files, so that an interrupted run never leaves a mix of two runs.

Two levels. :func:`atomic_write` writes one file under a temporary name and renames
it into place. :class:`ReplacedFolder` makes a whole output folder atomic: the
command line writes every file of a run into a new hidden folder beside the
target, and only a finished folder is swapped in (see its docstring for the
guarantee). ``write_outputs`` and ``write_reports`` write into whatever folder
they are given: the command line gives them the new folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from types import TracebackType

import pandas as pd

from reports import markdown, prometheus
from reports.compare import comparison_rows, memory_work_rows
from reports.numbers import dumps
from reports.results import Results
from reports.spool import COMBINED, SpooledRun, whole, write_combined
from reports.summary import build_summary
from reports.views import as_views
from sim.config import ConfigError, canonical_json
from sim.records import RunResult
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
    signal_for_tests(path.name)


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
    """Write a run's data into ``out``: the parquet files, ``config.json``, ``summary.json``.

    Returns the summary. The reports drawn from them (``report.md``,
    ``report.html``, ``charts/``, ``metrics.prom``) are :func:`write_reports`'s.
    """
    prepare_out_dir(out)
    summary = summary if summary is not None else summarize(result)
    spooled = [run for run in result.runs if isinstance(run, SpooledRun)]
    for attr, name in COMBINED.items():
        if spooled:  # streamed from the spool, a shard at a time
            atomic_write(out / name, lambda tmp, a=attr: write_combined(spooled, a, tmp))
            continue
        frame = _combined(result, attr)
        atomic_write(out / name, lambda tmp, f=frame: f.to_parquet(tmp, index=False))
    _write_text(out / "config.json", canonical_json(result.resolved))
    _write_text(out / "summary.json", dumps(summary))
    return summary


def write_reports(results: Results) -> None:
    """Draw ``report.md``, ``report.html`` and ``charts/`` into the results' folder.

    Reads nothing but ``results``, so a saved run can be drawn again without re-running.
    """
    # matplotlib loads here, not with the command line: `memsim list` stays quick.
    from reports import chartdata, charts, html

    out, summary, runs = results.out_dir, results.summary, results.runs()
    views = as_views(runs, summary["days"])  # each run read once, piece by piece
    drawn = charts.render(chartdata.chart_data(summary, views), results.strategies)
    real = [n for n in results.strategies if n in external_strategies()]
    work = memory_work_rows(summary, [whole(r) for r in runs]) if real else None
    page = html.render(
        summary,
        results.config,
        comparison_rows(summary, views),
        markdown.findings(summary, results.strategies, results.config),
        drawn,
        (real, work) if real and work is not None else None,
    )
    try:
        (out / "charts").mkdir(exist_ok=True)
        for chart in drawn:
            for suffix, data in (("png", chart.png), ("svg", chart.svg)):
                atomic_write(
                    out / "charts" / f"{chart.name}.{suffix}", lambda t, d=data: t.write_bytes(d)
                )
        _write_text(
            out / "report.md",
            markdown.render(summary, views, results.config, results.description, work),
        )
        _write_text(out / "report.html", page)
        _write_text(out / "metrics.prom", prometheus.render(summary))
    except OSError as err:
        raise ConfigError(f"{out}: cannot write the report: {err.strerror or err}") from None


# --- The whole output folder, replaced at once -------------------------------------------

RUN_ENTRIES = (*FILES, "chroma")
"""What a run owns in its folder (``chroma``: the embedded store of ``store = "chroma"``)."""
REPORT_ENTRIES = ("report.md", "report.html", "charts", "metrics.prom")
"""What ``write_reports`` draws (``memsim report`` replaces these, carries the rest over)."""

TEST_SIGNAL_AT = "MEMSIM_TEST_SIGNAL_AT"
"""Test-only hook: ``POINT`` or ``POINT@SIGNAL`` (default SIGINT).

The process sends itself the signal right after writing the file named ``POINT``
(a file name, e.g. ``summary.json``), or at a step of the swap: ``:staged`` (every
file written, nothing swapped), ``:swap`` (between the two renames) or ``:swapped``
(new folder in place, old one not yet removed). The tests of tests/test_atomic_output.py
use it to stop a run at exact points of its writing phase; nothing else sets it.
"""


def signal_for_tests(point: str) -> None:
    """Send this process the signal ``MEMSIM_TEST_SIGNAL_AT`` asks for at ``point``, if any."""
    wanted = os.environ.get(TEST_SIGNAL_AT)
    if wanted:
        at, _, name = wanted.partition("@")
        if at == point:
            signal.raise_signal(signal.Signals[name or "SIGINT"])


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the block, then deliver them to the handlers they had.

    Python runs signal handlers in the main thread only, so elsewhere nothing is held.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, _frame: caught.append(signum)) for s in held}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if caught:
            signal.raise_signal(caught[0])


def _alive(pid: int) -> bool:
    """Whether process ``pid`` may still be writing (ours, unknown, or running)."""
    if pid == os.getpid() or os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process: alive
    return True


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _carry(entry: Path, dest: Path) -> None:
    """Put ``entry`` at ``dest`` without touching it: hard links where the system allows."""
    if entry.is_symlink():
        os.symlink(os.readlink(entry), dest)
    elif entry.is_dir():
        shutil.copytree(entry, dest, symlinks=True, copy_function=_link_or_copy)
    else:
        _link_or_copy(str(entry), str(dest))


def earlier_run(folder: Path) -> str:
    """What run ``folder`` holds, from its summary.json: ``scenario tiny, seed 7``, or why not."""
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        return f"scenario {summary['scenario']}, seed {summary['seed']}"
    except FileNotFoundError:
        return "its summary.json is missing"
    except (OSError, ValueError, KeyError, TypeError):
        return "its summary.json is unreadable"


class ReplacedFolder:
    """A new folder written beside ``out`` that replaces it as a whole once complete.

    ``with ReplacedFolder(out, owned) as new:`` yields an empty hidden folder in the
    same parent, ``.<name>.tmp-<pid>-<random>``; write everything into it. When the
    block ends normally, the entries of the old ``out`` that are not in ``owned``
    (a ``calibration.json``, a user's notes) are carried over by hard link, then
    the new folder is swapped in: ``out`` is renamed to ``.<name>.old-<pid>-<random>``,
    the new folder to ``out``, and the old one is removed. When the block raises, the
    new folder is removed and ``out`` was never touched.

    The guarantee: whenever the process stops, ``out`` holds either the old folder
    or the new one, each complete. SIGINT and SIGTERM are held during the two
    renames and delivered right after, so the only moment with no ``out`` is a
    hard kill (SIGKILL, power loss) between them; then the old folder waits
    under its ``.old-`` name, and the next ``ReplacedFolder`` on the same path
    renames it back. That next one also removes what dead processes left beside
    ``out`` (their unfinished ``.tmp-`` folders, a removed-too-late ``.old-``);
    a process still running keeps its own. Two runs on one path at once: the
    last to finish wins. Durability against power loss (fsync) is not promised.

    Refused with :class:`ConfigError` (before anything is written): ``out`` is
    not a folder, is not writable, is a mount point (it cannot be renamed), or
    holds the current folder; its parent cannot be created.
    """

    def __init__(
        self,
        out: Path,
        owned: Collection[str] = RUN_ENTRIES,
        on_replace: Callable[[Path], None] | None = None,
    ) -> None:
        self.out = out
        self.owned = frozenset(owned)
        self.on_replace = on_replace  # called with ``out`` before it replaces a folder it owns
        self.target = Path(os.path.realpath(out) if out.is_symlink() else os.path.abspath(out))
        self.staging: Path | None = None
        self.held = False  # the old folder had entries of ``owned``
        self.replaced = False

    def __enter__(self) -> Path:
        self._check()
        self.recover()
        self.held = any(os.path.lexists(self.target / name) for name in self.owned)
        prefix = f".{self.target.name}.tmp-{os.getpid()}-"
        try:
            self.staging = Path(tempfile.mkdtemp(prefix=prefix, dir=self.target.parent))
            os.chmod(self.staging, 0o777 & ~_UMASK)  # mkdtemp makes 0700
        except OSError as err:
            raise ConfigError(f"{self.out}: cannot create output folder: {err.strerror}") from None
        return self.staging

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self.staging is not None
        try:
            if kind is None:
                self._finish(self.staging)
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)  # gone already once swapped in

    def status(self) -> str:
        """What ``out`` holds now, in words for the line of an interrupted command."""
        if self.replaced:
            return f"{self.out} holds the new results, complete"
        if self.held:
            return f"the earlier results in {self.out} are intact"
        return f"nothing was written to {self.out}"

    def recover(self) -> None:
        """Put back a folder a killed swap left aside; remove what dead processes left."""
        pattern = re.compile(rf"\.{re.escape(self.target.name)}\.(tmp|old)-(\d+)-[a-z0-9_]+")
        try:
            entries = list(self.target.parent.iterdir())
        except OSError:
            return  # a parent we cannot list: leftovers, if any, stay hidden and ignored
        leftovers = sorted(
            (m.group(1), entry)
            for entry in entries
            if (m := pattern.fullmatch(entry.name)) and not _alive(int(m.group(2)))
        )
        for kind, entry in leftovers:  # "old" before "tmp": restore before removing
            if kind == "old" and not os.path.lexists(self.target):
                with contextlib.suppress(OSError):  # then it stays aside, ignored
                    os.rename(entry, self.target)
            else:
                shutil.rmtree(entry, ignore_errors=True)

    def _check(self) -> None:
        out, target = self.out, self.target
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"{out}: cannot create output folder: {err.strerror}") from None
        if not os.access(target.parent, os.W_OK):
            raise ConfigError(f"{out}: cannot create output folder: {target.parent} is read-only")
        if not target.exists():
            return
        here = Path.cwd().resolve()
        if not target.is_dir():
            raise ConfigError(f"{out}: not a folder")
        if not os.access(target, os.W_OK):
            raise ConfigError(f"{out}: output folder is not writable")
        if os.path.ismount(target):
            raise ConfigError(f"{out}: a mount point cannot be replaced; choose a folder inside it")
        if here == target.resolve() or target.resolve() in here.parents:
            raise ConfigError(f"{out}: holds the current folder; choose another output folder")

    def _carry_over(self, staging: Path) -> None:
        """Hard-link what the old folder holds beyond ``owned`` into the new one."""
        if not self.target.is_dir():
            return
        for entry in sorted(self.target.iterdir()):
            if entry.name in self.owned or re.fullmatch(r"\..+\.tmp", entry.name):
                continue  # the new folder has its own; a killed write's temporary file
            try:
                _carry(entry, staging / entry.name)
            except OSError as err:
                why = err.strerror or err
                raise ConfigError(f"{self.out}: cannot carry {entry.name} over: {why}") from None

    def _finish(self, staging: Path) -> None:
        target = self.target
        self._carry_over(staging)
        signal_for_tests(":staged")
        if self.held and self.on_replace is not None:
            self.on_replace(self.out)
        tmp_prefix = f".{target.name}.tmp-"
        aside = target.with_name(f".{target.name}.old-{staging.name[len(tmp_prefix) :]}")
        moved = False
        try:
            with _signals_held():  # a signal here is delivered once both renames are done
                try:
                    if os.path.lexists(target):
                        os.rename(target, aside)
                        moved = True
                    signal_for_tests(":swap")
                    os.rename(staging, target)
                except OSError as err:
                    if moved and not os.path.lexists(target):
                        os.rename(aside, target)
                        moved = False
                    raise ConfigError(f"{self.out}: cannot replace it: {err.strerror}") from None
                self.replaced = True
            signal_for_tests(":swapped")
        finally:
            if moved:
                shutil.rmtree(aside, ignore_errors=True)
