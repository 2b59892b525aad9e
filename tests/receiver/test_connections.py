"""Keep-alive recycling (how several workers rebalance long-lived client connections)."""

from __future__ import annotations

import asyncio

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from tests.plugins.receiver import ReceiverFactory
from tests.receiver.helpers import PROTOBUF, llm_spans, protobuf_body


async def test_recycling_closes_connections_and_a_real_exporter_carries_on(
    receiver_factory: ReceiverFactory,
) -> None:
    receiver = await receiver_factory(recycle_connection_every=1)
    response = await receiver.session.post(
        receiver.traces_url,
        data=protobuf_body(llm_spans(2)),
        headers=receiver.acme.ingest_headers(**{"Content-Type": PROTOBUF}),
    )
    assert response.status == 200
    assert response.headers["Connection"] == "close"

    # One exporter, one HTTP session: every export after the first finds its connection
    # closed by the server and must open a new one without losing a batch.
    exporter = OTLPSpanExporter(
        endpoint=receiver.traces_url,
        headers={"Authorization": f"Bearer {receiver.acme.ingest_key}"},
        timeout=10,
    )
    try:
        for _ in range(5):
            result = await asyncio.to_thread(exporter.export, llm_spans(10))
            assert result is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    assert await receiver.count_rows(receiver.acme) == 2 + 5 * 10


async def test_without_recycling_connections_stay_open(receiver_factory: ReceiverFactory) -> None:
    receiver = await receiver_factory()
    for _ in range(3):
        response = await receiver.session.post(
            receiver.traces_url,
            data=protobuf_body(llm_spans(1)),
            headers=receiver.acme.ingest_headers(**{"Content-Type": PROTOBUF}),
        )
        assert response.status == 200
        assert response.headers.get("Connection", "keep-alive").lower() != "close"
