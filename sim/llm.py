"""``MockLLM``: a deterministic chat model that is an oracle with noise.

It is long because the mock LLM answers six kinds of call with real token counts,
noise, and the provider's latency and prompt cache.

It never calls a network. Token counts are real (tiktoken on the exact prompt
and response texts, with the chat format's overhead); latency follows the
model's profile (:mod:`sim.latency`): ``(ttft_base + prefill·uncached input +
output_tokens / tps) · jitter``, with a seeded log-normal jitter whose spread
grows with the uncached prompt and with the load on the chat endpoint.

Each call's randomness comes from a generator owned by ``(seed, user, purpose)``
(``SeedSequence(seed, spawn_key=(LLM, user, purpose))``), drawn in the order of
that user's calls, so a user's results never depend on other users or on
global state.

Messages carry hidden ground truth. ``extract`` returns the facts the user
stated, as the JSON array an extraction prompt asks for, but misses some, rewords
some and adds made-up inferences at configurable rates (and, with
``extract_derived_facts_min``/``_max``, facts it derived rather than read).
``summarize`` keeps the facts of the previous summary but loses each with a
configurable drift. ``update``
is Mem0's memory-update call: given one new fact and the stored memories most
similar to it, it answers ADD, UPDATE, DELETE or NONE as Mem0's prompt asks
(``{"memory": [{"id", "text", "event", "old_memory"?}]}``), decided from ground
truth and wrong at a configurable rate. ``tool_extract`` is one extraction with
tools as trustcall makes it for LangMem: the facts ``extract`` finds, each decided
against the memories the request shows (an insert, a ``PatchDoc`` of one of them,
nothing, or a ``RemoveDoc``) by the same ground-truth rule and error rate as
``update``, and billed as the request and the tool calls the API bills.

Messages replayed from a real trace (kind ``trace``, :mod:`sim.traces`) carry no
annotation except the facts of the turns a benchmark annotated: ``extract``
returns those with the same noise, and for any other trace text falls back to
:func:`sim.heuristic.heuristic_facts`; ``chat`` answers with the reply the trace
recorded when there is one.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from sim.config import LLMConfig
from sim.extraction_prompts import ExtractionPrompt
from sim.heuristic import heuristic_facts
from sim.latency import resolve as resolve_latency
from sim.prompt_cache import CLOSE, NO_USE, CacheUse, Layout, PromptCache
from sim.textbank import (
    DERIVED_FACTS,
    EXTRACT_SYSTEM_PROMPT,
    INFERENCES,
    INSTRUCTION_CATEGORY,
    INSTRUCTION_SLOT,
    INSTRUCTIONS,
    MEM0_UPDATE_PROMPT,
    REPLY_SENTENCES,
    SLOT_BY_KEY,
    SUMMARY_SYSTEM_PROMPT,
    Slot,
)
from sim.tokens import (
    REPLY_PRIMING_TOKENS,
    ROLE_TOKENS,
    TOKENS_PER_MESSAGE,
    TokenCounter,
    encoding,
    tool_calls_tokens,
    tool_tokens,
)
from sim.types import TRACE_KIND, TRANSCRIPT_PREFIX, Fact, Message

if TYPE_CHECKING:  # the catalog is the workload's; the mock LLM only reads and extends it
    from sim.workload import TextCatalog

LLM_STREAM = 3  # first spawn-key word of every mock-LLM generator
PURPOSES = ("chat", "extract", "summarize", "update")
CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
ADD, UPDATE, DELETE, NONE = "ADD", "UPDATE", "DELETE", "NONE"
MEMORY_EVENTS = (ADD, UPDATE, DELETE, NONE)


@dataclass(slots=True)
class Factoid:
    """One extracted fact: what an extraction call returns per array element.

    ``facts`` is hidden ground truth (empty for an inference the model made up).
    """

    content: str
    importance: int
    category: str
    facts: tuple[tuple[str, int], ...] = ()


@dataclass(slots=True)
class Summary:
    """A running summary, injectable as one line of the memory block.

    ``facts``, ``values`` and ``owner`` are hidden ground truth: the facts it still
    holds and the user it summarizes.
    """

    text: str
    line_tokens: int
    facts: tuple[tuple[str, int], ...] = ()
    values: dict[str, Fact] = field(default_factory=dict)
    owner: int = -1


class _Load(Protocol):
    """What the latency model reads of the chat endpoint: its busy and total slots."""

    busy: int
    capacity: int


class Candidate(Protocol):
    """A stored memory as an update call sees it (:class:`~sim.store.Memory` is one)."""

    id: int
    text: str
    facts: tuple[tuple[str, int], ...]


@dataclass(slots=True, frozen=True)
class MemoryEvent:
    """One element of an update answer: what happens to one memory.

    ``memory_id`` is the store id of the candidate it concerns (``None`` for ADD);
    ``text`` is the memory's text after the event.
    """

    event: str
    memory_id: int | None
    text: str
    old_memory: str = ""


@dataclass(slots=True)
class UpdateDecision:
    """What an update call decided for its new fact.

    Attributes:
        event: The event for the new fact: ADD, UPDATE, DELETE or NONE.
        target: Store id of the memory the event updates, deletes or finds the
            fact in (``None`` for ADD, or NONE with no matching memory).
        events: Every element of the JSON answer, in order: one per candidate,
            then the added memory. Apply the ones that are not NONE.
        expected: The ground-truth event (differs from ``event`` on an error).
    """

    event: str
    target: int | None
    events: list[MemoryEvent]
    expected: str


NOTHING_NEW = "No new memories to record."
"""A tool-calling extraction's prose answer when it has nothing to record and may say so."""
PATCH_DOC, REMOVE_DOC = "PatchDoc", "RemoveDoc"
"""trustcall 0.0.39's tools for the existing documents it shows (``trustcall/_base.py``)."""


