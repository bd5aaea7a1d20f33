"""`memsim fit` at full size (``make bench``; not part of ``make test``).

A `memsim serve-mock --simulate-latency` subprocess with known, non-default latency
parameters is measured by `memsim fit --base-url` with its default sample; the fit
must recover base, prefill and decode rate within 5%, a fit of the log the server
recorded must agree within 5%, and a 30-day run on the fitted profile, its own LLM
calls sent back to the server (`memsim fit --check-run`), must predict the server's
p50 and p95 within 10%. The figures go into docs/benchmarks.md between the
``bench:fit`` markers.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import date

import numpy as np
import pytest
from test_bench import machine, write_between

MEMSIM = (sys.executable, "-m", "memsim")
SIGMA = 0.05
TRUE = {"ttft_base_s": 0.25, "prefill_s_per_token": 4e-5, "decode_tokens_per_s": 80.0}
SERVER = f"""\
name = "fit-bench"
users = 20
[llm]
ttft_base_s = {TRUE["ttft_base_s"]}
prefill_s_per_token = {TRUE["prefill_s_per_token"]}
decode_tokens_per_s = {TRUE["decode_tokens_per_s"]}
jitter_sigma = {SIGMA}
jitter_sigma_per_1k_tokens = 0
"""
CONCURRENCY = 4
FIT_REQUESTS = 400
CHECKED_CALLS = 300


def memsim(*args: str, **env: str) -> tuple[float, str]:
    """Run `memsim ARGS`; its wall time and stdout."""
    began = time.monotonic()
    done = subprocess.run(
        [*MEMSIM, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return time.monotonic() - began, done.stdout


def estimator_spread(scenario: str, draws: int = 20) -> dict[str, float]:
    """Per parameter, the standard deviation (%) of the fit over ``draws`` synthetic
    samples of the live fit's prompts with the server's model and jitter: how far
    from the truth a perfect measurement of this many calls lands by chance alone."""
    from memsim import api
    from memsim.studies import fit as study
    from sim.calllog import Call
    from sim.tokens import TokenCounter

    prompts = study.live_prompts(api.load_scenario(scenario), FIT_REQUESTS)
    counter = TokenCounter()
    sizes = [counter.chat([(m["role"], m["content"]) for m in p[1]]) for p in prompts]
    base, prefill, decode = TRUE.values()
    errors = []
    for seed in range(draws):
        rng = np.random.default_rng(seed)
        calls = []
        for (purpose, _), n in zip(prompts, sizes, strict=True):
            jitter = float(np.exp(SIGMA * rng.standard_normal()))
            ttft = (base + prefill * n) * jitter
            calls.append(Call("m", purpose, n, 0, 140, 0.0, ttft, ttft + 140 / decode * jitter))
        fitted = study.fit_calls(calls, {"kind": "synthetic"})[0]["models"]["m"]
        errors.append([(fitted[k] - v) / v * 100 for k, v in TRUE.items()])
    return dict(zip(TRUE, np.std(errors, axis=0), strict=True))


@pytest.mark.bench
def test_fit_and_run_check_full_size(tmp_path):
    scenario = tmp_path / "fit-bench.toml"
    scenario.write_text(SERVER)
    record = tmp_path / "record.jsonl"
    cmd = [*MEMSIM, "serve-mock", str(scenario), "--port", "0", "--simulate-latency"]
    server = subprocess.Popen([*cmd, "--record", str(record)], stdout=subprocess.PIPE, text=True)
    try:
        url = re.search(r"(http://\S+/v1)", server.stdout.readline()).group(1)
        live = tmp_path / "live" / "profile.json"
        fit_s, _ = memsim(
            *("fit", "--base-url", url, "--model", "gpt-4o-mini", "--scenario", str(scenario)),
            *("--requests", str(FIT_REQUESTS), "--concurrency", str(CONCURRENCY)),
            *("--yes", "-q", "-o", str(live)),
            OPENAI_API_KEY="not-a-key",
        )
        logged = tmp_path / "log" / "profile.json"
        memsim("fit", "--log", str(record), "--format", "serve-mock", "-o", str(logged))
        run = tmp_path / "run"
        run_scenario = tmp_path / "run.toml"
        run_scenario.write_text(
            'name = "fit-bench-run"\nusers = 20\ndays = 30\nstrategies = ["naive-append"]\n'
            f'[llm]\nprofile = "{live}"\n[llm.cache]\nmode = "none"\n'
        )
        memsim("run", str(run_scenario), "-q", "--out", str(run))
        check = tmp_path / "check" / "profile.json"
        check_s, _ = memsim(
            *("fit", "--base-url", url, "--model", "gpt-4o-mini"),
            *("--check-run", str(run / "calls.parquet"), "--requests", str(CHECKED_CALLS)),
            *("--concurrency", str(CONCURRENCY), "--yes", "-q", "-o", str(check)),
            OPENAI_API_KEY="not-a-key",
        )
    finally:
        server.terminate()
        server.wait(10)
    fitted = json.loads(live.read_text())["models"]["gpt-4o-mini"]
    from_log = json.loads(logged.read_text())["models"]["gpt-4o-mini"]
    held_out = fitted["fit_error"]["overall"]
    checked = json.loads((check.parent / "check-report.json").read_text())["latency"]["overall"]
    spread = estimator_spread(str(scenario))
    rows = [
        ("parameter", "server (true)", "live fit", "error", "fit of the record", "error", "sd"),
        ("---",) * 7,
    ]
    for key, true in TRUE.items():
        err = (fitted[key] - true) / true * 100
        log_err = (from_log[key] - true) / true * 100
        rows.append((f"`{key}`", f"{true:g}", f"{fitted[key]:.4g}", f"{err:+.1f}%"))
        rows[-1] += (f"{from_log[key]:.4g}", f"{log_err:+.1f}%", f"{spread[key]:.1f}%")
    table = "\n".join("| " + " | ".join(r) + " |" for r in rows)
    quantiles = "\n".join(
        f"| p{q} | {checked[f'p{q}_run_s']:.3f} s | {checked[f'p{q}_measured_s']:.3f} s "
        f"| {checked[f'p{q}_error_pct']:+.1f}% |"
        for q in (50, 95)
    )
    text = f"""Measured {date.today().isoformat()} on {machine()} with `make bench`
