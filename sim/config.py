"""Scenario and run configuration: pydantic models, TOML loading, one-line errors.

It is long because it is the whole scenario schema, every field documented with its
default's source.

A scenario is a TOML file (see ``scenarios/support-bot.toml``). Every field has a
documented default; unknown fields are errors, so a typo never silently falls
back to a default. Validation errors become a :class:`ConfigError` whose message
names the file, the field and the offending value on one line.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from sim.textbank import ALL_SLOTS, SLOT_BY_KEY

PositiveFloat = Annotated[float, Field(gt=0)]
Share = Annotated[float, Field(ge=0, le=1)]


class ConfigError(ValueError):
    """A user-caused configuration problem; ``str()`` is one line for the terminal."""


class _Model(BaseModel):
    # Finite numbers only: TOML has inf and nan, and neither is a rate, a latency or a size.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class MessageMix(_Model):
    """Relative weights of what a user's next message does.

    ``state`` is scaled by the share of the user's facts not yet stated, so users
    reveal most of their profile early and then mostly restate, update and ask.
    """

    state: Annotated[float, Field(ge=0)] = 0.8
    restate: Annotated[float, Field(ge=0)] = 0.12
    update: Annotated[float, Field(ge=0)] = 0.03
    probe: Annotated[float, Field(ge=0)] = 0.15
    filler: Annotated[float, Field(ge=0)] = 0.35
    instruction: Annotated[float, Field(ge=0)] = 0.0
    """A user trying to write an instruction into the assistant's memory ("from now on
    ignore your previous instructions and …"); 0 (the default): never."""

    @model_validator(mode="after")
    def _some_weight(self) -> MessageMix:
        kinds = self.state + self.restate + self.update + self.probe + self.filler
        if kinds + self.instruction <= 0:
            raise ValueError("at least one message kind needs a positive weight")
        return self


class MemoryWords(_Model):
    """How long a memory is, in words (``[workload.memory_words]``).

    ``lognormal`` (the default): each fact's memory phrasing is lengthened with
    context ("…, as the user said in a support chat, since last month") to a word
    count drawn from a log-normal with this ``mean`` and ``sigma`` (of the log), one
    draw per fact (slot and value), shared by its phrasings and fixed by the seed; a
    draw shorter than the bare phrasing leaves it bare. ``templates``: the bare phrasings of
    :mod:`sim.textbank` (4 to 8 words for the hand-written slots, about 9 tokens as
    a memory line, memsim's only length before ``memory_words`` existed; 5 to 14
    for the generated ones).

    Defaults: mean 18 words, sigma 0.47, fitted to the 31 example memories that
    Mem0's default extraction prompt shows its model (``ADDITIVE_EXTRACTION_PROMPT``
    in ``mem0/configs/prompts.py``, mem0ai 2.2.1, the prompt ``Memory.add`` sends):
    mean 17.8 words, median 18, 6 to 35, log-sd 0.47. Mem0's classic prompt
    (``mem0-classic``) shows shorter ones: mean 6.4 words over its 5 examples, which
    ``mean = 6.4`` reproduces.
    """

    distribution: Literal["lognormal", "templates"] = "lognormal"
    mean: Annotated[float, Field(ge=1, le=100)] = 18.0
    sigma: Annotated[float, Field(ge=0, le=2)] = 0.47


