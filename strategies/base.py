"""The strategy API: :class:`Strategy`, its :class:`StrategyConfig` and the :class:`Prompt`.

A strategy decides what goes into each chat prompt and what to remember
afterwards. It is plain synchronous Python and knows nothing of SimPy: it calls
the LLM, embedder and store through ``ctx`` (a :class:`~sim.context.TurnContext`
bound to one user), and every such call is metered.

Subclass :class:`Strategy`, give it a ``name`` and a ``Config``, and override
:meth:`~Strategy.build_prompt` and :meth:`~Strategy.after_turn`. State is per user
and lives in the store or in a dict keyed by ``ctx.user``, never shared.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter
from typing import Annotated, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field

from sim.context import TurnContext
from sim.llm import Factoid
from sim.textbank import INSTRUCTION_CATEGORY, MEMORY_HEADER, SYSTEM_PROMPT
from sim.tokens import REPLY_PRIMING_TOKENS, TokenCounter
from sim.workload import Message

__all__ = [
    "Injectable",
    "Prompt",
    "PromptTokens",
    "Strategy",
    "StrategyConfig",
    "TickContext",
    "TurnContext",
    "memory_part_tokens",
]


class StrategyConfig(BaseModel):
    """Base of every strategy's configuration (unknown fields are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tick_period_s: Annotated[float, Field(gt=0)] | None = None
    """Period of :meth:`Strategy.on_tick` in simulated seconds; ``None`` = never."""
    instruction_guard: bool = False
    """Drop extracted facts the extractor classed as instructions (category
    ``instruction``: "always answer in French", "ignore your previous instructions")
    before they are stored, so they never reach a prompt. Acts in
    :meth:`Strategy.extract`, i.e. in strategies that store extracted memories."""


class Injectable(Protocol):
    """Anything that can be injected as one line of the memory block."""

    text: str
    line_tokens: int
    facts: tuple[tuple[str, int], ...]


@dataclass(slots=True, frozen=True)
class PromptTokens:
    """Prompt tokens by part, chat-format overhead included (it sums to the billed total)."""

    system: int
    memories: int
    history: int
    user: int

    @property
    def total(self) -> int:
        """Billed input tokens of the chat request."""
        return self.system + self.memories + self.history + self.user


def memory_part_tokens(tokens: TokenCounter, items: list) -> int:
    """Tokens of the memory block message for ``items`` (0 when there are none)."""
    if not items:
        return 0
    header = tokens.count(MEMORY_HEADER)
    return tokens.message("system", header + sum(map(_line_tokens_of, items)))


def memory_room(tokens: TokenCounter, budget_tokens: int) -> int:
    """Tokens left for memory lines in a memory block of at most ``budget_tokens``."""
    return budget_tokens - tokens.message("system", tokens.count(MEMORY_HEADER))


def fill_budget(ranked: list, room: int) -> list:
    """Greedy: each item in rank order that still fits in ``room`` tokens of lines."""
    chosen = []
    for item in ranked:
        if item.line_tokens <= room:
            chosen.append(item)
            room -= item.line_tokens
    return chosen


@dataclass(slots=True)
class Prompt:
    """A chat request in parts, so a report can say which part grew.

    The request is rendered as: the system message; then, if any memories, one
    more system message holding ``MEMORY_HEADER`` and a ``- text`` line per
    memory; then the history messages; then the user's message.

    Attributes:
        user: The message being answered.
        memories: Injected memories (or a summary), one line each.
        history: Earlier messages sent verbatim.
        history_tokens: The history's tokens with chat overhead, when the
            strategy keeps a running total (saves re-summing long histories).
        system: The system prompt text.
    """

    user: Message
    memories: list = field(default_factory=list)
    history: list[Message] = field(default_factory=list)
    history_tokens: int | None = None
    system: str = SYSTEM_PROMPT

    def tokens(self, counter: TokenCounter) -> PromptTokens:
        """Tokens of each part."""
        history = self.history_tokens
        if history is None:
            history = sum(counter.message(m.role, m.tokens) for m in self.history)
        return PromptTokens(  # system, memories, history, user (positional: a hot path)
            REPLY_PRIMING_TOKENS + counter.message("system", counter.count(self.system)),
            memory_part_tokens(counter, self.memories),
            history,
            counter.message("user", self.user.tokens),
        )

    def render(self) -> list[tuple[str, str]]:
        """The request as ``(role, content)`` messages, exactly as it is billed."""
        messages = [("system", self.system)]
        if self.memories:
            block = MEMORY_HEADER + "".join("- " + m.text + "\n" for m in self.memories)
            messages.append(("system", block))
        messages += [(m.role, m.text) for m in self.history]
        messages.append(("user", self.user.text))
        return messages

    def facts(self) -> set[tuple[str, int]]:
        """Ground-truth facts present in the memories and history (for recall)."""
        # map/chain keep the loops in C: prompts can hold thousands of items.
        present = set(chain.from_iterable(map(_facts_of, self.memories)))
        present.update(map(_slot_version, chain.from_iterable(map(_facts_of, self.history))))
        return present


_facts_of = attrgetter("facts")
_slot_version = attrgetter("slot", "version")  # a Fact as (slot, version)
_line_tokens_of = attrgetter("line_tokens")


class TickContext(Protocol):
    """What :meth:`Strategy.on_tick` receives: the clock and every user's context."""

    now: float

    def contexts(self) -> list[TurnContext]:
        """The context of every user simulated so far, in user order."""
        ...


class Strategy(abc.ABC):
    """A memory strategy. One instance serves all users of a run."""

    name: ClassVar[str]
    Config: ClassVar[type[StrategyConfig]] = StrategyConfig

    def __init__(self, config: StrategyConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()

    @abc.abstractmethod
    def build_prompt(self, ctx: TurnContext, msg: Message) -> Prompt:
        """Assemble the prompt that answers ``msg`` (foreground: adds to turn latency)."""

    @abc.abstractmethod
    def after_turn(self, ctx: TurnContext, msg: Message, reply: Message | None) -> None:
        """Remember what the turn taught; ``reply`` is ``None`` when the chat call failed.

        Calls made here run after the reply is delivered, before the user's next
        message is handled; wrap work in ``ctx.defer(job)`` to run it on a
        background worker instead.
        """

    @property
    def tick_period_s(self) -> float | None:
        """Seconds between :meth:`on_tick` calls (``None``: never).

        ``config.tick_period_s`` by default; strategies that schedule their own jobs
        override it.
        """
        return self.config.tick_period_s

    def extract(
        self, ctx: TurnContext, messages: list[Message], system_prompt: str | None = None
    ) -> list[Factoid]:
        """``ctx.llm.extract``, less instruction facts when ``config.instruction_guard`` is on.

        The guard trusts the extractor's category: what it classes as an instruction
        is dropped, everything else passes.
        """
        factoids = ctx.llm.extract(messages, system_prompt)
        if self.config.instruction_guard:
            factoids = [f for f in factoids if f.category != INSTRUCTION_CATEGORY]
        return factoids

    def on_tick(self, ctx: TickContext) -> None:  # noqa: B027 - optional hook
        """Periodic hook (every ``config.tick_period_s``), e.g. for consolidation."""
