"""Calibration profiles: what the fast mocks borrow from the real components.

It is long because the measurement and the profile it writes are read together: the
sweep over users and layouts, the fits, and the profile's lookups.

A profile (JSON) holds

* ``similarity``: cosine similarities measured with a real embedder on the fact
  bank, per slot — the mean similarity of every pair of memory phrasings of one
  fact (``phrasing``), of memories of two values of the slot (``same_slot``), of
  a user's statement and a memory of it (``statement``), of a question about the
  slot and its memories (``probe``) — plus the mean similarity of memories of
  different slots (``background``) and summary distributions of each pair kind;
* ``store``: add and query latency of ChromaDB (p50 and p99) per layout and
  number of users, each user holding ``memories_per_user`` memories;
* ``store_collection``: query latency per layout against the size of the
  collection a query scans (one user's collection grown step by step), and its
  least-squares slope in seconds per vector.

``memsim calibrate`` writes one; ``LatentEmbedder`` and the modelled store
latency read one. The default profile ships with the package
(``sim/data/calibration.json``), made by ``memsim calibrate support-bot``.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from sim.config import ConfigError
from sim.latency import Z99, lognormal_sigma
from sim.store import Memory
from sim.textbank import SLOTS, Slot

FORMAT = 1
DEFAULT = "default"
VALUES_PER_SLOT = 6


def default_path() -> Path:
    """The shipped profile."""
    return Path(str(files("sim") / "data" / "calibration.json"))


def load_profile(spec: str) -> dict[str, Any]:
    """A profile by path, or the shipped one for ``"default"``."""
    path = default_path() if spec == DEFAULT else Path(spec)
    try:
        profile = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such calibration profile") from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: not a readable calibration profile: {err}") from None
    if not isinstance(profile, dict) or profile.get("format") != FORMAT:
        raise ConfigError(f"{path}: field 'format' = {profile.get('format')!r}: expected {FORMAT}")
    return profile


# -- similarity -------------------------------------------------------------------


def _stats(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    p05, p50, p95 = np.percentile(arr, [5, 50, 95])
    return {
        "n": int(arr.size),
        "mean": round(float(arr.mean()), 4),
        "sd": round(float(arr.std()), 4),
        "p05": round(float(p05), 4),
        "p50": round(float(p50), 4),
        "p95": round(float(p95), 4),
    }


def _slot_texts(slot: Slot) -> dict[str, list[str]]:
    values = slot.values[:VALUES_PER_SLOT]
    return {
        "memories": [m.format(v=v) for v in values for m in slot.memories],
        "statements": [s.format(v=v) for v in values for s in slot.statements],
        "probes": list(slot.probes),
    }


def calibrate(
    embedder: Any,
    make_store: Callable[[str, str], Any] | None,
    sizes: Iterable[int],
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """A whole profile: the embedder's similarities and, if given, the store's latency."""
    if progress:
        progress("similarities")
    profile = {
        "format": FORMAT,
        "embedder": embedder.model,
        "similarity": similarity_profile(embedder),
    }
    if make_store is not None:
        profile["store"] = store_profile(make_store, sizes, progress=progress)
        profile["store_collection"] = collection_profile(make_store, progress=progress)
    return profile


def register_bank(catalog: Any, slots: tuple[Slot, ...] = SLOTS) -> None:
    """Register the calibration texts of the fact bank with their latent topics.

    After this, a :class:`~sim.embed.LatentEmbedder` over ``catalog.topics`` can be
    measured with :func:`similarity_profile` like a real model.
    """
    for slot in slots:
        for value in slot.values[:VALUES_PER_SLOT]:
            for variant in range(len(slot.memories)):
                catalog.memory_text(slot, value, variant)
            for i, template in enumerate(slot.statements):
                catalog.register(
                    template.format(v=value), (("fact", slot.key, value, "statement", i),)
                )
        for i, probe in enumerate(slot.probes):
            catalog.register(probe, (("probe", slot.key, i),))


def similarity_profile(embedder: Any, slots: tuple[Slot, ...] = SLOTS) -> dict[str, Any]:
    """Measure the similarity profile of ``embedder`` on the fact bank."""
    texts = {s.key: _slot_texts(s) for s in slots}
    flat = sorted({t for d in texts.values() for group in d.values() for t in group})
    vectors = dict(zip(flat, embedder.embed(flat), strict=True))

    def cos(a: str, b: str) -> float:
        return float(vectors[a] @ vectors[b])

    pairs: dict[str, list[float]] = {
        k: [] for k in ("paraphrase", "same_slot", "statement", "probe")
    }
    per_slot = {}
    for slot in slots:
        values, n = slot.values[:VALUES_PER_SLOT], len(slot.memories)
        mem = [[m.format(v=v) for m in slot.memories] for v in values]
        phrasing = [[1.0] * n for _ in range(n)]
        for i, j in itertools.combinations(range(n), 2):
            sims = [cos(row[i], row[j]) for row in mem]
            pairs["paraphrase"] += sims
            phrasing[i][j] = phrasing[j][i] = round(float(np.mean(sims)), 4)
        same = [cos(a[i], b[i]) for a, b in itertools.combinations(mem, 2) for i in range(n)]
        stmt = [
            cos(s.format(v=v), m)
            for v, row in zip(values, mem, strict=True)
            for s in slot.statements
            for m in row
        ]
        probe = [cos(p, m) for p in slot.probes for row in mem for m in row]
        pairs["same_slot"] += same
        pairs["statement"] += stmt
        pairs["probe"] += probe
        per_slot[slot.key] = {
            "phrasing": phrasing,
            "same_slot": round(float(np.mean(same)), 4),
            "statement": round(float(np.mean(stmt)), 4),
            "probe": round(float(np.mean(probe)), 4),
        }
    distinct = [
        cos(texts[a.key]["memories"][k], texts[b.key]["memories"][k])
        for a, b in itertools.combinations(slots, 2)
        for k in range(min(len(texts[a.key]["memories"]), len(texts[b.key]["memories"])))
    ]
    return {
        "background": round(float(np.mean(distinct)), 4),
        "slots": per_slot,
        "pairs": {**{k: _stats(v) for k, v in pairs.items()}, "distinct": _stats(distinct)},
    }


def scalar_profile(
    paraphrase: float,
    same_slot_share: float,
    statement: float,
    probe: float,
    slots: tuple[Slot, ...] = SLOTS,
) -> dict[str, Any]:
    """A similarity profile from four numbers (the same for every slot), no background."""
    per_slot = {}
    for slot in slots:
        n = len(slot.memories)
        phrasing = [[1.0 if i == j else paraphrase for j in range(n)] for i in range(n)]
        per_slot[slot.key] = {
            "phrasing": phrasing,
            "same_slot": paraphrase * same_slot_share,
            "statement": statement,
            "probe": probe,
        }
    return {"background": 0.0, "slots": per_slot}


# -- the latent geometry a profile implies --------------------------------------------


@dataclass(frozen=True, slots=True)
class SlotGeometry:
    """Weights that make latent vectors reproduce one slot's measured similarities.

    A memory phrasing ``i`` of fact ``f`` is
    ``sqrt(p[i])·centre(f) + sqrt(t)·u_template(i) + sqrt(1-p[i]-t)·noise`` with
    ``centre(f) = sqrt(g)·u_slot + sqrt(1-g)·u_value``: two phrasings of one fact
    meet in the centre, one phrasing of two values of the slot meets in ``u_slot``
    and in its template (the share ``t``, needed when a model finds "User's team
    has 12 people." closer to "…40 people." than to a rewording). A statement of
    ``f`` is ``w_statement·centre(f) + …``, a probe ``w_probe·u_slot + …``. On top,
    every text shares one direction with weight ``sqrt(background)``.
    """

    p: tuple[float, ...]
    g: float
    t: float
    w_statement: float
    w_probe: float


def _clamp(x: float, lo: float = 0.0, hi: float = 0.995) -> float:
    return min(max(x, lo), hi)


def _phrasing_shares(phrasing: list[list[float]], background: float) -> tuple[float, ...]:
    """Per-phrasing ``p`` with ``sqrt(p_i p_j)`` closest to the (background-free) pair means.

    Least squares on logs: ``log q_ij = (log p_i + log p_j) / 2``.
    """
    n = len(phrasing)
    q = [
        [_clamp((phrasing[i][j] - background) / (1 - background), 0.05) for j in range(n)]
        for i in range(n)
    ]
    if n == 1:
        return (0.9,)
    if n == 2:
        return (q[0][1], q[0][1])
    rows, rhs = [], []
    for i, j in itertools.combinations(range(n), 2):
        row = [0.0] * n
        row[i] = row[j] = 0.5
        rows.append(row)
        rhs.append(math.log(q[i][j]))
    logs = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    return tuple(_clamp(math.exp(x), 0.05) for x in logs)


def slot_geometry(slot_profile: dict[str, Any], background: float) -> SlotGeometry:
    """Solve one slot's weights from its measured means (see :class:`SlotGeometry`)."""
    b = background
    p = _phrasing_shares(slot_profile["phrasing"], b)
    mean_p = float(np.mean(p))
    root_p = float(np.mean(np.sqrt(p)))
    same = _clamp((slot_profile["same_slot"] - b) / (1 - b), 0.0)
    g = _clamp(same / mean_p, 0.0, 0.9)
    t = _clamp(same - mean_p * g, 0.0, max(0.0, 0.99 - max(p)))  # what the slot cannot explain
    w_statement = _clamp((slot_profile["statement"] - b) / ((1 - b) * root_p), 0.0)
    w_probe = _clamp(
        (slot_profile["probe"] - b) / ((1 - b) * math.sqrt(max(g, 1e-6)) * root_p), 0.0
    )
    return SlotGeometry(p, g, t, w_statement, w_probe)


# -- store latency --------------------------------------------------------------------


@dataclass(frozen=True)
class StoreLatencyFit:
    """The modelled store latency at one number of users: medians and log-spreads."""

    query_p50_s: float
    query_sigma: float
    add_p50_s: float
    add_sigma: float
    query_s_per_vector: float
    reference_vectors: int


COLLECTION_SIZES = (20, 200, 1000, 2000)
"""Sizes of one user's collection at which ``store_profile`` times queries."""


def store_latency(profile: dict[str, Any], layout: str, users: int) -> StoreLatencyFit | None:
    """The store's latency distribution for ``layout`` at ``users`` users.

    The p50 and p99 of query and add latency are interpolated in log(users)
    between the measured sizes (clamped to the measured range); each call is then
    drawn from the log-normal with that median and p99. The query median grows
    with the vectors a query scans by the profile's ``store_collection`` slope
    (0 for a profile without one), from the ``memories_per_user`` it was measured
    at. ``None`` if the profile has no store figures for the layout.
    """
    table = profile.get("store", {}).get(layout)
    if not table:
        return None
    sizes = sorted(int(k) for k in table)
    x = math.log(min(max(users, sizes[0]), sizes[-1]))
    xs = [math.log(s) for s in sizes]

    def at(key: str) -> float:
        return float(np.interp(x, xs, [table[str(s)][key] for s in sizes]))

    query_p50, add_p50 = at("query_p50_s"), at("add_p50_s")
    collection = profile.get("store_collection", {}).get(layout, {})
    return StoreLatencyFit(
        query_p50,
        lognormal_sigma(query_p50, at("query_p99_s"), Z99),
        add_p50,
        lognormal_sigma(add_p50, at("add_p99_s"), Z99),
        float(collection.get("query_s_per_vector", 0.0)),
        int(table[str(sizes[0])]["memories_per_user"]),
    )


def _timed_store(
    make_store: Callable[[str, str], Any], layout: str, namespace: str
) -> tuple[Any, Callable[[], None]]:
    """A fresh measured store and the function that drops what it created."""
    store = make_store(layout, namespace)
    return store, getattr(store, "drop_collections", None) or (lambda: None)


def _unit(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def store_profile(
    make_store: Callable[[str, str], Any],
    sizes: Iterable[int],
    memories_per_user: int = 20,
    queries: int = 200,
    dim: int = 384,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure a store's add and query latency per layout and number of users.

    ``make_store(layout, namespace)`` returns an empty store that measures its
    calls. Each user gets ``memories_per_user`` random unit vectors in one add;
    then ``queries`` queries go to random users. The result also counts query
    results that belonged to another user (``cross_user_results``).
    """
    rng = np.random.default_rng(seed)
    result: dict[str, Any] = {}
    for layout in ("per-user", "shared"):
        result[layout] = {}
        for users in sizes:
            if progress:
                progress(f"{layout}, {users} users")
            store, drop = _timed_store(make_store, layout, f"calibrate-{layout}-{users}")
            adds, lookups = [], []
            for user in range(users):
                memories = [_probe_memory(user, i) for i in range(memories_per_user)]
                store.add(user, memories, _unit(rng, memories_per_user, dim))
                adds.append(store.last_call_s)
            for user in rng.integers(0, users, queries):
                found, _ = store.query(int(user), _unit(rng, 1, dim)[0])
                lookups.append(store.last_call_s)
                if any(m.owner != int(user) for m in found):
                    store.cross_user_results += 1
            result[layout][str(users)] = {
                "memories_per_user": memories_per_user,
                "add_p50_s": round(float(np.percentile(adds, 50)), 6),
                "add_p99_s": round(float(np.percentile(adds, 99)), 6),
                "query_p50_s": round(float(np.percentile(lookups, 50)), 6),
                "query_p99_s": round(float(np.percentile(lookups, 99)), 6),
                "cross_user_results": int(store.cross_user_results),
            }
            drop()
    return result


def collection_profile(
    make_store: Callable[[str, str], Any],
    sizes: Iterable[int] = COLLECTION_SIZES,
    queries: int = 100,
    dim: int = 384,
    seed: int = 1,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Query latency per layout against the size of one user's collection.

    One user's collection grows to each of ``sizes`` (in adds of the difference);
    at each size ``queries`` queries are timed. ``query_s_per_vector`` is the
    least-squares slope of the median against the size.
    """
    rng = np.random.default_rng(seed)
    result: dict[str, Any] = {}
    for layout in ("per-user", "shared"):
        if progress:
            progress(f"{layout}, one collection of {', '.join(map(str, sizes))} memories")
        store, drop = _timed_store(make_store, layout, f"calibrate-{layout}-collection")
        held, medians = 0, {}
        for size in sorted(sizes):
            memories = [_probe_memory(0, i) for i in range(held, size)]
            store.add(0, memories, _unit(rng, size - held, dim))
            held = size
            lookups = []
            for _ in range(queries):
                store.query(0, _unit(rng, 1, dim)[0])
                lookups.append(store.last_call_s)
            medians[str(size)] = round(float(np.percentile(lookups, 50)), 6)
        drop()
        xs = [int(k) for k in medians]
        slope = float(np.polyfit(xs, list(medians.values()), 1)[0]) if len(xs) > 1 else 0.0
        result[layout] = {
            "query_p50_s": medians,
            "query_s_per_vector": round(max(slope, 0.0), 10),
        }
    return result


def _probe_memory(user: int, i: int) -> Memory:
    text = f"Calibration memory {i} of user {user}."
    return Memory(i + 1, text, 10, 5, "other", 0.0, "calibration", text, owner=user)
