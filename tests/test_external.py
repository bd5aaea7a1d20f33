"""`external-mem0`: real Mem0 OSS in-process against serve-mock, metered like any strategy."""

from __future__ import annotations

import copy
import importlib.util

import pytest

import scenarios
import strategies
from reports.numbers import dumps
from reports.output import summarize
from sim.runner import run_scenario
from strategies.external import Mem0External

if importlib.util.find_spec("mem0") is None:  # not imported here: the adapter imports it
    pytest.skip("mem0ai is not installed (make setup)", allow_module_level=True)

SMALL = {"users": 2, "days": 3, "strategies": ["mem0-like", "external-mem0"]}


def small_scenario():
    return scenarios.load("mem0-real")[0].with_overrides(**SMALL)


@pytest.fixture(scope="module")
def runs():
    """Two runs of the same scenario and seed; the second keeps its Mem0 open for checks."""
    first = run_scenario(small_scenario())
    real = Mem0External()
    second = run_scenario(small_scenario(), strategies=[strategies.resolve("mem0-like")(), real])
    yield first, second, real
    real.close()


def per_add(run) -> dict[str, float]:
    """Calls and tokens per `add` (one per turn), from the recorded calls."""
    calls, turns = run.calls, len(run.turns)
    llm = calls[(calls["endpoint"] == "llm") & (calls["purpose"] != "chat")]
    embed = calls[calls["purpose"] == "embed"]
    return {
        "llm_calls": len(llm) / turns,
        "embedding_calls": len(embed) / turns,
        "tokens": float((llm["tokens_in"] + llm["tokens_out"]).sum() + embed["tokens_in"].sum())
        / turns,
    }


def test_registered_as_external_not_simulated():
    assert "external-mem0" in strategies.external_strategies()
    assert "external-mem0" not in strategies.builtins()
    assert "external-mem0" in strategies.available()
    assert strategies.resolve("external-mem0") is Mem0External


def test_mem0_calls_per_add_have_the_real_shape(runs):
    _, result, _ = runs
    real = next(r for r in result.runs if r.strategy == "external-mem0")
    calls, turns = real.calls, len(real.turns)
    count = calls.groupby("purpose").size().to_dict()
    writes = count.get("store_write", 0)
    # mem0ai 2.2.1 add(): one extraction call (ADD-only, no separate update call), an
    # embedding of the exchange to find existing memories, and one batch embedding
    # of the new memories when there are any; the app's search embeds the message.
    assert count["extract"] == turns
    assert count.get("update", 0) == 0
    assert writes > 0
    assert count["embed"] == 2 * turns + writes
    extract = calls[calls["purpose"] == "extract"]
    assert (extract["tokens_in"] > 5_000).all()  # Mem0's extraction prompt alone is ~8k
    assert (extract["error"] == "").all()


def test_mem0s_requests_go_through_the_prompt_cache(runs):
    """Mem0's ~8k-token extraction prompt is one system message: OpenAI caches it."""
    _, result, _ = runs
    real = next(r for r in result.runs if r.strategy == "external-mem0")
    extract = real.calls[real.calls["purpose"] == "extract"].sort_values("start_s")
    # Cached when any user sent it within the last 300 s (the entry's lifetime).
    warm = (extract["start_s"].diff() < 300).to_numpy()
    cached = extract["cached_tokens"].to_numpy()
    assert warm.sum() > len(extract) / 2
    assert (cached[warm] >= 4_096).all() and (cached[~warm] == 0).all()
    assert (cached % 128 == 0).all()
    assert (extract["usd_saved"].to_numpy()[warm] > 0).all()
    assert (extract["cache_write_tokens"] == 0).all()


def test_summary_is_byte_identical_across_runs(runs):
    first, second, _ = runs
    assert dumps(summarize(first)) == dumps(summarize(second))


