"""Pricing: the cached rate cards must give exactly what genai-prices' own calc_price gives."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from genai_prices import Usage, calc_price
from hypothesis import given, settings
from hypothesis import strategies as st

from aethermind.semconv import PriceBook, PriceOverride, UsageRecord

# A fixed moment, so the prices these tests expect cannot drift with the calendar.
AT = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
AT_NS = int(AT.timestamp()) * 1_000_000_000

MODELS = [
    ("openai", "gpt-4o"),
    ("openai", "o3-mini"),
    ("anthropic", "claude-sonnet-4-5"),  # tiered above 200k input tokens
    ("anthropic", "claude-opus-4-1"),
    ("gcp.gemini", "gemini-2.5-pro"),  # tiered
    ("deepseek", "deepseek-chat"),  # has time-of-day prices in some periods
    ("aws.bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0"),
]


@st.composite
def usages(draw: st.DrawFn) -> tuple[int, int, int, int, int, int]:
    inputs = draw(st.integers(0, 600_000))
    cache_read = draw(st.integers(0, inputs))
    cache_write = draw(st.integers(0, inputs - cache_read))
    write_1h = draw(st.integers(0, cache_write))
    output = draw(st.integers(0, 50_000))
    reasoning = draw(st.integers(0, output))
    return inputs, cache_read, cache_write, write_1h, output, reasoning


@settings(max_examples=300, deadline=None)
@given(model=st.sampled_from(MODELS), usage=usages(), hour=st.integers(0, 23))
def test_cached_price_equals_genai_prices_calc_price(
    model: tuple[str, str], usage: tuple[int, int, int, int, int, int], hour: int
) -> None:
    provider, name = model
    inputs, cache_read, cache_write, write_1h, output, reasoning = usage
    at = AT.replace(hour=hour)
    book = PriceBook()
    record = UsageRecord(
        provider=provider,
        request_model=name,
        input_tokens=inputs,
        output_tokens=output,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=write_1h,
        reasoning_tokens=reasoning,
    )
    cost = book.price(record, int(at.timestamp()) * 1_000_000_000)
    assert cost.source == "computed"
    expected = calc_price(
        Usage(
            input_tokens=inputs,
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
            cache_write_1h_tokens=write_1h,
            output_tokens=output,
            output_reasoning_tokens=reasoning,
        ),
        name,
        provider_id=cost.provider_id,
        genai_request_timestamp=at,
    )
    assert cost.total == expected.total_price
    assert cost.input + cost.cache_read + cost.cache_write == expected.input_price  # type: ignore[operator]
    assert cost.output == expected.output_price
    assert cost.price_model_id == expected.model.id


def test_gpt_4o_with_cached_input_at_published_prices() -> None:
    # OpenAI's published gpt-4o prices (checked 2026-11-01): $2.50 / MTok input,
    # $1.25 / MTok cached input, $10.00 / MTok output.
    record = UsageRecord(
        provider="openai",
        request_model="gpt-4o",
        input_tokens=1200,
        cache_read_tokens=400,
        output_tokens=300,
    )
    cost = PriceBook().price(record, AT_NS)
    assert cost.input == Decimal("800") * Decimal("2.50") / 1_000_000
    assert cost.cache_read == Decimal("400") * Decimal("1.25") / 1_000_000
    assert cost.output == Decimal("300") * Decimal("10.00") / 1_000_000
    assert cost.total == Decimal("0.0055")
    assert (cost.source, cost.price_model_id, cost.provider_id) == ("computed", "gpt-4o", "openai")


def test_anthropic_cache_lifetimes_priced_differently() -> None:
    # Anthropic's published Claude Sonnet 4.5 prices (checked 2026-11-01), per MTok:
    # input $3, cache read $0.30, 5-minute cache write $3.75, 1-hour cache write $6, output $15.
    record = UsageRecord(
        provider="anthropic",
        request_model="claude-sonnet-4-5",
        input_tokens=900 + 2000 + 500,
        cache_read_tokens=2000,
        cache_write_tokens=500,
        cache_write_5m_tokens=300,
        cache_write_1h_tokens=200,
        output_tokens=250,
    )
    cost = PriceBook().price(record, AT_NS)
    per_mtok = Decimal(1_000_000)
    assert cost.input == 900 * Decimal(3) / per_mtok
    assert cost.cache_read == 2000 * Decimal("0.30") / per_mtok
    assert cost.cache_write == (300 * Decimal("3.75") + 200 * Decimal(6)) / per_mtok
    assert cost.output == 250 * Decimal(15) / per_mtok
    assert cost.total == Decimal("0.009375")  # 2700 + 600 + 2325 + 3750 micro-dollars


def test_provider_prefixed_model_names_resolve() -> None:
    book = PriceBook()
    plain = book.price(
        UsageRecord(provider="openai", request_model="gpt-4o", input_tokens=10), AT_NS
    )
    prefixed = book.price(UsageRecord(request_model="openai/gpt-4o", input_tokens=10), AT_NS)
    claude = book.price(
        UsageRecord(
            provider="litellm", request_model="anthropic/claude-sonnet-4-5", input_tokens=10
        ),
        AT_NS,
    )
    assert prefixed.total == plain.total
    assert prefixed.price_model_id == "gpt-4o"
    assert claude.price_model_id == "claude-sonnet-4-5"


def test_unknown_model_is_unpriced_never_zero() -> None:
    record = UsageRecord(provider="openai", request_model="my-private-finetune", input_tokens=100)
    cost = PriceBook().price(record, AT_NS)
    assert cost.source == "unknown"
    assert cost.total is None


def test_provided_cost_used_only_when_we_cannot_compute() -> None:
    book = PriceBook()
    unknown = UsageRecord(
        request_model="house-model", input_tokens=5, provided_cost=Decimal("0.42")
    )
    known = UsageRecord(
        provider="openai", request_model="gpt-4o", input_tokens=1000, provided_cost=Decimal("9")
    )
    assert (book.price(unknown, AT_NS).source, book.price(unknown, AT_NS).total) == (
        "provided",
        Decimal("0.42"),
    )
    assert book.price(known, AT_NS).source == "computed"
    assert book.price(known, AT_NS).total == Decimal("0.0025")


def test_history_is_priced_at_the_price_of_its_day() -> None:
    # Whatever the price history holds, a span is priced as calc_price prices its own moment.
    book = PriceBook()
    record = UsageRecord(provider="openai", request_model="gpt-4o", input_tokens=1_000_000)
    for moment in (datetime(2024, 6, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)):
        ns = int(moment.timestamp()) * 1_000_000_000
        expected = calc_price(
            Usage(input_tokens=1_000_000),
            "gpt-4o",
            provider_id="openai",
            genai_request_timestamp=moment,
        )
        assert book.price(record, ns).total == expected.total_price


def test_organization_override_wins_for_matching_models_from_its_date() -> None:
    override = PriceOverride(
        model_pattern="ft:gpt-4o*",
        input_per_mtok=Decimal("3.75"),
        output_per_mtok=Decimal("15"),
        cache_read_per_mtok=Decimal("1.875"),
        valid_from=datetime(2026, 10, 1, tzinfo=UTC),
    )
    record = UsageRecord(
        provider="openai",
        request_model="ft:gpt-4o-2024-08-06:acme::abc123",
        input_tokens=2000,
        cache_read_tokens=1000,
        output_tokens=100,
    )
    book = PriceBook()
    cost = book.price(record, AT_NS, overrides=[override])
    assert cost.source == "computed"
    assert cost.price_model_id == "override:ft:gpt-4o*"
    assert cost.total == (
        1000 * Decimal("3.75") + 1000 * Decimal("1.875") + 100 * Decimal(15)
    ) / Decimal(1_000_000)
    before = int(datetime(2026, 9, 1, tzinfo=UTC).timestamp()) * 1_000_000_000
    assert book.price(record, before, overrides=[override]).price_model_id != "override:ft:gpt-4o*"


def test_an_override_for_one_provider_leaves_the_same_model_from_another_alone() -> None:
    override = PriceOverride(
        model_pattern="llama-3.1-70b*",
        input_per_mtok=Decimal("0.5"),
        output_per_mtok=Decimal("0.75"),
        provider="groq",
    )
    book = PriceBook()

    def priced_by(provider: str) -> str | None:
        record = UsageRecord(
            provider=provider, request_model="llama-3.1-70b-versatile",
            input_tokens=1000, output_tokens=100,
        )  # fmt: skip
        return book.price(record, AT_NS, overrides=[override]).price_model_id

    assert priced_by("groq") == "override:llama-3.1-70b*"
    assert priced_by("GROQ") == "override:llama-3.1-70b*"
    assert priced_by("together") != "override:llama-3.1-70b*"
    # genai-prices' names for one provider are one provider.
    azure = PriceOverride(
        model_pattern="my-deployment", input_per_mtok=Decimal(1), output_per_mtok=Decimal(2),
        provider="azure",
    )  # fmt: skip
    record = UsageRecord(
        provider="azure.ai.openai", request_model="my-deployment", input_tokens=10, output_tokens=1
    )
    assert book.price(record, AT_NS, overrides=[azure]).price_model_id == "override:my-deployment"


def test_an_override_missing_a_token_price_leaves_its_models_unpriced_never_free() -> None:
    override = PriceOverride(
        model_pattern="house-model", input_per_mtok=None, output_per_mtok=Decimal("2")
    )
    record = UsageRecord(
        provider="openai", request_model="house-model", input_tokens=1000, output_tokens=100
    )
    cost = PriceBook().price(record, AT_NS, overrides=[override])
    assert cost.total is None and cost.source == "unknown"


def test_agent_spans_are_not_priced_as_model_calls() -> None:
    record = UsageRecord(operation="invoke_agent", request_model="gpt-4o", is_llm_call=False)
    assert PriceBook().price(record, AT_NS).source == "unknown"


def test_model_patterns_match_in_one_scan_with_star_wildcards_only() -> None:
    from aethermind.semconv.pricing_patterns import check_model_pattern, pattern_matches

    assert pattern_matches("gpt-4o", "GPT-4o") and not pattern_matches("gpt-4o", "gpt-4o-mini")
    assert pattern_matches("ft:gpt-4o*", "ft:gpt-4o-2024-08-06:acme::x")
    assert pattern_matches("*-mini", "gpt-4o-mini") and not pattern_matches("*-mini", "mini-x")
    assert pattern_matches("*llama*", "meta-llama-3.1") and not pattern_matches("*llama*", "lla")
    assert pattern_matches("a*b*c", "a-b-c") and not pattern_matches("a*b*c", "a-c-b")
    assert not pattern_matches("ab*ba", "aba")  # the pieces may not overlap
    for bad in ("gpt-?", "gpt-[45]o", "*a*b*c*", "", "x" * 201):
        with pytest.raises(ValueError):
            check_model_pattern(bad)
    # A hostile model name is scanned, not backtracked over.
    assert not pattern_matches("*a*b", "a" * 100_000)


def test_a_lookup_budget_bounds_new_names_not_known_ones() -> None:
    from aethermind.semconv.pricing import LookupBudget

    now = [0.0]
    budget = LookupBudget(burst=2, per_second=1.0, clock=lambda: now[0])
    book = PriceBook()

    def cost(model: str) -> Any:
        record = UsageRecord(
            provider="openai", operation="chat", request_model=model,
            input_tokens=1000, output_tokens=100,
        )  # fmt: skip
        return book.price(record, 1_764_000_000 * 10**9, lookups=budget).total

    assert cost("gpt-4o") is not None  # a lookup, within the burst
    assert cost("house-model-1") is None  # a lookup (not in genai-prices), within the burst
    assert cost("gpt-4o-mini") is None and budget.refused == 1  # over: unpriced for now
    assert cost("gpt-4o") is not None  # known names cost nothing and are always priced
    now[0] += 1.0
    assert cost("gpt-4o-mini") is not None  # the bucket refilled
