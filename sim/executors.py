"""Where independent pieces of work run: in this process, a local process pool, or Ray.

An executor maps a picklable top-level function over a list of tasks and returns
the results in task order, whatever order they finished in, so that everything
built from them is the same for any number of workers. ``on_done(index, result)``
is called in the calling process as each task finishes (for progress bars and
for caches that must survive an interruption).

Progress inside a task: a task function may accept a ``report`` keyword, a
callable ``report(key, total, done)`` (``key``: any picklable label) that the executor forwards to
``on_progress`` in the calling process (through a queue for the process pool;
Ray tasks report only when they finish).

* ``local`` with one worker, or a single task, runs inline: no process start-up.
* ``local`` with N workers: a ``spawn`` process pool (no inherited threads or locks).
* ``ray``: a local Ray instance started for the call, or an existing cluster
  (``address``, e.g. ``ray://head:10001`` or ``auto``); the cluster's Python
  environment must have memsim installed.
"""

from __future__ import annotations

import inspect
import logging
import multiprocessing
import os
import queue
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Literal

from sim.config import ConfigError

ExecutorName = Literal["local", "ray"]
Report = Callable[[Hashable, int, int], None]  # (what, total, done so far)
OnDone = Callable[[int, Any], None]


def default_workers() -> int:
    """The number of CPUs this process may use."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return max(os.cpu_count() or 1, 1)


def _takes_report(fn: Callable) -> bool:
    return "report" in inspect.signature(fn).parameters


class _QueueReport:
    """A picklable ``report`` that forwards progress through a multiprocessing queue."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel

    def __call__(self, key: Hashable, total: int, done: int) -> None:
        self.channel.put((key, total, done))


def run_tasks(
    fn: Callable[..., Any],
    tasks: Sequence[tuple],
    executor: ExecutorName = "local",
    workers: int = 1,
    address: str | None = None,
    on_done: OnDone | None = None,
    on_progress: Report | None = None,
    keep: bool = True,
) -> list[Any]:
    """``[fn(*task) for task in tasks]`` on the chosen executor, in task order.

    Args:
        fn: A top-level (picklable) function.
        tasks: The argument tuples, one per call.
        executor: ``"local"`` or ``"ray"``.
        workers: Processes for ``local``; CPUs of a local Ray instance (ignored
            with ``address``).
        address: An existing Ray cluster to use instead of starting one.
        on_done: Called in this process as each task finishes.
        on_progress: Receives ``report(key, total, done)`` calls made by tasks.
        keep: ``False``: results are only handed to ``on_done`` and not kept
            (the list returned holds ``None``), so a caller that writes each one
            out holds one at a time.
    """
    if workers < 1:
        raise ConfigError(f"--workers: must be at least 1, got {workers}")
    if executor == "ray":
        return _run_ray(fn, tasks, workers, address, on_done, on_progress, keep)
    if executor != "local":
        raise ConfigError(f"--executor: unknown executor {executor!r} (choose 'local' or 'ray')")
    if workers == 1 or len(tasks) <= 1:
        return _run_inline(fn, tasks, on_done, on_progress, keep)
    return _run_pool(fn, tasks, workers, on_done, on_progress, keep)


def _run_inline(
    fn: Callable,
    tasks: Sequence[tuple],
    on_done: OnDone | None,
    on_progress: Report | None,
    keep: bool = True,
) -> list[Any]:
    extra = {"report": on_progress} if on_progress and _takes_report(fn) else {}
    results: list[Any] = [None] * len(tasks)
    for index, task in enumerate(tasks):
        result = fn(*task, **extra)
        if on_done is not None:
            on_done(index, result)
        if keep:
            results[index] = result
        del result
    return results


def _run_pool(
    fn: Callable,
    tasks: Sequence[tuple],
    workers: int,
    on_done: OnDone | None,
    on_progress: Report | None,
    keep: bool = True,
) -> list[Any]:
    context = multiprocessing.get_context("spawn")
    results: list[Any] = [None] * len(tasks)
    with context.Manager() as manager:
        channel = manager.Queue() if on_progress and _takes_report(fn) else None
        extra = {"report": _QueueReport(channel)} if channel is not None else {}
        pool = ProcessPoolExecutor(
            min(workers, len(tasks)), mp_context=context, initializer=_one_compute_thread
        )
        try:
            pending = {pool.submit(fn, *task, **extra): i for i, task in enumerate(tasks)}
            while pending:
                done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                _drain(channel, on_progress)
                for future in sorted(done, key=pending.__getitem__):
                    index = pending.pop(future)
                    result = future.result()
                    if on_done is not None:
                        on_done(index, result)
                    if keep:
                        results[index] = result
                    del result, future
            _drain(channel, on_progress)
        except BaseException:
            _stop(pool)  # interrupted, or a task failed: do not wait for the others
            raise
        pool.shutdown()
    return results


def _one_compute_thread() -> None:
    """Worker set-up: one OpenMP/PyTorch thread per worker process (unless set already).

    The workers already use every core between them; the real embedder's own
    thread pool on top would oversubscribe them, and PyTorch's spinning threads
    slow down many times over when they share a core (Ray sets the same default
    for its workers).
    """
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel queued tasks and end the running ones now (a plain shutdown waits for them)."""
    processes = list(getattr(pool, "_processes", {}).values())  # no public handle in 3.11
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=5)


def _drain(channel: Any, on_progress: Report | None) -> None:
    if channel is None or on_progress is None:
        return
    while True:
        try:
            on_progress(*channel.get_nowait())
        except queue.Empty:
            return


def _run_ray(
    fn: Callable,
    tasks: Sequence[tuple],
    workers: int,
    address: str | None,
    on_done: OnDone | None,
    on_progress: Report | None,
    keep: bool = True,
) -> list[Any]:
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is a dependency
        raise ConfigError("--executor ray: the 'ray' package is not installed") from None
    started = not ray.is_initialized()
    if started:
        options: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.ERROR,
        }
        if address:
            options["address"] = address
        else:
            options["num_cpus"] = workers
        try:
            ray.init(**options)
        except (ConnectionError, ValueError, RuntimeError) as err:
            where = address or "a local instance"
            raise ConfigError(f"--address: cannot start or reach Ray at {where}: {err}") from None
    try:
        remote = ray.remote(fn)
        pending = [remote.remote(*task) for task in tasks]
        index_of = {ref: i for i, ref in enumerate(pending)}
        results: list[Any] = [None] * len(tasks)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                index = index_of.pop(ref)  # the last reference: Ray frees the object
                result = ray.get(ref)
                if on_done is not None:
                    on_done(index, result)
                if keep:
                    results[index] = result
                del result
            del ready, ref
        return results
    finally:
        if started:
            ray.shutdown()
