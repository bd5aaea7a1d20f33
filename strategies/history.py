"""Verbatim message history with a running token total (no re-summing per turn)."""

from __future__ import annotations

from sim.prompt_cache import MessageChain
from sim.tokens import TokenCounter
from sim.types import Message
from strategies.base import BEFORE_HISTORY, MemoryPosition, Prompt


class History:
    """Messages in order, and their tokens with chat overhead, kept incrementally.

    It only grows, so a prompt's snapshot of its first ``n`` messages can share its
    :class:`~sim.prompt_cache.MessageChain` (the prompt-cache keys, made on demand).
    """

    __slots__ = ("chain", "messages", "session", "tokens")

    def __init__(self, session: int = -1) -> None:
        self.messages: list[Message] = []
        self.tokens = 0
        self.session = session
        self.chain = MessageChain()

    def prompt(
        self,
        msg: Message,
        memories: list | None = None,
        memory_position: MemoryPosition = BEFORE_HISTORY,
    ) -> Prompt:
        """A prompt answering ``msg`` with this history (a snapshot) and ``memories``."""
        return Prompt(
            msg,
            memories=memories or [],
            history=list(self.messages),
            history_tokens=self.tokens,
            memory_position=memory_position,
            history_chain=self.chain,
        )

    def drop_oldest(self, count: int, tokens: int) -> None:
        """Forget the first ``count`` messages, of ``tokens`` tokens: a new prefix, a new chain."""
        self.messages = self.messages[count:]
        self.tokens -= tokens
        self.chain = MessageChain()

    def exchange(self, counter: TokenCounter, msg: Message, reply: Message | None) -> None:
        """Append a user message and its reply (skipped when the chat call failed)."""
        self.add(counter, msg)
        self.add(counter, reply)

    def add(self, counter: TokenCounter, msg: Message | None) -> None:
        """Append a message (``None`` — a failed reply — is skipped)."""
        if msg is not None:
            self.messages.append(msg)
            self.tokens += counter.message(msg.role, msg.tokens)


class SessionHistories:
    """Each user's history of the current session only; a new session starts empty."""

    __slots__ = ("_by_user",)

    def __init__(self) -> None:
        self._by_user: dict[int, History] = {}

    def of(self, user: int, session: int) -> History:
        """The user's history for ``session``, reset when the session changes."""
        history = self._by_user.get(user)
        if history is None or history.session != session:
            history = self._by_user[user] = History(session)
        return history