def test_store_size_per_user_is_what_mem0_holds(runs):
    _, result, real = runs
    sizes = real.store_sizes()
    assert sizes and all(held == mirrored > 0 for held, mirrored in sizes.values())
    run = next(r for r in result.runs if r.strategy == "external-mem0")
    final = dict(zip(run.store_final["user"], run.store_final["memories"], strict=True))
    assert {user: held for user, (held, _) in sizes.items()} == final


def test_recall_and_prompts_are_measured(runs):
    _, result, _ = runs
    block = summarize(result)["strategies"]["external-mem0"]
    assert block["memories_per_user_mean"] > 0
    assert block["injected_tokens_mean"] > 0
    assert block["recall"] > 0
    assert block["llm_calls_by_purpose"]["chat"] == block["turns"]


def test_mem0_like_and_real_mem0_side_by_side(runs, capsys):
    _, result, _ = runs
    summary = summarize(result)
    figures = {run.strategy: per_add(run) for run in result.runs}
    with capsys.disabled():
        print("\nper add (one per turn)        mem0-like   external-mem0")
        for key in ("llm_calls", "embedding_calls", "tokens"):
            print(
                f"{key:<28}{figures['mem0-like'][key]:>11,.2f}{figures['external-mem0'][key]:>16,.2f}"
            )
        print(
            f"{'memories per user':<28}"
            f"{summary['strategies']['mem0-like']['memories_per_user_mean']:>11.1f}"
            f"{summary['strategies']['external-mem0']['memories_per_user_mean']:>16.1f}"
        )
    assert figures["external-mem0"]["llm_calls"] == 1.0
    assert figures["mem0-like"]["llm_calls"] > 1.0  # extraction + one update call per fact


def test_a_copy_carries_settings_only(runs):
    _, _, real = runs
    clone = copy.deepcopy(real)
    assert clone.config == real.config and clone._run is None


def test_report_shows_memory_work_per_turn_for_both(runs):
    from reports.markdown import render

    _, result, _ = runs
    text = render(summarize(result), result.runs, result.resolved, "")
    section = text.split("## Memory work per turn", 1)[1].split("\n## ", 1)[0]
    assert "| measurement | mem0-like | external-mem0 |" in section
    assert "| extraction calls/turn | 1.00 | 1.00 |" in section
    assert "memory tokens/turn" in section and "memories/user mean / max" in section


def test_html_report_has_the_memory_work_section_only_when_a_library_ran(runs):
    from reports import html
    from reports.compare import comparison_rows, memory_work_rows

    _, result, _ = runs
    summary = summarize(result)
    rows = comparison_rows(summary, result.runs)
    work = (["external-mem0"], memory_work_rows(summary, result.runs))
    page = html.render(summary, result.resolved, rows, [], [], work)
    section = page.split('<section id="memory-work">', 1)[1].split("</section>", 1)[0]
    assert "<strong>external-mem0</strong> ran a real memory library" in section
    assert "extraction calls/turn" in section and "memories/user mean / max" in section
    assert 'id="memory-work"' not in html.render(summary, result.resolved, rows, [], [])


def test_background_ingestion_moves_mem0_work_off_the_turn():
    scenario = small_scenario().with_overrides(strategies=["external-mem0"])
    foreground = run_scenario(scenario).runs[0]
    background = run_scenario(
        scenario, strategies=[Mem0External(Mem0External.Config(background=True))]
    ).runs[0]
    for run, deferred in ((foreground, False), (background, True)):
        extract = run.calls[run.calls["purpose"] == "extract"]
        assert len(extract) == len(run.turns)  # one add per turn either way
        assert extract["background"].eq(deferred).all()
    # The user no longer waits for the add after the reply.
    assert foreground.turns["post_reply_s"].sum() > 0
    assert background.turns["post_reply_s"].sum() < foreground.turns["post_reply_s"].sum()


def test_two_workers_give_the_same_summary():
    scenario = small_scenario().with_overrides(users=4, days=2, shard_users=2)
    one, two = run_scenario(scenario), run_scenario(scenario, workers=2)
    assert dumps(summarize(one)) == dumps(summarize(two))
