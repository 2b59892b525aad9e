"""Load for the fault tests: unique GenAI spans, sent by real OTel pipelines or plain HTTP,
with a ledger of what was sent, what was acknowledged (200) and what was given up on.

The ledger is the only thing wrapped around the real exporter: ``RecordingExporter`` passes
each batch to ``OTLPSpanExporter`` unchanged and notes the result it returned, the way
logfire's exporter wrappers chain (one overridden method, pass-through otherwise).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

PROTOBUF = "application/x-protobuf"
SpanKey = tuple[str, str]


def span_key(span: ReadableSpan) -> SpanKey:
    context = span.get_span_context()
    assert context is not None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


@dataclass
class Ledger:
    """What the clients know: spans handed to an exporter, acknowledged, and abandoned."""

    sent: set[SpanKey] = field(default_factory=set)
    acknowledged: set[SpanKey] = field(default_factory=set)
    abandoned: set[SpanKey] = field(default_factory=set)
    http_statuses: Counter[int] = field(default_factory=Counter)
    timeline: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, status)
    connection_errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record_status(self, status: int) -> None:
        with self.lock:
            self.http_statuses[status] += 1
            self.timeline.append((time.monotonic(), status))

    def first_after(self, moment: float, status: int = 200) -> float | None:
        """Seconds from ``moment`` to the first response with ``status`` after it."""
        with self.lock:
            times = [at for at, s in self.timeline if s == status and at >= moment]
        return min(times) - moment if times else None

    def summary(self) -> str:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.http_statuses.items()))
        return (
            f"spans sent={len(self.sent)} acknowledged={len(self.acknowledged)} "
            f"abandoned={len(self.abandoned)} http responses {{{statuses}}} "
            f"connection errors={self.connection_errors}"
        )


class RecordingExporter(SpanExporter):
    """Passes batches to the real exporter and notes in the ledger what it returned."""

    def __init__(self, inner: SpanExporter, ledger: Ledger) -> None:
        self._inner = inner
        self._ledger = ledger

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        keys = {span_key(s) for s in spans}
        with self._ledger.lock:
            self._ledger.sent |= keys
        result = self._inner.export(spans)
        with self._ledger.lock:
            if result is SpanExportResult.SUCCESS:
                self._ledger.acknowledged |= keys
            else:
                self._ledger.abandoned |= keys
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class RecordingSession(requests.Session):
    """A requests session that notes every HTTP status the exporter receives (retries
    included) and every attempt that got no HTTP answer at all."""

    def __init__(self, ledger: Ledger) -> None:
        super().__init__()
        self._ledger = ledger

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        try:
            response = super().request(*args, **kwargs)
        except requests.ConnectionError:
            with self._ledger.lock:
                self._ledger.connection_errors += 1
            raise
        self._ledger.record_status(response.status_code)
        return response


GENAI_ATTRIBUTES: dict[str, Any] = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.usage.output_tokens": 300,
}


class OtelPipelines:
    """``count`` applications, each a TracerProvider -> BatchSpanProcessor -> OTLP/HTTP
    exporter (protobuf, gzip), producing unique chat spans at a steady rate in threads."""

    def __init__(
        self,
        endpoint: str,
        key: str,
        *,
        count: int = 4,
        spans_per_second: float = 100.0,
        export_timeout: float = 60.0,
    ) -> None:
        self.ledger = Ledger()
        self.produced = 0
        self._produced_lock = threading.Lock()
        self._stop = threading.Event()
        self._interval = 1.0 / spans_per_second
        self._providers: list[TracerProvider] = []
        for i in range(count):
            exporter = OTLPSpanExporter(
                endpoint=endpoint,
                headers={"Authorization": f"Bearer {key}"},
                compression=Compression.Gzip,
                # Long enough to outlast the outage: the exporter retries 503 (honouring
                # Retry-After) and connection errors until this deadline or 6 attempts.
                timeout=export_timeout,
                session=RecordingSession(self.ledger),
            )
            provider = TracerProvider(resource=Resource.create({"service.name": f"load-{i}"}))
            provider.add_span_processor(
                BatchSpanProcessor(
                    RecordingExporter(exporter, self.ledger),
                    max_queue_size=100_000,  # the SDK drops on a full queue: never here
                    schedule_delay_millis=200,
                    max_export_batch_size=100,
                    export_timeout_millis=int(export_timeout * 1000),
                )
            )
            self._providers.append(provider)
        self._threads = [
            threading.Thread(target=self._produce, args=(p,), daemon=True) for p in self._providers
        ]

    def _produce(self, provider: TracerProvider) -> None:
        tracer = provider.get_tracer("aethermind.faults")
        n = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            with tracer.start_as_current_span("chat gpt-4o") as span:
                span.set_attributes(GENAI_ATTRIBUTES)
                span.set_attribute("gen_ai.usage.input_tokens", 1000 + n % 500)
            n += 1
            with self._produced_lock:
                self.produced += 1
            next_at += self._interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def start(self) -> OtelPipelines:
        for thread in self._threads:
            thread.start()
        return self

    def stop_producing(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def flush_and_shutdown(self, timeout: float = 90.0) -> None:
        for provider in self._providers:
            provider.force_flush(timeout_millis=int(timeout * 1000))
        for provider in self._providers:
            provider.shutdown()


# --- plain HTTP load ----------------------------------------------------------------------


def genai_request(
    count: int, *, service: str = "load", input_tokens: int = 1200
) -> tuple[bytes, list[SpanKey]]:
    """An OTLP protobuf body of ``count`` unique chat spans starting now, and their ids."""
    now = time.time_ns()
    spans = []
    keys = []
    for i in range(count):
        trace_id, span_id = os.urandom(16), os.urandom(8)
        keys.append((trace_id.hex(), span_id.hex()))
        spans.append(
            Span(
                trace_id=trace_id,
                span_id=span_id,
                name="chat gpt-4o",
                kind=Span.SPAN_KIND_CLIENT,
                start_time_unix_nano=now - 250_000_000,
                end_time_unix_nano=now,
                attributes=[
                    _kv("gen_ai.operation.name", "chat"),
                    _kv("gen_ai.provider.name", "openai"),
                    _kv("gen_ai.request.model", "gpt-4o"),
                    _kv("gen_ai.usage.input_tokens", input_tokens + i),
                    _kv("gen_ai.usage.output_tokens", 300),
                ],
            )
        )
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource={"attributes": [_kv("service.name", service)]},
                scope_spans=[ScopeSpans(scope={"name": "aethermind.faults"}, spans=spans)],
            )
        ]
    )
    return request.SerializeToString(), keys


def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


@dataclass
class Attempt:
    """One HTTP request of the plain load: when it ran, what came back."""

    keys: list[SpanKey]
    started: float
    finished: float
    status: int | None  # None: no HTTP answer (connection refused or reset)
    retry_after: str | None = None

    @property
    def seconds(self) -> float:
        return self.finished - self.started


class HttpLoad:
    """``clients`` threads posting fresh batches of ``batch`` spans back to back, keeping
    every attempt; a batch refused (503, 429, no answer) is re-sent until acknowledged,
    like an exporter would, while ``retry`` is true."""

    def __init__(
        self,
        url: str,
        key: str,
        *,
        clients: int = 4,
        batch: int = 200,
        timeout: float = 30.0,
        pause: float = 0.0,
        retry: bool = True,
        on_attempt: Callable[[Attempt], None] | None = None,
    ) -> None:
        self.url = f"{url}/v1/traces"
        self.headers = {"Content-Type": PROTOBUF, "Authorization": f"Bearer {key}"}
        self.batch = batch
        self.timeout = timeout
        self.pause = pause
        self.retry = retry
        self.attempts: list[Attempt] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._on_attempt = on_attempt
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        session = requests.Session()
        pending: tuple[bytes, list[SpanKey]] | None = None
        while True:
            if pending is None:
                if self.stopping.is_set():
                    return
                pending = genai_request(self.batch)
            body, keys = pending
            started = time.monotonic()
            try:
                response = session.post(
                    self.url, data=body, headers=self.headers, timeout=self.timeout
                )
                status: int | None = response.status_code
                retry_after = response.headers.get("Retry-After")
            except requests.RequestException:
                status, retry_after = None, None
                session = requests.Session()
            attempt = Attempt(keys, started, time.monotonic(), status, retry_after)
            with self.lock:
                self.attempts.append(attempt)
            if self._on_attempt is not None:
                self._on_attempt(attempt)
            if status == 200 or not self.retry:
                pending = None
            elif self.stopping.is_set() and self._given_up():
                return
            else:
                time.sleep(0.2)
            if self.pause:
                time.sleep(self.pause)

    def _given_up(self) -> bool:
        return getattr(self, "_give_up", False)

    def start(self) -> HttpLoad:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, *, drain_timeout: float = 60.0) -> None:
        """Stop making new batches; the pending ones are retried until acknowledged or
        ``drain_timeout`` passes."""
        self.stopping.set()
        deadline = time.monotonic() + drain_timeout
        for thread in self._threads:
            thread.join(timeout=max(deadline - time.monotonic(), 0.1))
        self._give_up = True
        for thread in self._threads:
            thread.join(timeout=10)

    @property
    def acknowledged(self) -> set[SpanKey]:
        return {k for a in self.attempts if a.status == 200 for k in a.keys}

    @property
    def sent(self) -> set[SpanKey]:
        return {k for a in self.attempts for k in a.keys}

    def statuses(self) -> Counter[int | None]:
        return Counter(a.status for a in self.attempts)
