"""ChromaStore: the :class:`~sim.store.VectorStore` protocol on a real ChromaDB 1.5.

It is long because ChromaDB needs adapting at each call: metering, per-user or
shared collections, the open-file headroom, and the mirror that answers counts
without a round trip.

The store runs embedded (:func:`embedded_store`, a ``PersistentClient`` on a folder)
or against a server (:func:`http_store`, an ``HttpClient``). Two layouts:

- ``per-user``: one collection per user, ``{prefix}-u{user:07d}``;
- ``shared``: one collection ``{prefix}-shared``; every record carries metadata
  ``user_id`` and every query, get and delete is filtered by it.

``prefix`` is the sanitized ``namespace``, so several runs and strategies can share
one server; a new store deletes its namespace's collections (fresh start).

Chroma holds the vector, the text and the metadata a real memory system stores.
A local mirror keeps the :class:`~sim.store.Memory` objects themselves, because they
carry hidden ground truth (``facts``, ``owner``) that Chroma must not hold and the
simulator needs back unchanged. Every result's ``user_id`` is checked against the
requested user; a mismatch is dropped and counted in ``cross_user_results``.
"""

from __future__ import annotations

import hashlib
import re
import resource
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import chromadb
import numpy as np
from chromadb.config import Settings

from sim.store import Memory

Layout = Literal["per-user", "shared"]
LAYOUTS: tuple[str, ...] = ("per-user", "shared")

MAX_NAME = 512  # ChromaDB 1.x: 3-512 characters of [a-zA-Z0-9._-], alphanumeric at both ends
MAX_PREFIX = 200  # leaves room for any user suffix (up to 300 digits)
_INVALID = re.compile(r"[^A-Za-z0-9_-]+")  # dots dropped too: no "..", never an IP address
_SUFFIX = re.compile(r"(?:u\d+|n\d+|h[0-9a-f]{16}|shared)")
_COSINE = {"hnsw": {"space": "cosine"}}
_LIST_PAGE = 1000


def chroma_settings() -> Settings:
    """Client settings: anonymized telemetry off, so nothing leaves the machine."""
    return Settings(anonymized_telemetry=False)


def collection_prefix(namespace: str) -> str:
    """A valid collection-name prefix for ``namespace``.

    A namespace that is already valid (and not too long) is kept as is; any other
    is cleaned and suffixed with a digest of the original, so that two different
    namespaces never share a prefix.
    """
    clean = _INVALID.sub("-", namespace).strip("-_")
    if clean == namespace and 1 <= len(clean) <= MAX_PREFIX:
        return clean
    digest = hashlib.sha256(namespace.encode()).hexdigest()[:10]
    return f"{clean[: MAX_PREFIX - 11] or 'ms'}-{digest}"


def user_suffix(user: Any) -> str:
    """The per-user part of a collection name: ``u0000042``, ``n0000007`` (negative).

    Ids that are not integers, or too long for a name, become a digest.
    """
    if isinstance(user, int) and not isinstance(user, bool) and abs(user) < 10**299:
        return f"u{user:07d}" if user >= 0 else f"n{-user:07d}"
    return "h" + hashlib.sha256(repr(user).encode()).hexdigest()[:16]


def collection_name(prefix: str, layout: Layout, user: Any) -> str:
    """The collection holding ``user``'s memories under ``prefix`` in ``layout``."""
    return f"{prefix}-shared" if layout == "shared" else f"{prefix}-{user_suffix(user)}"


def owned_by(prefix: str, name: str) -> bool:
    """Whether collection ``name`` is one that :func:`collection_name` makes for ``prefix``.

    Suffixes contain no ``-``, so the prefix is everything before the last one:
    ``ms-a`` never claims ``ms-a-b``'s collections.
    """
    head, _, tail = name.rpartition("-")
    return head == prefix and _SUFFIX.fullmatch(tail) is not None


def record_id(user: Any, memory_id: int) -> str:
    """Chroma's id of one memory: unique across users, so the shared layout works."""
    return f"{user}:{memory_id}"


def _user_key(user: Any) -> str:
    # Metadata ``user_id`` is a string: Chroma's integers are 64-bit, user ids need not be.
    return str(user)


