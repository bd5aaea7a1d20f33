"""Rate limits, concurrency and timeouts of remote services as SimPy resources.

An :class:`Endpoint` stands for one API (the chat model, the embedding model, the
vector store). A call first waits for the requests-per-minute and
tokens-per-minute buckets, then for a free concurrency slot, then holds the slot
for its service time. A call whose wait plus service time passes the endpoint's
timeout fails at the timeout, as a client with that timeout would see it.

The buckets use the generic cell-rate algorithm (GCRA): each call reserves its
place at arrival, so waits are computed in closed form, callers are served in
arrival order, and equal-time arrivals resolve in SimPy's deterministic event
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

    def reserve(self, now: float, cost: float) -> float:
        """Reserve ``cost`` units for a caller arriving at ``now``; return its admission time."""
        slack = max(self.capacity - cost, 0.0) / self.rate
        admit = max(now, self.tat - slack)
        self.tat = max(self.tat, admit) + cost / self.rate
        return admit


@dataclass(slots=True)
class CallOutcome:
    """How one call fared: time spent waiting, whether the service started on it
    (a call that started is billed even if the client timed out), and an error
    code or ``""``."""

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
        self, env: simpy.Environment, name: str, concurrency: int, timeout_s: float,
        rpm: float | None = None, tpm: float | None = None,
    ) -> None:
        self.env, self.name, self.timeout_s = env, name, timeout_s
        self.capacity, self.busy = concurrency, 0
        self.waiting: deque[simpy.Event] = deque()
        self.rpm = TokenBucket(rpm) if rpm else None
        self.tpm = TokenBucket(tpm) if tpm else None

    def _admission(self, now: float, tokens: int) -> float:
        admit = now
        if self.rpm is not None:
            admit = max(admit, self.rpm.reserve(now, 1))
        if self.tpm is not None:
            admit = max(admit, self.tpm.reserve(now, tokens))
        return admit

    def _release(self) -> None:
        """Hand the slot to the longest waiter, or free it."""
        if self.waiting:
            self.waiting.popleft().succeed()
        else:
            self.busy -= 1

    def call(self, latency_s: float, tokens: int) -> Generator[simpy.Event, object, CallOutcome]:
        """SimPy process body of one call; returns its :class:`CallOutcome`."""
        env, start = self.env, self.env.now
        deadline = start + self.timeout_s
        admit = self._admission(start, tokens)
        if admit >= deadline:
            yield env.timeout(self.timeout_s)
            return CallOutcome(self.timeout_s, False, TIMEOUT)
        if admit > start:
            yield env.timeout(admit - start)
        if self.busy < self.capacity:
            self.busy += 1
        else:
            slot = env.event()
            self.waiting.append(slot)
            yield slot | env.timeout(deadline - env.now)
            if not slot.triggered:
                self.waiting.remove(slot)
                return CallOutcome(env.now - start, False, TIMEOUT)
        queued = env.now - start
        try:
            if env.now + latency_s > deadline:
                yield env.timeout(deadline - env.now)
                return CallOutcome(queued, True, TIMEOUT)
            yield env.timeout(latency_s)
        finally:
            self._release()
        return CallOutcome(queued, True)
