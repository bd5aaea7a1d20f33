"""Prompt caching: each provider's rule on hand-built requests, and its prices.

A request here is a layout of whole blocks with round token counts, so every
expected figure can be worked out by hand from the rule in ``sim/prompt_cache.py``.
"""

from __future__ import annotations

import pytest
from genai_prices import Usage, calc_price

from helpers import make_scenario
from sim.config import ConfigError, LLMConfig
from sim.pricing import chat_rates, scenario_rates
from sim.prompt_cache import (
    ANTHROPIC,
    GEMINI,
    NONE,
    OPENAI,
    Layout,
    MessageChain,
    PromptCache,
    cache_rule,
    common_prefix,
    new_cache,
    resolve_provider,
)
from sim.workload import Message

SYSTEM, MEMORIES, HISTORY, USER = range(4)


def _cache(**cache: object) -> PromptCache:
    llm = {k: cache.pop(k) for k in ("model", "provider") if k in cache}
    made = new_cache(LLMConfig(**llm, cache=cache))
    assert made is not None
    return made


def _request(cache: PromptCache, blocks: list[tuple[str, int]], marks=(SYSTEM, USER)):
    """A layout of named head blocks; ``marks``: the parts ending at the first and last block."""
    layout = cache.layout()
    first, *rest = blocks
    layout.add(first[0], first[1])
    layout.mark(marks[0])
    for key, tokens in rest:
        layout.add(key, tokens)
    layout.mark(marks[-1])
    return layout


def _use(cache, user, blocks, now, **kw):
    use = cache.request(user, _request(cache, blocks, **kw), now)
    return use.cached_tokens, use.written_tokens


# -- OpenAI ---------------------------------------------------------------------------
def test_openai_caches_prefixes_from_1024_tokens_in_steps_of_128():
    cache = _cache(mode="openai")
    assert _use(cache, 0, [("S", 500), ("A", 600)], 0.0) == (0, 0)  # nothing cached yet
    # 1,100 shared tokens: 1,024 cached (8 whole steps of 128), none written (no premium).
    assert _use(cache, 0, [("S", 500), ("A", 600), ("B", 300)], 10.0) == (1024, 0)
    # 1,400 shared: 1,280 cached.
    assert _use(cache, 0, [("S", 500), ("A", 600), ("B", 300), ("C", 50)], 20.0) == (1280, 0)


def test_openai_below_the_minimum_caches_nothing():
    cache = _cache(mode="openai")
    _use(cache, 0, [("S", 500), ("A", 500), ("B", 400)], 0.0)
    # 1,000 shared tokens, under 1,024: a miss, though most of the prompt repeats.
    assert _use(cache, 0, [("S", 500), ("A", 500), ("C", 400)], 5.0) == (0, 0)
    assert not cache.reaches(1_000 + 3 - 1) and cache.reaches(1_024 + 3)


def test_the_shared_prefix_ends_at_the_first_different_block():
    cache = _cache(mode="openai")
    _use(cache, 0, [("S", 1100), ("A", 300), ("B", 300)], 0.0)
    assert _use(cache, 0, [("S", 1100), ("X", 300), ("B", 300)], 1.0) == (1024, 0)


def test_an_entry_expires_exactly_at_its_ttl_on_the_simulated_clock():
    blocks = [("S", 2000), ("A", 100)]
    hit = _cache(mode="openai")
    _use(hit, 0, blocks, 100.0)
    assert _use(hit, 0, blocks, 100.0 + 299.999) == (2048, 0)
    miss = _cache(mode="openai")
    _use(miss, 0, blocks, 100.0)
    assert _use(miss, 0, blocks, 100.0 + 300.0) == (0, 0)  # the default TTL, 300 s


def test_a_hit_refreshes_the_prefix_it_read():
    cache = _cache(mode="openai")
    _use(cache, 0, [("S", 2000)], 0.0)
    assert _use(cache, 0, [("S", 2000), ("A", 10)], 250.0) == (1920, 0)
    # 500 s after the first write, 250 s after the hit: still there.
    assert _use(cache, 0, [("S", 2000), ("B", 10)], 500.0) == (1920, 0)


