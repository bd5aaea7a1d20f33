"""``summary-buffer``: a running summary plus the newest messages verbatim.

Modelled on LangChain's ``ConversationSummaryBufferMemory``. Per user it keeps a
verbatim buffer of recent messages (across sessions) and a running summary of
everything older. The prompt holds the system prompt, the summary as the memory
block (one line: the ``sim.llm.Summary``, stamped with its owner so isolation
can be checked like a stored memory's), the buffer as history, and the new
message.

After a turn the exchange is appended to the buffer; the buffer is then folded
into the summary (``ctx.llm.summarize(buffer, previous)``) and cleared when it
holds ``summarize_every_turns`` user turns, or when its tokens (chat overhead
included) pass ``summarize_trigger_share`` × ``buffer_token_limit``. So when a
prompt is built the buffer never holds more than that share of the limit.
LangChain instead summarizes only the oldest messages that overflow the limit
and keeps the rest verbatim; folding the whole buffer makes fewer, larger
summarization calls and leaves the first prompt after a fold without verbatim
context.

Every re-summarization rewrites the summary from the previous one, and the mock
model loses each carried-over fact with probability ``llm.summarize_drift``:
facts the user stated long ago and never restated fade from recall.

Summarization runs in the foreground, in ``after_turn``, as LangChain's
``save_context`` does: after the reply is delivered (so not in the turn's
latency, but in ``post_reply_s``) and before the user's next message is
handled, so the next prompt always sees the new summary. Deferring it would
need the folded messages kept visible until the background job lands.

Defaults:
    buffer_token_limit = 2,000: LangChain's ``ConversationSummaryBufferMemory``
        ``max_token_limit`` default (``langchain.memory.summary_buffer``; JS
        ``maxTokenLimit`` 2000).
    summarize_trigger_share = 0.8: chosen, to fold before the limit rather than
        past it; MemGPT/Letta's summary warning fires at a similar 0.75 of the
        context (``MESSAGE_SUMMARY_WARNING_FRAC``).
    summarize_every_turns = 10: chosen; with the mock's 140-token replies the
        token trigger fires after about 9 turns, so this mostly bounds how long
        short exchanges stay unsummarized.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from strategies.api import (
    CallFailed,
    History,
    MemoryLayoutConfig,
    Message,
    Prompt,
    Strategy,
    Summary,
    TurnContext,
    register,
)


class SummaryBufferConfig(MemoryLayoutConfig):
    """LangChain's buffer limit; the triggers are our choice (see the module docstring)."""

    buffer_token_limit: Annotated[int, Field(ge=1)] = 2_000
    """Token limit of the verbatim buffer (chat overhead included)."""
    summarize_trigger_share: Annotated[float, Field(gt=0, le=1)] = 0.8
    """Fold the buffer into the summary once it passes this share of the limit."""
    summarize_every_turns: Annotated[int, Field(ge=1)] = 10
    """Fold the buffer after this many user turns, whatever its size."""


class _UserMemory:
    __slots__ = ("buffer", "line", "turns")

    def __init__(self) -> None:
        self.line: Summary | None = None
        self.buffer = History()
        self.turns = 0


@register
class SummaryBuffer(Strategy):
    """Recent messages verbatim + a running summary of the rest, folded every K turns."""

    name = "summary-buffer"
    Config = SummaryBufferConfig
    config: SummaryBufferConfig

    def __init__(self, config: SummaryBufferConfig | None = None) -> None:
        super().__init__(config)
        self._users: dict[int, _UserMemory] = {}

    def build_prompt(self, ctx: TurnContext, msg: Message) -> Prompt:
        """System prompt + the summary as memory + the buffered messages + the new one."""
        memory = self._users.setdefault(ctx.user, _UserMemory())
        line = [memory.line] if memory.line else None
        return memory.buffer.prompt(msg, line, self.config.memory_position)

    def after_turn(self, ctx: TurnContext, msg: Message, reply: Message | None) -> None:
        """Buffer the exchange; fold the buffer into the summary when a trigger fires."""
        memory = self._users[ctx.user]
        memory.buffer.add(ctx.tokens, msg)
        memory.buffer.add(ctx.tokens, reply)
        memory.turns += 1
        cfg = self.config
        if (
            memory.turns >= cfg.summarize_every_turns
            or memory.buffer.tokens > cfg.summarize_trigger_share * cfg.buffer_token_limit
        ):
            previous = memory.line
            try:
                summary = ctx.llm.summarize(memory.buffer.messages, previous)
            except CallFailed:  # keep the buffer; the next turn's trigger tries again
                return
            memory.line = summary
            memory.buffer = History()
            memory.turns = 0