def patch_doc_arguments(doc_id: str, patches: list[dict[str, Any]]) -> dict[str, Any]:
    """Arguments of trustcall's ``PatchDoc``: the doc, the plan, the JSON patches."""
    plan = "Replace the memory with its new version." if patches else "No change needed."
    return {"json_doc_id": doc_id, "planned_edits": plan, "patches": patches}


@dataclass(slots=True, frozen=True)
class ToolCall:
    """One call of a tool-calling extraction's answer, and what it does to the memories.

    ``name`` and ``arguments`` (JSON) are what the API returns. ``event`` is ADD
    (``factoid`` becomes a new memory), UPDATE (``factoid`` replaces the shown
    memory ``target``, which keeps its key), DELETE (the shown memory ``target``
    is removed) or NONE (an empty patch: nothing changes); ``target`` indexes the
    memories the request showed.
    """

    name: str
    arguments: str
    event: str
    target: int | None = None
    factoid: Factoid | None = None


@dataclass(slots=True)
class ToolDecision:
    """What a tool-calling extraction answered: its calls, in the answer's order.

    ``errors`` counts the facts whose call ``update_error_rate`` changed.
    """

    calls: list[ToolCall] = field(default_factory=list)
    errors: int = 0


@dataclass(slots=True)
class LLMResult:
    """The outcome of one model call."""

    purpose: str
    tokens_in: int
    tokens_out: int
    latency_s: float
    error: str = ""
    error_message: str = ""
    reply: Message | None = None
    factoids: list[Factoid] = field(default_factory=list)
    summary: Summary | None = None
    decision: UpdateDecision | None = None
    tool_decision: ToolDecision | None = None
    cached_tokens: int = 0
    """Input tokens read from the provider's prompt cache (billed at its read price)."""
    cache_write_tokens: int = 0
    """Input tokens written to the prompt cache (billed at its write price; Anthropic)."""


@lru_cache(maxsize=1 << 17)
def _stream_seed(seed: int, user: int, purpose: str) -> int:
    """The seed of one ``(user, purpose)`` stream (cached: every strategy of a run asks)."""
    ss = np.random.SeedSequence(seed, spawn_key=(LLM_STREAM, user, PURPOSES.index(purpose)))
    return int.from_bytes(ss.generate_state(4).tobytes(), "little")


