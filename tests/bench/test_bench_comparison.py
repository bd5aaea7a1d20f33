"""LangMem, Mem0, a custom pipeline and full history on one workload (``make bench``).

Runs the shipped ``library-comparison`` scenario (the models and the real libraries
side by side, 30 days) and ``langmem-like`` again with LangMem's recommended
reflection delay, and writes the figures into docs/comparison.md between the
``bench:comparison`` markers. Run alone:

    .venv/bin/python -m pytest -q -m bench -s tests/bench/test_bench_comparison.py
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from test_bench import ROOT, machine, write_between

from reports.compare import library_figures
from reports.results import load_results

DOC = ROOT / "docs" / "comparison.md"
MEMSIM = (sys.executable, "-m", "memsim")
LABELS = {
    "naive-append": "full history",
    "batched-dedup-budget": "custom pipeline",
    "mem0-like": "Mem0 (model)",
    "external-mem0": "Mem0 (real)",
    "langmem-like": "LangMem (model)",
    "external-langmem": "LangMem (real)",
}
ROWS = [
    ("LLM calls / message, read side", "read_llm_calls", "{:.2f}"),
    ("LLM calls / message, write side", "write_llm_calls", "{:.2f}"),
    ("tokens / message, read side", "read_tokens", "{:,.0f}"),
    ("tokens / message, write side", "write_tokens", "{:,.0f}"),
    ("USD / user / month", "usd_per_user_month", "${:.4f}"),
    ("memories / user after 30 days", "memories_per_user_mean", "{:.1f}"),
    ("duplicates (share of memories)", "duplicate_ratio", "{:.0%}"),
    ("add latency p50", "add_p50_s", "{:.2f} s"),
    ("add latency p95", "add_p95_s", "{:.2f} s"),
    ("answer latency p50", "answer_p50_s", "{:.2f} s"),
    ("answer latency p95", "answer_p95_s", "{:.2f} s"),
    ("recall", "recall", "{:.1%}"),
    ("probes shown an outdated fact", "stale_share", "{:.1%}"),
    ("injected memory tokens p99", "injected_tokens_p99", "{:,.0f}"),
    ("extraction input tokens, first week", "extract_tokens_in_first_week", "{:,.0f}"),
    ("extraction input tokens, last week", "extract_tokens_in_last_week", "{:,.0f}"),
]


def figures(out: Path) -> tuple[dict, dict[str, dict]]:
    results = load_results(out)
    summary = results.summary
    return summary, {
        run.strategy: library_figures(
            run, summary["strategies"][run.strategy], summary["users"], summary["days"]
        )
        for run in results.runs()
    }


def table(fig: dict[str, dict]) -> str:
    names = list(fig)
    lines = ["| per user message | " + " | ".join(f"{LABELS[n]}<br>`{n}`" for n in names) + " |"]
    lines.append("|---" * (len(names) + 1) + "|")
    for label, key, fmt in ROWS:
        lines.append(f"| {label} | " + " | ".join(fmt.format(fig[n][key]) for n in names) + " |")
    return "\n".join(lines)


def production_rows(fig: dict[str, dict], delayed: dict, summary: dict) -> str:
    """The production comparison's rows, each answered from the run."""
    lm, lr = fig["langmem-like"], fig["external-langmem"]
    mm, mr = fig["mem0-like"], fig["external-mem0"]
    cp, full = fig["batched-dedup-budget"], fig["naive-append"]
    msgs = summary["strategies"]["langmem-like"]["turns"]
    extract_calls = summary["strategies"]["langmem-like"]["llm_calls_by_purpose"]["extract"]
    delayed_calls = delayed["summary"]["strategies"]["langmem-like"]["llm_calls_by_purpose"][
        "extract"
    ]
    rows = [
        "| | LangMem | Mem0 | custom pipeline |",
        "|---|---|---|---|",
        "| setup | `create_memory_store_manager` on a LangGraph store with an embedding "
        f"index; {lr['write_llm_calls']:.2f} LLM call per add (one trustcall extraction) "
        "| `Memory.from_config` with a vector store; "
        f"{mr['write_llm_calls']:.2f} LLM call per add (one additive extraction) "
        "| a strategy of its own: extraction every few messages, hash + semantic dedup, "
        f"budget, importance; {cp['write_llm_calls']:.2f} LLM calls per message |",
        "| dedup | none of its own: the extractor sees the 5 memories the last message "
        f"(the reply) finds; {lr['duplicate_ratio']:.0%} of memories repeat a fact "
        f"(model: {lm['duplicate_ratio']:.0%}) | one ADD-only extraction told to skip "
        "what the 10 most similar memories hold, then an MD5 check; "
        f"{mr['duplicate_ratio']:.0%} duplicates (the model of classic Mem0: "
        f"{mm['duplicate_ratio']:.0%}) | content hash, then cosine ≥ 0.85 at write time; "
        f"{cp['duplicate_ratio']:.0%} duplicates |",
        "| cross-session merging | a `PatchDoc` of an outdated memory the search "
        f"showed; {lr['stale_share']:.1%} of probes see an outdated fact (model: "
        f"{lm['stale_share']:.1%}) | none in 2.x: an update is a new memory beside the "
        f"old one; {mr['stale_share']:.1%} (classic Mem0's UPDATE, the model: "
        f"{mm['stale_share']:.1%}) | none: a new version is stored beside the old one or "
        "dropped as its near-duplicate (the consolidation job, off here, merges); "
        f"{cp['stale_share']:.1%} |",
        "| token cost control | no budget: 10 search results at answer time, "
        f"{lr['injected_tokens_p99']:,.0f} memory tokens at p99; extraction per message, "
        f"or per burst with the reflection delay ({extract_calls} → {delayed_calls} "
        f"extraction calls for {msgs} messages with LangMem's 30-minute delay) | "
        f"search results within a 1,500-token budget, {mr['injected_tokens_p99']:,.0f} "
        "tokens at p99; "
        f"{mr['write_tokens']:,.0f} write tokens per message | a token budget: "
        f"{cp['injected_tokens_p99']:,.0f} at p99, {cp['write_tokens']:,.0f} write tokens "
        "per message |",
        "| scaling | the extraction prompt carries the tool schemas and up to 5 memories: "
        f"{lr['extract_tokens_in_first_week']:,.0f} → {lr['extract_tokens_in_last_week']:,.0f} "
        f"input tokens from the first to the last week; memories per user "
        f"{lr['memories_per_user_mid_run']:.0f} at day 15, "
        f"{lr['memories_per_user_mean']:.0f} at day 30 | "
        f"{mr['extract_tokens_in_first_week']:,.0f} → {mr['extract_tokens_in_last_week']:,.0f}; "
        f"{mr['memories_per_user_mid_run']:.0f} → {mr['memories_per_user_mean']:.0f} "
        "memories per user | "
        f"{cp['extract_tokens_in_first_week']:,.0f} → {cp['extract_tokens_in_last_week']:,.0f}; "
        f"{cp['memories_per_user_mid_run']:.0f} → {cp['memories_per_user_mean']:.0f} "
        "memories per user, capped at 500; full history instead: "
        f"{full['read_tokens']:,.0f} tokens per message |",
    ]
    return "\n".join(rows)


