"""Embedders: the :class:`Embedder` protocol and the fast, seeded :class:`LatentEmbedder`.

``LatentEmbedder`` does not read words. Each generated text is registered in the
workload's :class:`~sim.workload.TextCatalog` with the latent topics it is about,
and the embedder builds a unit vector from seeded random directions:

* every slot (``city``) has a direction ``u_slot`` and every fact (``city =
  Lisbon``) a direction ``u_fact``; the fact's centre is
  ``sqrt(g)·u_slot + sqrt(1-g)·u_fact`` with ``g = same_slot_similarity``;
* a memory phrasing is ``sqrt(p)·centre + sqrt(1-p)·noise`` with ``p`` drawn per
  phrasing around ``paraphrase_similarity``, so two phrasings of one fact have a
  cosine near ``p`` and distinct facts are nearly orthogonal;
* a user sentence stating the fact, or a question about the slot, points at the
  centre (or at ``u_slot``) so that its mean cosine with a memory of that fact is
  ``statement_similarity`` (or ``probe_similarity``);
* a text with several topics is the normalised sum of their vectors, and a text
  the catalog does not know gets a direction of its own.

All directions derive from ``(seed, topic)`` only, so vectors are identical
across runs, strategies and worker processes.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from sim.config import EmbeddingConfig

EMBED_STREAM = 2  # first spawn-key word of every embedding direction


class Embedder(Protocol):
    """Turns texts into unit vectors (rows of a float32 array)."""

    model: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One unit-norm row per text."""
        ...


def _key_words(key: tuple) -> list[int]:
    digest = hashlib.blake2b(repr(key).encode(), digest_size=16).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]


class LatentEmbedder:
    """Fast mock embedder calibrated by a handful of similarity parameters."""

    def __init__(self, cfg: EmbeddingConfig, topics: dict[str, tuple[tuple, ...]], seed: int):
        self.model = f"latent-{cfg.dim}d"
        self.dim = cfg.dim
        self.cfg = cfg
        self.topics = topics
        self.seed = seed
        self._cache: dict[str, np.ndarray] = {}
        self._directions: dict[tuple, np.ndarray] = {}
        g, p = cfg.same_slot_similarity, cfg.paraphrase_similarity
        self._probe_weight = cfg.probe_similarity / math.sqrt(g * p)
        self._statement_weight = cfg.statement_similarity / math.sqrt(p)
        if self._probe_weight >= 1 or self._statement_weight >= 1:
            raise ValueError(
                "embedding.probe_similarity must be < sqrt(same_slot_similarity * "
                "paraphrase_similarity) and statement_similarity < sqrt(paraphrase_similarity)"
            )

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors for ``texts``, cached per text (read-only rows)."""
        if len(texts) == 1:  # the per-turn query: a view of the cached row, no copy
            return self._cached(texts[0])[np.newaxis]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i] = self._cached(text)
        return out

    def _cached(self, text: str) -> np.ndarray:
        vec = self._cache.get(text)
        if vec is None:
            vec = self._cache[text] = self._vector(text)
            vec.flags.writeable = False
        return vec

    # -- construction ---------------------------------------------------------
    def _direction(self, key: tuple) -> np.ndarray:
        vec = self._directions.get(key)
        if vec is None:
            ss = np.random.SeedSequence([self.seed, EMBED_STREAM, *_key_words(key)])
            vec = np.random.default_rng(ss).standard_normal(self.dim)
            vec /= np.linalg.norm(vec)
            self._directions[key] = vec
        return vec

    def _paraphrase_share(self, key: tuple) -> float:
        """This phrasing's own ``p``: the mean, jittered per phrasing by a seeded draw."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 3, *_key_words(key)]))
        p = self.cfg.paraphrase_similarity + 0.04 * rng.standard_normal()
        return min(max(p, 0.5), 0.995)

    def _fact_centre(self, slot: str, value: str) -> np.ndarray:
        g = self.cfg.same_slot_similarity
        return math.sqrt(g) * self._direction(("slot", slot)) + math.sqrt(1 - g) * self._direction(
            ("value", slot, value)
        )

    def _component(self, comp: tuple) -> np.ndarray:
        kind = comp[0]
        noise = self._direction(comp)
        if kind == "fact":
            _, slot, value, style, _ = comp
            centre = self._fact_centre(slot, value)
            if style == "memory":
                p = self._paraphrase_share(comp)
                return math.sqrt(p) * centre + math.sqrt(1 - p) * noise
            w = self._statement_weight
            return w * centre + math.sqrt(1 - w * w) * noise
        if kind == "probe":
            w = self._probe_weight
            return w * self._direction(("slot", comp[1])) + math.sqrt(1 - w * w) * noise
        return noise

    def _vector(self, text: str) -> np.ndarray:
        comps = self.topics.get(text) or (("text", text),)
        vec = sum(self._component(c) for c in comps)
        return (vec / np.linalg.norm(vec)).astype(np.float32)
