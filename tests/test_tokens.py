import random

from hypothesis import given, settings
from hypothesis import strategies as st

from sim.llm import MockLLM
from sim.textbank import SLOTS
from sim.tokens import ENCODING_NAME, TokenCounter, encoding
from sim.workload import Message


def test_offline_encoding_is_cl100k():
    enc = encoding()
    assert enc.name == ENCODING_NAME
    # Same ranks as cl100k_base: well-known ids.
    assert enc.encode("hello world") == [15339, 1917]


def test_chat_overhead_matches_openai_accounting():
    counter = TokenCounter()
    # One user message "Hello": 3 (message) + 1 (role) + 1 (content) + 3 (reply priming).
    assert counter.chat([("user", "Hello")]) == 8
    two = counter.chat([("system", "You are helpful."), ("user", "Hello")])
    assert two == 3 + (3 + 1 + counter.count("You are helpful.")) + (3 + 1 + 1)


def test_count_is_cached_and_exact():
    counter = TokenCounter()
    text = "I moved to Lisbon last week."
    assert counter.count(text) == len(encoding().encode_ordinary(text))
    assert counter.count(text) == counter.count(text)
    assert text in counter._cache


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 400))
def test_reply_token_counts_are_exact_sums(seed, target):
    """Replies and their transcript lines are counted by summing per-sentence counts;
    this holds only because sentence boundaries are tokenizer chunk boundaries."""
    counter = TokenCounter()
    from sim.config import LLMConfig
    from sim.workload import TextCatalog

    llm = MockLLM(LLMConfig(), counter, TextCatalog(), seed=0)
    reply = llm._reply(random.Random(seed), target=target)
    enc = encoding()
    assert reply.tokens == len(enc.encode_ordinary(reply.text))
    assert reply.transcript_tokens == len(enc.encode_ordinary("Assistant: " + reply.text + "\n"))


def test_memory_block_lines_are_additive():
    """The memory block is counted as the sum of its lines' counts."""
    enc = encoding()
    lines = [
        "- " + m.format(v=v) + "\n"
        for slot in SLOTS
        for m in slot.memories
        for v in slot.values[:2]
    ]
    rng = random.Random(3)
    for _ in range(300):
        chosen = rng.sample(lines, rng.randint(1, 12))
        block = "".join(chosen)
        assert len(enc.encode_ordinary(block)) == sum(len(enc.encode_ordinary(x)) for x in chosen)


def test_transcript_lines_are_counted_per_message():
    counter = TokenCounter()
    from sim.config import LLMConfig
    from sim.workload import TextCatalog

    llm = MockLLM(LLMConfig(), counter, TextCatalog(), seed=0)
    msgs = [
        Message("user", "I live in Berlin. How do I reset my password?", 0),
        Message("user", "Thanks, that worked!", 0),
    ]
    text = "".join("User: " + m.text + "\n" for m in msgs)
    assert llm.transcript_tokens(msgs) == len(encoding().encode_ordinary(text))


# -- counting by pieces is exact ---------------------------------------------------
_WORDS = sorted({w for s in SLOTS for t in s.statements + s.memories for w in t.split(" ")})
_ODD = ["", " ", "  ", " x", "y ", "a\n", "\t", "\r\n", "\u00a0", "\u3000", "é1", "'s", "{}"]
_TEXT = st.lists(st.sampled_from(_WORDS + _ODD), max_size=12)
_SEPARATORS = st.sampled_from([" ", "  ", " \n", "\t ", "", "\n"])


@settings(max_examples=400, deadline=None)
@given(pieces=_TEXT, separator=_SEPARATORS)
def test_count_split_equals_the_tokenizer(pieces, separator):
    text = separator.join(pieces)
    assert TokenCounter().count_split(text) == len(encoding().encode_ordinary(text))


@settings(max_examples=400, deadline=None)
@given(
    parts=st.lists(st.sampled_from(_WORDS + _ODD), max_size=6),
    head=st.sampled_from(["User:", "Assistant:", "", " ", "H\n", "Note"]),
)
def test_sentences_equal_the_tokenizer_on_the_joined_text(parts, head):
    enc = encoding().encode_ordinary
    text = " ".join(parts)
    expected = (len(enc(text)), len(enc(head + " " + text + "\n")))
    assert TokenCounter().sentences(parts, head) == expected
