"""``memsim fit``: fit memsim's LLM latency model to a team's own calls.

It is long because it is the whole study: the fit, its test on held-out calls, the
report, and the live measurement that feeds it (which shares the fit's log format).

The model is :mod:`sim.latency`'s: ``ttft = (ttft_base_s + prefill_s_per_token ·
uncached input) · jitter`` and ``decode = output / decode_tokens_per_s · jitter``,
one log-normal jitter per call. From measured calls (:class:`sim.calllog.Call`):

* **time to first token**: ``ttft_base_s`` and ``prefill_s_per_token`` by robust
  nonlinear least squares on the log (``scipy.optimize.least_squares``, soft-L1
  loss, started from ``scipy.stats.siegelslopes``): the log makes the fit find the
  median line of a multiplicative noise, the loss keeps stalls from pulling it;
* **decode rate**: ``decode_tokens_per_s`` the same way from the time between the
  first and the last token against output tokens;
* **spread**: ``jitter_sigma`` from the time-to-first-token log residuals (1.4826 ×
  their median absolute deviation), ``jitter_sigma_per_1k_tokens`` the Theil–Sen
  slope of ``|residual| · √(π/2)`` against uncached input / 1000 (at least 0);
* **output tokens** per purpose: a log-normal (``scipy.stats.lognorm.fit``).

Every 5th call (in log order) is held out of the fit and predicts nothing: the
report compares the fitted profile's predictions with it — MAPE of the median
latency, the p50/p95 of the calls' latency (Monte Carlo of the fitted model at
their prompt and output sizes) and the KS distance of output lengths.

Live measurement (:func:`measure_live`) sends a bounded sample of the scenario's
own prompts, streamed with the ``openai`` client, and writes what it measured in
the ``openai`` log format (``measurements.jsonl``), so that an interrupted
measurement can be fitted later with ``memsim fit --log``.

A run checked against the endpoint (:func:`run_prompts`, :func:`check_run`): the
run's own LLM calls, each sent as a prompt of exactly its input tokens and
answered at the endpoint's own length, and the p50/p95 of their measured
latencies set beside the latencies the run modelled for the same calls.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from sim import __version__
from sim.calllog import Call
from sim.config import ConfigError, Scenario
from sim.latency import PROFILE_FORMAT, LatencyProfile

HOLD_OUT_EVERY = 5
"""Every 5th call (indices 4, 9, …) is held out of the fit to test it."""
MIN_CALLS = 10
"""Fewest calls with a first-token time a model needs for a fit."""
MC_DRAWS = 400
"""Monte Carlo draws per held-out call for the predicted latency quantiles."""


# -- fitting ------------------------------------------------------------------------------
def split(calls: Sequence[Call]) -> tuple[list[Call], list[Call]]:
    """Training and held-out calls: every :data:`HOLD_OUT_EVERY`-th call is held out."""
    train = [c for i, c in enumerate(calls) if i % HOLD_OUT_EVERY != HOLD_OUT_EVERY - 1]
    test = [c for i, c in enumerate(calls) if i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1]
    return train, test


def fit_ttft(uncached: np.ndarray, ttft: np.ndarray) -> tuple[float, float, np.ndarray]:
    """``(ttft_base_s, prefill_s_per_token, log residuals)`` of a robust fit on the log."""
    slope, intercept = stats.siegelslopes(ttft, uncached)
    start = [max(intercept, 1e-3), max(slope, 0.0)]
    scale = max(float(np.max(uncached)), 1.0)

    def residuals(p: np.ndarray) -> np.ndarray:
        return np.log(ttft) - np.log(p[0] + p[1] * uncached / scale)

    fit = optimize.least_squares(
        residuals,
        [start[0], start[1] * scale],
        bounds=([1e-6, 0.0], [np.inf, np.inf]),
        loss="soft_l1",
        f_scale=0.1,
    )
    base, prefill = float(fit.x[0]), float(fit.x[1]) / scale
    return base, prefill, residuals(fit.x)


def fit_decode(tokens_out: np.ndarray, decode_s: np.ndarray) -> float:
    """``decode_tokens_per_s``: the robust median rate, on the log."""
    log_rates = np.log(tokens_out / decode_s)
    fit = optimize.least_squares(
        lambda p: log_rates - p[0], [float(np.median(log_rates))], loss="soft_l1", f_scale=0.1
    )
    return float(math.exp(fit.x[0]))


def fit_spread(uncached: np.ndarray, residuals: np.ndarray) -> tuple[float, float]:
    """``(jitter_sigma, jitter_sigma_per_1k_tokens)`` from log residuals."""
    centred = residuals - np.median(residuals)
    sigma = float(stats.median_abs_deviation(centred, scale="normal"))
    if np.ptp(uncached) <= 0:
        return sigma, 0.0
    spread = np.abs(centred) * math.sqrt(math.pi / 2)
    per_1k = stats.siegelslopes(spread, uncached / 1e3)[0]
    per_1k = max(float(per_1k), 0.0)
    # The spread at no input: the overall one less the growth at the calls' median size.
    base = max(sigma - per_1k * float(np.median(uncached)) / 1e3, 0.0)
    return base, per_1k


def fit_output_tokens(outs: Sequence[int]) -> dict[str, Any]:
    """A log-normal of output lengths (calls with at least one output token)."""
    values = np.asarray([o for o in outs if o > 0], dtype=float)
    if len(values) < 2 or np.ptp(values) == 0:
        mu = float(np.log(values[0])) if len(values) else 0.0
        return {"distribution": "lognormal", "mu": mu, "sigma": 0.0, "calls": len(values)}
    shape, _, scale = stats.lognorm.fit(values, floc=0)
    return {
        "distribution": "lognormal",
        "mu": round(float(np.log(scale)), 6),
        "sigma": round(float(shape), 6),
        "p50": float(np.percentile(values, 50)),
        "p95": float(np.percentile(values, 95)),
        "calls": len(values),
    }


def _timed(calls: Sequence[Call]) -> list[Call]:
    return [c for c in calls if c.first_token_s is not None and c.ttft_s > 0]


def fit_model(model: str, calls: Sequence[Call]) -> tuple[dict[str, Any], LatencyProfile]:
    """One model's profile entry (figures and output lengths), fitted to ``calls``."""
    timed = _timed(calls)
    if len(timed) < MIN_CALLS:
        raise ConfigError(
            f"model {model!r}: {len(timed)} calls with a time to first token; a fit needs "
            f"at least {MIN_CALLS}"
        )
    uncached = np.array([c.uncached_in for c in timed], dtype=float)
    ttft = np.array([c.ttft_s for c in timed], dtype=float)
    base, prefill, residuals = fit_ttft(uncached, ttft)
    decoded = [c for c in timed if c.tokens_out > 1 and c.end_s > c.first_token_s]
    if len(decoded) < MIN_CALLS // 2:
        raise ConfigError(f"model {model!r}: too few calls with output to fit a decode rate")
    tps = fit_decode(
        np.array([c.tokens_out for c in decoded], dtype=float),
        np.array([c.end_s - c.first_token_s for c in decoded], dtype=float),
    )
    sigma, per_1k = fit_spread(uncached, residuals)
    profile = LatencyProfile(base, prefill, tps, sigma, per_1k, profile=model)
    by_purpose: dict[str, list[int]] = defaultdict(list)
    for c in calls:
        by_purpose[c.purpose].append(c.tokens_out)
    entry: dict[str, Any] = {
        "ttft_base_s": round(base, 6),
        "prefill_s_per_token": float(f"{prefill:.6g}"),
        "decode_tokens_per_s": round(tps, 3),
        "jitter_sigma": round(sigma, 4),
        "jitter_sigma_per_1k_tokens": round(per_1k, 5),
        "output_tokens": {p: fit_output_tokens(o) for p, o in sorted(by_purpose.items())},
        "extraction_yield": _extraction_yield(calls),
        "calls_fitted": len(calls),
    }
    return entry, profile


