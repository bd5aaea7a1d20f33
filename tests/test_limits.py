"""Endpoint concurrency, RPM/TPM buckets and timeouts, checked as exact SimPy timelines."""

from __future__ import annotations

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.limits import TIMEOUT, CallOutcome, Endpoint, TokenBucket


class Harness:
    """One environment, one endpoint, and a log of (name, finish time, outcome)."""

    def __init__(self, concurrency: int = 100, timeout_s: float = 1000.0, **limits) -> None:
        self.env = simpy.Environment()
        self.endpoint = Endpoint(self.env, "api", concurrency, timeout_s, **limits)
        self.timeout_s = timeout_s
        self.log: list[tuple[str, float, CallOutcome]] = []

    def call(
        self,
        name: str,
        at: float,
        latency: float,
        tokens: int = 1,
        timeout_s: float | None = None,
    ) -> None:
        """Start a caller at ``at``; ``timeout_s`` gives this caller its own client timeout."""

        def client():
            if at:
                yield self.env.timeout(at)
            # The endpoint reads its timeout once, when a call starts.
            self.endpoint.timeout_s = self.timeout_s if timeout_s is None else timeout_s
            outcome = yield from self.endpoint.call(latency, tokens)
            self.log.append((name, self.env.now, outcome))

        self.env.process(client())

    def run(self) -> list[tuple[str, float, CallOutcome]]:
        self.env.run()
        return self.log

    def times(self) -> list[tuple[str, float]]:
        return [(name, t) for name, t, _ in self.log]


# -- concurrency ------------------------------------------------------------------------------


def test_single_slot_serves_in_arrival_order():
    h = Harness(concurrency=1)
    for name in "abc":
        h.call(name, 0, 2.0)
    assert h.run() == [
        ("a", 2.0, CallOutcome(0.0, True)),
        ("b", 4.0, CallOutcome(2.0, True)),
        ("c", 6.0, CallOutcome(4.0, True)),
    ]
    assert h.endpoint.busy == 0 and not h.endpoint.waiting


def test_two_slots_and_late_arrivals():
    h = Harness(concurrency=2)
    h.call("a", 0, 3.0)
    h.call("b", 0, 1.0)
    h.call("c", 0, 1.0)  # waits for b
    h.call("d", 0.5, 1.0)  # waits behind c, gets a's slot
    h.call("e", 10.0, 1.0)  # arrives to an idle endpoint
    assert h.run() == [
        ("b", 1.0, CallOutcome(0.0, True)),
        ("c", 2.0, CallOutcome(1.0, True)),
        ("a", 3.0, CallOutcome(0.0, True)),
        ("d", 3.0, CallOutcome(1.5, True)),
        ("e", 11.0, CallOutcome(0.0, True)),
    ]


# -- requests per minute ----------------------------------------------------------------------


def test_token_bucket_rates():
    bucket = TokenBucket(60)
    assert (bucket.rate, bucket.capacity) == (1.0, 60)

    def reserve(now: float) -> float:
        at = bucket.earliest(now, 1)
        bucket.book(at, 1)
        return at

    # A full minute's burst is admitted at once, then one per second.
    assert [reserve(0.0) for _ in range(62)] == [0.0] * 60 + [1.0, 2.0]
    # After a long idle spell the bucket is full again.
    assert [reserve(1000.0) for _ in range(60)] == [1000.0] * 60


def test_rpm_admits_a_minute_burst_then_waits():
    h = Harness(rpm=60)
    for i in range(61):
        h.call(f"c{i}", 0, 0.001)
    log = h.run()
    assert [(name, t) for name, t, _ in log[:60]] == [(f"c{i}", 0.001) for i in range(60)]
    assert all(o == CallOutcome(0.0, True) for _, _, o in log[:60])
    assert log[60] == ("c60", 1.001, CallOutcome(1.0, True))


def test_rpm_steady_rate_after_the_burst():
    h = Harness(rpm=120)  # 2 per second, burst 120
    for i in range(124):
        h.call(f"c{i}", 0, 0.0)
    log = h.run()
    assert [t for _, t, _ in log[120:]] == [0.5, 1.0, 1.5, 2.0]


# -- tokens per minute -------------------------------------------------------------------------


def test_tpm_waits_for_the_missing_tokens():
    h = Harness(tpm=600)  # 10 tokens/s, bucket of 600
    h.call("big", 0, 1.0, tokens=500)  # 100 tokens left
    h.call("next", 0, 1.0, tokens=300)  # needs 200 more: 20 s
    h.call("small", 0, 1.0, tokens=50)  # arrival order: after "next", then 5 s for its own
    h.call("later", 100, 1.0, tokens=600)  # bucket refilled (tat = 85): admitted at once
    assert h.run() == [
        ("big", 1.0, CallOutcome(0.0, True)),
        ("next", 21.0, CallOutcome(20.0, True)),
        ("small", 26.0, CallOutcome(25.0, True)),
        ("later", 101.0, CallOutcome(0.0, True)),
    ]


def test_rpm_and_tpm_together_take_the_later_admission():
    h = Harness(rpm=60, tpm=60)
    h.call("a", 0, 0.0, tokens=30)
    h.call("b", 0, 0.0, tokens=40)  # tpm-bound: 10 tokens short at 1 token/s
    h.call("c", 0, 0.0, tokens=1)  # tpm-bound behind b
    h.run()
    assert h.times() == [("a", 0.0), ("b", 10.0), ("c", 11.0)]
    h = Harness(rpm=2, tpm=6000)  # now RPM binds: burst 2, then one per 30 s
    for name in "abc":
        h.call(name, 0, 0.0, tokens=100)
    h.run()
    assert h.times() == [("a", 0.0), ("b", 0.0), ("c", 30.0)]


