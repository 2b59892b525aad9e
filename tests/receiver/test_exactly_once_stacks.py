"""Every provider request counted exactly once, whatever framework wraps it: real agent
frameworks and instrumentations drive the official SDKs against the fake provider, their
real spans go through the real OTLP exporter in any order and any number of times, and the
totals the API answers equal what the fake provider's ledger says it served."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aethermind.semconv import PriceBook, UsageRecord
from tests.plugins.fake_provider import TOKEN_KINDS, FakeProvider, Served, ledger_totals
from tests.plugins.receiver import RunningReceiver, Tenant
from tests.receiver.helpers import export_with_otel

SERVICE = "agents-app"
Deliver = Callable[[list[ReadableSpan]], list[list[ReadableSpan]]]


def tracer_provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def run_pydantic_ai(fake: FakeProvider, *, aggregated_names: bool) -> list[ReadableSpan]:
    """One agent run with a tool: the model asks for the tool, then answers (two requests)."""
    from pydantic_ai import Agent, InstrumentationSettings
    from pydantic_ai.capabilities import Instrumentation
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    provider, exporter = tracer_provider()
    settings = InstrumentationSettings(
        tracer_provider=provider, use_aggregated_usage_attribute_names=aggregated_names
    )
    model = OpenAIChatModel(
        "gpt-4o", provider=OpenAIProvider(base_url=fake.openai_base_url, api_key="sk-fake")
    )
    agent = Agent(model, name="forecaster", capabilities=[Instrumentation(settings=settings)])

    @agent.tool_plain
    def weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    agent.run_sync("What is the weather in Paris?")
    provider.shutdown()
    return list(exporter.get_finished_spans())


# How spans reach the receiver: all at once; one request per span, children last (parents
# first); one per span in random order; and everything twice over (re-sent batches).
DELIVERIES: dict[str, Deliver] = {
    "together": lambda spans: [spans],
    "parents_first": lambda spans: [[s] for s in reversed(spans)],
    "shuffled": lambda spans: [[s] for s in random.Random(7).sample(spans, len(spans))],
    "resent": lambda spans: [spans[: len(spans) // 2], spans, spans[len(spans) // 2 :]],
}


async def deliver(
    receiver: RunningReceiver, tenant: Tenant, batches: list[list[ReadableSpan]]
) -> None:
    for batch in batches:
        result = await export_with_otel(batch, receiver.traces_url, tenant.ingest_key)
        assert result is SpanExportResult.SUCCESS


async def api_rows(receiver: RunningReceiver, tenant: Tenant) -> dict[str, dict[str, Any]]:
    response = await receiver.session.get(
        f"{receiver.url}/v1/aggregates",
        params={"group_by": "service,model"},
        headers=tenant.read_headers(),
    )
    assert response.status == 200, await response.text()
    rows = (await response.json())["rows"]
    assert {r["service"] for r in rows} == {SERVICE}
    return {r["model"]: r for r in rows}


def expected_cost(served: Sequence[Served]) -> dict[str, Decimal]:
    """The ledger's responses priced as the receiver prices them (pricing has its own tests;
    here the point is that each response is priced once)."""
    book = PriceBook()
    totals: dict[str, Decimal] = {}
    for entry in served:
        counts = entry.counts()
        record = UsageRecord(
            provider=entry.vendor,
            response_model=entry.model,
            **{k: counts[k] for k in TOKEN_KINDS},
        )
        cost = book.price(record, time.time_ns()).total
        assert cost is not None
        totals[entry.model] = totals.get(entry.model, Decimal(0)) + cost
    return totals


async def assert_totals_match_ledger(
    receiver: RunningReceiver, tenant: Tenant, served: Sequence[Served]
) -> None:
    rows = await api_rows(receiver, tenant)
    ledger = ledger_totals(list(served))
    assert set(rows) == set(ledger)
    costs = expected_cost(served)
    for model, want in ledger.items():
        got = rows[model]
        assert {k: got[k] for k in ("calls", "errors", *TOKEN_KINDS)} == want, model
        assert Decimal(str(got["cost_usd"])) == costs[model], model


@pytest.mark.parametrize("delivery", list(DELIVERIES))
@pytest.mark.parametrize("aggregated_names", [True, False], ids=["aggregated_usage", "usage"])
async def test_pydantic_ai_agent_run_counts_each_model_request_once(
    receiver: RunningReceiver, fake_provider: FakeProvider, delivery: str, aggregated_names: bool
) -> None:
    before = len(fake_provider.served)
    spans = await asyncio.to_thread(
        run_pydantic_ai, fake_provider, aggregated_names=aggregated_names
    )
    served = fake_provider.served[before:]
    assert len(served) == 2  # the tool call, then the answer
    agent = next(s for s in spans if s.attributes.get("gen_ai.operation.name") == "invoke_agent")
    usage_key = (
        "gen_ai.aggregated_usage.input_tokens"
        if aggregated_names
        else ("gen_ai.usage.input_tokens")
    )
    assert agent.attributes.get(usage_key) == sum(e.counts()["input_tokens"] for e in served)

    await deliver(receiver, receiver.acme, DELIVERIES[delivery](spans))
    await assert_totals_match_ledger(receiver, receiver.acme, served)

    trace_id = f"{agent.context.trace_id:032x}"
    response = await receiver.session.get(
        f"{receiver.url}/v1/traces/{trace_id}", headers=receiver.acme.read_headers()
    )
    shown = {s["span_id"]: s for s in (await response.json())["spans"]}
    agent_row = shown[f"{agent.context.span_id:016x}"]
    assert agent_row["counted"] == "rollup"
    assert agent_row["input_tokens"] == sum(e.counts()["input_tokens"] for e in served)
    assert sorted(s["counted"] for s in shown.values() if s["usage_role"] == "request") == [
        True,
        True,
    ]