def test_ttl_and_extended_retention_are_settings():
    assert _cache(mode="openai").rule.ttl_s == 300.0
    assert _cache(mode="openai", retention="extended").rule.ttl_s == 86_400.0
    cache = _cache(mode="openai", ttl_s=600)
    _use(cache, 0, [("S", 2000)], 0.0)
    assert _use(cache, 0, [("S", 2000)], 599.0) == (1920, 0)


def test_users_share_the_entry_of_a_common_system_prompt():
    blocks = [("SYSTEM", 1200), ("own", 50)]
    shared = _cache(mode="openai")
    _use(shared, 0, blocks, 0.0)
    # Another user, same system prompt: its 1,200 tokens are cached (1,152 in steps).
    assert _use(shared, 1, [("SYSTEM", 1200), ("other", 50)], 5.0) == (1152, 0)
    apart = _cache(mode="openai", share_across_users=False)
    _use(apart, 0, blocks, 0.0)
    assert _use(apart, 1, [("SYSTEM", 1200), ("other", 50)], 5.0) == (0, 0)


def test_users_share_nothing_beyond_the_system_prompt():
    cache = _cache(mode="openai")
    _use(cache, 0, [("S", 600), ("same", 900)], 0.0)
    assert _use(cache, 1, [("S", 600), ("same", 900)], 1.0) == (0, 0)
    assert _use(cache, 0, [("S", 600), ("same", 900)], 2.0) == (1408, 0)


# -- Anthropic ------------------------------------------------------------------------
def test_anthropic_writes_at_breakpoints_and_reads_the_longest_written_prefix():
    cache = _cache(mode="anthropic", model="claude-haiku-4-5", provider="anthropic")
    assert cache.rule.min_tokens == 4096  # Haiku 4.5's minimum
    conversation = [("S", 5000), ("u1", 300)]
    # First call: the system breakpoint (5,000) and the last one (5,300): 5,300 written.
    assert _use(cache, 0, conversation, 0.0) == (0, 5300)
    # The next turn repeats it and adds 400: reads 5,300, writes the 400 up to its end.
    assert _use(cache, 0, [*conversation, ("r1", 200), ("u2", 200)], 60.0) == (5300, 400)


def test_anthropic_prefixes_under_the_model_minimum_are_not_cached():
    haiku = _cache(mode="anthropic", model="claude-haiku-4-5", provider="anthropic")
    assert _use(haiku, 0, [("S", 3000), ("u", 500)], 0.0) == (0, 0)
    assert _use(haiku, 0, [("S", 3000), ("u", 500)], 1.0) == (0, 0)
    sonnet = _cache(mode="anthropic", model="claude-sonnet-4-5", provider="anthropic")
    assert sonnet.rule.min_tokens == 1024
    assert _use(sonnet, 0, [("S", 3000), ("u", 500)], 0.0) == (0, 3500)
    assert _use(sonnet, 0, [("S", 3000), ("u", 500)], 1.0) == (3500, 0)


def test_anthropic_reads_only_where_an_earlier_request_had_a_breakpoint():
    cache = _cache(mode="anthropic", model="claude-sonnet-4-5", provider="anthropic")
    # Breakpoints after S (system) and at the end; the middle block is not one.
    _use(cache, 0, [("S", 2000), ("M", 3000), ("u", 100)], 0.0)
    # Shares S and M (5,000 tokens) but diverges before the old end: S is the longest
    # written prefix, so 2,000 are read and the rest up to the new end is written.
    assert _use(cache, 0, [("S", 2000), ("M", 3000), ("v", 100)], 1.0) == (2000, 3100)


