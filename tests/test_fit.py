"""`memsim fit`: profile files, fitting from logs and live, and bad input (issue 18).

The live test starts `memsim serve-mock --simulate-latency` as a subprocess (a
server in the test's own process shares the GIL with the client's threads and
delays the streamed chunks by a few per cent) with known, non-default latency
parameters, measures it with the live fit, and checks that the fit recovers them.
"""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import openai
import pandas as pd
import pytest
from typer.testing import CliRunner

from memsim.cli import app
from memsim.studies import fit as study
from sim.calllog import read_calls
from sim.config import ConfigError, LLMConfig
from sim.latency import PROFILE_FORMAT, resolve

runner = CliRunner()
MEMSIM = (sys.executable, "-m", "memsim")
TRUE = {"ttft_base_s": 0.4, "prefill_s_per_token": 4e-5, "decode_tokens_per_s": 500.0}
SCENARIO = f"""\
name = "fit-test"
users = 5
[llm]
ttft_base_s = {TRUE["ttft_base_s"]}
prefill_s_per_token = {TRUE["prefill_s_per_token"]}
decode_tokens_per_s = {TRUE["decode_tokens_per_s"]}
jitter_sigma = 0.04
jitter_sigma_per_1k_tokens = 0
"""
REQUESTS, CONCURRENCY, MAX_TOKENS = 96, 6, 40


