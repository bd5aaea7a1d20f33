"""SimPy processes that drive users, sessions and background jobs; nothing else.

It is long because it holds every SimPy process of a run: users, turns, the replay
with faults, background workers, ticks and snapshots.

For each user turn the engine lets the strategy plan the prompt (its calls are
recorded as spans), asks the mock LLM for the reply, then replays the spans in
order through the shared endpoints (chat model, embedding model, store), so
that rate limits, concurrency and timeouts show up as queueing delay in the
turn's latency. Work the strategy defers runs on a pool of background workers
that compete for the same endpoints.

Turn latency is what the user waits for: from the message to the reply
(retrieval + chat). Calls made in ``after_turn`` run after the reply and before
the user's next message is handled; their time is recorded as ``post_reply_s``.

A wait that no other event could interrupt takes no event (:meth:`_Environment.advance`):
most calls are served while nothing else in the run is due, and a SimPy event
costs more than the work the engine does for a call.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from contextlib import suppress

import pandas as pd
import simpy

from sim.config import Scenario
from sim.context import (
    EMBEDDING,
    LLM,
    STORE,
    CallFailed,
    Services,
    Span,
    TurnContext,
    begin_hook,
    has_calls,
    has_pending_writes,
    record_again,
    replay_pending_writes,
    take_spans,
    take_stated,
)
from sim.faults import RATE_LIMITED, RETRIABLE, STORE_DOWN, TIMEOUT, FaultModel
from sim.grading import foreign_items, planted_instructions, probe_outcome
from sim.limits import Endpoint
from sim.metrics import call_recorder, store_final_recorder, store_recorder, turn_recorder
from sim.records import StrategyRun
from sim.workload import SECONDS_PER_DAY, Message, UserScript, Workload
from strategies.base import Prompt, Strategy
from strategies.jobs import reembed

Job = Callable[[TurnContext], None]

TURN_ROW = (
    "user",
    "session",
    "turn",
    "start_s",
    "kind",
    "latency_s",
    "queue_s",
    "retrieval_s",
    "post_reply_s",
    "error",
    "prompt_tokens",
    "system_tokens",
    "memory_tokens",
    "history_tokens",
    "user_tokens",
    "reply_tokens",
    "memories_injected",
    "store_size",
    "recall",
    "stale",
    "foreign_memories",
    "degraded",
    "instructions_injected",
)
"""The turn row's columns in the order the engine passes them (named once: Recorder.writer)."""

CALL_ROW = (
    "user",
    "start_s",
    "purpose",
    "endpoint",
    "background",
    "tokens_in",
    "tokens_out",
    "latency_s",
    "queue_s",
    "usd",
    "error",
    "items",
    "record_id",
    "attempt",
    "cached_tokens",
    "cache_write_tokens",
    "usd_saved",
)
"""The call row's columns in the order the engine passes them."""


class _Environment(simpy.Environment):
    """A SimPy environment whose processes can wait without an event when none is due."""

    def advance(self, delay: float) -> bool:
        """Move the clock ``delay`` on, in place, if no event is due by then; else ``False``.

        ``yield env.timeout(delay)`` would schedule an event at ``now + delay`` (the
        same float sum) that, when nothing else is due until strictly after then,
        is the next one processed: the clock moves to it and the waiting process
        resumes at once. Going on without it is that same timeline: nothing else
        runs in between, nothing else can be scheduled in between (only a running
        process schedules), and the events scheduled later keep their relative
        order (SimPy orders equal times by a counter, and one fewer event shifts
        every later count alike). Due at the same time as another event, the wait
        is an event as before (the event scheduled first goes first); a negative
        delay is refused too, for ``timeout`` to raise as it does.
        """
        at = self._now + delay
        queue = self._queue
        if (queue and queue[0][0] <= at) or delay < 0:
            return False
        self._now = at
        return True