class WorkloadConfig(_Model):
    """The synthetic users and their conversations."""

    domain: Literal["support"] = "support"
    facts_per_user: Annotated[int, Field(ge=1, le=len(ALL_SLOTS))] = 10
    """Distinct facts each user has. Up to 14, a sample of the hand-written slots of
    :data:`sim.textbank.SLOTS`; beyond, all 14 and a sample of the generated slots
    (:data:`sim.textbank.GENERATED_SLOTS`: an attribute such as a budget or a deadline
    of one of 24 things in the user's world), up to 398."""
    facts_per_statement_max: Annotated[int, Field(ge=1, le=5)] = 3
    sessions_per_user_per_day: PositiveFloat = 0.35
    session_gap_shape: PositiveFloat = 4.0
    """Gamma shape of the gaps between one user's sessions (1 = Poisson arrivals;
    larger = users return on a steadier cadence)."""
    activity_sigma: Annotated[float, Field(ge=0, le=3)] = 0.0
    """Spread of visit rates across users: each user's ``sessions_per_user_per_day``
    is multiplied by a log-normal factor with mean 1 and this sigma (support traffic
    is heavy-tailed: a few users write far more often than the median one); 0 (the
    default): every user has the same mean rate."""
    turns_per_session_mean: Annotated[float, Field(ge=1)] = 6.0
    think_time_s_mean: PositiveFloat = 25.0
    intro_probability: Share = 0.7
    """Chance that a session opens with the user (re)introducing themselves."""
    question_probability: Share = 0.5
    """Chance that a statement also carries a support question."""
    diurnal_amplitude: Annotated[float, Field(ge=0, lt=1)] = 0.6
    peak_hour: Annotated[float, Field(ge=0, lt=24)] = 14.0
    mix: MessageMix = MessageMix()
    focus_slot: str | None = None
    """A fact every user has (a slot key of :data:`sim.textbank.SLOTS`, e.g.
    ``"company"``) that ``focus_share`` of restatements repeat, alone and in one of
    many phrasings; ``None`` (the default): restatements pick facts at random."""
    focus_share: Share = 0.0
    """Share of restatements that restate ``focus_slot`` (with a ``focus_slot`` only)."""
    max_sessions_per_user: Annotated[int, Field(ge=1)] | None = None
    """Each user's visits after this many never happen (``1``: ask once and leave);
    ``None`` (the default): users keep returning until the last day."""
    topic_persistence: Share = 0.75
    """Chance that a message which can be about the session's current topic (a fact
    slot: a restatement, an update, a probe or a question) stays on it; a new fact
    opens a new topic, a plain "thanks" keeps it. 0: every message picks its fact
    at random (memsim's workload before topics, message for message).

    Default 0.75: a topic lasts 4 user messages on average (1 / (1 - 0.75)), as a
    domain does in MultiWOZ (Budzianowski et al., EMNLP 2018, arXiv:1810.00278):
    its 3,406 single-domain dialogues average 8.93 turns (4.5 user messages on one
    domain), its 7,032 multi-domain ones 15.39 turns over 2 to 5 domains (at most
    3.8 user messages a domain). See README, "Topics", for LoCoMo's measured runs."""
    memory_words: MemoryWords = MemoryWords()
    """How long memories of the user's facts are (see :class:`MemoryWords`)."""

    @field_validator("focus_slot")
    @classmethod
    def _known_focus_slot(cls, slot: str | None) -> str | None:
        if slot is not None and slot not in SLOT_BY_KEY:
            raise ValueError(f"not a slot (slots: {', '.join(SLOT_BY_KEY)})")
        return slot


class CacheConfig(_Model):
    """Prompt caching (``[llm.cache]``): which provider's rule bills and times the calls.

    ``auto`` picks the rule of the chat model's provider (``openai``, ``anthropic``,
    ``google``/``gemini``; any other provider: ``none``). ``none`` bills every
    input token at the full price, as a provider without a prompt cache would. The
    rules, their defaults and their sources are in :mod:`sim.prompt_cache` and
    ``docs/caching.md``.
    """

    mode: Literal["auto", "openai", "anthropic", "gemini", "none"] = "auto"
    ttl_s: PositiveFloat | None = None
    """Seconds an unused cache entry lives; ``None``: the provider's default (OpenAI
    in-memory 300, Anthropic 300, Gemini 300; extended retention: OpenAI 86,400,
    Anthropic 3,600)."""
    retention: Literal["default", "extended"] = "default"
    """``extended``: OpenAI's ``prompt_cache_retention = "24h"`` (same price), or
    Anthropic's ``"ttl": "1h"`` breakpoints (writes billed at the 1-hour write price).
    Gemini's implicit cache has no such option."""
    min_tokens: Annotated[int, Field(ge=1)] | None = None
    """Shortest cacheable prefix; ``None``: the provider's figure for the model."""
    breakpoints: Annotated[
        list[Literal["system", "memories", "history", "user"]], Field(max_length=4)
    ] = [
        "system",
        "memories",
        "user",
    ]
    """Anthropic only: the prompt parts a ``cache_control`` breakpoint closes (at most
    4, as the API allows): by default the system prompt, the memory block and the
    last message, as Anthropic's guide places them for a multi-turn conversation."""
    share_across_users: bool = True
    """Requests of different users that start with the same system prompt share its
    cache entry (one organization's API key serves them all)."""

    @field_validator("breakpoints")
    @classmethod
    def _distinct_parts(cls, parts: list[str]) -> list[str]:
        if len(set(parts)) != len(parts):
            raise ValueError("a part is listed twice")
        return parts


