"""OTLP trace request decoding: spans/s for 512-span requests, protobuf and OTLP/JSON, next to
the bare parse of the same bytes measured in the same run.

The request is what the OTel Python SDK exporter sends for 512 LLM client spans with the
GenAI attributes instrumentations set (12 per span, one an array) under one resource; the
OTLP/JSON body is its spec rendering (hex ids, integer enums). Bodies are built before
timing. Baselines:

* protobuf: ``ExportTraceServiceRequest.FromString`` alone, and that parse plus the least
  walk that reads every attribute once (the floor for any decoder over the upb classes);
* JSON: ``json.loads`` alone;
* body: reading the gzip-compressed protobuf through ``read_body`` (inflate within limits).

Target: decoding 512 spans well under 5 ms (the receiver must commit >= 30,000 spans/s).

    python benchmarks/bench_decode.py [--spans 512] [--rounds 200]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import json
import statistics
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from aethermind.ingest.otlp import decode_traces, read_body

MODELS = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash"]


def build_request(count: int) -> ExportTraceServiceRequest:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": "support-bot", "deployment.environment": "production"}
        )
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("opentelemetry.instrumentation.openai.v1", "0.40.14")
    for i in range(count):
        model = MODELS[i % len(MODELS)]
        with tracer.start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT) as span:
            span.set_attributes(
                {
                    "gen_ai.system": "openai",
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": model,
                    "gen_ai.response.model": f"{model}-2024-08-06",
                    "gen_ai.response.id": f"chatcmpl-{i:012d}",
                    "gen_ai.usage.input_tokens": 1000 + i,
                    "gen_ai.usage.output_tokens": 200 + i % 300,
                    "gen_ai.request.temperature": 0.2,
                    "gen_ai.request.max_tokens": 1024,
                    "gen_ai.response.finish_reasons": ("stop",),
                    "server.address": "api.openai.com",
                    "llm.is_streaming": i % 2 == 0,
                }
            )
    provider.shutdown()
    return encode_spans(exporter.get_finished_spans())


def otlp_json(request: ExportTraceServiceRequest) -> bytes:
    document: dict[str, Any] = json_format.MessageToDict(request, use_integers_for_enums=True)
    for resource_spans in document["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for field in ("traceId", "spanId", "parentSpanId"):
                    if field in span:
                        span[field] = base64.b64decode(span[field]).hex()
    return json.dumps(document, separators=(",", ":")).encode()


def parse_and_touch(body: bytes) -> None:
    """The floor: parse, then read every span's attributes once, doing nothing else."""
    which = AnyValue.WhichOneof
    request = ExportTraceServiceRequest.FromString(body)
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                for pair in span.attributes:
                    value = pair.value
                    name = which(value, "value")
                    if name:
                        getattr(value, name)
                    pair.key  # noqa: B018 - reading it is the point


async def _chunks(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def timed(function: Callable[[], object], rounds: int) -> list[float]:
    function()  # warm up
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return samples


def report(label: str, samples: list[float], spans: int) -> None:
    median = statistics.median(samples)
    best = min(samples)
    print(
        f"{label:<48} median {median * 1e3:7.3f} ms  best {best * 1e3:7.3f} ms"
        f"  {spans / median:>11,.0f} spans/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()

    request = build_request(args.spans)
    protobuf = request.SerializeToString()
    json_body = otlp_json(request)
    gzipped = gzip.compress(protobuf)
    assert len(decode_traces(protobuf, "application/x-protobuf").spans) == args.spans
    assert len(decode_traces(json_body, "application/json").spans) == args.spans
    attributes = sum(
        len(span.attributes) for span in decode_traces(protobuf, "application/x-protobuf").spans
    )
    print(
        f"{args.spans} spans, {attributes / args.spans:.0f} attributes each; protobuf "
        f"{len(protobuf):,} B (gzip {len(gzipped):,} B), OTLP/JSON {len(json_body):,} B; "
        f"{args.rounds} rounds"
    )
    n = args.spans
    rounds = args.rounds
    report(
        "protobuf baseline: FromString only",
        timed(lambda: ExportTraceServiceRequest.FromString(protobuf), rounds),
        n,
    )
    report(
        "protobuf baseline: FromString + read attributes",
        timed(lambda: parse_and_touch(protobuf), rounds),
        n,
    )
    report(
        "protobuf: decode_traces",
        timed(lambda: decode_traces(protobuf, "application/x-protobuf"), rounds),
        n,
    )
    report("json baseline: json.loads only", timed(lambda: json.loads(json_body), rounds), n)
    report(
        "json: decode_traces",
        timed(lambda: decode_traces(json_body, "application/json"), rounds),
        n,
    )
    report("body: read_body of gzip protobuf", asyncio.run(timed_read(gzipped, rounds)), n)
    report("body: gzip.decompress baseline", timed(lambda: gzip.decompress(gzipped), rounds), n)


async def timed_read(gzipped: bytes, rounds: int) -> list[float]:
    """Timed inside one event loop: ``asyncio.run`` per call would cost more than the read."""
    await read_body(_chunks(gzipped), content_encoding="gzip")
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        await read_body(_chunks(gzipped), content_encoding="gzip")
        samples.append(time.perf_counter() - start)
    return samples


if __name__ == "__main__":
    main()
