"""Rate limits, concurrency and timeouts of remote services as SimPy resources.

An :class:`Endpoint` stands for one API (the chat model, the embedding model, the
vector store) as a client with a connection pool and a rate limiter sees it: a
call takes one of ``concurrency`` slots (first come, first served), waits until
the requests-per-minute and tokens-per-minute buckets allow it, then holds the
slot for its service time. A call whose waits plus service time pass the
timeout fails at the timeout; it uses quota only if it was actually sent.

The buckets use the generic cell-rate algorithm (GCRA), so waits are computed in
closed form and equal-time arrivals resolve in SimPy's deterministic event
order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from dataclasses import dataclass

import simpy

TIMEOUT = "timeout"


class TokenBucket:
    """GCRA bucket: ``rate`` units per second, bursts up to ``capacity`` units."""

    __slots__ = ("capacity", "rate", "tat")

    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = per_minute  # a full minute's worth, as the APIs allow
        self.tat = 0.0  # time at which the bucket would be empty again

    def earliest(self, now: float, cost: float) -> float:
        """The earliest time, not before ``now``, at which ``cost`` units fit."""
        return max(now, self.tat - max(self.capacity - cost, 0.0) / self.rate)

    def book(self, at: float, cost: float) -> None:
        """Take ``cost`` units at time ``at`` (no earlier than :meth:`earliest`)."""
        self.tat = max(self.tat, at) + cost / self.rate


@dataclass(slots=True)
class CallOutcome:
    """How one call fared.

    ``queue_s`` is the time spent waiting for a slot and for quota; ``served``
    says whether the call went out (a call that went out is billed even if the
    client timed out); ``error`` is an error code or ``""``.
    """

    queue_s: float
    served: bool
    error: str = ""


class Endpoint:
    """One remote service with concurrency, optional RPM/TPM limits and a timeout.

    Concurrency is a FIFO semaphore kept by hand rather than a ``simpy.Resource``:
    an uncontended call then costs one SimPy event (its service time) instead of
    three, which matters at millions of calls.
    """

    def __init__(
        self,
        env: simpy.Environment,
        name: str,
        concurrency: int,
        timeout_s: float,
        rpm: float | None = None,
        tpm: float | None = None,
    ) -> None:
        self.env, self.name, self.timeout_s = env, name, timeout_s
        self.capacity, self.busy = concurrency, 0
        self.waiting: deque[simpy.Event] = deque()
        self.rpm = TokenBucket(rpm) if rpm else None
        self.tpm = TokenBucket(tpm) if tpm else None

    def _admission(self, now: float, tokens: int) -> float:
        """When both buckets allow the call (nothing is booked yet)."""
        admit = now
        if self.rpm is not None:
            admit = self.rpm.earliest(admit, 1)
        if self.tpm is not None:
            admit = self.tpm.earliest(admit, tokens)
        return admit

    def _book(self, at: float, tokens: int) -> None:
        if self.rpm is not None:
            self.rpm.book(at, 1)
        if self.tpm is not None:
            self.tpm.book(at, tokens)

    def release(self) -> None:
        """Hand the slot to the longest waiter, or free it."""
        if self.waiting:
            self.waiting.popleft().succeed()
        else:
            self.busy -= 1

    def try_start(self, latency_s: float, tokens: int) -> bool:
        """Begin a call that needs no waiting at all, or change nothing and return ``False``.

        ``True`` means: a slot was free, both buckets admit the call now and it ends
        within its timeout, so the slot is taken and the quota booked exactly as
        :meth:`call` would have done. The caller then waits ``latency_s`` (one
        timeout event, as :meth:`call` would yield) and calls :meth:`release`; its
        outcome is ``CallOutcome(0.0, True)``. On ``False`` the caller runs
        :meth:`call` at the same instant, which sees the untouched state.

        Why this is identical to :meth:`call`: the checks are :meth:`call`'s own,
        with its float expressions (``deadline = now + timeout_s``, ``now +
        latency_s > deadline``, the buckets' formulas); they change nothing, so
        their order does not matter. On this path :meth:`call` schedules exactly one
        event, the service-time timeout, then releases the slot before its caller
        runs on.
        """
        if self.busy >= self.capacity:
            return False
        now = self.env.now
        deadline = now + self.timeout_s
        if now >= deadline or now + latency_s > deadline:
            return False
        # :meth:`_admission` is ``now`` exactly when neither bucket defers the call:
        # ``TokenBucket.earliest(now, cost) > now`` iff its second term is, written
        # out here (as is ``book``) because this runs for nearly every call.
        rpm, tpm = self.rpm, self.tpm
        if rpm is not None and rpm.tat - max(rpm.capacity - 1, 0.0) / rpm.rate > now:
            return False
        if tpm is not None and tpm.tat - max(tpm.capacity - tokens, 0.0) / tpm.rate > now:
            return False
        self.busy += 1
        if rpm is not None:
            rpm.tat = max(rpm.tat, now) + 1 / rpm.rate
        if tpm is not None:
            tpm.tat = max(tpm.tat, now) + tokens / tpm.rate
        return True

    def call(self, latency_s: float, tokens: int) -> Generator[simpy.Event, object, CallOutcome]:
        """SimPy process body of one call; returns its :class:`CallOutcome`.

        The call takes a concurrency slot (FIFO), then waits until the RPM and
        TPM buckets allow it, then is served. Quota is booked only for a call
        that actually goes out before its deadline.
        """
        env, start = self.env, self.env.now
        deadline = start + self.timeout_s
        if self.busy < self.capacity:
            self.busy += 1
        else:
            slot = env.event()
            self.waiting.append(slot)
            yield slot | env.timeout(deadline - env.now)
            if not slot.triggered:
                self.waiting.remove(slot)
                return CallOutcome(env.now - start, False, TIMEOUT)
        try:
            admit = self._admission(env.now, tokens)
            if admit >= deadline:
                yield env.timeout(deadline - env.now)
                return CallOutcome(env.now - start, False, TIMEOUT)
            self._book(admit, tokens)
            if admit > env.now:
                yield env.timeout(admit - env.now)
            queued = env.now - start
            if env.now + latency_s > deadline:
                yield env.timeout(deadline - env.now)
                return CallOutcome(queued, True, TIMEOUT)
            yield env.timeout(latency_s)
        finally:
            self.release()
        return CallOutcome(queued, True)
