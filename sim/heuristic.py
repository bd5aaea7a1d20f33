"""The extraction heuristic for text without ground truth (real traces, HTTP requests).

Synthetic messages carry hidden annotations, and the mock extractor returns the
facts they state. Real text (a LoCoMo conversation, a team's chat log, a request
a real memory library sends to ``memsim serve-mock``) carries none, so the mock
extractor falls back to this rule, chosen to behave like an extraction model
on chat text at the level that matters for cost — how many facts a message
yields and how long they are — not to understand it:

1. Split the message into sentences (``.``, ``!``, ``?`` or a line break end one).
2. Keep a sentence when it is a statement about the speaker: it has a
   first-person word (``I``, ``I'm``, ``my``, ``we``, ``our``, …), does not end
   with ``?``, has at least :data:`MIN_WORDS` words and does not open with a
   greeting or thanks (``hi``, ``thanks``, ``good to see``, …).
3. Each kept sentence is one fact: the sentence itself, whitespace-collapsed
   and cut to :data:`MAX_WORDS` words; importance 4 when it names something
   durable (work, home, family, health, a preference), else 3.

The rule is deterministic and draws no random numbers. It over-extracts chatty
first-person small talk and misses facts stated in the third person, much as a
cheap extraction prompt does; recall cannot be measured against it (there is no
ground truth), and reports say so.
"""

from __future__ import annotations

import re
from typing import NamedTuple

MIN_WORDS = 4
"""Shorter first-person sentences ("I see.", "Me too!") are not facts."""
MAX_WORDS = 40
"""A fact longer than this is cut, as extraction prompts ask for short facts."""

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_FIRST_PERSON = re.compile(r"\b(i|i'm|i've|i'd|i'll|me|my|mine|myself|we|we're|our|ours|us)\b")
_SMALL_TALK = re.compile(
    r"^(hi|hey|hello|thanks|thank you|bye|goodbye|good to see|nice to|see you|"
    r"ok|okay|sure|lol|haha|wow)\b"
)
_DURABLE = re.compile(
    r"\b(work|job|live|moved|born|married|wife|husband|kids?|children|son|daughter|"
    r"allergic|allergy|diagnosed|name|prefer|love|hate|vegan|vegetarian|company|"
    r"school|study|degree|birthday|pet|dog|cat)\w*\b"
)


class HeuristicFact(NamedTuple):
    """One fact the heuristic extractor finds in a text."""

    content: str
    importance: int


def heuristic_facts(text: str) -> list[HeuristicFact]:
    """The facts the documented heuristic extracts from ``text``, in order, without repeats."""
    found: list[HeuristicFact] = []
    seen: set[str] = set()
    for raw in _SENTENCE_END.split(text):
        sentence = " ".join(raw.split())
        lowered = sentence.lower()
        if (
            sentence.endswith("?")
            or len(sentence.split()) < MIN_WORDS
            or _SMALL_TALK.match(lowered)
            or not _FIRST_PERSON.search(lowered)
        ):
            continue
        words = sentence.split()
        content = " ".join(words[:MAX_WORDS])
        if content in seen:
            continue
        seen.add(content)
        found.append(HeuristicFact(content, 4 if _DURABLE.search(lowered) else 3))
    return found
