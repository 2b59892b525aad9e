"""``POST /v1/metrics`` and the gRPC MetricsService: usage metrics (Claude Code's, Gemini
CLI's, the GenAI conventions') show in the aggregates for services that send only metrics,
are never added to the same service's event or span usage, count a cumulative series by its
increase and a re-delivered point once. Sent by the real OTel SDK metric exporters and by
real instrumentations driving the official SDKs against the fake provider."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource

from aethermind.semconv import PriceBook, UsageRecord
from tests.plugins.fake_provider import FakeProvider, ledger_totals
from tests.plugins.instrumented import run_scenario
from tests.plugins.receiver import ReceiverFactory, RunningReceiver
from tests.receiver.test_otlp_logs import REQUESTS, RESOURCE, WHO, aggregates, export

DELTA = {Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA}
HOUR_MS = 3_600_000

TOKEN_TYPES = {
    "input": "input_tokens",
    "output": "output_tokens",
    "cacheRead": "cache_read_tokens",
    "cacheCreation": "cache_creation_tokens",
}


def http_exporter(receiver: RunningReceiver, *, delta: bool) -> MetricExporter:
    return OTLPMetricExporter(
        endpoint=f"{receiver.url}/v1/metrics",
        headers={"Authorization": f"Bearer {receiver.acme.ingest_key}"},
        preferred_temporality=DELTA if delta else None,
    )


def claude_code_meter(exporter: MetricExporter) -> tuple[MeterProvider, Any, Any]:
    """Claude Code's two usage counters, on a provider whose reader exports on flush."""
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=HOUR_MS)
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create(RESOURCE))
    meter = provider.get_meter("com.anthropic.claude_code")
    tokens = meter.create_counter("claude_code.token.usage", unit="tokens")
    cost = meter.create_counter("claude_code.cost.usage", unit="USD")
    return provider, tokens, cost


def record_requests(tokens: Any, cost: Any, requests: list[dict[str, Any]]) -> None:
    for request in requests:
        for kind, field in TOKEN_TYPES.items():
            tokens.add(request[field], {**WHO, "model": request["model"], "type": kind})
        cost.add(request["cost_usd"], {**WHO, "model": request["model"]})


def expected_cost(model: str, uncached: int, output: int, read: int, write: int) -> Decimal:
    record = UsageRecord(provider="anthropic", request_model=model,
                         input_tokens=uncached + read + write, output_tokens=output,
                         cache_read_tokens=read, cache_write_tokens=write)  # fmt: skip
    cost = PriceBook().price(record, time.time_ns()).total
    assert cost is not None
    return cost


def sums(requests: list[dict[str, Any]], model: str) -> dict[str, int]:
    mine = [r for r in requests if r["model"] == model]
    return {field: sum(r[field] for r in mine) for field in TOKEN_TYPES.values()}


async def test_metric_only_claude_code_shows_tokens_and_cost_per_developer(
    receiver: RunningReceiver,
) -> None:
    provider, tokens, cost = claude_code_meter(http_exporter(receiver, delta=True))
    record_requests(tokens, cost, REQUESTS)
    await asyncio.to_thread(provider.shutdown)
    rows = {r["model"]: r for r in await aggregates(receiver, group_by="model")}
    assert set(rows) == {"claude-sonnet-4-5", "claude-haiku-4-5"}
    for model, row in rows.items():
        sent = sums(REQUESTS, model)
        inputs = sent["input_tokens"] + sent["cache_read_tokens"] + sent["cache_creation_tokens"]
        assert row["calls"] == 0  # Claude Code counts no requests in its metrics
        assert row["input_tokens"] == inputs
        assert row["output_tokens"] == sent["output_tokens"]
        assert row["cache_read_tokens"] == sent["cache_read_tokens"]
        assert row["cache_write_tokens"] == sent["cache_creation_tokens"]
        assert row["total_tokens"] == inputs + sent["output_tokens"]
        want = expected_cost(model, sent["input_tokens"], sent["output_tokens"],
                             sent["cache_read_tokens"], sent["cache_creation_tokens"])  # fmt: skip
        assert Decimal(row["cost_usd"]) == want
        reported = sum(Decimal(str(r["cost_usd"])) for r in REQUESTS if r["model"] == model)
        assert Decimal(row["provided_cost_usd"]).quantize(Decimal("1e-9")) == reported
    [dev] = await aggregates(receiver, group_by="user,session", service="claude-code")
    assert (dev["user"], dev["session"]) == ("dev@acme.test", "9f1c")
    assert await aggregates(receiver, agent="anything") == []  # metrics have no agent
    metrics = await (await receiver.session.get(f"{receiver.url}/metrics")).text()
    assert "aethermind_metric_points_stored_total 10.0" in metrics
    [age] = [line for line in metrics.splitlines()
             if line.startswith("aethermind_price_snapshot_age_seconds ")]  # fmt: skip
    assert float(age.split()[1]) >= 0