def test_anthropic_looks_back_at_most_20_blocks_from_a_breakpoint():
    cache = _cache(mode="anthropic", model="claude-sonnet-4-5", provider="anthropic")
    base = [("S", 2000)]
    _use(cache, 0, base, 0.0, marks=(SYSTEM,))
    near = [*base, *[(f"b{i}", 10) for i in range(20)]]  # the end is 20 blocks after S
    assert _use(cache, 0, near, 1.0, marks=(HISTORY, USER))[0] == 2000
    far_cache = _cache(mode="anthropic", model="claude-sonnet-4-5", provider="anthropic")
    _use(far_cache, 0, base, 0.0, marks=(SYSTEM,))
    far = [*base, *[(f"b{i}", 10) for i in range(21)]]  # 21 blocks: out of reach
    assert _use(far_cache, 0, far, 1.0, marks=(HISTORY, USER)) == (0, 2210)


def test_anthropic_one_hour_option_lives_an_hour_and_is_billed_at_its_write_price():
    blocks = [("S", 5000), ("u", 100)]
    five = _cache(mode="anthropic", model="claude-sonnet-4-5", provider="anthropic")
    _use(five, 0, blocks, 0.0)
    assert _use(five, 0, blocks, 1_000.0) == (0, 5100)  # 5-minute entries are gone
    hour = _cache(
        mode="anthropic", model="claude-sonnet-4-5", provider="anthropic", retention="extended"
    )
    assert (hour.rule.ttl_s, hour.rule.write_ttl) == (3600.0, "1h")
    _use(hour, 0, blocks, 0.0)
    assert _use(hour, 0, blocks, 3_000.0) == (5100, 0)
    rates5 = chat_rates("claude-sonnet-4-5", "anthropic", "2026-11-01", "5m")
    rates1h = chat_rates("claude-sonnet-4-5", "anthropic", "2026-11-01", "1h")
    assert rates5.cache_write_usd_per_token == pytest.approx(1.25 * 3e-6)
    assert rates1h.cache_write_usd_per_token == pytest.approx(2 * 3e-6)


# -- Gemini ---------------------------------------------------------------------------
def test_gemini_caches_exact_prefixes_from_its_model_minimum():
    cache = _cache(mode="gemini", model="gemini-2.5-flash", provider="google")
    assert cache.rule.min_tokens == 2048 and cache.rule.step_tokens == 1
    _use(cache, 0, [("S", 1500), ("A", 500), ("B", 300)], 0.0)
    assert _use(cache, 0, [("S", 1500), ("A", 500), ("C", 300)], 1.0) == (0, 0)  # 2,000
    assert _use(cache, 0, [("S", 1500), ("A", 500), ("C", 300)], 2.0) == (2300, 0)
    pro3 = _cache(mode="gemini", model="gemini-3-pro-preview", provider="google")
    assert pro3.rule.min_tokens == 4096


def test_gemini_has_no_extended_retention():
    with pytest.raises(ValueError, match="Gemini"):
        cache_rule(LLMConfig(cache={"mode": "gemini", "retention": "extended"}))
    scenario = make_scenario(
        llm={"model": "gemini-2.5-flash", "provider": "google", "cache": {"retention": "extended"}}
    )
    with pytest.raises(ConfigError, match=r"llm\.cache\.retention"):
        scenario_rates(scenario)


# -- choosing the rule ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("provider", "expected"),
    [("openai", OPENAI), ("anthropic", ANTHROPIC), ("google", GEMINI), ("groq", NONE)],
)
def test_auto_follows_the_chat_models_provider(provider, expected):
    assert resolve_provider(LLMConfig(provider=provider)) == expected


def test_mode_none_has_no_cache():
    assert new_cache(LLMConfig(cache={"mode": "none"})) is None


# -- layouts --------------------------------------------------------------------------
def _message(role: str, text: str, tokens: int) -> Message:
    return Message(role, text, tokens)