class MockLLM:
    """Deterministic chat / extract / summarize / update / tool_extract with real token counts.

    With a :class:`~sim.prompt_cache.PromptCache`, each call first asks the cache
    which of its input tokens are cached at ``now`` (the simulated time the call
    is made); those skip prefill, so time to first token grows with the uncached
    tokens only. Without one (``[llm.cache] mode = "none"``) nothing is cached.
    """

    def __init__(
        self,
        cfg: LLMConfig,
        tokens: TokenCounter,
        catalog: TextCatalog,
        seed: int,
        cache: PromptCache | None = None,
    ):
        self.cfg, self.tokens, self.catalog, self.seed = cfg, tokens, catalog, seed
        self.cache = cache
        self._streams: dict[str, dict[int, random.Random]] = {p: {} for p in PURPOSES}
        # The latency and reply-length constants, read once instead of per call.
        self.profile = profile = resolve_latency(cfg)
        self._ttft_base_s, self._prefill_s = profile.ttft_base_s, profile.prefill_s_per_token
        self._decode_tps, self._jitter_sigma = profile.decode_tokens_per_s, profile.jitter_sigma
        self._sigma_per_token = profile.jitter_sigma_per_1k_tokens / 1000.0
        self._sigma_load = profile.jitter_sigma_load
        self._jitter_min = profile.jitter_min if profile.jitter_min is not None else 0.0
        self._jitter_max = profile.jitter_max if profile.jitter_max is not None else math.inf
        self.endpoint: _Load | None = None
        """The chat endpoint whose busy slots are the load (set by the engine)."""
        # Reply lengths: a profile file's fit (memsim fit) if it has one, else [llm]'s.
        mean, sigma = profile.reply_tokens_mean, profile.reply_tokens_sigma
        self._reply_mean = cfg.reply_tokens_mean if mean is None else mean
        self._reply_sigma = cfg.reply_tokens_sigma if sigma is None else sigma
        self._reply_mu = -(self._reply_sigma**2) / 2
        self._extract_system = tokens.message("system", tokens.count(EXTRACT_SYSTEM_PROMPT))
        self._summary_system = tokens.message("system", tokens.count(SUMMARY_SYSTEM_PROMPT))
        self._update_prompt = tokens.count(MEM0_UPDATE_PROMPT)
        # The fixed instruction prefixes of memory-work calls, as the prompt cache keys them.
        self._user_open = TOKENS_PER_MESSAGE - 1 + ROLE_TOKENS["user"]  # before the content
        self._extract_key = ("system", EXTRACT_SYSTEM_PROMPT)
        self._summary_key = ("system", SUMMARY_SYSTEM_PROMPT)
        self._update_key = ("user", MEM0_UPDATE_PROMPT)  # the user message opens with it
        self._prefixes: dict[ExtractionPrompt, tuple[int, tuple, int]] = {}
        # Per sentence: tokens alone, after a space, and after a space ending a
        # transcript line. Sentence boundaries are tokenizer chunk boundaries, so a
        # reply's counts are exact sums of these (tests check this).
        self._sentence_tokens = [tokens.sentence(s) for s in REPLY_SENTENCES]
        self._spaced_tokens = [spaced for _, spaced, _ in self._sentence_tokens]
        self._assistant_prefix = tokens.count(TRANSCRIPT_PREFIX["assistant"].rstrip())
        self._empty_array_tokens = tokens.count(json.dumps([]))
        self._first_open, self._later_open = (
            tokens.count('[{"content":'),
            tokens.count(' {"content":'),
        )
        self._importance_key = tokens.count(' "importance":')
        self._category_key = tokens.count(' "category":')
        self._json_counts: dict[tuple, int] = {}
        self._memory_texts: dict[tuple[str, str, int], str] = {}

    def stream(self, user: int, purpose: str) -> random.Random:
        """The generator behind one user's calls of one purpose."""
        streams = self._streams[purpose]
        rng = streams.get(user)
        if rng is None:
            rng = streams[user] = random.Random(_stream_seed(self.seed, user, purpose))
        return rng

    def latency(self, rng: random.Random, tokens_in: int, tokens_out: int) -> float:
        """Modelled service time of one call with ``tokens_in`` uncached input tokens.

        The jitter's log-spread is the profile's ``jitter_sigma``, plus its growth
        per uncached token, plus its growth with the chat endpoint's load (busy
        slots over concurrency when the call is made); clamped only if the
        scenario sets ``jitter_min``/``jitter_max``.
        """
        base = self._ttft_base_s + self._prefill_s * tokens_in
        base += tokens_out / self._decode_tps
        sigma = self._jitter_sigma + self._sigma_per_token * tokens_in
        endpoint = self.endpoint
        if endpoint is not None and endpoint.busy:
            sigma += self._sigma_load * min(endpoint.busy / endpoint.capacity, 1.0)
        jitter = math.exp(rng.gauss(0.0, sigma)) if sigma else 1.0
        return base * min(max(jitter, self._jitter_min), self._jitter_max)

    def cached_latency(
        self, latency_s: float, tokens_in: int, tokens_out: int, cached: int
    ) -> float:
        """A latency modelled with all input uncached, for ``cached`` tokens read from cache.

        The jittered latency is ``base(tokens_in) · jitter``: scaling it by
        ``base(tokens_in - cached) / base(tokens_in)`` keeps the draw and drops the
        cached tokens' prefill.
        """
        if not cached:
            return latency_s
        decode = tokens_out / self._decode_tps
        full = self._ttft_base_s + self._prefill_s * tokens_in + decode
        served = full - self._prefill_s * cached
        return latency_s * served / full if full else latency_s

    def transcript_tokens(self, messages: Sequence[Message]) -> int:
        """Tokens of messages rendered one per line as ``User: text`` / ``Assistant: text``."""
        total = 0
        for m in messages:
            if not m.transcript_tokens:
                prefix = TRANSCRIPT_PREFIX[m.role]
                m.transcript_tokens = self.tokens.count(prefix + m.text + "\n")
            total += m.transcript_tokens
        return total

    # -- chat -----------------------------------------------------------------
    def chat(
        self,
        user: int,
        prompt_tokens: int,
        scripted: Message | None = None,
        layout: Layout | None = None,
        now: float = 0.0,
    ) -> LLMResult:
        """Answer a chat request of ``prompt_tokens`` (overhead included).

        ``scripted`` is the reply a replayed trace recorded: it is returned as it
        is (cut at ``max_output_tokens`` as the API would), with its real token
        count, and only the latency jitter is drawn; without one, a reply is
        generated from the sentence bank. ``layout`` is the request as the prompt
        cache sees it (its blocks add up to ``prompt_tokens`` less the reply
        priming); without one, nothing of it is cached.
        """
        rng = self._streams["chat"].get(user) or self.stream(user, "chat")
        overflow = self.overflow("chat", prompt_tokens)
        if overflow is not None:
            return overflow
        cache = self.cache
        use = cache.request(user, layout, now) if cache is not None and layout else NO_USE
        if scripted is not None:
            reply = scripted
            if reply.tokens > self.cfg.max_output_tokens:
                reply = self._truncate(reply, self.cfg.max_output_tokens)
                reply.kind = TRACE_KIND
        else:
            reply = self.draw_reply(rng)
        reply.user = user
        return self._result(rng, "chat", prompt_tokens, reply.tokens, use, reply=reply)

    def _result(
        self,
        rng: random.Random,
        purpose: str,
        tokens_in: int,
        tokens_out: int,
        use: CacheUse,
        **answer: object,
    ) -> LLMResult:
        """A served call: its latency drawn from ``rng``, prefill for the uncached input only."""
        cached = use.cached_tokens
        latency_s = self.latency(rng, tokens_in - cached, tokens_out)
        return LLMResult(
            purpose,
            tokens_in,
            tokens_out,
            latency_s,
            cached_tokens=cached,
            cache_write_tokens=use.written_tokens,
            **answer,  # type: ignore[arg-type]
        )

    def prefix_use(
        self,
        user: int,
        now: float,
        tokens_in: int,
        prefix_tokens: int,
        prefix: object,
        lines: Sequence[Message] = (),
        opening: tuple[object, int] | None = None,
    ) -> CacheUse:
        """Ask the cache about a call that opens with a fixed instruction prefix.

        ``prefix_tokens`` tokens of the prefix (its block ``prefix``), with a
        breakpoint after it (a client caches its instructions); ``opening`` (block,
        tokens), a fixed start of the user message (an extraction template's
        preamble), is part of the prefix too; ``lines`` (transcript messages) follow
        inside the user message, so that a prompt that repeats an earlier one's
        conversation (a growing buffer) shares its prefix. Memory-work calls ask
        through here, and so do the requests a real library sends to ``serve-mock``.
        """
        cache = self.cache
        if cache is None or not cache.reaches(tokens_in):
            return NO_USE
        layout = cache.layout()
        layout.add(prefix, prefix_tokens)
        if opening is not None:
            layout.add(*opening)
        layout.mark(0)
        if lines:
            if opening is None:
                layout.add(("user",), self._user_open)
            layout.extend(list(lines), [m.transcript_tokens for m in lines])
            layout.add(CLOSE, 1)
        return cache.request(user, layout, now)

    def _extraction_prefix(self, template: ExtractionPrompt) -> tuple[int, tuple, int]:
        """``(system message tokens, its block, preamble tokens)`` of a template (counted once)."""
        prefix = self._prefixes.get(template)
        if prefix is None:
            tokens = self.tokens
            system = tokens.message("system", tokens.count(template.system))
            preamble = tokens.count(template.preamble) if template.preamble else 0
            prefix = self._prefixes[template] = (system, ("system", template.system), preamble)
        return prefix

    def _reply(self, rng: random.Random, target: int) -> Message:
        """A reply of about ``target`` tokens (at least 1), assembled from the sentence bank.

        Sentences are drawn until the reply reaches ``target`` tokens: the first
        counts alone, the others after a space. Its transcript line (``Assistant:
        `` + text + newline) costs the prefix and every sentence after a space,
        except that the last one also ends the line.
        """
        draw, sentences, n_sentences = rng.random, REPLY_SENTENCES, len(REPLY_SENTENCES)
        spaced = self._spaced_tokens
        first = int(draw() * n_sentences)  # randrange is 5x slower on this hot path
        parts = [sentences[first]]
        add = parts.append
        tokens = alone = self._sentence_tokens[first][0]
        i = first
        while tokens < target:
            i = int(draw() * n_sentences)
            tokens += spaced[i]
            add(sentences[i])
        line_end = self._sentence_tokens[i][2]
        line = self._assistant_prefix + tokens - alone + spaced[first] - spaced[i] + line_end
        return Message("assistant", " ".join(parts), tokens, transcript_tokens=line)

    def _truncate(self, reply: Message, limit: int) -> Message:
        """Cut a reply at ``limit`` tokens, as the API does at ``max_tokens``."""
        text = encoding().decode(encoding().encode_ordinary(reply.text)[:limit])
        line = self.tokens.count(TRANSCRIPT_PREFIX["assistant"] + text + "\n")
        return Message("assistant", text, self.tokens.count(text), transcript_tokens=line)

    def overflow(self, purpose: str, prompt_tokens: int) -> LLMResult | None:
        """The API's ``context_length_exceeded`` failure if the request does not fit, else None.

        A request asks for ``prompt_tokens`` plus ``max_output_tokens``; a failed
        one bills nothing and takes the profile's ``ttft_base_s`` to come back.
        """
        cfg = self.cfg
        requested = prompt_tokens + cfg.max_output_tokens
        if requested <= cfg.context_window:
            return None
        message = (
            f"This model's maximum context length is {cfg.context_window} tokens. "
            f"However, you requested {requested} tokens ({prompt_tokens} in the messages, "
            f"{cfg.max_output_tokens} in the completion). Please reduce the length of the "
            "messages or completion."
        )
        return LLMResult(purpose, 0, 0, self._ttft_base_s, CONTEXT_LENGTH_EXCEEDED, message)

    # -- extract --------------------------------------------------------------
    def extract(
        self,
        user: int,
        messages: Sequence[Message],
        prompt: str | ExtractionPrompt | None = None,
        now: float = 0.0,
    ) -> LLMResult:
        """Facts the user stated in ``messages``, as a noisy extractor returns them.

        ``prompt`` is what the call sends around the conversation (an
        :class:`~sim.extraction_prompts.ExtractionPrompt`, or a system prompt text
        followed by the conversation's lines); ``None``: the compact default. It
        sets the bill, not the answer. A request over the context window fails as
        ``chat`` does (``context_length_exceeded``, nothing billed, no facts) and
        draws nothing from the user's extraction stream.
        """
        if prompt is None:
            system, key, preamble, lines = self._extract_system, self._extract_key, 0, True
        else:
            template = (
                prompt if isinstance(prompt, ExtractionPrompt) else ExtractionPrompt("", prompt)
            )
            system, key, preamble = self._extraction_prefix(template)
            lines = template.transcript == "lines"
        if lines:
            conversation = self.transcript_tokens(messages)
        else:
            text = template.conversation([(m.role, m.text) for m in messages])
            conversation = self.tokens.count_split(text)
        tokens_in = (
            REPLY_PRIMING_TOKENS + system + self.tokens.message("user", preamble + conversation)
        )
        overflow = self.overflow("extract", tokens_in)
        if overflow is not None:
            return overflow
        opening = (("user", template.preamble), self._user_open + preamble) if preamble else None
        use = self.prefix_use(user, now, tokens_in, system, key, messages if lines else (), opening)
        rng = self.stream(user, "extract")
        found = self.find_factoids(rng, messages)
        tokens_out = self._factoid_array_tokens(found)
        return self._result(rng, "extract", tokens_in, tokens_out, use, factoids=found)

    def find_factoids(self, rng: random.Random, messages: Sequence[Message]) -> list[Factoid]:
        """What an extraction of ``messages`` finds, drawing its noise from ``rng``.

        The oracle behind :meth:`extract` (which draws from the user's extraction
        stream and bills the call); ``memsim serve-mock`` draws from a generator
        seeded by the request instead.
        """
        cfg = self.cfg
        factoids: dict[tuple, Factoid] = {}
        for msg in messages:
            if msg.kind == TRACE_KIND:
                self._trace_factoids(rng, msg, factoids)
                continue
            for fact in msg.facts:
                if rng.random() < cfg.extract_miss_rate:
                    continue
                factoids[(fact.slot, fact.version)] = self._factoid(rng, fact)
            if msg.instruction >= 0 and rng.random() < cfg.extract_instruction_rate:
                factoids[(INSTRUCTION_SLOT, msg.instruction)] = self._instruction(msg.instruction)
        found = list(factoids.values())
        if messages and rng.random() < cfg.extract_hallucination_rate:
            text = rng.choice(INFERENCES)
            self.catalog.register(text, (("inference", text),))
            found.append(Factoid(text, rng.randint(2, 5), "other"))
        if messages and cfg.extract_derived_facts_max:
            found.extend(self._derived(rng))
        return found

    def draw_reply(self, rng: random.Random) -> Message:
        """A chat reply drawn from ``rng`` as :meth:`chat` draws one (length, then sentences)."""
        cfg = self.cfg
        target = self._reply_mean * math.exp(rng.gauss(self._reply_mu, self._reply_sigma))
        target = min(max(int(target), 8), cfg.max_output_tokens)
        reply = self._reply(rng, target)
        if reply.tokens > cfg.max_output_tokens:
            reply = self._truncate(reply, cfg.max_output_tokens)
        return reply

    def _trace_factoids(
        self, rng: random.Random, msg: Message, factoids: dict[tuple, Factoid]
    ) -> None:
        """Add what extraction returns for one message of a real trace to ``factoids``.

        A message with ground truth (a LoCoMo evidence turn) returns its facts, each
        missed and reworded at the scenario's rates: a fact's value is its memory
        text, and a reworded one is phrased ``<value> (as the user said)``, which
        is enough to defeat exact-text dedup as a model's rewording does. Any
        other message returns the facts of :func:`sim.heuristic.heuristic_facts`,
        which draws no random number, without ground truth.
        """
        if not msg.facts:
            for found in heuristic_facts(msg.text):
                key = ("heuristic", found.content)
                factoids.setdefault(key, Factoid(found.content, found.importance, "other"))
            return
        cfg = self.cfg
        for fact in msg.facts:
            if rng.random() < cfg.extract_miss_rate:
                continue
            reworded = rng.random() < cfg.extract_reword_rate
            text = f"{fact.value} (as the user said)" if reworded else fact.value
            importance = 4 if any(f.importance >= 4 for f in heuristic_facts(fact.value)) else 3
            factoids[(fact.slot, fact.version)] = Factoid(
                text, importance, "background", ((fact.slot, fact.version),)
            )

    def _derived(self, rng: random.Random) -> list[Factoid]:
        """Between ``extract_derived_facts_min`` and ``..._max`` made-up derived facts.

        Drawn after everything else of the call, and only when the knob is on, so that
        scenarios without it draw exactly the numbers they drew before.
        """
        cfg = self.cfg
        count = rng.randint(cfg.extract_derived_facts_min, cfg.extract_derived_facts_max)
        derived = []
        for _ in range(count):
            text = rng.choice(DERIVED_FACTS)
            self.catalog.register(text, (("inference", text),))
            derived.append(Factoid(text, rng.randint(2, 5), "other"))
        return derived

    def _factoid_array_tokens(self, found: list[Factoid]) -> int:
        """Tokens of the extraction answer: ``found`` as the JSON array ``json.dumps`` writes.

        ``json.dumps`` writes ``[{"content": C, "importance": I, "category": K}, {…}]``
        (separators ``", "`` and ``": "``). Every space in that layout follows a
        non-whitespace character, so the answer's count is the sum of the counts of
        its pieces cut before those spaces (see :mod:`sim.tokens`, "Counting by pieces"):
        ``[{"content":`` (or `` {"content":``), `` C,``, `` "importance":``, `` I,``,
        `` "category":`` and `` K},`` (or `` K}]``), each value piece cached.
        """
        if not found:
            return self._empty_array_tokens
        last = len(found) - 1
        total = 0
        for i, factoid in enumerate(found):
            total += (
                (self._first_open if i == 0 else self._later_open)
                + self._json_tokens(factoid.content, ",")
                + self._importance_key
                + self._json_tokens(factoid.importance, ",")
                + self._category_key
                + self._json_tokens(factoid.category, "}]" if i == last else "},")
            )
        return total

    def _json_tokens(self, value: object, tail: str) -> int:
        """Tokens of a space, ``value`` as JSON, then ``tail``."""
        # The type is part of the key: 1, 1.0 and True are equal keys but differ in JSON.
        key = (value, type(value), tail)
        n = self._json_counts.get(key)
        if n is None:
            text = " " + json.dumps(value, ensure_ascii=False) + tail
            n = self._json_counts[key] = self.tokens.count_split(text)
        return n

    def _instruction(self, index: int) -> Factoid:
        """The memory an extractor makes of ``INSTRUCTIONS[index]``: an order, kept as one.

        Category ``instruction``, importance 9 (phrased as a standing rule, it reads as
        important); ground truth ``(INSTRUCTION_SLOT + index, 0)``.
        """
        text = self.catalog.register(INSTRUCTIONS[index][1], (("instruction", index, "memory"),))
        return Factoid(text, 9, INSTRUCTION_CATEGORY, ((f"{INSTRUCTION_SLOT}{index}", 0),))

    def _factoid(self, rng: random.Random, fact: Fact) -> Factoid:
        slot = SLOT_BY_KEY[fact.slot]
        reworded = rng.random() < self.cfg.extract_reword_rate
        variant = rng.randrange(1, len(slot.memories)) if reworded else 0
        importance = min(max(slot.importance + round(rng.gauss(0, 1)), 1), 10)
        text = self._memory_text(slot, fact.value, variant)
        return Factoid(text, importance, slot.category, ((fact.slot, fact.version),))

    def _memory_text(self, slot: Slot, value: str, variant: int) -> str:
        """``catalog.memory_text``, remembered: registering a text again changes nothing."""
        key = (slot.key, value, variant)
        text = self._memory_texts.get(key)
        if text is None:
            text = self._memory_texts[key] = self.catalog.memory_text(slot, value, variant)
        return text

    # -- summarize ------------------------------------------------------------
    def summarize(
        self,
        user: int,
        messages: Sequence[Message],
        previous: Summary | None = None,
        now: float = 0.0,
    ) -> LLMResult:
        """A new running summary of ``previous`` plus ``messages``.

        Each fact of the previous summary survives with probability
        ``1 - summarize_drift``; facts stated in ``messages`` are added, and a
        newer version of a slot replaces the older one. Trace messages without
        ground truth add their heuristic facts (the latest
        :data:`SUMMARY_HEURISTIC_MAX` are kept).
        """
        cfg, rng = self.cfg, self.stream(user, "summarize")
        kept: dict[str, Fact] = {}
        if previous is not None:
            for slot, fact in previous.values.items():
                if rng.random() >= cfg.summarize_drift:
                    kept[slot] = fact
        for msg in messages:
            if msg.kind == TRACE_KIND and not msg.facts:
                _keep_heuristic(kept, msg.text)
                continue
            for fact in msg.facts:
                kept[fact.slot] = fact
        ordered = sorted(kept.values(), key=lambda f: f.slot)
        text = " ".join(_summary_sentence(f) for f in ordered)
        text = text or "No durable facts about the user yet."
        prev_tokens = self.tokens.count(previous.text) if previous else 0
        tokens_in = (
            REPLY_PRIMING_TOKENS
            + self._summary_system
            + self.tokens.message("user", prev_tokens + self.transcript_tokens(messages))
        )
        tokens_out = self.tokens.count(text)
        summary = Summary(
            text,
            self.tokens.count("- " + text + "\n"),
            tuple((f.slot, f.version) for f in ordered),
            kept,
            owner=user,
        )
        use = self.prefix_use(user, now, tokens_in, self._summary_system, self._summary_key)
        return self._result(rng, "summarize", tokens_in, tokens_out, use, summary=summary)

    # -- update ---------------------------------------------------------------
    def update(
        self, user: int, fact: Factoid, candidates: Sequence[Candidate], now: float = 0.0
    ) -> LLMResult:
        """Mem0's update call: ADD, UPDATE, DELETE or NONE for ``fact`` against ``candidates``.

        The request is one user message: ``MEM0_UPDATE_PROMPT``, then the candidates
        as ``[{"id", "text"}]`` with ids ``"0"``, ``"1"``… (Mem0 maps store ids to
        small integers so the model cannot garble them), then the fact. With
        probability ``update_error_rate`` the answer swaps in a wrong event.
        """
        rng = self.stream(user, "update")
        expected, target, stale = _ground_truth(fact, candidates)
        event, deletes = expected, stale
        if rng.random() < self.cfg.update_error_rate:
            wrong = [e for e in MEMORY_EVENTS if e != expected and (candidates or e in (ADD, NONE))]
            event, deletes = rng.choice(wrong), []
            if event == ADD:
                target = None
            elif event != NONE and target is None:
                target = rng.randrange(len(candidates))
        decision, answer = _answer(fact, candidates, event, target, deletes, expected)
        tokens_in = REPLY_PRIMING_TOKENS + self.tokens.message(
            "user", self._update_prompt + self.tokens.count_split(_update_request(fact, candidates))
        )
        # Requests and answers are one-off texts, but made of a small vocabulary of
        # words: counted per piece, only pieces stay in the counter's cache.
        tokens_out = self.tokens.count_split(answer)
        prefix = self._user_open + self._update_prompt
        use = self.prefix_use(user, now, tokens_in, prefix, self._update_key)
        return self._result(rng, "update", tokens_in, tokens_out, use, decision=decision)

    # -- tool-calling extraction ------------------------------------------------
    def tool_extract(
        self,
        user: int,
        messages: Sequence[Message],
        system: str,
        prompt: str,
        tools: Sequence[dict[str, Any]],
        shown: Sequence[Candidate] = (),
        doc_ids: Sequence[str] = (),
        now: float = 0.0,
    ) -> LLMResult:
        """One trustcall extraction with tools: the facts of ``messages`` as tool calls.

        The request is a system message ``system`` (trustcall shows the memories
        ``shown`` in it, under ``doc_ids``), a user message ``prompt`` and the
        functions ``tools`` (``{"name", "description", "parameters"}``). The facts
        are :meth:`find_factoids`' (the scenario's miss, reword and hallucination
        rates), drawn from the user's extraction stream; per slot the newest one
        counts. Each is decided against ``shown`` by ground truth as :meth:`update`
        decides (:func:`_ground_truth`): known (no call); an older version shown
        (``PatchDoc`` of it, or, offered ``RemoveDoc`` but no ``PatchDoc``, its
        removal and an insert); nothing shown about it (an insert: the first tool
        that is not ``PatchDoc`` or ``RemoveDoc``). With ``RemoveDoc`` offered the
        other outdated copies shown are removed. With probability
        ``update_error_rate`` a fact gets a wrong decision (an insert, a patch of a
        memory shown, or nothing) and no removal. A call the tools do not offer is
        not made. With nothing to call, the answer is an empty ``PatchDoc`` of the
        first memory shown when ``PatchDoc`` is offered (trustcall then requires a
        call), else :data:`NOTHING_NEW` in prose.

        Input tokens are the two messages in the chat format plus the tools by the
        OpenAI cookbook's rule (:func:`sim.tokens.tool_tokens`, as ``serve-mock``
        bills them); output tokens are each call's name and JSON arguments
        (:func:`sim.tokens.tool_calls_tokens`). A request over the context window
        fails as ``extract`` does, with no calls.
        """
        count = self.tokens.count_split
        system_message = self.tokens.message("system", count(system))
        tokens_in = (
            REPLY_PRIMING_TOKENS
            + system_message
            + self.tokens.message("user", count(prompt))
            + tool_tokens(tools, count, self.cfg.model)
        )
        overflow = self.overflow("extract", tokens_in)
        if overflow is not None:
            overflow.tool_decision = ToolDecision()
            return overflow
        use = self.prefix_use(user, now, tokens_in, system_message, ("system", system))
        rng = self.stream(user, "extract")
        found = self.find_factoids(rng, messages)
        decision = self._tool_decision(rng, found, tools, shown, doc_ids)
        if decision.calls:
            functions = [{"name": c.name, "arguments": c.arguments} for c in decision.calls]
            tokens_out = tool_calls_tokens(functions, count)
        else:
            tokens_out = self.tokens.count(NOTHING_NEW)
        return self._result(
            rng, "extract", tokens_in, tokens_out, use, factoids=found, tool_decision=decision
        )

    def _tool_decision(
        self,
        rng: random.Random,
        found: list[Factoid],
        tools: Sequence[dict[str, Any]],
        shown: Sequence[Candidate],
        doc_ids: Sequence[str],
    ) -> ToolDecision:
        """The calls :meth:`tool_extract` answers for ``found`` (see there)."""
        names = [t["name"] for t in tools]
        schema = next((t for t in tools if t["name"] not in (PATCH_DOC, REMOVE_DOC)), None)
        patches, removes = PATCH_DOC in names, REMOVE_DOC in names
        patch_calls: list[ToolCall] = []
        remove_calls: list[ToolCall] = []
        insert_calls: list[ToolCall] = []
        used: set[int] = set()
        errors = 0
        for factoid in _latest_per_slot(found):
            event, target, stale = _ground_truth(factoid, shown)
            if rng.random() < self.cfg.update_error_rate:
                errors += 1
                wrong = [e for e in (ADD, UPDATE, NONE) if e != event and (e != UPDATE or shown)]
                event, stale = rng.choice(wrong), []
                if event == ADD:
                    target = None
                elif event == UPDATE and target is None:
                    target = rng.randrange(len(shown))
            if event == UPDATE and (target in used or not (patches or removes)):
                event = ADD  # that memory is patched already, or no tool can change it
            if event == UPDATE and target is not None:
                used.add(target)
                if patches:
                    ops = [
                        {"op": "replace", "path": f"/{_field(schema)}", "value": factoid.content}
                    ]
                    args = patch_doc_arguments(doc_ids[target], ops)
                    patch_calls.append(_call(PATCH_DOC, args, UPDATE, target, factoid))
                else:
                    args = {"json_doc_id": doc_ids[target]}
                    remove_calls.append(_call(REMOVE_DOC, args, DELETE, target))
                    event = ADD
            if event == ADD and schema is not None:
                args = {_field(schema): factoid.content}
                insert_calls.append(_call(schema["name"], args, ADD, None, factoid))
            if removes:
                for i in stale:
                    if i not in used:
                        used.add(i)
                        args = {"json_doc_id": doc_ids[i]}
                        remove_calls.append(_call(REMOVE_DOC, args, DELETE, i))
        calls = patch_calls + remove_calls + insert_calls
        if not calls and patches and shown:
            calls = [_call(PATCH_DOC, patch_doc_arguments(doc_ids[0], []), NONE, 0)]
        return ToolDecision(calls, errors)


