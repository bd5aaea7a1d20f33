"""MockLLM: per-user determinism, extraction noise, context limit, latency, summaries."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from sim.config import LLMConfig
from sim.llm import CONTEXT_LENGTH_EXCEEDED, MockLLM
from sim.textbank import EXTRACT_SYSTEM_PROMPT, INFERENCES, SLOT_BY_KEY, SUMMARY_SYSTEM_PROMPT
from sim.tokens import REPLY_PRIMING_TOKENS, TokenCounter, encoding
from sim.workload import Fact, Message, TextCatalog

CATEGORIES = {"preference", "background", "goal", "other"}
COUNTER = TokenCounter()


def n_tokens(text: str) -> int:
    return len(encoding().encode_ordinary(text))


def two_message_prompt(system: str, user_content_tokens: int) -> int:
    """Prompt tokens of a system + user request: 3 per message, 1 per role, 3 reply priming."""
    return REPLY_PRIMING_TOKENS + (3 + 1 + n_tokens(system)) + (3 + 1 + user_content_tokens)


def make_llm(seed: int = 0, **cfg: Any) -> MockLLM:
    return MockLLM(LLMConfig(**cfg), COUNTER, TextCatalog(), seed=seed)


def stating(*facts: Fact, kind: str = "state") -> Message:
    """A user message stating ``facts`` with each slot's first statement template."""
    text = " ".join(SLOT_BY_KEY[f.slot].statements[0].format(v=f.value) for f in facts)
    return Message("user", text, COUNTER.count(text), kind, facts)


def plain(text: str) -> Message:
    return Message("user", text, COUNTER.count(text), "filler")


BERLIN = Fact("city", 0, "Berlin")
LISBON = Fact("city", 1, "Lisbon")
PRO = Fact("plan", 0, "Pro")
PIXEL = Fact("device", 0, "Pixel 8")
EMAIL = Fact("contact", 0, "email")
PRIYA = Fact("name", 0, "Priya")

FACTS = [
    Fact(slot.key, 0, slot.values[i % len(slot.values)])
    for i, slot in enumerate(SLOT_BY_KEY.values())
]


def workload_like_messages(i: int) -> list[Message]:
    """A short exchange stating a few facts, varying with ``i``."""
    a, b, c = (FACTS[(i + k * 5) % len(FACTS)] for k in range(3))
    return [stating(a, b), plain("Thanks, that worked!"), stating(c)]


# -- determinism ---------------------------------------------------------------------------


def user3_calls(llm: MockLLM, interleave: bool) -> list:
    """A fixed sequence of calls for user 3, optionally interleaved with other users' calls."""

    def noise(step: int) -> None:
        if interleave:
            for other in (1, 2, 4, 1000 + step):
                llm.chat(other, 300 + step)
                llm.extract(other, workload_like_messages(step + other))
                llm.summarize(other, workload_like_messages(step))

    results: list = []
    previous = None
    for step in range(6):
        noise(step)
        results.append(llm.chat(3, 500 + 10 * step))
        noise(step)
        results.append(llm.extract(3, workload_like_messages(step)))
        noise(step)
        summary = llm.summarize(3, workload_like_messages(step + 1), previous)
        previous = summary.summary
        results.append(summary)
    return results


def test_user_results_do_not_depend_on_other_users():
    alone = user3_calls(make_llm(seed=9), interleave=False)
    mixed = user3_calls(make_llm(seed=9), interleave=True)
    assert alone == mixed
    other_seed = user3_calls(make_llm(seed=10), interleave=False)
    assert [r.latency_s for r in other_seed] != [r.latency_s for r in alone]


def test_same_seed_same_results_across_instances():
    a, b = make_llm(seed=1), make_llm(seed=1)
    assert [a.chat(u, 200) for u in range(20)] == [b.chat(u, 200) for u in range(20)]


# -- extract -------------------------------------------------------------------------------


def json_body(factoids) -> str:
    return json.dumps(
        [
            {"content": f.content, "importance": f.importance, "category": f.category}
            for f in factoids
        ],
        ensure_ascii=False,
    )


