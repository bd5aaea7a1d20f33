"""Invariants over random small scenarios, for every registered strategy (hypothesis)."""

from __future__ import annotations

import math
from unittest import mock

import pytest
from genai_prices import Usage, calc_price
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sim.runner
import strategies
from helpers import make_scenario
from reports.summary import build_summary
from sim.config import LLMConfig
from sim.prompt_cache import new_cache
from sim.store import NumpyStore
from sim.tokens import REPLY_PRIMING_TOKENS, TokenCounter
from strategies.base import Strategy

BUDGETED = "batched-dedup-budget"
CACHE = new_cache(LLMConfig(cache={"mode": "openai"}))  # builds the layouts checked below


@st.composite
def small_scenarios(draw):
    return make_scenario(
        seed=draw(st.integers(0, 2**31 - 1)),
        users=draw(st.integers(1, 4)),
        days=draw(st.integers(1, 3)),
        workload={
            "facts_per_user": draw(st.integers(1, 14)),
            "facts_per_statement_max": draw(st.integers(1, 5)),
            "sessions_per_user_per_day": draw(st.floats(0.3, 3.0)),
            "turns_per_session_mean": draw(st.floats(1.0, 8.0)),
            "question_probability": draw(st.floats(0.0, 1.0)),
        },
        llm={
            "extract_miss_rate": draw(st.floats(0.0, 0.5)),
            "extract_hallucination_rate": draw(st.floats(0.0, 1.0)),
            "extract_reword_rate": draw(st.floats(0.0, 1.0)),
            # OpenAI's rule with a low minimum, so that small runs read and write often.
            "cache": {
                "mode": draw(st.sampled_from(["none", "openai"])),
                "min_tokens": draw(st.sampled_from([128, 1024])),
            },
        },
        strategy={
            BUDGETED: {
                "budget_tokens": draw(st.integers(0, 400)),
                "max_memories_per_user": draw(st.integers(1, 15)),
                "dedup_threshold": draw(st.floats(0.3, 1.0)),
                "extract_every_messages": draw(st.integers(1, 6)),
                "extract_buffer_tokens": draw(st.integers(50, 3000)),
                "memory_position": draw(st.sampled_from(["before-history", "after-history"])),
                "stable_memory_order": draw(st.booleans()),
            }
        },
    )


def checked(cls: type[Strategy], violations: list[str]) -> type[Strategy]:
    """A subclass that checks every prompt it builds."""
    counter = TokenCounter()

    class Checked(cls):  # type: ignore[misc, valid-type]
        def build_prompt(self, ctx, msg):
            prompt = super().build_prompt(ctx, msg)
            foreign = [m for m in prompt.memories if m.owner != ctx.user]
            foreign += [m for m in prompt.history if m.user != ctx.user]
            if foreign:
                violations.append(f"user {ctx.user} saw {foreign[0]!r}")
            total = prompt.tokens(counter).total
            if counter.chat(prompt.render()) != total:
                violations.append(f"token accounting differs from the rendered prompt: {prompt!r}")
            layout = prompt.cache_layout(CACHE, counter)
            if layout.end + REPLY_PRIMING_TOKENS != total:
                violations.append(f"the cache's blocks do not add up to the prompt: {prompt!r}")
            return prompt

    Checked.name = cls.name
    return Checked


class CapWatchingStore(NumpyStore):
    """Records the largest partition ever seen right after a write."""

    largest = 0

    def add(self, user, memories, vectors):
        super().add(user, memories, vectors)
        CapWatchingStore.largest = max(CapWatchingStore.largest, self.count(user))


def run_checked(scenario, violations):
    built = sim.runner.build_strategies(scenario, "<test>")
    instances = [checked(type(s), violations)(s.config) for s in built]
    CapWatchingStore.largest = 0
    with mock.patch.object(sim.runner, "NumpyStore", CapWatchingStore):
        return sim.runner.run_scenario(scenario, strategies=instances)


def with_knobs(scenario, name: str):
    """Only strategy ``name``, given every drawn setting its Config has (budget, cap, ...)."""
    knobs = scenario.strategy[BUDGETED]
    fields = strategies.resolve(name).Config.model_fields
    own = {k: v for k, v in knobs.items() if k in fields}
    return scenario.with_overrides(strategies=[name], strategy={name: own})


# External strategies (a real library per run, seconds each) have their own tests.
@pytest.mark.parametrize(
    "name", [n for n in strategies.available() if n not in strategies.external_strategies()]
)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=small_scenarios())
def test_budget_cap_isolation_and_cost_hold(name, scenario):
    """For every registered strategy: no foreign memory in a prompt, exact token
    accounting, injected tokens within its budget and stores within its cap (when it
    has them), and a total cost equal to the independently priced calls."""
    scenario = with_knobs(scenario, name)
    violations: list[str] = []
    result = run_checked(scenario, violations)
    assert violations == []
    cfg = scenario.strategy.get(name, {})
    (run,) = result.runs
    block = build_summary(
        "t", scenario.seed, result.config_sha256, scenario.users, scenario.days, [run]
    )["strategies"][name]
    if "budget_tokens" in cfg:
        assert (run.turns["memory_tokens"] <= cfg["budget_tokens"]).all()
        assert block["injected_tokens_max"] <= cfg["budget_tokens"]
    if "max_memories_per_user" in cfg:  # per turn, per day, at the end, after every write
        cap = cfg["max_memories_per_user"]
        assert (run.turns["store_size"] <= cap).all()
        assert (run.store_daily["memories"] <= cap).all()
        assert (run.store_final["memories"] <= cap).all()
        assert CapWatchingStore.largest <= cap

    # Cost: the total is the sum of per-call costs, each priced independently.
    rates = {}
    for run in result.runs:
        calls = run.calls
        expected = []
        for purpose, tin, tout, read, written in zip(
            calls["purpose"],
            calls["tokens_in"],
            calls["tokens_out"],
            calls["cached_tokens"],
            calls["cache_write_tokens"],
            strict=True,
        ):
            if purpose == "embed":
                expected.append(tin * scenario.embedding.usd_per_million_tokens / 1e6)
            elif purpose.startswith("store"):
                expected.append(0.0)
            else:
                assert written == 0 and read <= tin  # OpenAI: no writes billed
                key = (tin, tout, read)
                if key not in rates:
                    usage = Usage(input_tokens=tin, output_tokens=tout, cache_read_tokens=read)
                    rates[key] = float(
                        calc_price(usage, scenario.llm.model, provider_id="openai").total_price
                    )
                expected.append(rates[key])
        assert calls["usd"].to_numpy() == pytest.approx(expected, rel=1e-9, abs=1e-15)
        block = build_summary("t", 0, "", scenario.users, scenario.days, [run])["strategies"][
            run.strategy
        ]
        assert block["usd_total"] == pytest.approx(math.fsum(expected), abs=1e-6)  # 6 decimals
        assert block["tokens_total"] == int((calls["tokens_in"] + calls["tokens_out"]).sum())
        assert sum(block["tokens_by_purpose"].values()) == block["tokens_total"]
        assert sum(block["tokens_per_day"]) == block["tokens_total"]
        assert math.fsum(block["usd_per_day"]) == pytest.approx(block["usd_total"], abs=1e-5)
