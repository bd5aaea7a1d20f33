"""Exact figures of tiny.toml, pinned. Regenerate after an intended change with

    MEMSIM_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py

and explain the change in the commit message.

``tiny_summary.json`` pins the run billed without a prompt cache (``[llm.cache]
mode = "none"``): every input token billed and timed in full; keys added to
summary.json since are checked against fixed values (``ADDED_KEYS``) or the cached
file instead of being written to it. ``tiny_cached_summary.json`` pins the default
run (``auto``: gpt-4o-mini, OpenAI's automatic prefix caching).
"""

import json
import os
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden" / "tiny_summary.json"
CACHED_GOLDEN = Path(__file__).parent / "golden" / "tiny_cached_summary.json"
ADDED_KEYS = {
    "probes": 16,
    "cached_input_tokens": 0,
    "cache_write_tokens": 0,
    "cache_hit_share": 0.0,
    "usd_saved_by_cache": 0.0,
    "cached_input_tokens_per_day": [0, 0, 0, 0],
}
"""Per-strategy keys summary.json gained after the golden file was written, and their
value for tiny.toml uncached (keys may be added, none removed): pinned here, so the
golden file keeps the keys it was first written with."""
QUESTION_KEYS = (
    "probe_prompt_tokens_mean",
    "probe_memory_tokens_mean",
    "probe_latency_p50_s",
    "probe_latency_p95_s",
)
"""Added per-question keys: pinned by the cached golden file; here checked against it."""


def _without_version(summary: dict) -> dict:
    return json.loads(json.dumps({k: v for k, v in summary.items() if k != "memsim_version"}))


def _pinned_keys_only(summary: dict) -> dict:
    """The uncached summary as the golden file holds it: without the added keys."""
    pinned = json.loads(json.dumps(summary))
    for block in pinned["strategies"].values():
        for key in (*QUESTION_KEYS, *ADDED_KEYS, "usd_total_uncached", "llm_input_tokens_per_day"):
            block.pop(key, None)
    return pinned


def test_tiny_summary_without_cache_matches_golden(tiny_uncached_summary):
    actual = _without_version(tiny_uncached_summary)
    if os.environ.get("MEMSIM_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(_pinned_keys_only(actual), indent=2) + "\n")
    expected = json.loads(GOLDEN.read_text())
    cached = json.loads(CACHED_GOLDEN.read_text())["strategies"]
    for name, block in expected["strategies"].items():
        got = actual["strategies"][name]
        questions = {key: got.pop(key) for key in QUESTION_KEYS}
        # The same prompts, so the same tokens; no cache, so no faster.
        assert questions["probe_prompt_tokens_mean"] == cached[name]["probe_prompt_tokens_mean"]
        assert questions["probe_memory_tokens_mean"] == cached[name]["probe_memory_tokens_mean"]
        assert questions["probe_latency_p50_s"] >= cached[name]["probe_latency_p50_s"] > 0
        for key, value in ADDED_KEYS.items():
            if key not in block:
                assert got.pop(key) == value, f"{name}.{key}"
        assert got.pop("usd_total_uncached") == block["usd_total"]
        per_day = got.pop("llm_input_tokens_per_day")
        assert len(per_day) == expected["days"] and 0 < sum(per_day) < block["tokens_total"]
        # The headline figures first, for a readable failure.
        for key in (
            "turns",
            "tokens_total",
            "usd_total",
            "tokens_by_purpose",
            "llm_calls_by_purpose",
        ):
            assert got[key] == block[key], f"{name}.{key}"
    assert actual == expected


def test_tiny_summary_with_the_default_cache_matches_golden(tiny_summary):
    actual = _without_version(tiny_summary)
    if os.environ.get("MEMSIM_UPDATE_GOLDEN"):
        CACHED_GOLDEN.write_text(json.dumps(actual, indent=2) + "\n")
    expected = json.loads(CACHED_GOLDEN.read_text())
    for name, block in expected["strategies"].items():
        for key in ("cached_input_tokens", "usd_total", "usd_saved_by_cache", "latency_p50_s"):
            assert actual["strategies"][name][key] == block[key], f"{name}.{key}"
    assert actual == expected


def test_caching_changes_only_what_it_should(tiny_summary, tiny_uncached_summary):
    """Same tokens, calls and recall; cheaper (never dearer) and no slower with the cache."""
    for name, cached in tiny_summary["strategies"].items():
        plain = tiny_uncached_summary["strategies"][name]
        for key in ("tokens_total", "tokens_by_purpose", "llm_calls_by_purpose", "recall"):
            assert cached[key] == plain[key], f"{name}.{key}"
        assert cached["usd_total_uncached"] == plain["usd_total"]
        assert cached["usd_total"] <= plain["usd_total"]
        assert cached["latency_p50_s"] <= plain["latency_p50_s"]
    naive = tiny_summary["strategies"]["naive-append"]
    assert naive["cached_input_tokens"] > 0 and naive["usd_saved_by_cache"] > 0


def test_tiny_golden_is_not_trivial():
    """Guards the golden file itself: every strategy did real, different work."""
    expected = json.loads(GOLDEN.read_text())["strategies"]
    totals = {name: block["tokens_total"] for name, block in expected.items()}
    assert len(set(totals.values())) == len(totals) and min(totals.values()) > 10_000
    assert (
        expected["per-turn-extract"]["llm_calls_by_purpose"]["extract"]
        == expected["per-turn-extract"]["turns"]
    )
    assert expected["naive-append"]["tokens_by_purpose"]["extract"] == 0