def test_extract_returns_well_formed_json_factoids():
    llm = make_llm(seed=2, extract_hallucination_rate=0.5)
    inferences = 0
    for user in range(150):
        messages = workload_like_messages(user)
        result = llm.extract(user, messages)
        assert result.purpose == "extract"
        assert result.error == ""
        assert result.tokens_out == n_tokens(json_body(result.factoids))
        transcript = "".join("User: " + m.text + "\n" for m in messages)
        assert result.tokens_in == two_message_prompt(EXTRACT_SYSTEM_PROMPT, n_tokens(transcript))
        stated = {(f.slot, f.version): f for m in messages for f in m.facts}
        for factoid in json.loads(json_body(result.factoids)):
            assert set(factoid) == {"content", "importance", "category"}
            assert 1 <= factoid["importance"] <= 10
            assert factoid["category"] in CATEGORIES
        for factoid in result.factoids:
            if not factoid.facts:
                inferences += 1
                assert factoid.content in INFERENCES
                assert factoid.category == "other"
                continue
            ((key, version),) = factoid.facts
            fact = stated[(key, version)]
            slot = SLOT_BY_KEY[key]
            assert factoid.category == slot.category
            assert abs(factoid.importance - slot.importance) <= 5
            assert factoid.content in {m.format(v=fact.value) for m in slot.memories}
            assert llm.catalog.topics[factoid.content][0][:3] == ("fact", key, fact.value)
    assert 40 <= inferences <= 110  # 150 calls at rate 0.5


def test_extract_with_full_miss_rate_finds_nothing():
    llm = make_llm(extract_miss_rate=1.0, extract_hallucination_rate=0.0)
    for user in range(30):
        result = llm.extract(user, workload_like_messages(user))
        assert result.factoids == []
        assert result.tokens_out == n_tokens("[]") == 1


def test_extract_without_noise_is_exact_and_canonical():
    llm = make_llm(extract_miss_rate=0.0, extract_reword_rate=0.0, extract_hallucination_rate=0.0)
    messages = [
        stating(BERLIN, PRO),
        plain("How do I reset my password?"),
        stating(BERLIN, kind="restate"),  # the same fact again
        stating(LISBON, kind="update"),  # a new version of the same slot
        stating(PRO, PIXEL, kind="restate"),
    ]
    result = llm.extract(0, messages)
    got = sorted((f.facts, f.content, f.category) for f in result.factoids)
    expected = sorted(
        (
            ((f.slot, f.version),),
            SLOT_BY_KEY[f.slot].memories[0].format(v=f.value),
            SLOT_BY_KEY[f.slot].category,
        )
        for f in (BERLIN, LISBON, PRO, PIXEL)
    )
    assert got == expected
    assert llm.extract(1, [plain("Got it.")]).factoids == []
    assert llm.extract(1, []).factoids == []


@pytest.mark.parametrize("miss", [0.1, 0.5])
def test_measured_miss_and_reword_rates(miss):
    llm = make_llm(
        seed=5, extract_miss_rate=miss, extract_reword_rate=0.3, extract_hallucination_rate=0.0
    )
    stated = found = reworded = 0
    for user in range(100):
        for call in range(4):
            facts = [FACTS[(user + call + k) % len(FACTS)] for k in range(4)]
            result = llm.extract(user, [stating(f) for f in facts])
            stated += len(facts)
            found += len(result.factoids)
            values = {f.slot: f.value for f in facts}
            for f in result.factoids:
                ((key, _),) = f.facts
                reworded += f.content != SLOT_BY_KEY[key].memories[0].format(v=values[key])
    measured = 1 - found / stated
    sd = math.sqrt(miss * (1 - miss) / stated)
    assert abs(measured - miss) < 4 * sd, measured
    assert abs(reworded / found - 0.3) < 4 * math.sqrt(0.21 / found)


# -- chat ------------------------------------------------------------------------------------


def test_chat_over_the_context_window_fails_like_openai():
    llm = make_llm(context_window=4096, max_output_tokens=512)
    fits = llm.chat(0, 4096 - 512)
    assert fits.error == "" and fits.reply is not None
    result = llm.chat(0, 4096 - 512 + 1)
    assert result.error == CONTEXT_LENGTH_EXCEEDED == "context_length_exceeded"
    assert (result.tokens_in, result.tokens_out) == (0, 0)
    assert result.reply is None
    assert "maximum context length is 4096 tokens" in result.error_message
    assert "you requested 4097 tokens (3585 in the messages, 512 in the completion)" in (
        result.error_message
    )


def test_chat_reply_token_counts_are_real():
    llm = make_llm(seed=4)
    lengths = []
    for user in range(300):
        result = llm.chat(user, 1234)
        reply = result.reply
        assert result.error == ""
        assert result.tokens_in == 1234
        assert reply.role == "assistant"
        assert result.tokens_out == reply.tokens == n_tokens(reply.text)
        assert reply.transcript_tokens == n_tokens("Assistant: " + reply.text + "\n")
        assert reply.tokens >= 8
        lengths.append(reply.tokens)
    # Lognormal target with mean 140, overshooting by at most one sentence.
    assert 135 <= sum(lengths) / len(lengths) <= 165


def test_chat_reply_never_exceeds_max_output_tokens():
    llm = make_llm(max_output_tokens=16)
    assert max(llm.chat(u, 100).tokens_out for u in range(50)) <= 16


# -- latency ---------------------------------------------------------------------------------