def _metadata(user: Any, memory: Memory) -> dict[str, str | int | float]:
    """What a real memory system stores next to the vector (no hidden ground truth)."""
    return {
        "user_id": _user_key(user),
        "memory_id": memory.id,
        "importance": memory.importance,
        "category": memory.category,
        "created_at": float(memory.created_at),
        "embedding_model": memory.embedding_model,
        "content_hash": memory.content_hash,
        "line_tokens": memory.line_tokens,
    }


class _UserMirror:
    """One user's Memory objects by id, and their ground-truth topics."""

    __slots__ = ("by_id", "topics")

    def __init__(self) -> None:
        self.by_id: dict[int, Memory] = {}
        self.topics: Counter[tuple] = Counter()

    def add(self, memories: Sequence[Memory]) -> None:
        self.by_id.update((m.id, m) for m in memories)
        self.topics.update(m.truth_key for m in memories)

    def delete(self, ids: Sequence[int]) -> None:
        gone = [self.by_id.pop(i) for i in ids]
        self.topics.subtract(m.truth_key for m in gone)
        self.topics = +self.topics  # drop zero counts


class ChromaStore:
    """Per-user memories in real ChromaDB collections (cosine space).

    Attributes:
        kind: ``chroma`` (embedded) or ``chroma-http`` (server).
        last_call_s: With ``measure``, the wall time of the Chroma calls made by
            the last add, query, delete or memories call (0.0 if it needed none);
            otherwise ``None`` (latency is modelled).
        cross_user_results: Results that belonged to another user (dropped).
        prefix: Collection-name prefix derived from the namespace.
    """

    def __init__(
        self,
        client: chromadb.ClientAPI,
        dim: int,
        layout: Layout = "per-user",
        namespace: str = "memsim",
        measure: bool = False,
    ) -> None:
        """Wrap ``client`` and delete the namespace's collections (fresh start).

        Args:
            client: A ChromaDB client (embedded or HTTP).
            dim: Vector dimension.
            layout: ``per-user`` (one collection each) or ``shared`` (one, filtered).
            namespace: Prefix of every collection this store owns.
            measure: Record the wall time of real calls in ``last_call_s``.
        """
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
        self.client = client
        self.dim = dim
        self.layout = layout
        self.prefix = collection_prefix(namespace)
        self.kind = _client_kind(client)
        self.measure = measure
        self.last_call_s: float | None = None
        self.cross_user_results = 0
        self._mirror: dict[Any, _UserMirror] = {}
        self._collections: dict[str, chromadb.Collection] = {}
        self._elapsed = 0.0
        self.drop_collections()
        if layout == "shared":
            self._open(self.collection_name(None))

    # -- names and collections -------------------------------------------------------------
    def collection_name(self, user: Any) -> str:
        """The collection holding ``user``'s memories."""
        return collection_name(self.prefix, self.layout, user)

    def owns(self, name: str) -> bool:
        """Whether a collection name belongs to this store's namespace."""
        return owned_by(self.prefix, name)

    def drop_collections(self) -> None:
        """Delete every collection of this namespace (other namespaces are untouched)."""
        for name in [n for n in self._collection_names() if self.owns(n)]:
            self.client.delete_collection(name)
        self._collections.clear()
        self._mirror.clear()

    def _collection_names(self) -> list[str]:
        names: list[str] = []
        while True:  # paged: a server need not return every collection at once
            page = self.client.list_collections(limit=_LIST_PAGE, offset=len(names))
            names += [c.name for c in page]
            if len(page) < _LIST_PAGE:
                return names

    def _open(self, name: str) -> chromadb.Collection:
        """The named collection, created on first use; a real call the first time only."""
        collection = self._collections.get(name)
        if collection is None:
            collection = self._chroma(
                self.client.get_or_create_collection,
                name=name,
                configuration=_COSINE,
                embedding_function=None,  # vectors come from the simulator's embedder
            )
            self._collections[name] = collection
        return collection

    def _where(self, user: Any) -> dict[str, str] | None:
        return {"user_id": _user_key(user)} if self.layout == "shared" else None

    # -- metering ----------------------------------------------------------------------------
    def _chroma(self, call: Callable[..., Any], **kwargs: Any) -> Any:
        """Make one real Chroma call, adding its wall time to the current operation."""
        start = time.perf_counter()
        try:
            return call(**kwargs)
        finally:
            self._elapsed += time.perf_counter() - start

    @contextmanager
    def _metered(self) -> Iterator[None]:
        """One public operation: ``last_call_s`` becomes the time of its Chroma calls."""
        self._elapsed = 0.0
        try:
            yield
        finally:
            if self.measure:
                self.last_call_s = self._elapsed

    # -- results -------------------------------------------------------------------------------
    def _own(self, user: Any, metadatas: Sequence[dict[str, Any] | None]) -> list[int]:
        """Positions of results that are the user's; foreign ones are counted and dropped."""
        key, mirror = _user_key(user), self._mirror[user].by_id
        keep = []
        for i, meta in enumerate(metadatas):
            if meta is None or meta.get("user_id") != key:
                self.cross_user_results += 1
            elif meta.get("memory_id") in mirror:  # always, unless Chroma and mirror diverged
                keep.append(i)
        return keep

    # -- the VectorStore protocol --------------------------------------------------------------
    def add(self, user: int, memories: Sequence[Memory], vectors: np.ndarray) -> None:
        """Store memories with their unit vectors (one row each)."""
        if len(memories) != len(vectors):
            raise ValueError(f"{len(memories)} memories but {len(vectors)} vectors")
        mirror = self._mirror.get(user)
        _check_new_ids(memories, mirror.by_id if mirror else {})
        with self._metered():
            if not memories:
                return
            rows = np.asarray(vectors, dtype=np.float32).reshape(len(memories), self.dim)
            self._chroma(
                self._open(self.collection_name(user)).add,
                ids=[record_id(user, m.id) for m in memories],
                embeddings=rows,
                documents=[m.text for m in memories],
                metadatas=[_metadata(user, m) for m in memories],
            )
        self._mirror.setdefault(user, _UserMirror()).add(memories)

    def query(self, user: int, vector: np.ndarray) -> tuple[list[Memory], np.ndarray]:
        """All of the user's memories and their cosine similarity to ``vector``."""
        n = self.count(user)
        with self._metered():
            if n == 0:  # nothing to search, and Chroma rejects n_results=0
                return [], np.empty(0, dtype=np.float32)
            found = self._chroma(
                self._open(self.collection_name(user)).query,
                query_embeddings=np.asarray(vector, dtype=np.float32).reshape(1, self.dim),
                n_results=n,  # every memory: strategies rank and budget them themselves
                where=self._where(user),
                include=["documents", "metadatas", "distances"],
            )
        metadatas, distances = found["metadatas"][0], found["distances"][0]
        keep = self._own(user, metadatas)
        by_id = self._mirror[user].by_id
        sims = 1.0 - np.asarray(distances, dtype=np.float64)[keep]  # cosine distance = 1 - sim
        return [by_id[metadatas[i]["memory_id"]] for i in keep], sims.astype(np.float32)

    def delete(self, user: int, ids: Sequence[int]) -> None:
        """Remove memories by id (unknown ids are ignored)."""
        mirror = self._mirror.get(user)
        known = [i for i in dict.fromkeys(ids) if mirror and i in mirror.by_id]
        with self._metered():
            if not known:
                return
            self._chroma(
                self._open(self.collection_name(user)).delete,
                ids=[record_id(user, i) for i in known],
                where=self._where(user),  # a delete can never reach another user's records
            )
        self._mirror[user].delete(known)

    def memories(self, user: int) -> list[Memory]:
        """The user's memories, oldest first (a real ``get`` of all of them)."""
        with self._metered():
            if self.count(user) == 0:
                return []
            found = self._chroma(
                self._open(self.collection_name(user)).get,
                where=self._where(user),
                include=["documents", "metadatas"],
            )
        metadatas = found["metadatas"]
        by_id = self._mirror[user].by_id
        own = [by_id[metadatas[i]["memory_id"]] for i in self._own(user, metadatas)]
        return sorted(own, key=lambda m: m.id)

    def memories_with_vectors(self, user: int) -> tuple[list[Memory], np.ndarray]:
        """The user's memories, oldest first, and their stored vectors (one real ``get``)."""
        with self._metered():
            if self.count(user) == 0:
                return [], np.empty((0, self.dim), dtype=np.float32)
            found = self._chroma(
                self._open(self.collection_name(user)).get,
                where=self._where(user),
                include=["metadatas", "embeddings"],
            )
        metadatas = found["metadatas"]
        by_id = self._mirror[user].by_id
        rows = sorted((metadatas[i]["memory_id"], i) for i in self._own(user, metadatas))
        vectors = np.asarray(found["embeddings"], dtype=np.float32).reshape(-1, self.dim)
        return [by_id[m] for m, _ in rows], vectors[[i for _, i in rows]]

    def count(self, user: int) -> int:
        """Number of memories the user has (from the mirror: no Chroma call)."""
        mirror = self._mirror.get(user)
        return len(mirror.by_id) if mirror else 0

    def duplicates(self, user: int) -> int:
        """How many of the user's memories repeat a fact another memory holds (ground truth)."""
        mirror = self._mirror.get(user)
        return len(mirror.by_id) - len(mirror.topics) if mirror else 0

    def users(self) -> list[int]:
        """Users that have ever stored a memory."""
        return sorted(self._mirror)