class LLMConfig(_Model):
    """The mock chat model: pricing key, context window, latency and noise.

    Latency follows the model's profile (:mod:`sim.latency`, sources in
    ``docs/latency.md``): profiles for gpt-4o-mini, gpt-4.1-mini, gpt-5-mini,
    claude-haiku-4-5 and gemini-2.5-flash, fitted to published measurements of
    time to first token against prompt size, decode rate and spread; another model
    uses gpt-4o-mini's. Each latency field left unset here comes from the profile;
    one set here overrides it.
    """

    model: str = "gpt-4o-mini"
    provider: str = "openai"
    context_window: Annotated[int, Field(ge=256)] = 128_000
    max_output_tokens: Annotated[int, Field(ge=1)] = 1_024
    """``max_tokens`` sent with each chat request; counts against the window."""
    ttft_base_s: Annotated[float, Field(ge=0)] | None = None
    """Median time to first token of a short prompt; unset: the model's profile."""
    prefill_s_per_token: Annotated[float, Field(ge=0)] | None = None
    """Seconds added to the time to first token per uncached input token."""
    decode_tokens_per_s: PositiveFloat | None = None
    jitter_sigma: Annotated[float, Field(ge=0)] | None = None
    """Log-normal spread of a short call's service time."""
    jitter_sigma_per_1k_tokens: Annotated[float, Field(ge=0)] | None = None
    """Added to the spread per 1,000 uncached input tokens."""
    jitter_sigma_load: Annotated[float, Field(ge=0)] | None = None
    """Added to the spread at full load (all concurrency slots busy), pro rata below."""
    jitter_min: PositiveFloat | None = None
    """Lower clamp of the jitter factor; unset: no clamp."""
    jitter_max: PositiveFloat | None = None
    """Upper clamp of the jitter factor; unset: no clamp."""
    profile: str | None = None
    """An LLM profile file (JSON, written by ``memsim fit``; relative to the scenario
    file): its latency figures for this model override the built-in profile's, and
    the latency fields set here override the file's (:func:`sim.latency.resolve`)."""
    reply_tokens_mean: PositiveFloat = 140.0
    reply_tokens_sigma: Annotated[float, Field(ge=0)] = 0.45
    extract_miss_rate: Share = 0.10
    extract_hallucination_rate: Share = 0.05
    extract_reword_rate: Share = 0.30
    extract_derived_facts_min: Annotated[int, Field(ge=0, le=50)] = 0
    extract_derived_facts_max: Annotated[int, Field(ge=0, le=50)] = 0
    """Each extraction call also returns between ``extract_derived_facts_min`` and
    ``..._max`` (uniform) facts the model derived rather than read (``User is probably
    a small business owner.``), as an over-eager extractor does; 0 and 0 (the
    default) turns this off. ``leak-incident`` uses it for its 5-10 facts a turn."""
    extract_instruction_rate: Share = 0.8
    """Share of a user's instruction messages that extraction returns as a memory
    (category ``instruction``), as extractors told to keep user preferences do."""
    summarize_drift: Share = 0.05
    update_error_rate: Share = 0.05
    """Share of Mem0-style update calls that answer a wrong ADD/UPDATE/DELETE/NONE event."""
    cache: CacheConfig = CacheConfig()
    """Prompt caching (``[llm.cache]``, see :class:`CacheConfig`)."""

    @model_validator(mode="after")
    def _jitter_band(self) -> LLMConfig:
        low = 1.0 if self.jitter_min is None else self.jitter_min
        high = 1.0 if self.jitter_max is None else self.jitter_max
        if low > 1 or high < 1:
            raise ValueError(f"jitter band [{self.jitter_min}, {self.jitter_max}] must contain 1")
        return self

    @model_validator(mode="after")
    def _derived_range(self) -> LLMConfig:
        if self.extract_derived_facts_min > self.extract_derived_facts_max:
            raise ValueError(
                f"extract_derived_facts_min {self.extract_derived_facts_min} is above "
                f"extract_derived_facts_max {self.extract_derived_facts_max}"
            )
        return self


