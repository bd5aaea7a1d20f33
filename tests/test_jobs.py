"""Background jobs: consolidation and re-embedding after an embedding-model switch."""

from __future__ import annotations

import numpy as np
import pytest
from test_strategies import Driver

import scenarios
from helpers import make_scenario
from sim.config import Scenario
from sim.context import take_spans
from sim.runner import run_scenario
from sim.store import Memory
from strategies.base import StrategyConfig
from strategies.batched_dedup_budget import BatchedDedupBudget, BatchedDedupBudgetConfig
from strategies.jobs import ConsolidationConfig, consolidate

DAY = 86_400.0


def remember(
    d: Driver,
    text: str,
    importance: int,
    created_days_ago: float,
    hits: int = 0,
    used_days_ago: float | None = None,
    facts: tuple = (),
):
    memory = Memory(
        id=len(d.store.memories(0)) + 100,
        text=text,
        line_tokens=d.tokens.count(f"- {text}\n"),
        importance=importance,
        category="other",
        created_at=d.ctx.now - created_days_ago * DAY,
        facts=facts,
        embedding_model=d.ctx.embedder.model,
        content_hash=text,
        owner=0,
        hit_count=hits,
        last_used_at=None if used_days_ago is None else d.ctx.now - used_days_ago * DAY,
    )
    d.store.add(0, [memory], d.ctx._services.embedder.embed([text]))
    return memory


def texts(d: Driver) -> list[str]:
    return sorted(m.text for m in d.store.memories(0))


@pytest.mark.parametrize("reembed", [True, False])
def test_consolidation_expires_prunes_merges_and_caps(reembed: bool):
    d = Driver(BatchedDedupBudget())
    d.ctx.now = 40 * DAY
    city = d.catalog.memory_text
    from sim.textbank import SLOT_BY_KEY

    slot = SLOT_BY_KEY["company"]
    remember(d, "User used to rent a flat.", 5, 35, hits=50, used_days_ago=31)  # expired (TTL)
    remember(d, "User once asked about dark mode.", 5, 31, hits=2, used_days_ago=1)  # rarely used
    remember(d, "User opened the app on a Tuesday.", 5, 31, hits=9, used_days_ago=1)  # kept
    keep = remember(d, city(slot, "Globex", 0), 9, created_days_ago=1, facts=(("company", 0),))
    twin = city(slot, "Globex", 2)
    assert d.ctx._services.embedder.embed([keep.text, twin]).prod(axis=0).sum() >= 0.85
    remember(d, twin, 4, created_days_ago=1, facts=(("company", 0),))  # a rewording: merged
    remember(d, "User likes short answers.", 2, created_days_ago=0)  # least important: capped
    take_spans(d.ctx)
    cfg = ConsolidationConfig(max_memories_per_user=3, merge_threshold=0.85, reembed=reembed)
    consolidate(d.ctx, cfg)
    kept = ["User opened the app on a Tuesday.", keep.text, "User likes short answers."]
    assert texts(d) == sorted(kept)  # the stored vectors are the ones a re-embed computes
    purposes = [s.purpose for s in take_spans(d.ctx)]
    read = ["store_query", "embed"] if reembed else ["store_query"]
    assert purposes == [*read, "update", "store_delete"]  # update: the merge
    consolidate(d.ctx, ConsolidationConfig(max_memories_per_user=2))  # the cap alone
    assert texts(d) == sorted(kept[:2])


def test_consolidation_of_an_empty_store_makes_no_calls():
    d = Driver(BatchedDedupBudget())
    consolidate(d.ctx, ConsolidationConfig())
    assert take_spans(d.ctx) == []


def Consolidating(every: str) -> BatchedDedupBudget:
    """batched-dedup-budget with consolidation switched on."""
    return BatchedDedupBudget(
        BatchedDedupBudgetConfig(consolidation=ConsolidationConfig(every=every))
    )


@pytest.mark.parametrize(("every", "period"), [("hourly", 3600.0), ("nightly", DAY)])
def test_scheduled_consolidation_runs_in_the_background(every, period):
    scenario = make_scenario(users=4, days=3, seed=4)
    strategy = Consolidating(every)
    calls = run_scenario(scenario, strategies=[strategy]).runs[0].calls
    ticks = np.arange(1, int(3 * DAY / period) + 1) * period
    # At each tick, every user with memories gets a scan of its store, in the background.
    scans = calls[(calls["purpose"] == "store_query") & calls["background"]]
    at_ticks = scans[np.isin(scans["start_s"], ticks)]
    assert len(at_ticks) > 0 and set(at_ticks["start_s"]) <= set(ticks)
    assert at_ticks.groupby("start_s")["user"].nunique().max() <= 4