def _extraction_yield(calls: Sequence[Call]) -> dict[str, Any] | None:
    """Items (facts) per extraction call, where the log says (serve-mock records do)."""
    items = [c.items for c in calls if c.purpose == "extract" and c.items is not None]
    if not items:
        return None
    return {"items_per_call_mean": round(float(np.mean(items)), 4), "calls": len(items)}


# -- evaluation on the held-out calls -------------------------------------------------------
def _mape(predicted: np.ndarray, measured: np.ndarray) -> float:
    return float(np.mean(np.abs(predicted - measured) / measured)) * 100.0


def predicted_latencies(
    profile: LatencyProfile, calls: Sequence[Call], seed: int = 0, draws: int = MC_DRAWS
) -> np.ndarray:
    """Latencies the profile predicts at the calls' sizes (``draws`` jitters each)."""
    rng = np.random.default_rng(seed)
    medians = np.array([profile.median_s(c.uncached_in, c.tokens_out) for c in calls])
    sigmas = np.array([profile.sigma(c.uncached_in) for c in calls])
    z = rng.standard_normal((len(calls), draws))
    return (medians[:, None] * np.exp(sigmas[:, None] * z)).ravel()


def evaluate(profile: LatencyProfile, entry: dict, calls: Sequence[Call]) -> dict[str, Any]:
    """Errors of the fitted profile against ``calls`` (held out), per purpose and overall."""
    groups: dict[str, list[Call]] = defaultdict(list)
    for c in calls:
        groups[c.purpose].append(c)
    out: dict[str, Any] = {}
    for purpose, group in [("overall", list(calls)), *sorted(groups.items())]:
        measured = np.array([c.latency_s for c in group])
        median = np.array([profile.median_s(c.uncached_in, c.tokens_out) for c in group])
        sample = predicted_latencies(profile, group)
        row: dict[str, Any] = {
            "calls": len(group),
            "latency_mape_pct": round(_mape(median, measured), 2),
        }
        timed = _timed(group)
        if timed:
            ttft = np.array([c.ttft_s for c in timed])
            pred = np.array([profile.median_s(c.uncached_in) for c in timed])
            row["ttft_mape_pct"] = round(_mape(pred, ttft), 2)
        for q in (50, 95):
            m, p = float(np.percentile(measured, q)), float(np.percentile(sample, q))
            row[f"p{q}_measured_s"] = round(m, 4)
            row[f"p{q}_predicted_s"] = round(p, 4)
            row[f"p{q}_error_pct"] = round((p - m) / m * 100.0, 2)
        fitted = entry["output_tokens"].get(purpose) if purpose != "overall" else None
        outs = [c.tokens_out for c in group if c.tokens_out > 0]
        if fitted and fitted.get("sigma") and len(outs) >= 2:
            drawn = np.random.default_rng(1).lognormal(fitted["mu"], fitted["sigma"], 4000)
            row["output_tokens_ks"] = round(float(stats.ks_2samp(outs, drawn).statistic), 4)
        out[purpose] = row
    return out


