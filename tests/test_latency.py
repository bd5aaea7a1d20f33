"""Latency profiles: cited figures inside the modelled spread, growth with prompt and load."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import make_scenario
from sim.config import LLMConfig
from sim.latency import FALLBACK, PROFILES, resolve
from sim.llm import MockLLM
from sim.pricing import scenario_rates
from sim.runner import resolve_config, run_scenario
from sim.tokens import TokenCounter
from sim.workload import TextCatalog
from strategies.naive_append import NaiveAppend

# The published figures each profile is fitted to or checked against (docs/latency.md):
# (uncached prompt tokens, seconds, what the figure is). "floor": the minimum time to
# first token over repeats, without network (Small Model Forensics); "p50"/"p95": the
# percentiles of short calls (modelstats.ai); "ttft": a median time to first token.
CITED = {
    "gpt-4o-mini": [
        (1_011, 0.270, "floor"),
        (9_737, 0.888, "floor"),
        (16_468, 0.975, "floor"),
        (32_762, 1.140, "floor"),
        (58_988, 2.252, "floor"),
        (87_437, 4.706, "floor"),
        (100, 0.536, "p50"),
        (100, 0.844, "p95"),
        (700, 0.460, "ttft"),  # krabarena warm p50, 700-token prefix
    ],
    "gpt-4.1-mini": [
        (100, 0.661, "p50"),
        (100, 1.087, "p95"),
        (10_000, 0.93, "ttft"),  # Artificial Analysis, 10k input tokens
        # gpt-4.1-nano's floors, the stand-in for the prefill slope
        (250, 0.176, "floor"),
        (16_000, 0.359, "floor"),
        (64_000, 0.882, "floor"),
    ],
    "gpt-5-mini": [
        # gpt-5.4-mini's floors, the stand-in
        (250, 0.233, "floor"),
        (16_000, 0.349, "floor"),
        (64_000, 0.779, "floor"),
    ],
    "claude-haiku-4-5": [
        (1_068, 0.446, "floor"),
        (8_773, 0.526, "floor"),
        (17_763, 0.608, "floor"),
        (34_464, 0.817, "floor"),
        (66_809, 1.241, "floor"),
        (100_029, 1.342, "floor"),
        (100, 0.541, "p50"),
        (100, 1.591, "p95"),
        (200, 0.597, "ttft"),  # K. Ganglani, medium prompt
    ],
    "gemini-2.5-flash": [
        (891, 0.334, "floor"),
        (7_812, 0.522, "floor"),
        (15_123, 0.430, "floor"),
        (29_983, 0.787, "floor"),
        (59_918, 1.107, "floor"),
        (101_762, 2.026, "floor"),
        (100, 0.477, "p50"),
        (100, 0.776, "p95"),
    ],
}

SPREAD = (0.01, 0.99)
"""A cited figure must lie inside the profile's 1st-99th percentile at its prompt size."""


def test_every_profile_has_cited_figures():
    assert set(CITED) == set(PROFILES)


@pytest.mark.parametrize("model", sorted(PROFILES))
def test_cited_figures_lie_within_the_profiles_spread(model):
    """Medians and percentiles as cited; floors grow with the prompt as the profile does.

    A floor is measured without network time, so it sits below end-to-end latency by
    a constant: each floor is shifted by the gap between the modelled median and the
    floor at the smallest measured size, and must then lie within the spread at its
    own size (the growth of the floors is the prefill the profile models).
    """
    profile = resolve(LLMConfig(model=model))
    floors = sorted((n, s) for n, s, kind in CITED[model] if kind == "floor")
    gap = profile.quantile_s(0.5, floors[0][0]) - floors[0][1] if floors else 0.0
    assert gap >= 0  # a floor is below the median
    for tokens, seconds, kind in CITED[model]:
        shifted = seconds + gap if kind == "floor" else seconds
        low = profile.quantile_s(SPREAD[0], tokens)
        high = profile.quantile_s(SPREAD[1], tokens)
        assert low <= shifted <= high, (model, tokens, seconds, kind, low, high)
        if kind in ("p50", "ttft"):  # a median is near the modelled median
            assert seconds == pytest.approx(profile.quantile_s(0.5, tokens), rel=0.25)
        if kind == "p95":
            assert seconds == pytest.approx(profile.quantile_s(0.95, tokens), rel=0.05)


