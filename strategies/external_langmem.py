"""``external-langmem``: real LangMem (langmem 0.0.30) in-process against ``memsim serve-mock``.

The adapter of :mod:`strategies.external` (server, metering, mirror, ground truth)
with LangMem's own memory manager behind it, as LangMem's documentation sets it up:

* the chat model is ``langchain_openai.ChatOpenAI`` pointed at the run's server
  (dummy key, ``max_retries=0``: the OpenAI client retries nothing itself);
* the store is a LangGraph ``InMemoryStore`` with an embedding index (``{"dims",
  "embed"}``, default fields ``["$"]``: the whole stored value is embedded) whose
  embeddings come from the server's ``/v1/embeddings`` (:class:`ServedEmbeddings`);
  every ``search``, ``put``, ``delete`` and ``get`` on it is a store span
  (:class:`MeteredLangGraphStore`);
* ``after_turn`` hands the exchange to ``create_memory_store_manager(model,
  namespace=("memories", "{langgraph_user_id}"), store=…)`` — ``.invoke({"messages":
  …})``, LangMem's "add": it searches the user's namespace, shows the memories it
  found to one trustcall extraction, and writes the inserts and patches back;
* ``build_prompt`` asks ``manager.search(query=message, limit=search_limit)``.

What one add costs (langmem 0.0.30, trustcall 0.0.39; see docs/langmem.md for
the source lines): ``MemoryStoreManager.invoke`` embeds the last message and
searches twice (once without ``limit`` — a result it discards — then with
``limit=query_limit``), makes one LLM call (``max_steps`` 1: trustcall's
``extract`` node when the search found nothing, else ``extract_updates`` with
``PatchDoc`` and the ``Memory`` schema, ``tool_choice="any"``), and puts every
new or changed memory (one embedding each). Deletes are off by default
(``enable_deletes=False``).

**Determinism.** LangMem draws ``uuid4`` for the session tag in its prompt
(``MemoryManager._prepare_messages``) and for the key of every new memory; inside
LangMem and trustcall ``uuid4`` counts per run instead (as for Mem0). LangMem's
thread pool runs with ``max_concurrency = 1``, so its searches and puts (and their
embedding requests) happen in submission order. LangSmith tracing is off around
every call (``langsmith.tracing_context(enabled=False)``), whatever the environment.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from strategies.api import ConfigError, Message, ModelServer, TurnContext, register_external
from strategies.external import (
    DeterministicUuid,
    ExternalStrategy,
    LibraryRun,
    MeteredVectorStore,
    active_run,
)

NAMESPACE = ("memories", "{langgraph_user_id}")
"""``create_memory_store_manager``'s default namespace (langmem/knowledge/extraction.py)."""
QUERY_LIMIT = 5
"""``create_memory_store_manager``'s default ``query_limit`` (memories shown to the extractor)."""


def import_langmem() -> Any:
    """``langmem``, imported with deterministic ids inside LangMem and trustcall (once).

    ``uuid4`` in ``langmem.knowledge.extraction`` (the prompt's ``<session_…>`` tag,
    new memories' keys) and in ``trustcall._base`` (message ids) counts per run;
    ``uuid5`` (LangMem's stable ids of stored memories) is unchanged.
    """
    try:
        with warnings.catch_warnings():  # trustcall imports Send from its old place
            warnings.filterwarnings("ignore", message="Importing Send from langgraph.constants")
            import langmem
            import trustcall._base as trustcall_base
            from langmem.knowledge import extraction
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ConfigError(
            f"strategy 'external-langmem' needs langmem ({err}); run `make setup`"
        ) from None
    if not getattr(extraction, "_memsim_patched", False):
        extraction.uuid = trustcall_base.uuid = DeterministicUuid()
        extraction._memsim_patched = True
    return langmem