def fit_calls(calls: Sequence[Call], source: dict[str, Any]) -> tuple[dict, dict]:
    """The profile document and the fit report of ``calls`` (every model in them)."""
    by_model: dict[str, list[Call]] = defaultdict(list)
    for c in calls:
        by_model[c.model].append(c)
    models, report = {}, {}
    for model, group in sorted(by_model.items()):
        train, test = split(group)
        entry, profile = fit_model(model, train)
        errors = evaluate(profile, entry, test or train)
        entry["fit_error"] = {
            "held_out": f"every {HOLD_OUT_EVERY}th call",
            "held_out_calls": len(test),
            **errors,
        }
        models[model] = entry
        report[model] = entry["fit_error"]
    profile_doc = {
        "format": PROFILE_FORMAT,
        "memsim_version": __version__,
        "source": source,
        "models": models,
    }
    report_doc = {"format": "memsim-fit-report/1", "source": source, "models": report}
    return profile_doc, report_doc


def report_markdown(profile_doc: dict, report_doc: dict) -> str:
    """``fit-report.md``: the fitted figures and their errors on the held-out calls."""
    lines = ["# memsim fit", "", f"Source: `{json.dumps(profile_doc['source'])}`", ""]
    for model, entry in profile_doc["models"].items():
        lines += [
            f"## {model}",
            "",
            f"- ttft_base_s: {entry['ttft_base_s']:.4f}",
            f"- prefill: {entry['prefill_s_per_token'] * 1e3 * 1e3:.2f} ms per 1k uncached tokens",
            f"- decode: {entry['decode_tokens_per_s']:.1f} tokens/s",
            f"- jitter_sigma: {entry['jitter_sigma']:.3f} "
            f"(+{entry['jitter_sigma_per_1k_tokens']:.4f} per 1k tokens)",
            "",
            "| purpose | held-out calls | latency MAPE | TTFT MAPE | p50 meas / pred | "
            "p95 meas / pred | output KS |",
            "|---|---|---|---|---|---|---|",
        ]
        for purpose, row in report_doc["models"][model].items():
            if not isinstance(row, dict):
                continue
            lines.append(
                f"| {purpose} | {row['calls']} | {row['latency_mape_pct']:.1f}% | "
                f"{row.get('ttft_mape_pct', float('nan')):.1f}% | "
                f"{row['p50_measured_s']:.3f} / {row['p50_predicted_s']:.3f} s | "
                f"{row['p95_measured_s']:.3f} / {row['p95_predicted_s']:.3f} s | "
                f"{row.get('output_tokens_ks', '')} |"
            )
        lines.append("")
    lines += [
        "MAPE: mean absolute error of the profile's median latency against each held-out "
        "call, in percent of the call (includes the calls' own jitter: about 0.8 σ at best). "
        "p50/p95: the held-out calls' latency quantiles against the profile's, simulated at "
        "the same prompt and output sizes. Output KS: the two-sample Kolmogorov–Smirnov "
        "distance between held-out output lengths and the fitted log-normal (0 = same).",
        "",
    ]
    return "\n".join(lines)


