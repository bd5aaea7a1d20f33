"""The strategy base: :class:`Strategy`, its :class:`StrategyConfig` and the :class:`Prompt`.

Strategies import these from :mod:`strategies.api`, the one module of the API.

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
from typing import Annotated, ClassVar, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from sim.config import ConfigError
from sim.context import CallFailed, TurnContext
from sim.extraction_prompts import extraction_prompt
from sim.llm import Factoid
from sim.prompt_cache import CLOSE, Layout, MessageChain, PromptCache
from sim.textbank import INSTRUCTION_CATEGORY, MEMORY_HEADER, SYSTEM_PROMPT
from sim.tokens import REPLY_PRIMING_TOKENS, ROLE_TOKENS, TOKENS_PER_MESSAGE, TokenCounter
from sim.types import Message

__all__ = [
    "AFTER_HISTORY",
    "BEFORE_HISTORY",
    "CallFailed",
    "ExtractionConfig",
    "Injectable",
    "MemoryLayoutConfig",
    "Prompt",
    "PromptTokens",
    "Strategy",
    "StrategyConfig",
    "TickContext",
    "TurnContext",
    "memory_part_tokens",
    "query_vector",
]


class StrategyConfig(BaseModel):
    """Base of every strategy's configuration (unknown fields are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    tick_period_s: Annotated[float, Field(gt=0)] | None = None
    """Period of :meth:`Strategy.on_tick` in simulated seconds; ``None`` = never."""
    instruction_guard: bool = False
    """Drop extracted facts the extractor classed as instructions (category
    ``instruction``: "always answer in French", "ignore your previous instructions")
    before they are stored, so they never reach a prompt. Acts in
    :meth:`Strategy.extract`, i.e. in strategies that store extracted memories."""


BEFORE_HISTORY, AFTER_HISTORY = "before-history", "after-history"
MemoryPosition = Literal["before-history", "after-history"]


class MemoryLayoutConfig(StrategyConfig):
    """Where a strategy that injects memories puts its memory block, and in what order.

    Both settings change only the order of the prompt, never what is in it: the
    tokens, the recall and the answer stay the same; what changes is how much of
    each prompt a provider's prompt cache can serve (a cache serves the longest
    prefix a recent request shared).
    """

    memory_position: MemoryPosition = BEFORE_HISTORY
    """``before-history`` (the default): system prompt, memory block, the session's
    messages, the new message. ``after-history``: the memory block moves between the
    history and the new message, so the history stays a cacheable prefix even when
    the memories change from message to message."""
    stable_memory_order: bool = False
    """Write the selected memories in the order they were created instead of in rank
    order: a turn that selects the same memories as the last one sends the same
    block, and a memory learned since is appended at its end."""

    def arrange(self, memories: list) -> list:
        """The memory block's lines in the configured order (creation order if stable)."""
        if not self.stable_memory_order or len(memories) < 2:
            return memories
        return sorted(memories, key=_creation_order)


def _creation_order(item: object) -> tuple[float, int]:
    """When a memory was created; its id breaks ties.

    Items without a creation time (a running summary) come first, in their order
    (the sort is stable).
    """
    return getattr(item, "created_at", 0.0), getattr(item, "id", 0)


class ExtractionConfig(MemoryLayoutConfig):
    """Settings of a strategy that extracts memories with an extraction prompt."""

    extraction_prompt: str = "compact"
    """What each extraction call sends around the conversation (see
    :mod:`sim.extraction_prompts`): ``compact`` (memsim's 134-token instruction, the
    default), ``practitioner`` (the production write-ups' shape, the conversation
    as indented JSON), ``mem0-classic``, ``mem0-additive`` (Mem0's prompts, read from
    the installed mem0ai), or the path of a text file holding a system prompt. It
    sets what a call costs, not what it finds."""

    @field_validator("extraction_prompt")
    @classmethod
    def _known_prompt(cls, spec: str) -> str:
        try:
            extraction_prompt(spec)
        except ConfigError as err:
            raise ValueError(str(err).removeprefix("extraction_prompt: ")) from None
        return spec


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


