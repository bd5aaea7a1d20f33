"""``stateless``: no memory across sessions, the baseline every memory must beat.

Each prompt holds the system prompt, the messages of the current session so far
(user messages and replies, verbatim) and the new message. Nothing survives the
end of a session: no store, no summary, no extraction, so it makes no calls
besides the chat itself. Its recall counts only facts restated within the session
of the probe; its cost is the floor a memory strategy adds to.

Defaults: none (nothing to configure).
"""

from __future__ import annotations

from strategies.api import Message, Prompt, SessionHistories, Strategy, TurnContext, register


@register
class Stateless(Strategy):
    """The current session's messages only; a new session starts from nothing."""

    name = "stateless"

    def __init__(self, config=None) -> None:
        super().__init__(config)
        self._sessions = SessionHistories()

    def build_prompt(self, ctx: TurnContext, msg: Message) -> Prompt:
        """System prompt + this session's messages + the new one."""
        return self._sessions.of(ctx.user, msg.session).prompt(msg)

    def after_turn(self, ctx: TurnContext, msg: Message, reply: Message | None) -> None:
        """Append the message and the reply to this session's history."""
        history = self._sessions.of(ctx.user, msg.session)
        history.exchange(ctx.tokens, msg, reply)
