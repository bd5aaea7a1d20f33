"""Monthly cost by strategy, model and number of users, from scaled simulation.

``memsim project`` answers "what would this cost a month at 10k, 100k, 1M
users?" without simulating a million users and without multiplying a small
run by a large number, which hides what rate limits do at scale.

Method. For each target size N, simulate n = min(N, ``sim_users``) users of the
scenario (the same seed, so the same first n users) for the scenario's days.
The account's rate limits are shared by all N users, so the simulated users get
their pro-rata share: the chat and embedding endpoints' ``rpm``, ``tpm`` and
``concurrency`` are multiplied by n / N (concurrency rounded, at least 1). The
queueing, timeouts and failed turns the n users then see are those each user
would see among N. The measured cost and tokens per user per month (totals /
days × 30 / n) are multiplied by N. When n == N the scenario runs as it is.

Each row also reports the share of failed turns (errors of any kind), of turns
and of calls that timed out (the mark of a saturated limit), the p99 turn
latency and the mean queueing per turn, which show where the limits bite: a
call that never went out is not billed, so a saturated account's cost grows
slower than its users while its users wait and fail.

Prices come from genai-prices for each model at the scenario's
``pricing.price_date`` (the scenario's per-million overrides apply to its own
``llm.model`` only); embeddings at ``embedding.usd_per_million_tokens``.

Assumptions, stated in ``projection.md`` too:

* Every model gets the scenario's ``[llm]`` context window and limits, and its own
  latency profile (:mod:`sim.latency`, with the scenario's ``[llm]`` latency
  settings on top); nothing in the simulation depends on the price, so one
  simulation per size and latency profile is re-priced for each model of that
  profile, which gives exactly what simulating each would.
* The n users are a sample of the N: their load is burstier relative to their
  share than N users' would be, so near the limits the projection errs on the
  side of more queueing. A larger ``sim_users`` narrows that.
* Everything the scenario's users share is cut to the n users' share by the rule
  sharded runs use (:func:`sim.shards.share_scenario`): the chat and embedding
  limits, the vector store's concurrency and the background workers, so a
  projection and a sharded run of one account agree. The modelled store latency
  is taken at N users (from the calibration profile).
* A month is 30 days at the mean daily rate of the simulated days; for
  strategies whose cost grows with history, simulate a full month.
* The prompt cache follows the scenario's ``[llm.cache]`` (by default the rule
  of its model's provider). The tokens it read and wrote are priced at each
  model's cache prices (``usd_per_month``; ``usd_per_month_uncached`` bills them
  all at the input price); a model whose minimum cacheable prompt differs from
  the scenario model's (Anthropic, Gemini) would cache somewhat more or less.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from reports.output import atomic_write, prepare_out_dir
from reports.terminal import Column, Line, fitted_tables
from sim import __version__, calibration
from sim.config import ConfigError, EndpointLimits, Scenario, config_sha256
from sim.context import EMBEDDING, LLM
from sim.engine import StrategyRun
from sim.latency import OVERRIDABLE
from sim.latency import resolve as resolve_latency
from sim.limits import TIMEOUT
from sim.pricing import MILLION, Rates, chat_rates, scenario_rates
from sim.runner import (
    ProgressFactory,
    build_strategies,
    prepare,
    resolve_config,
    simulate,
    store_latency_model,
)
from sim.shards import share_scenario

DIGITS = 6
DAYS_PER_MONTH = 30
DEFAULT_SIM_USERS = 500
FILES = ("projection.json", "projection.md", "projection.png", "projection.svg")
TIMEOUT_NOTICE = 0.01  # a row where this share of turns or calls timed out is flagged

METHOD = (
    "For each number of users N, n = min(N, sim users) users of the scenario are simulated "
    "(same seed) for the scenario's days, with the chat and embedding rate limits (rpm, tpm, "
    "concurrency) multiplied by n / N: the simulated users get their pro-rata share of the "
    "account, so queueing, timeouts and failed turns appear as they would among N users "
    "(concurrency is rounded to whole connections, at least one, so for shares below one "
    "connection it binds less than it would). "
    "Their cost and tokens per user per month (total / days × 30 / n) are multiplied by N. "
    "When n = N the scenario runs unscaled.",
    "Failed turns (errors, among them timeouts) are not billed, so once the limits bite, "
    "cost grows slower than users while latency and failures grow: read the two together.",
    "Prices: genai-prices at the scenario's price date for each model (a scenario's "
    "per-million override applies to its own model only); embeddings at the scenario's price.",
    "Every model gets the scenario's context window and limits and its own latency profile "
    "(docs/latency.md); nothing in the simulation depends on the price, so each size is "
    "simulated once per latency profile and priced per model.",
    "n users are burstier relative to their share than N users would be, so near the limits "
    "the projection errs towards more queueing; a larger --sim-users narrows that.",
    "The n users hold their share of the chat and embedding limits, of the vector store's "
    "concurrency and of the background workers (the rule sharded runs use); the modelled "
    "store latency is taken at N users. A month is 30 days at the mean daily rate of the "
    "simulated days.",
)

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([kKmM]?)$")
_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000}


# -- input ------------------------------------------------------------------------
def parse_size(text: str) -> int:
    """A number of users from ``"2500"``, ``"10k"``, ``"1.5k"`` or ``"1M"``."""
    match = _SIZE.match(text.strip().replace("_", ""))
    if not match:
        raise ValueError(text)
    value = float(match[1]) * _SUFFIX[match[2].lower()]
    if value < 1 or value != int(value):
        raise ValueError(text)
    return int(value)


def parse_sizes(spec: str) -> list[int]:
    """Sizes separated by commas, sorted and without repeats; one-line error if bad."""
    try:
        sizes = {parse_size(part) for part in spec.split(",") if part.strip()}
    except ValueError as err:
        raise ConfigError(
            f"--users: {err.args[0].strip()!r}: expected a number of users such as "
            "2500, 10k, 1.5k or 1M (comma-separated)"
        ) from None
    if not sizes:
        raise ConfigError(f"--users: {spec!r}: expected numbers of users such as 1k,10k,1M")
    return sorted(sizes)


def size_label(users: int) -> str:
    """``1000`` → ``1k``, ``1500000`` → ``1.5M``, ``2345`` → ``2,345``."""
    for unit, suffix in ((1_000_000, "M"), (1_000, "k")):
        if users >= unit and (users * 10) % unit == 0:
            return f"{users / unit:g}{suffix}"
    return f"{users:,}"


def model_rates(scenario: Scenario, models: Iterable[str]) -> dict[str, Rates]:
    """Chat prices per model at the scenario's price date; one-line error for an unknown one."""
    rates = {}
    for model in dict.fromkeys(models):
        if model == scenario.llm.model:
            rates[model] = scenario_rates(scenario)[0]  # honours the scenario's overrides
            continue
        try:
            rates[model] = chat_rates(model, scenario.llm.provider, scenario.pricing.price_date)
        except ConfigError:
            raise ConfigError(
                f"--model: {model!r}: no price in genai-prices for provider "
                f"{scenario.llm.provider!r} at {scenario.pricing.price_date}"
            ) from None
    return rates