async def test_events_win_over_metrics_of_the_same_requests_in_either_order(
    receiver: RunningReceiver,
) -> None:
    now = time.time_ns() - 60 * 1_000_000_000
    provider, tokens, cost = claude_code_meter(http_exporter(receiver, delta=True))
    record_requests(tokens, cost, REQUESTS[:1])
    await asyncio.to_thread(provider.force_flush)  # metrics first ...
    await asyncio.to_thread(export, receiver, receiver.acme.ingest_key, now)  # ... then events
    record_requests(tokens, cost, REQUESTS[1:])
    await asyncio.to_thread(provider.shutdown)  # and metrics again after them
    [total] = await aggregates(receiver)
    assert total["calls"] == len(REQUESTS)
    assert total["output_tokens"] == sum(r["output_tokens"] for r in REQUESTS)
    assert total["cache_read_tokens"] == sum(r["cache_read_tokens"] for r in REQUESTS)


async def test_cumulative_series_count_their_increase_and_redelivery_once(
    receiver: RunningReceiver,
) -> None:
    exporter = http_exporter(receiver, delta=False)  # the SDK's default: cumulative
    provider, tokens, _ = claude_code_meter(exporter)
    attributes = {**WHO, "model": "claude-haiku-4-5", "type": "output"}
    for amount in (100, 250, 40):
        tokens.add(amount, attributes)
        await asyncio.to_thread(provider.force_flush)
        await asyncio.sleep(0.01)  # each export a later point of the same series
    await asyncio.to_thread(provider.shutdown)
    [row] = await aggregates(receiver)
    assert row["output_tokens"] == 390  # not 100 + 350 + 390
    body = cumulative_json(value=500, start=time.time_ns() - 10**9, now=time.time_ns())
    for _ in range(2):  # one point re-delivered: stored once
        response = await post(receiver, body)
        assert response.status == 200, await response.text()
    [row] = await aggregates(receiver)
    assert row["output_tokens"] == 390 + 500


def json_point(value: Any, *, start: int, now: int, **attributes: str) -> dict[str, Any]:
    return {
        "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attributes.items()],
        "startTimeUnixNano": str(start),
        "timeUnixNano": str(now),
        "asInt": value,
    }


def metrics_json(points: list[dict[str, Any]], *, temporality: int = 1) -> bytes:
    return json.dumps({"resourceMetrics": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "gemini-cli"}}]},
        "scopeMetrics": [{"scope": {"name": "gemini-cli"}, "metrics": [
            {"name": "gemini_cli.token.usage", "sum": {
                "aggregationTemporality": temporality, "isMonotonic": True,
                "dataPoints": points}},
            {"name": "gemini_cli.memory.usage", "gauge": {"dataPoints": [
                {"timeUnixNano": str(time.time_ns()), "asDouble": 123.0}]}},
        ]}],
    }]}).encode()  # fmt: skip


def cumulative_json(*, value: int, start: int, now: int) -> bytes:
    point = json_point(str(value), start=start, now=now, model="gemini-2.5-flash", type="output")
    return metrics_json([point], temporality=2)


async def post(receiver: RunningReceiver, body: bytes, **headers: str) -> Any:
    return await receiver.session.post(
        f"{receiver.url}/v1/metrics",
        data=body,
        headers={"Content-Type": "application/json", **receiver.acme.ingest_headers(), **headers},
    )


