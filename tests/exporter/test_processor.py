"""The span processor on its own, in a hand-built OpenTelemetry setup."""

from __future__ import annotations

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aethermind.exporter import AethermindSpanProcessor
from tests.plugins.fake_provider import FakeProvider
from tests.plugins.instrumented import ANTHROPIC_SDK_SCOPE, run_scenario

LLM_ATTRIBUTES = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.usage.input_tokens": 1200,
    "gen_ai.usage.output_tokens": 300,
    "gen_ai.usage.cache_read.input_tokens": 400,
    "gen_ai.input.messages": '[{"role": "user", "content": "secret plan"}]',
    "gen_ai.headers": "{'Authorization': 'Bearer sk-live-123'}",
}


def pipeline(
    **options: object,
) -> tuple[TracerProvider, InMemorySpanExporter, AethermindSpanProcessor]:
    shipped = InMemorySpanExporter()
    processor = AethermindSpanProcessor(SimpleSpanProcessor(shipped), **options)  # type: ignore[arg-type]
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    provider.add_span_processor(processor)
    return provider, shipped, processor


def test_llm_spans_are_enriched_and_stripped_other_spans_are_not_shipped() -> None:
    provider, shipped, processor = pipeline()
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("chat gpt-4o") as span:
        span.set_attributes(LLM_ATTRIBUTES)
    with tracer.start_as_current_span("GET /health"):
        pass
    (sent,) = shipped.get_finished_spans()
    attrs = dict(sent.attributes or {})
    assert attrs["aethermind.cost.usd"] == 0.0055
    assert attrs["aethermind.cost.source"] == "computed"
    assert attrs["aethermind.cost.price_model"] == "gpt-4o"
    assert "gen_ai.input.messages" not in attrs
    assert "gen_ai.headers" not in attrs
    assert (processor.enriched, processor.skipped) == (1, 1)


def test_content_capture_keeps_content_but_never_credentials() -> None:
    provider, shipped, _ = pipeline(capture_content=True, export_all=True)
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("chat") as span:
        span.set_attributes(LLM_ATTRIBUTES)
    with tracer.start_as_current_span("GET /health"):
        pass
    llm, plain = shipped.get_finished_spans()
    assert "gen_ai.input.messages" in (llm.attributes or {})
    assert "gen_ai.headers" not in (llm.attributes or {})
    assert plain.name == "GET /health"
    assert not any(k.startswith("aethermind.") for k in plain.attributes or {})


def test_dropped_scopes_avoid_the_anthropic_double_count(fake_provider: FakeProvider) -> None:
    run = run_scenario(
        "openllmetry_anthropic", "anthropic_messages", fake_provider, anthropic_sdk_tracing=True
    )
    assert len(run.spans) == 2  # the instrumentation's span and the SDK's own
    shipped = InMemorySpanExporter()
    processor = AethermindSpanProcessor(
        SimpleSpanProcessor(shipped), drop_scopes=[ANTHROPIC_SDK_SCOPE]
    )
    for span in run.spans:
        processor.on_end(span)
    (only,) = shipped.get_finished_spans()
    assert only.instrumentation_scope is not None
    assert only.instrumentation_scope.name != ANTHROPIC_SDK_SCOPE


def test_the_processor_never_raises_into_the_application() -> None:
    class Broken(SimpleSpanProcessor):
        def on_end(self, span: object) -> None:  # type: ignore[override]
            raise RuntimeError("exporter bug")

    processor = AethermindSpanProcessor(Broken(InMemorySpanExporter()))
    provider = TracerProvider()
    provider.add_span_processor(processor)
    with provider.get_tracer("t").start_as_current_span("chat") as span:
        span.set_attributes(LLM_ATTRIBUTES)
    assert processor.failed == 1
