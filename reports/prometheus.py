"""``metrics.prom``: a run's final figures in the Prometheus text exposition format.

Built from ``summary.json`` alone with prometheus-client (a ``CollectorRegistry``
and ``generate_latest``). Every sample is labelled with ``scenario`` and
``strategy``; percentiles carry a ``stat`` label (``mean``, ``p50``, ``p95``,
``p99``, ``max``). A custom collector yields the families, so no ``_created``
timestamps are written and the file is byte-identical across runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from reports.summary import TOKEN_PURPOSES

FAMILIES = (
    "memory_store_size_per_user",
    "extraction_calls",
    "injection_tokens_per_prompt",
    "retrieval_latency_seconds",
    "tokens",
    "usd",
    "recall",
    "prompt_cache_tokens",
    "prompt_cache_hit_share",
    "prompt_cache_saved_usd",
    "alerts_fired",
)
"""Family names as the text parser reports them (counters lose their ``_total``)."""

_LABELS = ["scenario", "strategy"]


class _SummaryCollector:
    """Yields the metric families of one ``summary.json`` document."""

    def __init__(self, summary: dict[str, Any]) -> None:
        self.summary = summary

    def collect(self) -> Iterator[Metric]:
        scenario = str(self.summary["scenario"])
        blocks = self.summary["strategies"]
        stat = [*_LABELS, "stat"]

        store = GaugeMetricFamily(
            "memory_store_size_per_user",
            "Memories per user in the store after the last turn.",
            labels=stat,
        )
        inject = GaugeMetricFamily(
            "injection_tokens_per_prompt",
            "Tokens of the injected memory block per prompt, chat overhead included.",
            labels=stat,
        )
        retrieval = GaugeMetricFamily(
            "retrieval_latency_seconds",
            "Simulated time before the chat call (turns that retrieved).",
            labels=stat,
        )
        extraction = CounterMetricFamily(
            "extraction_calls", "LLM extraction calls over the run.", labels=_LABELS
        )
        tokens = CounterMetricFamily(
            "tokens", "Billed input + output tokens by call purpose.", labels=[*_LABELS, "purpose"]
        )
        usd = CounterMetricFamily("usd", "US dollars spent over the run.", labels=_LABELS)
        recall = GaugeMetricFamily(
            "recall", "Share of probe questions whose prompt held the latest fact.", labels=_LABELS
        )
        cache_tokens = CounterMetricFamily(
            "prompt_cache_tokens",
            "LLM input tokens read from (kind=read) or written to (kind=write) the prompt cache.",
            labels=[*_LABELS, "kind"],
        )
        hit_share = GaugeMetricFamily(
            "prompt_cache_hit_share",
            "Share of chat calls' input tokens read from the provider's prompt cache.",
            labels=_LABELS,
        )
        saved = GaugeMetricFamily(
            "prompt_cache_saved_usd",
            "US dollars the prompt cache saved over the run (negative: write premiums cost more).",
            labels=_LABELS,
        )
        alerts = GaugeMetricFamily(
            "alerts_fired",
            "1 if the alert rule fired on the simulated timeline, else 0.",
            labels=[*_LABELS, "rule"],
        )
        for name, b in blocks.items():
            who = [scenario, name]
            for s in ("mean", "p99", "max"):
                store.add_metric([*who, s], b[f"memories_per_user_{s}"])
                inject.add_metric([*who, s], b[f"injected_tokens_{s}"])
            for s in ("p50", "p95", "p99"):
                retrieval.add_metric([*who, s], b.get(f"retrieval_latency_{s}_s", 0.0))
            extraction.add_metric(who, b["llm_calls_by_purpose"].get("extract", 0))
            for purpose in TOKEN_PURPOSES:
                tokens.add_metric([*who, purpose], b["tokens_by_purpose"].get(purpose, 0))
            usd.add_metric(who, b["usd_total"])
            if b.get("probes", 1):  # no probes: recall unavailable, no sample
                recall.add_metric(who, b["recall"])
            cache_tokens.add_metric([*who, "read"], b.get("cached_input_tokens", 0))
            cache_tokens.add_metric([*who, "write"], b.get("cache_write_tokens", 0))
            hit_share.add_metric(who, b.get("cache_hit_share", 0.0))
            saved.add_metric(who, b.get("usd_saved_by_cache", 0.0))
            for rule, alert in (b.get("alerts") or {}).items():
                alerts.add_metric([*who, rule], 1.0 if alert["fired"] else 0.0)
        yield from (store, extraction, inject, retrieval, tokens, usd, recall)
        yield from (cache_tokens, hit_share, saved, alerts)


def render(summary: dict[str, Any]) -> str:
    """The text of ``metrics.prom`` for a ``summary.json`` document."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SummaryCollector(summary))
    return generate_latest(registry).decode("utf-8")
