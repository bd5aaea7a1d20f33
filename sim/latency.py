"""Latency profiles of hosted chat models: what one call takes, by model.

A call's service time is ``(ttft_base_s + prefill_s_per_token · uncached input
+ output / decode_tokens_per_s) · jitter`` with a log-normal jitter of median 1
whose spread grows with the uncached prompt and with the endpoint's load::

    sigma = jitter_sigma
          + jitter_sigma_per_1k_tokens · uncached input / 1000
          + jitter_sigma_load · busy slots / concurrency

Each profile's parameters come from published measurements, cited beside it and
in ``docs/latency.md`` (with the points used):

* ``ttft_base_s`` and ``jitter_sigma``: the median and the spread of short calls
  (modelstats.ai p50 and p95: ``sigma = ln(p95 / p50) / 1.645``).
* ``prefill_s_per_token``: the least-squares slope of the minimum time to first
  token against prompt size over every size "Small Model Forensics" (0xmmo,
  2026-05-13, https://blog.0xmmo.co/forensics/post.html) measured, 1k to 100k
  tokens. Its floors are minima over repeats without network time, so they lie
  below the median line; the test checks each within the modelled spread.
* ``decode_tokens_per_s``: measured output speed (sources per profile).

The spread's growth with prompt size and load is not published per size for
these APIs; ``jitter_sigma_per_1k_tokens`` and ``jitter_sigma_load`` are chosen
(see :data:`SIGMA_PER_1K_TOKENS`, :data:`SIGMA_LOAD`) and every scenario may set
them. A team that has its own call logs should fit all of these to them.

The scenario's ``[llm] model`` selects a profile (exact name, else the longest
profile name it starts with, so ``gpt-4o-mini-2024-07-18`` is gpt-4o-mini's);
a model without one uses gpt-4o-mini's, and the resolved summary says so. An LLM
profile file (``[llm] profile``, ``memsim run --llm-profile``, written by ``memsim
fit``) overrides the built-in figures; any parameter set under ``[llm]``
overrides both.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from statistics import NormalDist

from sim.config import ConfigError, LLMConfig

SIGMA_PER_1K_TOKENS = 0.004
"""Chosen: the jitter's log-spread grows by 0.004 per 1,000 uncached prompt tokens
(at 20k tokens it is about 0.08 wider than on a short prompt; at 100k, 0.4).
Providers' latency spread widens with prompt length because long prefills share
GPUs with other requests' prefills and decodes (batch interference: a long prompt
monopolises prefill capacity and queues others behind it); no provider publishes
the spread by prompt size, so this is a modelling choice, stated here and in
``docs/latency.md``."""

SIGMA_LOAD = 0.25
"""Chosen: the jitter's log-spread grows by up to 0.25 as the endpoint's
concurrency slots fill (``busy / concurrency`` from 0 to 1): at full load the
spread is about that of a short call again on top of it. Measured on a
self-served endpoint, first-token latency stays flat at low concurrency and its
spread grows as the server saturates (Loginet, "The impact of concurrent
requests on LLM inference performance", 2025, Llama-3.1-8B on an H100); a
hosted API's own load is invisible to one client, so this reads the load the
client puts on its connection pool and provisioned capacity."""


@dataclass(frozen=True, slots=True)
class LatencyProfile:
    """The latency parameters of one model; see the module docstring for the formula."""

    ttft_base_s: float
    prefill_s_per_token: float
    decode_tokens_per_s: float
    jitter_sigma: float
    jitter_sigma_per_1k_tokens: float = SIGMA_PER_1K_TOKENS
    jitter_sigma_load: float = SIGMA_LOAD
    jitter_min: float | None = None
    """Lower clamp of the jitter factor; ``None``: unclamped."""
    jitter_max: float | None = None
    """Upper clamp of the jitter factor; ``None``: unclamped."""
    profile: str = ""
    """Which profile the figures came from (with any ``[llm]`` overrides noted)."""
    reply_tokens_mean: float | None = None
    """Mean chat reply length fitted by ``memsim fit`` (``None``: ``[llm] reply_tokens_mean``)."""
    reply_tokens_sigma: float | None = None
    """Log-spread of chat reply lengths fitted by ``memsim fit`` (``None``: ``[llm]``'s)."""

    def sigma(self, tokens_in: int, load: float = 0.0) -> float:
        """Log-spread of the jitter for ``tokens_in`` uncached tokens at ``load`` (0-1)."""
        return (
            self.jitter_sigma
            + self.jitter_sigma_per_1k_tokens * tokens_in / 1000.0
            + self.jitter_sigma_load * load
        )

    def median_s(self, tokens_in: int, tokens_out: int = 0) -> float:
        """Median service time (jitter 1) of a call."""
        return (
            self.ttft_base_s
            + self.prefill_s_per_token * tokens_in
            + tokens_out / self.decode_tokens_per_s
        )

    def quantile_s(self, q: float, tokens_in: int, tokens_out: int = 0, load: float = 0.0) -> float:
        """The ``q`` quantile of a call's service time (unclamped jitter)."""
        z = NormalDist().inv_cdf(q)
        return self.median_s(tokens_in, tokens_out) * math.exp(z * self.sigma(tokens_in, load))

    def as_dict(self) -> dict[str, object]:
        """The resolved parameters, for the summary's ``resolved`` section.

        Reply lengths appear only when a profile file gave them.
        """
        figures = asdict(self)
        for key in REPLY_FIGURES:
            if figures[key] is None:
                del figures[key]
        return figures


Z95, Z99 = 1.6449, 2.3263
"""The standard normal's 95th and 99th percentiles (to four places)."""


def lognormal_sigma(median: float, upper: float, z: float) -> float:
    """Log-normal spread with this median and ``upper`` at standard score ``z``.

    0 unless ``upper > median > 0`` (no spread can be read from such figures).
    """
    return math.log(upper / median) / z if median > 0 and upper > median else 0.0


def _sigma(p50_s: float, p95_s: float) -> float:
    """A profile's ``jitter_sigma`` from a median and a 95th percentile (3 places)."""
    return round(lognormal_sigma(p50_s, p95_s, Z95), 3)


PROFILES: dict[str, LatencyProfile] = {
    # ttft_base_s, jitter_sigma: modelstats.ai (https://modelstats.ai, 2026), short
    #   prompts p50 536 ms, p95 844 ms (p99 4,461 ms: a heavier tail than a
    #   log-normal; see docs/latency.md).
    # prefill: Small Model Forensics floors 1,011→0.270 s, 9,737→0.888, 16,468→0.975,
    #   32,762→1.140, 58,988→2.252, 87,437→4.706 (least squares: 46.6 ms per 1k).
    # decode: 59.0 tokens/s ("tacho" run, OpenAI community forum, thread
    #   "Inference speed of different models", 2025; range 46-70).
    "gpt-4o-mini": LatencyProfile(0.536, 4.66e-5, 59.0, _sigma(0.536, 0.844)),
    # ttft_base_s, jitter_sigma: modelstats.ai p50 661 ms, p95 1,087 ms.
    # prefill: no long-prompt series for gpt-4.1-mini; gpt-4.1-nano's floors from
    #   Small Model Forensics stand in (same family and serving stack): tiny 176 ms,
    #   64 KB (~16k tokens) 359 ms, 256 KB (~64k) 882 ms: 11.0 ms per 1k.
    #   Check: Artificial Analysis measures 0.93 s to first token at 10k input
    #   tokens (https://artificialanalysis.ai/models/gpt-4-1-mini/providers).
    # decode: 61.7 tokens/s (the same tacho run; Artificial Analysis: 77.2).
    "gpt-4.1-mini": LatencyProfile(0.661, 1.10e-5, 61.7, _sigma(0.661, 1.087)),
    # No short-call percentiles published for gpt-5-mini: ttft_base_s is
    #   gpt-5.4-mini's Small Model Forensics floor intercept (0.222 s) plus
    #   gpt-4o-mini's floor-to-median gap (0.536 - 0.270 s), jitter_sigma the
    #   median of the other profiles' (0.30).
    # prefill: gpt-5.4-mini's floors stand in: tiny 233 ms, 64 KB 349 ms, 256 KB
    #   779 ms: 8.7 ms per 1k.
    # decode: 71.2 tokens/s, GPT-5 mini (minimal reasoning), Artificial Analysis.
    "gpt-5-mini": LatencyProfile(0.488, 8.7e-6, 71.2, 0.30),
    # ttft_base_s, jitter_sigma: modelstats.ai p50 541 ms, p95 1,591 ms.
    # prefill: Small Model Forensics floors 1,068→0.446 s, 8,773→0.526,
    #   17,763→0.608, 34,464→0.817, 66,809→1.241, 100,029→1.342: 9.7 ms per 1k.
    # decode: 85 tokens/s (Small Model Forensics, 80-90 by context size).
    "claude-haiku-4-5": LatencyProfile(0.541, 9.7e-6, 85.0, _sigma(0.541, 1.591)),
    # ttft_base_s, jitter_sigma: modelstats.ai p50 477 ms, p95 776 ms.
    # prefill: Small Model Forensics floors 891→0.334 s, 7,812→0.522, 15,123→0.430,
    #   29,983→0.787, 59,918→1.107, 101,762→2.026: 16.2 ms per 1k.
    # decode: 204.5 tokens/s (K. Ganglani, "5 LLM APIs tested for latency", 2026,
    #   thinking off; Artificial Analysis: 221).
    "gemini-2.5-flash": LatencyProfile(0.477, 1.62e-5, 204.5, _sigma(0.477, 0.776)),
}
FALLBACK = "gpt-4o-mini"
"""The profile of a model that has none (memsim's default model)."""

OVERRIDABLE = (
    "ttft_base_s",
    "prefill_s_per_token",
    "decode_tokens_per_s",
    "jitter_sigma",
    "jitter_sigma_per_1k_tokens",
    "jitter_sigma_load",
    "jitter_min",
    "jitter_max",
)
"""The ``[llm]`` fields that override a profile's figure when set."""


def profile_name(model: str) -> str | None:
    """The profile of ``model``: exact, else the longest profile name it starts with."""
    if model in PROFILES:
        return model
    matches = [name for name in PROFILES if model.startswith(name)]
    return max(matches, key=len) if matches else None


PROFILE_FORMAT = "memsim-llm-profile/1"
"""The ``format`` key of an LLM profile file (written by ``memsim fit``)."""

_FILE_FIGURES = {
    "ttft_base_s": (0.0, False),
    "prefill_s_per_token": (0.0, False),
    "decode_tokens_per_s": (0.0, True),
    "jitter_sigma": (0.0, False),
    "jitter_sigma_per_1k_tokens": (0.0, False),
    "jitter_sigma_load": (0.0, False),
}
"""The latency figures a profile file may give: name → (lower bound, bound excluded)."""


def _file_error(path: str, message: str) -> ConfigError:
    return ConfigError(f"{path}: {message}")


@lru_cache(maxsize=32)
def _read_profile_file(path: str) -> dict:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _file_error(path, "no such LLM profile file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise _file_error(path, f"cannot read: {err}") from None
    except json.JSONDecodeError as err:
        raise _file_error(path, f"not JSON: {err}") from None
    if not isinstance(document, dict) or document.get("format") != PROFILE_FORMAT:
        raise _file_error(path, f"field 'format': expected {PROFILE_FORMAT!r}")
    models = document.get("models")
    if not isinstance(models, dict) or not models:
        raise _file_error(path, "field 'models': expected an object with one entry per model")
    return document


def profile_from_file(path: str | Path, model: str) -> tuple[str, dict[str, float]]:
    """The latency figures an LLM profile file gives for ``model``, and its entry's name.

    The entry is the model's exact name, else the longest name it starts with,
    else the file's only entry (a team's own deployment name). Each figure is
    checked: a finite number at or above 0 (``decode_tokens_per_s`` above 0).

    Raises:
        ConfigError: One line naming the file and the field.
    """
    path = str(path)
    models = _read_profile_file(path)["models"]
    matches = [name for name in models if model == name or model.startswith(name)]
    if matches:
        name = max(matches, key=len)
    elif len(models) == 1:
        name = next(iter(models))
    else:
        raise _file_error(path, f"field 'models': no entry for {model!r} (has {', '.join(models)})")
    entry = models[name]
    if not isinstance(entry, dict):
        raise _file_error(path, f"field 'models.{name}': expected an object")
    figures = {}
    for key, (low, strict) in _FILE_FIGURES.items():
        if key not in entry or entry[key] is None:
            continue
        value = entry[key]
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and math.isfinite(value) and (value > low if strict else value >= low)
        if not ok:
            bound = f"{'>' if strict else '>='} {low:g}"
            raise _file_error(
                path, f"field 'models.{name}.{key}' = {value!r}: expected a number {bound}"
            )
        figures[key] = float(value)
    if not figures:
        raise _file_error(
            path, f"field 'models.{name}': no latency figure ({', '.join(_FILE_FIGURES)})"
        )
    return name, figures


REPLY_FIGURES = ("reply_tokens_mean", "reply_tokens_sigma")
"""What a profile file's fitted chat output lengths set, in place of ``[llm]``'s."""


def reply_lengths_from_file(path: str | Path, name: str) -> dict[str, float]:
    """The chat reply lengths of a profile file's entry ``name``, if it holds a fit of them.

    ``memsim fit`` writes ``output_tokens.chat`` as a log-normal (``mu``, ``sigma`` of
    the log); the mock's reply length is ``reply_tokens_mean · exp(N(-σ²/2, σ))``,
    the same log-normal with mean ``exp(mu + σ²/2)``.
    """
    path = str(path)
    chat = (_read_profile_file(path)["models"][name].get("output_tokens") or {}).get("chat")
    if not isinstance(chat, dict) or chat.get("distribution") != "lognormal":
        return {}
    mu, sigma = chat.get("mu"), chat.get("sigma")
    numbers = all(isinstance(v, int | float) and math.isfinite(v) for v in (mu, sigma))
    if not numbers or sigma < 0:
        raise _file_error(
            path, f"field 'models.{name}.output_tokens.chat': expected finite mu and sigma >= 0"
        )
    return {"reply_tokens_mean": math.exp(mu + sigma**2 / 2), "reply_tokens_sigma": float(sigma)}


def resolve(cfg: LLMConfig) -> LatencyProfile:
    """The latency of ``cfg`` (an :class:`~sim.config.LLMConfig`).

    Its model's built-in profile; then the figures of the ``[llm] profile`` file
    (``memsim run --llm-profile``), if any; then every parameter ``[llm]`` sets.
    Later wins: a figure set in ``[llm]`` overrides the file's, which overrides
    the built-in one.
    """
    model = cfg.model
    name = profile_name(model)
    base = PROFILES[name or FALLBACK]
    label = name if name is not None else f"{FALLBACK} (no profile for {model})"
    if cfg.profile is not None:
        entry, figures = profile_from_file(cfg.profile, model)
        # The fitted reply lengths replace [llm] reply_tokens_mean/sigma, which always
        # have a value: a team that fitted its own traffic wants its own replies.
        figures |= reply_lengths_from_file(cfg.profile, entry)
        base = replace(base, **figures)
        label = f"{cfg.profile} [{entry}] over {label}"
    overrides = {k: getattr(cfg, k) for k in OVERRIDABLE if getattr(cfg, k) is not None}
    if overrides:
        label += " with [llm] " + ", ".join(sorted(overrides))
    return replace(base, profile=label, **overrides)