def write_fit(profile_doc: dict, report_doc: dict, output: Path) -> list[Path]:
    """Write ``profile.json`` (``output``) and ``fit-report.json``/``.md`` beside it."""
    output.parent.mkdir(parents=True, exist_ok=True)
    paths = [output, output.parent / "fit-report.json", output.parent / "fit-report.md"]
    texts = [
        json.dumps(profile_doc, indent=1) + "\n",
        json.dumps(report_doc, indent=1) + "\n",
        report_markdown(profile_doc, report_doc),
    ]
    for path, text in zip(paths, texts, strict=True):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return paths


# -- live measurement ---------------------------------------------------------------------------
def live_prompts(scenario: Scenario, requests: int) -> list[tuple[str, list[dict[str, str]]]]:
    """``requests`` prompts from the scenario's own workload: (purpose, messages).

    Three in four are chat prompts (a system line and 1 to 300 of the users'
    messages, about 20 to 5,000 tokens), one in four extraction prompts (the
    ``compact`` template over 2 to 100 messages); sizes drawn with the scenario's
    seed, so that the prompt sizes spread enough to separate prefill from the base.
    """
    from sim.extraction_prompts import extraction_prompt
    from sim.tokens import TokenCounter
    from sim.workload import generate_workload

    workload = generate_workload(scenario, TokenCounter(), range(min(scenario.users, 20)))
    texts = [m.text for u in workload.users for s in u.sessions for m in s.messages]
    if len(texts) < 2:
        raise ConfigError("the scenario's workload has too few messages to build prompts")
    rng = random.Random(scenario.seed)
    template = extraction_prompt("compact")
    prompts = []
    for i in range(requests):
        at = rng.randrange(len(texts))
        if i % 4 == 3:
            window = [texts[(at + k) % len(texts)] for k in range(rng.randint(2, 100))]
            body = "".join(f"User: {t}\n" for t in window)
            messages = [
                {"role": "system", "content": template.system},
                {"role": "user", "content": template.preamble + body},
            ]
            prompts.append(("extract", messages))
        else:
            history = [texts[(at + k) % len(texts)] for k in range(rng.randint(1, 300))]
            messages = [{"role": "system", "content": "You are a helpful support assistant."}]
            messages += [{"role": "user", "content": t} for t in history]
            prompts.append(("chat", messages))
    return prompts


def call_line(model: str, purpose: str, measured: dict[str, Any], request: int) -> dict[str, Any]:
    """One measured call as a line of the ``openai`` log format (``request``: its index)."""
    return {"model": model, "purpose": purpose, "request": request, **measured}


def sized_messages(tokens_in: int, tag: str) -> list[dict[str, str]]:
    """One user message whose request bills exactly ``tokens_in`` input tokens.

    In the chat format and encoding memsim bills (:mod:`sim.tokens`); the content is
    ``tag`` and then ``memory`` repeated (one cl100k token each). A distinct ``tag``
    per request keeps a provider's prompt cache from serving one request's prefix to
    the next. At least the tag: a smaller ``tokens_in`` gets the smallest such prompt.
    """
    from sim.tokens import REPLY_PRIMING_TOKENS, TokenCounter

    counter = TokenCounter()
    room = tokens_in - REPLY_PRIMING_TOKENS - counter.message("user", 0) - counter.count(tag)
    return [{"role": "user", "content": tag + " memory" * max(room, 0)}]


