"""``per-turn-extract``: extract after every user message, store everything, inject all.

The design behind the classic token-leak incident: no deduplication and no
budget, so every restatement becomes another memory and every memory is sent
with every request.
"""

from __future__ import annotations

from sim.store import hit_all
from sim.workload import Message
from strategies.base import Prompt, Strategy, TurnContext
from strategies.history import SessionHistories
from strategies.registry import register


@register
class PerTurnExtract(Strategy):
    """One extraction call per user message; all stored memories in every prompt."""

    name = "per-turn-extract"

    def __init__(self, config=None) -> None:
        super().__init__(config)
        self._sessions = SessionHistories()

    def build_prompt(self, ctx: TurnContext, msg: Message) -> Prompt:
        """System prompt + every stored memory + this session's messages + the new one."""
        history = self._sessions.of(ctx.user, msg.session)
        memories = ctx.store.memories() if ctx.store.count() else []
        hit_all(memories, ctx.now)
        return history.prompt(msg, memories)

    def after_turn(self, ctx: TurnContext, msg: Message, reply: Message | None) -> None:
        """Extract facts from the user's message and store every one of them."""
        history = self._sessions.of(ctx.user, msg.session)
        history.exchange(ctx.tokens, msg, reply)
        factoids = self.extract(ctx, [msg])
        if factoids:
            vectors = ctx.embedder.embed([f.content for f in factoids])
            ctx.store.add([ctx.new_memory(f) for f in factoids], vectors)
