"""Building OTLP requests the way real clients do, for receiver tests."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


async def export_with_otel(
    spans: Sequence[ReadableSpan], url: str, key: str, *, gzip: bool = False
) -> SpanExportResult:
    """Ship ``spans`` with the real OTel Python OTLP/HTTP exporter (protobuf)."""
    exporter = OTLPSpanExporter(
        endpoint=url,
        headers={"Authorization": f"Bearer {key}"},
        compression=Compression.Gzip if gzip else Compression.NoCompression,
        timeout=10,
    )
    try:
        return await asyncio.to_thread(exporter.export, list(spans))
    finally:
        exporter.shutdown()


def llm_spans(
    count: int, *, service: str = "checkout", model: str = "gpt-4o", input_tokens: int = 1200
) -> list[ReadableSpan]:
    """``count`` real SDK spans shaped like the GenAI semconv's chat spans."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    for i in range(count):
        with tracer.start_as_current_span(f"chat {model}") as span:
            span.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": model,
                    "gen_ai.usage.input_tokens": input_tokens + i,
                    "gen_ai.usage.output_tokens": 300,
                    "gen_ai.usage.cache_read.input_tokens": 400,
                }
            )
    provider.shutdown()
    return list(exporter.get_finished_spans())


def protobuf_body(spans: Sequence[ReadableSpan]) -> bytes:
    body: bytes = encode_spans(spans).SerializeToString()
    return body


def random_trace_id() -> str:
    return os.urandom(16).hex()


def random_span_id() -> str:
    return os.urandom(8).hex()


RECENT_UNIX_NANO = (time.time_ns() // 1_000_000_000 - 3600) * 1_000_000_000
"""A whole second an hour before the tests started: inside every organization's time window."""


def otlp_json_span(
    *,
    trace_id: str | None = None,
    span_id: str | None = None,
    start: Any = str(RECENT_UNIX_NANO),
    end: Any = str(RECENT_UNIX_NANO + 250_000_000),
    attributes: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "traceId": trace_id or random_trace_id(),
        "spanId": span_id or random_span_id(),
        "name": "chat gpt-4o",
        "kind": 3,
        "startTimeUnixNano": start,
        "endTimeUnixNano": end,
        "attributes": attributes
        if attributes is not None
        else [
            {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
            {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
            {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "1200"}},
            {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 300}},
        ],
        "status": {"code": 1},
        **extra,
    }


def otlp_json_body(spans: list[dict[str, Any]], *, service: str = "checkout") -> bytes:
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": service}}]
                    },
                    "scopeSpans": [{"scope": {"name": "manual"}, "spans": spans}],
                }
            ]
        }
    ).encode()
