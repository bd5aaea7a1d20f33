"""CI mode: compare a run with a baseline and say which metrics regressed.

A baseline is a run's ``summary.json`` plus ``scenario_sha256``: the hash of the
resolved configuration *without* the strategies' own settings. The scenario
(users, workload, model, limits, prices) must be the one the baseline was
written for, or the comparison means nothing and ``check`` stops with exit
code 2. The strategies' settings and code are what a check is for: change them,
and ``check`` says what that did to cost, latency, memory growth and recall.

A metric regresses when it moves in its bad direction by more than its
tolerance (relative to the baseline value; 5% unless ``--tolerance`` says
otherwise). ``recall`` is worse when lower; every other metric when higher.
Recall and stale share are not compared when neither run asked a probe question
(``probes`` = 0: a trace without ground truth). ``cache_hit_share`` (lower is
worse: prompts lost their cacheable prefix) and ``cache_write_tokens`` (tokens
paid at the cache-write premium) watch the prompt cache; a baseline written
before they existed is compared on the rest.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from sim.config import ConfigError, canonical_json

FORMAT = 1
DEFAULT_TOLERANCE = 0.05
METRICS: dict[str, int] = {  # metric -> direction: +1 higher is worse, -1 lower is worse
    "tokens_total": 1,
    "usd_total": 1,
    "injected_tokens_mean": 1,
    "injected_tokens_p99": 1,
    "memories_per_user_mean": 1,
    "memories_per_user_max": 1,
    "extraction_calls_per_session_mean": 1,
    "duplicate_ratio": 1,
    "latency_p99_s": 1,
    "retrieval_latency_p99_s": 1,
    "error_turns": 1,
    "recall": -1,
    "stale_share": 1,
    "cache_hit_share": -1,
    "cache_write_tokens": 1,
}


def scenario_sha256(resolved: dict[str, Any]) -> str:
    """Hash of a resolved configuration without the strategies and their settings.

    A trace counts by its content (``resolved.trace.sha256``), not by where it was
    read: a baseline written on one machine checks on another.
    """
    scenario = {k: v for k, v in resolved.items() if k not in ("strategy", "strategies")}
    if isinstance(scenario.get("trace"), dict):
        scenario["trace"] = {k: v for k, v in scenario["trace"].items() if k != "path"}
    return hashlib.sha256(canonical_json(scenario).encode()).hexdigest()


def baseline_document(summary: dict[str, Any], resolved: dict[str, Any]) -> dict[str, Any]:
    """What ``memsim baseline`` writes: the summary and the scenario's hash."""
    return {"memsim_baseline": FORMAT, "scenario_sha256": scenario_sha256(resolved), **summary}


def load_baseline(path: Path) -> dict[str, Any]:
    """Read and check a baseline file; one-line :class:`ConfigError` on any problem."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such baseline file") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"{path}: not a memsim baseline: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict) or data.get("memsim_baseline") != FORMAT:
        got = data.get("memsim_baseline") if isinstance(data, dict) else type(data).__name__
        raise ConfigError(f"{path}: field 'memsim_baseline' = {got!r}: expected {FORMAT}")
    for key in ("scenario_sha256", "strategies"):
        if key not in data:
            raise ConfigError(f"{path}: field '{key}' is missing")
    for name, block in data["strategies"].items():
        missing = [m for m in METRICS if not isinstance(block.get(m), int | float)]
        if missing:
            raise ConfigError(
                f"{path}: field 'strategies.{name}.{missing[0]}' is missing or not a number"
            )
    return data


def parse_tolerances(specs: list[str]) -> dict[str, float]:
    """``["usd_total=2%", "recall=0.01"]`` → relative tolerances; unknown metrics are errors."""
    tolerances = dict.fromkeys(METRICS, DEFAULT_TOLERANCE)
    for spec in specs:
        metric, sep, value = spec.partition("=")
        if not sep or metric not in METRICS:
            known = ", ".join(METRICS)
            raise ConfigError(
                f"--tolerance: {spec!r}: expected METRIC=N% with METRIC one of {known}"
            )
        try:
            number = float(value[:-1]) / 100 if value.endswith("%") else float(value)
        except ValueError:
            raise ConfigError(f"--tolerance: {spec!r}: {value!r} is not a number") from None
        if number < 0:
            raise ConfigError(f"--tolerance: {spec!r}: a tolerance cannot be negative")
        tolerances[metric] = number
    return tolerances


@dataclass(frozen=True, slots=True)
class Comparison:
    """One metric of one strategy: baseline, now, relative change, verdict."""

    strategy: str
    metric: str
    baseline: float
    now: float
    tolerance: float

    @property
    def change(self) -> float:
        """Relative change (``inf`` from a zero baseline)."""
        if self.baseline == 0:
            return 0.0 if self.now == 0 else float("inf") * (1 if self.now > 0 else -1)
        return (self.now - self.baseline) / abs(self.baseline)

    @property
    def verdict(self) -> str:
        """``regressed``, ``improved`` (beyond the tolerance either way) or ``ok``."""
        worse = self.change * METRICS[self.metric]
        if worse > self.tolerance:
            return "regressed"
        if worse < -self.tolerance:
            return "improved"
        return "ok"


def compare(
    baseline: dict[str, Any], summary: dict[str, Any], tolerances: dict[str, float], source: str
) -> list[Comparison]:
    """Every metric of every strategy of the baseline against this run."""
    missing = sorted(set(baseline["strategies"]) - set(summary["strategies"]))
    if missing:
        raise ConfigError(
            f"{source}: strategy {missing[0]!r} is in the baseline but not in this run"
        )
    return [
        Comparison(
            name,
            metric,
            float(block[metric]),
            float(summary["strategies"][name][metric]),
            tolerances[metric],
        )
        for name, block in baseline["strategies"].items()
        for metric in METRICS
        if metric in block  # a baseline written before the metric existed does not have it
        and (metric not in RECALL_METRICS or _measured(block, summary["strategies"][name]))
    ]


RECALL_METRICS = ("recall", "stale_share")


def _measured(baseline: dict[str, Any], now: dict[str, Any]) -> bool:
    """Whether recall was measured in the baseline or now.

    A trace without ground truth asks no probe: its recall is unavailable, not 0,
    and is not compared.
    """
    return baseline.get("probes", 1) > 0 or now.get("probes", 1) > 0


def check_scenario(baseline: dict[str, Any], resolved: dict[str, Any], source: str) -> None:
    """Stop with a one-line error when the scenario is not the baseline's."""
    now = scenario_sha256(resolved)
    if baseline["scenario_sha256"] != now:
        raise ConfigError(
            f"{source}: the scenario changed since the baseline was written (scenario_sha256 "
            f"{baseline['scenario_sha256'][:12]}… ≠ {now[:12]}…); write a new one with "
            "`memsim baseline`"
        )


