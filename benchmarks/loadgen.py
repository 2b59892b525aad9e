"""Load generator for the receiver: asyncio, many concurrent clients, OTLP/protobuf requests
of realistic LLM spans built before timing. Used by bench_receiver.py; usable on its own:

    python benchmarks/loadgen.py URL KEY --seconds 20 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

REFUSED_BACKOFF_SECONDS = 0.25

MODELS = [
    ("openai", "gpt-4o", "gpt-4o-2024-08-06"),
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
    ("anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929"),
    ("anthropic", "claude-haiku-4-5", "claude-haiku-4-5-20251001"),
]


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def build_payloads(count: int, spans: int, *, variants: int = 8, users: int = 0) -> list[bytes]:
    """``count`` serialized requests of ``spans`` spans each, every span id unique.

    A few distinct requests are built attribute by attribute; copies get fresh ids (cheap),
    so a long run never re-sends a span and every acknowledged span is a new row. Response
    ids are fresh too: providers never repeat them (the writer matches spans of one request
    in two traces by them). With ``users``, every span names one of that many users
    (``user.id``) and a session of theirs (``session.id``), drawn afresh for each copy.
    """
    bases = [
        ExportTraceServiceRequest.FromString(build_request(spans, seed=seed, users=users))
        for seed in range(variants)
    ]
    rng = random.Random(1)
    payloads = []
    for i in range(count):
        request = bases[i % variants]
        for span in request.resource_spans[0].scope_spans[0].spans:
            span.trace_id = os.urandom(16)
            span.span_id = os.urandom(8)
            for attribute in span.attributes:
                if attribute.key == "gen_ai.response.id":
                    attribute.value.string_value = f"resp-{i}-{span.span_id.hex()}"
                elif attribute.key == "user.id":
                    user = rng.randrange(users)
                    attribute.value.string_value = f"user-{user}"
                elif attribute.key == "session.id":
                    attribute.value.string_value = f"session-{user}-{rng.randrange(20)}"
        payloads.append(request.SerializeToString())
    return payloads


class PayloadSupply:
    """Prebuilt requests handed out once each, so every acknowledged span is a new row."""

    def __init__(self, payloads: list[bytes]) -> None:
        self._payloads = payloads
        self._cursor = 0

    def take(self, n: int) -> list[bytes]:
        chunk = self._payloads[self._cursor : self._cursor + n]
        self._cursor += n
        if len(chunk) < n:
            raise SystemExit("not enough payloads; raise --requests")
        return chunk


def build_request(spans: int, *, seed: int, start_ns: int | None = None, users: int = 0) -> bytes:
    """One ExportTraceServiceRequest of ``spans`` LLM spans (~12 attributes each; with
    ``users``, also a user and a session of theirs)."""
    rng = random.Random(seed)
    now = start_ns or time.time_ns()
    out: list[Span] = []
    for i in range(spans):
        provider, model, response_model = rng.choice(MODELS)
        input_tokens = rng.randint(50, 8000)
        start = now - rng.randint(0, 3_600_000_000_000)
        attributes = [
            _kv("gen_ai.operation.name", "chat"),
            _kv("gen_ai.provider.name", provider),
            _kv("gen_ai.request.model", model),
            _kv("gen_ai.response.model", response_model),
            _kv("gen_ai.response.id", f"resp-{seed}-{i}"),
            _kv("gen_ai.usage.input_tokens", input_tokens),
            _kv("gen_ai.usage.output_tokens", rng.randint(10, 2000)),
            _kv("gen_ai.usage.cache_read.input_tokens", rng.randint(0, input_tokens // 2)),
            _kv("gen_ai.response.finish_reasons", "stop"),
            _kv("server.address", f"api.{provider}.com"),
            _kv("server.port", 443),
            _kv("gen_ai.request.max_tokens", 1024),
        ]
        if users:  # user first: build_payloads redraws both, the session from the user
            user = rng.randrange(users)
            attributes += [_kv("user.id", f"user-{user}"), _kv("session.id", f"session-{user}")]
        out.append(
            Span(
                trace_id=os.urandom(16),
                span_id=os.urandom(8),
                name=f"chat {model}",
                kind=Span.SPAN_KIND_CLIENT,
                start_time_unix_nano=start,
                end_time_unix_nano=start + rng.randint(200_000_000, 9_000_000_000),
                attributes=attributes,
                status=Status(code=Status.STATUS_CODE_UNSET),
            )
        )
    resource = Resource(
        attributes=[
            _kv("service.name", f"svc-{seed % 5}"),
            _kv("deployment.environment.name", "prod"),
        ]
    )
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=resource,
                scope_spans=[ScopeSpans(scope=InstrumentationScope(name="bench"), spans=out)],
            )
        ]
    )
    return request.SerializeToString()


@dataclass
class LoadResult:
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)  # seconds from the start, per latency
    outcomes: list[int] = field(default_factory=list)  # the status, per latency
    spans_ok: int = 0
    errors: int = 0
    elapsed: float = 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        return statistics.quantiles(self.latencies_ms, n=1000)[int(q * 1000) - 1]


Send = Callable[[bytes], Awaitable[int]]
"""Sends one payload; returns the status (HTTP's, or a gRPC code as the HTTP status it
stands for: OK 200, RESOURCE_EXHAUSTED 429, UNAVAILABLE 503); raises on a transport error."""


async def drive(
    url: str,
    key: str,
    payloads: list[bytes],
    spans_per_request: int,
    *,
    seconds: float,
    concurrency: int,
    rate_rps: float | None = None,
) -> LoadResult:
    """Send payloads round-robin for ``seconds`` from ``concurrency`` clients over OTLP/HTTP.

    With ``rate_rps`` the clients pace themselves to that many requests a second in total
    (an open-loop-ish load for latency); without, each sends as fast as answers come.
    """
    headers = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {key}"}
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def send(payload: bytes) -> int:
            async with session.post(url, data=payload, headers=headers) as response:
                await response.read()
                return response.status

        return await _drive(
            [send] * concurrency, payloads, spans_per_request, seconds=seconds, rate_rps=rate_rps
        )


GRPC_TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


async def drive_grpc(
    target: str,
    key: str,
    payloads: list[bytes],
    spans_per_request: int,
    *,
    seconds: float,
    concurrency: int,
    rate_rps: float | None = None,
) -> LoadResult:
    """As :func:`drive`, over OTLP/gRPC to ``target`` (host:port): one channel (one HTTP/2
    connection) per client, as ``concurrency`` HTTP connections are."""
    import grpc

    as_http = {grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.UNAVAILABLE: 503}
    metadata = (("authorization", f"Bearer {key}"),)
    # A local subchannel pool each: otherwise grpcio shares one connection among channels
    # to the same target, and every request would reach one serving process.
    local = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(target, options=local) for _ in range(concurrency)]
    try:
        senders = []
        for channel in channels:
            export = channel.unary_unary(GRPC_TRACES)

            async def send(payload: bytes, export: Any = export) -> int:
                try:
                    await export(payload, metadata=metadata, timeout=30)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() in as_http:
                        return as_http[exc.code()]
                    if exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
                        raise TimeoutError from exc
                    return 1000 + exc.code().value[0]
                return 200

            senders.append(send)
        return await _drive(
            senders, payloads, spans_per_request, seconds=seconds, rate_rps=rate_rps
        )
    finally:
        for channel in channels:
            await channel.close()


async def _drive(
    senders: list[Send],
    payloads: list[bytes],
    spans_per_request: int,
    *,
    seconds: float,
    rate_rps: float | None,
) -> LoadResult:
    result = LoadResult()
    concurrency = len(senders)
    next_index = 0
    run_started = time.perf_counter()
    deadline = time.perf_counter() + seconds
    interval = concurrency / rate_rps if rate_rps else 0.0

    async def client(send: Send, offset: float) -> None:
        nonlocal next_index
        await asyncio.sleep(offset)
        next_at = time.perf_counter()
        while time.perf_counter() < deadline:
            if interval:
                next_at += interval
            payload = payloads[next_index % len(payloads)]
            next_index += 1
            started = time.perf_counter()
            try:
                status = await send(payload)
            except (aiohttp.ClientError, TimeoutError):
                result.errors += 1
                continue
            result.latencies_ms.append((time.perf_counter() - started) * 1000)
            result.sent_at.append(started - run_started)
            result.outcomes.append(status)
            result.sent += 1
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status == 200:
                result.spans_ok += spans_per_request
            elif status in (429, 503):
                # Clients back off when refused (the OTel exporters retry after a delay);
                # a short pause here, so refusals do not turn into a busy loop.
                await asyncio.sleep(REFUSED_BACKOFF_SECONDS)
            if interval:
                delay = next_at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)

    started = run_started = time.perf_counter()
    await asyncio.gather(
        *(
            client(send, i * interval / concurrency if interval else 0)
            for i, send in enumerate(senders)
        )
    )
    result.elapsed = time.perf_counter() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("key")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--spans", type=int, default=512)
    args = parser.parse_args()
    payloads = build_payloads(int(args.seconds * 100), args.spans)
    result = asyncio.run(
        drive(
            args.url,
            args.key,
            payloads,
            args.spans,
            seconds=args.seconds,
            concurrency=args.concurrency,
        )
    )
    print(
        f"{result.spans_ok / result.elapsed:,.0f} spans/s acknowledged; statuses {result.statuses}; "
        f"p50 {result.percentile(0.5):.1f} ms p99 {result.percentile(0.99):.1f} ms"
    )


if __name__ == "__main__":
    main()