# -- scaled simulation ------------------------------------------------------------
def scaled_scenario(scenario: Scenario, users: int, sim_users: int) -> Scenario:
    """The scenario for n = min(users, sim_users) users holding their share of the account.

    The share is cut as a shard's is (:func:`sim.shards.share_scenario`): chat and
    embedding limits, the store's concurrency and the background workers.
    """
    simulated = min(users, sim_users)
    return share_scenario(scenario, simulated / users).model_copy(update={"users": simulated})


def latency_groups(scenario: Scenario, models: list[str]) -> list[tuple[Scenario, list[str]]]:
    """The models grouped by latency profile, each group with the scenario it simulates.

    The group's scenario keeps ``[llm] model`` (and so the prompt-cache rule) and
    sets every latency parameter to the group's resolved profile.
    """
    groups: dict[tuple, list[str]] = {}
    for model in models:
        timed = resolve_latency(scenario.llm.model_copy(update={"model": model}))
        groups.setdefault(tuple(getattr(timed, k) for k in OVERRIDABLE), []).append(model)
    timed_scenarios = []
    for key, group in groups.items():
        llm = scenario.llm.model_copy(update=dict(zip(OVERRIDABLE, key, strict=True)))
        timed_scenarios.append((scenario.model_copy(update={"llm": llm}), group))
    return timed_scenarios


