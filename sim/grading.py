"""Grading a turn's prompt against the workload's ground truth.

The workload knows what no strategy may read: which fact (and which version of
it) a probe needs, which user owns each memory and message, which memories hold
an instruction a user planted. These functions compare a finished prompt with
that truth and return the numbers a turn row records (``recall``, ``stale``,
``foreign_memories``, ``instructions_injected``); they only read.
"""

from __future__ import annotations

from operator import attrgetter
from typing import TYPE_CHECKING, Any

from sim.textbank import INSTRUCTION_SLOT

if TYPE_CHECKING:
    from strategies.base import Prompt

NOT_A_PROBE = -1
"""``recall`` and ``stale`` of a message that is not a probe."""


def probe_outcome(prompt: Prompt, probe: Any) -> tuple[int, int]:
    """``(recall, stale)`` of a probe: the fact's latest version in the prompt, an older one.

    Args:
        prompt: The chat request as the strategy built it.
        probe: The message's ``probe``: ``None`` (not a probe), one ``(slot,
            version)`` pair, or a tuple of such pairs (a question that needs
            several facts).

    Returns:
        ``(1 or 0, 1 or 0)``; both :data:`NOT_A_PROBE` when the message is not a
        probe. A probe that needs several facts is recalled when all of them are in
        the prompt, and stale when an older version of any of them is.
    """
    if probe is None:
        return NOT_A_PROBE, NOT_A_PROBE
    present = prompt.facts()
    if not isinstance(probe[0], str):  # several facts: all are needed
        recalled = all(pair in present for pair in probe)
        needed = dict(probe)
        stale = any(s in needed and v < needed[s] for s, v in present)
        return int(recalled), int(stale)
    slot, version = probe
    return int((slot, version) in present), int(any(s == slot and v < version for s, v in present))


def foreign_items(prompt: Prompt, user: int) -> int:
    """Prompt items that belong to another user (isolation failures; ground truth).

    Memories and summaries carry ``owner`` (-1: unknown, not counted); messages and
    the mock LLM's replies carry ``user``. The history, which can hold thousands of
    messages, is counted with C-level ``map`` and ``list.count``: ``len - count(user)``
    is the number of ``message.user != user``.
    """
    history = prompt.history
    foreign = len(history) - list(map(_message_user, history)).count(user)
    return foreign + foreign_memories(prompt.memories, user)


def foreign_memories(items: list, user: int) -> int:
    """Items whose ``owner`` is known (>= 0) and not ``user``; no ``owner``: unknown."""
    foreign = 0
    try:
        for item in items:
            owner = item.owner
            if owner >= 0 and owner != user:
                foreign += 1
    except AttributeError:  # the loop changed nothing: count again, slowly
        return sum(0 <= getattr(item, "owner", -1) != user for item in items)
    return foreign


def planted_instructions(items: list) -> int:
    """Injected items that hold an instruction a user planted (ground truth).

    An item holds one when any of its ``facts`` is in an instruction slot; items
    without ``facts`` (e.g. a plain summary) hold none.
    """
    return sum(
        any(slot.startswith(INSTRUCTION_SLOT) for slot, _ in getattr(item, "facts", ()))
        for item in items
    )


_message_user = attrgetter("user")