def _check_new_ids(memories: Sequence[Memory], stored: dict[int, Memory]) -> None:
    """Reject ids already stored or repeated: Chroma would silently keep the old record."""
    seen: set[int] = set()
    for m in memories:
        if m.id in stored or m.id in seen:
            raise ValueError(f"memory id {m.id} is already stored for this user")
        seen.add(m.id)


def _client_kind(client: chromadb.ClientAPI) -> str:
    """``chroma-http`` for a client of a server, ``chroma`` for an embedded one."""
    impl = client.get_settings().chroma_api_impl
    return "chroma-http" if impl.endswith("FastAPI") else "chroma"


FILE_HEADROOM = 1024
"""Open files kept out of embedded ChromaDB's HNSW index cache (see :func:`_file_headroom`)."""


@contextmanager
def _file_headroom() -> Iterator[None]:
    """Open an embedded client under a lowered open-file limit, then restore it.

    Embedded ChromaDB 1.x sizes its cache of open HNSW indexes at the process's
    open-file limit divided by five (four data files and one metadata file per
    index; ``chromadb/api/rust.py``), which leaves no descriptor for its SQLite
    database or anything else: with one collection per user, about
    ``limit / 5`` users in, a query fails with "Too many open files". Creating the
    client with :data:`FILE_HEADROOM` fewer files makes the cache evict before
    the process runs out.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = soft - FILE_HEADROOM if soft > 2 * FILE_HEADROOM else soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def embedded_store(
    path: Path,
    dim: int,
    layout: Layout = "per-user",
    namespace: str = "memsim",
    measure: bool = False,
) -> ChromaStore:
    """A store on an embedded ChromaDB persisted in ``path`` (created if missing)."""
    path.mkdir(parents=True, exist_ok=True)
    with _file_headroom():
        client = chromadb.PersistentClient(path=str(path), settings=chroma_settings())
    return ChromaStore(client, dim, layout, namespace, measure)


def http_store(
    host: str,
    port: int,
    dim: int,
    layout: Layout = "per-user",
    namespace: str = "memsim",
    measure: bool = False,
) -> ChromaStore:
    """A store on the ChromaDB server at ``host:port``.

    Raises:
        ConnectionError: No server answers there.
    """
    try:
        client = chromadb.HttpClient(host=host, port=port, settings=chroma_settings())
        client.heartbeat()
    except Exception as err:  # the client raises several types for "nobody there"
        raise ConnectionError(
            f"no ChromaDB server at http://{host}:{port} ({err}); "
            f"start one with `chroma run --path DIR --port {port}`"
        ) from err
    return ChromaStore(client, dim, layout, namespace, measure)