class ServedEmbeddings:
    """Embeddings from the run's ``/v1/embeddings``: one request per call.

    The store's index takes :meth:`embed_documents` as its ``embed`` function
    (LangGraph wraps it as LangChain ``Embeddings``: a query is a list of one).

    The store embeds each memory as its whole value, JSON
    (``{"content": {"content": "…"}, "kind": "Memory"}``); the latent embedder learns
    that text as being about the memory it holds, as a real embedder would place it.
    """

    def __init__(self, models: ModelServer) -> None:
        import openai

        self._models = models
        self._client = openai.OpenAI(base_url=models.base_url, api_key="memsim", max_retries=0)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One embedding request for ``texts``."""
        for text in texts:
            memory = _stored_text(text)
            if memory is not None:
                self._models.learn_topics(text, like=memory)
        response = self._client.embeddings.create(
            model=self._models.embedding_model, input=list(texts)
        )
        return [item.embedding for item in response.data]


def _stored_text(text: str) -> str | None:
    """The memory inside an embedded store value (LangMem's ``{"kind", "content"}``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return memory_text(value) if isinstance(value, dict) and "content" in value else None


def memory_text(value: dict[str, Any]) -> str:
    """A stored LangMem value's memory: ``content.content`` (the ``Memory`` schema)."""
    content = value.get("content")
    if isinstance(content, dict):
        inner = content.get("content")
        return inner if isinstance(inner, str) else json.dumps(content, sort_keys=True)
    return str(content)


class MeteredLangGraphStore(MeteredVectorStore):
    """A LangGraph ``BaseStore`` with every call a store span; deleted keys are kept.

    ``search`` and ``get`` are queries, ``put`` a write, ``delete`` a delete (also
    their ``a…`` forms); ``deleted`` lists the keys deleted since it was cleared.
    """

    _CALLS: ClassVar[dict[str, str]] = {
        "search": "store_query",
        "asearch": "store_query",
        "get": "store_query",
        "aget": "store_query",
        "put": "store_write",
        "aput": "store_write",
        "delete": "store_delete",
        "adelete": "store_delete",
    }

    def __init__(self, inner: Any, models: ModelServer) -> None:
        super().__init__(inner, models)
        self.deleted: list[str] = []

    def delete(self, namespace: tuple[str, ...], key: str) -> None:
        """Delete one item (metered) and remember its key."""
        self.__getattr__("delete")(namespace, key)
        self.deleted.append(key)

    async def adelete(self, namespace: tuple[str, ...], key: str) -> None:
        """As :meth:`delete` (the manager's async path)."""
        await self.__getattr__("adelete")(namespace, key)
        self.deleted.append(key)


class _LangMem:
    """One run's LangMem: the store manager, its metered store."""

    def __init__(self, manager: Any, store: MeteredLangGraphStore) -> None:
        self.manager, self.store = manager, store


@register_external
class LangMemExternal(ExternalStrategy):
    """Real LangMem (langmem 0.0.30): its memory store manager, trustcall and search, metered."""

    name = "external-langmem"
    library = "langmem"

    def open_library(self, run: LibraryRun) -> _LangMem:
        """``create_memory_store_manager`` on ``ChatOpenAI`` and an indexed ``InMemoryStore``."""
        langmem = import_langmem()
        from langchain_openai import ChatOpenAI
        from langgraph.store.memory import InMemoryStore

        models = run.models
        model = ChatOpenAI(
            model=models.chat_model, base_url=models.base_url, api_key="memsim", max_retries=0
        )
        embed = ServedEmbeddings(models).embed_documents
        index = {"dims": models.embedding_dims, "embed": embed}
        store = MeteredLangGraphStore(InMemoryStore(index=index), models)
        manager = langmem.create_memory_store_manager(model, namespace=NAMESPACE, store=store)
        return _LangMem(manager, store)

    def errors(self) -> tuple[type[BaseException], ...]:
        """The OpenAI client's errors, and trustcall's graph running out of retries."""
        import openai
        from langgraph.errors import GraphRecursionError

        return (openai.APIError, GraphRecursionError)

    @staticmethod
    def _config(ctx: TurnContext) -> dict[str, Any]:
        """The user's namespace, and LangMem's thread pool one call at a time."""
        return {"configurable": {"langgraph_user_id": ctx.user_id}, "max_concurrency": 1}

    @contextlib.contextmanager
    def _active(self, run: LibraryRun) -> Iterator[None]:
        """Ids count in ``run``; no LangSmith tracing."""
        from langsmith import tracing_context

        with active_run(run), tracing_context(enabled=False):
            yield

    def search(self, run: LibraryRun, ctx: TurnContext, query: str) -> list[str]:
        """``manager.search(query=…, limit=search_limit)``: keys, most similar first."""
        with self._active(run):
            found = run.client.manager.search(
                query=query, limit=self.config.search_limit, config=self._config(ctx)
            )
        return [item.key for item in found]

    def add(
        self, run: LibraryRun, ctx: TurnContext, messages: list[Message]
    ) -> list[dict[str, str]]:
        """``manager.invoke({"messages": [...]})``: its puts as ADD/UPDATE, deletes as DELETE.

        LangMem searches with the last ``query_limit // 4`` dilated windows of the
        exchange (``utils.get_dialated_windows``: with the default 5, the last message
        alone, the reply). The latent embedder learns each window as being about the
        user's message, as a real embedder places a reply near what it answers.
        """
        from langmem import utils

        payload = [{"role": m.role, "content": m.text} for m in messages]
        for window in utils.get_dialated_windows(payload, QUERY_LIMIT // 4):
            run.models.learn_topics(window, like=messages[0].text)
        client: _LangMem = run.client
        client.store.deleted.clear()
        with self._active(run):
            puts = client.manager.invoke({"messages": payload}, config=self._config(ctx))
        mirror = run.mirror(ctx.user)
        events = [
            {
                "id": put["key"],
                "memory": memory_text(put["value"]),
                "event": "UPDATE" if put["key"] in mirror else "ADD",
            }
            for put in puts
        ]
        return events + [{"id": key, "event": "DELETE"} for key in client.store.deleted]

    def stored_ids(self, run: LibraryRun, user_id: str) -> list[str]:
        """Keys of every item in the user's namespace (asked of the store, not metered)."""
        inner = run.client.store._inner
        return [item.key for item in inner.search(("memories", user_id), limit=1_000_000)]


def stored_memories(strategy: LangMemExternal, user_id: str) -> Sequence[str]:
    """The memory texts LangMem holds for ``user_id`` in the strategy's last run."""
    run = strategy._run
    if run is None:
        return []
    items = run.client.store._inner.search(("memories", user_id), limit=1_000_000)
    return [memory_text(item.value) for item in items]
