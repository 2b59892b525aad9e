"""SDK overhead: a span's full start-to-export cost with the bare OpenTelemetry SDK and with
Aethermind's processor in front of the same exporter, measured in one run.

Both pipelines batch 512 spans and encode them exactly as the OTLP/HTTP exporter does
(`encode_spans(...).SerializeToString()`), synchronously on the measuring thread so the
export work is counted; only the network write is left out (it is the same for both).

Targets (issue 4 of 7): non-LLM spans +5% at most; LLM spans (normalize + price + enrich)
+25% at most.

    python benchmarks/bench_sdk.py
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

from aethermind.exporter import AethermindSpanProcessor

BATCH = 512
SPANS = 20_000
ROUNDS = 7


class EncodingExporter(SpanExporter):
    """Does what OTLPSpanExporter does to a batch, short of sending it."""

    def __init__(self) -> None:
        self.bytes = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.bytes += len(encode_spans(spans).SerializeToString())
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


class InlineBatchProcessor(SpanProcessor):
    """A batch processor that exports on the ending thread, so the benchmark times export."""

    def __init__(self, exporter: SpanExporter) -> None:
        self._exporter = exporter
        self._batch: list[ReadableSpan] = []

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        self._batch.append(span)
        if len(self._batch) >= BATCH:
            self._exporter.export(self._batch)
            self._batch = []

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        if self._batch:
            self._exporter.export(self._batch)
            self._batch = []
        return True


LLM_ATTRIBUTES = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.response.id": "chatcmpl-abc123",
    "gen_ai.usage.input_tokens": 1200,
    "gen_ai.usage.output_tokens": 300,
    "gen_ai.usage.cache_read.input_tokens": 400,
    "gen_ai.response.finish_reasons": ("stop",),
    "gen_ai.request.max_tokens": 1024,
    "server.address": "api.openai.com",
    "server.port": 443,
}
HTTP_ATTRIBUTES = {
    "http.request.method": "POST",
    "url.full": "https://shop.example.com/api/checkout",
    "url.scheme": "https",
    "http.response.status_code": 200,
    "server.address": "shop.example.com",
    "server.port": 443,
    "network.protocol.version": "1.1",
    "user_agent.original": "Mozilla/5.0",
    "http.route": "/api/checkout",
    "client.address": "10.0.0.7",
    "url.path": "/api/checkout",
    "http.request.body.size": 512,
}


def pipeline(mode: str, **options: object) -> tuple[TracerProvider, SpanProcessor]:
    """``bare``: the app's exporter; ``front``: ours in front of that same exporter;
    ``beside``: the app's exporter with ours added beside it (its own exporter)."""
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    app = InlineBatchProcessor(EncodingExporter())
    if mode == "front":
        ours = AethermindSpanProcessor(app, **options)  # type: ignore[arg-type]
        provider.add_span_processor(ours)
        return provider, ours
    provider.add_span_processor(app)
    if mode == "beside":
        provider.add_span_processor(
            AethermindSpanProcessor(InlineBatchProcessor(EncodingExporter()))
        )
    return provider, provider._active_span_processor  # flushes every processor


def per_span_us(
    make: Callable[[], tuple[TracerProvider, SpanProcessor]], attributes: dict[str, object]
) -> float:
    provider, processor = make()
    tracer = provider.get_tracer("bench")
    kind = SpanKind.CLIENT
    gc.collect()
    started = time.perf_counter()
    for _ in range(SPANS):
        with tracer.start_as_current_span("span", kind=kind, attributes=attributes):
            pass
    processor.force_flush()
    return (time.perf_counter() - started) / SPANS * 1e6


def compare(
    label: str, attributes: dict[str, object], mode: str, **options: object
) -> tuple[float, float]:
    bare_runs, our_runs = [], []
    for _ in range(ROUNDS):  # interleaved, so drift of the machine hits both alike
        bare_runs.append(per_span_us(lambda: pipeline("bare"), attributes))
        our_runs.append(per_span_us(lambda: pipeline(mode, **options), attributes))
    bare, ours = statistics.median(bare_runs), statistics.median(our_runs)
    print(
        f"{label:<44} bare {bare:6.1f} us/span   with Aethermind {ours:6.1f} us/span   {ours / bare - 1:+6.1%}"
    )
    return bare, ours


def main() -> None:
    per_span_us(lambda: pipeline("front"), LLM_ATTRIBUTES)  # warm the pricing caches
    compare("non-LLM, ours beside the app's exporter", HTTP_ATTRIBUTES, "beside")
    compare("non-LLM, through ours (export_all=True)", HTTP_ATTRIBUTES, "front", export_all=True)
    compare("LLM, through ours (normalize+price+enrich)", LLM_ATTRIBUTES, "front")
    print("targets: non-LLM <= +5%, LLM <= +25%")


if __name__ == "__main__":
    main()
