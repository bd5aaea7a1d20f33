"""External strategies: a real memory library, in-process, against ``memsim serve-mock``.

It is long because it adapts a real library (Mem0 OSS) call by call and maps its
memories back to ground truth.

:class:`ExternalStrategy` is the generic adapter. For each run it starts a
:class:`~sim.serve.MockServer` in-process (a free port on 127.0.0.1) on the run's own
mock LLM, embedder and token counter, opens the library against it (its LLM and
embedder are the server, its vector store a real embedded ChromaDB in a temporary
folder), and then, per turn:

* ``build_prompt`` asks the library for the user's memories about the message
  (``search``) and injects them, in the library's order, while they fit
  ``budget_tokens`` (like ``mem0-like``; the library itself has no budget);
* ``after_turn`` hands the exchange to the library (``add``), in the foreground
  (after the reply, before the user's next message: Mem0's ``add`` is synchronous)
  or, with ``background = true``, on a background worker.

**Metering.** Every HTTP request the server recorded during a library call becomes a
span — an LLM call priced at the scenario's chat rates (purpose from the server's
classification: extract, update, summarize, chat) or an embedding call at the
embedding rate — and every call the library makes on its vector store becomes a
store span (``store_query``, ``store_write``, ``store_delete``; latency modelled
from the scenario, or the call's wall time with ``[vector_store] latency =
"measured"``), in the order they happened. The engine then replays them like any
strategy's, so summary.json, the reports and the rate limits account for them.

**Ground truth and the store.** Before each ``add`` the adapter tells the server
which workload messages it is about to send (with their hidden facts) and which
memories the user already has, so the mock extractor answers with the facts'
canonical memory texts and the memories the library stores map back to facts:
recall is measured for the real library too. The library's store stays the
source of truth; the adapter mirrors it, after every ``add``, into the run's
store (``ctx.store.mirror_add`` and ``mirror_delete``: no span by design, the
real store calls were metered), which is what the per-user memory counts,
duplicates and "never retrieved" figures read.

**Runs and processes.** All state belongs to one strategy instance and one run
(it starts again when the run's services change); a pickled or copied instance
carries its settings only. Each shard of a sharded run therefore starts its own
server and store, in whichever process runs it, and results do not depend on
the number of workers. Nothing is downloaded: the server is local, ChromaDB's and
the library's telemetry are off.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import sys
import tempfile
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import Field

from strategies.api import (
    SECONDS_PER_DAY,
    ConfigError,
    Factoid,
    Memory,
    MemoryLayoutConfig,
    Message,
    ModelServer,
    Prompt,
    SessionHistories,
    Strategy,
    TurnContext,
    fill_budget,
    memory_room,
    register_external,
)


class ExternalConfig(MemoryLayoutConfig):
    """Retrieval, budget and where ingestion runs (sources in the module docstring)."""

    search_limit: Annotated[int, Field(ge=1)] = 100
    budget_tokens: Annotated[int, Field(ge=0)] = 1_500
    background: bool = False


class MeteredVectorStore:
    """A library's vector store, with every call reported to the run's :class:`ModelServer`.

    Wraps the object the library holds (attribute access passes through), so the
    library runs unchanged; only the methods that reach the store are timed.
    """

    _CALLS: ClassVar[dict[str, str]] = {
        "search": "store_query",
        "search_batch": "store_query",
        "keyword_search": "store_query",
        "list": "store_query",
        "get": "store_query",
        "insert": "store_write",
        "update": "store_write",
        "delete": "store_delete",
    }

    def __init__(self, inner: Any, models: ModelServer) -> None:
        self._inner, self._models = inner, models

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        purpose = self._CALLS.get(name)
        if purpose is None or not callable(attr):
            return attr

        def metered(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            result = attr(*args, **kwargs)
            wall = time.perf_counter() - start
            if result is None and name == "keyword_search":
                return None  # not supported by this store: no call was made
            self._models.store_call(purpose, _items(name, result, kwargs), wall)
            return result

        return metered


def _items(name: str, result: Any, kwargs: dict) -> int:
    """Records a store call returned (queries) or wrote (writes)."""
    if name == "insert":
        return len(kwargs.get("ids") or kwargs.get("vectors") or [])
    if name in ("update", "delete", "get", "put"):
        return 1
    if name == "list" and result and isinstance(result[0], list):
        return len(result[0])
    return len(result) if isinstance(result, list) else 0


class LibraryRun:
    """One run's server, library and mirror: built on the run's models, closed after."""

    def __init__(self, ctx: TurnContext, strategy: ExternalStrategy) -> None:
        self.models = ModelServer(ctx)
        self._tmp = tempfile.TemporaryDirectory(prefix=f"memsim-{strategy.name}-")
        self.folder = Path(self._tmp.name)
        self.uuids = 0
        self.today = self.models.start_date
        self.ids: dict[int, dict[str, Memory]] = {}  # user → library id → mirrored memory
        self.user_ids: dict[int, str] = {}  # user → the id the library knows them by
        self.client = strategy.open_library(self)
        self._finalizer = weakref.finalize(self, _shutdown, self.models, self._tmp)

    def close(self) -> None:
        """Stop the server and delete the temporary store."""
        self._finalizer()

    def mirror(self, user: int) -> dict[str, Memory]:
        """The user's memories as the library holds them, by library id."""
        return self.ids.setdefault(user, {})

    def next_uuid(self) -> uuid.UUID:
        """A deterministic version-4 UUID (the n-th the library asked for in this run)."""
        self.uuids += 1
        return uuid.UUID(int=(0x4D454D53 << 96) | self.uuids, version=4)


