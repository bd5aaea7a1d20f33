"""Prompt caching: which input tokens of a request the provider serves from its cache.

It is long because the providers' caching rules and the prefix bookkeeping they
share are read together, beside their sources.

Every major API caches prompt prefixes, bills the cached tokens at a fraction of
the input price and skips their prefill. memsim keeps one cache per simulated
shard and strategy, on the simulated clock, and applies the rule of the chat
model's provider (``[llm.cache] mode``). The rules, as the providers document
them (read 2026-12; ``docs/caching.md`` quotes each source):

**OpenAI** (platform guide "Prompt caching",
https://developers.openai.com/api/docs/guides/prompt-caching, and the cookbook's
"Prompt Caching 201"): automatic for every request; "caching is available for
prompts containing 1024 tokens or more", and cache hits count "in increments of
128 tokens" (models before GPT-5.6), so the cached part is the longest prefix
shared with a recent request, rounded down to a multiple of 128 and at least
1,024. "Cached prefixes generally remain active for 5 to 10 minutes of
inactivity": memsim's default TTL is the lower end, 300 s; ``retention =
"extended"`` is ``prompt_cache_retention = "24h"`` (86,400 s; "prompt cache
pricing is the same for both policies"). "Only members of the same organization
can access caches of identical prompts": users of one product share the entry of
their common system prompt. There is no write premium.

**Anthropic** (https://platform.claude.com/docs/en/build-with-claude/prompt-caching):
only prefixes that end at an explicit ``cache_control`` breakpoint are written
("up to 4 cache breakpoints"); a request reads the longest cached prefix that
ends at a block boundary at most about 20 blocks before one of its breakpoints.
Writes cost 1.25x the input price with the default 5-minute lifetime, 2x with
``"ttl": "1h"`` (``retention = "extended"``); reads cost 0.1x (the prices come
from genai-prices). "The cache is refreshed for no additional cost each time
the cached content is used." A prefix shorter than the model's minimum
(:data:`ANTHROPIC_MIN_TOKENS`) is "processed without caching".

**Gemini** (https://ai.google.dev/gemini-api/docs/caching): implicit caching is
"enabled by default for all Gemini 2.5 and newer models", for requests that
share a prefix of at least the model's minimum (:data:`GEMINI_MIN_TOKENS`),
without a write charge. Its lifetime is not documented ("no fixed time, but it
should be a few minutes", Google DeepMind's Philipp Schmid, quoted by Simon
Willison, 2025-05-09): memsim takes 300 s.

How a request is seen. A request is a sequence of *blocks* — the system message,
the memory block's header and each of its lines, each history message, the
user's message — each with a token count (chat-format overhead included, so the
blocks add up to the billed input less the reply priming). Two requests share a
prefix through the last block where all blocks so far are equal: equal texts
(a memory line, a system prompt) or the same message. Blocks are compared, never
hashed, so what is cached is exact and the same in every process. A difference
inside a block ends the shared prefix at the block's start: lines and messages
are short next to OpenAI's 128-token steps, and they change whole.

A :class:`Layout` holds the blocks of a request: the conversation history is
not copied into it but referenced, with the :class:`MessageChain` of token ends
the conversation keeps as it grows, so building a layout and comparing two
requests of one conversation costs the same short or long. A user's live
entries (their recent requests) are compared with each new request; the entry
of the first block (the system prompt) is also kept per shard, for every user.
Lookups happen when the call is planned (a chat call: at the turn's start), on
the simulated clock: an entry written at ``t`` serves requests before
``t + ttl_s`` and none from then on.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sim.config import CacheConfig, LLMConfig
from sim.tokens import REPLY_PRIMING_TOKENS, ROLE_TOKENS, TOKENS_PER_MESSAGE, TokenCounter

OPENAI, ANTHROPIC, GEMINI, NONE = "openai", "anthropic", "gemini", "none"
PART_NAMES = ("system", "memories", "history", "user")
"""The prompt parts a layout marks the end of (the places Anthropic breakpoints go)."""

PROVIDER_RULES = {
    "openai": OPENAI,
    "azure": OPENAI,
    "anthropic": ANTHROPIC,
    "google": GEMINI,
    "google-gla": GEMINI,
    "google-vertex": GEMINI,
    "gemini": GEMINI,
}
"""``mode = "auto"``: the rule of each genai-prices provider id; any other: none."""

OPENAI_MIN_TOKENS = 1_024
OPENAI_STEP_TOKENS = 128
DEFAULT_TTL_S = 300.0
"""OpenAI in-memory retention ("5 to 10 minutes of inactivity": the lower end),
Anthropic's default 5-minute lifetime, Gemini's undocumented "few minutes"."""
EXTENDED_TTL_S = {OPENAI: 86_400.0, ANTHROPIC: 3_600.0}
"""``retention = "extended"``: OpenAI's ``24h`` retention, Anthropic's ``1h`` TTL."""
ANTHROPIC_LOOKBACK_BLOCKS = 20
"""Block boundaries a breakpoint looks back over for an earlier entry ("up to
approximately 20 blocks before your explicit breakpoint")."""

ANTHROPIC_MIN_TOKENS: tuple[tuple[str, int], ...] = (
    ("claude-opus-4-8", 1_024),
    ("claude-opus-4-7", 2_048),
    ("claude-opus-4-6", 4_096),
    ("claude-opus-4-5", 4_096),
    ("claude-haiku-4-5", 4_096),
    ("claude-3-5-haiku", 2_048),
    ("claude-3-haiku", 2_048),
    ("claude-opus-5", 512),
    ("claude-sonnet-5-5", 512),
    ("claude-haiku-5", 512),
    ("claude-", 1_024),
)
"""Minimum cacheable prompt length by model-name prefix, first match wins (Anthropic's
prompt-caching guide, table "Cache limitations", 2026-10: 4,096 for Opus 4.6/4.5 and
Haiku 4.5; 2,048 for Opus 4.7 and Haiku 3.5/3; 512 for the 5.5 generation and Opus 5;
1,024 for Sonnet 4.x/5, Opus 4.8 and 4.1/4, and memsim's default for others)."""

GEMINI_MIN_TOKENS: tuple[tuple[str, int], ...] = (
    ("gemini-2.5", 2_048),
    ("gemini-", 4_096),
)
"""Minimum for implicit caching by model-name prefix (Gemini API "Context caching",
updated 2026-10-13: 2,048 for 2.5 Flash and 2.5 Pro, 4,096 for the 3.x models)."""


def resolve_provider(cfg: LLMConfig) -> str:
    """The rule a scenario's ``[llm.cache] mode`` selects: openai, anthropic, gemini or none."""
    mode = cfg.cache.mode
    if mode != "auto":
        return mode
    return PROVIDER_RULES.get(cfg.provider, NONE)


def _by_prefix(table: tuple[tuple[str, int], ...], model: str, fallback: int) -> int:
    return next((n for prefix, n in table if model.startswith(prefix)), fallback)


@dataclass(frozen=True, slots=True)
class CacheRule:
    """One provider's caching rule with this scenario's settings.

    Attributes:
        provider: ``openai``, ``anthropic`` or ``gemini``.
        min_tokens: Shortest prefix that is cached.
        step_tokens: Cached tokens are counted in multiples of this (OpenAI 128).
        ttl_s: Seconds an entry lives after its last write or read.
        explicit: Only prefixes ending at a breakpoint are written (Anthropic).
        breakpoints: Indices into :data:`PART_NAMES` of the parts a breakpoint closes.
        write_ttl: ``5m`` or ``1h``: the write price that applies (Anthropic), else "".
        share_across_users: Whether users share the entry of their common first block.
    """

    provider: str
    min_tokens: int
    step_tokens: int
    ttl_s: float
    explicit: bool
    breakpoints: tuple[int, ...]
    write_ttl: str
    share_across_users: bool

    def as_dict(self) -> dict:
        """The rule as the resolved configuration records it."""
        return {
            "provider": self.provider,
            "min_tokens": self.min_tokens,
            "step_tokens": self.step_tokens,
            "ttl_s": self.ttl_s,
            "breakpoints": [PART_NAMES[i] for i in self.breakpoints] if self.explicit else None,
            "write_ttl": self.write_ttl or None,
            "share_across_users": self.share_across_users,
        }


def cache_rule(cfg: LLMConfig) -> CacheRule | None:
    """The caching rule of a scenario's chat model, or ``None`` (``mode`` none, or unknown)."""
    provider = resolve_provider(cfg)
    if provider == NONE:
        return None
    cache: CacheConfig = cfg.cache
    extended = cache.retention == "extended"
    if extended and provider == GEMINI:
        raise ValueError("retention 'extended' does not exist for Gemini's implicit cache")
    ttl = cache.ttl_s or (EXTENDED_TTL_S[provider] if extended else DEFAULT_TTL_S)
    if provider == OPENAI:
        minimum, step = OPENAI_MIN_TOKENS, OPENAI_STEP_TOKENS
    elif provider == ANTHROPIC:
        minimum, step = _by_prefix(ANTHROPIC_MIN_TOKENS, cfg.model, 1_024), 1
    else:
        minimum, step = _by_prefix(GEMINI_MIN_TOKENS, cfg.model, 4_096), 1
    return CacheRule(
        provider,
        cache.min_tokens or minimum,
        step,
        ttl,
        provider == ANTHROPIC,
        tuple(sorted(PART_NAMES.index(p) for p in cache.breakpoints)),
        ("1h" if extended else "5m") if provider == ANTHROPIC else "",
        cache.share_across_users,
    )


# -- blocks ----------------------------------------------------------------------------
class ChatMessage(Protocol):
    """What a chain needs of a message (:class:`sim.workload.Message` is one)."""

    role: str
    text: str
    tokens: int


CLOSE = ("close",)
"""The block of a message's closing token when the message is cut into several blocks."""


class MessageChain:
    """Running token ends of an append-only list of messages.

    A conversation history owns one and extends it as it grows; a prompt that
    snapshots the history's first ``n`` messages uses the first ``n`` ends. Two
    requests built on the same chain share their first ``min(n)`` messages
    without comparing them (the list only grows). Extending is lazy (only when a
    cache asks), so runs without caching pay nothing for it.
    """

    __slots__ = ("ends",)

    def __init__(self) -> None:
        self.ends: list[int] = []

    def extend(self, messages: Sequence[ChatMessage], n: int) -> None:
        """Make sure the first ``n`` messages have their ends."""
        ends = self.ends
        done = len(ends)
        if done >= n:
            return
        total = ends[-1] if done else 0
        for m in messages[done:n]:
            total += TOKENS_PER_MESSAGE + ROLE_TOKENS[m.role] + m.tokens
            ends.append(total)


# -- layouts ---------------------------------------------------------------------------
class Layout:
    """One request as the cache sees it: its blocks in order, and where parts end.

    The blocks are a *head* (the system message, a memory block before the
    history), the conversation *history* (a prompt's snapshot of ``n`` messages,
    with the :class:`MessageChain` of the conversation it was taken from) and a
    *tail* (a memory block after the history, the user's message); ``*_tokens``
    are the head's and the tail's blocks' tokens. Blocks are added with
    :meth:`add` and :meth:`extend`: to the head before :meth:`attach`, to the
    tail after it. ``marks[p]`` is the ``(blocks, tokens)`` position where part
    ``p`` of :data:`PART_NAMES` ends (kept only for explicit caching).
    """

    __slots__ = (
        "chain",
        "end",
        "head_end",
        "head_keys",
        "head_tokens",
        "history",
        "marks",
        "n",
        "tail_keys",
        "tail_tokens",
    )

    def __init__(self, marked: bool = True) -> None:
        self.head_keys: list = []
        self.head_tokens: list[int] = []
        self.chain: MessageChain | None = None
        self.history: Sequence[ChatMessage] = ()
        self.n = 0
        self.tail_keys: list = []
        self.tail_tokens: list[int] = []
        self.head_end = 0  # tokens of the head (once attached)
        self.end = 0  # tokens of the blocks so far
        self.marks: list[tuple[int, int] | None] | None = [None] * 4 if marked else None

    @property
    def blocks(self) -> int:
        """Blocks of the whole request."""
        return len(self.head_keys) + self.n + len(self.tail_keys)

    def add(self, key: object, tokens: int) -> None:
        """Append one block of ``tokens`` tokens."""
        self.end += tokens
        if self.chain is None:
            self.head_keys.append(key)
            self.head_tokens.append(tokens)
        else:
            self.tail_keys.append(key)
            self.tail_tokens.append(tokens)

    def extend(self, keys: list, tokens: list[int]) -> None:
        """Append several blocks."""
        self.end += sum(tokens)
        if self.chain is None:
            self.head_keys += keys
            self.head_tokens += tokens
        else:
            self.tail_keys += keys
            self.tail_tokens += tokens

    def attach(self, history: Sequence[ChatMessage], chain: MessageChain) -> None:
        """Append the messages of ``history``, whose ends ``chain`` holds (extended already)."""
        self.history, self.chain, self.n = history, chain, len(history)
        self.head_end = self.end
        if self.n:
            self.end += chain.ends[self.n - 1]

    def mark(self, part: int) -> None:
        """Mark the end of the blocks so far as the end of ``part`` (if marks are kept)."""
        marks = self.marks
        if marks is not None:
            marks[part] = (self.blocks, self.end)


def common_prefix(a: Layout, b: Layout) -> tuple[int, int]:
    """``(blocks, tokens)`` of the longest prefix of whole blocks two requests share.

    Blocks are compared for equality: texts (memory lines, prompts), and message
    objects (a conversation's messages are the same objects from turn to turn; an
    equal copy compares equal too).
    """
    head_a, head_b = a.head_keys, b.head_keys
    if head_a != head_b:
        j = _lcp(head_a, head_b)
        return j, sum(a.head_tokens[:j])
    h, base = len(head_a), a.head_end if a.chain is not None else a.end
    m = min(a.n, b.n)
    if m and a.chain is not b.chain:
        j = _lcp(a.history, b.history, m)
        if j < m:
            return h + j, base + a.chain.ends[j - 1] if j else base  # type: ignore[union-attr]
    at = base + a.chain.ends[m - 1] if m else base  # type: ignore[union-attr]
    if a.n == b.n:
        short, rest = a, b.tail_keys
    else:  # the shorter history's tail against the rest of the longer history, then its tail
        short, long = (a, b) if a.n < b.n else (b, a)
        rest = [*long.history[m : long.n], *long.tail_keys]
    j = _lcp(short.tail_keys, rest)
    return h + m + j, at + sum(short.tail_tokens[:j])


def _lcp(a: Sequence, b: Sequence, m: int | None = None) -> int:
    """Length of the common prefix of two sequences (of their first ``m`` items)."""
    if m is None:
        m = min(len(a), len(b))
    if a[:m] == b[:m]:  # the usual answer, compared in C
        return m
    lo, hi = 0, m - 1  # a[:lo] == b[:lo]; a[:hi + 1] != b[:hi + 1]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


# -- the cache -------------------------------------------------------------------------
class _Entry:
    """A request in the cache: its layout, when it expires, where reads may end.

    ``positions`` (Anthropic) are the ``(blocks, tokens)`` of the prefixes written
    or read at a breakpoint, ascending; ``None`` (OpenAI, Gemini): any block
    boundary of the layout.
    """

    __slots__ = ("blocks", "expires", "layout", "positions")

    def __init__(
        self, layout: Layout, expires: float, positions: list[tuple[int, int]] | None
    ) -> None:
        self.layout, self.expires, self.positions = layout, expires, positions
        self.blocks = layout.blocks


MAX_ENTRIES_PER_USER = 32
"""Live entries kept per user; the oldest go first (a bound on memory, far above
what one user's requests within a TTL need)."""
PURGE_EVERY_REQUESTS = 100_000
"""How often the entries of users who have not come back are dropped once expired
(a user's own entries are pruned at each of its requests)."""


@dataclass(slots=True)
class CacheUse:
    """What the cache did for one request: input tokens read from it and written to it."""

    cached_tokens: int = 0
    written_tokens: int = 0


NO_USE = CacheUse()


class PromptCache:
    """One provider's prompt cache for one shard's users, on the simulated clock."""

    def __init__(self, rule: CacheRule) -> None:
        self.rule = rule
        # Live entries by (user, key of the first block): only requests that open
        # alike can share a prefix, so a chat request is never compared with an
        # extraction request.
        self._entries: dict[tuple[int, object], list[_Entry]] = {}
        self._shared: dict[object, tuple[float, int]] = {}  # first block -> (expires, tokens)
        self._blocks: dict[tuple[str, str], tuple[tuple, int]] = {}
        self.from_tokens = rule.min_tokens + REPLY_PRIMING_TOKENS
        """Input tokens from which a request can touch the cache (see :meth:`reaches`)."""
        self._requests = 0

    def layout(self) -> Layout:
        """An empty layout; it keeps part marks only where the rule needs them (Anthropic)."""
        return Layout(self.rule.explicit)

    def message_block(self, role: str, text: str, counter: TokenCounter) -> tuple[tuple, int]:
        """``(block, tokens)`` of a recurring whole message (a system prompt), remembered."""
        block = self._blocks.get((role, text))
        if block is None:
            tokens = counter.message(role, counter.count(text))
            block = self._blocks[(role, text)] = ((role, text), tokens)
        return block

    def reaches(self, tokens_in: int) -> bool:
        """Whether a request of ``tokens_in`` input tokens can read or write anything.

        One whose blocks (its input less the reply priming) are shorter than the
        minimum cannot: every prefix it holds is too short to be cached, now or for a
        later request. Callers skip building its layout.
        """
        return tokens_in >= self.from_tokens

    def request(self, user: int, layout: Layout, now: float) -> CacheUse:
        """Serve one request of ``user`` at ``now``: what it reads, what it writes.

        The request is compared with the user's live entries that open with the
        same block; it becomes an entry itself, and an entry it contains whole
        (the previous turn of a growing conversation) is dropped: the new one
        holds every prefix the old one held, and lives longer.
        """
        rule = self.rule
        first = layout.head_keys[0]
        slot = (user, first)
        entries = self._entries.get(slot)
        # Most system prompts are shorter than any minimum: nothing is ever shared then.
        read_blocks, read_tokens = self._shared_read(layout, first, now) if self._shared else (0, 0)
        kept: list[_Entry] = []
        whole: list[_Entry] = []  # live entries the new one contains entirely
        if entries:
            explicit = rule.explicit
            for entry in entries:
                if entry.expires <= now:
                    continue
                blocks, tokens = common_prefix(layout, entry.layout)
                if blocks == entry.blocks:
                    whole.append(entry)
                else:
                    kept.append(entry)
                if explicit:
                    blocks, tokens = self._readable(layout, entry.positions, blocks)  # type: ignore[arg-type]
                if tokens > read_tokens:
                    read_blocks, read_tokens = blocks, tokens
        if rule.explicit:
            use, positions = self._explicit(layout, read_blocks, read_tokens)
            mine = set(positions)  # a contained entry may hold prefixes the new one lacks
            kept += [e for e in whole if not mine.issuperset(e.positions)]  # type: ignore[arg-type]
        else:
            cached = read_tokens // rule.step_tokens * rule.step_tokens
            use = CacheUse(cached, 0) if cached >= rule.min_tokens else NO_USE
            positions = None
        expires = now + rule.ttl_s
        kept.append(_Entry(layout, expires, positions))
        self._entries[slot] = kept if len(kept) <= MAX_ENTRIES_PER_USER else kept[1:]
        if rule.share_across_users and layout.head_tokens[0] >= rule.min_tokens:
            self._share(first, layout.head_tokens[0], positions, expires)
        self._requests += 1
        if self._requests % PURGE_EVERY_REQUESTS == 0:
            self._purge(now)
        return use

    def _purge(self, now: float) -> None:
        """Drop every expired entry (those of users who did not come back hold memory)."""
        for slot, entries in list(self._entries.items()):
            live = [e for e in entries if e.expires > now]
            if live:
                self._entries[slot] = live
            else:
                del self._entries[slot]
        self._shared = {k: v for k, v in self._shared.items() if v[0] > now}

    def _shared_read(self, layout: Layout, first: object, now: float) -> tuple[int, int]:
        """The first block, if another request of the shard left it in the cache."""
        hit = self._shared.get(first)
        if hit is None or hit[0] <= now:
            return 0, 0
        if self.rule.explicit:  # read only within reach of one of this request's breakpoints
            return self._readable(layout, [(1, hit[1])], 1)
        return 1, hit[1]

    def _share(self, first: object, tokens: int, positions: list | None, expires: float) -> None:
        """Offer a request's first block (``tokens`` long, enough to cache) to every user."""
        if positions is not None and (1, tokens) not in positions:
            return  # explicit caching: no breakpoint right after it, so it was not written
        self._shared[first] = (expires, tokens)

    def _readable(
        self, layout: Layout, positions: list[tuple[int, int]], blocks: int
    ) -> tuple[int, int]:
        """The longest entry position within the shared ``blocks`` in reach of a breakpoint."""
        i = bisect_right(positions, (blocks, float("inf")))
        marks = [layout.marks[p] for p in self.rule.breakpoints]
        ends = [m[0] for m in marks if m is not None]  # type: ignore[index]
        while i:
            i -= 1
            at, tokens = positions[i]
            if any(at <= end <= at + ANTHROPIC_LOOKBACK_BLOCKS for end in ends):
                return at, tokens
        return 0, 0

    def _explicit(
        self, layout: Layout, read_blocks: int, read_tokens: int
    ) -> tuple[CacheUse, list[tuple[int, int]]]:
        """Anthropic: read the best entry, write up to the last breakpoint past the read."""
        rule = self.rule
        marks = sorted(
            m
            for p in rule.breakpoints
            if (m := layout.marks[p]) is not None and m[1] >= rule.min_tokens
        )
        if read_tokens < rule.min_tokens:
            read_blocks = read_tokens = 0
        written = marks[-1][1] - read_tokens if marks and marks[-1][1] > read_tokens else 0
        positions = marks
        if read_tokens and (read_blocks, read_tokens) not in positions:
            positions = sorted([*marks, (read_blocks, read_tokens)])
        return CacheUse(read_tokens, written), positions


def new_cache(cfg: LLMConfig) -> PromptCache | None:
    """A fresh cache for one simulation, or ``None`` when the scenario caches nothing."""
    rule = cache_rule(cfg)
    return PromptCache(rule) if rule is not None else None
