"""OTLP ingest end to end: real exporters and real instrumentations into the running receiver,
rows checked in PostgreSQL."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace.export import SpanExportResult

from tests.plugins.fake_provider import FakeProvider
from tests.plugins.instrumented import run_scenario
from tests.plugins.receiver import ReceiverFactory, RunningReceiver
from tests.receiver.helpers import (
    JSON,
    PROTOBUF,
    RECENT_UNIX_NANO,
    export_with_otel,
    llm_spans,
    otlp_json_body,
    otlp_json_span,
    protobuf_body,
)


@pytest.mark.parametrize("gzip_on", [False, True], ids=["plain", "gzip"])
async def test_real_exporter_ships_instrumented_openai_call_priced_without_content(
    receiver: RunningReceiver, fake_provider: FakeProvider, gzip_on: bool
) -> None:
    run = run_scenario("openllmetry_openai", "openai_chat_extra_headers", fake_provider)
    result = await export_with_otel(
        run.spans, receiver.traces_url, receiver.acme.ingest_key, gzip=gzip_on
    )
    assert result is SpanExportResult.SUCCESS
    rows = await receiver.rows(receiver.acme)
    assert len(rows) == 1
    row = rows[0]
    assert (row["provider"], row["model"], row["service"]) == (
        "openai",
        "gpt-4o-2024-08-06",
        "aethermind-harness",
    )
    assert (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"]) == (1200, 300, 400)
    # gpt-4o at $2.50 / $1.25 cached / $10 per MTok: 800 x 2.5 + 400 x 1.25 + 300 x 10 micro-dollars
    assert row["cost"] == Decimal("0.0055")
    assert row["cost_source"] == "computed"
    # Content is not stored unless the organization opted in; credentials never are.
    assert "gen_ai.input.messages" not in row["attributes"]
    assert "gen_ai.headers" not in row["attributes"]
    assert "sk-header-secret" not in json.dumps(row["attributes"])
    assert row["kind"] == "CLIENT"


async def test_anthropic_cache_lifetimes_from_the_sdks_own_spans_are_priced_apart(
    receiver: RunningReceiver, fake_provider: FakeProvider
) -> None:
    run = run_scenario("anthropic_sdk", "anthropic_messages", fake_provider)
    assert (
        await export_with_otel(run.spans, receiver.traces_url, receiver.acme.ingest_key)
        is SpanExportResult.SUCCESS
    )
    (row,) = await receiver.rows(receiver.acme)
    assert (row["input_tokens"], row["cache_read_tokens"], row["cache_write_tokens"]) == (
        3400,
        2000,
        500,
    )
    # 900 x 3 + 2000 x 0.30 + 320 x 3.75 + 180 x 6 + 250 x 15 micro-dollars (see tests/semconv)
    assert row["cost"] == Decimal("0.00933")


async def test_resending_the_same_spans_never_creates_duplicates(receiver: RunningReceiver) -> None:
    spans = llm_spans(20)
    for _ in range(3):
        assert (
            await export_with_otel(spans, receiver.traces_url, receiver.acme.ingest_key)
            is SpanExportResult.SUCCESS
        )
    assert await receiver.count_rows(receiver.acme) == 20
    response = await receiver.session.get(
        f"{receiver.url}/v1/aggregates", headers=receiver.acme.read_headers()
    )
    (row,) = (await response.json())["rows"]
    assert row["calls"] == 20  # the rollup counted each span once too


async def test_protobuf_response_is_an_export_response_in_protobuf(
    receiver: RunningReceiver,
) -> None:
    response = await receiver.session.post(
        receiver.traces_url,
        data=protobuf_body(llm_spans(3)),
        headers=receiver.acme.ingest_headers(**{"Content-Type": PROTOBUF}),
    )
    assert response.status == 200
    assert response.headers["Content-Type"] == PROTOBUF
    parsed = ExportTraceServiceResponse.FromString(await response.read())
    assert not parsed.HasField("partial_success")
    assert response.headers["X-Request-Id"]


async def test_hand_built_otlp_json_with_string_and_number_integers(
    receiver: RunningReceiver,
) -> None:
    spans = [
        otlp_json_span(),  # 64-bit ints as strings, as the spec's JSON mapping writes them
        otlp_json_span(
            start=RECENT_UNIX_NANO, end=RECENT_UNIX_NANO + 100_000_000, unknownField={"x": 1}
        ),
    ]
    response = await receiver.session.post(
        receiver.traces_url,
        data=otlp_json_body(spans),
        headers=receiver.acme.ingest_headers(**{"Content-Type": JSON}),
    )
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == JSON
    assert await response.json() == {}
    rows = await receiver.rows(receiver.acme)
    assert sorted(r["duration_ms"] for r in rows) == [100.0, 250.0]
    assert {r["input_tokens"] for r in rows} == {1200}


async def test_spans_with_bad_ids_are_rejected_in_partial_success(
    receiver: RunningReceiver,
) -> None:
    spans = [otlp_json_span(), otlp_json_span(trace_id="abcd"), otlp_json_span(span_id="00" * 8)]
    response = await receiver.session.post(
        receiver.traces_url,
        data=gzip.compress(otlp_json_body(spans)),
        headers=receiver.acme.ingest_headers(**{"Content-Type": JSON, "Content-Encoding": "gzip"}),
    )
    assert response.status == 200
    body = await response.json()
    assert body["partialSuccess"]["rejectedSpans"] == "2"
    assert body["partialSuccess"]["errorMessage"]
    assert await receiver.count_rows(receiver.acme) == 1


async def test_non_genai_spans_are_counted_and_dropped_unless_keeping_everything(
    receiver_factory: ReceiverFactory,
) -> None:
    plain = otlp_json_span(
        attributes=[{"key": "http.request.method", "value": {"stringValue": "GET"}}]
    )
    receiver = await receiver_factory()
    response = await receiver.session.post(
        receiver.traces_url,
        data=otlp_json_body([plain, otlp_json_span()]),
        headers=receiver.acme.ingest_headers(**{"Content-Type": JSON}),
    )
    assert response.status == 200
    assert await receiver.count_rows(receiver.acme) == 1
    metrics = await (await receiver.session.get(f"{receiver.url}/metrics")).text()
    assert 'aethermind_spans_dropped_total{reason="not_genai"} 1.0' in metrics

    keeping = await receiver_factory(keep_all_spans=True)
    response = await keeping.session.post(
        keeping.traces_url,
        data=otlp_json_body([otlp_json_span(attributes=plain["attributes"])]),
        headers=keeping.acme.ingest_headers(**{"Content-Type": JSON}),
    )
    assert response.status == 200
    assert await keeping.count_rows(keeping.acme) == 2


async def test_json_ingest_for_clients_without_opentelemetry(receiver: RunningReceiver) -> None:
    event = {
        "provider": "openai",
        "model": "gpt-4o",
        "input_tokens": 1200,
        "output_tokens": 300,
        "cache_read_tokens": 400,
        # An hour ago: inside the organization's retention window whatever today is.
        "timestamp": datetime.fromtimestamp(RECENT_UNIX_NANO / 1e9, UTC).isoformat(),
        "duration_ms": 812,
        "service": "billing",
    }
    for _ in range(2):  # a retry of the same event is not a second call
        response = await receiver.session.post(
            f"{receiver.url}/v1/ingest", json={"events": [event, {"model": 5}]},
            headers=receiver.acme.ingest_headers(),
        )  # fmt: skip
        assert response.status == 200
    body = await response.json()
    assert (body["accepted"], body["rejected"], body["stored"], body["duplicates"]) == (1, 1, 0, 1)
    (row,) = await receiver.rows(receiver.acme)
    assert (row["service"], row["cost"], row["duration_ms"]) == (
        "billing",
        Decimal("0.0055"),
        812.0,
    )


async def test_json_ingest_reports_every_invalid_field_of_an_event_with_its_path(
    receiver: RunningReceiver,
) -> None:
    bad = {
        "model": "",
        "input_tokens": -5,
        "output_tokens": "many",
        "cost": "free",
        "timestamp": "yesterday",
        "trace_id": "xyz",
        "service": 7,
    }
    good = {"model": "gpt-4o", "provider": "openai", "timestamp": RECENT_UNIX_NANO // 1_000_000}
    response = await receiver.session.post(
        f"{receiver.url}/v1/ingest", json={"events": [good, bad, "not an event"]},
        headers=receiver.acme.ingest_headers(),
    )  # fmt: skip
    assert response.status == 200
    body = await response.json()
    assert (body["accepted"], body["rejected"]) == (1, 2)
    paths = [error.split(":", 1)[0] for error in body["errors"]]
    assert paths == [
        "events[1].model",
        "events[1].input_tokens",
        "events[1].output_tokens",
        "events[1].cost",
        "events[1].timestamp",
        "events[1].service",
        "events[1].trace_id",
        "events[2]",
    ], body["errors"]

    # Bounded: a request full of broken events gets a bounded list back.
    many = [bad] * 40
    response = await receiver.session.post(
        f"{receiver.url}/v1/ingest", json={"events": many}, headers=receiver.acme.ingest_headers()
    )
    body = await response.json()
    assert body["rejected"] == 40 and len(body["errors"]) == 50
