"""Modelled store latency: a distribution per layout from the calibration profile."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import make_scenario
from sim.calibration import load_profile, store_latency
from sim.context import StoreLatency
from sim.latency import Z99
from sim.runner import run_scenario, store_latency_model
from strategies.batched_dedup_budget import BatchedDedupBudget

PROFILE = {
    "store": {
        "per-user": {
            "10": {"memories_per_user": 20, "add_p50_s": 0.010, "add_p99_s": 0.020,
                   "query_p50_s": 0.002, "query_p99_s": 0.006},
            "1000": {"memories_per_user": 20, "add_p50_s": 0.030, "add_p99_s": 0.090,
                     "query_p50_s": 0.020, "query_p99_s": 0.040},
        },
    },
    "store_collection": {"per-user": {"query_s_per_vector": 1e-5}},
}  # fmt: skip


def test_the_profile_gives_median_and_spread_interpolated_in_log_users():
    fit = store_latency(PROFILE, "per-user", 100)  # halfway between 10 and 1000 in log
    assert fit.query_p50_s == pytest.approx(0.011)
    assert fit.add_p50_s == pytest.approx(0.020)
    p99 = (0.006 + 0.040) / 2
    assert fit.query_sigma == pytest.approx(np.log(p99 / 0.011) / Z99)
    assert store_latency(PROFILE, "per-user", 5) == store_latency(PROFILE, "per-user", 10)
    assert store_latency(PROFILE, "shared", 100) is None


def draws(model: StoreLatency, vectors: int, n: int = 20_000) -> np.ndarray:
    return np.array([model.query(vectors, user) for user in range(n)])


def test_query_draws_follow_the_profiles_p50_and_p99_and_grow_with_the_collection():
    fit = store_latency(PROFILE, "per-user", 1000)
    model = StoreLatency(
        fit.query_p50_s, fit.query_s_per_vector, fit.add_p50_s, fit.query_sigma, fit.add_sigma,
        fit.reference_vectors, seed=3,
    )  # fmt: skip
    at_20 = draws(model, 20)
    assert np.median(at_20) == pytest.approx(0.020, rel=0.03)
    assert np.quantile(at_20, 0.99) == pytest.approx(0.040, rel=0.08)
    at_520 = draws(model.fresh(), 520)
    assert np.median(at_520) == pytest.approx(0.020 + 500 * 1e-5, rel=0.03)
    writes = np.array([model.write(u) for u in range(20_000)])
    assert np.quantile(writes, 0.99) / np.median(writes) == pytest.approx(3.0, rel=0.1)


def test_draws_are_per_user_streams_and_a_fresh_model_repeats_them():
    model = StoreLatency(0.01, 0.0, 0.02, 0.5, 0.5, seed=9)
    first = [model.query(50, 7) for _ in range(5)]
    again = model.fresh()
    again.query(50, 3)  # another user's draws do not shift user 7's
    assert [again.query(50, 7) for _ in range(5)] == first
    assert len(set(first)) == 5


def test_scalar_parameters_are_fixed():
    model = StoreLatency(0.002, 2e-7, 0.003)
    assert model.query(1000, 4) == pytest.approx(0.002 + 2e-7 * 1000)
    assert model.write(4) == 0.003


def test_a_run_draws_store_latency_per_call_and_more_users_is_slower():
    profile = load_profile("default")
    small = make_scenario(users=10, days=2, seed=4)
    big = small.with_overrides(users=1000)
    assert store_latency_model(big, profile).query_base_s > (
        store_latency_model(small, profile).query_base_s
    )
    run = run_scenario(small, strategies=[BatchedDedupBudget()]).runs[0]
    queries = run.calls.loc[run.calls["purpose"] == "store_query", "latency_s"]
    assert queries.nunique() > len(queries) // 2  # drawn, not one fixed value
    assert queries.quantile(0.99) > 1.2 * queries.median()
