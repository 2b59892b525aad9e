"""Service tiers and long-context tiers priced as the bill has them.

Expected costs are worked out by hand from the providers' published prices (per million
tokens, checked 2026-11-30), never from genai-prices:
- claude-sonnet-4-5: input $3.00, cache read $0.30, cache write $3.75, output $15.00; past
  200k input tokens $6.00, $0.60, $7.50, $22.50. Batch: half.
- gpt-5.4: input $2.50, cached input $0.25, output $15.00; past 272k input tokens $5.00,
  $0.50, $22.50.
- gemini-2.5-pro: input $1.25, cached input $0.125, output $10.00; past 200k input tokens
  $2.50, $0.25, $15.00. Batch: half.
- o3 flex: half of $2.00 input, $0.50 cached input, $8.00 output.
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from aethermind.semconv import PriceBook, PriceOverride, UsageRecord, normalize
from aethermind.semconv.tiers import normalize_tier, rule_for, tier_rules

MICRO = Decimal("0.000001")
NOW = time.time_ns()


def cost(record: UsageRecord, *overrides: PriceOverride) -> Decimal:
    total = PriceBook().price(record, NOW, overrides=overrides).total
    assert total is not None
    return total


def test_every_packaged_rule_has_a_source_and_a_date_and_one_kind_of_price() -> None:
    rules = tier_rules()
    assert rules
    for rule in rules:
        assert rule.source.startswith("https://") and rule.date
        assert (rule.multiplier is None) != (rule.rates is None)
    assert rule_for("openai", "gpt-4o-2024-08-06", "batch") is not None
    assert rule_for("openai", "gpt-4o", "flex") is None  # flex is not offered for gpt-4o


@pytest.mark.parametrize(
    ("value", "stored"),
    [("default", None), ("standard", None), ("auto", None), ("Priority", "priority"),
     ("flex", "flex"), ("batch", "batch"), ("", None), (3, None)],
)  # fmt: skip
def test_tier_names(value: object, stored: str | None) -> None:
    assert normalize_tier(value) == stored


def test_the_tier_is_read_from_the_response_before_the_request() -> None:
    attrs = {
        "gen_ai.system": "openai", "gen_ai.request.model": "o3",
        "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5,
        "gen_ai.openai.request.service_tier": "auto", "openai.response.service_tier": "flex",
    }  # fmt: skip
    record = normalize(attrs)
    assert record is not None and record.service_tier == "flex"
    # o3 flex: (10 x 1.00 + 5 x 4.00) micro-dollars
    assert cost(record) == Decimal(30) * MICRO


def test_anthropic_batch_is_half_and_an_organizations_tier_price_wins() -> None:
    record = UsageRecord(
        provider="anthropic", request_model="claude-sonnet-4-5", input_tokens=12_000,
        cache_read_tokens=8_000, cache_write_tokens=1_000, output_tokens=900,
        service_tier="batch",
    )  # fmt: skip
    # (3,000 x 3 + 8,000 x 0.30 + 1,000 x 3.75 + 900 x 15) / 2
    assert cost(record) == Decimal("14325") * MICRO
    negotiated = PriceOverride("claude-sonnet-4-5*", Decimal(2), Decimal(10))
    # A standard-tier override is the base the batch rule halves: (12,000 x 2 + 900 x 10) / 2
    assert cost(record, negotiated) == Decimal("16500") * MICRO
    batch_price = PriceOverride("claude-sonnet-4-5*", Decimal(1), Decimal(4), service_tier="batch")
    # The organization's batch price replaces rule and base: 12,000 x 1 + 900 x 4
    assert cost(record, negotiated, batch_price) == Decimal("15600") * MICRO
    record.service_tier = None
    assert cost(record, negotiated, batch_price) == Decimal("33000") * MICRO


def test_a_tier_no_rule_covers_is_priced_as_standard() -> None:
    record = UsageRecord(provider="anthropic", request_model="claude-sonnet-4-5",
                         input_tokens=1000, output_tokens=100, service_tier="priority")  # fmt: skip
    assert cost(record) == Decimal(1000 * 3 + 100 * 15) * MICRO


@pytest.mark.parametrize(
    ("provider", "model", "threshold", "below", "above"),
    [
        # (input, cached input, output) per million tokens, standard and long context
        ("anthropic", "claude-sonnet-4-5", 200_000, ("3", "0.30", "15"), ("6", "0.60", "22.5")),
        ("openai", "gpt-5.4", 272_000, ("2.5", "0.25", "15"), ("5", "0.50", "22.5")),
        ("google", "gemini-2.5-pro", 200_000, ("1.25", "0.125", "10"), ("2.5", "0.25", "15")),
    ],
)
def test_long_prompts_cross_into_the_long_context_rates(
    provider: str,
    model: str,
    threshold: int,
    below: tuple[str, str, str],
    above: tuple[str, str, str],
) -> None:
    """What normalize reads from a span triggers genai-prices' tiers: input counted with the
    cache inside, as the providers' thresholds count it."""
    cached, output = 50_000, 2_000
    for inputs, rates in ((threshold, below), (threshold + 1, above)):
        attrs = {
            "gen_ai.provider.name": provider, "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": inputs, "gen_ai.usage.output_tokens": output,
            "gen_ai.usage.cache_read.input_tokens": cached,
        }  # fmt: skip
        record = normalize(attrs)
        assert record is not None
        rate_in, rate_cached, rate_out = (Decimal(r) for r in rates)
        want = (inputs - cached) * rate_in + cached * rate_cached + output * rate_out
        assert cost(record) == want * MICRO, (model, inputs)
