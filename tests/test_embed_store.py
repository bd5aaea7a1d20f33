"""LatentEmbedder calibration and determinism; NumpyStore exactness, isolation, deletes."""

from __future__ import annotations

import hashlib
import itertools
import string

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.calibration import load_profile, register_bank, scalar_profile, similarity_profile
from sim.config import EmbeddingConfig
from sim.embed import LatentEmbedder
from sim.store import Memory, NumpyStore, normalized_hash
from sim.textbank import SLOTS
from sim.workload import TextCatalog

# -- LatentEmbedder ----------------------------------------------------------------------------


def latent(topics, seed: int, cfg: EmbeddingConfig | None = None) -> LatentEmbedder:
    """A latent embedder with the scalar (uncalibrated) geometry of ``cfg``."""
    cfg = cfg or EmbeddingConfig()
    similarity = scalar_profile(
        cfg.paraphrase_similarity,
        cfg.same_slot_similarity,
        cfg.statement_similarity,
        cfg.probe_similarity,
    )
    return LatentEmbedder(cfg.dim, topics, seed, similarity)


def memory_bank(catalog: TextCatalog) -> dict[tuple[str, str], list[str]]:
    """Every memory phrasing of every (slot, value), registered in ``catalog``."""
    return {
        (slot.key, value): [catalog.memory_text(slot, value, i) for i in range(len(slot.memories))]
        for slot in SLOTS
        for value in slot.values
    }


def register_probes(catalog: TextCatalog) -> list[tuple[str, str]]:
    """Every probe question, registered the way the workload does it."""
    return [
        (slot.key, catalog.register(text, (("probe", slot.key, i),)))
        for slot in SLOTS
        for i, text in enumerate(slot.probes)
    ]


@pytest.fixture(scope="module")
def bank():
    catalog = TextCatalog()
    memories = memory_bank(catalog)
    probes = register_probes(catalog)
    embedder = latent(catalog.topics, seed=1)
    vectors = {key: embedder.embed(texts) for key, texts in memories.items()}
    return embedder, catalog, memories, probes, vectors


def test_vectors_are_unit_norm_float32(bank):
    embedder, catalog, memories, probes, _ = bank
    texts = [t for ts in memories.values() for t in ts] + [p for _, p in probes]
    texts += ["a text nobody registered", "", "Hi, my name is Priya. How do I reset my password?"]
    catalog.register(texts[-1], (("fact", "name", "Priya", "statement", 0), ("question", 0)))
    out = embedder.embed(texts)
    assert out.dtype == np.float32
    assert out.shape == (len(texts), EmbeddingConfig().dim)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_vectors_are_deterministic_per_seed(bank):
    _, catalog, memories, probes, _ = bank
    texts = [ts[0] for ts in memories.values()] + [p for _, p in probes] + ["unregistered text"]
    cfg = EmbeddingConfig(dim=64)
    a = latent(catalog.topics, 5, cfg).embed(texts)
    # Another instance, texts in another order and one at a time: same vectors.
    other = latent(catalog.topics, 5, cfg)
    b = np.stack([other.embed([t])[0] for t in reversed(texts)])[::-1]
    assert np.array_equal(a, b)
    c = latent(catalog.topics, 6, cfg).embed(texts)
    cos = np.sum(a * c, axis=1)
    assert np.all(np.abs(cos) < 0.9)
    assert abs(cos.mean()) < 0.2  # unrelated directions


@pytest.mark.parametrize("paraphrase", [0.92, 0.8])
def test_paraphrase_similarity_is_calibrated(paraphrase):
    catalog = TextCatalog()
    memories = memory_bank(catalog)
    embedder = latent(catalog.topics, 2, EmbeddingConfig(paraphrase_similarity=paraphrase))
    same = []
    for texts in memories.values():
        vecs = embedder.embed(texts)
        same += [float(vecs[a] @ vecs[b]) for a, b in itertools.combinations(range(len(texts)), 2)]
    assert len(same) > 200
    assert np.mean(same) == pytest.approx(paraphrase, abs=0.05)


def test_memories_of_different_slots_are_unrelated(bank):
    _, _, _, _, vectors = bank
    keys = list(vectors)
    cross = [
        float(vectors[a][0] @ vectors[b][0])
        for a, b in itertools.combinations(keys, 2)
        if a[0] != b[0]
    ]
    assert len(cross) > 1000
    assert abs(np.mean(cross)) < 0.1
    # Same slot, another value: the shared slot direction, g·p on average.
    cfg = EmbeddingConfig()
    same_slot = [
        float(vectors[a][0] @ vectors[b][0])
        for a, b in itertools.combinations(keys, 2)
        if a[0] == b[0]
    ]
    expected = cfg.same_slot_similarity * cfg.paraphrase_similarity
    assert np.mean(same_slot) == pytest.approx(expected, abs=0.05)