def _fmt(x: float) -> str:
    return f"{x:,.6g}"


def _pct(change: float) -> str:
    return "n/a" if change != change else f"{change:+.1%}" if abs(change) != float("inf") else "new"


def markdown(
    comparisons: list[Comparison], title: str, invariants: list[tuple[str, Any]] = ()
) -> str:
    """A Markdown summary fit for a CI job summary."""
    regressed = [c for c in comparisons if c.verdict == "regressed"]
    broken = [(s, inv) for s, inv in invariants if not inv.passed]
    problems = [f"{len(regressed)} regressed"] * bool(regressed)
    problems += [f"{len(broken)} invariant(s) broken"] * bool(broken)
    head = f"### memsim check: {title} — " + (
        "❌ " + ", ".join(problems) if problems else "✅ within tolerance"
    )
    lines = [
        head,
        "",
        "| strategy | metric | baseline | now | change | tolerance | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        mark = {"regressed": "❌ regressed", "improved": "✅ improved", "ok": "ok"}[c.verdict]
        lines.append(
            f"| {c.strategy} | {c.metric} | {_fmt(c.baseline)} | {_fmt(c.now)} | "
            f"{_pct(c.change)} | {c.tolerance:.0%} | {mark} |"
        )
    if invariants:
        lines += ["", "| strategy | invariant | holds | detail |", "|---|---|---|---|"]
        lines += [
            f"| {s} | {inv.name} | {'✅' if inv.passed else '❌'} | {inv.detail} |"
            for s, inv in invariants
        ]
    return "\n".join(lines) + "\n"


def run_invariants(result: Any, summary: dict[str, Any]) -> list[tuple[str, Any]]:
    """``(strategy, Invariant)`` for every strategy of a run.

    The checks that need no baseline: budget, cap, extraction calls per session,
    no cross-user memory.
    """
    from reports.invariants import check_invariants

    out = []
    for run in result.runs:
        config = result.resolved["strategy"].get(run.strategy, {})
        block = summary["strategies"][run.strategy]
        out += [
            (run.strategy, inv) for inv in check_invariants(block, config, run.turns, run.calls)
        ]
    return out


def junit_xml(
    comparisons: list[Comparison], suite: str, invariants: list[tuple[str, Any]] = ()
) -> str:
    """JUnit XML: one test case per strategy and metric, and per invariant.

    A regression or a broken invariant is a failure.
    """
    failures = sum(c.verdict == "regressed" for c in comparisons)
    failures += sum(not inv.passed for _, inv in invariants)
    cases = []
    for strategy, inv in invariants:
        case = (
            f"  <testcase classname={quoteattr(f'memsim.{strategy}.invariant')} "
            f"name={quoteattr(inv.name)}"
        )
        cases.append(
            f"{case}/>"
            if inv.passed
            else f"{case}>\n    <failure message={quoteattr(inv.detail)}>{escape(inv.detail)}"
            "</failure>\n  </testcase>"
        )
    for c in comparisons:
        case = (
            f"  <testcase classname={quoteattr(f'memsim.{c.strategy}')} name={quoteattr(c.metric)}"
        )
        if c.verdict == "regressed":
            message = (
                f"{c.metric} {_fmt(c.baseline)} → {_fmt(c.now)} ({_pct(c.change)}, "
                f"tolerance {c.tolerance:.0%})"
            )
            cases.append(
                f"{case}>\n    <failure message={quoteattr(message)}>"
                f"{escape(message)}</failure>\n  </testcase>"
            )
        else:
            cases.append(f"{case}/>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<testsuite name={quoteattr(suite)} tests="{len(comparisons) + len(invariants)}" '
        f'failures="{failures}" errors="0">\n' + "\n".join(cases) + "\n</testsuite>\n"
    )
