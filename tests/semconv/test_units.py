"""Usage billed at rates of its own (semconv/pricing_units.py): the same totals as
genai-prices' own ``calc_price``, split into lines; audio never at the text rate; fees per
call; costs of spans that are not model calls; and the bounded cache the normalizer reads
spans through."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from genai_prices import Usage, calc_price
from genai_prices.units import _get_registry  # the registry's keys, to keep ours in step

from aethermind.semconv import attributes as a
from aethermind.semconv import default_price_book, normalize
from aethermind.semconv.pricing_units import UNIT_PRICES
from aethermind.semconv.record import UsageRecord

AT = datetime(2026, 11, 1, 12, tzinfo=UTC)
AT_NS = int(AT.timestamp()) * 1_000_000_000
MICRO = Decimal("0.000001")


def test_every_unit_is_genai_prices_own() -> None:
    registry = _get_registry()
    assert set(UNIT_PRICES) == set(a.UNIT_KEYS)
    for unit, spec in UNIT_PRICES.items():
        definition = registry.unit_for_price_key(spec.price_key)
        assert (definition.usage_key, definition.per) == (unit, spec.per)
    assert a.MODALITY_UNITS | a.FEE_UNITS == set(a.UNIT_KEYS)


CASES: list[tuple[str, str, dict[str, int]]] = [
    ("openai", "gpt-audio", {"input_tokens": 1200, "input_audio_tokens": 700,
                             "output_tokens": 300, "output_audio_tokens": 200}),
    ("openai", "gpt-realtime", {"input_tokens": 5000, "input_audio_tokens": 2000,
                                "cache_read_tokens": 1500, "cache_audio_read_tokens": 600,
                                "input_image_tokens": 400, "cache_image_read_tokens": 0,
                                "output_tokens": 900,
                                "output_audio_tokens": 500}),
    ("google", "gemini-2.5-flash", {"input_tokens": 1000, "input_audio_tokens": 400,
                                    "cache_read_tokens": 300, "cache_audio_read_tokens": 100,
                                    "output_tokens": 100, "web_searches": 1}),
    ("google", "gemini-2.5-flash", {"input_tokens": 1000, "input_image_tokens": 500,
                                    "input_video_tokens": 200, "output_tokens": 100}),
    ("anthropic", "claude-sonnet-4-5", {"input_tokens": 3400, "cache_read_tokens": 2000,
                                        "cache_write_tokens": 500, "output_tokens": 250,
                                        "web_searches": 4}),
    ("openai", "gpt-4o", {"input_tokens": 1200, "output_tokens": 300, "web_searches": 1}),
]  # fmt: skip


@pytest.mark.parametrize(("provider", "model", "usage"), CASES)
def test_the_total_is_genai_prices_own(provider: str, model: str, usage: dict[str, int]) -> None:
    base_keys = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
    record = UsageRecord(
        provider=provider,
        request_model=model,
        input_tokens=usage["input_tokens"],
        output_tokens=usage["output_tokens"],
        cache_read_tokens=usage.get("cache_read_tokens"),
        cache_write_tokens=usage.get("cache_write_tokens"),
        units={k: v for k, v in usage.items() if k not in base_keys},
    )
    cost = default_price_book().price(record, AT_NS)
    expected = calc_price(
        Usage(**usage), model, provider_id=provider, genai_request_timestamp=AT
    ).total_price
    assert cost.source == "computed" and cost.total == expected
    lines = [cost.input, cost.cache_read, cost.cache_write, cost.output, cost.modality, cost.fees]
    assert sum(line or 0 for line in lines) == cost.total


def test_lines_by_hand_from_the_published_prices() -> None:
    """gemini-2.5-flash: text $0.30, audio $1.00, cached text $0.03, cached audio $0.10,
    output $2.50 per million; grounding with search $35 per 1,000 grounded prompts."""
    record = UsageRecord(
        provider="google", request_model="gemini-2.5-flash", input_tokens=1000,
        cache_read_tokens=300, output_tokens=100,
        units={"input_audio_tokens": 400, "cache_audio_read_tokens": 100, "web_searches": 2},
    )  # fmt: skip
    cost = default_price_book().price(record, AT_NS)
    # Uncached text: 1000 - 400 audio - (300 - 100) cached text = 400.
    assert cost.input == 400 * Decimal("0.30") * MICRO
    assert cost.cache_read == 200 * Decimal("0.03") * MICRO
    assert cost.output == 100 * Decimal("2.50") * MICRO
    assert cost.modality == (300 * Decimal("1.00") + 100 * Decimal("0.10")) * MICRO
    assert cost.fees == Decimal("0.035")  # one grounded prompt, however many searches
    # Saved: the 200 cached text tokens at $0.30 instead of $0.03.
    assert cost.saved_by_cache == 200 * Decimal("0.27") * MICRO


def pydantic_ai_grounded(model: str, queries: int, provider: str) -> dict[str, Any]:
    """A pydantic-ai Gemini call with Google Search grounding, as its spans carry it: the
    unique queries the model ran in ``gen_ai.usage.details.web_search_requests``."""
    return {"gen_ai.operation.name": "chat", "gen_ai.system": provider,
            "gen_ai.provider.name": provider, "gen_ai.request.model": model,
            "gen_ai.response.model": model, "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 100,
            "gen_ai.usage.details.web_search_requests": queries}  # fmt: skip


@pytest.mark.parametrize("provider", ["google", "google-cloud", "google-gla", "google-vertex"])
def test_gemini_grounding_is_billed_as_google_bills_it(provider: str) -> None:
    """Published prices: Gemini 2.5 Flash bills grounding with Google Search $35 per 1,000
    grounded prompts (one a call, however many queries it ran); Gemini 3 Flash $14 per 1,000
    search queries. Text: 2.5 Flash $0.30 in / $2.50 out, 3 Flash $0.50 / $3.00 per million."""
    book = default_price_book()
    flash_25 = normalize(pydantic_ai_grounded("gemini-2.5-flash", 3, provider))
    assert flash_25 is not None and flash_25.units == {"web_searches": 3}  # stored as reported
    cost = book.price(flash_25, AT_NS)
    assert cost.fees == Decimal("0.035")
    assert cost.total == (1000 * Decimal("0.30") + 100 * Decimal("2.50")) * MICRO + cost.fees
    flash_3 = normalize(pydantic_ai_grounded("gemini-3-flash-preview", 3, provider))
    assert flash_3 is not None
    cost = book.price(flash_3, AT_NS)
    assert cost.fees == 3 * Decimal("0.014")
    assert cost.total == (1000 * Decimal("0.50") + 100 * Decimal("3.00")) * MICRO + cost.fees


def test_billed_count_rules_are_sourced_and_match_genai_prices_models() -> None:
    from aethermind.semconv.billed_counts import billed_caps, billed_count_rules

    for rule in billed_count_rules():
        assert rule.source.startswith("https://") and rule.date
    assert billed_caps("google", "gemini-2.0-flash") == {"web_searches": 1}
    assert billed_caps("google", "gemini-3-pro-preview") == {}
    assert billed_caps("openai", "gpt-4o") == {}  # OpenAI bills each web search call


def test_audio_without_an_audio_rate_is_unpriced_not_text_priced() -> None:
    record = UsageRecord(
        provider="openai", request_model="gpt-4o-audio-preview", input_tokens=1200,
        output_tokens=300, units={"input_audio_tokens": 700},
    )  # fmt: skip
    assert default_price_book().price(record, AT_NS).source == "unknown"
    record.provided_cost = Decimal("0.5")
    assert default_price_book().price(record, AT_NS).total == Decimal("0.5")


def test_a_server_tool_without_a_known_fee_is_unpriced() -> None:
    record = UsageRecord(
        provider="openai", request_model="gpt-3.5-turbo", input_tokens=100, output_tokens=10,
        units={"web_searches": 1},
    )  # fmt: skip
    assert default_price_book().price(record, AT_NS).source == "unknown"


def span(**attrs: Any) -> dict[str, Any]:
    return {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-audio", "gen_ai.usage.input_tokens": 1200,
            "gen_ai.usage.output_tokens": 300, **attrs}  # fmt: skip


def test_units_are_read_from_every_spelling() -> None:
    openinference = normalize(
        {"openinference.span.kind": "LLM", "llm.model_name": "gpt-audio",
         "llm.token_count.prompt": 1200, "llm.token_count.completion": 300,
         "llm.token_count.prompt_details.audio": 700,
         "llm.token_count.completion_details.audio": 200},
        scope="openinference.instrumentation.openai",
    )  # fmt: skip
    assert openinference is not None
    assert openinference.units == {"input_audio_tokens": 700, "output_audio_tokens": 200}
    pydantic_ai = normalize(span(**{"gen_ai.usage.details.input_audio_tokens": 5,
                                    "gen_ai.usage.details.web_search_requests": 2}))  # fmt: skip
    assert pydantic_ai is not None
    assert pydantic_ai.units == {"input_audio_tokens": 5, "web_searches": 2}
    ours = normalize(span(**{"aethermind.usage.input_audio_tokens": "9",
                             "gen_ai.usage.details.input_audio_tokens": 5}))  # fmt: skip
    assert ours is not None and ours.units == {"input_audio_tokens": 9}
    hostile = normalize(span(**{"aethermind.usage.web_searches": -3,
                                "aethermind.usage.output_audio_tokens": 10**13}))  # fmt: skip
    assert hostile is not None and hostile.units is None
    plain = normalize(span())
    assert plain is not None and plain.units is None


def test_a_reported_cost_is_a_model_calls_own_only_when_it_is_not_a_model_call() -> None:
    """On a model call ``aethermind.cost.usd`` is our SDK's estimate (the receiver prices
    the tokens itself); on any other span it is that span's cost, the ``other`` line."""
    call = normalize(span(**{"aethermind.cost.usd": 9.5}))
    assert call is not None and call.is_llm_call and call.provided_cost is None
    tool = normalize({"gen_ai.operation.name": "execute_tool", "aethermind.cost.usd": 0.005})
    assert tool is not None and not tool.is_llm_call
    assert tool.provided_cost == Decimal("0.005")
    cost = default_price_book().price(tool, AT_NS)
    assert (cost.source, cost.total, cost.other) == ("provided", Decimal("0.005"), cost.total)
    job = normalize({"gen_ai.usage.cost": "0.125", "http.route": "/render"})
    assert job is not None and not job.is_llm_call and job.provided_cost == Decimal("0.125")
    assert normalize({"gen_ai.usage.cost": "not a number"}) is None
    assert normalize({"http.route": "/render"}) is None


def test_the_attribute_plans_are_bounded() -> None:
    """Attribute names are chosen by tenants: the plan cache stays bounded in entries, and a
    span whose names are too many or too long is read without entering it."""
    plans = importlib.import_module("aethermind.semconv.normalize")._PLANS
    for i in range(5000):
        normalize(span(**{f"custom.attribute.{i}": 1}))
    assert plans.total() <= 1024
    huge = span(**{"x" * 5000: 1, "aethermind.usage.web_searches": 1})
    before = plans.total()
    plans.forget_all()
    record = normalize(huge)
    assert record is not None and record.units == {"web_searches": 1}
    assert plans.total() == 0 < before
    many = span(**{f"k{i}": i for i in range(100)})
    assert normalize(many) is not None and plans.total() == 0
