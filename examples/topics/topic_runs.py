r"""How long users stay on one topic: LoCoMo's real conversations against memsim's workload.

For each session (a user's visit; in LoCoMo, a session of a conversation), each
user message is embedded and compared with the message that opened the current
run, the way ``lazy-retrieval`` compares a message with its cached query: a
cosine below the threshold opens a new run. Printed per source and threshold:
the share of messages that open a run (the share of turns on which
``lazy-retrieval`` would query the store) and the mean run length, plus the
cosine of consecutive user messages and of random pairs of them.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python examples/topics/topic_runs.py \\
        --locomo ../shared/data/locomo/locomo10.json --embedder minilm

LoCoMo (CC BY-NC 4.0) is read from the path given, never copied. ``--embedder
latent`` measures the synthetic workload with the fast mock embedder instead
(LoCoMo needs MiniLM: the mock knows generated texts only).
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

import scenarios
from sim.calibration import load_profile
from sim.embed import LatentEmbedder, MiniLMEmbedder
from sim.tokens import TokenCounter
from sim.traces import load_locomo
from sim.workload import generate_workload

THRESHOLDS = (0.7, 0.45)


def locomo_sessions(path: Path) -> list[list[str]]:
    """The user messages of each LoCoMo session, as memsim replays them."""
    users, _, _ = load_locomo(path)
    return [[t.text for t in s.turns] for u in users for s in u.sessions if s.remember]


def synthetic_sessions(persistence: float, users: int, days: int) -> tuple[list[list[str]], dict]:
    """support-bot's user messages per session at ``topic_persistence``, and the catalog."""
    scenario = scenarios.load("support-bot")[0]
    workload_cfg = scenario.workload.model_copy(update={"topic_persistence": persistence})
    scenario = scenario.model_copy(update={"users": users, "days": days, "workload": workload_cfg})
    workload = generate_workload(scenario, TokenCounter())
    sessions = [[m.text for m in s.messages] for u in workload.users for s in u.sessions]
    return sessions, workload.catalog.topics


def runs(sessions: list[list[str]], vectors: dict, threshold: float) -> tuple[float, float]:
    """Share of messages that open a run, and the mean run length, at ``threshold``."""
    opened, lengths = 0, []
    for session in sessions:
        anchor, length = None, 0
        for text in session:
            if anchor is None or float(vectors[text] @ vectors[anchor]) < threshold:
                opened, anchor = opened + 1, text
                if length:
                    lengths.append(length)
                length = 1
            else:
                length += 1
        lengths.append(length)
    return opened / sum(map(len, sessions)), float(np.mean(lengths))


def report(name: str, sessions: list[list[str]], embedder) -> None:
    """Print the figures of one source."""
    texts = sorted({t for s in sessions for t in s})
    vectors = dict(zip(texts, embedder.embed(texts), strict=True))
    consecutive = [
        float(vectors[a] @ vectors[b]) for s in sessions for a, b in itertools.pairwise(s)
    ]
    flat = [t for s in sessions for t in s]
    pairs = np.random.default_rng(0).integers(0, len(flat), (20_000, 2))
    unrelated = [float(vectors[flat[i]] @ vectors[flat[j]]) for i, j in pairs if i != j]
    print(
        f"{name}: {len(flat):,} user messages in {len(sessions):,} sessions; cosine of "
        f"consecutive messages mean {np.mean(consecutive):.3f} (median "
        f"{np.median(consecutive):.3f}), of random pairs mean {np.mean(unrelated):.3f} "
        f"(p95 {np.percentile(unrelated, 95):.3f})"
    )
    for threshold in THRESHOLDS:
        share, length = runs(sessions, vectors, threshold)
        print(f"  threshold {threshold}: {share:.1%} of messages re-query, mean run {length:.2f}")


def main() -> None:
    """Measure LoCoMo (if given) and the synthetic workload at two persistences."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--locomo", type=Path, help="path to locomo10.json")
    parser.add_argument("--embedder", choices=("minilm", "latent"), default="minilm")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--days", type=int, default=14)
    args = parser.parse_args()
    minilm = MiniLMEmbedder() if args.embedder == "minilm" else None
    if args.locomo is not None:
        if minilm is None:
            parser.error("--locomo needs --embedder minilm")
        report("LoCoMo", locomo_sessions(args.locomo), minilm)
    similarity = load_profile("default")["similarity"]
    for persistence in (0.75, 0.0):
        sessions, topics = synthetic_sessions(persistence, args.users, args.days)
        embedder = minilm or LatentEmbedder(384, topics, 42, similarity)
        report(f"support-bot, topic_persistence {persistence}", sessions, embedder)


if __name__ == "__main__":
    main()