HEURISTIC_SLOT = "heuristic:"
"""Slot prefix of a summary's facts found by :mod:`sim.heuristic` (no ground truth)."""
SUMMARY_HEURISTIC_MAX = 30
"""Most heuristic facts a summary keeps (the latest): a summary stays a summary."""


def _keep_heuristic(kept: dict[str, Fact], text: str) -> None:
    """Add the heuristic facts of a trace message without ground truth to a summary's.

    They count as facts of their own (slot ``heuristic:<text>``): they drift like
    the others, and only the latest :data:`SUMMARY_HEURISTIC_MAX` are kept.
    """
    for found in heuristic_facts(text):
        slot = HEURISTIC_SLOT + found.content
        kept.pop(slot, None)  # a repeat is the latest again
        kept[slot] = Fact(slot, 0, found.content)
    heuristic = [slot for slot in kept if slot.startswith(HEURISTIC_SLOT)]
    for slot in heuristic[: max(len(heuristic) - SUMMARY_HEURISTIC_MAX, 0)]:
        del kept[slot]


def _summary_sentence(fact: Fact) -> str:
    """How a summary states one fact: the slot's first memory phrasing.

    A fact of a real trace (its slot is not in the bank) is stated by its value:
    its memory text, or the sentence the heuristic kept.
    """
    slot = SLOT_BY_KEY.get(fact.slot)
    return slot.memories[0].format(v=fact.value) if slot is not None else fact.value


