"""``POST /v1/logs``: coding agents' usage events become counted, priced, attributed calls;
other records are counted and dropped. Records go through the real OTel SDK log exporter
(OTLP/HTTP protobuf) or as OTLP/JSON."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from typing import Any

from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from aethermind.semconv import PriceBook, UsageRecord
from tests.plugins.receiver import RunningReceiver

# Claude Code's api_request events, as its monitoring docs list their attributes: the
# model, uncached input, output, cache reads and writes, its own estimate of the cost.
REQUESTS = [
    {"model": "claude-sonnet-4-5", "input_tokens": 120, "output_tokens": 900,
     "cache_read_tokens": 30_000, "cache_creation_tokens": 2_000, "cost_usd": 0.0318,
     "duration_ms": 5400},
    {"model": "claude-sonnet-4-5", "input_tokens": 80, "output_tokens": 400,
     "cache_read_tokens": 32_000, "cache_creation_tokens": 0, "cost_usd": 0.0158,
     "duration_ms": 3100},
    {"model": "claude-haiku-4-5", "input_tokens": 1_500, "output_tokens": 60,
     "cache_read_tokens": 0, "cache_creation_tokens": 0, "cost_usd": 0.0018,
     "duration_ms": 700},
]  # fmt: skip
RESOURCE = {"service.name": "claude-code", "service.version": "2.0.0"}
WHO = {"session.id": "9f1c", "user.email": "dev@acme.test", "user.account_uuid": "u-1",
       "organization.id": "org-1", "terminal.type": "vscode"}  # fmt: skip


def export(receiver: RunningReceiver, key: str, now: int) -> None:
    """The events through the SDK's OTLP/HTTP log exporter, with a prompt event between."""
    exporter = OTLPLogExporter(
        endpoint=f"{receiver.url}/v1/logs", headers={"Authorization": f"Bearer {key}"}
    )
    provider = LoggerProvider(resource=Resource.create(RESOURCE))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("com.anthropic.claude_code.events")
    logger.emit(
        timestamp=now,
        body="claude_code.user_prompt",
        attributes={**WHO, "event.name": "user_prompt", "prompt_length": 42},
    )
    for i, request in enumerate(REQUESTS):
        logger.emit(
            timestamp=now + (i + 1) * 10_000_000_000,
            body="claude_code.api_request",
            attributes={**WHO, "event.name": "api_request", **request},
        )
    provider.shutdown()


def expected_cost(request: dict[str, Any]) -> Decimal:
    record = UsageRecord(
        provider="anthropic",
        request_model=request["model"],
        input_tokens=request["input_tokens"] + request["cache_read_tokens"]
        + request["cache_creation_tokens"],
        output_tokens=request["output_tokens"],
        cache_read_tokens=request["cache_read_tokens"],
        cache_write_tokens=request["cache_creation_tokens"],
    )  # fmt: skip
    cost = PriceBook().price(record, time.time_ns()).total
    assert cost is not None
    return cost


async def aggregates(receiver: RunningReceiver, **params: str) -> list[dict[str, Any]]:
    response = await receiver.session.get(
        f"{receiver.url}/v1/aggregates", params=params, headers=receiver.acme.read_headers()
    )
    assert response.status == 200, await response.text()
    rows: list[dict[str, Any]] = (await response.json())["rows"]
    return rows


async def test_claude_code_requests_are_counted_priced_and_attributed_once(
    receiver: RunningReceiver,
) -> None:
    now = time.time_ns() - 60 * 1_000_000_000
    for _ in range(2):  # the same events re-delivered: the same rows, not twice as many
        await asyncio.to_thread(export, receiver, receiver.acme.ingest_key, now)
    rows = {r["model"]: r for r in await aggregates(receiver, group_by="model")}
    for model in {r["model"] for r in REQUESTS}:
        mine = [r for r in REQUESTS if r["model"] == model]
        row = rows[model]
        assert row["calls"] == len(mine)
        assert row["output_tokens"] == sum(r["output_tokens"] for r in mine)
        assert row["cache_read_tokens"] == sum(r["cache_read_tokens"] for r in mine)
        assert row["cache_write_tokens"] == sum(r["cache_creation_tokens"] for r in mine)
        assert row["input_tokens"] == sum(
            r["input_tokens"] + r["cache_read_tokens"] + r["cache_creation_tokens"] for r in mine
        )
        assert Decimal(row["cost_usd"]) == sum(expected_cost(r) for r in mine)
        # Claude Code's own estimate, beside ours.
        assert Decimal(row["provided_cost_usd"]) == sum(Decimal(str(r["cost_usd"])) for r in mine)
    # Spend per developer: the user is the developer's email, the session Claude Code's.
    [dev] = await aggregates(receiver, group_by="user,session", service="claude-code")
    assert (dev["user"], dev["session"], dev["calls"]) == ("dev@acme.test", "9f1c", 3)
    stored = await receiver.rows(receiver.acme)
    assert sorted(Decimal(r["provided_cost"]) for r in stored) == sorted(
        Decimal(str(r["cost_usd"])) for r in REQUESTS
    )
    metrics = await (await receiver.session.get(f"{receiver.url}/metrics")).text()
    assert 'aethermind_log_records_dropped_total{reason="no_usage"} 2.0' in metrics