def simulate_size(
    scenario: Scenario,
    source: str,
    users: int,
    sim_users: int,
    on_start: Callable[[int], Callable[[int], None]] | None = None,
    scratch: Path | None = None,
) -> list[StrategyRun]:
    """Simulate every strategy for the sample of ``users`` (see the module docstring).

    ``on_start(turns)``, called once the workload is known with the number of turns
    all strategies will simulate, returns the ``advance(turns)`` progress hook.
    """
    scaled = scaled_scenario(scenario, users, sim_users)
    strategies = build_strategies(scaled, source)
    resolved = resolve_config(scaled, strategies, scenario_rates(scaled))
    store_dir = Path(scaled.vector_store.path or (scratch or Path(".")) / "chroma" / str(users))
    parts = prepare(scaled, source, config_sha256(resolved), store_dir)
    profile = (
        None if scenario.calibration == "none" else calibration.load_profile(scenario.calibration)
    )
    at_full_size = scenario.model_copy(update={"users": users})
    parts = replace(parts, store_latency=store_latency_model(at_full_size, profile))
    advance = on_start(parts.workload.turns * len(strategies)) if on_start else None
    factory: ProgressFactory | None = (lambda _name, _total: advance) if advance else None
    return [simulate(parts, strategy, factory) for strategy in strategies]


# -- figures ----------------------------------------------------------------------
def _r(x: float) -> float:
    """Round for the file; -0.0 and NaN become 0.0 so output is stable."""
    x = float(x)
    return 0.0 if math.isnan(x) or x == 0 else round(x, DIGITS)


def _usage(run: StrategyRun) -> dict[str, Any]:
    """Billed tokens and failure figures of one simulated strategy (model-independent)."""
    calls, turns = run.calls, run.turns
    llm, emb = calls[calls["endpoint"] == LLM], calls[calls["endpoint"] == EMBEDDING]
    ok = turns.loc[turns["error"] == "", "latency_s"]
    remote = calls[calls["endpoint"].isin((LLM, EMBEDDING))]
    return {
        "llm_in": int(llm["tokens_in"].sum()),
        "llm_out": int(llm["tokens_out"].sum()),
        "llm_cached": int(llm["cached_tokens"].sum()),
        "llm_written": int(llm["cache_write_tokens"].sum()),
        "embedding_tokens": int(emb["tokens_in"].sum() + emb["tokens_out"].sum()),
        "embedding_usd": math.fsum(emb["usd"]),
        "turns": len(turns),
        "error_turns": int((turns["error"] != "").sum()),
        "timeout_turns": int((turns["error"] == TIMEOUT).sum()),
        "remote_calls": len(remote),
        "timed_out_calls": int((remote["error"] == TIMEOUT).sum()),
        "latency_p99_s": _r(np.percentile(ok, 99)) if len(ok) else None,
        "queue_mean_s": _r(turns["queue_s"].mean()) if len(turns) else 0.0,
    }


def _row(
    strategy: str, model: str, rates: Rates, usage: dict, users: int, n: int, days: int
) -> dict[str, Any]:
    """One projected row: the sample's monthly figures per user, times ``users``."""
    per_user_month = DAYS_PER_MONTH / days / n
    # Priced at the base tier: the run's totals, not its calls (no model's tier
    # threshold is near a memory chatbot's prompt).
    uncached = (
        usage["llm_in"] * rates.input_usd_per_token
        + usage["llm_out"] * rates.output_usd_per_token
        + usage["embedding_usd"]
    )
    usd = uncached
    if usage["llm_cached"] or usage["llm_written"]:
        read, write = rates.cache_read_usd_per_token, rates.cache_write_usd_per_token
        usd += usage["llm_cached"] * (read - rates.input_usd_per_token)  # type: ignore[operator]
        usd += usage["llm_written"] * (write - rates.input_usd_per_token)  # type: ignore[operator]
    tokens = usage["llm_in"] + usage["llm_out"] + usage["embedding_tokens"]
    turns = max(usage["turns"], 1)
    return {
        "strategy": strategy,
        "model": model,
        "users": users,
        "simulated_users": n,
        "usd_per_month": _r(usd * per_user_month * users),
        "usd_per_user_per_month": _r(usd * per_user_month),
        "usd_per_month_uncached": _r(uncached * per_user_month * users),
        "cached_tokens_per_month": round(usage["llm_cached"] * per_user_month * users),
        "tokens_per_month": round(tokens * per_user_month * users),
        "tokens_per_user_per_month": _r(tokens * per_user_month),
        "chat_tokens_in_per_month": round(usage["llm_in"] * per_user_month * users),
        "chat_tokens_out_per_month": round(usage["llm_out"] * per_user_month * users),
        "embedding_tokens_per_month": round(usage["embedding_tokens"] * per_user_month * users),
        "error_share": _r(usage["error_turns"] / turns),
        "timeout_share": _r(usage["timeout_turns"] / turns),
        "call_timeout_share": _r(usage["timed_out_calls"] / max(usage["remote_calls"], 1)),
        "latency_p99_s": usage["latency_p99_s"],
        "queue_mean_s": usage["queue_mean_s"],
    }


