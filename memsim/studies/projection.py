"""Monthly cost by strategy, model and number of users, from scaled simulation.

``memsim project`` answers "what would this cost a month at 10k, 100k, 1M
users?" without simulating a million users and without multiplying a small
run by a large number, which hides what rate limits do at scale. This study
decides and runs; :mod:`reports.projection` renders the document it returns.

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
* Each sample runs through :func:`sim.runner.run_scenario`, like any run: a
  sample of more than ``shard_users`` users is itself simulated shard by shard
  (on ``workers`` processes of ``executor``), each shard with its share of the
  sample's share.
* A month is 30 days at the mean daily rate of the simulated days; for
  strategies whose cost grows with history, simulate a full month.
* The prompt cache follows the scenario's ``[llm.cache]`` (by default the rule
  of its model's provider). The tokens it read and wrote are priced at each
  model's cache prices (``usd_per_month``; ``usd_per_month_uncached`` bills them
  all at the input price); a model whose minimum cacheable prompt differs from
  the scenario model's (Anthropic, Gemini) would cache somewhat more or less.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from reports.numbers import DAYS_PER_MONTH, rounded
from sim import __version__
from sim.config import ConfigError, EndpointLimits, Scenario, config_sha256
from sim.context import EMBEDDING, LLM
from sim.executors import ExecutorName
from sim.latency import OVERRIDABLE
from sim.latency import resolve as resolve_latency
from sim.limits import TIMEOUT
from sim.pricing import MILLION, Rates, chat_rates, scenario_rates
from sim.records import StrategyRun
from sim.runner import ProgressFactory, build_strategies, resolve_config, run_scenario
from sim.shards import share_scenario
from sim.sizes import size_label

DEFAULT_SIM_USERS = 500

Projection = dict[str, Any]
"""The projection document, the text of ``projection.json`` as data (see :func:`project`)."""


# -- input ------------------------------------------------------------------------
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


def check(scenario: Scenario, source: str, models: list[str], sim_users: int) -> None:
    """Everything :func:`project` would refuse, without simulating: one-line errors."""
    if sim_users < 1:
        raise ConfigError(f"--sim-users: {sim_users}: expected a positive number")
    if scenario.trace is not None:
        raise ConfigError(
            f"{source}: field 'trace': a projection scales synthetic users; "
            "a trace has a fixed set of users (use `memsim run`)"
        )
    model_rates(scenario, models or [scenario.llm.model])
    build_strategies(scenario, source)


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
    progress: ProgressFactory | None = None,
    workers: int = 1,
    executor: ExecutorName = "local",
    address: str | None = None,
) -> list[StrategyRun]:
    """Simulate every strategy for the sample of ``users`` (see the module docstring).

    One :func:`sim.runner.run_scenario` of the scaled scenario, with the store's
    latency modelled at ``users``; ``progress`` is the run's progress factory.
    """
    result = run_scenario(
        scaled_scenario(scenario, users, sim_users),
        source,
        progress,
        workers=workers,
        executor=executor,
        address=address,
        store_latency_users=users,
    )
    return result.runs


# -- figures ----------------------------------------------------------------------
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
        "latency_p99_s": rounded(np.percentile(ok, 99)) if len(ok) else None,
        "queue_mean_s": rounded(turns["queue_s"].mean()) if len(turns) else 0.0,
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
        "usd_per_month": rounded(usd * per_user_month * users),
        "usd_per_user_per_month": rounded(usd * per_user_month),
        "usd_per_month_uncached": rounded(uncached * per_user_month * users),
        "cached_tokens_per_month": round(usage["llm_cached"] * per_user_month * users),
        "tokens_per_month": round(tokens * per_user_month * users),
        "tokens_per_user_per_month": rounded(tokens * per_user_month),
        "chat_tokens_in_per_month": round(usage["llm_in"] * per_user_month * users),
        "chat_tokens_out_per_month": round(usage["llm_out"] * per_user_month * users),
        "embedding_tokens_per_month": round(usage["embedding_tokens"] * per_user_month * users),
        "error_share": rounded(usage["error_turns"] / turns),
        "timeout_share": rounded(usage["timeout_turns"] / turns),
        "call_timeout_share": rounded(usage["timed_out_calls"] / max(usage["remote_calls"], 1)),
        "latency_p99_s": usage["latency_p99_s"],
        "queue_mean_s": usage["queue_mean_s"],
    }


def _limits_entry(scenario: Scenario, users: int, sim_users: int) -> dict[str, Any]:
    scaled = scaled_scenario(scenario, users, sim_users)

    def block(lim: EndpointLimits) -> dict[str, Any]:
        return {"concurrency": lim.concurrency, "rpm": rounded(lim.rpm), "tpm": rounded(lim.tpm)}

    return {
        "users": users,
        "simulated_users": scaled.users,
        "share": rounded(scaled.users / users),
        "chat_limits": block(scaled.limits),
        "embedding_limits": block(scaled.embedding.limits),
        "store_concurrency": scaled.vector_store.concurrency,
        "background_workers": scaled.background_workers,
    }


def _price_entry(rates: Rates) -> dict[str, Any]:
    return {
        "input_usd_per_million_tokens": rounded(rates.input_usd_per_token * MILLION),
        "output_usd_per_million_tokens": rounded(rates.output_usd_per_token * MILLION),
        "source": rates.source,
    }


def sample_label(users: int, sim_users: int) -> str:
    """How progress names the simulation of one size: ``10k users (n=500)``."""
    return f"{size_label(users)} users (n={min(users, sim_users):,})"


def _named(progress: ProgressFactory, name: str) -> ProgressFactory:
    """``progress`` with every strategy's (and shard's) share under one ``name``."""
    return lambda _strategy, total: progress(name, total)


def project(
    scenario: Scenario,
    source: str,
    sizes: list[int],
    models: list[str],
    sim_users: int = DEFAULT_SIM_USERS,
    progress: ProgressFactory | None = None,
    workers: int = 1,
    executor: ExecutorName = "local",
    address: str | None = None,
) -> Projection:
    """The projection document (``projection.json``): prices, limits per size, and rows.

    Rows are ordered by strategy (the scenario's order), model (as given), then size.
    ``progress(name, turns)`` is called as each strategy (and shard) of a size
    starts, with the size's :func:`sample_label` as ``name``: a display keyed by
    name adds the totals up into one bar per size. ``workers``, ``executor`` and
    ``address`` go to :func:`sim.runner.run_scenario` (a sample of more than
    ``shard_users`` users is sharded); the result does not depend on them.
    """
    check(scenario, source, models, sim_users)
    rates = model_rates(scenario, models or [scenario.llm.model])
    base = build_strategies(scenario, source)
    embedding = scenario_rates(scenario)[1]
    usage: dict[tuple[str, int, str], dict] = {}
    for users in sizes:
        label = sample_label(users, sim_users)
        for timed, group in latency_groups(scenario, list(rates)):
            named = _named(progress, label) if progress is not None else None
            runs = simulate_size(timed, source, users, sim_users, named, workers, executor, address)
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
        "embedding_usd_per_million_tokens": rounded(embedding.input_usd_per_token * MILLION),
        "sizes": [_limits_entry(scenario, users, sim_users) for users in sizes],
        "rows": rows,
    }
