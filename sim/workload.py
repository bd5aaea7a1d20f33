"""The synthetic workload: users with fact profiles, sessions over simulated days, turns.

It is long because the synthetic user is modelled in detail: profiles, sessions on a
diurnal clock, topics, message kinds and probes.

A workload is generated once per (scenario, seed) and replayed unchanged through
every strategy, so that differences between strategies come from the strategies
alone. Each user's script depends only on the seed and the user's index
(``SeedSequence(seed, spawn_key=(WORKLOAD, user))``), never on other users.

Every user message carries hidden ground truth: which facts it states (slot,
version, value), or which fact a probe question needs. The mock LLM reads these
annotations to act as a noisy oracle, and the recall metric checks them.
"""

from __future__ import annotations

import gc
import hashlib
import math
import random
from bisect import bisect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import accumulate

import numpy as np

from sim.config import MemoryWords, Scenario, WorkloadConfig
from sim.textbank import (
    FILLERS,
    GENERATED_SLOTS,
    INSTRUCTIONS,
    MEMORY_CONTEXT,
    QUESTIONS,
    RESTATEMENTS,
    SLOT_BY_KEY,
    SLOTS,
    Slot,
)
from sim.tokens import TokenCounter
from sim.types import SECONDS_PER_DAY, TRANSCRIPT_PREFIX, Fact, Message
from sim.types import TRACE_KIND as TRACE_KIND  # re-exported, as Fact and Message are

WORKLOAD_STREAM = 1  # first spawn-key word of every workload generator
KINDS = ("state", "restate", "update", "probe", "filler", "instruction")
_USER_LINE_HEAD = TRANSCRIPT_PREFIX["user"][:-1]  # the prefix is this head and one space


@dataclass(slots=True)
class Session:
    """A user's visit: a start time and the user messages sent in it.

    ``replies`` (real traces only) holds, for each message, the assistant's reply
    the trace recorded (``None`` where it has none): the mock LLM answers with it
    instead of a generated reply. ``None`` (synthetic sessions): every reply is
    generated. Kept here rather than on each message, so synthetic messages stay
    as small as they were.
    """

    start_s: float
    messages: list[Message]
    replies: list[Message | None] | None = None
    remember: bool = True
    """``False``: the strategy answers but does not remember the session (its
    ``after_turn`` is not called): a benchmark question asked in a fresh context."""


@dataclass(slots=True)
class UserScript:
    """Everything one user will say during the run."""

    user: int
    user_id: str
    sessions: list[Session]

    @property
    def turns(self) -> int:
        """Number of user messages in the script."""
        return sum(len(s.messages) for s in self.sessions)


@dataclass(slots=True)
class Workload:
    """All users' scripts plus the catalog of latent topics behind every text."""

    users: list[UserScript]
    days: int
    catalog: TextCatalog

    @property
    def turns(self) -> int:
        """Number of user messages across all users."""
        return sum(u.turns for u in self.users)


@dataclass(slots=True)
class TextCatalog:
    """Maps each generated text to the latent topics it is about.

    The fast embedder reads these topics instead of the words. A component is a
    tuple such as ``("fact", "city", "Lisbon", "memory", 2)`` (the third phrasing
    of a memory), ``("probe", "city", 0)``, ``("ask", "city", 1)`` (the second
    question of the slot's topic, :attr:`~sim.textbank.Slot.questions`) or
    ``("question", 4)`` (a support question about no fact).

    ``memory_words`` (the scenario's ``[workload] memory_words``) sets how long
    memory texts are; ``None`` (a catalog built outside a scenario): the bank's
    phrasings as written. ``seed`` fixes each memory's length.
    """

    topics: dict[str, tuple[tuple, ...]] = field(default_factory=dict)
    memory_words: MemoryWords | None = None
    seed: int = 0

    def register(self, text: str, components: tuple[tuple, ...]) -> str:
        """Record the topics of ``text`` (first registration wins) and return the text."""
        self.topics.setdefault(text, components)
        return text

    def memory_text(self, slot: Slot, value: str, variant: int) -> str:
        """The ``variant``-th memory phrasing of a fact, at its drawn length, registered.

        The added context words change the text (its tokens, its MiniLM vector), not
        its topics: the latent embedder places it as the bare phrasing. The length and
        the context are drawn per fact and shared by its phrasings (the circumstances
        the user stated it in), so two phrasings of a fact differ as the bare ones do,
        which is what the calibration profile measured: with MiniLM, batched dedup
        then stores as many memories as on the latent path (``tests/test_real.py``);
        drawn per phrasing, real embeddings would see rewordings as further apart than
        the profile says.
        """
        text = slot.memories[variant].format(v=value)
        words = self.memory_words
        if words is not None and words.distribution == "lognormal":
            text = _lengthened(text, _memory_rng(self.seed, slot.key, value), words)
        return self.register(text, (("fact", slot.key, value, "memory", variant),))