def test_a_conversation_chain_is_compared_without_walking_it():
    """Two prompts of one growing history share it up to the older one's user message."""
    cache = _cache(mode="openai")
    messages = [_message("user" if i % 2 == 0 else "assistant", f"m{i}", 100) for i in range(12)]
    chain = MessageChain()

    def prompt(n: int) -> Layout:
        layout = cache.layout()
        layout.add(("system", "S"), 50)
        history = messages[:n]
        chain.extend(history, n)
        layout.attach(history, chain)
        layout.add(messages[n], 104)
        return layout

    old, new = prompt(4), prompt(6)
    # The old request: S + 4 history messages + m4 as its user message = 6 blocks; the
    # new one holds m4 in its history (its own overhead, 3 + 1 + 100 = 104 tokens).
    blocks, tokens = common_prefix(new, old)
    assert blocks == 6
    assert tokens == 50 + 4 * 104 + 104
    # A different conversation object with equal messages compares equal too.
    other = MessageChain()
    copy = cache.layout()
    copy.add(("system", "S"), 50)
    other.extend(messages[:6], 6)
    copy.attach(messages[:6], other)
    assert common_prefix(copy, new)[0] == 7


# -- prices ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "provider", "write_ttl"),
    [
        ("gpt-4o-mini", "openai", "5m"),
        ("gpt-5-mini", "openai", "5m"),
        ("claude-haiku-4-5", "anthropic", "5m"),
        ("claude-haiku-4-5", "anthropic", "1h"),
        ("claude-sonnet-4-5", "anthropic", "5m"),
        ("gemini-2.5-flash", "google", "5m"),
        ("gemini-2.5-pro", "google", "5m"),
    ],
)
@pytest.mark.parametrize(
    ("tokens_in", "tokens_out", "cached", "written"),
    [(1500, 200, 0, 0), (5000, 120, 4096, 0), (9000, 300, 2048, 6000), (250_000, 500, 200_000, 0)],
)
def test_a_calls_cost_is_genai_prices_figure_for_its_usage(
    model, provider, write_ttl, tokens_in, tokens_out, cached, written
):
    rates = chat_rates(model, provider, "2026-11-01", write_ttl)
    usage = {
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "cache_read_tokens": cached,
        "cache_write_tokens": written,
    }
    if write_ttl == "1h" and written:
        usage["cache_write_1h_tokens"] = written
    expected = calc_price(Usage(**usage), model, provider_id=provider).total_price
    assert rates.usd(tokens_in, tokens_out, cached, written) == pytest.approx(
        float(expected), rel=1e-12
    )


def test_the_issues_prices_hold():
    """The read prices the cache bills at (genai-prices, 2026-11-01)."""
    per_million = {
        "gpt-4o-mini": (0.15, 0.075),
        "gpt-5-mini": (0.25, 0.025),
    }
    for model, (full, read) in per_million.items():
        rates = chat_rates(model, "openai", "2026-11-01")
        assert rates.input_usd_per_token * 1e6 == pytest.approx(full)
        assert rates.cache_read_usd_per_token * 1e6 == pytest.approx(read)
    haiku = chat_rates("claude-haiku-4-5", "anthropic", "2026-11-01")
    assert haiku.cache_read_usd_per_token * 1e6 == pytest.approx(0.10)
    assert haiku.input_usd_per_token * 1e6 == pytest.approx(1.00)


def test_a_price_override_keeps_the_cache_discount():
    scenario = make_scenario(pricing={"input_usd_per_million_tokens": 0.30})
    chat, _ = scenario_rates(scenario)
    assert chat.input_usd_per_token * 1e6 == pytest.approx(0.30)
    assert chat.cache_read_usd_per_token * 1e6 == pytest.approx(0.15)  # half, as gpt-4o-mini's


def test_expired_entries_of_users_who_left_are_purged(monkeypatch):
    import sim.prompt_cache as module

    monkeypatch.setattr(module, "PURGE_EVERY_REQUESTS", 3)
    cache = _cache(mode="openai")
    _use(cache, 0, [("S", 2000)], 0.0)  # user 0 never comes back
    _use(cache, 1, [("T", 2000)], 10.0)
    assert len(cache._entries) == 2
    _use(cache, 1, [("T", 2000)], 400.0)  # the third request: user 0's entry expired at 300
    assert list(cache._entries) == [(1, "T")]
    assert "S" not in cache._shared
