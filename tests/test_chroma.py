"""ChromaStore against real ChromaDB: embedded (PersistentClient) and a `chroma run` server.

Every behavioural test runs in both modes and both layouts and compares with NumpyStore,
the exact reference.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

import numpy as np
import pytest

pytest.importorskip("chromadb")

from chroma_server import free_port
from sim.chroma import (
    MAX_NAME,
    ChromaStore,
    collection_name,
    collection_prefix,
    embedded_store,
    http_store,
    owned_by,
    record_id,
)
from sim.store import Memory, NumpyStore

DIM = 64
LAYOUTS = ("per-user", "shared")
VALID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9]$")

OpenStore = Callable[..., ChromaStore]


@pytest.fixture(scope="session")
def chroma_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("chroma-embedded")


@pytest.fixture(params=["embedded", "http"])
def open_store(request) -> OpenStore:
    """``open_store(layout, namespace, measure=False)`` in the parametrized mode."""
    if request.param == "http":
        host, port = request.getfixturevalue("chroma_http")  # the server starts only if needed

        def open_http(layout: str, namespace: str, measure: bool = False) -> ChromaStore:
            return http_store(host, port, DIM, layout, namespace, measure)

        return open_http
    path = request.getfixturevalue("chroma_dir")

    def open_embedded(layout: str, namespace: str, measure: bool = False) -> ChromaStore:
        return embedded_store(path, DIM, layout, namespace, measure)

    return open_embedded


@pytest.fixture(params=LAYOUTS)
def layout(request) -> str:
    return request.param


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def memory(mid: int, owner: int, facts: tuple = ()) -> Memory:
    return Memory(
        id=mid,
        text=f"memory {mid} of user {owner}",
        line_tokens=7,
        importance=1 + mid % 10,
        category="other" if mid % 3 else "",
        created_at=float(mid) * 1.5,
        embedding_model="test-embedder",
        content_hash=f"h{owner}-{mid}",
        facts=facts,
        owner=owner,
    )


def assert_same_query(store: ChromaStore, ref: NumpyStore, user: int, q: np.ndarray) -> None:
    """Same Memory objects (any order) and the same similarities within 1e-5."""
    got, sims = store.query(user, q)
    want, want_sims = ref.query(user, q)
    assert sims.dtype == np.float32 and sims.shape == (len(got),)
    order = sorted(range(len(got)), key=lambda i: got[i].id)
    want_order = sorted(range(len(want)), key=lambda i: want[i].id)
    assert [id(got[i]) for i in order] == [id(want[i]) for i in want_order]
    np.testing.assert_allclose(sims[order], want_sims[want_order], atol=1e-5)
    assert all(m.owner == user for m in got)


def assert_same_store(store: ChromaStore, ref: NumpyStore, users: list[int]) -> None:
    for user in users:
        assert store.count(user) == ref.count(user)
        assert store.duplicates(user) == ref.duplicates(user)
        assert [id(m) for m in store.memories(user)] == [id(m) for m in ref.memories(user)]
        got, got_vectors = store.memories_with_vectors(user)
        want, want_vectors = ref.memories_with_vectors(user)
        assert [id(m) for m in got] == [id(m) for m in want]
        assert got_vectors.shape == want_vectors.shape == (len(want), DIM)
        np.testing.assert_allclose(got_vectors, want_vectors, atol=1e-6)  # row i is memory i's
    assert store.users() == ref.users()


# -- equivalence with NumpyStore -----------------------------------------------------------------


def test_matches_numpy_store(open_store: OpenStore, layout: str):
    rng = np.random.default_rng(0)
    store, ref = open_store(layout, f"eq-{layout}"), NumpyStore(DIM)
    users = [0, 1, 2, 3, 4, 5]
    next_id = dict.fromkeys(users, 1)
    for round_ in range(8):
        for user in rng.permutation(users):  # users interleaved in a different order each round
            user = int(user)
            n = int(rng.integers(1, 5))
            ids = range(next_id[user], next_id[user] + n)
            next_id[user] += n
            # Few distinct facts per user, so duplicates occur and must be counted alike.
            mems = [memory(i, user, (("slot", int(rng.integers(4))),)) for i in ids]
            vecs = unit_rows(rng, n)
            store.add(user, mems, vecs)
            ref.add(user, mems, vecs)
            if round_ % 3 == 2:
                held = [m.id for m in ref.memories(user)]
                gone = [*rng.choice(held, size=2, replace=False).tolist(), 10_000]  # + unknown id
                store.delete(user, gone)
                ref.delete(user, gone)
            assert_same_query(store, ref, user, unit_rows(rng, 1)[0])
    assert_same_store(store, ref, [*users, 77])  # 77 never stored anything
    assert store.cross_user_results == 0


def test_exact_past_chroma_brute_force_buffer(open_store: OpenStore, layout: str):
    """Over 100 records Chroma answers from its HNSW graph; n_results=count keeps it exact."""
    rng = np.random.default_rng(1)
    store, ref = open_store(layout, f"big-{layout}"), NumpyStore(DIM)
    mems, vecs = [memory(i, 5) for i in range(1, 241)], unit_rows(rng, 240)
    for lo in range(0, 240, 60):
        store.add(5, mems[lo : lo + 60], vecs[lo : lo + 60])
        ref.add(5, mems[lo : lo + 60], vecs[lo : lo + 60])
    gone = list(range(1, 241, 7))
    store.delete(5, gone)
    ref.delete(5, gone)
    for q in unit_rows(rng, 3):
        assert_same_query(store, ref, 5, q)
    assert_same_store(store, ref, [5])


# -- isolation -------------------------------------------------------------------------------------


def test_interleaved_users_never_see_each_other(open_store: OpenStore, layout: str):
    rng = np.random.default_rng(2)
    store = open_store(layout, f"iso-{layout}")
    users = list(range(24))
    shared_vecs = unit_rows(rng, 3)  # every user stores the same vectors and the same ids
    for mid in (1, 2, 3):
        for user in users:
            store.add(user, [memory(mid, user)], shared_vecs[mid - 1 : mid])
    for user in reversed(users):
        got, sims = store.query(user, shared_vecs[0])
        assert sorted(m.id for m in got) == [1, 2, 3]
        assert all(m.owner == user for m in got)
        assert float(sims.max()) == pytest.approx(1.0, abs=1e-5)
        assert [m.owner for m in store.memories(user)] == [user] * 3
    store.delete(3, [1, 2, 3])
    assert store.query(3, shared_vecs[0])[0] == [] and store.memories(3) == []
    assert all(store.count(u) == 3 for u in users if u != 3)  # same ids, other users: kept
    assert store.cross_user_results == 0


def test_isolation_check_counts_and_drops_foreign_records(open_store: OpenStore):
    """A record of user 2 planted in user 1's collection is never handed back."""
    rng = np.random.default_rng(3)
    store = open_store("per-user", "planted")
    vecs = unit_rows(rng, 4)
    store.add(1, [memory(i, 1) for i in (1, 2, 3)], vecs[:3])
    planted = store.client.get_collection(store.collection_name(1))
    planted.add(
        ids=[record_id(2, 9)],
        embeddings=vecs[3:],
        documents=["user 2's secret"],
        metadatas=[{"user_id": "2", "memory_id": 1}],  # even its memory id collides
    )
    got, sims = store.query(1, vecs[3])  # the planted record is the nearest
    assert store.cross_user_results == 1
    assert len(got) == len(sims) == 2 and all(m.owner == 1 for m in got)
    assert [m.id for m in store.memories(1)] == [1, 2, 3]
    assert store.cross_user_results == 2


