r"""Extraction prompt templates: what an extraction call sends, so that it costs what it costs.

An extraction call is a system message and one user message: the template's
``preamble`` (instructions before the conversation), then the conversation in
the template's ``transcript`` format. The mock extractor's answer does not
depend on the template; its bill and its latency do.

Shipped templates (``extraction_prompt`` = a name, or a path to a text file):

* ``compact``: memsim's own 134-token instruction
  (:data:`sim.textbank.EXTRACT_SYSTEM_PROMPT`), the conversation as
  ``User: …``/``Assistant: …`` lines. The default.
* ``practitioner``: the shape production write-ups of extraction-based memory
  publish, written for memsim: a system line asking for precise, conservative
  extraction; an instruction naming the JSON keys (content, importance 1–10,
  category) and saying to extract only what the user stated; then the
  conversation serialized as indented JSON (``json.dumps(messages, indent=2)``),
  200–500 tokens a call for a batch of a few messages.
* ``mem0-classic``: Mem0's ``USER_MEMORY_EXTRACTION_PROMPT`` as the system message
  and ``Input:\n`` + ``user: …``/``assistant: …`` lines (``get_fact_retrieval_messages``
  and ``parse_messages`` in ``mem0/memory/utils.py``), read from the installed
  ``mem0ai`` package.
* ``mem0-additive``: Mem0 2.x's ``ADDITIVE_EXTRACTION_PROMPT`` (about 8,000 tokens)
  and the user prompt ``generate_additive_extraction_prompt`` builds with no
  summary, no existing memories and fixed dates, the messages as Mem0's lines after
  it (the real prompt places them inside its "New Messages" section: the same
  tokens give or take a few).
* A path: the file's text is the system message; the conversation follows as
  ``compact``'s lines.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from sim.config import ConfigError
from sim.textbank import EXTRACT_SYSTEM_PROMPT

Transcript = Literal["lines", "mem0", "json"]

PRACTITIONER_SYSTEM = (
    "You are a precise and conservative memory extraction system. You extract only durable "
    "facts that the user explicitly stated about themselves, and nothing else."
)
PRACTITIONER_PREAMBLE = (
    "Extract the facts worth remembering from the conversation below.\n"
    "Return a JSON array. Each element is an object with exactly these keys:\n"
    '- "content": the fact, one short sentence in the third person, starting with "User"\n'
    '- "importance": an integer from 1 (trivia) to 10 (needed to serve the user)\n'
    '- "category": one of "preference", "background", "goal", "other"\n'
    "Rules:\n"
    "- Extract only what the user stated. Do not infer, guess or generalize.\n"
    "- Ignore greetings, questions, small talk and everything the assistant said.\n"
    "- If a fact updates an earlier one, state the new value.\n"
    "- If there is nothing to extract, return [].\n"
    "Return only the JSON array, with no other text.\n\n"
    "Conversation:\n"
)
MEM0_DATE = "2026-11-01"
"""The date in the mem0-additive user prompt (fixed: a run is the same whenever it runs)."""


@dataclass(frozen=True, slots=True)
class ExtractionPrompt:
    """What an extraction call sends around the conversation.

    Attributes:
        name: The template's name (or the file it was read from).
        system: The system message.
        preamble: The user message's text before the conversation.
        transcript: How each message is written: ``lines`` (``User: text``),
            ``mem0`` (``user: text``) or ``json`` (``json.dumps(messages, indent=2)``).
    """

    name: str
    system: str
    preamble: str = ""
    transcript: Transcript = "lines"

    def conversation(self, roles_and_texts: Sequence[tuple[str, str]]) -> str:
        """The conversation part of the user message, for ``mem0`` and ``json`` formats."""
        if self.transcript == "json":
            return json.dumps([{"role": r, "content": t} for r, t in roles_and_texts], indent=2)
        return "".join(f"{role}: {text}\n" for role, text in roles_and_texts)


def _mem0_prompts():
    try:
        from mem0.configs import prompts
    except ImportError:
        raise ConfigError(
            "extraction_prompt: the mem0 templates read the installed mem0ai package, "
            "which is not installed (make setup installs it)"
        ) from None
    return prompts


@cache
def _shipped(name: str) -> ExtractionPrompt:
    if name == "compact":
        return ExtractionPrompt(name, EXTRACT_SYSTEM_PROMPT)
    if name == "practitioner":
        return ExtractionPrompt(name, PRACTITIONER_SYSTEM, PRACTITIONER_PREAMBLE, "json")
    prompts = _mem0_prompts()
    if name == "mem0-classic":
        return ExtractionPrompt(name, prompts.USER_MEMORY_EXTRACTION_PROMPT, "Input:\n", "mem0")
    framing = prompts.generate_additive_extraction_prompt(
        existing_memories=[], new_messages=[], last_k_messages=[], current_date=MEM0_DATE
    )
    return ExtractionPrompt(name, prompts.ADDITIVE_EXTRACTION_PROMPT, framing + "\n", "mem0")


SHIPPED = ("compact", "practitioner", "mem0-classic", "mem0-additive")


@cache
def extraction_prompt(spec: str) -> ExtractionPrompt:
    """The template ``spec`` names: a shipped name, or a text file holding a system prompt.

    A file is read once per process (a relative path from the current folder).
    """
    if spec in SHIPPED:
        return _shipped(spec)
    path = Path(spec)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"extraction_prompt: {spec!r}: not a shipped template ({', '.join(SHIPPED)}) nor a file"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"extraction_prompt: {spec!r}: cannot read: {err}") from None
    if not text.strip():
        raise ConfigError(f"extraction_prompt: {spec!r}: the file is empty")
    return ExtractionPrompt(str(path), text)
