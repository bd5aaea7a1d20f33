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

What is checked: the strategies the baseline holds (``memsim baseline -s`` writes
one for the strategy a team ships), or those ``memsim check -s`` names. Every
invariant of :mod:`reports.invariants` applies to every checked strategy unless
``--invariant NAME=STRATEGY,...`` names the strategies it applies to: a strategy
that breaks one by design (``per-turn-extract`` makes an extraction call on every
turn) is then exempted by name, and its row still shows what was measured, as
``skipped``. The check fails (exit code 1) on a ``regressed`` metric or a
``FAILED`` invariant, and on nothing else: the table shows every row that failed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from reports.invariants import NAMES as INVARIANTS
from reports.invariants import Invariant, check_invariants
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
    baseline: dict[str, Any],
    summary: dict[str, Any],
    tolerances: dict[str, float],
    source: str,
    strategies: list[str] | None = None,
) -> list[Comparison]:
    """Every metric of the checked strategies (default: all the baseline's) against this run."""
    checked = list(baseline["strategies"]) if strategies is None else strategies
    missing = [name for name in checked if name not in summary["strategies"]]
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
        for name in checked
        for block in [baseline["strategies"][name]]
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


def checked_strategies(
    baseline: dict[str, Any], selected: list[str] | None, source: str
) -> list[str]:
    """The strategies a check runs: ``selected`` (``-s``), else every one of the baseline.

    A selected strategy the baseline does not hold is an error: there is nothing to
    compare it with.
    """
    held = list(baseline["strategies"])
    if selected is None:
        return held
    for name in selected:
        if name not in held:
            raise ConfigError(
                f"--strategy: {name!r} is not in the baseline {source} (it holds "
                f"{', '.join(held)}); write one with `memsim baseline -s {name}`"
            )
    return list(dict.fromkeys(selected))


def parse_invariant_scopes(specs: list[str], checked: list[str]) -> dict[str, frozenset[str]]:
    """``["extraction_calls_per_session_within_limit=naive-append,batched-dedup-budget"]``.

    Returns the strategies each invariant applies to: every checked strategy unless
    a spec names them (``NAME=`` with nothing after it: none). A spec given twice
    for one invariant applies it to the strategies of both.
    """
    named: dict[str, set[str]] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep or name not in INVARIANTS:
            raise ConfigError(
                f"--invariant: {spec!r}: expected NAME=STRATEGY,... with NAME one of "
                f"{', '.join(INVARIANTS)}"
            )
        strategies = [s.strip() for s in value.split(",") if s.strip()]
        for strategy in strategies:
            if strategy not in checked:
                raise ConfigError(
                    f"--invariant: {spec!r}: {strategy!r} is not a checked strategy "
                    f"(checked: {', '.join(checked)})"
                )
        named.setdefault(name, set()).update(strategies)
    return {name: frozenset(named.get(name, checked)) for name in INVARIANTS}


@dataclass(frozen=True, slots=True)
class CheckedInvariant:
    """One invariant of one strategy, and whether the check applies it to that strategy."""

    strategy: str
    invariant: Invariant
    applies: bool = True

    @property
    def verdict(self) -> str:
        """``ok``, ``FAILED`` or ``skipped`` (measured, but not applied to this strategy)."""
        if not self.applies:
            return "skipped"
        return "ok" if self.invariant.passed else "FAILED"


def run_invariants(
    result: Any, summary: dict[str, Any], scopes: dict[str, frozenset[str]] | None = None
) -> list[CheckedInvariant]:
    """Every invariant of every strategy of a run, applied as ``scopes`` says.

    The checks that need no baseline: budget, cap, extraction calls per session,
    no cross-user memory. Without ``scopes`` every invariant applies to every strategy.
    """
    out = []
    for run in result.runs:
        config = result.resolved["strategy"].get(run.strategy, {})
        block = summary["strategies"][run.strategy]
        for inv in check_invariants(block, config, run.turns, run.calls):
            applies = scopes is None or run.strategy in scopes.get(inv.name, ())
            out.append(CheckedInvariant(run.strategy, inv, applies))
    return out


