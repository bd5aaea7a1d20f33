"""``naive-append``: the user's whole cross-session history goes into every prompt.

The simplest "memory" there is, and the one that leaks: prompt tokens grow
linearly with everything the user ever said, until the context window overflows.
"""

from __future__ import annotations

from strategies.api import History, Message, Prompt, Strategy, TurnContext, register


@register
class NaiveAppend(Strategy):
    """Send every earlier message of the user, verbatim, with each request."""

    name = "naive-append"

    def __init__(self, config=None) -> None:
        super().__init__(config)
        self._histories: dict[int, History] = {}

    def build_prompt(self, ctx: TurnContext, msg: Message) -> Prompt:
        """System prompt + full history + the new message."""
        history = self._histories.setdefault(ctx.user, History())
        return history.prompt(msg)

    def after_turn(self, ctx: TurnContext, msg: Message, reply: Message | None) -> None:
        """Append the message and the reply to the user's history."""
        history = self._histories[ctx.user]
        history.exchange(ctx.tokens, msg, reply)