def _limits_entry(scenario: Scenario, users: int, sim_users: int) -> dict[str, Any]:
    scaled = scaled_scenario(scenario, users, sim_users)

    def block(lim: EndpointLimits) -> dict[str, Any]:
        return {"concurrency": lim.concurrency, "rpm": _r(lim.rpm), "tpm": _r(lim.tpm)}

    return {
        "users": users,
        "simulated_users": scaled.users,
        "share": _r(scaled.users / users),
        "chat_limits": block(scaled.limits),
        "embedding_limits": block(scaled.embedding.limits),
        "store_concurrency": scaled.vector_store.concurrency,
        "background_workers": scaled.background_workers,
    }


def _price_entry(rates: Rates) -> dict[str, Any]:
    return {
        "input_usd_per_million_tokens": _r(rates.input_usd_per_token * MILLION),
        "output_usd_per_million_tokens": _r(rates.output_usd_per_token * MILLION),
        "source": rates.source,
    }


SizeProgress = Callable[[int, int, int], Callable[[int], None]]
"""Progress hook: called with (users, simulated users, turns to simulate); returns ``advance``."""


def project(
    scenario: Scenario,
    source: str,
    sizes: list[int],
    models: list[str],
    sim_users: int = DEFAULT_SIM_USERS,
    progress: SizeProgress | None = None,
) -> dict[str, Any]:
    """The projection document (``projection.json``): prices, limits per size, and rows.

    Rows are ordered by strategy (the scenario's order), model (as given), then size.
    """
    if sim_users < 1:
        raise ConfigError(f"--sim-users: {sim_users}: expected a positive number")
    if scenario.trace is not None:
        raise ConfigError(
            f"{source}: field 'trace': a projection scales synthetic users; "
            "a trace has a fixed set of users (use `memsim run`)"
        )
    rates = model_rates(scenario, models or [scenario.llm.model])
    base = build_strategies(scenario, source)
    embedding = scenario_rates(scenario)[1]
    usage: dict[tuple[str, int, str], dict] = {}
    with tempfile.TemporaryDirectory(prefix="memsim-project-") as scratch:
        for users in sizes:
            for timed, group in latency_groups(scenario, list(rates)):
                on_start = None
                if progress is not None:
                    on_start = partial(progress, users, min(users, sim_users))
                runs = simulate_size(timed, source, users, sim_users, on_start, Path(scratch))
                for run, model in ((run, m) for run in runs for m in group):
                    usage[run.strategy, users, model] = _usage(run)
    rows = [
        _row(
            s.name,
            model,
            r,
            usage[s.name, users, model],
            users,
            min(users, sim_users),
            scenario.days,
        )
        for s in base
        for model, r in rates.items()
        for users in sizes
    ]
    resolved = resolve_config(scenario, base, scenario_rates(scenario))
    return {
        "memsim_version": __version__,
        "scenario": scenario.name,
        "seed": scenario.seed,
        "config_sha256": config_sha256(resolved),
        "days_simulated": scenario.days,
        "days_per_month": DAYS_PER_MONTH,
        "sim_users": sim_users,
        "price_date": scenario.pricing.price_date,
        "prices": {model: _price_entry(r) for model, r in rates.items()},
        "embedding_usd_per_million_tokens": _r(embedding.input_usd_per_token * MILLION),
        "sizes": [_limits_entry(scenario, users, sim_users) for users in sizes],
        "rows": rows,
    }


