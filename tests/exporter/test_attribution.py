"""``aethermind.attributes``: spans started inside carry the user, session and tags, in this
service and, through the real W3C baggage propagator, in the service it calls."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import aethermind
from aethermind.exporter import AethermindSpanProcessor


@pytest.fixture
def shipped() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(
        AethermindSpanProcessor(SimpleSpanProcessor(exporter), export_all=True)
    )
    yield provider, exporter
    provider.shutdown()


def attributes_of(exporter: InMemorySpanExporter, name: str) -> dict[str, object]:
    [span] = [s for s in exporter.get_finished_spans() if s.name == name]
    return {k: v for k, v in (span.attributes or {}).items() if not k.startswith("aethermind.")}


def test_spans_inside_carry_them_and_spans_outside_do_not(
    shipped: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = shipped
    tracer = provider.get_tracer("app")
    with aethermind.attributes(user="alice", session="s-1", tags={"team": "search"}):
        with tracer.start_as_current_span("inside"):
            pass
        with aethermind.attributes(user="bob"):  # nested: the inner one wins for user
            with tracer.start_as_current_span("nested"):
                pass
    with tracer.start_as_current_span("outside"):
        pass
    assert attributes_of(exporter, "inside") == {
        "user.id": "alice",
        "session.id": "s-1",
        "team": "search",
    }
    assert attributes_of(exporter, "nested") == {
        "user.id": "bob",
        "session.id": "s-1",
        "team": "search",
    }
    assert attributes_of(exporter, "outside") == {}


def test_as_a_decorator_of_plain_and_async_functions(
    shipped: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = shipped
    tracer = provider.get_tracer("app")
    tag = aethermind.attributes(session="conv-9")

    @tag
    def plain() -> None:
        with tracer.start_as_current_span("plain"):
            pass

    @tag
    async def coroutine() -> None:
        await asyncio.sleep(0)
        with tracer.start_as_current_span("async"):
            pass

    plain()
    asyncio.run(coroutine())
    assert attributes_of(exporter, "plain") == {"session.id": "conv-9"}
    assert attributes_of(exporter, "async") == {"session.id": "conv-9"}


def test_they_cross_to_the_called_service_as_w3c_baggage(
    shipped: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """The caller's propagator writes the `baggage` header; the callee (another thread, with
    its own context) extracts it as a server instrumentation does."""
    provider, exporter = shipped
    headers: dict[str, str] = {}
    with aethermind.attributes(user="carol", tags={"customer": "acme corp"}):
        W3CBaggagePropagator().inject(headers)
    assert "baggage" in headers

    def callee() -> None:
        token = otel_context.attach(W3CBaggagePropagator().extract(headers))
        try:
            with provider.get_tracer("callee").start_as_current_span("handled"):
                pass
        finally:
            otel_context.detach(token)

    thread = threading.Thread(target=callee)
    thread.start()
    thread.join()
    assert attributes_of(exporter, "handled") == {"user.id": "carol", "customer": "acme corp"}


def test_bad_values_are_refused_where_they_are_written() -> None:
    with pytest.raises(ValueError, match=r"user\.id"):
        aethermind.attributes(user="")
    with pytest.raises(ValueError, match="tag"):
        aethermind.attributes(tags={"": "x"})