def json_body(records: list[dict[str, Any]]) -> bytes:
    return json.dumps({"resourceLogs": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "claude-code"}}]},
        "scopeLogs": [{"scope": {"name": "claude"}, "logRecords": records}],
    }]}).encode()  # fmt: skip


def json_record(**attributes: Any) -> dict[str, Any]:
    values = []
    for key, value in attributes.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            values.append({"key": key, "value": {"stringValue": str(value)}})
        elif isinstance(value, int):
            values.append({"key": key, "value": {"intValue": str(value)}})
        else:
            values.append({"key": key, "value": {"doubleValue": value}})
    return {
        "timeUnixNano": str(time.time_ns() - 30 * 1_000_000_000),
        "body": {"stringValue": "claude_code.api_request"},
        "attributes": values,
    }


async def post(receiver: RunningReceiver, body: bytes, **headers: str) -> Any:
    return await receiver.session.post(
        f"{receiver.url}/v1/logs",
        data=body,
        headers={
            "Content-Type": "application/json",
            **receiver.acme.ingest_headers(),
            **headers,
        },
    )


async def test_otlp_json_counts_as_strings_and_bad_records_rejected_in_partial_success(
    receiver: RunningReceiver,
) -> None:
    good = json_record(**{"event.name": "api_request", "model": "claude-haiku-4-5",
                          "input_tokens": "100", "output_tokens": 20})  # fmt: skip
    bad = json_record(**{"event.name": "api_request", "model": "claude-haiku-4-5",
                         "input_tokens": -5})  # fmt: skip
    response = await post(receiver, json_body([good, bad]))
    assert response.status == 200
    body = await response.json()
    assert body["partialSuccess"]["rejectedLogRecords"] == "1"
    assert "input_tokens" in body["partialSuccess"]["errorMessage"]
    [row] = await aggregates(receiver)
    assert (row["calls"], row["input_tokens"], row["output_tokens"]) == (1, 100, 20)


async def test_bad_bodies_and_keys_get_otlp_statuses(receiver: RunningReceiver) -> None:
    response = await post(receiver, b"{not json")
    assert response.status == 400
    response = await receiver.session.post(
        f"{receiver.url}/v1/logs",
        data=b"\xff\xff\xff\x0f garbage",
        headers={"Content-Type": "application/x-protobuf", **receiver.acme.ingest_headers()},
    )
    assert response.status == 400
    response = await receiver.session.post(
        f"{receiver.url}/v1/logs", data=json_body([]), headers={"Content-Type": "application/json"}
    )
    assert response.status == 401
    response = await post(receiver, json_body([]), Authorization=f"Bearer {receiver.acme.read_key}")
    assert response.status == 403
    response = await receiver.session.post(
        f"{receiver.url}/v1/logs",
        data=b"x",
        headers={"Content-Type": "text/plain", **receiver.acme.ingest_headers()},
    )
    assert response.status == 415


GENAI_USAGE = {
    "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 300,
    "gen_ai.response.id": "chatcmpl-1",
}  # fmt: skip


def genai_span_and_event(receiver: RunningReceiver, service: str, *, with_span: bool) -> None:
    """An inference span with the GenAI-conventions details event emitted inside it (as
    instrumentations do); ``with_span`` False ships the event alone."""
    auth = {"Authorization": f"Bearer {receiver.acme.ingest_key}"}
    resource = Resource.create({"service.name": service})
    tracer_provider = TracerProvider(resource=resource)
    if with_span:
        tracer_provider.add_span_processor(
            SimpleSpanProcessor(
                OTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces", headers=auth)
            )
        )
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{receiver.url}/v1/logs", headers=auth))
    )
    logger = logger_provider.get_logger("opentelemetry.instrumentation.openai_v2")
    with tracer_provider.get_tracer(
        "opentelemetry.instrumentation.openai_v2"
    ).start_as_current_span("chat gpt-4o", attributes=GENAI_USAGE):
        logger.emit(event_name="gen_ai.client.inference.operation.details", attributes=GENAI_USAGE)
    tracer_provider.shutdown()
    logger_provider.shutdown()


async def test_genai_details_event_counts_once_beside_its_span_and_alone_without_it(
    receiver: RunningReceiver,
) -> None:
    await asyncio.to_thread(genai_span_and_event, receiver, "with-span", with_span=True)
    await asyncio.to_thread(genai_span_and_event, receiver, "event-only", with_span=False)
    rows = {r["service"]: r for r in await aggregates(receiver, group_by="service")}
    for service in ("with-span", "event-only"):
        row = rows[service]
        assert (row["calls"], row["input_tokens"], row["output_tokens"]) == (1, 1200, 300)
    stored = [r for r in await receiver.rows(receiver.acme) if r["service"] == "with-span"]
    assert len(stored) == 2  # the span and its event, one counted