class EndpointLimits(_Model):
    """Limits of one remote API: concurrent requests, requests and tokens per minute.

    The chat defaults are OpenAI's usage tier 3 for gpt-4o-mini (5,000 RPM,
    4,000,000 TPM); the timeout is the client's.
    """

    concurrency: Annotated[int, Field(ge=1)] = 200
    rpm: PositiveFloat = 5_000
    tpm: PositiveFloat = 4_000_000
    timeout_s: PositiveFloat = 60.0


class EmbeddingConfig(_Model):
    """The embedding API: its price (not in genai-prices), latency and limits.

    The default price is OpenAI's list price for text-embedding-3-small,
    $0.02 per 1M tokens.
    """

    model: str = "text-embedding-3-small"
    usd_per_million_tokens: Annotated[float, Field(ge=0)] = 0.02
    latency_base_s: Annotated[float, Field(ge=0)] = 0.06
    latency_s_per_token: Annotated[float, Field(ge=0)] = 2e-6
    dim: Annotated[int, Field(ge=8, le=4096)] = 384
    limits: EndpointLimits = EndpointLimits(concurrency=100, rpm=5_000, tpm=5_000_000, timeout_s=30)
    switch_at_day: Annotated[float, Field(ge=0)] | None = None
    """Simulated day at which the embedding model changes (``None``: never). Memories
    embedded before keep their old vectors unless ``reembed_on_switch``."""
    switch_model: str = "latent-v2"
    """Name of the model switched to (the latent embedder draws a new space)."""
    reembed_on_switch: bool = False
    """At the switch, re-embed every user's memories in the background (billed)."""
    # The four similarities below are used only with ``calibration = "none"``.
    paraphrase_similarity: Annotated[float, Field(gt=0, lt=1)] = 0.92
    """Mean cosine between two phrasings of one memory (LatentEmbedder)."""
    statement_similarity: Annotated[float, Field(gt=0, lt=1)] = 0.6
    """Mean cosine between a user's sentence stating a fact and a memory of it."""
    same_slot_similarity: Annotated[float, Field(gt=0, lt=1)] = 0.55
    """Share of a fact's direction that it shares with other values of its slot."""
    probe_similarity: Annotated[float, Field(gt=0, lt=1)] = 0.5
    """Share of a question's direction that points at the slot it asks about."""


class VectorStoreConfig(_Model):
    """Settings of the vector store chosen by the scenario's ``store`` key.

    ``layout`` (ChromaDB only): one collection per user, or one shared collection
    filtered by ``user_id``. ``latency``: ``modelled`` takes each call's latency
    from the calibration profile (the layout's median at the scenario's number
    of users), or from the three figures below with ``calibration = "none"``;
    ``measured`` uses the wall time of each real call (ChromaDB only; results
    then vary from run to run).
    """

    layout: Literal["per-user", "shared"] = "per-user"
    latency: Literal["modelled", "measured"] = "modelled"
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    path: str = ""
    """Folder of the embedded ChromaDB; empty = ``chroma/`` in the output folder."""
    query_latency_base_s: Annotated[float, Field(ge=0)] = 0.002
    query_latency_s_per_vector: Annotated[float, Field(ge=0)] = 2e-7
    write_latency_s: Annotated[float, Field(ge=0)] = 0.003
    concurrency: Annotated[int, Field(ge=1)] = 64


class PricingConfig(_Model):
    """Where dollars come from: genai-prices at a fixed date, or explicit overrides."""

    price_date: str = "2026-11-01"
    input_usd_per_million_tokens: Annotated[float, Field(ge=0)] | None = None
    output_usd_per_million_tokens: Annotated[float, Field(ge=0)] | None = None


class FaultWindow(_Model):
    """A stretch of simulated time: from ``start_day`` (fractional days) for ``hours``."""

    start_day: Annotated[float, Field(ge=0)]
    hours: PositiveFloat

    def bounds_s(self) -> tuple[float, float]:
        """``(start, end)`` in simulated seconds; the end is excluded."""
        start = self.start_day * 86_400.0
        return start, start + self.hours * 3_600.0


