"""``sliding-window``: the newest messages of the user's history that fit in K tokens.

A token-bounded buffer over the user's whole cross-session history, like
LangChain's ``ConversationTokenBufferMemory``: after each turn the message and
the reply are appended and the oldest messages are dropped, whole, until the
rest fits in ``window_tokens``. Tokens are counted as billed, chat-format
overhead included, so the prompt's history part never exceeds ``window_tokens``
(LangChain counts the ``Human: …`` / ``AI: …`` buffer text instead). A single
message larger than the window is dropped too, leaving the history empty. No
store, no extraction: cost is bounded, and facts older than the window are gone.

Defaults:
    window_tokens = 2,000: LangChain's ``ConversationTokenBufferMemory``
    ``max_token_limit`` default (``langchain.memory.token_buffer``, v0.3; the
    JS ``maxTokenLimit`` is also 2000).
"""

from __future__ import annotations

from collections import deque
from typing import Annotated

from pydantic import Field

from strategies.api import (
    Message,
    Prompt,
    Strategy,
    StrategyConfig,
    TokenCounter,
    TurnContext,
    register,
)


class SlidingWindowConfig(StrategyConfig):
    """Size of the window (LangChain's token-buffer default)."""

    window_tokens: Annotated[int, Field(ge=0)] = 2_000
    """Most history tokens (chat overhead included) sent with a request."""


class _Window:
    """The newest messages and their billed tokens, kept incrementally."""

    __slots__ = ("messages", "tokens")

    def __init__(self) -> None:
        self.messages: deque[Message] = deque()
        self.tokens = 0

    def add(self, counter: TokenCounter, msg: Message | None) -> None:
        if msg is not None:
            self.messages.append(msg)
            self.tokens += counter.message(msg.role, msg.tokens)

    def trim(self, counter: TokenCounter, limit: int) -> None:
        """Drop the oldest messages until the rest fits in ``limit`` tokens."""
        while self.tokens > limit:
            oldest = self.messages.popleft()
            self.tokens -= counter.message(oldest.role, oldest.tokens)


@register
class SlidingWindow(Strategy):
    """The last ``window_tokens`` of the user's cross-session history, whole messages."""

    name = "sliding-window"
    Config = SlidingWindowConfig
    config: SlidingWindowConfig

    def __init__(self, config: SlidingWindowConfig | None = None) -> None:
        super().__init__(config)
        self._windows: dict[int, _Window] = {}

    def build_prompt(self, ctx: TurnContext, msg: Message) -> Prompt:
        """System prompt + the window's messages + the new one."""
        window = self._windows.setdefault(ctx.user, _Window())
        return Prompt(msg, history=list(window.messages), history_tokens=window.tokens)

    def after_turn(self, ctx: TurnContext, msg: Message, reply: Message | None) -> None:
        """Append the exchange, then drop the oldest messages that no longer fit."""
        window = self._windows[ctx.user]
        window.add(ctx.tokens, msg)
        window.add(ctx.tokens, reply)
        window.trim(ctx.tokens, self.config.window_tokens)
