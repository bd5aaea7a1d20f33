"""Dollars from token usage: chat models via genai-prices, embeddings from the scenario.

genai-prices ships its price data inside the package (no network). Prices are
looked up once per run at the scenario's ``pricing.price_date`` so that a run is
reproducible whatever day it is executed; explicit per-million overrides in the
scenario win over the lookup. Embedding models are not in genai-prices, so their
price is always the scenario's ``embedding.usd_per_million_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal

from genai_prices import Usage, calc_price
from genai_prices import __version__ as genai_prices_version
from genai_prices.types import PriceCalculation, TieredPrices

from sim.config import ConfigError, Scenario
from sim.prompt_cache import cache_rule

MILLION = 1_000_000


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per token for one model, and where the figures came from.

    ``cache_read_usd_per_token`` bills input tokens served from the prompt cache,
    ``cache_write_usd_per_token`` input tokens written to it (Anthropic; the
    5-minute or the 1-hour price, whichever the run's cache writes). ``tiers`` are
    the prices of calls with more input tokens than a threshold, as
    ``((threshold, Rates), ...)`` ascending: genai-prices' "cliff" tiers, where a
    call over the threshold pays the tier's price for all its tokens.
    """

    model: str
    input_usd_per_token: float
    output_usd_per_token: float
    source: str
    cache_read_usd_per_token: float | None = None
    cache_write_usd_per_token: float | None = None
    tiers: tuple[tuple[int, Rates], ...] = ()

    def usd(self, tokens_in: int, tokens_out: int, cached: int = 0, written: int = 0) -> float:
        """Price of one call of ``tokens_in`` input tokens (``cached`` and ``written`` included)."""
        rates = self
        if self.tiers and tokens_in > self.tiers[0][0]:
            rates = next(r for threshold, r in reversed(self.tiers) if tokens_in > threshold)
        usd = tokens_in * rates.input_usd_per_token + tokens_out * rates.output_usd_per_token
        if cached:
            usd += cached * (rates.cache_read_usd_per_token - rates.input_usd_per_token)
        if written:
            usd += written * (rates.cache_write_usd_per_token - rates.input_usd_per_token)
        return usd


CALIBRATION_TOKENS = 1_000
"""Tokens of each probe usage the per-token rates are read from (below every tier)."""


def _calc(model: str, provider: str, when: datetime, **usage: int) -> Decimal:
    """genai-prices' total for one usage (the same lookup every rate comes from)."""
    calc = calc_price(Usage(**usage), model, provider_id=provider, genai_request_timestamp=when)
    return calc.total_price


def _tier_thresholds(calc: PriceCalculation) -> list[int]:
    """Input-token thresholds of the model's tiered prices (empty for flat prices)."""
    starts = set()
    for value in vars(calc.model_price).values():
        if isinstance(value, TieredPrices):
            starts.update(tier.start for tier in value.tiers)
    return sorted(starts)


def _rates_at(
    model: str, provider: str, when: datetime, tokens: int, write_ttl: str, source: str
) -> Rates:
    """Per-token rates of calls with ``tokens`` input tokens, read back from genai-prices.

    Each rate is genai-prices' price of a probe usage divided by its tokens, so
    every fallback genai-prices applies (a model without a cache-write price bills
    written tokens as input) holds here too. ``input_tokens`` counts every input
    token, cached and written ones included.
    """

    def per_token(**usage: int) -> float:
        # Through the price per million, as genai-prices states it: the float is then
        # the one ``price_per_million / 1e6`` gives.
        total = _calc(model, provider, when, input_tokens=tokens, **usage)
        return float(total * MILLION / tokens) / MILLION

    write = {"cache_write_tokens": tokens}
    if write_ttl == "1h":
        write["cache_write_1h_tokens"] = tokens
    input_rate = per_token()
    return Rates(
        model,
        input_rate,
        float(
            _calc(model, provider, when, input_tokens=tokens, output_tokens=MILLION)
            - _calc(model, provider, when, input_tokens=tokens)
        )
        / MILLION,
        source,
        per_token(cache_read_tokens=tokens),
        per_token(**write),
    )


def chat_rates(model: str, provider: str, price_date: str, write_ttl: str = "5m") -> Rates:
    """Per-token prices of a chat model from genai-prices at ``price_date`` (YYYY-MM-DD).

    ``write_ttl`` (``5m`` or ``1h``) picks the cache-write price, for providers that
    charge for writes.
    """
    try:
        when = datetime.fromisoformat(price_date).replace(tzinfo=UTC)
    except ValueError:
        raise ConfigError(
            f"field 'pricing.price_date' = {price_date!r}: not a YYYY-MM-DD date"
        ) from None
    try:
        calc = calc_price(
            Usage(input_tokens=CALIBRATION_TOKENS, output_tokens=CALIBRATION_TOKENS),
            model,
            provider_id=provider,
            genai_request_timestamp=when,
        )
    except LookupError as err:
        raise ConfigError(
            f"field 'llm.model' = {model!r}: no price in genai-prices ({err})"
        ) from None
    provider_id, model_id = calc.provider.id, calc.model.id
    source = f"genai-prices {genai_prices_version}, {provider_id}/{model_id} at {price_date}"
    base = _rates_at(model, provider, when, CALIBRATION_TOKENS, write_ttl, source)
    tiers = tuple(
        (start, _rates_at(model, provider, when, start + 1, write_ttl, source))
        for start in _tier_thresholds(calc)
    )
    return replace(base, tiers=tiers)


def _per_token(per_million: float | None, fallback: float) -> float:
    return fallback if per_million is None else per_million / MILLION


def scenario_rates(scenario: Scenario) -> tuple[Rates, Rates]:
    """The chat and embedding rates a scenario bills with.

    An input-price override keeps genai-prices' ratios of the cache prices to the
    input price (a model whose cached tokens cost half keeps costing half).
    """
    try:
        rule = cache_rule(scenario.llm)
    except ValueError as err:
        raise ConfigError(f"field 'llm.cache.retention': {err}") from None
    write_ttl = rule.write_ttl if rule is not None and rule.write_ttl else "5m"
    chat = chat_rates(
        scenario.llm.model, scenario.llm.provider, scenario.pricing.price_date, write_ttl
    )
    p = scenario.pricing
    if p.input_usd_per_million_tokens is not None or p.output_usd_per_million_tokens is not None:
        base_input = chat.input_usd_per_token
        input_rate = _per_token(p.input_usd_per_million_tokens, base_input)
        scale = input_rate / base_input if base_input else 0.0
        chat = Rates(
            chat.model,
            input_rate,
            _per_token(p.output_usd_per_million_tokens, chat.output_usd_per_token),
            "scenario pricing override",
            (chat.cache_read_usd_per_token or 0.0) * scale,
            (chat.cache_write_usd_per_token or 0.0) * scale,
        )
    emb = scenario.embedding
    embedding = Rates(
        emb.model,
        emb.usd_per_million_tokens / MILLION,
        0.0,
        "scenario embedding.usd_per_million_tokens",
    )
    return chat, embedding