async def test_gemini_cli_token_types_and_bad_points_in_partial_success(
    receiver: RunningReceiver,
) -> None:
    now = time.time_ns() - 10 * 1_000_000_000
    points = [
        json_point(str(count), start=now - 10**9, now=now, model="gemini-2.5-pro", type=kind)
        for kind, count in (("input", 12000), ("cache", 8000), ("output", 350),
                            ("thought", 420), ("tool", 30))
    ]  # fmt: skip
    bad = json_point(-3, start=now - 10**9, now=now, model="gemini-2.5-pro", type="input")
    late = json_point(5, start=now, now=now - 10**9, model="gemini-2.5-pro", type="input")
    response = await post(receiver, metrics_json([*points, bad, late]))
    assert response.status == 200, await response.text()
    partial = (await response.json())["partialSuccess"]
    assert partial["rejectedDataPoints"] == "2"
    assert "not a non-negative number" in partial["errorMessage"]
    [row] = await aggregates(receiver, group_by="model")
    assert (row["model"], row["input_tokens"], row["cache_read_tokens"]) == (
        "gemini-2.5-pro", 12030, 8000,
    )  # fmt: skip
    assert (row["output_tokens"], row["reasoning_tokens"]) == (770, 420)
    record = UsageRecord(
        provider="google", request_model="gemini-2.5-pro", input_tokens=12030,
        cache_read_tokens=8000, output_tokens=770, reasoning_tokens=420,
    )  # fmt: skip
    assert Decimal(row["cost_usd"]) == PriceBook().price(record, now).total


async def test_bad_bodies_and_keys_get_otlp_statuses(receiver: RunningReceiver) -> None:
    assert (await post(receiver, b"{not json")).status == 400
    assert (await post(receiver, b'{"resourceMetrics": 3}')).status == 400
    response = await receiver.session.post(
        f"{receiver.url}/v1/metrics",
        data=b"\xff\xff\xff\x0f garbage",
        headers={"Content-Type": "application/x-protobuf", **receiver.acme.ingest_headers()},
    )
    assert response.status == 400
    response = await receiver.session.post(
        f"{receiver.url}/v1/metrics",
        data=metrics_json([]),
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 401
    read_key = {"Authorization": f"Bearer {receiver.acme.read_key}"}
    assert (await post(receiver, metrics_json([]), **read_key)).status == 403
    assert await aggregates(receiver) == []


async def test_genai_metrics_of_a_real_instrumentation_count_what_the_provider_served(
    receiver: RunningReceiver, fake_provider: FakeProvider
) -> None:
    """The service sends only metrics (its spans go nowhere): tokens and calls equal the
    fake provider's ledger; the cost is the tokens' at list price (metrics cannot tell
    cached input apart)."""
    fake_provider.clear()
    for scenario in ("openai_chat", "openai_chat", "openai_chat_stream"):
        # A process each: cumulative series of the same attributes, each from its own start.
        reader = PeriodicExportingMetricReader(
            http_exporter(receiver, delta=False), export_interval_millis=HOUR_MS
        )
        await asyncio.to_thread(
            run_scenario, "openllmetry_openai", scenario, fake_provider, metric_readers=[reader]
        )
    served = ledger_totals(fake_provider.served)
    [row] = await aggregates(receiver, group_by="model")
    model = next(iter(served))
    assert row["model"] == model
    assert row["calls"] == 3
    assert row["input_tokens"] == served[model]["input_tokens"]
    assert row["output_tokens"] == served[model]["output_tokens"]
    record = UsageRecord(
        provider="openai", request_model=model,
        input_tokens=row["input_tokens"], output_tokens=row["output_tokens"],
    )  # fmt: skip
    assert Decimal(row["cost_usd"]) == PriceBook().price(record, time.time_ns()).total


@pytest.fixture
async def grpc_receiver(receiver_factory: ReceiverFactory) -> RunningReceiver:
    return await receiver_factory(grpc=True)


async def test_grpc_metric_exporter_stores_what_http_stores(grpc_receiver: RunningReceiver) -> None:
    exporter = GrpcMetricExporter(
        endpoint=grpc_receiver.grpc_target,
        insecure=True,
        headers=(("authorization", f"Bearer {grpc_receiver.acme.ingest_key}"),),
        preferred_temporality=DELTA,
    )
    provider, tokens, cost = claude_code_meter(exporter)
    record_requests(tokens, cost, REQUESTS)
    await asyncio.to_thread(provider.shutdown)
    [row] = await aggregates(grpc_receiver)
    assert row["output_tokens"] == sum(r["output_tokens"] for r in REQUESTS)
    assert row["cache_write_tokens"] == sum(r["cache_creation_tokens"] for r in REQUESTS)