@pytest.mark.bench
def test_library_comparison(tmp_path):
    out, delayed_out = tmp_path / "library-comparison", tmp_path / "delayed"
    began = time.monotonic()
    subprocess.run([*MEMSIM, "run", "library-comparison", "-q", "--out", str(out)], check=True)
    wall = time.monotonic() - began
    subprocess.run(
        [
            *(*MEMSIM, "run", "library-comparison", "-s", "langmem-like", "-q"),
            *("--set", "strategy.langmem-like.delay_s=1800", "--out", str(delayed_out)),
        ],
        check=True,
    )
    summary, fig = figures(out)
    delayed_summary, _ = figures(delayed_out)
    text = f"""Measured {date.today().isoformat()} on {machine()}:
`memsim run library-comparison` ({summary["users"]} users × {summary["days"]} days,
seed {summary["seed"]}, {summary["strategies"]["naive-append"]["turns"]} user messages
per strategy) in {wall:.0f} s; figures from `library_figures` (reports/compare.py).

{table(fig)}

{production_rows(fig, {"summary": delayed_summary}, summary)}"""
    write_between("comparison", text, DOC)
    # The models agree with the real libraries on the write side's LLM calls.
    assert fig["langmem-like"]["write_llm_calls"] == pytest.approx(
        fig["external-langmem"]["write_llm_calls"], rel=0.15
    )
