"""The strategy API: everything a memory strategy needs, and nothing of the engine.

A strategy module imports from here only (and from its own family: a subclass
from the module of its base strategy). Write one by subclassing :class:`Strategy`
(``build_prompt`` and ``after_turn``); it reaches the world through the
:class:`TurnContext` it is handed, whose public attributes are the per-turn
services and clock:

- ``ctx.user``, ``ctx.user_id``, ``ctx.now``, ``ctx.session``: who and when;
- ``ctx.llm``, ``ctx.embedder``, ``ctx.store``: the metered services, bound to
  the user (every call is a span the engine replays in simulated time);
- ``ctx.tokens``: the run's token counter;
- ``ctx.degraded``: set it when the strategy answers without memory;
- ``ctx.defer(job)``: run ``job(ctx)`` on a background worker;
- ``ctx.new_memory(factoid)``: a :class:`Memory` record, stamped now.

What ``__all__`` holds: the strategy and its settings (:class:`Strategy`,
:class:`StrategyConfig` and its mixins, :class:`TurnContext`, :class:`TickContext`,
:class:`CallFailed`, :class:`ConfigError`); prompts and their token budget
(:class:`Prompt`, :func:`fill_budget`, :func:`memory_room`, :func:`query_vector`,
…); the world's types (:class:`Message`, :class:`Memory`, the LLM's
:class:`Factoid`, :class:`Summary` and update decisions, time constants);
helpers shared by strategies (:class:`SessionHistories`, the jobs of
:mod:`strategies.jobs`, :func:`normalized_hash`, :func:`hit_all`);
:func:`register`; and, for adapters of real memory libraries, the
:class:`ModelServer` that serves the run's models over HTTP and meters them.
"""

from sim.config import ConfigError
from sim.context import CallFailed, ModelServer, TurnContext
from sim.llm import ADD, DELETE, NONE, UPDATE, Factoid, MemoryEvent, Summary, UpdateDecision
from sim.store import Memory, hit_all, normalized_hash
from sim.textbank import MEM0_EXTRACT_SYSTEM_PROMPT, MEMORY_HEADER, SYSTEM_PROMPT
from sim.tokens import TokenCounter
from sim.types import SECONDS_PER_DAY, SECONDS_PER_HOUR, Message
from strategies.base import (
    AFTER_HISTORY,
    BEFORE_HISTORY,
    ExtractionConfig,
    Injectable,
    MemoryLayoutConfig,
    MemoryPosition,
    Prompt,
    PromptTokens,
    Strategy,
    StrategyConfig,
    TickContext,
    fill_budget,
    memory_part_tokens,
    memory_room,
    query_vector,
)
from strategies.history import History, SessionHistories
from strategies.jobs import ConsolidationConfig, consolidate, reembed, schedule_consolidation
from strategies.registry import register, register_external

__all__ = [
    "ADD",
    "AFTER_HISTORY",
    "BEFORE_HISTORY",
    "DELETE",
    "MEM0_EXTRACT_SYSTEM_PROMPT",
    "MEMORY_HEADER",
    "NONE",
    "SECONDS_PER_DAY",
    "SECONDS_PER_HOUR",
    "SYSTEM_PROMPT",
    "UPDATE",
    "CallFailed",
    "ConfigError",
    "ConsolidationConfig",
    "ExtractionConfig",
    "Factoid",
    "History",
    "Injectable",
    "Memory",
    "MemoryEvent",
    "MemoryLayoutConfig",
    "MemoryPosition",
    "Message",
    "ModelServer",
    "Prompt",
    "PromptTokens",
    "SessionHistories",
    "Strategy",
    "StrategyConfig",
    "Summary",
    "TickContext",
    "TokenCounter",
    "TurnContext",
    "UpdateDecision",
    "consolidate",
    "fill_budget",
    "hit_all",
    "memory_part_tokens",
    "memory_room",
    "normalized_hash",
    "query_vector",
    "reembed",
    "register",
    "register_external",
    "schedule_consolidation",
]
