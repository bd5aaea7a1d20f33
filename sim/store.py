"""Vector stores: the protocol, the :class:`Memory` record and :class:`NumpyStore`.

:class:`NumpyStore` is an exact in-memory cosine store partitioned per user.

Partitioning is the isolation guarantee: every call names one user and only ever
reads or writes that user's partition.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import numpy as np

_NON_WORD = re.compile(r"[^\w\s]")
_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=1 << 16)
def normalized_hash(text: str) -> str:
    """SHA-256 of the text lower-cased, without punctuation and with single spaces.

    Cached (a pure function of the text): memory texts come from a small bank and
    are hashed again at every extraction that finds them.
    """
    norm = _SPACES.sub(" ", _NON_WORD.sub("", text.lower())).strip()
    return hashlib.sha256(norm.encode()).hexdigest()


@dataclass(slots=True)
class Memory:
    """One stored memory and its metadata.

    ``facts`` and ``owner`` are hidden ground truth (the ``(slot, version)``
    pairs the text is about, empty for an inference the extractor made up; the
    user it was learned from); strategies must not read them. ``line_tokens``
    is the cost of injecting it as one ``- text`` line.
    """

    id: int
    text: str
    line_tokens: int
    importance: int
    category: str
    created_at: float
    embedding_model: str
    content_hash: str
    facts: tuple[tuple[str, int], ...] = ()
    hit_count: int = 0
    owner: int = -1  # the user it was learned from (ground truth, for isolation checks)
    last_used_at: float | None = None

    def hit(self, now: float) -> None:
        """Count one use (injection into a prompt) at simulated time ``now``."""
        self.hit_count += 1
        self.last_used_at = now

    @property
    def truth_key(self) -> tuple:
        """What the memory is about, for duplicate counting (ground truth)."""
        return self.facts or ("inference", self.text)


def hit_all(memories: Sequence[Memory], now: float) -> None:
    """:meth:`Memory.hit` for each memory, its two updates written out.

    Prompts inject dozens of memories per turn; a method call for each costs
    about as much as the updates themselves.
    """
    for memory in memories:
        memory.hit_count += 1
        memory.last_used_at = now


class VectorStore(Protocol):
    """A per-user vector store.

    ``last_call_s`` is the wall time of the last call when the store measures
    its latency (``None`` when latency is modelled); ``cross_user_results``
    counts query results that belonged to another user (isolation failures).
    """

    last_call_s: float | None
    cross_user_results: int

    def add(self, user: int, memories: Sequence[Memory], vectors: np.ndarray) -> None:
        """Store memories with their unit vectors (one row each)."""
        ...

    def query(self, user: int, vector: np.ndarray) -> tuple[list[Memory], np.ndarray]:
        """All of the user's memories and their cosine similarity to ``vector``.

        The list is read-only for the caller; a store may hand out the same list
        object again only while the user's memories have not changed.
        """
        ...

    def delete(self, user: int, ids: Sequence[int]) -> None:
        """Remove memories by id."""
        ...

    def memories(self, user: int) -> list[Memory]:
        """The user's memories, oldest first."""
        ...

    def memories_with_vectors(self, user: int) -> tuple[list[Memory], np.ndarray]:
        """The user's memories, oldest first, and their stored unit vectors (one row each)."""
        ...

    def count(self, user: int) -> int:
        """Number of memories the user has."""
        ...

    def duplicates(self, user: int) -> int:
        """How many of the user's memories repeat a fact another memory holds (ground truth)."""
        ...