def sampled(llm: MockLLM, prompt_tokens: int, users: int = 4000) -> np.ndarray:
    """Chat latencies of one call per user at ``prompt_tokens`` (replies of one length)."""
    return np.array([llm.latency(llm.stream(u, "chat"), prompt_tokens, 140) for u in range(users)])


def test_growing_prompt_raises_p50_and_p99_as_the_profile_predicts():
    llm = MockLLM(LLMConfig(), TokenCounter(), TextCatalog(), seed=11)
    profile = llm.profile
    short, long = sampled(llm, 1_000), sampled(llm, 20_000)
    for q in (0.5, 0.99):
        predicted = profile.quantile_s(q, 20_000, 140) - profile.quantile_s(q, 1_000, 140)
        measured = np.quantile(long, q) - np.quantile(short, q)
        assert measured == pytest.approx(predicted, rel=0.15), q
    # The tail widens, not only shifts: p99/p50 is larger on the long prompt.
    assert np.quantile(long, 0.99) / np.median(long) > np.quantile(short, 0.99) / np.median(short)


class _Busy:
    def __init__(self, busy: int, capacity: int) -> None:
        self.busy, self.capacity = busy, capacity


def test_load_on_the_endpoint_widens_the_spread_not_the_median():
    idle = MockLLM(LLMConfig(), TokenCounter(), TextCatalog(), seed=4)
    full = MockLLM(LLMConfig(), TokenCounter(), TextCatalog(), seed=4)
    full.endpoint = _Busy(8, 8)
    a, b = sampled(idle, 2_000), sampled(full, 2_000)
    assert np.median(b) == pytest.approx(np.median(a), rel=0.05)
    predicted = full.profile.quantile_s(0.99, 2_000, 140, load=1.0)
    assert np.quantile(b, 0.99) == pytest.approx(predicted, rel=0.1)
    assert np.quantile(b, 0.99) > 1.3 * np.quantile(a, 0.99)


def test_the_model_selects_its_profile_and_llm_fields_override_it():
    haiku = resolve(LLMConfig(model="claude-haiku-4-5", provider="anthropic"))
    assert haiku.profile == "claude-haiku-4-5"
    assert haiku.decode_tokens_per_s == PROFILES["claude-haiku-4-5"].decode_tokens_per_s
    dated = resolve(LLMConfig(model="gpt-4o-mini-2024-07-18"))
    assert dated.prefill_s_per_token == PROFILES["gpt-4o-mini"].prefill_s_per_token
    unknown = resolve(LLMConfig(model="some-model"))
    assert unknown.profile.startswith(f"{FALLBACK} (no profile for some-model)")
    tuned = resolve(LLMConfig(model="gemini-2.5-flash", ttft_base_s=1.0, jitter_max=2.0))
    assert (tuned.ttft_base_s, tuned.jitter_max) == (1.0, 2.0)
    assert tuned.prefill_s_per_token == PROFILES["gemini-2.5-flash"].prefill_s_per_token
    assert "ttft_base_s" in tuned.profile and "jitter_max" in tuned.profile


def test_changing_the_model_changes_a_runs_latency_and_the_resolved_config_says_why():
    base = make_scenario(users=4, days=1, seed=2)
    gemini = base.with_overrides(llm={"model": "gemini-2.5-flash", "provider": "google"})
    a = run_scenario(base, strategies=[NaiveAppend()]).runs[0]
    b = run_scenario(gemini, strategies=[NaiveAppend()]).runs[0]
    assert list(a.calls["tokens_out"]) == list(b.calls["tokens_out"])
    # gemini-2.5-flash decodes ~3.5 times faster: the same replies come back sooner.
    assert b.calls["latency_s"].median() < 0.8 * a.calls["latency_s"].median()
    resolved = resolve_config(gemini, [NaiveAppend()], scenario_rates(gemini))["resolved"]
    assert resolved["latency"]["profile"] == "gemini-2.5-flash"


@pytest.mark.parametrize("model", sorted(PROFILES))
def test_prefill_is_the_least_squares_slope_of_the_cited_floors(model):
    floors = np.array([(n, s) for n, s, kind in CITED[model] if kind == "floor"])
    slope = np.polyfit(floors[:, 0], floors[:, 1], 1)[0]
    assert resolve(LLMConfig(model=model)).prefill_s_per_token == pytest.approx(slope, rel=0.05)
