"""The shape of the default scenario, at reduced size: the leak shows, the fix holds."""

import numpy as np
import pytest

import scenarios
from reports.output import summarize
from sim.runner import run_scenario

DAYS = 30
USERS = 600  # reduced from 1,000; fewer users make even weekly levels too noisy to read


@pytest.fixture(scope="module")
def summary():
    scenario, _ = scenarios.load("support-bot")
    return summarize(run_scenario(scenario.with_overrides(users=USERS, days=DAYS)))["strategies"]


def weekly_level(per_day: list[int]) -> np.ndarray:
    """Centred 7-day mean of tokens per day: entry i is the level of day i + 4 (1-based)."""
    return np.convolve(np.asarray(per_day, float), np.ones(7) / 7, mode="valid")


def test_naive_append_tokens_per_day_grow(summary):
    per_day = np.asarray(summary["naive-append"]["tokens_per_day"], float)
    assert per_day[-7:].mean() > 3 * per_day[:7].mean()
    slope = np.polyfit(np.arange(DAYS), per_day, 1)[0]
    assert slope > 0.05 * per_day[:7].mean()  # more than 5% of the first week's level per day


def test_batched_dedup_budget_stays_flat_from_day_7(summary):
    """From day 7 on, the daily level stays within ±15% of the day-7 level.

    A day's level is the mean of the 7 days centred on it. Single days are too
    noisy to compare: each user visits on about a third of days, so with 600
    users a day's traffic moves ±6% (one standard deviation) on arrival noise
    alone, and the ratio of two days ±8%.
    """
    level = weekly_level(summary["batched-dedup-budget"]["tokens_per_day"])
    ratio = level[3:] / level[3]  # day 7 onwards
    assert ratio.min() >= 0.85 and ratio.max() <= 1.15, ratio.round(3)


def test_per_turn_extract_makes_3x_the_extraction_calls(summary):
    per_turn = summary["per-turn-extract"]["llm_calls_by_purpose"]["extract"]
    batched = summary["batched-dedup-budget"]["llm_calls_by_purpose"]["extract"]
    assert per_turn >= 3 * batched > 0


def test_dedup_keeps_the_store_small_and_recall_high(summary):
    per_turn, batched = summary["per-turn-extract"], summary["batched-dedup-budget"]
    assert batched["memories_per_user_mean"] < per_turn["memories_per_user_mean"] / 2
    # Rewordings below the 0.85 cosine threshold still get through (MiniLM puts half
    # of all paraphrase pairs below it), but far fewer than without dedup.
    assert batched["duplicate_ratio"] < per_turn["duplicate_ratio"] / 2
    assert per_turn["duplicate_ratio"] > 0.5
    assert batched["recall"] > 0.9
    assert summary["naive-append"]["tokens_total"] > 3 * batched["tokens_total"]
