"""``memgpt-like``: the MemGPT / Letta design — core memory, archival search, a managed queue.

MemGPT (Packer et al., "MemGPT: Towards LLMs as Operating Systems", arXiv
2310.08560, §2) splits the prompt into system instructions, an editable *working
context* (Letta's *core memory* blocks) and a FIFO queue of messages, and keeps
two stores outside the window: *archival* storage (a vector database the agent
writes to and searches with ``archival_memory_search``) and *recall* storage
(every message, searched with ``conversation_search``). Letta's docs describe the
same tiers (docs.letta.com/guides/agents/architectures/memgpt). Here, per user:

* **Core memory** (the "human" block, in the memory part of every prompt): the
  facts ``ctx.llm.extract`` finds in the user's messages. After every
  ``extract_every_messages`` user messages (default 1: MemGPT edits its memory
  while it handles the message, with ``core_memory_append`` / ``_replace``), each
  new fact either replaces the core line it resembles (cosine ≥
  ``core_replace_similarity``: "moved to Porto" replaces "lives in Lisbon") or is
  appended. A fact already in the block word for word changes nothing. When the
  block passes ``core_block_tokens`` its least important (then oldest) lines
  leave it; they stay in archival storage.
* **Archival memory** (``ctx.store``): every fact that changed the core block is
  also inserted here (``archival_memory_insert``), so the store holds everything
  extracted, including what the block replaced or evicted.
* **Recall memory**: the conversation queue, verbatim and across sessions, in the
  history part. Before a prompt is sent, if it passes ``warning_share`` of the
  agent's ``context_window_tokens`` (MemGPT's "memory pressure" warning), the
  oldest messages holding ``evict_share`` of the queue's tokens are folded into
  the recursive summary (``ctx.llm.summarize(evicted, previous)``) and leave the
  window. If the prompt passes the whole window, the queue is *flushed*: all but
  the last ``keep_last_messages`` messages go. (MemGPT only *warns* its agent at
  the warning share and evicts at the flush; evicting at the warning keeps the
  prompt below it in steady state, and the flush is the fallback for one turn
  that jumps past the whole window.) The summary is the first line of the
  memory block. Summarization runs in the foreground, before the chat call, as
  in MemGPT's agent step: the turn that triggers it is slower. The user's
  evicted messages move to recall storage (embedded once, on eviction), where
  ``conversation_search`` finds them; the assistant's replies are summarized but
  not indexed: here they hold no user facts, and embedding every unique mock
  reply would double a 1,000-user run's time and memory.
* **Searching on demand**: MemGPT's agent decides itself when to search. The mock
  agent searches when the user's message is a question (its text holds a
  ``?``) that the core block does not answer (no core line has cosine ≥
  ``core_answer_similarity`` with the message). It then calls
  ``archival_memory_search`` (top ``archival_top_k``, lines already in the core
  block skipped) and ``conversation_search`` over recall storage (top
  ``recall_top_k``); both results are injected for that turn only, as memory
  lines. :meth:`MemGPTLike.searches` counts them per user.

The strategy decides from what a real agent sees: texts, the extractor's
importance ratings, timestamps and cosine similarities. It never reads hidden
ground truth (``Message.facts``/``probe``, ``Memory.facts``/``owner``,
``Summary.facts``); the lines it injects hand the harness their ground truth
lazily, for the recall metric only (``tests/test_memgpt_like.py`` seals it).

Not modelled: the persona block (the system prompt plays it); the heartbeat
steps (MemGPT runs a full-context inference after each tool call; here memory
edits cost one extraction call and searches cost one embedding and one query, so
the figures are a lower bound on MemGPT's own token use); the reply's tokens are
not reserved inside ``context_window_tokens`` (the chat model's real window is
far larger).

Defaults and sources:
    context_window_tokens = 8,192: MemGPT's ``LLM_MAX_TOKENS["DEFAULT"]``
        (memgpt/constants.py), GPT-4's 8k window the paper evaluates with; not
        gpt-4o-mini's 128k, which a month of support chat would barely fill.
    warning_share = 0.7: the paper's warning token count ("e.g. 70% of the context
        window", §2.2); MemGPT's code uses ``MESSAGE_SUMMARY_WARNING_FRAC = 0.75``.
    evict_share = 0.75: ``MESSAGE_SUMMARY_TRUNC_TOKEN_FRAC`` in
        memgpt/constants.py, the share of the queue's tokens summarized at once.
    keep_last_messages = 3: ``MESSAGE_SUMMARY_TRUNC_KEEP_N_LAST`` (same file).
    core_block_tokens = 500: MemGPT's ``CORE_MEMORY_HUMAN_CHAR_LIMIT = 2000``
        characters, at OpenAI's rule of thumb of about 4 characters of English
        per token. (letta/constants.py later raised the human block to 5,000
        characters, and generic blocks to 20,000-50,000 depending on version.)
    archival_top_k = recall_top_k = 5: ``RETRIEVAL_QUERY_DEFAULT_PAGE_SIZE`` (the
        page size of both search tools in memgpt/constants.py).
    core_replace_similarity = 0.5: chosen from the calibration profile
        (sim/data/calibration.json): two values of one slot score 0.52-0.87 on
        average (goals 0.29), rewordings of one fact 0.78-0.90, facts of
        different slots about 0.26.
    core_answer_similarity = 0.45: chosen from the same profile. A question and
        the memory that answers it score only 0.13-0.55 on average with
        all-MiniLM-L6-v2, near or below the 0.26 of unrelated pairs for half the
        slots, so similarity rarely proves the block holds the answer: most
        questions search (an upper bound on the number of searches).
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import Field

from strategies.api import (
    CallFailed,
    ExtractionConfig,
    Factoid,
    History,
    Memory,
    Message,
    Prompt,
    Strategy,
    Summary,
    TurnContext,
    normalized_hash,
    query_vector,
    register,
)

RECALLED_PREFIX = "User said earlier: "


class MemGPTLikeConfig(ExtractionConfig):
    """MemGPT's defaults where it has one (see the module docstring for sources)."""

    context_window_tokens: Annotated[int, Field(ge=256)] = 8_192
    """The agent's context window: the prompt is kept within it."""
    warning_share: Annotated[float, Field(gt=0, le=1)] = 0.7
    """Share of the window past which the oldest messages are summarized and evicted."""
    evict_share: Annotated[float, Field(gt=0, le=1)] = 0.75
    """Share of the queue's tokens evicted at the warning (at least one message)."""
    keep_last_messages: Annotated[int, Field(ge=0)] = 3
    """Messages that always stay in the window, even in a flush."""
    core_block_tokens: Annotated[int, Field(ge=0)] = 500
    """Limit of the core block (sum of its lines' tokens)."""
    core_replace_similarity: Annotated[float, Field(gt=0, le=1)] = 0.5
    """Cosine at or above which a new fact replaces a core line instead of joining it."""
    core_answer_similarity: Annotated[float, Field(gt=0, le=1)] = 0.45
    """Cosine at or above which a core line answers a question (no search)."""
    archival_top_k: Annotated[int, Field(ge=0)] = 5
    recall_top_k: Annotated[int, Field(ge=0)] = 5
    extract_every_messages: Annotated[int, Field(ge=1)] = 1