def outcome(comparisons: list[Comparison], invariants: list[CheckedInvariant]) -> str:
    """``passed``, or ``FAILED:`` and what failed; the check exits 1 exactly when FAILED."""
    regressed = sum(c.verdict == "regressed" for c in comparisons)
    broken = sum(i.verdict == "FAILED" for i in invariants)
    problems = [f"{regressed} regressed"] * bool(regressed)
    problems += [f"{broken} invariant{'s' * (broken > 1)} broken"] * bool(broken)
    return "FAILED: " + ", ".join(problems) if problems else "passed"


def fmt_number(x: float | None) -> str:
    """A figure as the check's tables show it (``n/a`` when it was not measured)."""
    return "n/a" if x is None else f"{x:,.6g}"


def fmt_change(change: float) -> str:
    """A relative change: ``+4.2%``, ``+2500%``, ``new`` from a zero baseline, ``n/a`` for NaN."""
    if change != change:
        return "n/a"
    if abs(change) == float("inf"):
        return "new"
    return f"{change:+.0%}" if abs(change) >= 10 else f"{change:+.1%}"  # +2500%, not +2500.0%


def fmt_bound(inv: Invariant) -> str:
    """An invariant's bound, ``≤ 1,500`` (every invariant is "measured ≤ bound")."""
    return "n/a" if inv.bound is None else f"≤ {inv.bound:,.6g}"


def markdown(
    comparisons: list[Comparison], title: str, invariants: list[CheckedInvariant] = ()
) -> str:
    """A Markdown summary fit for a CI job summary: metrics, then invariants."""
    verdict = outcome(comparisons, invariants)
    head = f"### memsim check: {title} — " + (
        "✅ within tolerance" if verdict == "passed" else "❌ " + verdict.removeprefix("FAILED: ")
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
            f"| {c.strategy} | {c.metric} | {fmt_number(c.baseline)} | {fmt_number(c.now)} | "
            f"{fmt_change(c.change)} | {c.tolerance:.0%} | {mark} |"
        )
    if invariants:
        lines += [
            "",
            "| strategy | invariant | measure | now | limit | verdict | detail |",
            "|---|---|---|---|---|---|---|",
        ]
        marks = {"FAILED": "❌ FAILED", "ok": "ok", "skipped": "skipped (--invariant)"}
        lines += [
            f"| {i.strategy} | {i.invariant.name} | {i.invariant.measure} | "
            f"{fmt_number(i.invariant.measured)} | {fmt_bound(i.invariant)} | {marks[i.verdict]} | "
            f"{i.invariant.detail} |"
            for i in invariants
        ]
    return "\n".join(lines) + "\n"


def junit_xml(
    comparisons: list[Comparison], suite: str, invariants: list[CheckedInvariant] = ()
) -> str:
    """JUnit XML: one test case per strategy and metric, and per invariant.

    A regression or a broken invariant is a failure; an invariant not applied to a
    strategy is skipped.
    """
    failures = sum(c.verdict == "regressed" for c in comparisons)
    failures += sum(i.verdict == "FAILED" for i in invariants)
    skipped = sum(i.verdict == "skipped" for i in invariants)
    cases = []
    for i in invariants:
        case = (
            f"  <testcase classname={quoteattr(f'memsim.{i.strategy}.invariant')} "
            f"name={quoteattr(i.invariant.name)}"
        )
        detail = i.invariant.detail
        if i.verdict == "ok":
            cases.append(f"{case}/>")
        elif i.verdict == "skipped":
            message = f"not applied to {i.strategy} (--invariant): {detail}"
            cases.append(f"{case}>\n    <skipped message={quoteattr(message)}/>\n  </testcase>")
        else:
            cases.append(
                f"{case}>\n    <failure message={quoteattr(detail)}>{escape(detail)}"
                "</failure>\n  </testcase>"
            )
    for c in comparisons:
        case = (
            f"  <testcase classname={quoteattr(f'memsim.{c.strategy}')} name={quoteattr(c.metric)}"
        )
        if c.verdict == "regressed":
            message = (
                f"{c.metric} {fmt_number(c.baseline)} → {fmt_number(c.now)} "
                f"({fmt_change(c.change)}, tolerance {c.tolerance:.0%})"
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
        f'failures="{failures}" errors="0" skipped="{skipped}">\n'
        + "\n".join(cases)
        + "\n</testsuite>\n"
    )