class FaultsConfig(_Model):
    """Faults injected into the provider and the store; the defaults inject none.

    LLM faults hit every request to the chat model (chat, extract, summarize,
    update) and to the embedding model, independently of the simulated RPM/TPM
    buckets. A rate-limited request (429) is answered after ``error_latency_s``
    and is not billed; a timed-out request hangs until the endpoint's client
    timeout and, having been sent, is billed. Either is retried up to
    ``max_retries`` times after an exponential backoff with full jitter.
    """

    llm_error_rate: Share = 0.0
    """Share of LLM and embedding requests answered 429 (rate limited)."""
    llm_timeout_rate: Share = 0.0
    """Share of LLM and embedding requests that hang until the client timeout."""
    burst_every_s: PositiveFloat | None = None
    """Period of 429 bursts (``None``: no bursts). Burst windows are
    ``[k * burst_every_s, k * burst_every_s + burst_duration_s)`` for k = 0, 1, …"""
    burst_duration_s: Annotated[float, Field(ge=0)] = 0.0
    """Length of each burst window, shorter than ``burst_every_s``."""
    burst_error_rate: Share = 0.0
    """Share of requests answered 429 inside a burst window (instead of ``llm_error_rate``)."""
    max_retries: Annotated[int, Field(ge=0, le=20)] = 3
    """Retries after a 429 or a timeout; the request then fails and so does its turn."""
    backoff_base_s: PositiveFloat = 0.5
    """Cap of the first backoff; the cap doubles with each retry."""
    backoff_max_s: PositiveFloat = 20.0
    """Largest backoff cap."""
    error_latency_s: Annotated[float, Field(ge=0)] = 0.005
    """How long a 429 answer takes (and a store call that fails during an outage)."""
    store_outages: list[FaultWindow] = []
    """Windows in which every vector-store call fails fast: queries return nothing,
    and writes wait until the window ends (they are then replayed in the background)."""
    store_latency_multiplier: Annotated[float, Field(ge=1)] = 1.0
    """Factor applied to every store call's latency (a slow store)."""
    store_slow_windows: list[FaultWindow] = []
    """Where ``store_latency_multiplier`` applies; empty: the whole run."""

    @model_validator(mode="after")
    def _burst_fits(self) -> FaultsConfig:
        if self.burst_every_s is not None and self.burst_duration_s >= self.burst_every_s:
            raise ValueError(
                f"burst_duration_s {self.burst_duration_s} must be shorter than "
                f"burst_every_s {self.burst_every_s}"
            )
        if self.backoff_base_s > self.backoff_max_s:
            raise ValueError(
                f"backoff_base_s {self.backoff_base_s} is above backoff_max_s {self.backoff_max_s}"
            )
        return self

    @property
    def llm_faults(self) -> bool:
        """Whether any LLM or embedding request can fail."""
        bursts = self.burst_every_s is not None and self.burst_error_rate > 0
        return self.llm_error_rate > 0 or self.llm_timeout_rate > 0 or bursts

    @property
    def store_faults(self) -> bool:
        """Whether any store call can fail or slow down."""
        return bool(self.store_outages) or self.store_latency_multiplier != 1.0

    @property
    def active(self) -> bool:
        """Whether this section injects anything at all."""
        return self.llm_faults or self.store_faults