class _Partition:
    """One user's memories and their vectors.

    A ``records`` list handed out by a query is a snapshot: the next write replaces
    the list instead of changing it (callers may keep it, or key caches on its
    identity). A list never handed out is extended in place, which keeps adds
    cheap for strategies that only ever read :meth:`NumpyStore.memories` copies.
    ``active`` is the view of the rows in use, kept so that a query does not slice.
    """

    __slots__ = ("active", "exposed", "n", "records", "topics", "vectors")

    def __init__(self, dim: int) -> None:
        self.vectors = np.empty((8, dim), dtype=np.float32)
        self.active = self.vectors[:0]
        self.records: list[Memory] = []
        self.exposed = False  # whether ``records`` was handed out
        self.n = 0
        self.topics: Counter[tuple] = Counter()  # ground truth, for duplicate counting

    def add(self, memories: Sequence[Memory], vectors: np.ndarray) -> None:
        need = self.n + len(memories)
        if need > len(self.vectors):
            grown = np.empty((max(need, 2 * len(self.vectors)), self.vectors.shape[1]), np.float32)
            grown[: self.n] = self.vectors[: self.n]
            self.vectors = grown
        self.vectors[self.n : need] = vectors
        if self.exposed:
            self.records = self.records + list(memories)
            self.exposed = False
        else:
            self.records.extend(memories)
        self.n = need
        self.active = self.vectors[:need]
        self.topics.update(m.truth_key for m in memories)

    def delete(self, ids: set[int]) -> None:
        keep = [i for i, m in enumerate(self.records) if m.id not in ids]
        self.topics.subtract(m.truth_key for m in self.records if m.id in ids)
        self.topics = +self.topics  # drop zero counts
        self.vectors[: len(keep)] = self.vectors[keep]
        self.records = [self.records[i] for i in keep]
        self.exposed = False
        self.n = len(keep)
        self.active = self.vectors[: self.n]

    def snapshot(self) -> list[Memory]:
        """``records``, marked as handed out (the store will not change this list)."""
        self.exposed = True
        return self.records


class NumpyStore:
    """Exact cosine search over float32 matrices, one matrix per user."""

    kind = "numpy"
    last_call_s = None  # latency is always modelled
    cross_user_results = 0  # partitions cannot leak

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._parts: dict[int, _Partition] = {}

    def _part(self, user: int) -> _Partition:
        part = self._parts.get(user)
        if part is None:
            part = self._parts[user] = _Partition(self.dim)
        return part

    def add(self, user: int, memories: Sequence[Memory], vectors: np.ndarray) -> None:
        """Store memories with their unit vectors (one row each)."""
        if len(memories) != len(vectors):
            raise ValueError(f"{len(memories)} memories but {len(vectors)} vectors")
        if memories:
            self._part(user).add(memories, vectors)

    def query(self, user: int, vector: np.ndarray) -> tuple[list[Memory], np.ndarray]:
        """All of the user's memories and their cosine similarity to ``vector``.

        The list is the partition's current snapshot, not a copy: the store never
        changes it (a write replaces it), and callers must not either.
        """
        part = self._parts.get(user)
        if part is None or part.n == 0:
            return [], np.empty(0, dtype=np.float32)
        return part.snapshot(), part.active @ vector

    def delete(self, user: int, ids: Sequence[int]) -> None:
        """Remove memories by id."""
        if ids and user in self._parts:
            self._parts[user].delete(set(ids))

    def memories(self, user: int) -> list[Memory]:
        """The user's memories, oldest first."""
        part = self._parts.get(user)
        return list(part.records) if part else []

    def memories_with_vectors(self, user: int) -> tuple[list[Memory], np.ndarray]:
        """The user's memories, oldest first, and a copy of their stored vectors."""
        part = self._parts.get(user)
        if part is None:
            return [], np.empty((0, self.dim), dtype=np.float32)
        return list(part.records), part.active.copy()

    def count(self, user: int) -> int:
        """Number of memories the user has."""
        part = self._parts.get(user)
        return part.n if part else 0

    def duplicates(self, user: int) -> int:
        """How many of the user's memories repeat a fact another memory holds (ground truth)."""
        part = self._parts.get(user)
        return part.n - len(part.topics) if part else 0

    def users(self) -> list[int]:
        """Users that have a partition."""
        return sorted(self._parts)
