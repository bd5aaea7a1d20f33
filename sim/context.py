"""What a strategy sees of the world: a per-user context with metered services.

It is long because it is everything a strategy can touch: the metered clients, the
fault-aware store, the per-user context, and the model server for real libraries.

Strategies are plain synchronous Python. They reach the LLM, the embedder and the
store only through the :class:`TurnContext` the engine hands them, bound to one
user. Every call records a :class:`Span` (purpose, tokens, modelled latency,
USD); the engine later replays the spans through the shared SimPy resources to
turn them into simulated time and queueing.

A context's public attributes are what a strategy may use (:mod:`strategies.api`
documents them); the engine reaches the rest through the functions at the end of
this module. :class:`ModelServer` serves the run's models to a real memory library
over HTTP and meters what it asks, for adapters (``strategies/external.py``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np

from sim.config import Scenario
from sim.embed import Embedder
from sim.extraction_prompts import ExtractionPrompt
from sim.faults import RATE_LIMITED, STORE_DOWN, FaultModel
from sim.llm import Candidate, Factoid, LLMResult, MockLLM, Summary, ToolDecision, UpdateDecision
from sim.pricing import Rates
from sim.prompt_cache import NO_USE, Layout
from sim.store import Memory, VectorStore, normalized_hash
from sim.tokens import TokenCounter
from sim.types import Message

if TYPE_CHECKING:  # the server (FastAPI) loads when a library runs, not with every context
    from sim.serve import MockServer, RequestRecord

LLM, EMBEDDING, STORE = "llm", "embedding", "store"


@dataclass(slots=True)
class Span:
    """One metered call, before the engine gives it a place in simulated time."""

    purpose: str  # chat, extract, summarize, update, embed, store_query/_write/_delete
    endpoint: str  # llm | embedding | store
    tokens_in: int
    tokens_out: int
    latency_s: float
    usd: float
    error: str = ""
    items: int = 0  # factoids extracted, update events, texts embedded, memories read/written
    cached_tokens: int = 0  # input tokens read from the prompt cache
    cache_write_tokens: int = 0  # input tokens written to the prompt cache
    usd_saved: float = 0.0  # the call billed with no prompt cache, less ``usd``
    faults: tuple[str, ...] = ()  # injected fault of each attempt ("": answered); (): one try
    backoffs: tuple[float, ...] = ()  # the client's wait after each failed attempt but the last
    undo: Callable[[], None] | None = None  # reverts a store write if the replay fails before it
    record_id: int = -1  # the memory a store call read, wrote or deleted if exactly one; else -1

    @property
    def failed(self) -> bool:
        """Whether the call failed for the strategy (every attempt drew a fault)."""
        return bool(self.faults) and self.faults[-1] != ""


class CallFailed(Exception):
    """A call that still failed after the client's retries: there is no answer.

    Raised by ``ctx.llm`` and ``ctx.embedder`` when the scenario's ``[faults]``
    fail every attempt of a request (``error`` is ``rate_limited`` or
    ``timeout``). The call's attempts are metered all the same. A strategy handles
    it as production code would: retry later, drop the work, or answer without
    memory; one it does not handle ends the hook (the rest of ``after_turn`` or
    of a background job is not done, what it stored before stays).
    """

    def __init__(self, purpose: str, error: str) -> None:
        super().__init__(f"{purpose} call failed: {error}")
        self.purpose, self.error = purpose, error


STORE_STREAM = 5  # first spawn-key word of every store-latency generator


@dataclass(slots=True)
class StoreLatency:
    """Modelled latency of store calls, drawn per call from a log-normal distribution.

    A query's median is ``query_base_s + query_per_vector_s · (vectors -
    reference_vectors)`` (``vectors``: what the query scans, the user's collection
    under per-user collections, the shared collection's filtered part otherwise),
    a write's is ``write_s``; each is multiplied by ``exp(sigma · z)`` with ``z``
    drawn from the user's own store-latency stream (``SeedSequence(seed,
    spawn_key=(STORE_STREAM, user))``), so a user's draws never depend on other
    users. With both sigmas 0 (the scalar parameters) latency is the median.
    The calibration profile gives the medians at the run's number of users and
    the sigmas from its p50 and p99 (:func:`sim.calibration.store_latency`).
    """

    query_base_s: float
    query_per_vector_s: float
    write_s: float
    query_sigma: float = 0.0
    write_sigma: float = 0.0
    reference_vectors: int = 0
    seed: int = 0
    _streams: dict[int, random.Random] = field(default_factory=dict, repr=False)

    def fresh(self) -> StoreLatency:
        """The same model with no draws made yet (one per strategy's simulation)."""
        return replace(self, _streams={})

    def _z(self, user: int) -> float:
        rng = self._streams.get(user)
        if rng is None:
            ss = np.random.SeedSequence(self.seed, spawn_key=(STORE_STREAM, user))
            seed = int.from_bytes(ss.generate_state(4).tobytes(), "little")
            rng = self._streams[user] = random.Random(seed)
        return rng.gauss(0.0, 1.0)

    def median_query(self, vectors: int) -> float:
        """Median seconds of one query over ``vectors`` vectors."""
        scanned = vectors - self.reference_vectors
        return max(self.query_base_s + self.query_per_vector_s * scanned, 0.0)

    def query(self, vectors: int, user: int = 0) -> float:
        """Seconds one query of ``user`` over ``vectors`` vectors takes (one draw)."""
        median = self.median_query(vectors)
        if not self.query_sigma:
            return median
        return median * math.exp(self.query_sigma * self._z(user))

    def write(self, user: int = 0) -> float:
        """Seconds one add or delete of ``user`` takes (one draw)."""
        if not self.write_sigma:
            return self.write_s
        return self.write_s * math.exp(self.write_sigma * self._z(user))


@dataclass(slots=True)
class Services:
    """The run-wide service models every user context binds to."""

    scenario: Scenario
    tokens: TokenCounter
    llm: MockLLM
    embedder: Embedder
    store: VectorStore
    chat_rates: Rates
    embedding_rates: Rates
    store_latency: StoreLatency
    faults: FaultModel | None = None
    """The run's injected faults; ``None`` when the scenario injects none."""
    embedding_bills: dict[str, tuple[int, float, float]] = field(default_factory=dict, repr=False)
    """``(tokens, latency_s, usd)`` of embedding one text alone, by text (kept: a turn
    embeds its message, and messages repeat)."""


def llm_span(
    rates: Rates,
    purpose: str,
    tokens_in: int,
    tokens_out: int,
    latency_s: float,
    error: str,
    items: int,
    cached: int = 0,
    written: int = 0,
) -> Span:
    """The span of one chat-model call, billed with its prompt-cache reads and writes."""
    usd = rates.usd(tokens_in, tokens_out, cached, written)
    saved = rates.usd(tokens_in, tokens_out) - usd if cached or written else 0.0
    return Span(
        purpose, LLM, tokens_in, tokens_out, latency_s, usd, error, items, cached, written, saved
    )


class LLMClient:
    """``ctx.llm``: the mock model's calls for one user, metered."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: TurnContext) -> None:
        self._ctx = ctx

    def _meter(self, result: LLMResult) -> LLMResult:
        ctx = self._ctx
        span = llm_span(
            ctx._services.chat_rates,
            result.purpose,
            result.tokens_in,
            result.tokens_out,
            result.latency_s,
            result.error,
            len(result.decision.events) if result.decision else len(result.factoids),
            result.cached_tokens,
            result.cache_write_tokens,
        )
        ctx._record(span)
        if ctx._draws_faults:
            ctx._draw_faults(span)
        return result

    def chat(
        self, prompt_tokens: int, scripted: Message | None = None, layout: Layout | None = None
    ) -> LLMResult:
        """A chat completion for a prompt of ``prompt_tokens``.

        ``scripted``: the reply a replayed trace recorded, returned instead of a
        generated one (see :meth:`sim.llm.MockLLM.chat`). ``layout``: the prompt as
        the provider's cache sees it (``Prompt.cache_layout``); without one nothing
        is read from the cache.
        """
        ctx = self._ctx
        return self._meter(
            ctx._services.llm.chat(ctx.user, prompt_tokens, scripted, layout, ctx.now)
        )

    def extract(
        self, messages: Sequence[Message], prompt: str | ExtractionPrompt | None = None
    ) -> list[Factoid]:
        """Facts stated by the user in ``messages`` (one extraction call).

        ``prompt`` bills the call with another extraction prompt than the default: a
        template (:mod:`sim.extraction_prompts`) or a system prompt text.
        """
        ctx = self._ctx
        ctx._stated.append(messages)
        result = ctx._services.llm.extract(ctx.user, messages, prompt, ctx.now)
        return self._meter(result).factoids

    def update(self, fact: Factoid, candidates: Sequence[Candidate]) -> UpdateDecision:
        """Mem0's ADD/UPDATE/DELETE/NONE decision for ``fact`` (one update call)."""
        ctx = self._ctx
        result = ctx._services.llm.update(ctx.user, fact, candidates, ctx.now)
        return self._meter(result).decision  # type: ignore[return-value]

    def tool_extract(
        self,
        messages: Sequence[Message],
        system: str,
        prompt: str,
        tools: Sequence[dict[str, Any]],
        shown: Sequence[Candidate] = (),
        doc_ids: Sequence[str] = (),
    ) -> ToolDecision:
        """One extraction with tools against the memories ``shown`` (one call).

        See :meth:`sim.llm.MockLLM.tool_extract`: the request's system message, user
        message and functions set the bill; the answer is its tool calls.
        """
        ctx = self._ctx
        ctx._stated.append(messages)
        result = ctx._services.llm.tool_extract(
            ctx.user, messages, system, prompt, tools, shown, doc_ids, ctx.now
        )
        return self._meter(result).tool_decision  # type: ignore[return-value]

    def summarize(self, messages: Sequence[Message], previous: Summary | None = None) -> Summary:
        """A new running summary (one summarization call)."""
        ctx = self._ctx
        result = ctx._services.llm.summarize(ctx.user, messages, previous, ctx.now)
        return self._meter(result).summary  # type: ignore[return-value]


class EmbeddingClient:
    """``ctx.embedder``: the embedding API for one user, metered."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: TurnContext) -> None:
        self._ctx = ctx

    @property
    def model(self) -> str:
        """Name of the embedding model (stored with every memory)."""
        return self._ctx._services.embedder.model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors for ``texts`` (one embedding call, billed per input token)."""
        ctx = self._ctx
        services = ctx._services
        if len(texts) == 1:
            bill = services.embedding_bills.get(texts[0])
            if bill is None:
                bill = _embedding_bill(services, services.tokens.count(texts[0]))
                services.embedding_bills[texts[0]] = bill
        else:
            bill = _embedding_bill(services, sum(map(services.tokens.count, texts)))
        tokens, latency, usd = bill
        span = Span("embed", EMBEDDING, tokens, 0, latency, usd, "", len(texts))
        ctx._record(span)
        if ctx._draws_faults:
            ctx._draw_faults(span)
        return services.embedder.embed(texts)


def _embedding_bill(services: Services, tokens: int) -> tuple[int, float, float]:
    """``(tokens, latency_s, usd)`` of one embedding call of ``tokens`` input tokens."""
    cfg = services.scenario.embedding
    latency = cfg.latency_base_s + cfg.latency_s_per_token * tokens
    return tokens, latency, services.embedding_rates.usd(tokens, 0)


class StoreClient:
    """``ctx.store``: the vector store, restricted to one user's partition."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: TurnContext) -> None:
        self._ctx = ctx

    def _span(
        self,
        purpose: str,
        modelled_s: float,
        items: int,
        undo: Callable[[], None] | None = None,
        record_id: int = -1,
    ) -> None:
        """Meter one store call: its measured wall time if the store measures, else the model.

        ``items`` memories were read, written or deleted; ``record_id`` is the one
        memory's id when there was exactly one (-1 otherwise). ``undo`` reverts a
        write; the engine calls it when the replay of the calls fails before this one
        (a request that timed out waiting), so that nothing is stored past a failed
        call.
        """
        measured = self._ctx._services.store.last_call_s
        latency = modelled_s if measured is None else measured
        span = Span(purpose, STORE, 0, 0, latency, 0.0, "", items)
        span.undo = undo
        span.record_id = record_id
        self._ctx._record(span)

    def _scan_latency(self, vectors: int) -> float:
        return self._ctx._services.store_latency.query(vectors, self._ctx.user)

    def query(self, vector: np.ndarray) -> tuple[list[Memory], np.ndarray]:
        """The user's memories and their cosine similarity to ``vector`` (read-only list)."""
        ctx = self._ctx
        services = ctx._services
        memories, sims = services.store.query(ctx.user, vector)
        n = len(memories)
        latency = services.store_latency.query(n, ctx.user)
        self._span("store_query", latency, n, record_id=_only(memories))
        return memories, sims

    def add(self, memories: Sequence[Memory], vectors: np.ndarray) -> None:
        """Store memories with their vectors (one write)."""
        ctx = self._ctx
        store, user = ctx._services.store, ctx.user
        store.add(user, memories, vectors)
        ids = [m.id for m in memories]
        self._span(
            "store_write",
            ctx._services.store_latency.write(user),
            len(ids),
            lambda: store.delete(user, ids),
            ids[0] if len(ids) == 1 else -1,
        )

    def delete(self, ids: Sequence[int]) -> None:
        """Delete memories by id (one write)."""
        ctx = self._ctx
        store, user = ctx._services.store, ctx.user
        doomed = set(ids)
        held, vectors = store.memories_with_vectors(user)
        keep = [i for i, m in enumerate(held) if m.id in doomed]
        gone, gone_vectors = [held[i] for i in keep], vectors[keep]
        store.delete(user, ids)
        undo = (lambda: store.add(user, gone, gone_vectors)) if gone else None
        latency = ctx._services.store_latency.write(user)
        self._span("store_delete", latency, len(ids), undo, ids[0] if len(ids) == 1 else -1)

    def memories(self) -> list[Memory]:
        """All of the user's memories, oldest first (one read of the partition)."""
        ctx = self._ctx
        memories = ctx._services.store.memories(ctx.user)
        self._span(
            "store_query", self._scan_latency(len(memories)), len(memories), None, _only(memories)
        )
        return memories

    def memories_with_vectors(self) -> tuple[list[Memory], np.ndarray]:
        """All of the user's memories, oldest first, with their stored vectors (one read)."""
        ctx = self._ctx
        memories, vectors = ctx._services.store.memories_with_vectors(ctx.user)
        self._span(
            "store_query", self._scan_latency(len(memories)), len(memories), None, _only(memories)
        )
        return memories, vectors

    def count(self) -> int:
        """Number of memories the user has."""
        return self._ctx._services.store.count(self._ctx.user)

    def mirror_add(self, memories: Sequence[Memory], texts: Sequence[str]) -> None:
        """Copy memories a real library stored into the user's partition: no span, by design.

        For adapters of real memory libraries (``strategies/external.py``): the
        library's own store calls were metered as it made them (:class:`ModelServer`);
        the copy keeps the run's store, which the per-user counts, duplicates and
        recall read, in step with the library's. The vectors are the run's embedder's
        for ``texts``, unmetered for the same reason, and no outage applies: the
        library's store is its own.
        """
        ctx = self._ctx
        services = ctx._services
        services.store.add(ctx.user, memories, services.embedder.embed(texts))

    def mirror_delete(self, ids: Sequence[int]) -> None:
        """Drop from the copy memories the library deleted or replaced (no span: see above)."""
        ctx = self._ctx
        ctx._services.store.delete(ctx.user, ids)


class FaultyStoreClient(StoreClient):
    """``ctx.store`` when the scenario injects store faults (outages, a slow store).

    During an outage every call fails fast (a span with error ``store_unavailable``)
    and marks ``ctx.degraded``: queries return no memories, so the strategy answers
    without memory; writes and deletes are kept on the context and replayed
    after the window (:func:`replay_pending_writes`), so no memory is lost. Outside
    outages, latencies are scaled by the slow-store multiplier in force.
    """

    __slots__ = ()

    def _faults(self) -> FaultModel:
        return self._ctx._services.faults  # type: ignore[return-value]

    def _down(self, purpose: str) -> bool:
        """Whether the store is down now; if so, meter the failed call and mark the context."""
        ctx = self._ctx
        faults = self._faults()
        if not faults.store_down(ctx.now):
            return False
        ctx.degraded = True
        latency = faults.config.error_latency_s
        ctx._record(Span(purpose, STORE, 0, 0, latency, 0.0, STORE_DOWN, 0))
        return True

    def _span(
        self,
        purpose: str,
        modelled_s: float,
        items: int,
        undo: Callable[[], None] | None = None,
        record_id: int = -1,
    ) -> None:
        factor = self._faults().store_factor(self._ctx.now)
        super()._span(purpose, modelled_s * factor, items, undo, record_id)

    def query(self, vector: np.ndarray) -> tuple[list[Memory], np.ndarray]:
        """As :meth:`StoreClient.query`; nothing during an outage."""
        if self._down("store_query"):
            return [], np.empty(0, dtype=np.float32)
        return super().query(vector)

    def memories(self) -> list[Memory]:
        """As :meth:`StoreClient.memories`; nothing during an outage."""
        if self._down("store_query"):
            return []
        return super().memories()

    def memories_with_vectors(self) -> tuple[list[Memory], np.ndarray]:
        """As :meth:`StoreClient.memories_with_vectors`; nothing during an outage."""
        if self._down("store_query"):
            return [], np.empty((0, 0), dtype=np.float32)
        return super().memories_with_vectors()

    def add(self, memories: Sequence[Memory], vectors: np.ndarray) -> None:
        """As :meth:`StoreClient.add`; kept for later during an outage."""
        if self._down("store_write"):
            self._ctx._pending_writes.append(("add", (list(memories), vectors)))
            return
        super().add(memories, vectors)

    def delete(self, ids: Sequence[int]) -> None:
        """As :meth:`StoreClient.delete`; kept for later during an outage."""
        if self._down("store_delete"):
            self._ctx._pending_writes.append(("delete", (list(ids),)))
            return
        super().delete(ids)


def _only(memories: Sequence[Memory]) -> int:
    """The id of the one memory a call touched; -1 for none or several."""
    return memories[0].id if len(memories) == 1 else -1


def replay_pending_writes(ctx: TurnContext) -> None:
    """Job: apply, in their order, the writes the store refused during an outage.

    Writes refused again (another outage) are kept again, for the next window's end.
    """
    pending, ctx._pending_writes = ctx._pending_writes, []
    for op, args in pending:
        if op == "add":
            ctx.store.add(*args)
        else:
            ctx.store.delete(*args)


@dataclass(slots=True)
class _LibraryStoreCall:
    """One call a real library made on its own vector store."""

    purpose: str  # store_query, store_write, store_delete
    items: int  # records returned or written
    wall_s: float


class ModelServer:
    """The run's mock models served over HTTP to a real memory library, and its meter.

    For adapters of real libraries (``strategies/external.py``). Built from any
    context of the run, it starts a :class:`sim.serve.MockServer` (OpenAI's API on a
    free local port: :attr:`base_url`) on the run's own mock LLM, embedder and token
    counter; the library calls it instead of a provider. Within :meth:`metered`,
    every request the server answers and every call the library reports on its own
    vector store (:meth:`store_call`) becomes, in order, a span on the context of
    the user it was made for: the library's work is metered and replayed like any
    strategy's.
    """

    def __init__(self, ctx: TurnContext) -> None:
        from sim.serve import MockBackend, MockServer  # FastAPI loads when a library runs

        services = self._services = ctx._services
        scn = services.scenario
        self._events: list[RequestRecord | _LibraryStoreCall] = []
        self._backend = MockBackend(
            services.tokens, services.llm, services.embedder, scn.embedding, scn.seed
        )
        self._backend.sink = self._events
        self._server: MockServer = MockServer(self._backend).start()
        self.chat_model, self.embedding_model = scn.llm.model, scn.embedding.model
        """The scenario's models: the only ones the server answers for."""
        self.embedding_dims: int = services.embedder.dim
        self.start_date = date.fromisoformat(scn.pricing.price_date)
        """The simulated calendar date of the run's first day (``[pricing] price_date``)."""

    @property
    def base_url(self) -> str:
        """The OpenAI ``base_url`` of the running server (``http://host:port/v1``)."""
        return self._server.base_url

    def serves(self, ctx: TurnContext) -> bool:
        """Whether ``ctx`` belongs to the run this server serves."""
        return ctx._services is self._services

    def stop(self) -> None:
        """Stop the server."""
        self._server.stop()

    def expect(
        self, messages: Sequence[Message], known: dict[str, tuple[tuple[str, int], ...]]
    ) -> AbstractContextManager[dict[str, Factoid]]:
        """Tell the mock extractor which workload messages the block sends, and what is known.

        See :meth:`sim.serve.MockBackend.expect`: the yielded dict fills with the
        factoids answered, by memory text.
        """
        return self._backend.expect(messages, known)

    def learn_topics(self, text: str, like: str) -> None:
        """Let the latent embedder place ``text`` as it places ``like`` (if it knows ``like``)."""
        catalog = self._services.llm.catalog
        topics = catalog.topics.get(like)
        if topics:
            catalog.register(text, topics)

    def store_call(self, purpose: str, items: int, wall_s: float) -> None:
        """Report one call the library made on its own store (metered with the block's)."""
        self._events.append(_LibraryStoreCall(purpose, items, wall_s))

    @contextmanager
    def metered(self, ctx: TurnContext, vectors: int) -> Iterator[None]:
        """Meter on ``ctx``, in order, what the library asked during the block.

        ``vectors``: the user's memories in the library's store (what a query's
        modelled latency scans). What was asked outside any block is not metered.
        """
        self._events.clear()
        try:
            yield
        finally:
            for event in self._events:
                ctx._record(self._span(ctx, event, vectors))
            self._events.clear()

    def _span(
        self, ctx: TurnContext, event: RequestRecord | _LibraryStoreCall, vectors: int
    ) -> Span:
        services = self._services
        if isinstance(event, _LibraryStoreCall):
            if services.scenario.vector_store.latency == "measured":
                latency = event.wall_s
            elif event.purpose == "store_query":
                latency = services.store_latency.query(vectors, ctx.user)
            else:
                latency = services.store_latency.write(ctx.user)
            return Span(event.purpose, STORE, 0, 0, latency, 0.0, "", event.items)
        if event.purpose == "embed":
            usd = services.embedding_rates.usd(event.tokens_in, 0)
            return Span(
                "embed",
                EMBEDDING,
                event.tokens_in,
                0,
                event.latency_s,
                usd,
                event.error,
                event.items,
            )
        llm, latency, use = services.llm, event.latency_s, NO_USE
        if event.prefix is not None and not event.error:
            use = llm.prefix_use(
                ctx.user, ctx.now, event.tokens_in, event.prefix_tokens, event.prefix
            )
            latency = llm.cached_latency(
                latency, event.tokens_in, event.tokens_out, use.cached_tokens
            )
        return llm_span(
            services.chat_rates,
            event.purpose,
            event.tokens_in,
            event.tokens_out,
            latency,
            event.error,
            event.items,
            use.cached_tokens,
            use.written_tokens,
        )


class TurnContext:
    """A strategy's handle on one user: services, clock, and background jobs.

    This is all a strategy sees (:mod:`strategies.api`); every other attribute is
    the harness's (underscored; the engine reads it through the functions below
    the class).

    Attributes:
        user: The user's index; ``user_id`` is its printable id.
        now: Simulated time of the call, in seconds since the run started.
        session: Index of the user's current session.
        llm, embedder, store: Metered services bound to this user.
        tokens: The run's token counter (cached per text).
        degraded: Set when a store call failed in an outage, or when the strategy
            answered without memory because a call failed (the engine resets and
            reads it around each synchronous strategy hook).

    Under ``[faults]`` LLM and embedding requests can fail: a request whose every
    attempt fails raises :class:`CallFailed`.
    """

    __slots__ = (
        "_background",  # the hook runs on a background worker: its faults' lane
        "_defer",
        "_draws_faults",  # LLM and embedding requests can fail ([faults])
        "_next_id",
        "_pending_writes",  # store writes refused during an outage, replayed after it
        "_services",
        "_spans",  # calls metered since the engine last took them
        "_stated",  # messages sent to extraction since (the engine books their facts)
        "degraded",
        "embedder",
        "llm",
        "now",
        "session",
        "store",
        "tokens",
        "user",
        "user_id",
    )

    def __init__(
        self,
        services: Services,
        user: int,
        user_id: str,
        defer: Callable[[int, Callable[[TurnContext], None]], None],
    ) -> None:
        self._services, self.user, self.user_id = services, user, user_id
        self.tokens = services.tokens
        faults = services.faults
        store_client = FaultyStoreClient if faults and faults.config.store_faults else StoreClient
        self.llm, self.embedder, self.store = (
            LLMClient(self),
            EmbeddingClient(self),
            store_client(self),
        )
        self.degraded = self._background = False
        self._draws_faults = faults is not None and faults.config.llm_faults
        self._stated: list[Sequence[Message]] = []
        self._pending_writes: list[tuple[str, tuple]] = []
        self.now, self.session = 0.0, -1
        self._spans: list[Span] = []
        self._defer = defer
        self._next_id = 0

    def _record(self, span: Span) -> None:
        """Meter one call (the service clients do this)."""
        self._spans.append(span)

    def _draw_faults(self, span: Span) -> None:
        """Decide, as the request is made, how each of its attempts fares; raise if all fail.

        One draw per attempt from the user's lane (:meth:`FaultModel.request_fault`)
        until an attempt is answered or ``max_retries`` retries are spent, and one
        backoff per retry; the engine replays exactly these attempts. The clock of
        each attempt is the hook's, advanced by the waits before it (a 429 answers
        after ``error_latency_s``, a timeout after the client timeout).
        """
        faults = self._services.faults
        assert faults is not None
        cfg, user, background = faults.config, self.user, self._background
        scenario = self._services.scenario
        limits = scenario.embedding.limits if span.endpoint == EMBEDDING else scenario.limits
        timeout_s = limits.timeout_s
        codes: list[str] = []
        waits: list[float] = []
        t = self.now
        for attempt in range(cfg.max_retries + 1):
            code = faults.request_fault(user, background, t)
            codes.append(code)
            if not code:
                break
            if attempt < cfg.max_retries:
                wait = faults.backoff_s(user, background, attempt)
                waits.append(wait)
                t += wait + (cfg.error_latency_s if code == RATE_LIMITED else timeout_s)
        span.faults, span.backoffs = tuple(codes), tuple(waits)
        if codes[-1]:
            raise CallFailed(span.purpose, codes[-1])

    def defer(self, job: Callable[[TurnContext], None]) -> None:
        """Run ``job(ctx)`` later on a background worker, competing for the same limits."""
        self._defer(self.user, job)

    def new_memory(self, factoid: Factoid) -> Memory:
        """A :class:`Memory` record for an extracted factoid, stamped now."""
        self._next_id += 1
        return Memory(
            id=self._next_id,
            text=factoid.content,
            line_tokens=self.tokens.count("- " + factoid.content + "\n"),
            importance=factoid.importance,
            category=factoid.category,
            created_at=self.now,
            embedding_model=self._services.embedder.model,
            content_hash=normalized_hash(factoid.content),
            facts=factoid.facts,
            owner=self.user,
        )


# -- the harness's side of a context: the engine's, never a strategy's ----------------------
def begin_hook(ctx: TurnContext, background: bool) -> None:
    """Before a strategy hook or job runs on ``ctx``: clear ``degraded``, set the fault lane.

    Workers share a user's context, so both are set afresh around every hook.
    """
    ctx.degraded, ctx._background = False, background


def take_spans(ctx: TurnContext) -> list[Span]:
    """The spans recorded since the last call, and a fresh list for the next ones."""
    spans, ctx._spans = ctx._spans, []
    return spans


def take_stated(ctx: TurnContext) -> list[Sequence[Message]] | None:
    """The messages sent to extraction since the last call (``None``: none), and a fresh list."""
    stated = ctx._stated
    if not stated:
        return None
    ctx._stated = []
    return stated


def has_calls(ctx: TurnContext) -> bool:
    """Whether calls were metered, or messages sent to extraction, since they were last taken."""
    return bool(ctx._spans or ctx._stated)


def record_again(ctx: TurnContext, spans: list[Span], stated: list[Sequence[Message]]) -> None:
    """Put spans made elsewhere (a tick's) on ``ctx``, as if its hook had made them."""
    ctx._spans.extend(spans)
    ctx._stated.extend(stated)


def has_pending_writes(ctx: TurnContext) -> bool:
    """Whether store writes refused during an outage wait for :func:`replay_pending_writes`."""
    return bool(ctx._pending_writes)