(`tests/bench/test_bench_fit.py`): `memsim serve-mock --simulate-latency` on a scenario
with the latency parameters below (jitter σ {SIGMA}), `memsim fit
--base-url` ({FIT_REQUESTS} streamed requests, concurrency {CONCURRENCY}, max_tokens 300)
in {fit_s:.0f} s:

{table}

"fit of the record" fits the log the server wrote (its own modelled latencies, no
network); "sd" is the fit's spread by chance alone: the standard deviation of its
error over 20 synthetic samples of the same prompts with the same model and jitter
(with σ 0.08 + 0.01 per 1k tokens instead, the prefill's sd is about 4%: a 5% bar
then needs about 4× the requests).

Held-out calls of the live fit ({held_out["calls"]}): latency MAPE
{held_out["latency_mape_pct"]:.1f}%, p50 {held_out["p50_error_pct"]:+.1f}%, p95
{held_out["p95_error_pct"]:+.1f}%.

A run on the fitted profile (`naive-append`, 20 users × 30 days, prompt cache off
as the mock server has none), {checked["calls"]} of its LLM calls sent back to the
server at their sizes with `memsim fit --check-run` in {check_s:.0f} s:

| | run (modelled) | server (measured) | error |
|---|---|---|---|
{quantiles}

Mean output tokens: {checked["output_tokens_mean_run"]:.0f} in the run (drawn from the
fitted lengths), {checked["output_tokens_mean_measured"]:.0f} from the server."""
    write_between("fit", text)
    for key, true in TRUE.items():
        assert abs(fitted[key] - true) / true < 0.05, (key, fitted[key])
        assert abs(from_log[key] - true) / true < 0.05, (key, from_log[key])
    for q in (50, 95):
        assert abs(checked[f"p{q}_error_pct"]) < 10, checked