MEMORY_STREAM = 3
"""First word of the key of every memory-length draw (workload draws use 1, embeddings 2)."""


def _memory_rng(seed: int, slot: str, value: str) -> random.Random:
    """The generator of one fact's memory length: a function of the seed and the fact only.

    Memory texts are made when a strategy extracts, in any order and any process,
    so the draw cannot come from a user's stream.
    """
    key = repr((MEMORY_STREAM, seed, slot, value)).encode()
    return random.Random(int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little"))


def _lengthened(text: str, rng: random.Random, words: MemoryWords) -> str:
    """``text`` with context clauses added up to a log-normal number of words.

    The target is drawn with mean ``words.mean`` (``mu = ln(mean) - sigma²/2``). The
    clauses (:data:`~sim.textbank.MEMORY_CONTEXT`, each at most once) are taken in a
    random order: one of three words or more while it leaves words to fill, any one
    that fills the rest exactly (so at most one short "recently" closes a memory, never
    a string of them); then, if words are still missing, any clause left that fits.
    The target is met to the word unless it is shorter than ``text`` (kept as it is)
    or longer than every clause together.
    """
    mu = math.log(words.mean) - words.sigma * words.sigma / 2
    missing = round(rng.lognormvariate(mu, words.sigma)) - len(text.split())
    if missing <= 0:
        return text
    order = list(range(len(MEMORY_CONTEXT)))
    rng.shuffle(order)
    taken = []
    for i in order:
        n = _CONTEXT_WORDS[i]
        if n == missing or 3 <= n < missing:
            taken.append(i)
            missing -= n
            if not missing:
                break
    for i in order:  # rarely: the clauses that would close it came early in the order
        if missing and i not in taken and _CONTEXT_WORDS[i] <= missing:
            taken.append(i)
            missing -= _CONTEXT_WORDS[i]
    return f"{text.removesuffix('.')}, {', '.join(MEMORY_CONTEXT[i] for i in taken)}."


_CONTEXT_WORDS = tuple(len(clause.split()) for clause in MEMORY_CONTEXT)


def _poisson(rng: random.Random, lam: float) -> int:
    """Knuth's Poisson sampler; fine for the small means of turns per session."""
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _user_rng(seed: int, user: int) -> random.Random:
    words = np.random.SeedSequence(seed, spawn_key=(WORKLOAD_STREAM, user)).generate_state(4)
    return random.Random(int.from_bytes(words.tobytes(), "little"))


def _cumulative(weights: tuple[float, ...]) -> tuple[list[float], float]:
    """Cumulative weights and their float total, as :meth:`random.Random.choices` makes them."""
    cum_weights = list(accumulate(weights))
    return cum_weights, cum_weights[-1] + 0.0


def _weighted_choice(
    rng: random.Random, population: tuple, cum_weights: list[float], total: float
) -> str:
    """``rng.choices(population, weights)[0]`` given ``_cumulative(weights)``.

    The same arithmetic as :meth:`random.Random.choices` (cumulative weights with
    ``accumulate``, one ``rng.random()`` scaled by the float total, ``bisect`` with
    ``hi = n - 1``), so the same single draw gives the same element. Totals that
    ``choices`` rejects go to ``choices`` itself, to raise its error.
    """
    if not 0.0 < total < math.inf:
        return rng.choices(population, cum_weights=cum_weights)[0]
    return population[bisect(cum_weights, rng.random() * total, 0, len(cum_weights) - 1)]


class _UserGenerator:
    """Generates one user's script; holds the user's evolving fact profile."""

    def __init__(
        self,
        cfg: WorkloadConfig,
        user: int,
        rng: random.Random,
        tokens: TokenCounter,
        catalog: TextCatalog,
    ) -> None:
        self.cfg, self.user, self.rng = cfg, user, rng
        self.tokens, self.catalog = tokens, catalog
        # The hand-written slots first: up to 14 facts, the same draw as before
        # generated slots existed; beyond, all 14 and a sample of the generated ones.
        hand_written = min(cfg.facts_per_user, len(SLOTS))
        self.slots = rng.sample(SLOTS, hand_written)
        if cfg.facts_per_user > hand_written:
            self.slots += rng.sample(GENERATED_SLOTS, cfg.facts_per_user - hand_written)
        if cfg.focus_slot is not None and all(s.key != cfg.focus_slot for s in self.slots):
            # Every user has the focus fact; swapping it in draws no random number.
            self.slots[-1] = SLOT_BY_KEY[cfg.focus_slot]
        self.current: dict[str, Fact] = {}  # stated facts, latest version
        self.values = {s.key: rng.choice(s.values) for s in self.slots}
        # Kept as facts are stated, not rebuilt per message: the slots not stated yet
        # (in profile order), the stated ones and the stated mutable ones (in the
        # order they were first stated, as ``current`` iterates).
        self.unstated = list(self.slots)
        self.stated: list[Slot] = []
        self.stated_mutable: list[Slot] = []
        # Cumulative weights of the message kinds by (unstated slots, any stated,
        # any mutable stated): the same numbers every time, so computed once.
        self._kind_weights: dict[tuple[int, bool, bool], tuple[list[float], float] | None] = {}
        # The slot the session is about (None: no topic yet, or a general question).
        self.topic: Slot | None = None
        self.persistence = cfg.topic_persistence

    # -- timing -------------------------------------------------------------
    def session_starts(self, days: int) -> list[float]:
        cfg, rng = self.cfg, self.rng
        mean_gap = SECONDS_PER_DAY / cfg.sessions_per_user_per_day
        if cfg.activity_sigma:  # drawn only when asked for: other scenarios draw as before
            sigma = cfg.activity_sigma
            mean_gap /= math.exp(rng.gauss(-sigma * sigma / 2, sigma))  # mean factor 1
        shape = cfg.session_gap_shape
        # Start in equilibrium: the first visit is the forward recurrence time of the
        # gap distribution (uniform share of a length-biased gap, Gamma(k+1)), so
        # daily traffic is stationary from day one instead of ringing.
        t = rng.random() * rng.gammavariate(shape + 1, mean_gap / shape)
        starts: list[float] = []
        while t < days * SECONDS_PER_DAY:
            start = math.floor(t / SECONDS_PER_DAY) * SECONDS_PER_DAY + self._hour_of_day() * 3600
            if starts and start < starts[-1] + 7200:  # keep one user's visits apart
                start = starts[-1] + 7200
            if start < days * SECONDS_PER_DAY:
                starts.append(start)
            t += rng.gammavariate(shape, mean_gap / shape)
        return starts

    def _hour_of_day(self) -> float:
        """A time of day from a sinusoidal diurnal pattern (rejection sampling)."""
        amp, peak, rng = self.cfg.diurnal_amplitude, self.cfg.peak_hour, self.rng
        while True:
            hour = rng.random() * 24
            if rng.random() * (1 + amp) <= 1 + amp * math.cos(2 * math.pi * (hour - peak) / 24):
                return hour

    # -- messages ------------------------------------------------------------
    def session(self, index: int, start: float) -> Session:
        cfg, rng, user = self.cfg, self.rng, self.user
        n_turns = 1 + _poisson(rng, cfg.turns_per_session_mean - 1)
        rate, intro_probability = 1 / cfg.think_time_s_mean, cfg.intro_probability
        messages = []
        self.topic = None  # a visit starts afresh
        for turn in range(n_turns):
            gap = rng.expovariate(rate) if turn else 0.0
            msg = self.message(intro=turn == 0 and rng.random() < intro_probability)
            msg.user, msg.session, msg.turn, msg.gap_s = user, index, turn, gap
            messages.append(msg)
        return Session(start, messages)

    def message(self, intro: bool) -> Message:
        """The next message: its kind drawn from the mix, its fact from the topic.

        The kind's draw does not depend on the topic (the mix's shares hold at any
        ``topic_persistence``); then a restatement, update or probe is about the
        current topic with probability ``topic_persistence`` (when the topic allows
        it), else about a fact picked at random, which becomes the topic.
        """
        unstated = self.unstated
        kind = ("state" if unstated else "restate") if intro else self._pick_kind(unstated)
        if kind == "state":
            return self._statement("state", self._some(unstated), fresh=True)
        if kind == "restate":
            if focus := self._focus_restatement():
                return focus
            on_topic = self._stays(self.topic is not None and self.topic.key in self.current)
            return self._statement("restate", [self.topic] if on_topic else self._some(self.stated))
        if kind == "update":
            return self._update()
        if kind == "probe":
            return self._probe()
        if kind == "instruction":
            self.topic = None
            return self._instruction()
        return self._filler()

    def _stays(self, possible: bool) -> bool:
        """Whether this message stays on the topic; draws only when it could (and topics are on)."""
        return possible and self.persistence > 0 and self.rng.random() < self.persistence

    def _pick_kind(self, unstated: list[Slot]) -> str:
        key = (len(unstated), bool(self.stated), bool(self.stated_mutable))
        if key not in self._kind_weights:
            self._kind_weights[key] = self._cumulative_kind_weights(*key)
        cumulative = self._kind_weights[key]
        if cumulative is None:
            return "state" if unstated else "filler"
        return _weighted_choice(self.rng, KINDS, *cumulative)

    def _cumulative_kind_weights(
        self, unstated: int, stated: bool, mutable: bool
    ) -> tuple[list[float], float] | None:
        """Cumulative weights of :data:`KINDS` and their total; ``None`` if all are 0."""
        mix = self.cfg.mix
        weights = (
            mix.state * unstated / len(self.slots),
            mix.restate if stated else 0.0,
            mix.update if mutable else 0.0,
            mix.probe if stated else 0.0,
            mix.filler,
        )
        if mix.instruction:  # appended only when used: other scenarios keep their exact weights
            weights += (mix.instruction,)
        if sum(weights) <= 0:
            return None
        return _cumulative(weights)

    def _some(self, slots: list[Slot]) -> list[Slot]:
        k = min(len(slots), self.rng.randint(1, self.cfg.facts_per_statement_max))
        return self.rng.sample(slots, k)

    def _state(self, slot: Slot, fact: Fact) -> None:
        """Record ``fact`` as the slot's latest stated version."""
        if slot.key not in self.current:
            self.unstated.remove(slot)
            self.stated.append(slot)
            if slot.mutable:
                self.stated_mutable.append(slot)
        self.current[slot.key] = fact

    def _statement(self, kind: str, slots: list[Slot], fresh: bool = False) -> Message:
        self.topic = slots[0]
        parts, components, facts = [], [], []
        for slot in slots:
            fact = Fact(slot.key, 0, self.values[slot.key]) if fresh else self.current[slot.key]
            self._state(slot, fact)
            i = self.rng.randrange(len(slot.statements))
            parts.append(slot.statements[i].format(v=fact.value))
            components.append(("fact", slot.key, fact.value, "statement", i))
            facts.append(fact)
        return self._compose(kind, parts, components, tuple(facts))

    def _focus_restatement(self) -> Message | None:
        """The focus fact restated alone, in one of its many phrasings, or ``None``.

        ``focus_share`` of restatements are one, once the user has stated the fact.

        Draws no random number without a ``focus_slot``, so other workloads are unchanged.
        """
        key = self.cfg.focus_slot
        if key is None or key not in self.current or self.rng.random() >= self.cfg.focus_share:
            return None
        slot, fact = SLOT_BY_KEY[key], self.current[key]
        self.topic = slot
        phrasings = slot.statements + RESTATEMENTS.get(key, ())
        i = self.rng.randrange(len(phrasings))
        # Statement topics past the slot's own templates are numbered from 200.
        variant = i if i < len(slot.statements) else 200 + i
        comp = ("fact", key, fact.value, "statement", variant)
        return self._compose("restate", [phrasings[i].format(v=fact.value)], [comp], (fact,))

    def _update(self) -> Message:
        topic = self.topic
        if self._stays(topic is not None and topic.mutable and topic.key in self.current):
            slot = topic
        else:
            slot = self.topic = self.rng.choice(self.stated_mutable)
        old = self.current[slot.key]
        value = self.rng.choice([v for v in slot.values if v != old.value])
        fact = Fact(slot.key, old.version + 1, value)
        self._state(slot, fact)
        i = self.rng.randrange(len(slot.updates))  # every mutable slot has update templates
        comp = ("fact", slot.key, value, "statement", 100 + i)
        return self._compose("update", [slot.updates[i].format(v=value)], [comp], (fact,))

    def _compose(self, kind: str, parts: list, components: list, facts: tuple) -> Message:
        if self.rng.random() < self.cfg.question_probability:
            text, component = self._question()
            parts.append(text)
            components.append(component)
        return self._message(kind, parts, tuple(components), facts)

    def _question(self) -> tuple[str, tuple]:
        """A support question: about the topic (``topic_persistence``), else a general one."""
        topic = self.topic
        if self._stays(topic is not None and bool(topic.questions)):
            i = self.rng.randrange(len(topic.questions))
            return topic.questions[i], ("ask", topic.key, i)
        q = self.rng.randrange(len(QUESTIONS))
        return QUESTIONS[q], ("question", q)

    def _message(
        self, kind: str, parts: list[str], components: tuple[tuple, ...], facts: tuple = ()
    ) -> Message:
        """A user message of the sentences ``parts``, registered with its topics.

        Its token count and its transcript line's (``transcript_tokens``) come from
        per-sentence counts (:meth:`TokenCounter.sentences`): the same numbers as
        counting the assembled texts, at a fraction of the cost.
        """
        text = self.catalog.register(" ".join(parts), components)
        tokens, line = self.tokens.sentences(parts, _USER_LINE_HEAD)
        self.tokens.remember(text, tokens)  # strategies count and embed these texts
        return Message("user", text, tokens, kind, facts, transcript_tokens=line)

    def _probe(self) -> Message:
        topic = self.topic
        if self._stays(topic is not None and topic.key in self.current):
            slot = topic
        else:
            slot = self.topic = self.rng.choice(self.stated)
        fact = self.current[slot.key]
        i = self.rng.randrange(len(slot.probes))
        msg = self._message("probe", [slot.probes[i]], (("probe", slot.key, i),))
        msg.probe = (fact.slot, fact.version)
        return msg

    def _instruction(self) -> Message:
        i = self.rng.randrange(len(INSTRUCTIONS))
        msg = self._message("instruction", [INSTRUCTIONS[i][0]], (("instruction", i),))
        msg.instruction = i
        return msg

    def _filler(self) -> Message:
        """A question (off the topic it ends the topic) or a plain reply (it keeps it)."""
        if self.rng.random() < 0.6:
            text, component = self._question()
            if component[0] == "question":
                self.topic = None
            return self._message("filler", [text], (component,))
        i = self.rng.randrange(len(FILLERS))
        return self._message("filler", [FILLERS[i]], (("filler", i),))


def generate_user(
    scenario: Scenario, user: int, tokens: TokenCounter, catalog: TextCatalog
) -> UserScript:
    """Generate one user's script; depends only on the scenario, its seed and ``user``."""
    gen = _UserGenerator(scenario.workload, user, _user_rng(scenario.seed, user), tokens, catalog)
    starts = gen.session_starts(scenario.days)
    # Users who leave after a few visits: the later visits never happen.
    starts = starts[: scenario.workload.max_sessions_per_user]
    sessions = [gen.session(i, start) for i, start in enumerate(starts)]
    return UserScript(user, f"u{user:07d}", sessions)


def generate_workload(
    scenario: Scenario, tokens: TokenCounter, users: range | None = None
) -> Workload:
    """Generate the scripts of ``users`` (all of the scenario's users by default)."""
    catalog = TextCatalog(memory_words=scenario.workload.memory_words, seed=scenario.seed)
    users = users if users is not None else range(scenario.users)
    with _gc_paused():
        scripts = [generate_user(scenario, u, tokens, catalog) for u in users]
    return Workload(scripts, scenario.days, catalog)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Hold off Python's cyclic garbage collector while the scripts are built.

    Generation allocates hundreds of thousands of long-lived objects (messages,
    facts, tuples), which keep triggering full collections that walk the whole
    growing heap: a third of the time, more for more users. It creates no reference
    cycles (nothing is left for the collector to free), so results and memory are
    the same; the collector's previous state is restored on the way out, and its
    next full pass walks the heap once.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def iter_messages(workload: Workload) -> Iterator[Message]:
    """Every user message of the workload, user by user, in order."""
    for script in workload.users:
        for session in script.sessions:
            yield from session.messages
