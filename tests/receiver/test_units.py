"""Usage billed at rates of its own, through the receiver: audio tokens, web searches and
costs that are not tokens, from real instrumentations driving the official SDKs against the
fake provider (its ledger says what was served), shipped by the real OTLP exporter.

Expected costs by hand from the providers' published prices (per million tokens unless
said, checked 2026-12-02): gpt-audio text input $2.50, text output $10.00, audio input
$32.00, audio output $64.00; claude-sonnet-4-5 input $3.00, output $15.00, cache reads
$0.30, 5-minute cache writes $3.75, 1-hour cache writes $6.00, web search $10 per 1,000.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from tests.plugins.fake_provider import ANTHROPIC_WEB_SEARCHES, FakeProvider
from tests.plugins.receiver import RunningReceiver
from tests.receiver.helpers import export_with_otel
from tests.receiver.test_exactly_once_stacks import tracer_provider
from tests.receiver.test_otlp_logs import aggregates

MICRO = Decimal("0.000001")
ZERO = Decimal(0)


def chat_with_audio(fake: FakeProvider, model: str) -> list[ReadableSpan]:
    """OpenInference's OpenAI instrumentation around a chat completion that asks for audio:
    it records the audio parts of the prompt and completion token counts."""
    from openai import OpenAI
    from openinference.instrumentation.openai import OpenAIInstrumentor

    provider, exporter = tracer_provider()
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        client = OpenAI(base_url=fake.openai_base_url, api_key="sk-fake", max_retries=0)
        client.chat.completions.create(
            model=model,
            modalities=["text", "audio"],
            audio={"voice": "alloy", "format": "wav"},
            messages=[{"role": "user", "content": "Say hello out loud."}],
        )
    finally:
        instrumentor.uninstrument()
    return list(exporter.get_finished_spans())


def agent_with_web_search(fake: FakeProvider) -> list[ReadableSpan]:
    """A pydantic-ai agent on Anthropic with its web search capability: the server runs the
    searches and bills them per call (``usage.server_tool_use.web_search_requests``)."""
    from pydantic_ai import Agent, InstrumentationSettings
    from pydantic_ai.capabilities import Instrumentation
    from pydantic_ai.capabilities.web_search import WebSearch
    from pydantic_ai.models.anthropic import AnthropicModel
    from pydantic_ai.providers.anthropic import AnthropicProvider

    provider, exporter = tracer_provider()
    model = AnthropicModel(
        "claude-sonnet-4-5",
        provider=AnthropicProvider(base_url=fake.anthropic_base_url, api_key="sk-fake"),
    )
    settings = InstrumentationSettings(tracer_provider=provider)
    agent = Agent(
        model, name="researcher", capabilities=[Instrumentation(settings=settings), WebSearch()]
    )
    agent.run_sync("What happened today?")
    return list(exporter.get_finished_spans())


async def ship(receiver: RunningReceiver, spans: list[ReadableSpan]) -> None:
    for _ in range(2):  # re-sent: stored once
        result = await export_with_otel(
            spans, f"{receiver.url}/v1/traces", receiver.acme.ingest_key
        )
        assert result.name == "SUCCESS"


async def test_audio_tokens_are_priced_at_audio_rates(
    receiver: RunningReceiver, fake_provider: FakeProvider
) -> None:
    fake_provider.clear()
    await ship(receiver, chat_with_audio(fake_provider, "gpt-audio"))
    [served] = fake_provider.served
    assert served.units() == {"input_audio_tokens": 700, "output_audio_tokens": 200}
    [row] = await aggregates(receiver, group_by="model")
    counts = served.counts()
    assert (row["input_tokens"], row["output_tokens"]) == (
        counts["input_tokens"],
        counts["output_tokens"],
    )
    # 500 text + 700 audio prompt tokens, 100 text + 200 audio completion tokens.
    parts = {k: Decimal(v) for k, v in row["cost_breakdown_usd"].items()}
    assert parts["input"] == Decimal(500 * 2.5) * MICRO
    assert parts["output"] == Decimal(100 * 10) * MICRO
    assert parts["modality"] == Decimal(700 * 32 + 200 * 64) * MICRO
    assert Decimal(row["cost_usd"]) == Decimal(1250 + 1000 + 22400 + 12800) * MICRO


async def test_audio_is_never_priced_at_the_text_rate(
    receiver: RunningReceiver, fake_provider: FakeProvider
) -> None:
    """genai-prices has gpt-4o-audio-preview's text rates only: its audio tokens (10x dearer
    on the bill) leave the call unpriced rather than under-priced."""
    fake_provider.clear()
    await ship(receiver, chat_with_audio(fake_provider, "gpt-4o-audio-preview"))
    [row] = await aggregates(receiver)
    assert row["calls"] == 1 and row["unpriced_calls"] == 1
    assert row["cost_usd"] is None


async def test_web_searches_are_a_fee_per_call(
    receiver: RunningReceiver, fake_provider: FakeProvider
) -> None:
    fake_provider.clear()
    await ship(receiver, await asyncio.to_thread(agent_with_web_search, fake_provider))
    [served] = fake_provider.served
    assert served.units() == {"web_searches": ANTHROPIC_WEB_SEARCHES}
    [row] = await aggregates(receiver)
    assert row["calls"] == 1  # the agent run's aggregated usage is not added again
    parts = {k: Decimal(v) for k, v in row["cost_breakdown_usd"].items()}
    usage = served.usage
    writes_1h = usage["cache_creation"]["ephemeral_1h_input_tokens"]
    writes_5m = usage["cache_creation_input_tokens"] - writes_1h
    tokens = (
        usage["input_tokens"] * Decimal("3")
        + usage["cache_read_input_tokens"] * Decimal("0.30")
        + writes_5m * Decimal("3.75")
        + writes_1h * Decimal("6")
        + usage["output_tokens"] * Decimal("15")
    ) * MICRO
    fees = ANTHROPIC_WEB_SEARCHES * Decimal("0.01")
    assert parts["fees"] == fees
    assert Decimal(row["cost_usd"]) == tokens + fees
    # Saved by caching: the reads at the $3.00 input rate, less the $0.30 they cost.
    saved = usage["cache_read_input_tokens"] * Decimal("2.70") * MICRO
    assert Decimal(row["saved_by_caching_usd"]) == saved


def tool_with_a_paid_api() -> list[ReadableSpan]:
    """A model call and, beside it, a tool span that called a paid API and says what it
    cost (``aethermind.cost.usd``), and one that reports it the conventions' way."""
    provider, exporter = tracer_provider()
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("invoke_agent planner", attributes={
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"}):  # fmt: skip
        with tracer.start_as_current_span("chat claude-sonnet-4-5", attributes={
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 100,
            # Our SDK's own estimate on a model call: not a cost of its own.
            "aethermind.cost.usd": 99.0, "aethermind.cost.source": "computed"}):  # fmt: skip
            pass
        with tracer.start_as_current_span("execute_tool geocode", attributes={
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "geocode",
            "aethermind.cost.usd": 0.005}):  # fmt: skip
            pass
        with tracer.start_as_current_span("render-gpu-job", attributes={
            "gen_ai.usage.cost": "0.125"}):  # fmt: skip
            pass
    return list(exporter.get_finished_spans())


async def test_costs_that_are_not_tokens_are_their_own_line(receiver: RunningReceiver) -> None:
    await ship(receiver, tool_with_a_paid_api())
    [row] = await aggregates(receiver)
    parts = {k: Decimal(v) for k, v in row["cost_breakdown_usd"].items()}
    tokens = Decimal(1000 * 3 + 100 * 15) * MICRO
    assert parts["other"] == Decimal("0.005") + Decimal("0.125")
    assert parts["input"] + parts["output"] == tokens
    assert Decimal(row["cost_usd"]) == tokens + Decimal("0.130")
    by_agent = {r["agent"]: r for r in await aggregates(receiver, group_by="agent")}
    assert Decimal(by_agent["planner"]["cost_usd"]) == tokens + Decimal("0.130")


def event(**extra: Any) -> dict[str, Any]:
    return {
        "provider": "openai", "model": "gpt-audio", "input_tokens": 1000, "output_tokens": 100,
        "timestamp": int(time.time() * 1000) - 60_000, **extra,
    }  # fmt: skip


async def test_ingest_events_carry_units(receiver: RunningReceiver) -> None:
    response = await receiver.session.post(
        f"{receiver.url}/v1/ingest",
        json={"events": [event(units={"input_audio_tokens": 400})]},
        headers=receiver.acme.ingest_headers(),
    )
    assert response.status == 200, await response.text()
    [row] = await aggregates(receiver)
    assert Decimal(row["cost_usd"]) == Decimal(600 * 2.5 + 400 * 32 + 100 * 10) * MICRO
    bad = await receiver.session.post(
        f"{receiver.url}/v1/ingest",
        json={"events": [event(units={"input_smell_tokens": 1})]},
        headers=receiver.acme.ingest_headers(),
    )
    answer = await bad.json()
    assert (bad.status, answer["accepted"], answer["rejected"]) == (200, 0, 1)
    assert "input_smell_tokens" in str(answer["errors"])