@dataclass(slots=True, frozen=True)
class _Recalled:
    """A message found in recall storage, injected as one memory line."""

    text: str
    line_tokens: int
    owner: int
    message: Message

    @property
    def facts(self) -> tuple[tuple[str, int], ...]:
        """Ground truth of the message, for the recall metric (the strategy never reads it)."""
        return tuple((f.slot, f.version) for f in self.message.facts)


class _CoreBlock:
    """The human block: lines in order, their vectors, their tokens."""

    __slots__ = ("lines", "tokens", "vectors")

    def __init__(self) -> None:
        self.lines: list[Memory] = []
        self.vectors: list[np.ndarray] = []
        self.tokens = 0

    def hashes(self) -> set[str]:
        return {m.content_hash for m in self.lines}

    def best(self, vector: np.ndarray) -> tuple[int, float]:
        """Index and cosine of the line most similar to ``vector`` ((-1, -1) if empty)."""
        if not self.lines:
            return -1, -1.0
        sims = np.asarray(self.vectors) @ vector
        i = int(np.argmax(sims))
        return i, float(sims[i])

    def write(self, memory: Memory, vector: np.ndarray, replace_similarity: float) -> None:
        """``core_memory_replace`` the most similar line if close enough, else append."""
        i, sim = self.best(vector)
        if sim >= replace_similarity:
            self.tokens -= self.lines[i].line_tokens
            del self.lines[i], self.vectors[i]
        self.lines.append(memory)
        self.vectors.append(vector)
        self.tokens += memory.line_tokens

    def fit(self, limit: int) -> None:
        """Drop the least important (then oldest) lines until the block fits ``limit``."""
        while self.tokens > limit:
            i = min(range(len(self.lines)), key=lambda j: _rank(self.lines[j]))
            self.tokens -= self.lines[i].line_tokens
            del self.lines[i], self.vectors[i]