def _shutdown(models: ModelServer, folder: tempfile.TemporaryDirectory) -> None:
    models.stop()
    with contextlib.suppress(OSError):
        folder.cleanup()


class ExternalStrategy(Strategy):
    """A real memory library behind the generic adapter (see the module docstring).

    Subclasses name the library and implement :meth:`open_library`, :meth:`search`
    and :meth:`add`.
    """

    Config = ExternalConfig
    config: ExternalConfig
    library: ClassVar[str] = ""
    """The distribution the adapter drives, e.g. ``mem0ai``."""

    def __init__(self, config: ExternalConfig | None = None) -> None:
        super().__init__(config)
        self._sessions = SessionHistories()
        self._run: LibraryRun | None = None

    # A copy (a shard's, a worker's) carries the settings only: state is per run.
    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"])  # type: ignore[misc]

    # -- the library --------------------------------------------------------------------
    @abc.abstractmethod
    def open_library(self, run: LibraryRun) -> Any:
        """The library's client, talking to ``run.models.base_url``, storing in ``run.folder``."""

    @abc.abstractmethod
    def search(self, run: LibraryRun, ctx: TurnContext, query: str) -> list[str]:
        """Library ids of the user's memories about ``query``, best first."""

    @abc.abstractmethod
    def add(
        self, run: LibraryRun, ctx: TurnContext, messages: list[Message]
    ) -> list[dict[str, str]]:
        """Hand an exchange to the library: its events ``{"id", "memory", "event"}``."""

    def errors(self) -> tuple[type[BaseException], ...]:
        """Exceptions by which the library reports a failed call (the turn goes on)."""
        return ()

    def stored_ids(self, run: LibraryRun, user_id: str) -> list[str]:
        """Ids of every memory the library holds for ``user_id`` (asked of the library)."""
        raise NotImplementedError

    def store_sizes(self) -> dict[int, tuple[int, int]]:
        """Per user of the last run: memories the library holds, and the mirror's count."""
        run = self._run
        if run is None:
            return {}
        return {
            user: (len(self.stored_ids(run, uid)), len(run.mirror(user)))
            for user, uid in sorted(run.user_ids.items())
        }

    # -- the run --------------------------------------------------------------------------
    def bound(self, ctx: TurnContext) -> LibraryRun:
        """This run's server and library, started on first use."""
        run = self._run
        if run is None or not run.models.serves(ctx):
            if run is not None:
                run.close()
            run = self._run = LibraryRun(ctx, self)
        return run

    def close(self) -> None:
        """Stop the server and delete the store now (otherwise when the instance goes)."""
        if self._run is not None:
            self._run.close()
            self._run = None

    @contextlib.contextmanager
    def metered(self, ctx: TurnContext, run: LibraryRun) -> Iterator[None]:
        """Turn what the library did inside the block into spans on ``ctx``, in order."""
        run.today = run.models.start_date + timedelta(days=int(ctx.now // SECONDS_PER_DAY))
        with run.models.metered(ctx, len(run.mirror(ctx.user))):
            yield

    # -- the strategy API ------------------------------------------------------------------
    def build_prompt(self, ctx: TurnContext, msg: Message) -> Prompt:
        """System prompt + the library's memories about the message within budget + session."""
        run = self.bound(ctx)
        run.user_ids.setdefault(ctx.user, ctx.user_id)
        history = self._sessions.of(ctx.user, msg.session)
        room = memory_room(ctx.tokens, self.config.budget_tokens)
        found: list[str] = []
        if room > 0:
            with self.metered(ctx, run), contextlib.suppress(*self.errors()):
                found = self.search(run, ctx, msg.text)[: self.config.search_limit]
        mirror = run.mirror(ctx.user)
        chosen = fill_budget([mirror[i] for i in found if i in mirror], room)
        for memory in chosen:
            memory.hit(ctx.now)
        cfg = self.config
        return history.prompt(msg, cfg.arrange(chosen), cfg.memory_position)

    def after_turn(self, ctx: TurnContext, msg: Message, reply: Message | None) -> None:
        """Hand the exchange to the library now or on a background worker."""
        self._sessions.of(ctx.user, msg.session).exchange(ctx.tokens, msg, reply)
        batch = [msg] if reply is None else [msg, reply]
        if self.config.background:
            ctx.defer(lambda job_ctx: self._ingest(job_ctx, batch))
        else:
            self._ingest(ctx, batch)

    def _ingest(self, ctx: TurnContext, batch: list[Message]) -> None:
        run = self.bound(ctx)
        mirror = run.mirror(ctx.user)
        known = {m.text: m.facts for m in mirror.values()}
        events: list[dict[str, str]] = []
        with (
            self.metered(ctx, run),
            run.models.expect(batch, known) as answers,
            contextlib.suppress(*self.errors()),
        ):
            events = self.add(run, ctx, batch)
        self._mirror_events(ctx, run, events, answers)

    def _mirror_events(
        self,
        ctx: TurnContext,
        run: LibraryRun,
        events: list[dict[str, str]],
        answers: dict[str, Factoid],
    ) -> None:
        """Apply the library's ADD / UPDATE / DELETE events to the mirror and the run's store."""
        mirror = run.mirror(ctx.user)
        for event in events:
            kind, library_id, text = event.get("event"), event.get("id"), event.get("memory", "")
            old = mirror.pop(library_id, None) if library_id else None
            if old is not None:
                ctx.store.mirror_delete([old.id])
            if kind in ("ADD", "UPDATE") and library_id and text:
                factoid = answers.get(text) or Factoid(text, 3, "other")
                memory = ctx.new_memory(factoid)
                ctx.store.mirror_add([memory], [text])
                mirror[library_id] = memory


# -- Mem0 --------------------------------------------------------------------------------------
ACTIVE_RUNS: list[LibraryRun] = []  # the run whose library call is in progress (one at a time)


@contextlib.contextmanager
def active_run(run: LibraryRun) -> Iterator[None]:
    """Within it, a library's ids and dates come from ``run`` (see :class:`DeterministicUuid`)."""
    ACTIVE_RUNS.append(run)
    try:
        yield
    finally:
        ACTIVE_RUNS.pop()


class DeterministicUuid:
    """Stands in for the ``uuid`` module inside Mem0: ``uuid4()`` counts per run."""

    def __getattr__(self, name: str) -> Any:
        return getattr(uuid, name)

    @staticmethod
    def uuid4() -> uuid.UUID:
        """The active run's next id (a random one outside a run)."""
        return ACTIVE_RUNS[-1].next_uuid() if ACTIVE_RUNS else uuid.uuid4()


def _dated(prompt_builder: Callable[..., str]) -> Callable[..., str]:
    """Mem0's extraction prompt builder, dated by the simulated clock instead of today."""

    def build(*args: Any, **kwargs: Any) -> str:
        if ACTIVE_RUNS and kwargs.get("current_date") is None:
            kwargs["current_date"] = ACTIVE_RUNS[-1].today.isoformat()
        return prompt_builder(*args, **kwargs)

    return build


def import_mem0() -> Any:
    """``mem0.Memory``, imported offline, quiet and deterministic (once per process).

    Before the import: ``MEM0_TELEMETRY=False`` (no PostHog events, no remote notice
    configuration) and ``MEM0_DIR`` (Mem0 writes a config file with a random id
    there) in the temporary folder, unless set already. After it, three changes
    inside Mem0, none of which changes what it sends or stores for a given input:

    * ``uuid4`` (memory and message ids) counts per run, so a run stores the same
      ids every time (ids never reach a prompt: Mem0 shows the model "0", "1", …);
    * the extraction prompt's "Current Date" and "Observation Date" are the
      simulated day (``[pricing] price_date`` + the day of the turn), not today's;
    * spaCy stays off: Mem0 2.x uses it, when installed, for BM25 lemmas and entity
      linking and downloads ``en_core_web_sm`` if it is missing. memsim does not
      install it, and marks it unavailable so that no download is ever tried; Mem0
      then searches by vector similarity alone and links no entities.
    """
    os.environ.setdefault("MEM0_TELEMETRY", "False")
    os.environ.setdefault("MEM0_DIR", str(Path(tempfile.gettempdir()) / "memsim-mem0-home"))
    try:
        from mem0 import Memory
        from mem0.memory import main as mem0_main
        from mem0.memory import storage as mem0_storage
        from mem0.utils import spacy_models
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ConfigError(
            f"strategy 'external-mem0' needs mem0ai ({err}); run `make setup`"
        ) from None
    _telemetry_off()
    if not getattr(mem0_main, "_memsim_patched", False):
        spacy_models._load_failed_full = spacy_models._load_failed_lemma = True
        mem0_main.uuid = mem0_storage.uuid = DeterministicUuid()
        mem0_main.generate_additive_extraction_prompt = _dated(
            mem0_main.generate_additive_extraction_prompt
        )
        mem0_main._memsim_patched = True
        logging.getLogger("mem0").setLevel(logging.ERROR)
    return Memory


def _telemetry_off() -> None:
    """Telemetry off even if Mem0 was imported before ``MEM0_TELEMETRY`` was set.

    Mem0 reads the variable once, at import, into module globals; its PostHog
    clients may then exist already. Every copy of the flag is cleared and the
    clients are dropped without a flush, so no event is ever sent.
    """
    for name, module in list(sys.modules.items()):
        if name.startswith("mem0") and hasattr(module, "MEM0_TELEMETRY"):
            module.MEM0_TELEMETRY = False
    telemetry = sys.modules.get("mem0.memory.telemetry")
    for holder in (
        getattr(telemetry, "client_telemetry", None),
        getattr(telemetry, "_oss_telemetry_instance", None),
    ):
        client = getattr(holder, "posthog", None)
        if client is not None:
            with contextlib.suppress(Exception):
                client.disabled = True
            holder.posthog = None


@register_external
class Mem0External(ExternalStrategy):
    """Real Mem0 OSS (mem0ai 2.2.1): its own extraction, dedup, store and search, metered."""

    name = "external-mem0"
    library = "mem0ai"
    COLLECTION = "memsim-mem0"

    def open_library(self, run: LibraryRun) -> Any:
        """``Memory.from_config``: OpenAI LLM and embedder = the server; embedded Chroma."""
        memory_class = import_mem0()
        models = run.models
        memory = memory_class.from_config(
            {
                "llm": {
                    "provider": "openai",
                    "config": {
                        "model": models.chat_model,
                        "api_key": "memsim",
                        "openai_base_url": models.base_url,
                    },
                },
                "embedder": {
                    "provider": "openai",
                    "config": {
                        "model": models.embedding_model,
                        "api_key": "memsim",
                        "openai_base_url": models.base_url,
                        "embedding_dims": models.embedding_dims,
                    },
                },
                "vector_store": {
                    "provider": "chroma",
                    "config": {
                        "collection_name": self.COLLECTION,
                        "path": str(run.folder / "chroma"),
                    },
                },
                "history_db_path": str(run.folder / "history.db"),
            }
        )
        memory.vector_store = MeteredVectorStore(memory.vector_store, models)
        return memory

    def errors(self) -> tuple[type[BaseException], ...]:
        """Mem0's own errors, and the OpenAI client's (a refused or failed request)."""
        import openai
        from mem0.exceptions import MemoryError as Mem0Error

        return (Mem0Error, openai.APIError)

    def _active(self, run: LibraryRun) -> contextlib.AbstractContextManager[None]:
        return active_run(run)

    def search(self, run: LibraryRun, ctx: TurnContext, query: str) -> list[str]:
        """``memory.search(query, filters={"user_id": …}, top_k=search_limit)``."""
        with self._active(run):
            found = run.client.search(
                query, filters={"user_id": ctx.user_id}, top_k=self.config.search_limit
            )
        return [item["id"] for item in found["results"]]

    def add(
        self, run: LibraryRun, ctx: TurnContext, messages: list[Message]
    ) -> list[dict[str, str]]:
        """``memory.add([{"role", "content"}, …], user_id=…)`` (Mem0 extracts and dedups).

        Mem0 embeds the exchange as one text (``role: content`` lines, newlines made
        spaces) to find the existing memories it shows the extractor. The latent
        embedder learns that text as what its user message is about (its topics),
        as a real embedder would place it near the facts it states; without that it
        would give it a direction of its own, and the memories Mem0 shows for dedup
        would be a random ten of the user's.
        """
        transcript = "".join(f"{m.role}: {m.text}\n" for m in messages).replace("\n", " ")
        run.models.learn_topics(transcript, like=messages[0].text)
        payload = [{"role": m.role, "content": m.text} for m in messages]
        with self._active(run):
            result = run.client.add(payload, user_id=ctx.user_id)
        return result["results"]

    def stored_ids(self, run: LibraryRun, user_id: str) -> list[str]:
        """``memory.get_all(filters={"user_id": …})``: every memory Mem0 holds for the user."""
        with self._active(run):
            found = run.client.get_all(filters={"user_id": user_id}, top_k=100_000)
        return [item["id"] for item in found["results"]]