def _ground_truth(
    fact: Factoid, candidates: Sequence[Candidate]
) -> tuple[str, int | None, list[int]]:
    """The right event, the index of its candidate, and indices of stale copies to delete.

    A candidate holding the fact's slot at the same (or a newer) version means the
    fact is known: NONE. An older version is out of date: UPDATE the most similar
    one and DELETE any other outdated copies. No candidate about the slot: ADD. A
    made-up inference (no ground truth) is ADDed unless its exact text is stored.
    """
    if not fact.facts:
        same_text = [i for i, c in enumerate(candidates) if c.text == fact.content]
        return (NONE, same_text[0], []) if same_text else (ADD, None, [])
    versions = dict(fact.facts)
    current, older = [], []
    for i, candidate in enumerate(candidates):
        for slot, version in candidate.facts:
            if slot in versions:
                (current if version >= versions[slot] else older).append(i)
                break
    if current:
        return NONE, current[0], older
    if older:
        return UPDATE, older[0], older[1:]
    return ADD, None, []


def _update_request(fact: Factoid, candidates: Sequence[Candidate]) -> str:
    """The per-call part of an update request, after the fixed prompt."""
    if candidates:
        current = json.dumps(
            [{"id": str(i), "text": c.text} for i, c in enumerate(candidates)], ensure_ascii=False
        )
        memory = f"Current memory (the elements most similar to the new fact):\n```\n{current}\n```"
    else:
        memory = "Current memory is empty."
    new = json.dumps(fact.content, ensure_ascii=False)
    return f"{memory}\n\nNew fact:\n```\n{new}\n```\n"