def dumps(document: dict[str, Any]) -> str:
    """The exact text of ``projection.json``."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# -- presentation -----------------------------------------------------------------
def _usd(x: float) -> str:
    if x >= 100:
        return f"${x:,.0f}"
    return f"${x:.2f}" if x >= 1 else f"${x:.3g}"


def _count(x: float) -> str:
    for unit, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if x >= unit:
            return f"{x / unit:.3g}{suffix}"
    return f"{x:.3g}"


def _pct(x: float) -> str:
    return f"{x:.1%}" if x else "0"


def _seconds(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


HEADER = (
    "strategy",
    "model",
    "users",
    "simulated",
    "USD / month",
    "USD / user / month",
    "tokens / month",
    "failed turns",
    "timed-out turns",
    "timed-out calls",
    "latency p99 (s)",
    "queueing mean (s)",
)


def _cells(row: dict[str, Any]) -> list[str]:
    return [
        row["strategy"],
        row["model"],
        size_label(row["users"]),
        f"{row['simulated_users']:,}",
        _usd(row["usd_per_month"]),
        _usd(row["usd_per_user_per_month"]),
        _count(row["tokens_per_month"]),
        _pct(row["error_share"]),
        _pct(row["timeout_share"]),
        _pct(row["call_timeout_share"]),
        _seconds(row["latency_p99_s"]),
        _seconds(row["queue_mean_s"]),
    ]


def _bites(row: dict[str, Any]) -> bool:
    return max(row["timeout_share"], row["call_timeout_share"]) >= TIMEOUT_NOTICE


def _bite_note(rows: list[dict[str, Any]]) -> str:
    """One strategy's sentence from its rows (one model, by size)."""
    first, last = rows[0], rows[-1]
    p99 = f"p99 latency {_seconds(first['latency_p99_s'])} s at {size_label(first['users'])}"
    if len(rows) > 1:
        p99 += f", {_seconds(last['latency_p99_s'])} s at {size_label(last['users'])}"
    hit = next((r for r in rows if _bites(r)), None)
    if hit is None:
        return (
            f"under {TIMEOUT_NOTICE:.0%} of turns and calls time out up to "
            f"{size_label(last['users'])} users; {p99}."
        )
    note = (
        f"from {size_label(hit['users'])} users {_pct(hit['timeout_share'])} of turns and "
        f"{_pct(hit['call_timeout_share'])} of calls time out"
    )
    if hit is not last:
        note += (
            f" ({_pct(last['timeout_share'])} and {_pct(last['call_timeout_share'])} at "
            f"{size_label(last['users'])})"
        )
    note += f"; {p99}"
    base = first["usd_per_user_per_month"]
    if base and last["usd_per_user_per_month"] < 0.99 * base:
        drop = 1 - last["usd_per_user_per_month"] / base
        note += (
            f"; unbilled timeouts put the cost per user {drop:.0%} below a linear "
            f"extrapolation from {size_label(first['users'])}"
        )
    return note + "."


def bite_notes(document: dict[str, Any], bold: bool = False) -> list[str]:
    """Where the rate limits bite, one sentence per strategy.

    Failures and latency do not depend on the model's price; they can depend on its
    latency profile, so the notes speak of the first model's rows.
    """
    first_model = next(iter(document["prices"]))
    notes = []
    for strategy in dict.fromkeys(r["strategy"] for r in document["rows"]):
        rows = [
            r for r in document["rows"] if (r["strategy"], r["model"]) == (strategy, first_model)
        ]
        name = f"**{strategy}**" if bold else strategy
        notes.append(f"{name}: {_bite_note(rows)}")
    return notes