class TraceConfig(_Model):
    """A real conversation trace replayed instead of the synthetic workload (``[trace]``).

    With a trace, users, sessions, messages and times come from the file (see
    :mod:`sim.traces`): the scenario's ``users`` and ``days`` are replaced by the
    trace's number of users and the days it spans, and ``[workload]`` is not used
    except ``think_time_s_mean`` (the gap between LoCoMo turns, which have no times).
    """

    format: Literal["locomo", "jsonl", "otel"]
    """``locomo``: the LoCoMo benchmark file (``locomo10.json``); ``jsonl``: one chat
    line per JSON object (``user_id``, ``session_id``, ``timestamp``, ``role``, ``content``);
    ``otel``: an OTLP/JSON trace export whose GenAI spans carry ``gen_ai.input.messages``
    (``memsim run --otel FILE --otel-content`` writes one)."""
    path: Annotated[str, Field(min_length=1)]
    """The trace file. In a scenario file a relative path is read from the scenario
    file's folder; on the command line (``--trace``) from the current folder."""
    max_users: Annotated[int, Field(ge=1)] | None = None
    """Replay only the trace's first ``max_users`` users (``None``: all of them)."""
    max_sessions: Annotated[int, Field(ge=1)] | None = None
    """Replay only each user's first ``max_sessions`` sessions (``None``: all). LoCoMo
    questions citing a turn of a later session are skipped; the final session of
    questions is asked after the last session replayed."""
    categories: Annotated[list[Literal[1, 2, 3, 4, 5]], Field(min_length=1)] = [1, 2, 3, 4]
    """LoCoMo only: the QA categories whose questions become probes (5, adversarial,
    is off by default: its questions have no answer in the conversation)."""
    question_context: Literal["fresh", "session"] = "fresh"
    """LoCoMo only: how the questions are asked after the conversation. ``fresh`` (the
    default, the protocol of published LoCoMo evaluations: Maharana et al. 2024, Mem0's
    paper): each question in a context of its own, one session each, answered from
    the strategy's memory (or the whole conversation, for full-history strategies);
    the questions and answers are not remembered. ``session``: every question in one
    final session, one after another, each remembered as any message is, so a later
    question's prompt carries the earlier ones."""
    user_attribute: Annotated[str, Field(min_length=1)] = "user.id"
    """OTel only: the span (or resource) attribute naming the user a span's messages
    belong to (the semantic conventions' ``user.id``)."""
    session_attribute: Annotated[str, Field(min_length=1)] = "session.id"
    """OTel only: the span (or resource) attribute naming the conversation's session
    (the semantic conventions' ``session.id``; ``gen_ai.conversation.id`` works too)."""


MAX_TURNS = 1_000_000_000
"""The most user turns per strategy a synthetic run may plan. docs/benchmarks.md
measures about 930 bytes of records per turn and about 12,600 turns a second in
one process: a billion turns is about 0.9 TB and a day of simulation, far past
what one machine holds; `memsim project` scales large populations instead."""
BYTES_PER_TURN = 930
"""Records a simulated turn keeps until the run is written (docs/benchmarks.md)."""


def estimated_turns(scenario: Scenario) -> float:
    """Expected user turns per strategy of a synthetic scenario."""
    w = scenario.workload
    return scenario.users * scenario.days * w.sessions_per_user_per_day * w.turns_per_session_mean


