"""Usage priced at rates of its own: audio, image and video tokens, and per-call fees.

A span's modality tokens are a part of the token counts it names (input audio tokens are
input tokens, cached ones cache reads too); genai-prices prices each part at its modality's
rate when the model has one. Without one it falls back to the text rate, which for audio is
wrong by an order of magnitude (an audio model whose audio rates it lacks would look 10x
cheaper than its bill), so a span reporting audio tokens its model has no audio rate for is
left unpriced instead. Image and video tokens without rates of their own are billed as
ordinary input and output tokens by the providers that report them (Gemini, OpenAI's vision
models), so they stay in the text lines. A server-tool call (web search, ...) without a known
fee leaves the call unpriced: an unknown price is never $0.

The arithmetic is genai-prices' own (tests check it equals ``calc_price``), applied to rates
read off the model's price, so a span with units costs a few multiplications like any other.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Literal

from genai_prices.types import ModelPrice, TieredPrices

from aethermind.semconv.record import Cost, UsageRecord

Bucket = Literal["input", "cache_read", "output", "fee"]


@dataclass(frozen=True, slots=True)
class UnitPrice:
    """Where one usage unit is billed: genai-prices' price key, its divisor, the token count
    it is part of (``fee`` for per-call units), and whether the text rate may stand in."""

    price_key: str
    per: int
    bucket: Bucket
    text_rate_applies: bool


_MTOK: Final = 1_000_000
_KCOUNT: Final = 1000
UNIT_PRICES: Final[dict[str, UnitPrice]] = {
    "input_audio_tokens": UnitPrice("input_audio_mtok", _MTOK, "input", False),
    "cache_audio_read_tokens": UnitPrice("cache_audio_read_mtok", _MTOK, "cache_read", False),
    "output_audio_tokens": UnitPrice("output_audio_mtok", _MTOK, "output", False),
    "input_image_tokens": UnitPrice("input_image_mtok", _MTOK, "input", True),
    "cache_image_read_tokens": UnitPrice("cache_image_read_mtok", _MTOK, "cache_read", True),
    "output_image_tokens": UnitPrice("output_image_mtok", _MTOK, "output", True),
    "input_video_tokens": UnitPrice("input_video_mtok", _MTOK, "input", True),
    "output_video_tokens": UnitPrice("output_video_mtok", _MTOK, "output", True),
    "web_searches": UnitPrice("web_searches_kcount", _KCOUNT, "fee", False),
    "code_executions": UnitPrice("code_executions_kcount", _KCOUNT, "fee", False),
    "storage_searches": UnitPrice("storage_searches_kcount", _KCOUNT, "fee", False),
}
"""Every unit of ``attributes.UNIT_KEYS``, by genai-prices usage key (a test keeps the two
and genai-prices' unit registry in step)."""
_CACHED_PART: Final = {
    "input_audio_tokens": "cache_audio_read_tokens",
    "input_image_tokens": "cache_image_read_tokens",
}
"""Input units whose cached part is reported on its own (and priced at its own rate)."""


def rate(price: ModelPrice, price_key: str, input_tokens: int) -> Decimal | None:
    """The model's price for ``price_key`` at a prompt of ``input_tokens`` (genai-prices'
    tier rule: the highest tier whose start the input tokens exceed), None if it has none."""
    value = getattr(price, price_key, None)
    if value is None:
        return None
    if isinstance(value, TieredPrices):
        for tier in reversed(value.tiers):
            if input_tokens > tier.start:
                return tier.price
        return value.base
    return value if isinstance(value, Decimal) else Decimal(str(value))


def split_units(
    price: ModelPrice, record: UsageRecord, billed_at_most: Mapping[str, int]
) -> tuple[UsageRecord, Decimal, Decimal] | None:
    """``record``'s text part (its counts less the units billed at their own rates), the
    cost of its modality units and of its per-call fees (each at most ``billed_at_most``
    per call where the model's provider bills per call: ``billed_counts``); None when a
    unit it reports has no rate and the text rate may not stand in (the call is then
    unpriced)."""
    units = record.units or {}
    inputs = record.input_tokens or 0
    text = copy.copy(record)
    text.units = None
    own: dict[str, tuple[int, Decimal]] = {}
    modality = fees = Decimal(0)
    for unit, count in units.items():
        spec = UNIT_PRICES.get(unit)
        if spec is None or count <= 0:
            continue
        unit_rate = rate(price, spec.price_key, inputs)
        if unit_rate is None:
            if spec.text_rate_applies:
                continue
            return None
        if spec.bucket == "fee":
            fees += min(count, billed_at_most.get(unit, count)) * unit_rate / spec.per
            continue
        own[unit] = (count, unit_rate)
    for unit, (reported, unit_rate) in own.items():
        spec = UNIT_PRICES[unit]
        part = _take(text, spec.bucket, reported)
        cached = _CACHED_PART.get(unit)
        if cached is not None and cached in own:
            part -= min(own[cached][0], part)  # the cached part is priced on its own
        elif cached is not None and units.get(cached, 0) > 0:
            return None  # cached audio reported, no rate for it: genai-prices refuses too
        modality += part * unit_rate / spec.per
    return text, modality, fees


def _take(text: UsageRecord, bucket: Bucket, count: int) -> int:
    """Take ``count`` tokens (at most what there is) out of ``text``'s ``bucket``; how many."""
    if bucket == "input":
        available = text.input_tokens or 0
        taken = min(count, available)
        text.input_tokens = available - taken
    elif bucket == "cache_read":
        available = text.cache_read_tokens or 0
        taken = min(count, available)
        text.cache_read_tokens = available - taken
    else:
        available = text.output_tokens or 0
        taken = min(count, available)
        text.output_tokens = available - taken
        if text.reasoning_tokens is not None:
            text.reasoning_tokens = min(text.reasoning_tokens, text.output_tokens)
    return taken


def with_units(text_cost: Cost, modality: Decimal, fees: Decimal) -> Cost:
    """The cost of a record's text part (``split_units``) with its units added."""
    assert text_cost.total is not None
    return Cost(
        text_cost.source,
        text_cost.total + modality + fees,
        text_cost.input,
        text_cost.cache_read,
        text_cost.cache_write,
        text_cost.output,
        text_cost.price_model_id,
        text_cost.provider_id,
        modality,
        (text_cost.fees or Decimal(0)) + fees,
        None,
        text_cost.saved_by_cache,
    )