def run_prompts(
    calls: pd.DataFrame, requests: int, max_tokens: int, seed: int = 0
) -> tuple[list[tuple[str, list, int]], pd.DataFrame]:
    """A run's LLM calls as prompts of their own input sizes, and what the run modelled.

    ``calls`` is a run's ``calls.parquet`` (one strategy). Its first attempts that did
    not fail, at most ``requests`` of them drawn without replacement (seeded), each as
    ``(purpose, messages, max_tokens)``: a prompt of the call's input tokens that the
    endpoint answers at its own length, up to ``max_tokens`` (the run's output
    lengths are a draw from the fitted ones, so the two are compared as
    distributions: no API makes a model write exactly n tokens). Returned with the
    chosen rows' ``latency_s`` and ``tokens_out``. A run that read the prompt cache
    is refused (the prompts are sent uncached, the run's cached calls were modelled
    faster).
    """
    need = {"endpoint", "purpose", "tokens_in", "tokens_out", "latency_s", "attempt"}
    if missing := sorted(need - set(calls.columns)):
        raise ConfigError(f"not a memsim calls table: no column {missing[0]!r}")
    if "strategy" in calls.columns and calls["strategy"].nunique() > 1:
        names = ", ".join(sorted(map(str, calls["strategy"].unique())))
        raise ConfigError(f"the calls of several strategies ({names}): check one run at a time")
    llm = calls[(calls["endpoint"] == "llm") & (calls["attempt"] == 0)]
    if "error" in llm.columns:
        llm = llm[llm["error"].astype(str) == ""]
    if "cached_tokens" in llm.columns and (cached := int((llm["cached_tokens"] > 0).sum())):
        raise ConfigError(
            f"{cached} of the run's calls read the prompt cache: check a run made with "
            '[llm.cache] mode = "none" (the check sends every prompt uncached)'
        )
    if llm.empty:
        raise ConfigError("the run made no LLM call to check")
    rng = np.random.default_rng(seed)
    chosen = llm.iloc[np.sort(rng.permutation(len(llm))[: min(requests, len(llm))])]
    sizes = zip(chosen["purpose"], chosen["tokens_in"], strict=True)
    prompts = [
        (str(purpose), sized_messages(int(tokens_in), f"call {i}:"), max_tokens)
        for i, (purpose, tokens_in) in enumerate(sizes)
    ]
    return prompts, chosen[["latency_s", "tokens_out"]].reset_index(drop=True)


def check_run(
    prompts: Sequence[tuple[str, list, int]], chosen: pd.DataFrame, measurements: Path
) -> dict[str, Any]:
    """The run's p50/p95 against the endpoint's on the same calls, per purpose and overall.

    ``chosen`` and ``prompts`` are what :func:`run_prompts` returned,
    ``measurements`` what :func:`measure_live` wrote for them (each line names its
    ``request``). Beside the quantiles, the mean output tokens of the run's calls
    and of the endpoint's answers: where they differ, so does the decode time.
    """
    groups: dict[str, list[tuple[float, float, int, int]]] = defaultdict(list)
    for line in measurements.read_text(encoding="utf-8").splitlines():
        done = json.loads(line)
        i = done["request"]
        row = (
            float(chosen["latency_s"].iat[i]),
            done["end_time"] - done["start_time"],
            int(chosen["tokens_out"].iat[i]),
            int(done["usage"]["completion_tokens"]),
        )
        groups[prompts[i][0]].append(row)
        groups["overall"].append(row)
    if not groups:
        raise ConfigError(f"{measurements}: no call was measured")
    out: dict[str, Any] = {}
    for purpose in ["overall", *sorted(k for k in groups if k != "overall")]:
        table = np.array(groups[purpose], dtype=float)
        row: dict[str, Any] = {
            "calls": len(table),
            "output_tokens_mean_run": round(float(table[:, 2].mean()), 1),
            "output_tokens_mean_measured": round(float(table[:, 3].mean()), 1),
        }
        for q in (50, 95):
            run, endpoint = np.percentile(table[:, 0], q), np.percentile(table[:, 1], q)
            row[f"p{q}_run_s"] = round(float(run), 4)
            row[f"p{q}_measured_s"] = round(float(endpoint), 4)
            row[f"p{q}_error_pct"] = round(float((run - endpoint) / endpoint * 100.0), 2)
        out[purpose] = row
    return out


