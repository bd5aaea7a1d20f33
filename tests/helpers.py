"""Helpers shared by the tests."""

from __future__ import annotations

from typing import Any

from sim.config import Scenario


def make_scenario(**fields: Any) -> Scenario:
    """A small valid scenario; nested sections merge into the defaults."""
    data: dict[str, Any] = {"name": "test", "users": 3, "days": 2}
    for key, value in fields.items():
        if isinstance(value, dict) and key not in ("strategy",):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    return Scenario.model_validate(data)


def single_user_context(defer=None, **llm: Any):
    """A :class:`TurnContext` for user 0 over a noise-free mock LLM, numpy store and the
    shipped calibration; returns ``(ctx, catalog, store, tokens)``.

    ``defer(user, job)`` receives deferred jobs (default: run them at once);
    ``llm`` overrides the noise-free LLM settings.
    """
    from sim.calibration import load_profile
    from sim.context import Services, StoreLatency, TurnContext
    from sim.embed import LatentEmbedder
    from sim.llm import MockLLM
    from sim.pricing import scenario_rates
    from sim.store import NumpyStore
    from sim.tokens import TokenCounter
    from sim.workload import TextCatalog

    noise_free = {
        "extract_miss_rate": 0,
        "extract_hallucination_rate": 0,
        "extract_reword_rate": 0,
        "update_error_rate": 0,
        "summarize_drift": 0,
    }
    scenario = make_scenario(llm={**noise_free, **llm})
    tokens, catalog = TokenCounter(), TextCatalog()
    similarity = load_profile("default")["similarity"]
    embedder = LatentEmbedder(384, catalog.topics, scenario.seed, similarity)
    store = NumpyStore(embedder.dim)
    services = Services(
        scenario,
        tokens,
        MockLLM(scenario.llm, tokens, catalog, scenario.seed),
        embedder,
        store,
        *scenario_rates(scenario),
        StoreLatency(0.002, 0.0, 0.003),
    )
    box: list = []
    ctx = TurnContext(services, 0, "u0", defer or (lambda user, job: job(box[0])))
    box.append(ctx)
    return ctx, catalog, store, tokens