def switch_scenario(**embedding) -> Scenario:
    """Retrieval that works (uncalibrated, clear topical signal) under a tight budget."""
    base = scenarios.load("support-bot")[0].with_overrides(
        users=100, days=12, strategies=["batched-dedup-budget"], calibration="none"
    )
    data = base.model_dump()
    data["strategy"]["batched-dedup-budget"]["budget_tokens"] = 60
    data["embedding"].update(embedding)
    return Scenario.model_validate(data)


def late_recall_and_embed_tokens(scenario: Scenario) -> tuple[float, int]:
    run = run_scenario(scenario).runs[0]
    probes = run.turns[(run.turns["recall"] >= 0) & (run.turns["start_s"] > 4 * DAY)]
    embeds = run.calls[run.calls["purpose"] == "embed"]
    return float(probes["recall"].mean()), int(embeds["tokens_in"].sum())


def test_embedding_switch_without_reembed_lowers_recall_and_reembed_restores_it():
    same, same_cost = late_recall_and_embed_tokens(switch_scenario())
    switched, _ = late_recall_and_embed_tokens(switch_scenario(switch_at_day=4))
    fixed, fixed_cost = late_recall_and_embed_tokens(
        switch_scenario(switch_at_day=4, reembed_on_switch=True)
    )
    assert switched < same - 0.08  # old vectors no longer meet new queries
    assert fixed == pytest.approx(same, abs=0.02)  # re-embedded: retrieval works again
    assert fixed_cost > same_cost  # at the price of embedding every memory again


def test_memories_record_the_model_that_embedded_them():
    from sim.embed import LatentEmbedder, SwitchingEmbedder

    d = Driver(
        BatchedDedupBudget(),
    )
    before = d.ctx._services.embedder
    after = LatentEmbedder(384, d.catalog.topics, 1, {"slots": {}}, model="latent-v2", space=1)
    d.ctx._services.embedder = SwitchingEmbedder(before, after)
    from sim.llm import Factoid
    from strategies.jobs import reembed

    old = d.ctx.new_memory(Factoid("User lives in Lisbon.", 7, "background", (("city", 0),)))
    d.ctx.store.add([old], d.ctx.embedder.embed([old.text]))
    d.ctx._services.embedder.switch()
    new = d.ctx.new_memory(Factoid("User is on the Pro plan.", 8, "background", (("plan", 0),)))
    assert (old.embedding_model, new.embedding_model) == (before.model, "latent-v2")
    take_spans(d.ctx)
    reembed(d.ctx)
    assert [m.embedding_model for m in d.store.memories(0)] == ["latent-v2"]
    assert [s.purpose for s in take_spans(d.ctx)] == [
        "store_query",
        "embed",
        "store_delete",
        "store_write",
    ]


def test_a_switch_needs_the_latent_embedder(tmp_path):
    from sim.config import ConfigError
    from sim.runner import prepare

    scenario = make_scenario(embedder="minilm", embedding={"switch_at_day": 1})
    with pytest.raises(ConfigError, match="switch_at_day"):
        prepare(scenario, "scn.toml", "hash", None)


def test_strategy_config_tick_period_is_the_default():
    assert BatchedDedupBudget().tick_period_s is None
    assert StrategyConfig(tick_period_s=60).tick_period_s == 60


def test_consolidation_shrinks_the_store_over_a_month():
    """With a tight budget most memories are never injected; pruning removes them."""
    base = scenarios.load("support-bot")[0].with_overrides(
        users=40, days=40, strategies=["batched-dedup-budget"]
    )
    data = base.model_dump()
    data["strategy"]["batched-dedup-budget"]["budget_tokens"] = 60
    plain = run_scenario(Scenario.model_validate(data)).runs[0]
    data["strategy"]["batched-dedup-budget"]["consolidation"] = {
        "every": "nightly",
        "hit_window_days": 10,
        "min_hits": 3,
    }
    consolidated = run_scenario(Scenario.model_validate(data)).runs[0]
    assert consolidated.store_final["memories"].sum() < plain.store_final["memories"].sum()
    deletes = consolidated.calls[consolidated.calls["purpose"] == "store_delete"]
    assert len(deletes) > 0 and deletes["background"].all()


def test_llm_merge_keeps_the_newer_version_and_plain_merge_the_more_important():
    from strategies.jobs import _merge

    d = Driver(BatchedDedupBudget(), update_error_rate=0)
    old = remember(d, "User's team has 12 people.", 7, 5, facts=(("team_size", 0),))
    new = remember(d, "User's team has 40 people.", 5, 1, facts=(("team_size", 1),))
    same = remember(d, "The user's team size is 12.", 5, 1, facts=(("team_size", 0),))
    assert _merge(d.ctx, [(new, old)], use_llm=True) == {old.id}  # UPDATE: old is outdated
    assert _merge(d.ctx, [(same, old)], use_llm=True) == {same.id}  # NONE: already known
    assert _merge(d.ctx, [(new, old)], use_llm=False) == {new.id}  # no LLM: importance wins
    assert [s.purpose for s in take_spans(d.ctx)].count("update") == 2