# -- deletion and fresh start ------------------------------------------------------------------


def test_delete_everything_then_add_again(open_store: OpenStore, layout: str):
    rng = np.random.default_rng(4)
    store = open_store(layout, f"del-{layout}")
    vecs = unit_rows(rng, 6)
    store.add(8, [memory(i, 8) for i in range(1, 5)], vecs[:4])
    store.delete(8, [4, 4, 2])  # repeated ids are deleted once
    assert [m.id for m in store.memories(8)] == [1, 3]
    store.delete(8, [1, 3])
    assert store.count(8) == 0 and store.memories(8) == []
    got, sims = store.query(8, vecs[0])
    assert got == [] and sims.dtype == np.float32 and sims.shape == (0,)
    name = store.collection_name(8)
    assert store.client.get_collection(name).get(where={"user_id": "8"})["ids"] == []
    store.add(8, [memory(5, 8), memory(6, 8)], vecs[4:])
    assert [m.id for m in store.memories(8)] == [5, 6]
    store.delete(99, [1])  # a user who never stored anything: nothing to do


def test_same_namespace_starts_empty(open_store: OpenStore, layout: str):
    rng = np.random.default_rng(5)
    vecs = unit_rows(rng, 3)
    first = open_store(layout, "fresh")
    first.add(1, [memory(1, 1)], vecs[:1])
    first.add(2, [memory(1, 2)], vecs[1:2])
    neighbour = open_store(layout, "fresh-u0000001")  # looks like one of first's names
    neighbour.add(1, [memory(7, 1)], vecs[2:])

    again = open_store(layout, "fresh")
    assert again.count(1) == again.count(2) == 0 and again.query(1, vecs[0])[0] == []
    names = [c.name for c in again.client.list_collections()]
    owned = [n for n in names if again.owns(n)]
    if layout == "shared":
        assert owned == ["fresh-shared"]
        assert again.client.get_collection("fresh-shared").count() == 0
    else:
        assert owned == []
    # Another namespace is untouched, in Chroma, not only in its mirror.
    assert [m.id for m in neighbour.memories(1)] == [7]
    assert neighbour.client.get_collection(neighbour.collection_name(1)).count() == 1


