"""Injected faults: provider 429s and timeouts, bursts, store outages, a slow store.

:class:`FaultModel` answers the engine's and the store client's questions about
one run's ``[faults]`` section: does this request fail, how long does the client
back off before its next attempt, is the store down or slow at this instant.
Its draws come from one generator per user and per lane (foreground turns,
background jobs), ``SeedSequence(seed, spawn_key=(FAULTS_STREAM, user, lane))``,
so a user's faults depend on the scenario, the seed and that user's own calls,
never on other users or on how users are split into shards.
"""

from __future__ import annotations

import numpy as np

from sim.config import FaultsConfig, FaultWindow

FAULTS_STREAM = 4  # first spawn-key word of every fault generator
RATE_LIMITED = "rate_limited"
TIMEOUT = "timeout"
STORE_DOWN = "store_unavailable"
RETRIABLE = frozenset({RATE_LIMITED, TIMEOUT})


def full_jitter(rng: np.random.Generator, attempt: int, base_s: float, max_s: float) -> float:
    """Backoff before retry ``attempt + 1``: uniform in ``[0, min(max_s, base_s * 2**attempt)]``.

    "Full jitter" from Marc Brooker, "Exponential Backoff And Jitter", AWS
    Architecture Blog (2015): spreading each wait over the whole interval, rather
    than around its cap, keeps retrying clients from hitting the provider in step.
    """
    return float(rng.uniform(0.0, min(max_s, base_s * 2.0**attempt)))


def _windows(windows: list[FaultWindow]) -> tuple[tuple[float, float], ...]:
    return tuple(w.bounds_s() for w in windows)


def _inside(windows: tuple[tuple[float, float], ...], now: float) -> bool:
    return any(start <= now < end for start, end in windows)


class FaultModel:
    """The faults of one run (one strategy's engine), with their per-user generators."""

    def __init__(self, config: FaultsConfig, seed: int) -> None:
        self.config, self.seed = config, seed
        self.outages = _windows(config.store_outages)
        self.slow_windows = _windows(config.store_slow_windows)
        self._rngs: dict[tuple[int, bool], np.random.Generator] = {}

    def rng(self, user: int, background: bool) -> np.random.Generator:
        """The generator of ``user``'s foreground or background requests."""
        key = (user, background)
        rng = self._rngs.get(key)
        if rng is None:
            ss = np.random.SeedSequence(self.seed, spawn_key=(FAULTS_STREAM, user, int(background)))
            rng = self._rngs[key] = np.random.default_rng(ss)
        return rng

    def in_burst(self, now: float) -> bool:
        """Whether ``now`` falls in a 429 burst window."""
        every = self.config.burst_every_s
        return every is not None and now % every < self.config.burst_duration_s

    def request_fault(self, user: int, background: bool, now: float) -> str:
        """The fault of one LLM or embedding request sent at ``now``: ``""`` if none.

        One uniform draw per request, whether it fails or not, so that a user's
        later draws do not depend on earlier outcomes' codes.
        """
        cfg = self.config
        error_rate = cfg.burst_error_rate if self.in_burst(now) else cfg.llm_error_rate
        u = self.rng(user, background).random()
        if u < error_rate:
            return RATE_LIMITED
        if u < error_rate + cfg.llm_timeout_rate:
            return TIMEOUT
        return ""

    def backoff_s(self, user: int, background: bool, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (0 = the first try)."""
        cfg = self.config
        return full_jitter(
            self.rng(user, background), attempt, cfg.backoff_base_s, cfg.backoff_max_s
        )

    def store_down(self, now: float) -> bool:
        """Whether the store is in an outage window at ``now``."""
        return _inside(self.outages, now)

    def store_factor(self, now: float) -> float:
        """The store latency multiplier in force at ``now``."""
        factor = self.config.store_latency_multiplier
        if factor == 1.0 or (self.slow_windows and not _inside(self.slow_windows, now)):
            return 1.0
        return factor