class _TickView:
    """What ``Strategy.on_tick`` sees: the clock and the users' contexts."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.now = engine.env.now

    def contexts(self) -> list[TurnContext]:
        return [self._engine.contexts[u] for u in sorted(self._engine.contexts)]


class Engine:
    """One strategy, one workload, one SimPy environment."""

    def __init__(
        self,
        scenario: Scenario,
        workload: Workload,
        strategy: Strategy,
        services: Services,
        on_user_done: Callable[[int], None] | None = None,
    ) -> None:
        self.scenario, self.workload, self.strategy = scenario, workload, strategy
        self.services = services
        self.on_user_done = on_user_done
        # None without faults: the plain replay path then pays nothing for them.
        self.faults = services.faults = (
            FaultModel(scenario.faults, scenario.seed) if scenario.faults.active else None
        )
        self.env = env = _Environment()
        lim, emb, store = scenario.limits, scenario.embedding, scenario.vector_store
        self.endpoints = {
            LLM: Endpoint(env, LLM, lim.concurrency, lim.timeout_s, lim.rpm, lim.tpm),
            EMBEDDING: Endpoint(
                env,
                EMBEDDING,
                emb.limits.concurrency,
                emb.limits.timeout_s,
                emb.limits.rpm,
                emb.limits.tpm,
            ),
            STORE: Endpoint(env, STORE, store.concurrency, lim.timeout_s),
        }
        self.turns, self.calls, self.store_daily = (
            turn_recorder(),
            call_recorder(),
            store_recorder(),
        )
        # Rows by position, their columns named once here (Recorder.writer): the hot path.
        self._turn_row = self.turns.writer(*TURN_ROW)
        self._call_row = self.calls.writer(*CALL_ROW)
        self.jobs = simpy.Store(env)
        # Facts sent to extraction, by user: in hooks that completed, in hooks that failed.
        self.extracted_facts: dict[int, set[tuple[str, int]]] = {}
        self.failed_facts: dict[int, set[tuple[str, int]]] = {}
        self.contexts: dict[int, TurnContext] = {}
        self.horizon_s = scenario.days * SECONDS_PER_DAY
        self.cache = services.llm.cache  # the provider's prompt cache; None: nothing cached
        services.llm.endpoint = self.endpoints[LLM]  # its busy slots widen the latency jitter
        # Shorter prompts can neither read nor leave anything readable (PromptCache.reaches).
        self.cache_from_tokens = self.cache.from_tokens if self.cache is not None else 0
        # Only a workload with instruction messages can plant any: skip the scan otherwise.
        self.count_instructions = scenario.workload.mix.instruction > 0

    # -- the run ----------------------------------------------------------------
    def run(self) -> StrategyRun:
        """Simulate every user to the end of their script and drain background work."""
        env = self.env
        for script in self.workload.users:
            ctx = TurnContext(self.services, script.user, script.user_id, self._defer)
            self.contexts[script.user] = ctx
            env.process(self._user(script, ctx))
        for _ in range(self.scenario.background_workers):
            env.process(self._worker())
        if self.strategy.tick_period_s:
            env.process(self._ticker(self.strategy.tick_period_s))
        env.process(self._daily_snapshots())
        if self.scenario.embedding.switch_at_day is not None:
            env.process(self._embedding_switch(self.scenario.embedding.switch_at_day))
        if self.faults is not None and self.faults.outages:
            env.process(self._after_outages())
        env.run()
        return StrategyRun(
            self.strategy.name,
            self.turns.frame(),
            self.calls.frame(),
            self.store_daily.frame(),
            self._final_store(),
        )

    def _defer(self, user: int, job: Job) -> None:
        self.jobs.put((user, job))

    # -- processes ----------------------------------------------------------------
    def _user(self, script: UserScript, ctx: TurnContext) -> Generator:
        env = self.env
        advance, turn = env.advance, self._turn
        for session in script.sessions:
            if session.start_s > env.now:
                delay = session.start_s - env.now
                if not advance(delay):
                    yield env.timeout(delay)
            if session.replies is not None:  # a real trace: the recorded replies
                yield from self._replayed_session(
                    ctx, session.messages, session.replies, session.remember
                )
                continue
            for msg in session.messages:
                gap_s = msg.gap_s
                if gap_s and not advance(gap_s):
                    yield env.timeout(gap_s)
                yield from turn(ctx, msg)
        if self.on_user_done is not None:
            self.on_user_done(script.turns)

    def _replayed_session(
        self,
        ctx: TurnContext,
        messages: list[Message],
        replies: list[Message | None],
        remember: bool = True,
    ) -> Generator:
        """A trace's session: each message answered with the reply the trace recorded.

        ``remember=False`` (a benchmark question in a fresh context): the strategy
        answers but its ``after_turn`` is not called.
        """
        env = self.env
        for msg, scripted in zip(messages, replies, strict=True):
            if msg.gap_s and not env.advance(msg.gap_s):
                yield env.timeout(msg.gap_s)
            yield from self._turn(ctx, msg, scripted, remember)

    def _turn(
        self,
        ctx: TurnContext,
        msg: Message,
        scripted: Message | None = None,
        remember: bool = True,
    ) -> Generator:
        env, strategy, user = self.env, self.strategy, ctx.user
        start = ctx.now = env.now
        ctx.session = msg.session
        store_size = self.services.store.count(user)
        begin_hook(ctx, background=False)  # reset around each hook: workers share ctx
        error = ""
        try:
            prompt = strategy.build_prompt(ctx, msg)
        except CallFailed as failed:  # a strategy that lets a retrieval failure through
            prompt, error = Prompt(msg), failed.error
        degraded = ctx.degraded
        planning = take_spans(ctx)
        parts = prompt.tokens(self.services.tokens)
        prompt_tokens = parts.total
        recall, stale = probe_outcome(prompt, msg.probe)
        cache = self.cache
        layout = (
            prompt.cache_layout(cache, self.services.tokens)
            if cache is not None and prompt_tokens >= self.cache_from_tokens
            else None
        )
        result = None
        if not error:
            try:
                result = ctx.llm.chat(prompt_tokens, scripted, layout)
                error = result.error
            except CallFailed as failed:
                error = failed.error
        chat = take_spans(ctx)
        stated = take_stated(ctx)
        queued = 0.0
        replay_error = ""
        if planning:  # no spans, no replay: nothing would be scheduled or recorded
            replay_error, queued = yield from self._replay(planning, user, background=False)
        retrieval_s = env.now - start
        if not replay_error and chat:
            replay_error, chat_queued = yield from self._replay(chat, user, background=False)
            queued += chat_queued
        error = replay_error or error
        if stated:
            self._settle(user, stated, planning + chat, replay_error)
        latency = env.now - start
        reply = None if error or result is None else result.reply
        ctx.now = env.now
        begin_hook(ctx, background=False)
        if remember:
            # Not handled: the rest of the hook is not done. (try, not ``suppress``: a
            # context manager costs three calls a turn.)
            try:  # noqa: SIM105
                strategy.after_turn(ctx, msg, reply)
            except CallFailed:
                pass
        degraded = degraded or ctx.degraded
        if has_calls(ctx):
            spans, stated = take_spans(ctx), take_stated(ctx)
            after_error = ""
            if spans:
                after_error, _ = yield from self._replay(spans, user, background=False)
            if stated:
                self._settle(user, stated, spans, after_error)
        self._turn_row(  # the columns of TURN_ROW, in its order
            user,
            msg.session,
            msg.turn,
            start,
            msg.kind,
            latency,
            queued,
            retrieval_s,
            env.now - start - latency,
            error,
            prompt_tokens,
            parts.system,
            parts.memories,
            parts.history,
            parts.user,
            reply.tokens if reply else 0,
            len(prompt.memories),
            store_size,
            recall,
            stale,
            foreign_items(prompt, user),
            degraded,
            planted_instructions(prompt.memories) if self.count_instructions else 0,
        )

    def _settle(
        self, user: int, stated: list[Sequence[Message]], spans: list[Span], replay_error: str
    ) -> None:
        """Book the facts a hook sent to extraction as extracted, or as failed with its calls.

        A hook failed when one of its calls failed for the strategy (every attempt
        faulted) or its replay stopped at a call that timed out waiting.
        """
        failed = bool(replay_error) or any(span.failed for span in spans)
        book = self.failed_facts if failed else self.extracted_facts
        facts = {(f.slot, f.version) for msgs in stated for m in msgs for f in m.facts}
        book.setdefault(user, set()).update(facts)

    def _replay(self, spans: list[Span], user: int, background: bool) -> Generator:
        """Run spans in order through their endpoints; stop at a call that fails here.

        A call that fails only now (a request that timed out waiting for a slot or
        its quota) was answered when the strategy planned: the calls after it did
        not happen, so their store writes are reverted (:func:`_revert`) and the
        replay stops. A call that failed when it was made (the model's own error,
        or a request whose every attempt faulted) is recorded and the replay goes
        on: the strategy saw that failure and planned what followed.

        A call that needs no waiting (:meth:`Endpoint.try_start`) is one wait here
        instead of a nested :meth:`Endpoint.call` generator: the same single timeout
        (or none, when nothing else is due: :meth:`_Environment.advance`), the same
        release before the next span starts, so the same timeline.
        """
        if self.faults is not None:
            return (yield from self._replay_faulty(spans, user, background))
        queued = 0.0
        env, endpoints, record = self.env, self.endpoints, self._record_call
        advance = env.advance
        for i, span in enumerate(spans):
            start = env.now
            endpoint = endpoints[span.endpoint]
            latency_s, failed = span.latency_s, span.error
            if endpoint.try_start(latency_s, span.tokens_in + span.tokens_out):
                if not advance(latency_s):
                    yield env.timeout(latency_s)
                endpoint.release()
                queue_s, served, error = 0.0, True, failed
            else:
                outcome = yield from endpoint.call(latency_s, span.tokens_in + span.tokens_out)
                queue_s, served, error = outcome.queue_s, outcome.served, failed or outcome.error
            queued += queue_s
            record(span, user, start, background, served, queue_s, error, 0)
            if error and not failed:
                _revert(spans, i)
                return error, queued
        return "", queued

    def _replay_faulty(self, spans: list[Span], user: int, background: bool) -> Generator:
        """:meth:`_replay` with injected faults: each span's planned attempts, then its backoffs.

        The fault of every attempt was drawn when the strategy made the call
        (:meth:`TurnContext._draw_faults`); they are replayed here, each attempt a
        call row of its own, with the backoffs drawn then. A store call refused by
        an outage was already answered (empty) while the strategy planned; it is
        recorded and the replay goes on. An attempt that times out waiting here is
        retried too, while retries are left, after a backoff drawn now.
        """
        queued, env, faults = 0.0, self.env, self.faults
        assert faults is not None
        max_retries = faults.config.max_retries
        for i, span in enumerate(spans):
            if span.error == STORE_DOWN:
                yield from self._failed_fast(span, user, background, STORE_DOWN, 0)
                continue
            codes, waits = span.faults, span.backoffs
            attempt = 0
            while True:
                code = codes[attempt] if attempt < len(codes) else ""
                error, queue_s = yield from self._attempt(span, user, background, attempt, code)
                queued += queue_s
                if not error or attempt >= max_retries or error not in RETRIABLE:
                    break
                # A planned fault's backoff was drawn with it; a wait that timed out was not.
                wait = waits[attempt] if code else faults.backoff_s(user, background, attempt)
                if not env.advance(wait):
                    yield env.timeout(wait)
                attempt += 1
            if error and not span.error and not span.failed:
                _revert(spans, i)
                return error, queued
        return "", queued

    def _attempt(
        self, span: Span, user: int, background: bool, attempt: int, fault: str
    ) -> Generator:
        """One try of ``span`` with its planned ``fault``; returns ``(error, queue_s)``.

        A 429 is answered at once without using a slot or quota and is not billed;
        a timeout is a call that never answers, so it holds its slot until the
        client's timeout and is billed if it went out.
        """
        env = self.env
        if fault == RATE_LIMITED:
            yield from self._failed_fast(span, user, background, RATE_LIMITED, attempt)
            return RATE_LIMITED, 0.0
        start, endpoint = env.now, self.endpoints[span.endpoint]
        latency_s = float("inf") if fault == TIMEOUT else span.latency_s
        tokens = span.tokens_in + span.tokens_out
        if endpoint.try_start(latency_s, tokens):
            if not env.advance(latency_s):
                yield env.timeout(latency_s)
            endpoint.release()
            queue_s, served, error = 0.0, True, span.error
        else:
            outcome = yield from endpoint.call(latency_s, tokens)
            queue_s, served, error = outcome.queue_s, outcome.served, span.error or outcome.error
        self._record_call(span, user, start, background, served, queue_s, error, attempt)
        return error, queue_s

    def _record_call(
        self,
        span: Span,
        user: int,
        start: float,
        background: bool,
        served: bool,
        queue_s: float,
        error: str,
        attempt: int,
    ) -> None:
        """One call row for ``span``, sent at ``start``; billed when served without error.

        A call that failed inside the model (``span.error``, e.g. over the context
        window) or was never served (a timeout, a queue past its deadline) bills
        nothing; its row keeps the modelled latency and the wait.
        """
        if served and not span.error:  # billed
            tokens_in, tokens_out, usd = span.tokens_in, span.tokens_out, span.usd
            cached, written, saved = span.cached_tokens, span.cache_write_tokens, span.usd_saved
        else:
            tokens_in = tokens_out = cached = written = 0
            usd = saved = 0.0
        self._call_row(  # the columns of CALL_ROW, in its order
            user,
            start,
            span.purpose,
            span.endpoint,
            background,
            tokens_in,
            tokens_out,
            span.latency_s,
            queue_s,
            usd,
            error,
            span.items,
            span.record_id,
            attempt,
            cached,
            written,
            saved,
        )

    def _failed_fast(
        self, span: Span, user: int, background: bool, error: str, attempt: int
    ) -> Generator:
        """Record and wait out a call refused at once (a 429, a store outage); not billed."""
        env = self.env
        start, latency_s = env.now, self.faults.config.error_latency_s  # type: ignore[union-attr]
        if not env.advance(latency_s):
            yield env.timeout(latency_s)
        self.calls.add(
            user=user,
            start_s=start,
            purpose=span.purpose,
            endpoint=span.endpoint,
            background=background,
            tokens_in=0,
            tokens_out=0,
            latency_s=latency_s,
            queue_s=0.0,
            usd=0.0,
            error=error,
            items=0,
            record_id=span.record_id,
            attempt=attempt,
            cached_tokens=0,
            cache_write_tokens=0,
            usd_saved=0.0,
        )

    def _after_outages(self) -> Generator:
        """At the end of each store outage, replay the writes it refused, in the background."""
        assert self.faults is not None
        for end in sorted(end for _, end in self.faults.outages):
            if end > self.env.now:
                yield self.env.timeout(end - self.env.now)
            for _, ctx in sorted(self.contexts.items()):
                if has_pending_writes(ctx):
                    ctx.defer(replay_pending_writes)

    def _worker(self) -> Generator:
        while True:
            user, job = yield self.jobs.get()
            ctx = self.contexts[user]
            ctx.now = self.env.now
            begin_hook(ctx, background=True)
            try:  # noqa: SIM105 - not handled by the job: the rest of it is not done
                job(ctx)
            except CallFailed:
                pass
            spans, stated = take_spans(ctx), take_stated(ctx)
            error, _ = yield from self._replay(spans, user, background=True)
            if stated:
                self._settle(user, stated, spans, error)

    def _ticker(self, period_s: float) -> Generator:
        env = self.env
        while env.now + period_s <= self.horizon_s:
            yield env.timeout(period_s)
            for ctx in self.contexts.values():
                begin_hook(ctx, background=True)
            with suppress(CallFailed):  # not handled: the rest of the tick is not done
                self.strategy.on_tick(_TickView(self))
            for user, ctx in sorted(self.contexts.items()):
                spans, stated = take_spans(ctx), take_stated(ctx) or []
                if spans or stated:  # calls made directly in on_tick run as background work
                    self.jobs.put((user, _replay_only(spans, stated)))

    def _embedding_switch(self, day: float) -> Generator:
        """Change the embedding model; re-embed every user's memories if the scenario says so."""
        yield self.env.timeout(day * SECONDS_PER_DAY)
        self.services.embedder.switch()
        if self.scenario.embedding.reembed_on_switch:
            for user, ctx in sorted(self.contexts.items()):
                if self.services.store.count(user):
                    ctx.defer(reembed)

    def _daily_snapshots(self) -> Generator:
        for day in range(self.scenario.days):
            yield self.env.timeout((day + 1) * SECONDS_PER_DAY - self.env.now)
            for user in self.contexts:
                memories, duplicates = self._store_stats(user)
                self.store_daily.add(day=day, user=user, memories=memories, duplicates=duplicates)

    # -- store statistics --------------------------------------------------------
    def _store_stats(self, user: int) -> tuple[int, int]:
        """Memories the user has, and how many of them repeat a fact already held."""
        store = self.services.store
        return store.count(user), store.duplicates(user)

    def _final_store(self) -> pd.DataFrame:
        """One row per user: the store at the end of the run (:data:`sim.metrics.STORE_FINAL`)."""
        final = store_final_recorder()
        for user in sorted(self.contexts):
            memories, duplicates = self._store_stats(user)
            final.add(
                user=user,
                memories=memories,
                duplicates=duplicates,
                never_retrieved=self._never_retrieved(user),
                facts_lost_to_faults=self._facts_lost(user),
            )
        return final.frame()

    def _facts_lost(self, user: int) -> int:
        """Facts sent only to extractions that failed, and not in the store at the end."""
        failed = self.failed_facts.get(user)
        if not failed:
            return 0
        lost = failed - self.extracted_facts.get(user, set())
        if lost:
            lost -= {fact for m in self.services.store.memories(user) for fact in m.facts}
        return len(lost)

    def _never_retrieved(self, user: int) -> int:
        """The user's memories never used in a prompt (no hit) by the end of the run."""
        store = self.services.store
        if not store.count(user):
            return 0
        return sum(1 for memory in store.memories(user) if memory.hit_count == 0)


def _replay_only(spans: list[Span], stated: list[Sequence[Message]]) -> Job:
    """A job that only re-records ``spans`` already made (calls from ``on_tick``)."""

    def job(ctx: TurnContext) -> None:
        record_again(ctx, spans, stated)

    return job


def _revert(spans: list[Span], failed_at: int) -> None:
    """Undo, newest first, the store writes of ``spans[failed_at:]``: they never happened."""
    for span in reversed(spans[failed_at:]):
        if span.undo is not None:
            span.undo()