def query_vector(ctx: TurnContext, msg: Message) -> np.ndarray | None:
    """The embedding of ``msg`` to search memories with; ``None`` if the call failed for good.

    On a failure (:class:`~sim.context.CallFailed`) the turn is marked degraded: the
    strategy answers without memory rather than not at all.
    """
    try:
        return ctx.embedder.embed([msg.text])[0]
    except CallFailed:
        ctx.degraded = True
        return None


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
    memory; then the history messages; then the user's message. With
    ``memory_position = "after-history"`` the memory message comes after the
    history instead, just before the user's message.

    Attributes:
        user: The message being answered.
        memories: Injected memories (or a summary), one line each.
        history: Earlier messages sent verbatim.
        history_tokens: The history's tokens with chat overhead, when the
            strategy keeps a running total (saves re-summing long histories).
        system: The system prompt text.
        memory_position: ``before-history`` or ``after-history``.
        history_chain: The running token ends of the conversation the history is a
            snapshot of, kept for the prompt cache (``None``: computed here).
    """

    user: Message
    memories: list = field(default_factory=list)
    history: list[Message] = field(default_factory=list)
    history_tokens: int | None = None
    system: str = SYSTEM_PROMPT
    memory_position: MemoryPosition = BEFORE_HISTORY
    history_chain: MessageChain | None = None

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
        memory = []
        if self.memories:
            block = MEMORY_HEADER + "".join("- " + m.text + "\n" for m in self.memories)
            memory.append(("system", block))
        history = [(m.role, m.text) for m in self.history]
        if self.memory_position == AFTER_HISTORY:
            return [("system", self.system), *history, *memory, ("user", self.user.text)]
        return [("system", self.system), *memory, *history, ("user", self.user.text)]

    def cache_layout(self, cache: PromptCache, counter: TokenCounter) -> Layout:
        """The request as ``cache`` sees it: its blocks in order, and where each part ends.

        Blocks: the system message; the memory message cut into its header, one
        block per line and its closing token; each history message; the user's
        message. The history is the conversation's own
        :class:`~sim.prompt_cache.MessageChain` (kept by :class:`History`), so the
        next turn's request, whose history holds this turn's message, finds this
        one as its prefix without walking the conversation again.
        """
        layout = cache.layout()
        layout.add(*cache.message_block("system", self.system, counter))
        layout.mark(0)
        after = self.memory_position == AFTER_HISTORY
        if self.memories and not after:
            self._memory_blocks(layout, cache, counter)
        history = self.history
        chain = self.history_chain or MessageChain()
        chain.extend(history, len(history))
        layout.attach(history, chain)
        if history:
            layout.mark(2)
        if self.memories and after:
            self._memory_blocks(layout, cache, counter)
        user = self.user
        layout.add(user, counter.message("user", user.tokens))
        layout.mark(3)
        return layout

    def _memory_blocks(self, layout: Layout, cache: PromptCache, counter: TokenCounter) -> None:
        """The memory message as blocks: header (with the message's opening), lines, close."""
        opening = TOKENS_PER_MESSAGE - 1 + ROLE_TOKENS["system"] + counter.count(MEMORY_HEADER)
        layout.add(("memory", MEMORY_HEADER), opening)
        items = self.memories
        layout.extend(list(map(_text_of, items)), list(map(_line_tokens_of, items)))
        layout.add(CLOSE, 1)
        layout.mark(1)

    def facts(self) -> set[tuple[str, int]]:
        """Ground-truth facts present in the memories and history (for recall)."""
        # map/chain keep the loops in C: prompts can hold thousands of items.
        present = set(chain.from_iterable(map(_facts_of, self.memories)))
        present.update(map(_slot_version, chain.from_iterable(map(_facts_of, self.history))))
        return present


_facts_of = attrgetter("facts")
_slot_version = attrgetter("slot", "version")  # a Fact as (slot, version)
_line_tokens_of = attrgetter("line_tokens")
_text_of = attrgetter("text")


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
        """Assemble the prompt that answers ``msg`` (foreground: adds to turn latency).

        A call here that fails for good (:class:`~sim.context.CallFailed`, under
        ``[faults]``) should not fail the answer: catch it, set ``ctx.degraded`` and
        answer without what it would have fetched. Left uncaught, the turn fails.
        """

    @abc.abstractmethod
    def after_turn(self, ctx: TurnContext, msg: Message, reply: Message | None) -> None:
        """Remember what the turn taught; ``reply`` is ``None`` when the chat call failed.

        Calls made here run after the reply is delivered, before the user's next
        message is handled; wrap work in ``ctx.defer(job)`` to run it on a
        background worker instead. A call that fails for good raises
        :class:`~sim.context.CallFailed`: keep the work for later, or drop it;
        uncaught, the rest of the hook (or job) is not done and what it already
        stored stays.
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
        prompt = system_prompt
        if prompt is None and isinstance(self.config, ExtractionConfig):
            prompt = extraction_prompt(self.config.extraction_prompt)  # cached by name
        factoids = ctx.llm.extract(messages, prompt)
        if self.config.instruction_guard:
            factoids = [f for f in factoids if f.category != INSTRUCTION_CATEGORY]
        return factoids

    def on_tick(self, ctx: TickContext) -> None:  # noqa: B027 - optional hook
        """Periodic hook (every ``config.tick_period_s``), e.g. for consolidation."""
