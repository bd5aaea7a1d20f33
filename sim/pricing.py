"""Dollars from token usage: chat models via genai-prices, embeddings from the scenario.

genai-prices ships its price data inside the package (no network). Prices are
looked up once per run at the scenario's ``pricing.price_date`` so that a run is
reproducible whatever day it is executed; explicit per-million overrides in the
scenario win over the lookup. Embedding models are not in genai-prices, so their
price is always the scenario's ``embedding.usd_per_million_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from genai_prices import Usage, calc_price
from genai_prices import __version__ as genai_prices_version

from sim.config import ConfigError, Scenario

MILLION = 1_000_000


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per token for one model, and where the figures came from."""

    model: str
    input_usd_per_token: float
    output_usd_per_token: float
    source: str

    def usd(self, tokens_in: int, tokens_out: int) -> float:
        """Price of one call."""
        return tokens_in * self.input_usd_per_token + tokens_out * self.output_usd_per_token


def chat_rates(model: str, provider: str, price_date: str) -> Rates:
    """Per-token prices of a chat model from genai-prices at ``price_date`` (YYYY-MM-DD)."""
    try:
        when = datetime.fromisoformat(price_date).replace(tzinfo=UTC)
    except ValueError:
        raise ConfigError(
            f"field 'pricing.price_date' = {price_date!r}: not a YYYY-MM-DD date"
        ) from None
    try:
        calc = calc_price(
            Usage(input_tokens=MILLION, output_tokens=MILLION),
            model,
            provider_id=provider,
            genai_request_timestamp=when,
        )
    except LookupError as err:
        raise ConfigError(
            f"field 'llm.model' = {model!r}: no price in genai-prices ({err})"
        ) from None
    source = (
        f"genai-prices {genai_prices_version}, {calc.provider.id}/{calc.model.id} at {price_date}"
    )
    return Rates(
        model, float(calc.input_price) / MILLION, float(calc.output_price) / MILLION, source
    )


def _per_token(per_million: float | None, fallback: float) -> float:
    return fallback if per_million is None else per_million / MILLION


def scenario_rates(scenario: Scenario) -> tuple[Rates, Rates]:
    """The chat and embedding rates a scenario bills with."""
    chat = chat_rates(scenario.llm.model, scenario.llm.provider, scenario.pricing.price_date)
    p = scenario.pricing
    if p.input_usd_per_million_tokens is not None or p.output_usd_per_million_tokens is not None:
        chat = Rates(
            chat.model,
            _per_token(p.input_usd_per_million_tokens, chat.input_usd_per_token),
            _per_token(p.output_usd_per_million_tokens, chat.output_usd_per_token),
            "scenario pricing override",
        )
    emb = scenario.embedding
    embedding = Rates(
        emb.model,
        emb.usd_per_million_tokens / MILLION,
        0.0,
        "scenario embedding.usd_per_million_tokens",
    )
    return chat, embedding
