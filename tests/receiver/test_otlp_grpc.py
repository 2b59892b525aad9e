"""OTLP/gRPC: the real OTel SDK gRPC exporters (spans, logs) store what OTLP/HTTP stores, and
a raw gRPC client with bad keys, bad bodies, huge messages and excess traffic gets the status
codes the OTLP specification gives (with RetryInfo where a retry helps), never a crash."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.grpc import _log_exporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    Compression,
    OTLPSpanExporter,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SpanExportResult

from aethermind.receiver.grpc_server import RETRY_INFO_METADATA_KEY, peer_host
from aethermind.receiver.state import ADMISSION
from tests.plugins.receiver import ReceiverFactory, RunningReceiver
from tests.receiver.helpers import llm_spans, protobuf_body
from tests.receiver.test_otlp_logs import REQUESTS, RESOURCE, WHO, aggregates

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LOGS = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


@pytest.fixture
async def receiver(receiver_factory: ReceiverFactory) -> RunningReceiver:
    return await receiver_factory(grpc=True)


@pytest.fixture
async def channel(receiver: RunningReceiver) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(receiver.grpc_target) as opened:
        yield opened


async def call(
    channel: grpc.aio.Channel, method: str, body: bytes, metadata: tuple[tuple[str, str], ...]
) -> bytes:
    export = channel.unary_unary(method)
    response: bytes = await export(body, metadata=metadata, timeout=10)
    return response


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


async def refusal(
    channel: grpc.aio.Channel, method: str, body: bytes, metadata: tuple[tuple[str, str], ...]
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(channel, method, body, metadata)
    return caught.value


def retry_seconds(error: grpc.aio.AioRpcError) -> tuple[int, int]:
    """The RetryInfo delay as the status details carry it, and as the trailing entry does."""
    trailers = dict(error.trailing_metadata() or ())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    [detail] = status.details
    from_details = error_details_pb2.RetryInfo()
    assert detail.Unpack(from_details)
    from_trailer = error_details_pb2.RetryInfo.FromString(trailers[RETRY_INFO_METADATA_KEY])
    return from_details.retry_delay.seconds, from_trailer.retry_delay.seconds


async def test_sdk_grpc_span_exporter_stores_what_http_would(receiver: RunningReceiver) -> None:
    spans = llm_spans(5, service="grpc-app")
    for compression in (Compression.Gzip, Compression.NoCompression):  # re-sent: stored once
        exporter = OTLPSpanExporter(
            endpoint=receiver.grpc_target,
            insecure=True,
            headers=(("authorization", f"Bearer {receiver.acme.ingest_key}"),),
            compression=compression,
            timeout=10,
        )
        try:
            result = await asyncio.to_thread(exporter.export, spans)
        finally:
            exporter.shutdown()
        assert result is SpanExportResult.SUCCESS
    [row] = await aggregates(receiver, service="grpc-app")
    assert row["calls"] == 5
    assert row["input_tokens"] == sum(1200 + i for i in range(5))
    assert row["output_tokens"] == 5 * 300
    assert await receiver.count_rows(receiver.globex) == 0
    metrics = await (await receiver.session.get(f"{receiver.url}/metrics")).text()
    assert f'aethermind_grpc_requests_total{{code="OK",method="{TRACES}"}} 2.0' in metrics


async def test_sdk_grpc_log_exporter_reports_claude_code_requests(
    receiver: RunningReceiver,
) -> None:
    exporter = _log_exporter.OTLPLogExporter(
        endpoint=receiver.grpc_target,
        insecure=True,
        headers=(("x-api-key", receiver.acme.ingest_key),),
        timeout=10,
    )
    provider = LoggerProvider(resource=Resource.create(RESOURCE))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("com.anthropic.claude_code.events")
    now = time.time_ns() - 60 * 1_000_000_000

    def emit() -> None:
        for i, request in enumerate(REQUESTS):
            logger.emit(
                timestamp=now + i * 1_000_000_000,
                body="claude_code.api_request",
                attributes={**WHO, "event.name": "api_request", **request},
            )
        provider.shutdown()

    await asyncio.to_thread(emit)
    rows = await aggregates(receiver, group_by="user", service="claude-code")
    assert [(r["user"], r["calls"]) for r in rows] == [("dev@acme.test", len(REQUESTS))]
    assert rows[0]["output_tokens"] == sum(r["output_tokens"] for r in REQUESTS)


async def test_partial_success_and_idempotent_redelivery(
    receiver: RunningReceiver, channel: grpc.aio.Channel
) -> None:
    spans = llm_spans(3, service="partial")
    body = protobuf_body(spans)
    request = ExportTraceServiceResponse  # the response type the method answers with
    for _ in range(2):
        answer = request.FromString(
            await call(channel, TRACES, body, bearer(receiver.acme.ingest_key))
        )
        assert not answer.HasField("partial_success")
    assert await receiver.count_rows(receiver.acme) == 3
    # A span a century ahead is outside the accepted window: rejected, the others kept.
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    parsed = ExportTraceServiceRequest.FromString(protobuf_body(llm_spans(2, service="p2")))
    far = parsed.resource_spans[0].scope_spans[0].spans[0]
    far.start_time_unix_nano += 100 * 365 * 86_400 * 10**9
    far.end_time_unix_nano += 100 * 365 * 86_400 * 10**9
    answer = request.FromString(
        await call(channel, TRACES, parsed.SerializeToString(), bearer(receiver.acme.ingest_key))
    )
    assert answer.partial_success.rejected_spans == 1
    assert "window" in answer.partial_success.error_message
    assert await receiver.count_rows(receiver.acme) == 4


async def test_keys_give_unauthenticated_and_permission_denied(
    receiver: RunningReceiver, channel: grpc.aio.Channel
) -> None:
    body = protobuf_body(llm_spans(1))
    missing = await refusal(channel, TRACES, body, ())
    assert missing.code() is grpc.StatusCode.UNAUTHENTICATED
    unknown = await refusal(channel, TRACES, body, bearer("am_live_nope_nope"))
    assert unknown.code() is grpc.StatusCode.UNAUTHENTICATED
    read_only = await refusal(channel, LOGS, body, bearer(receiver.acme.read_key))
    assert read_only.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "ingest" in (read_only.details() or "")
    assert await receiver.count_rows(receiver.acme) == 0


async def test_garbage_huge_and_unknown_methods_get_statuses(
    receiver_factory: ReceiverFactory,
) -> None:
    receiver = await receiver_factory(grpc=True, max_body_bytes=64 * 1024)
    key = bearer(receiver.acme.ingest_key)
    async with grpc.aio.insecure_channel(receiver.grpc_target) as channel:
        for method in (TRACES, LOGS):
            garbage = await refusal(channel, method, b"\xff\xff\xff\x0f garbage", key)
            assert garbage.code() is grpc.StatusCode.INVALID_ARGUMENT, method
        huge = await refusal(channel, TRACES, b"\x0a" + b"\x00" * (128 * 1024), key)
        assert huge.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        other = await refusal(channel, "/opentelemetry.proto.collector.x.v1.X/Export", b"", key)
        assert other.code() is grpc.StatusCode.UNIMPLEMENTED
        # After all that the server still stores a good request.
        await call(channel, TRACES, protobuf_body(llm_spans(2)), key)
    assert await receiver.count_rows(receiver.acme) == 2


async def test_rate_limit_and_saturation_carry_retry_info(
    receiver: RunningReceiver, channel: grpc.aio.Channel
) -> None:
    globex = bearer(receiver.globex.ingest_key)  # 600 spans a minute
    await call(channel, TRACES, protobuf_body(llm_spans(500, service="a")), globex)
    limited = await refusal(channel, TRACES, protobuf_body(llm_spans(200, service="b")), globex)
    assert limited.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    details_delay, trailer_delay = retry_seconds(limited)
    assert details_delay == trailer_delay > 0
    # Another organization is not limited by globex's traffic.
    await call(channel, TRACES, protobuf_body(llm_spans(1)), bearer(receiver.acme.ingest_key))
    receiver.app[ADMISSION].draining = True
    try:
        draining = await refusal(
            channel, TRACES, protobuf_body(llm_spans(1)), bearer(receiver.acme.ingest_key)
        )
    finally:
        receiver.app[ADMISSION].draining = False
    assert draining.code() is grpc.StatusCode.UNAVAILABLE
    assert retry_seconds(draining)[0] > 0
    trailers: dict[str, Any] = dict(draining.trailing_metadata() or ())
    assert status_pb2.Status.FromString(trailers["grpc-status-details-bin"]).code == (
        code_pb2.UNAVAILABLE
    )


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:10.1.2.3:5000", "10.1.2.3"),
        ("ipv6:[::1]:5000", "::1"),
        ("ipv6:[fe80::1%eth0]:5000", "fe80::1"),
        ("unix:/tmp/socket", None),
        ("", None),
    ],
)
def test_peer_host(peer: str, host: str | None) -> None:
    assert peer_host(peer) == host