def _rank(memory: Memory) -> tuple:
    return memory.importance, memory.created_at, memory.id


class _RecallStorage:
    """Evicted messages and their vectors (a plain table in MemGPT, searched here by cosine)."""

    __slots__ = ("messages", "vectors")

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.vectors: list[np.ndarray] = []

    def add(self, messages: list[Message], vectors: np.ndarray) -> None:
        self.messages.extend(messages)
        self.vectors.extend(vectors)

    def search(self, vector: np.ndarray, k: int) -> list[Message]:
        sims = np.asarray(self.vectors) @ vector
        return [self.messages[i] for i in np.argsort(-sims, kind="stable")[:k]]


class _Agent:
    """One user's MemGPT agent state."""

    __slots__ = (
        "archival_searches",
        "core",
        "pending",
        "queue",
        "recall",
        "recall_searches",
        "summary",
    )

    def __init__(self) -> None:
        self.core = _CoreBlock()
        self.queue = History()
        self.summary: Summary | None = None
        self.recall = _RecallStorage()
        self.pending: list[Message] = []
        self.archival_searches = 0
        self.recall_searches = 0


@register
class MemGPTLike(Strategy):
    """Core memory block + archival search on demand + a summarized, evicting queue."""

    name = "memgpt-like"
    Config = MemGPTLikeConfig
    config: MemGPTLikeConfig

    def __init__(self, config: MemGPTLikeConfig | None = None) -> None:
        super().__init__(config)
        self._agents: dict[int, _Agent] = {}

    def searches(self, user: int) -> tuple[int, int]:
        """How many archival and conversation searches the user's agent made."""
        agent = self._agents.get(user)
        return (agent.archival_searches, agent.recall_searches) if agent else (0, 0)

    # -- foreground -------------------------------------------------------------
    def build_prompt(self, ctx: TurnContext, msg: Message) -> Prompt:
        """Summary + core block (+ search results) + the queue + the message, within the window."""
        agent = self._agents.setdefault(ctx.user, _Agent())
        found = self._search(ctx, agent, msg) if "?" in msg.text else []
        prompt = self._prompt(ctx, agent, msg, found)
        window = self.config.context_window_tokens
        total = prompt.tokens(ctx.tokens).total
        if total > self.config.warning_share * window:
            if self._evict(ctx, agent, flush=total > window):
                prompt = self._prompt(ctx, agent, msg, found)
                total = prompt.tokens(ctx.tokens).total
            if total > window and self._evict(ctx, agent, flush=True):
                prompt = self._prompt(ctx, agent, msg, found)  # the summary outgrew the room
                total = prompt.tokens(ctx.tokens).total
        while found and total > window:
            found.pop()  # the agent reads fewer search results
            prompt = self._prompt(ctx, agent, msg, found)
            total = prompt.tokens(ctx.tokens).total
        return prompt

    def _prompt(self, ctx: TurnContext, agent: _Agent, msg: Message, found: list) -> Prompt:
        memories: list = [agent.summary] if agent.summary else []
        cfg = self.config
        blocks = cfg.arrange(memories + agent.core.lines + found)
        return agent.queue.prompt(msg, blocks, cfg.memory_position)

    def _search(self, ctx: TurnContext, agent: _Agent, msg: Message) -> list:
        """The agent's searches for a question its core block does not answer."""
        cfg = self.config
        has_archival = cfg.archival_top_k and ctx.store.count()
        has_recall = cfg.recall_top_k and agent.recall.messages
        if not (has_archival or has_recall):
            return []
        query = query_vector(ctx, msg)
        if query is None:  # the agent answers without searching
            return []
        if agent.core.best(query)[1] >= cfg.core_answer_similarity:
            return []
        found: list = []
        if has_archival:
            agent.archival_searches += 1
            records, sims = ctx.store.query(query)
            in_core = agent.core.hashes()
            ranked = (records[i] for i in np.argsort(-sims, kind="stable"))
            hits = [m for m in ranked if m.content_hash not in in_core][: cfg.archival_top_k]
            for memory in hits:
                memory.hit(ctx.now)
            found += hits
        if has_recall:
            agent.recall_searches += 1
            found += [self._recalled(ctx, m) for m in agent.recall.search(query, cfg.recall_top_k)]
        return found

    @staticmethod
    def _recalled(ctx: TurnContext, message: Message) -> _Recalled:
        text = RECALLED_PREFIX + " ".join(message.text.split())
        return _Recalled(text, ctx.tokens.count("- " + text + "\n"), ctx.user, message)

    def _evict(self, ctx: TurnContext, agent: _Agent, flush: bool) -> bool:
        """Fold the oldest messages into the summary; the user's go to recall storage.

        Evicts those holding ``evict_share`` of the queue's tokens (at least one),
        or, in a flush, all but the last ``keep_last_messages``. Returns whether any left.
        """
        cfg, queue = self.config, agent.queue
        candidates = max(len(queue.messages) - cfg.keep_last_messages, 0)
        count, evicted_tokens = 0, 0
        goal = queue.tokens if flush else cfg.evict_share * queue.tokens
        while count < candidates and evicted_tokens < goal:
            m = queue.messages[count]
            evicted_tokens += ctx.tokens.message(m.role, m.tokens)
            count += 1
        if not count:
            return False
        evicted = queue.messages[:count]
        try:
            agent.summary = ctx.llm.summarize(evicted, agent.summary)
        except CallFailed:  # nothing leaves the queue: the prompt may overflow the window
            return False
        queue.drop_oldest(count, evicted_tokens)
        said = [m for m in evicted if m.role == "user"]
        if cfg.recall_top_k and said:
            with suppress(CallFailed):  # evicted all the same: the summary holds them
                agent.recall.add(said, ctx.embedder.embed([m.text for m in said]))
        return True

    # -- after the reply -----------------------------------------------------------
    def after_turn(self, ctx: TurnContext, msg: Message, reply: Message | None) -> None:
        """Queue the exchange; every N user messages, extract and edit core memory."""
        agent = self._agents.setdefault(ctx.user, _Agent())
        agent.queue.add(ctx.tokens, msg)
        agent.queue.add(ctx.tokens, reply)
        agent.pending.append(msg)
        if len(agent.pending) >= self.config.extract_every_messages:
            batch, agent.pending = agent.pending, []
            try:
                factoids = self.extract(ctx, batch)
            except CallFailed:  # keep the messages for the next extraction
                agent.pending[:0] = batch
                return
            self._edit_core(ctx, agent, factoids)

    def _edit_core(self, ctx: TurnContext, agent: _Agent, factoids: list[Factoid]) -> None:
        """Write new facts to the core block and to archival storage."""
        seen = agent.core.hashes()
        fresh: dict[str, Factoid] = {}
        for factoid in factoids:
            digest = normalized_hash(factoid.content)
            if digest not in seen:
                fresh.setdefault(digest, factoid)
        if not fresh:
            return
        vectors = ctx.embedder.embed([f.content for f in fresh.values()])
        memories = [ctx.new_memory(f) for f in fresh.values()]
        ctx.store.add(memories, vectors)
        cfg = self.config
        for memory, vector in zip(memories, vectors, strict=True):
            agent.core.write(memory, vector, cfg.core_replace_similarity)
        agent.core.fit(cfg.core_block_tokens)
