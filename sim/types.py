"""Core types every layer shares: a chat message, the facts it states, simulated time.

They belong to no model of the world: the workload generator and trace loaders
make messages, the mock LLM reads and writes them, strategies keep and send them
(through :mod:`strategies.api`). Importing this module imports nothing else of
memsim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

SECONDS_PER_HOUR = 3_600.0
SECONDS_PER_DAY = 86_400.0
"""Simulated time is in seconds since the run started; day ``d`` starts at ``d · 86,400``."""

TRACE_KIND = "trace"
"""The kind of a message replayed from a real trace (:mod:`sim.traces`), either role.

Its text carries no hidden annotations beyond ``facts`` (ground truth where the
trace has some): extraction falls back to :mod:`sim.heuristic` for the rest."""
TRANSCRIPT_PREFIX = {"user": "User: ", "assistant": "Assistant: "}
"""How a message starts as one transcript line (``User: text`` + newline)."""


class Fact(NamedTuple):
    """One version of one user fact: ``city`` version 1 = ``"Lisbon"``."""

    slot: str
    version: int
    value: str


@dataclass(slots=True)
class Message:
    """One chat message, with hidden ground-truth annotations.

    Attributes:
        role: ``"user"`` or ``"assistant"``.
        text: The message text.
        tokens: Token count of ``text`` (content only, without chat overhead).
        kind: ``state``, ``restate``, ``update``, ``probe``, ``filler``,
            ``instruction``, ``reply`` or ``trace`` (:data:`TRACE_KIND`).
        facts: Facts this message states.
        probe: The fact (slot, latest version) a probe question needs, else ``None``.
            A question that needs several facts (a LoCoMo question with several
            evidence turns) holds a tuple of such pairs instead, all of which
            must be in the prompt for it to count as recalled.
        user: Index of the user the message belongs to.
        session: Index of the session within the user's script.
        turn: Index of the turn within the session.
        gap_s: Think time before the user sends it (0 for a session's first message).
        transcript_tokens: Tokens of the message as one transcript line
            (``User: text`` + newline); 0 until first needed.
        instruction: For an ``instruction`` message, the index of the instruction
            in :data:`~sim.textbank.INSTRUCTIONS` it tries to plant; else -1.
    """

    role: str
    text: str
    tokens: int
    kind: str = "reply"
    facts: tuple[Fact, ...] = ()
    probe: tuple[str, int] | tuple[tuple[str, int], ...] | None = None
    user: int = 0
    session: int = 0
    turn: int = 0
    gap_s: float = 0.0
    transcript_tokens: int = 0
    instruction: int = -1