def invoke(*args: str, **env: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200", **env})


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def within(fitted: dict, share: float) -> None:
    for key, true in TRUE.items():
        assert abs(fitted[key] - true) / true < share, (key, fitted[key], true)


@contextlib.contextmanager
def serve_mock(scenario: Path, *extra: str):
    """`memsim serve-mock --simulate-latency` on ``scenario`` in a subprocess: its URL."""
    server = subprocess.Popen(
        [*MEMSIM, "serve-mock", str(scenario), "--port", "0", "--simulate-latency", *extra],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield re.search(r"(http://\S+/v1)", server.stdout.readline()).group(1)
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A live fit of a serve-mock subprocess, and the log serve-mock recorded."""
    folder = tmp_path_factory.mktemp("fit")
    scenario = folder / "fit-test.toml"
    scenario.write_text(SCENARIO)
    record = folder / "record.jsonl"
    with serve_mock(scenario, "--record", str(record)) as url:
        from memsim import api

        scn = api.load_scenario(scenario)
        prompts = study.live_prompts(scn, REQUESTS)
        measurements = folder / "measurements.jsonl"
        client = study.connect(url, "not-a-key")
        study.measure_live(
            client, scn.llm.model, prompts, measurements, CONCURRENCY, None, MAX_TOKENS
        )
    calls = read_calls(measurements, "openai")
    profile_doc, report_doc = study.fit_calls(calls, {"kind": "live"})
    return {
        "folder": folder,
        "scenario": scenario,
        "record": record,
        "calls": calls,
        "profile": profile_doc,
        "report": report_doc,
    }


def test_live_fit_recovers_the_servers_latency_parameters(live):
    fitted = live["profile"]["models"]["gpt-4o-mini"]
    within(fitted, 0.05)
    assert fitted["fit_error"]["overall"]["calls"] == REQUESTS // 5


def test_a_run_with_the_fitted_profile_predicts_the_servers_p50_and_p95(live, tmp_path):
    """A memsim run on the fitted profile, then its own LLM calls sent to the server at
    their sizes (`memsim fit --check-run`): the run's modelled p50 and p95 against the
    server's measured ones on the same calls. The server caches no prompt, nor does
    the run (``mode = "none"``); the server answers up to the fit's 40 tokens, the run
    draws its replies from the lengths fitted on them."""
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps(live["profile"]))
    scenario = tmp_path / "run.toml"
    scenario.write_text(
        f'name = "fit-run"\nusers = 4\ndays = 7\nstrategies = ["naive-append"]\n'
        f'[llm]\nprofile = "{profile}"\n[llm.cache]\nmode = "none"\n'
    )
    out = tmp_path / "run"
    assert invoke("run", str(scenario), "-q", "--out", str(out)).exit_code == 0
    calls = out / "calls.parquet"
    with serve_mock(live["scenario"]) as url:
        args = ["fit", "--base-url", url, "--model", "gpt-4o-mini", "--check-run", str(calls)]
        args += ["--requests", "64", "--concurrency", str(CONCURRENCY), "--yes", "-q"]
        args += ["--max-tokens", str(MAX_TOKENS)]
        result = invoke(*args, "-o", str(tmp_path / "check" / "p.json"), OPENAI_API_KEY="k")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "check" / "check-report.json").read_text())
    overall = report["latency"]["overall"]
    llm_calls = (pd.read_parquet(calls)["endpoint"] == "llm").sum()
    assert overall["calls"] == min(64, llm_calls) > 40, overall
    for q in (50, 95):
        assert abs(overall[f"p{q}_error_pct"]) < 10, overall
    lines = (tmp_path / "check" / "check-measurements.jsonl").read_text().splitlines()
    sizes = {json.loads(line)["request"]: json.loads(line)["usage"] for line in lines}
    modelled = pd.read_parquet(calls).query("endpoint == 'llm'")
    assert {u["prompt_tokens"] for u in sizes.values()} <= set(modelled["tokens_in"])


def test_run_check_refuses_a_run_that_read_the_prompt_cache():
    cached = pd.DataFrame(
        {
            "endpoint": ["llm"],
            "purpose": ["chat"],
            "tokens_in": [3000],
            "tokens_out": [40],
            "latency_s": [0.5],
            "attempt": [0],
            "error": [""],
            "cached_tokens": [1024],
        }
    )
    with pytest.raises(ConfigError, match="prompt cache"):
        study.run_prompts(cached, 10, 300)
    messages = study.sized_messages(3000, "call 7:")
    from sim.tokens import TokenCounter

    assert TokenCounter().chat([(m["role"], m["content"]) for m in messages]) == 3000


def test_fitted_profile_predicts_the_measured_p50_and_p95(live):
    """The profile's latency quantiles at the sample's prompt and output sizes (a
    Monte Carlo of the fitted model, what a run draws per call) against the measured
    ones; a whole run would replay the same model at the same sizes, slower."""
    entry = live["profile"]["models"]["gpt-4o-mini"]
    path = live["folder"] / "profile.json"
    path.write_text(json.dumps(live["profile"]))
    profile = resolve(LLMConfig(profile=str(path)))
    measured = np.array([c.latency_s for c in live["calls"]])
    predicted = study.predicted_latencies(profile, live["calls"])
    for q in (50, 95):
        m, p = np.percentile(measured, q), np.percentile(predicted, q)
        assert abs(p - m) / m < 0.10, (q, m, p)
    assert profile.ttft_base_s == pytest.approx(entry["ttft_base_s"])


def test_fit_from_the_serve_mock_record_gives_the_same_parameters(live, tmp_path):
    out = tmp_path / "profile.json"
    result = invoke("fit", "--log", str(live["record"]), "--format", "serve-mock", "-o", str(out))
    assert result.exit_code == 0, result.output
    from_log = json.loads(out.read_text())["models"]["gpt-4o-mini"]
    within(from_log, 0.05)
    live_fit = live["profile"]["models"]["gpt-4o-mini"]
    for key in TRUE:
        assert abs(from_log[key] - live_fit[key]) / live_fit[key] < 0.05, key
    assert (tmp_path / "fit-report.json").exists() and (tmp_path / "fit-report.md").exists()


def _otlp(calls) -> dict:
    def attr(key, value):
        kind = "stringValue" if isinstance(value, str) else "doubleValue"
        if isinstance(value, int):
            return {"key": key, "value": {"intValue": str(value)}}
        return {"key": key, "value": {kind: value}}

    spans = [
        {
            "name": f"chat {c.model}",
            "startTimeUnixNano": str(int(c.start_s * 1e9)),
            "endTimeUnixNano": str(int(c.end_s * 1e9)),
            "attributes": [
                attr("gen_ai.operation.name", "chat"),
                attr("gen_ai.request.model", c.model),
                attr("gen_ai.usage.input_tokens", c.tokens_in),
                attr("gen_ai.usage.output_tokens", c.tokens_out),
                attr("gen_ai.response.time_to_first_chunk", float(c.ttft_s)),
                attr("memsim.purpose", c.purpose),
            ],
        }
        for c in calls
    ]
    return {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}


def test_fit_from_otel_spans_matches_the_log_they_came_from(live, tmp_path):
    path = tmp_path / "spans.json"
    path.write_text(json.dumps(_otlp(live["calls"])))
    result = invoke("fit", "--log", str(path), "--format", "otel", "-o", str(tmp_path / "p.json"))
    assert result.exit_code == 0, result.output
    fitted = json.loads((tmp_path / "p.json").read_text())["models"]["gpt-4o-mini"]
    live_fit = live["profile"]["models"]["gpt-4o-mini"]
    for key in TRUE:  # nanosecond rounding only
        assert fitted[key] == pytest.approx(live_fit[key], rel=1e-3), key


# -- profile files -----------------------------------------------------------------------------
def profile_file(path: Path, **figures) -> Path:
    entry = {"ttft_base_s": 0.3, "prefill_s_per_token": 3e-5, "decode_tokens_per_s": 90.0}
    entry.update(figures)
    path.write_text(json.dumps({"format": PROFILE_FORMAT, "models": {"gpt-4o-mini": entry}}))
    return path


def test_profile_file_overrides_built_in_and_llm_fields_win(tmp_path):
    path = profile_file(tmp_path / "p.json")
    profile = resolve(LLMConfig(profile=str(path)))
    assert (profile.ttft_base_s, profile.decode_tokens_per_s) == (0.3, 90.0)
    assert profile.jitter_sigma == resolve(LLMConfig()).jitter_sigma  # not in the file
    profile = resolve(LLMConfig(profile=str(path), ttft_base_s=0.2))
    assert (profile.ttft_base_s, profile.prefill_s_per_token) == (0.2, 3e-5)


def test_scenario_profile_path_is_relative_to_the_scenario_file(tmp_path):
    import scenarios

    (tmp_path / "fits").mkdir()
    profile_file(tmp_path / "fits" / "p.json", ttft_base_s=0.7)
    scenario = tmp_path / "s.toml"
    scenario.write_text('name = "s"\nusers = 2\n[llm]\nprofile = "fits/p.json"\n')
    scn, _ = scenarios.load(str(scenario))
    assert resolve(scn.llm).ttft_base_s == 0.7


def test_run_with_a_bad_profile_file_is_one_line_exit_2(tmp_path):
    bad = profile_file(tmp_path / "bad.json", decode_tokens_per_s=0)
    line = one_error_line(invoke("run", "support-bot", "--users", "1", "--llm-profile", str(bad)))
    assert "bad.json" in line and "decode_tokens_per_s" in line
    with pytest.raises(ConfigError, match="format"):
        (tmp_path / "x.json").write_text("{}")
        resolve(LLMConfig(profile=str(tmp_path / "x.json")))


# -- bad input --------------------------------------------------------------------------------
def test_log_line_without_usage_is_one_line_exit_2(tmp_path):
    log = tmp_path / "calls.jsonl"
    log.write_text(json.dumps({"model": "m", "start_time": 1.0, "end_time": 2.0}) + "\n")
    line = one_error_line(invoke("fit", "--log", str(log)))
    assert "calls.jsonl:1" in line and "usage" in line


def test_span_without_model_is_one_line_exit_2(tmp_path):
    log = tmp_path / "spans.json"
    span = {
        "name": "chat",
        "startTimeUnixNano": "1",
        "endTimeUnixNano": "2",
        "attributes": [{"key": "gen_ai.usage.input_tokens", "value": {"intValue": "5"}}],
    }
    log.write_text(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}))
    line = one_error_line(invoke("fit", "--log", str(log), "--format", "otel"))
    assert "gen_ai.request.model" in line


def test_live_401_is_one_line_exit_2(tmp_path, monkeypatch):
    def refuse(request):
        body = {"error": {"message": "Incorrect API key provided.", "code": "invalid_api_key"}}
        return httpx.Response(401, json=body)

    def connect(base_url, api_key):
        http = httpx.Client(transport=httpx.MockTransport(refuse))
        return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, http_client=http)

    monkeypatch.setattr(study, "connect", connect)
    args = ["fit", "--base-url", "http://localhost:1/v1", "--model", "gpt-4o-mini", "--yes"]
    args += ["--api-key-env", "K"]
    result = invoke(*args, "--requests", "3", "-q", "-o", str(tmp_path / "p.json"), K="secret")
    result_line = [ln for ln in result.output.splitlines() if ln.startswith("memsim: error")]
    assert result.exit_code == 2, result.output
    assert len(result_line) == 1 and "401" in result_line[0] and "secret" not in result.output


def test_run_with_llm_profile_uses_its_figures(tmp_path):
    path = profile_file(tmp_path / "p.json", ttft_base_s=0.123)
    out = tmp_path / "run"
    args = ["run", "support-bot", "--users", "2", "--days", "1", "-q", "--out", str(out)]
    result = invoke(*args, "--llm-profile", str(path))
    assert result.exit_code == 0, result.output
    latency = json.loads((out / "config.json").read_text())["resolved"]["latency"]
    assert latency["ttft_base_s"] == 0.123 and latency["decode_tokens_per_s"] == 90.0
    assert str(path) in latency["profile"]


def test_fitted_chat_output_lengths_set_the_runs_reply_lengths(tmp_path):
    mu, sigma = 5.5, 0.3  # a mean of exp(5.5 + 0.045) = 256 tokens
    chat = {"distribution": "lognormal", "mu": mu, "sigma": sigma, "calls": 100}
    path = profile_file(tmp_path / "p.json", output_tokens={"chat": chat})
    profile = resolve(LLMConfig(profile=str(path)))
    assert profile.reply_tokens_mean == pytest.approx(np.exp(mu + sigma**2 / 2))
    assert profile.reply_tokens_sigma == sigma and "reply_tokens_mean" in profile.as_dict()
    assert "reply_tokens_mean" not in resolve(LLMConfig()).as_dict()  # no fit: as before
    out = tmp_path / "run"
    args = ["run", "tiny", "-s", "naive-append", "-q", "--out", str(out)]
    assert invoke(*args, "--llm-profile", str(path)).exit_code == 0
    assert invoke(*args[:-1], str(tmp_path / "plain")).exit_code == 0
    fitted = json.loads((out / "summary.json").read_text())["strategies"]["naive-append"]
    plain = json.loads((tmp_path / "plain" / "summary.json").read_text())
    replies = (
        fitted["tokens_by_purpose"]["chat"]
        - plain["strategies"]["naive-append"]["tokens_by_purpose"]["chat"]
    )
    assert replies > 0  # longer replies (256 vs 140 tokens on average) bill more tokens
    bad = profile_file(tmp_path / "bad.json", output_tokens={"chat": {**chat, "sigma": -1}})
    with pytest.raises(ConfigError, match=r"output_tokens\.chat"):
        resolve(LLMConfig(profile=str(bad)))


def test_an_interrupted_live_fit_keeps_what_it_measured_and_says_so(tmp_path):
    scenario = tmp_path / "fit-test.toml"
    scenario.write_text(SCENARIO)
    with serve_mock(scenario) as url:
        out = tmp_path / "fit" / "profile.json"
        fit = subprocess.Popen(
            [
                *(*MEMSIM, "fit", "--base-url", url, "--model", "gpt-4o-mini"),
                *("--scenario", str(scenario), "--requests", "200", "--concurrency", "1"),
                *("--max-tokens", "20", "--yes", "-q", "-o", str(out)),
            ],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "OPENAI_API_KEY": "not-a-key"},
        )
        measurements = out.parent / "measurements.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and fit.poll() is None:
            if measurements.exists() and len(measurements.read_text().splitlines()) >= 3:
                break
            time.sleep(0.2)
        assert fit.poll() is None, "the fit ended before it could be interrupted"
        fit.send_signal(signal.SIGINT)
        _, stderr = fit.communicate(timeout=60)
    assert fit.returncode == 130, stderr
    assert "measured so far are in" in stderr and str(measurements) in stderr
    kept = [json.loads(line) for line in measurements.read_text().splitlines()]
    assert len(kept) >= 3 and all("usage" in call for call in kept)
    assert len(read_calls(measurements, "openai")) == len(kept)  # a later fit reads them all