def base_latency(llm: MockLLM, tokens_in: int, tokens_out: int) -> float:
    return llm.profile.median_s(tokens_in, tokens_out)


def test_latency_stays_in_the_jitter_band():
    llm = make_llm(seed=6, jitter_sigma=1.0, jitter_min=0.7, jitter_max=1.8)
    ratios = []
    for user in range(200):
        for result in (
            llm.chat(user, 100 + 50 * user),
            llm.extract(user, workload_like_messages(user)),
            llm.summarize(user, workload_like_messages(user)),
        ):
            ratios.append(result.latency_s / base_latency(llm, result.tokens_in, result.tokens_out))
    assert all(0.7 - 1e-9 <= r <= 1.8 + 1e-9 for r in ratios)
    # sigma = 1 puts ~36 % below 0.7 and ~28 % above 1.8: the clamps are hit exactly.
    assert sum(math.isclose(r, 0.7) for r in ratios) > 100
    assert sum(math.isclose(r, 1.8) for r in ratios) > 100


def test_latency_without_jitter_is_the_formula():
    llm = make_llm(
        jitter_sigma=0.0,
        jitter_sigma_per_1k_tokens=0.0,
        ttft_base_s=0.5,
        prefill_s_per_token=1e-4,
        decode_tokens_per_s=50.0,
    )
    result = llm.chat(0, 2000)
    assert result.latency_s == pytest.approx(0.5 + 0.2 + result.tokens_out / 50, rel=1e-12)


# -- summarize -------------------------------------------------------------------------------


def test_summary_without_drift_keeps_every_fact():
    llm = make_llm(summarize_drift=0.0)
    first = llm.summarize(0, [stating(BERLIN, PRO), stating(PRIYA)]).summary
    assert first.facts == (("city", 0), ("name", 0), ("plan", 0))
    assert first.text == "User lives in Berlin. User's name is Priya. User is on the Pro plan."
    summary = first
    for step in range(20):
        summary = llm.summarize(0, [plain("Got it.")] if step % 2 else [], summary).summary
        assert summary.values == first.values
    second = llm.summarize(0, [stating(EMAIL)], summary).summary
    assert second.values == {**first.values, "contact": EMAIL}


def test_summary_with_full_drift_keeps_only_new_facts():
    llm = make_llm(summarize_drift=1.0)
    first = llm.summarize(0, [stating(BERLIN, PRO, PIXEL)]).summary
    assert set(first.values) == {"city", "plan", "device"}  # new facts are never lost
    second = llm.summarize(0, [stating(EMAIL)], first).summary
    assert second.values == {"contact": EMAIL}
    assert second.facts == (("contact", 0),)
    empty = llm.summarize(0, [plain("Got it.")], second).summary
    assert empty.values == {} and empty.facts == ()
    assert empty.text == "No durable facts about the user yet."


def test_summary_measured_drift():
    llm = make_llm(seed=8, summarize_drift=0.3)
    kept = total = 0
    for user in range(150):
        first = llm.summarize(user, [stating(*FACTS[:8])]).summary
        second = llm.summarize(user, [plain("Got it.")], first).summary
        total += len(first.values)
        kept += len(second.values)
    assert abs(kept / total - 0.7) < 4 * math.sqrt(0.21 / total)


def test_summary_newer_version_replaces_older():
    llm = make_llm(summarize_drift=0.0)
    first = llm.summarize(0, [stating(BERLIN, PRO)]).summary
    second = llm.summarize(0, [stating(LISBON, kind="update")], first).summary
    assert second.values == {"city": LISBON, "plan": PRO}
    assert second.facts == (("city", 1), ("plan", 0))
    assert "Lisbon" in second.text and "Berlin" not in second.text
    # Within one batch, the later message wins too.
    same_batch = llm.summarize(1, [stating(BERLIN), stating(LISBON, kind="update")]).summary
    assert same_batch.values == {"city": LISBON}


def test_summary_token_accounting():
    llm = make_llm(summarize_drift=0.0)
    messages = [stating(BERLIN, PRO), plain("Got it.")]
    first = llm.summarize(0, messages)
    transcript = "".join("User: " + m.text + "\n" for m in messages)
    assert first.tokens_in == two_message_prompt(SUMMARY_SYSTEM_PROMPT, n_tokens(transcript))
    assert first.tokens_out == n_tokens(first.summary.text)
    assert first.summary.line_tokens == n_tokens("- " + first.summary.text + "\n")
    more = [stating(PIXEL)]
    second = llm.summarize(0, more, first.summary)
    transcript = "".join("User: " + m.text + "\n" for m in more)
    assert second.tokens_in == two_message_prompt(
        SUMMARY_SYSTEM_PROMPT, n_tokens(first.summary.text) + n_tokens(transcript)
    )