def _md_table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def render_markdown(document: dict[str, Any]) -> str:
    """``projection.md``: the table, the prices and their date, the limits and the method."""
    d = document
    lines = [
        f"# Monthly cost projection: {d['scenario']}",
        "",
        f"Scaled simulation: up to {d['sim_users']:,} simulated users per size, seed "
        f"{d['seed']}, {d['days_simulated']} simulated days scaled to a "
        f"{d['days_per_month']}-day month. Prices from genai-prices at **{d['price_date']}**.",
        "",
        "## Prices (USD per 1M tokens)",
        "",
        *_md_table(
            ("model", "input", "output", "source"),
            (
                (
                    m,
                    f"{p['input_usd_per_million_tokens']:g}",
                    f"{p['output_usd_per_million_tokens']:g}",
                    p["source"],
                )
                for m, p in d["prices"].items()
            ),
        ),
        "",
        f"Embeddings: ${d['embedding_usd_per_million_tokens']:g} per 1M tokens "
        "(the scenario's `embedding.usd_per_million_tokens`).",
        "",
        "## Where the rate limits bite",
        "",
        *(f"- {note}" for note in bite_notes(d, bold=True)),
        "",
        "## Projection",
        "",
        *_md_table(HEADER, (_cells(r) for r in d["rows"])),
        "",
        "*Failed turns* got no reply (a timeout, a context overflow); *timed-out turns* are those "
        "whose calls waited or ran past the client timeout, the mark of a saturated rate "
        "limit; *timed-out calls* count every chat and embedding call, extraction and "
        "background work included. Latency is over turns that got a reply.",
        "",
        "## Rate limits of each simulated sample",
        "",
        *_md_table(
            ("users", "simulated", "share", "chat rpm / tpm / concurrency", "embedding"),
            (
                (
                    size_label(s["users"]),
                    f"{s['simulated_users']:,}",
                    f"{s['share']:.3g}",
                    _limits_cell(s["chat_limits"]),
                    _limits_cell(s["embedding_limits"]),
                )
                for s in d["sizes"]
            ),
        ),
        "",
        "## Method",
        "",
        *(f"- {line}" for line in METHOD),
        "",
    ]
    return "\n".join(lines)


def _limits_cell(limits: dict[str, Any]) -> str:
    return f"{_count(limits['rpm'])} / {_count(limits['tpm'])} / {limits['concurrency']}"


def print_projection(console: Console, document: dict[str, Any]) -> None:
    """The projection on the terminal, then where the limits bite.

    One row per strategy and size, one USD column per model; failures, latency and
    queueing are the first model's (they follow its latency profile, not its price).
    ``projection.md`` has every figure per model. On a narrow terminal the columns
    after the USD ones move to a second table that repeats strategy and users
    (:func:`reports.terminal.fitted_tables`): every name and figure stays whole.
    """
    d = document
    models = list(d["prices"])
    # Cost first, then the simulated sample (n) with what the limits did to it: at 80
    # columns the two halves make two tables that each fit.
    columns = [
        Column("strategy", "left"),
        Column("users"),
        Column("tokens\n/ month"),
        *(Column(f"{m}\nUSD / month") for m in models),
        *(
            Column(name)
            for name in ("n", "turns\nfailed", "turns\ntimed out", "calls\ntimed out", "p99\n(s)")
        ),
        Column("queue\n(s)"),
    ]
    by_key = {(r["strategy"], r["users"], r["model"]): r for r in d["rows"]}
    lines = []
    for strategy in dict.fromkeys(r["strategy"] for r in d["rows"]):
        for i, size in enumerate(d["sizes"]):
            rows = [by_key[strategy, size["users"], m] for m in models]
            cells = _cells(rows[0])
            lines.append(
                Line(
                    [
                        strategy if i == 0 else "",
                        cells[2],
                        cells[6],
                        *(_usd(r["usd_per_month"]) for r in rows),
                        cells[3],
                        *cells[7:],
                    ],
                    style="red" if _bites(rows[0]) else None,
                    end_section=i == len(d["sizes"]) - 1,
                )
            )
    title = (
        f"{d['scenario']}: monthly cost projection (genai-prices at {d['price_date']}; "
        f"≤{d['sim_users']:,} simulated users per size)"
    )
    for table in fitted_tables(columns, lines, console.width, 2, title):
        console.print(table)
    console.print(
        " · ".join(
            f"{m}: ${p['input_usd_per_million_tokens']:g} in, "
            f"${p['output_usd_per_million_tokens']:g} out per 1M tokens"
            for m, p in d["prices"].items()
        ),
        highlight=False,
    )
    if len(models) > 1:
        console.print(
            f"failures, p99 and queue: {models[0]}; projection.md has them per model",
            highlight=False,
        )
    for note in bite_notes(d):
        console.print(f"rate limits: {note}", highlight=False)