class Scenario(_Model):
    """A complete scenario: who talks, how much, to which model, with which strategies."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")]
    description: str = ""
    seed: Annotated[int, Field(ge=0)] = 42
    users: Annotated[int, Field(ge=1)] = 100
    days: Annotated[int, Field(ge=1, le=3650)] = 30
    strategies: Annotated[list[str], Field(min_length=1)] = [
        "naive-append",
        "per-turn-extract",
        "batched-dedup-budget",
    ]
    system_prompt: str = ""
    """Chat system prompt; empty means the domain's default prompt."""
    background_workers: Annotated[int, Field(ge=1)] = 8
    shard_users: Annotated[int, Field(ge=1)] = 2_500
    """Users per shard. A run splits its users into ``ceil(users / shard_users)``
    shards of equal size that are simulated independently, each holding its
    pro-rata share of the rate limits (see :mod:`sim.shards`). The split depends
    on the scenario only, never on the number of worker processes."""
    calibration: str = "default"
    """Calibration profile for the latent embedder and the modelled store latency:
    ``default`` (shipped, measured on all-MiniLM-L6-v2 and ChromaDB), a path to one
    written by ``memsim calibrate``, or ``none`` to use the scalar parameters of
    ``[embedding]`` and ``[vector_store]`` instead."""
    embedder: Literal["latent", "minilm"] = "latent"
    """``latent``: the fast calibrated mock; ``minilm``: all-MiniLM-L6-v2 (real, CPU).

    A scenario with a ``[trace]`` defaults to ``minilm``: the latent embedder knows
    the topics of generated texts only, and gives every real text a random
    direction of its own, so retrieval on a trace would be chance."""
    store: Literal["numpy", "chroma", "chroma-http"] = "numpy"
    """``numpy``: exact, in memory; ``chroma``: embedded ChromaDB; ``chroma-http``: a
    ChromaDB server at ``vector_store.host:port``."""
    workload: WorkloadConfig = WorkloadConfig()
    llm: LLMConfig = LLMConfig()
    limits: EndpointLimits = EndpointLimits()
    embedding: EmbeddingConfig = EmbeddingConfig()
    vector_store: VectorStoreConfig = VectorStoreConfig()
    pricing: PricingConfig = PricingConfig()
    faults: FaultsConfig = FaultsConfig()
    """Injected provider and store faults (see the README, "Fault injection")."""
    strategy: dict[str, dict[str, Any]] = {}
    """Per-strategy overrides, e.g. ``[strategy.batched-dedup-budget] budget_tokens = 800``."""
    trace: TraceConfig | None = None
    """A real trace to replay instead of the synthetic workload (``None``: synthetic)."""

    @model_validator(mode="before")
    @classmethod
    def _trace_embedder(cls, data: Any) -> Any:
        """A trace without an ``embedder`` setting gets the real one (see ``embedder``)."""
        if isinstance(data, dict) and data.get("trace") is not None and "embedder" not in data:
            return {**data, "embedder": "minilm"}
        return data

    @model_validator(mode="after")
    def _runnable_size(self) -> Scenario:
        """Refuse a synthetic run too large to simulate, with its estimated size."""
        if self.trace is not None:
            return self
        turns = estimated_turns(self)
        if turns > MAX_TURNS:
            gigabytes = turns * len(self.strategies) * BYTES_PER_TURN / 1e9
            raise ValueError(
                f"field 'users' = {self.users}: about {turns:,.0f} user turns per strategy "
                f"({self.users:,} users × "
                f"{self.days} days × {self.workload.sessions_per_user_per_day:g} sessions "
                f"a day × {self.workload.turns_per_session_mean:g} turns), about "
                f"{gigabytes:,.0f} GB of records: more than the {MAX_TURNS:,} turns "
                "memsim simulates in one run (use `memsim project` to scale up)"
            )
        return self

    def with_overrides(self, **changes: Any) -> Scenario:
        """A copy with top-level fields replaced (``None`` values are ignored), re-validated."""
        data = self.model_dump()
        data.update({k: v for k, v in changes.items() if v is not None})
        return Scenario.model_validate(data)


def format_validation_error(source: str, err: ValidationError) -> str:
    """One line naming the file, the first bad field and its value.

    An unknown key is reported before anything else (a misspelled key also leaves
    the field it meant missing); an unknown key holding a table is named as a
    table; a missing field is said to be required, without the table around it.
    """
    errors = err.errors()
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    field = ".".join(str(p) for p in first["loc"]) or "(top level)"
    value = first.get("input")
    if first["type"] == "extra_forbidden":
        if isinstance(value, dict):
            return f"{source}: unknown table [{field}]"
        return f"{source}: unknown field '{field}'"
    if first["type"] == "missing":
        return f"{source}: field '{field}' is required"
    if not first["loc"] and first["type"] == "value_error":  # a check of the whole scenario
        return f"{source}: {first['msg'].removeprefix('Value error, ')}"
    shown = json.dumps(value, default=str, ensure_ascii=False)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{source}: field '{field}' = {shown}: {first['msg']}"


def parse_scenario(data: dict[str, Any], source: str) -> Scenario:
    """Validate a scenario mapping; raise :class:`ConfigError` with a one-line message."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(source, err)) from None


def read_text(path: Path) -> str:
    """A UTF-8 text file's content; a missing or unreadable file is a :class:`ConfigError`."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file, turning I/O and syntax problems into :class:`ConfigError`."""
    text = read_text(path)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from None


def load_scenario_file(path: Path) -> Scenario:
    """Load and validate one scenario file."""
    return parse_scenario(read_toml(path), str(path))


def canonical_json(data: Any) -> str:
    """Stable JSON text used for hashing and for the resolved-config file."""
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def config_sha256(resolved: dict[str, Any]) -> str:
    """SHA-256 of a resolved configuration's canonical JSON."""
    return hashlib.sha256(canonical_json(resolved).encode()).hexdigest()