@settings(max_examples=60, deadline=None)
@given(
    rpm=st.sampled_from([6, 30, 60, 600]),
    gaps=st.lists(st.floats(0, 5, allow_nan=False), min_size=1, max_size=80),
)
def test_rpm_admissions_respect_the_bucket(rpm, gaps):
    """Admission times never exceed capacity + rate·window requests in any window,
    come in arrival order, and are as early as the bucket allows."""
    h = Harness(rpm=rpm)
    at = 0.0
    arrivals = []
    for i, gap in enumerate(gaps):
        at += gap
        arrivals.append(at)
        h.call(str(i), at, 0.0)
    log = h.run()
    admits = [arrivals[int(name)] + o.queue_s for name, _, o in log]
    assert [int(name) for name, _, _ in log] == list(range(len(gaps)))
    rate, capacity = rpm / 60, rpm
    for i in range(len(admits)):
        for j in range(i, len(admits)):
            assert j - i + 1 <= capacity + rate * (admits[j] - admits[i]) + 1e-6
    # Oracle: a continuous token bucket, served first come first served.
    level, last, expected = float(capacity), 0.0, []
    for arrival in arrivals:
        t = max(arrival, expected[-1] if expected else 0.0)
        level = min(capacity, level + rate * (t - last))
        if level < 1:
            t += (1 - level) / rate
            level = 1.0
        last = t
        level -= 1
        expected.append(t)
    assert admits == pytest.approx(expected, abs=1e-6)


# -- timeouts ----------------------------------------------------------------------------------


def test_timeout_while_waiting_for_the_rate_limit():
    h = Harness(rpm=60, timeout_s=0.5)
    for i in range(61):
        h.call(f"c{i}", 0, 0.01)
    log = h.run()
    assert log[-1] == ("c60", 0.5, CallOutcome(0.5, False, TIMEOUT))
    assert [(name, t) for name, t, _ in log[:-1]] == [(f"c{i}", 0.01) for i in range(60)]
    assert all(o == CallOutcome(0.0, True) for _, _, o in log[:-1])


def test_timeouts_in_the_queue_and_in_service():
    """A waiter that gives up leaves the queue; the next waiter gets the slot."""
    h = Harness(concurrency=1, timeout_s=100.0)
    h.call("holder", 0, 5.0)
    h.call("impatient", 0, 1.0, timeout_s=2.0)  # gives up at 2 without a slot
    h.call("tight", 0, 1.0, timeout_s=5.5)  # gets the slot at 5, times out in service at 5.5
    h.call("patient", 1.0, 1.0, timeout_s=100.0)  # gets the slot tight released at 5.5
    assert h.run() == [
        ("impatient", 2.0, CallOutcome(2.0, False, TIMEOUT)),
        ("holder", 5.0, CallOutcome(0.0, True)),
        ("tight", 5.5, CallOutcome(5.0, True, TIMEOUT)),
        ("patient", 6.5, CallOutcome(4.5, True)),
    ]
    assert h.endpoint.busy == 0 and not h.endpoint.waiting


def test_timeout_during_service_fails_at_the_deadline():
    h = Harness(concurrency=1, timeout_s=3.0)
    h.call("slow", 0, 10.0)  # served, but the client gives up at 3 and frees the slot
    h.call("later", 2.5, 0.5)
    assert h.run() == [
        ("slow", 3.0, CallOutcome(0.0, True, TIMEOUT)),
        ("later", 3.5, CallOutcome(0.5, True)),
    ]


def test_queued_calls_time_out_in_service_at_their_deadlines():
    h = Harness(concurrency=1, timeout_s=4.0)
    h.call("a", 0, 4.0)  # finishes exactly at its deadline: success
    h.call("b", 1, 3.0)  # slot at 4, 4 + 3 > 5: times out in service at 5
    h.call("c", 1.5, 1.0)  # slot at 5, 5 + 1 > 5.5: times out in service at 5.5
    h.call("d", 2, 0.25)  # slot at 5.5, done at 5.75 within its 6.0 deadline
    assert h.run() == [
        ("a", 4.0, CallOutcome(0.0, True)),
        ("b", 5.0, CallOutcome(3.0, True, TIMEOUT)),
        ("c", 5.5, CallOutcome(3.5, True, TIMEOUT)),
        ("d", 5.75, CallOutcome(3.5, True)),
    ]


# -- known bugs ----------------------------------------------------------------------------------


def test_rpm_holds_when_tpm_delays_calls():
    h = Harness(rpm=2, tpm=60)  # RPM: burst 2, then one per 30 s
    h.call("1", 0, 0.0, tokens=60)  # drains the TPM bucket
    h.call("2", 0, 0.0, tokens=59)
    h.call("3", 0, 0.0, tokens=1)
    h.call("4", 0, 0.0, tokens=1)
    h.run()
    admits = sorted(t for _, t in h.times())  # zero latency: finish = admission
    # At most capacity + rate·window requests in any window.
    for i in range(len(admits)):
        for j in range(i, len(admits)):
            assert j - i + 1 <= 2 + (admits[j] - admits[i]) / 30 + 1e-9, admits


def test_overloaded_endpoint_keeps_serving_at_its_rate_limit():
    h = Harness(rpm=60, timeout_s=10.0)  # 1 call/s sustained
    for i in range(1200):
        h.call(str(i), 0.5 * i, 0.01)  # 2 calls/s for 10 minutes
    ok = [t for _, t, o in h.run() if not o.error]
    assert sum(t > 300 for t in ok) >= 250  # ≈ 1 per second in the second half