def _answer(
    fact: Factoid,
    candidates: Sequence[Candidate],
    event: str,
    target: int | None,
    deletes: list[int],
    expected: str,
) -> tuple[UpdateDecision, str]:
    """The decision and its JSON answer in Mem0's shape."""
    events: list[MemoryEvent] = []
    elements: list[dict[str, str]] = []
    for i, candidate in enumerate(candidates):
        kind = event if i == target else (DELETE if i in deletes else NONE)
        text = fact.content if kind == UPDATE else candidate.text
        element = {"id": str(i), "text": text, "event": kind}
        if kind == UPDATE:
            element["old_memory"] = candidate.text
        elements.append(element)
        events.append(MemoryEvent(kind, candidate.id, text, element.get("old_memory", "")))
    if event == ADD:
        elements.append({"id": str(len(candidates)), "text": fact.content, "event": ADD})
        events.append(MemoryEvent(ADD, None, fact.content))
    target_id = candidates[target].id if target is not None else None
    decision = UpdateDecision(event, target_id, events, expected)
    return decision, json.dumps({"memory": elements}, ensure_ascii=False)


def _latest_per_slot(factoids: list[Factoid]) -> list[Factoid]:
    """Per slot the newest version found, each made-up text once, in the order found."""
    chosen: dict[object, Factoid] = {}
    for factoid in factoids:
        key = factoid.facts[0][0] if factoid.facts else ("text", factoid.content)
        kept = chosen.get(key)
        if kept is None or (factoid.facts and factoid.facts[0][1] >= kept.facts[0][1]):
            chosen[key] = factoid
    return list(chosen.values())


def _field(schema: dict[str, Any] | None) -> str:
    """The property a memory schema holds its memory in: its first (``content``)."""
    props = (schema or {}).get("parameters", {}).get("properties") or {}
    return next(iter(props), "content")


def _call(
    name: str,
    arguments: dict[str, Any],
    event: str,
    target: int | None = None,
    factoid: Factoid | None = None,
) -> ToolCall:
    """A :class:`ToolCall` with its arguments as the API writes them (JSON)."""
    return ToolCall(name, json.dumps(arguments, ensure_ascii=False), event, target, factoid)