# -- chart ------------------------------------------------------------------------
LINESTYLES = ("-", "--", ":", "-.")


def draw_chart(document: dict[str, Any]) -> Any:
    """Monthly USD against users, log-log, one line per strategy × model.

    Points where at least 1% of turns or calls timed out are ringed in red. Returns a
    matplotlib ``Figure`` (Agg canvas; pyplot's global state is not touched).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(8, 5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    strategies = list(dict.fromkeys(r["strategy"] for r in document["rows"]))
    models = list(document["prices"])
    flagged_x, flagged_y = [], []
    for si, strategy in enumerate(strategies):
        for mi, model in enumerate(models):
            rows = [r for r in document["rows"] if (r["strategy"], r["model"]) == (strategy, model)]
            rows = [r for r in rows if r["usd_per_month"] > 0]  # a log axis has no zero
            ax.plot(
                [r["users"] for r in rows],
                [r["usd_per_month"] for r in rows],
                color=f"C{si % 10}",
                linestyle=LINESTYLES[mi % len(LINESTYLES)],
                marker="o",
                markersize=4,
                label=f"{strategy} · {model}",
            )
            for r in rows:
                if _bites(r):
                    flagged_x.append(r["users"])
                    flagged_y.append(r["usd_per_month"])
    if flagged_x:
        ax.scatter(
            flagged_x,
            flagged_y,
            s=110,
            facecolors="none",
            edgecolors="red",
            linewidths=1.5,
            label=f"≥{TIMEOUT_NOTICE:.0%} of turns or calls timed out",
            zorder=3,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: size_label(round(x))))
    ax.set_xlabel("users")
    ax.set_ylabel("USD per month")
    ax.set_title(
        f"{document['scenario']}: monthly cost by users (genai-prices at {document['price_date']})",
        fontsize=10,
    )
    ax.grid(True, which="major", alpha=0.4)
    ax.grid(True, which="minor", alpha=0.15)
    ax.legend(
        *_legend_key(strategies, models, flagged=bool(flagged_x)),
        fontsize=7,
        loc="upper left",
        handlelength=LEGEND_HANDLE_LENGTH,
    )
    return fig


LEGEND_HANDLE_LENGTH = 5.0
"""Legend lines, in font sizes (5 × 7 pt = 35 pt): two periods of the longest dash pattern
drawn (``-.`` at matplotlib's default width, about 16 pt), so every style reads as itself."""


def _legend_key(strategies: list[str], models: list[str], flagged: bool) -> tuple[list, list]:
    """One entry per strategy (its color, solid) and per model (its line style, in grey).

    The chart draws strategy × model lines; keying color and style apart keeps the
    legend short. Model entries carry no marker, which would hide the dashes.
    """
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=f"C{si % 10}") for si in range(len(strategies))]
    labels = list(strategies)
    if len(models) > 1:
        handles += [
            Line2D([], [], color="#555555", linestyle=LINESTYLES[mi % len(LINESTYLES)])
            for mi in range(len(models))
        ]
        labels += models
    if flagged:
        handles.append(Line2D([], [], ls="", marker="o", ms=9, mfc="none", mec="red", mew=1.5))
        labels.append(f"≥{TIMEOUT_NOTICE:.0%} of turns or calls timed out")
    return handles, labels


def _save(fig: Any, fmt: str) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        import matplotlib

        # Fixed ids and no timestamps, so the same projection gives the same file.
        with matplotlib.rc_context({"svg.hashsalt": "memsim", "svg.fonttype": "path"}):
            metadata = {"Date": None} if fmt == "svg" else {"Software": None}
            fig.savefig(tmp, format=fmt, dpi=150, metadata=metadata)

    return write


# -- files ------------------------------------------------------------------------
def write_projection(document: dict[str, Any], out: Path) -> list[Path]:
    """Write projection.json, .md, .png and .svg into ``out``, each atomically."""
    prepare_out_dir(out)
    texts = {"projection.json": dumps(document), "projection.md": render_markdown(document)}
    for name, text in texts.items():
        atomic_write(out / name, lambda tmp, t=text: tmp.write_text(t, encoding="utf-8"))
    fig = draw_chart(document)
    for fmt in ("png", "svg"):
        atomic_write(out / f"projection.{fmt}", _save(fig, fmt))
    return [out / name for name in FILES]
