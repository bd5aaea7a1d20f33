"""The real components (``make bench``): ChromaDB layouts and the fast path's fidelity.

Writes two sections of docs/benchmarks.md: per-user collections against one
shared collection on a real ChromaDB server, and the gaps between
latent+numpy and minilm+chroma-http on the same workload.
"""

from __future__ import annotations

import time
from datetime import date

import pytest
from test_bench import machine, write_between

import scenarios
from reports.output import summarize
from sim.calibration import store_profile
from sim.runner import run_scenario

pytest.importorskip("chromadb")
pytest.importorskip("sentence_transformers")

SIZES = (10, 100, 1000)
METRICS = ("memories_per_user_mean", "dedup_rate", "recall", "duplicate_ratio", "tokens_total")


@pytest.mark.bench
def test_chroma_layouts_on_a_server(chroma_http):
    from sim.chroma import http_store

    host, port = chroma_http

    def make(layout: str, namespace: str):
        return http_store(host, port, 384, layout, namespace, measure=True)

    profile = store_profile(make, SIZES, memories_per_user=20, queries=500, seed=1)
    rows = []
    for users in SIZES:
        cells = []
        for layout in ("per-user", "shared"):
            s = profile[layout][str(users)]
            cells += [
                f"{s['query_p50_s'] * 1000:.1f}",
                f"{s['query_p99_s'] * 1000:.1f}",
                f"{s['add_p50_s'] * 1000:.1f}",
                str(s["cross_user_results"]),
            ]
        rows.append(f"| {users:,} | " + " | ".join(cells) + " |")
    leaks = sum(profile[lay][str(u)]["cross_user_results"] for lay in profile for u in SIZES)
    write_between(
        "chroma",
        "\n".join(
            [
                f"Measured {date.today().isoformat()} on {machine()} with `make bench`: a "
                "`chroma run` server on 127.0.0.1, 20 memories (384-d) per user, 500 queries "
                "to random users, each returning all of that user's memories.",
                "",
                "| users | per-user query p50 (ms) | p99 | add p50 | other users' results "
                "| shared query p50 (ms) | p99 | add p50 | other users' results |",
                "|---|---|---|---|---|---|---|---|---|",
                *rows,
                "",
                f"Queries that returned another user's memory: {leaks} "
                f"(of {500 * len(SIZES) * 2:,}; every result's `user_id` is checked).",
            ]
        ),
    )
    assert leaks == 0


@pytest.mark.bench
def test_fidelity_gaps(chroma_http):
    host, port = chroma_http
    rows = []
    for users, days in ((60, 10), (200, 14)):
        base = scenarios.load("support-bot")[0].with_overrides(
            users=users, days=days, strategies=["batched-dedup-budget"]
        )
        real = base.model_copy(
            update={
                "vector_store": base.vector_store.model_copy(update={"host": host, "port": port})
            }
        ).with_overrides(embedder="minilm", store="chroma-http")
        started = time.perf_counter()
        fast = summarize(run_scenario(base))["strategies"]["batched-dedup-budget"]
        fast_s = time.perf_counter() - started
        started = time.perf_counter()
        slow = summarize(run_scenario(real))["strategies"]["batched-dedup-budget"]
        slow_s = time.perf_counter() - started
        for metric in METRICS:
            gap = (fast[metric] - slow[metric]) / slow[metric] if slow[metric] else 0.0
            rows.append(
                f"| {users} × {days} | {metric} | {fast[metric]:,} | {slow[metric]:,} "
                f"| {gap:+.1%} |"
            )
        rows.append(f"| {users} × {days} | run time (s) | {fast_s:.1f} | {slow_s:.1f} | |")
    write_between(
        "fidelity",
        "\n".join(
            [
                f"Measured {date.today().isoformat()} on {machine()} with `make bench`: "
                "support-bot, batched-dedup-budget, seed 42, the same workload through "
                "latent+numpy (the fast path, shipped calibration profile) and "
                "minilm+chroma-http (all-MiniLM-L6-v2 on the CPU, a ChromaDB server). "
                "The test suite checks the first size within 5% "
                "(`tests/test_real.py::test_fidelity_latent_numpy_against_minilm_chroma`).",
                "",
                "| users × days | metric | latent+numpy | minilm+chroma | gap |",
                "|---|---|---|---|---|",
                *rows,
            ]
        ),
    )