def _stream_once(client: Any, model: str, messages: list, max_tokens: int) -> dict[str, Any]:
    _SENT.time = start = time.time()
    first = None
    usage = None
    stream = client.chat.completions.create(
        model=model,
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=max_tokens,
    )
    start = _SENT.time  # set again by the HTTP client when the request left
    for chunk in stream:
        if first is None and any(c.delta and c.delta.content for c in chunk.choices):
            first = time.time()
        if chunk.usage is not None:
            usage = chunk.usage
    end = time.time()
    if usage is None:
        raise ConfigError("the endpoint streamed no usage (stream_options.include_usage)")
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) or 0
    return {
        "start_time": start,
        "first_token_time": first,
        "end_time": end,
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached},
        },
    }


_SENT = threading.local()


def _on_request(request: Any) -> None:
    _SENT.time = time.time()


def connect(base_url: str | None, api_key: str) -> Any:
    """An ``openai`` client (no retries: a refused request is reported, not repeated).

    Its HTTP client notes when each request leaves (per thread): a call's start is
    then, not before the SDK has prepared the body (which takes tens of
    milliseconds for a long conversation and would read as prefill).
    """
    import httpx
    import openai

    http = httpx.Client(event_hooks={"request": [_on_request]}, timeout=120.0)
    return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, http_client=http)


def measure_live(
    client: Any,
    model: str,
    prompts: Sequence[tuple[str, list] | tuple[str, list, int]],
    measurements: Path,
    concurrency: int = 4,
    rps: float | None = None,
    max_tokens: int = 300,
    advance: Callable[[], None] = lambda: None,
) -> int:
    """Send ``prompts`` streamed, append each measured call to ``measurements`` (JSONL).

    A prompt may carry its own ``max_tokens`` as a third item. The first request
    goes alone, so that a refused endpoint (401, unknown model,
    no server) fails once, as a :class:`ConfigError`. Returns the calls measured;
    an interrupt leaves the file holding every call finished before it.
    """
    import openai

    lock = threading.Lock()
    measurements.parent.mkdir(parents=True, exist_ok=True)
    measurements.write_text("", encoding="utf-8")
    done = [0]
    failure: list[BaseException] = []

    def one(request: int) -> None:
        purpose, messages, *own = prompts[request]
        if failure:
            return
        try:
            measured = _stream_once(client, model, messages, own[0] if own else max_tokens)
        except openai.APIStatusError as err:
            failure.append(
                ConfigError(f"{client.base_url}: refused ({err.status_code}): {_message(err)}")
            )
            return
        except openai.APIConnectionError as err:
            failure.append(ConfigError(f"{client.base_url}: cannot connect ({err})"))
            return
        line = json.dumps(call_line(model, purpose, measured, request))
        with lock:
            with open(measurements, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
            done[0] += 1
        advance()

    one(0)
    if failure:
        raise failure[0]
    spacing = 1.0 / rps if rps else 0.0
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = []
        try:
            for request in range(1, len(prompts)):
                futures.append(pool.submit(one, request))
                if spacing:
                    time.sleep(spacing)
            for future in futures:
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            failure.append(ConfigError("stopped"))  # the workers skip what has not started
            raise
    if failure:
        raise ConfigError(
            f"{failure[0]} (the {done[0]} calls measured before are in {measurements})"
        )
    return done[0]


def _message(err: Any) -> str:
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(err).splitlines()[0]


def estimate_tokens(
    prompts: Sequence[tuple[str, list] | tuple[str, list, int]], max_tokens: int
) -> tuple[int, int]:
    """Input tokens of the prompts (cl100k, chat format) and the most output tokens."""
    from sim.tokens import TokenCounter

    counter = TokenCounter()
    tokens_in = sum(counter.chat([(m["role"], m["content"]) for m in p[1]]) for p in prompts)
    return tokens_in, sum(p[2] if len(p) > 2 else max_tokens for p in prompts)
