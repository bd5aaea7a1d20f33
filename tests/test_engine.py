"""The engine: queueing in turn latency, failed turns, background work, ticks."""

from __future__ import annotations

import pytest

from helpers import make_scenario
from sim.engine import _Environment
from sim.runner import run_scenario
from strategies.base import Prompt, Strategy, StrategyConfig
from strategies.naive_append import NaiveAppend


def run_one(scenario, strategy):
    return run_scenario(scenario, strategies=[strategy]).runs[0]


def test_queueing_at_the_chat_endpoint_is_part_of_turn_latency():
    free = make_scenario(
        users=40,
        days=1,
        seed=3,
        workload={"sessions_per_user_per_day": 3.0},
        llm={"jitter_sigma_load": 0.0},  # load must not change service times here
    )
    tight = free.with_overrides(limits={"concurrency": 1, "rpm": 5000, "tpm": 4_000_000})
    a, b = run_one(free, NaiveAppend()), run_one(tight, NaiveAppend())
    assert (a.turns["queue_s"] == 0).all()
    assert b.turns["queue_s"].max() > 0
    # Same calls, same service times: the difference in latency is the queueing.
    assert sorted(a.calls["latency_s"]) == sorted(b.calls["latency_s"])
    assert b.turns["latency_s"].sum() == pytest.approx(
        a.turns["latency_s"].sum() + b.turns["queue_s"].sum()
    )


def test_rate_limit_wait_shows_in_queue_time():
    scenario = make_scenario(users=30, days=1, seed=5, limits={"rpm": 1, "timeout_s": 600})
    run = run_one(scenario, NaiveAppend())
    llm = run.calls[run.calls["endpoint"] == "llm"]
    sent = (llm["start_s"] + llm["queue_s"]).sort_values().to_numpy()
    # At 1 request per minute (a burst of one), requests go out at least 60 s apart...
    assert (sent[1:] - sent[:-1]).min() >= 60 - 1e-9
    # ...so some had to wait, and the wait is in their turn's latency.
    assert (llm["queue_s"] > 0).sum() > 10
    assert (run.turns["latency_s"] >= run.turns["queue_s"]).all()
    assert run.turns["queue_s"].sum() == pytest.approx(llm["queue_s"].sum())


def test_timeouts_fail_turns_and_are_not_billed_when_never_sent():
    scenario = make_scenario(users=30, days=1, seed=5, limits={"rpm": 1, "timeout_s": 5})
    run = run_one(scenario, NaiveAppend())
    failed = run.turns[run.turns["error"] == "timeout"]
    assert len(failed) > 0 and (failed["reply_tokens"] == 0).all()
    assert failed["latency_s"].to_numpy() == pytest.approx(5.0)
    timeouts = run.calls[run.calls["error"] == "timeout"]
    unsent = timeouts[timeouts["queue_s"] >= 5.0 - 1e-9]  # waited the whole timeout for quota
    sent = timeouts[timeouts["queue_s"] < 5.0 - 1e-9]  # went out, then ran past the timeout
    assert len(unsent) > 0 and (unsent["usd"] == 0).all() and (unsent["tokens_in"] == 0).all()
    assert (sent["usd"] > 0).all()


def test_context_overflow_is_an_error_turn_like_the_api():
    scenario = make_scenario(
        users=2, days=3, seed=1, llm={"context_window": 2000, "max_output_tokens": 200}
    )
    run = run_one(scenario, NaiveAppend())
    errors = run.turns[run.turns["error"] == "context_length_exceeded"]
    assert len(errors) > 0
    assert (errors["prompt_tokens"] + 200 > 2000).all()
    ok = run.turns[run.turns["error"] == ""]
    assert (ok["prompt_tokens"] + 200 <= 2000).all()
    chat = run.calls[run.calls["purpose"] == "chat"]
    overflow = chat[chat["error"] == "context_length_exceeded"]
    assert len(overflow) == len(errors) and (overflow["usd"] == 0).all()


class TickConfig(StrategyConfig):
    tick_period_s: float | None = 3600.0


class Ticking(Strategy):
    """Counts ticks; each tick defers one extraction per user that has talked."""

    name = "ticking"
    Config = TickConfig

    def __init__(self, config=None):
        super().__init__(config)
        self.ticks: list[float] = []
        self.seen: dict[int, list] = {}
        self.extracted = 0

    def build_prompt(self, ctx, msg):
        return Prompt(msg)

    def after_turn(self, ctx, msg, reply):
        self.seen.setdefault(ctx.user, []).append(msg)

    def on_tick(self, ctx):
        self.ticks.append(ctx.now)
        for user_ctx in ctx.contexts():
            if self.seen.get(user_ctx.user):
                user_ctx.defer(self._job(self.seen.pop(user_ctx.user)))
        ctx.contexts()[0].embedder.embed(["direct call from on_tick"])

    def _job(self, batch):
        def job(ctx):
            ctx.llm.extract(batch)
            self.extracted += len(batch)

        return job


def test_ticks_run_on_schedule_and_their_work_is_background():
    scenario = make_scenario(users=3, days=2, seed=2)
    strategy = Ticking()
    run = run_one(scenario, strategy)
    assert strategy.ticks == [3600.0 * k for k in range(1, 49)]
    extract = run.calls[run.calls["purpose"] == "extract"]
    assert len(extract) > 0 and extract["background"].all()
    embeds = run.calls[run.calls["purpose"] == "embed"]
    assert len(embeds) == 48 and embeds["background"].all() and (embeds["user"] == 0).all()
    # Every user message was extracted by a tick's job, but those after the last tick.
    left = sum(len(batch) for batch in strategy.seen.values())
    assert strategy.extracted + left == len(run.turns) and strategy.extracted > 0


def test_a_wait_takes_no_event_only_while_nothing_else_is_due():
    env = _Environment()
    log = []

    def other():
        yield env.timeout(2.0)
        log.append(("other", env.now))

    def waiter():
        assert env.advance(1.5)  # nothing due before 2.0: the clock moves, no event
        log.append(("advanced", env.now))
        assert not env.advance(0.5)  # other is due at 2.0, scheduled first: it goes first
        yield env.timeout(0.5)
        log.append(("waited", env.now))

    env.process(other())
    env.run(until=0.1)  # other's timeout is scheduled
    env.process(waiter())
    env.run()
    assert log == [("advanced", 1.6), ("other", 2.0), ("waited", 2.1)]