def test_statement_similarity_is_calibrated(bank):
    embedder, catalog, _, _, vectors = bank
    sims = []
    for slot in SLOTS:
        for value in slot.values:
            for i, template in enumerate(slot.statements):
                text = catalog.register(
                    template.format(v=value), (("fact", slot.key, value, "statement", i),)
                )
                sims += list(vectors[(slot.key, value)] @ embedder.embed([text])[0])
    assert np.mean(sims) == pytest.approx(EmbeddingConfig().statement_similarity, abs=0.05)


def test_probe_is_closest_to_memories_of_its_slot(bank):
    embedder, _, _, probes, vectors = bank
    cfg = EmbeddingConfig()
    for slot_key, text in probes:
        q = embedder.embed([text])[0]
        own = np.concatenate([v @ q for k, v in vectors.items() if k[0] == slot_key])
        other = np.concatenate([v @ q for k, v in vectors.items() if k[0] != slot_key])
        assert own.min() > other.max(), slot_key
        assert own.mean() == pytest.approx(cfg.probe_similarity, abs=0.07)
        assert abs(other.mean()) < 0.1


# -- NumpyStore ------------------------------------------------------------------------------

DIM = 16


def unit_rows(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal((n, dim))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def memory(mid: int, facts: tuple = (), text: str | None = None, owner: int = -1) -> Memory:
    return Memory(
        id=mid,
        text=text or f"memory {mid}",
        line_tokens=5,
        importance=5,
        category="other",
        created_at=float(mid),
        embedding_model="m",
        content_hash=f"h{mid}",
        facts=facts,
        owner=owner,
    )


def brute_cosines(vectors: np.ndarray, q: np.ndarray) -> np.ndarray:
    v = vectors.astype(np.float64)
    q = q.astype(np.float64)
    return v @ q / (np.linalg.norm(v, axis=1) * np.linalg.norm(q))


def test_query_is_exact_cosine():
    rng = np.random.default_rng(0)
    store = NumpyStore(DIM)
    vecs = unit_rows(rng, 30)
    mems = [memory(i) for i in range(30)]
    store.add(7, mems[:13], vecs[:13])
    store.add(7, mems[13:], vecs[13:])
    for q in unit_rows(rng, 5):
        records, sims = store.query(7, q)
        assert [m.id for m in records] == list(range(30))
        np.testing.assert_allclose(sims, brute_cosines(vecs, q), atol=1e-6)
    # A stored vector is its own best match, with cosine 1.
    records, sims = store.query(7, vecs[21])
    assert records[int(np.argmax(sims))].id == 21
    assert sims.max() == pytest.approx(1.0, abs=1e-6)


def test_partitions_isolate_users():
    rng = np.random.default_rng(1)
    store = NumpyStore(DIM)
    q = unit_rows(rng, 1)[0]
    store.add(1, [memory(i, owner=1) for i in range(5)], unit_rows(rng, 5))
    assert store.count(2) == 0
    assert store.memories(2) == []
    records, sims = store.query(2, q)
    assert records == [] and sims.shape == (0,)
    assert store.duplicates(2) == 0
    store.add(2, [memory(100 + i, owner=2) for i in range(3)], unit_rows(rng, 3))
    store.add(1, [memory(5, owner=1)], unit_rows(rng, 1))
    assert store.count(1) == 6 and store.count(2) == 3
    assert {m.owner for m in store.query(1, q)[0]} == {1}
    assert {m.owner for m in store.query(2, q)[0]} == {2}
    assert [m.id for m in store.memories(2)] == [100, 101, 102]
    store.delete(2, [0, 1, 2])  # ids of user 1's memories: no effect on either user
    assert store.count(1) == 6 and store.count(2) == 3
    store.delete(1, [0, 1, 2, 3, 4, 5])
    assert store.count(1) == 0 and store.count(2) == 3
    assert store.users() == [1, 2]
    store.add(3, [], np.empty((0, DIM), np.float32))  # empty adds create nothing
    assert store.users() == [1, 2]


def test_memories_returns_a_copy():
    store = NumpyStore(DIM)
    store.add(1, [memory(0)], unit_rows(np.random.default_rng(2), 1))
    store.memories(1).clear()
    assert store.count(1) == 1 and len(store.memories(1)) == 1


def test_delete_keeps_remaining_memories_aligned_with_their_vectors():
    rng = np.random.default_rng(3)
    store = NumpyStore(DIM)
    vecs = unit_rows(rng, 20)
    by_id = dict(enumerate(vecs))
    store.add(4, [memory(i) for i in range(20)], vecs)
    store.delete(4, [0, 3, 4, 11, 19, 999])
    remaining = [i for i in range(20) if i not in {0, 3, 4, 11, 19}]
    assert [m.id for m in store.memories(4)] == remaining
    assert store.count(4) == len(remaining)
    q = unit_rows(rng, 1)[0]
    records, sims = store.query(4, q)
    np.testing.assert_allclose(
        sims, brute_cosines(np.stack([by_id[m.id] for m in records]), q), atol=1e-6
    )
    # Add after delete: new rows land after the survivors, still aligned.
    extra = unit_rows(rng, 4)
    by_id.update({20 + i: extra[i] for i in range(4)})
    store.add(4, [memory(20 + i) for i in range(4)], extra)
    store.delete(4, [1, 21])
    records, sims = store.query(4, q)
    assert [m.id for m in records] == [i for i in [*remaining, 20, 21, 22, 23] if i not in (1, 21)]
    np.testing.assert_allclose(
        sims, brute_cosines(np.stack([by_id[m.id] for m in records]), q), atol=1e-6
    )
    for m in records:  # every survivor is still its own nearest neighbour
        ids, s = store.query(4, by_id[m.id])
        assert ids[int(np.argmax(s))].id == m.id


def test_duplicates_count_repeated_truth_keys():
    rng = np.random.default_rng(4)
    store = NumpyStore(DIM)
    mems = [
        memory(0, facts=(("city", 0),)),
        memory(1, facts=(("city", 0),)),  # same fact, another phrasing
        memory(2, facts=(("city", 1),)),  # newer version: a different fact
        memory(3, facts=(("plan", 0),)),
        memory(4, text="User seems to travel often."),  # inference
        memory(5, text="User seems to travel often."),  # the same inference again
        memory(6, text="User is likely not very technical."),
        memory(7, facts=(("city", 0),)),
    ]
    store.add(9, mems, unit_rows(rng, len(mems)))
    assert store.duplicates(9) == 3
    store.delete(9, [1])
    assert store.duplicates(9) == 2
    store.delete(9, [0, 7])  # every copy of city v0 gone
    assert store.duplicates(9) == 1
    store.add(9, [memory(8, facts=(("city", 0),))], unit_rows(rng, 1))
    assert store.duplicates(9) == 1  # the fact is back once: not a duplicate
    store.delete(9, [4])
    assert store.duplicates(9) == 0


def test_growth_keeps_old_vectors():
    rng = np.random.default_rng(5)
    store = NumpyStore(DIM)
    vecs = unit_rows(rng, 70)
    sizes = [1, 1, 5, 1, 9, 20, 1, 32]  # crosses the initial capacity (8) and later doublings
    start = 0
    for size in sizes:
        store.add(0, [memory(i) for i in range(start, start + size)], vecs[start : start + size])
        start += size
        q = unit_rows(rng, 1)[0]
        records, sims = store.query(0, q)
        assert [m.id for m in records] == list(range(start))
        np.testing.assert_allclose(sims, brute_cosines(vecs[:start], q), atol=1e-6)
    assert start == 70


def test_add_rejects_mismatched_lengths():
    store = NumpyStore(DIM)
    with pytest.raises(ValueError, match="2 memories but 1 vectors"):
        store.add(0, [memory(0), memory(1)], unit_rows(np.random.default_rng(6), 1))


# -- normalized_hash -------------------------------------------------------------------------


def test_normalized_hash_examples():
    reference = hashlib.sha256(b"user lives in berlin").hexdigest()
    for text in (
        "User lives in Berlin.",
        "user lives in berlin",
        "  USER  lives\tin Berlin!!! ",
        "User, lives; in: Berlin?",
        "User lives\nin Berlin",
    ):
        assert normalized_hash(text) == reference, text
    assert normalized_hash("User lives in Berlin.") != normalized_hash("User lives in Lisbon.")
    assert normalized_hash("User's plan") == normalized_hash("Users plan")


WORD = st.text(string.ascii_letters + string.digits, min_size=1, max_size=8)
PUNCT = st.text("".join(c for c in string.punctuation if c != "_"), max_size=3)
SPACE = st.text(" \t\n", min_size=1, max_size=3)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(WORD, PUNCT, SPACE, st.booleans()), min_size=1, max_size=8), SPACE, SPACE)
def test_normalized_hash_ignores_case_punctuation_and_spacing(parts, lead, trail):
    canonical = " ".join(w.lower() for w, _, _, _ in parts)
    noisy = (
        lead
        + "".join((w.upper() if up else w) + punct + space for w, punct, space, up in parts)
        + trail
    )
    assert normalized_hash(noisy) == normalized_hash(canonical)
    assert normalized_hash(canonical) == hashlib.sha256(canonical.encode()).hexdigest()


def test_calibrated_latent_reproduces_the_shipped_profile():
    """The latent geometry solved from a profile gives back the profile's similarities."""
    profile = load_profile("default")["similarity"]
    catalog = TextCatalog()
    register_bank(catalog)
    measured = similarity_profile(LatentEmbedder(384, catalog.topics, 3, profile))
    for kind in ("paraphrase", "same_slot", "statement", "distinct"):
        assert measured["pairs"][kind]["mean"] == pytest.approx(
            profile["pairs"][kind]["mean"], abs=0.03
        ), kind
    assert measured["background"] == pytest.approx(profile["background"], abs=0.03)
    gaps = [
        abs(a - b)
        for key, slot in measured["slots"].items()
        for row_a, row_b in zip(slot["phrasing"], profile["slots"][key]["phrasing"], strict=True)
        for a, b in zip(row_a, row_b, strict=True)
    ]
    assert np.mean(gaps) < 0.02 and max(gaps) < 0.08