# -- measurement ---------------------------------------------------------------------------------


def test_measure_records_wall_time_of_real_calls(open_store: OpenStore, layout: str):
    rng = np.random.default_rng(6)
    vecs = unit_rows(rng, 3)
    measured = open_store(layout, f"timed-{layout}", measure=True)
    modelled = open_store(layout, f"modelled-{layout}", measure=False)
    assert measured.last_call_s is None  # nothing called yet
    calls: list[Callable[[ChromaStore], object]] = [
        lambda s: s.add(3, [memory(1, 3), memory(2, 3)], vecs[:2]),
        lambda s: s.query(3, vecs[2]),
        lambda s: s.memories(3),
        lambda s: s.delete(3, [1]),
    ]
    for call in calls:
        call(measured)
        assert measured.last_call_s is not None and 0 < measured.last_call_s < 10
        call(modelled)
        assert modelled.last_call_s is None
    measured.query(4, vecs[0])  # a user without memories needs no call
    assert measured.last_call_s == 0.0


# -- names, ids and errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "namespace",
    ["ms-3f9a2c-batched-dedup-budget", "", "..", "a..b", "1.2.3.4", "-x-", "ü/ß ñ", "n" * 900],
)
def test_collection_names_are_valid(namespace: str):
    prefix = collection_prefix(namespace)
    assert VALID_NAME.match(prefix) and ".." not in prefix
    for layout, user in itertools.product(LAYOUTS, [0, 7, -3, 10**40, 10**298, 10**400]):
        name = collection_name(prefix, layout, user)
        assert 3 <= len(name) <= MAX_NAME and VALID_NAME.match(name) and ".." not in name
        assert owned_by(prefix, name)


def test_distinct_namespaces_get_distinct_prefixes():
    namespaces = ["a.b", "a-b", "a b", "a/b", "a_b", "n" * 900, "n" * 901, "", "-"]
    assert len({collection_prefix(n) for n in namespaces}) == len(namespaces)
    assert collection_prefix("ms-3f9a2c-naive-append") == "ms-3f9a2c-naive-append"


def test_odd_namespaces_and_user_ids_work_in_chroma(open_store: OpenStore, layout: str):
    rng = np.random.default_rng(7)
    store = open_store(layout, "odd name/../" + "x" * 600)
    users = [-3, 0, 10**40, 10**298]
    vecs = unit_rows(rng, len(users))
    for i, user in enumerate(users):
        store.add(user, [memory(1, user)], vecs[i : i + 1])
    for i, user in enumerate(users):
        got, sims = store.query(user, vecs[i])
        assert [m.owner for m in got] == [user] and sims[0] == pytest.approx(1.0, abs=1e-5)
    assert store.cross_user_results == 0


def test_add_rejects_bad_input(open_store: OpenStore):
    rng = np.random.default_rng(8)
    store = open_store("shared", "bad-input")
    with pytest.raises(ValueError, match="2 memories but 1 vectors"):
        store.add(0, [memory(1, 0), memory(2, 0)], unit_rows(rng, 1))
    with pytest.raises(ValueError, match="memory id 1 is already stored"):
        store.add(0, [memory(1, 0), memory(1, 0)], unit_rows(rng, 2))
    store.add(0, [memory(1, 0)], unit_rows(rng, 1))
    with pytest.raises(ValueError, match="memory id 1 is already stored"):
        store.add(0, [memory(1, 0)], unit_rows(rng, 1))
    assert store.count(0) == 1 and len(store.memories(0)) == 1
    with pytest.raises(ValueError, match="layout"):
        ChromaStore(store.client, DIM, "sharded", "bad-input")  # type: ignore[arg-type]


def test_kind_names_the_mode(open_store: OpenStore, request):
    store = open_store("per-user", "kind")
    mode = request.node.callspec.params["open_store"]
    assert store.kind == ("chroma-http" if mode == "http" else "chroma")


def test_http_store_without_server_is_a_connection_error():
    with pytest.raises(ConnectionError, match=re.escape("no ChromaDB server at http://127.0.0.1:")):
        http_store("127.0.0.1", free_port(), DIM)
