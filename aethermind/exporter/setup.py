"""``init_aethermind``: plug Aethermind into an application's OpenTelemetry setup in one call.

Joins the application's tracer provider when it has one (our processor goes beside its own),
ships LLM spans over OTLP/HTTP with the key, and instruments the LLM client libraries that
are installed.
"""

from __future__ import annotations

import atexit
import importlib
import importlib.util
import logging
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import requests
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from aethermind.exporter.config import ExporterConfig
from aethermind.exporter.diagnose import ErrorAnswerRecorder
from aethermind.exporter.processor import AethermindSpanProcessor
from aethermind.exporter.queue import BoundedQueue, CountingExporter
from aethermind.semconv import attributes as a

logger = logging.getLogger(__name__)

# (client library, instrumentation module, instrumentor class), preferred first. The first
# installed instrumentation of each library is used; add a row to support another library.
INSTRUMENTATIONS: tuple[tuple[str, str, str], ...] = (
    ("openai", "opentelemetry.instrumentation.openai", "OpenAIInstrumentor"),
    ("openai", "openinference.instrumentation.openai", "OpenAIInstrumentor"),
    ("anthropic", "opentelemetry.instrumentation.anthropic", "AnthropicInstrumentor"),
    ("anthropic", "openinference.instrumentation.anthropic", "AnthropicInstrumentor"),
)
# Client SDKs that trace themselves: when we also instrument them, ours are the spans shipped
# (half the traffic; the receiver would count the call once either way).
SELF_TRACING_SCOPES: dict[str, str] = a.SELF_TRACING_SDK_SCOPES


@dataclass(eq=False)
class AethermindHandle:
    """What ``init_aethermind`` set up: flush it, shut it down, read its counters."""

    tracer_provider: TracerProvider
    processor: AethermindSpanProcessor
    exporter: CountingExporter
    queue: BoundedQueue
    instrumented: tuple[str, ...]
    _shutdown: bool = field(default=False, repr=False)
    _failed_batches_seen: int = field(default=0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export what is queued; False when that timed out or when any export since the
        previous ``force_flush`` failed (the reason is in the log, once)."""
        flushed = self.processor.force_flush(timeout_millis)
        with self._lock:
            failed = self.exporter.failed_batches
            clean = failed == self._failed_batches_seen
            self._failed_batches_seen = failed
        return flushed and clean

    def shutdown(self) -> None:
        """Flush and stop our pipeline; idempotent, and leaves the app's own processors alone."""
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
        self.processor.shutdown()

    @property
    def stats(self) -> dict[str, int]:
        return {
            "enriched": self.processor.enriched,
            "skipped": self.processor.skipped,
            "exported": self.exporter.exported,
            "export_failed": self.exporter.failed,
            "dropped": self.queue.dropped,
        }


_handles: weakref.WeakKeyDictionary[TracerProvider, AethermindHandle] = weakref.WeakKeyDictionary()
_handles_lock = threading.Lock()


def init_aethermind(
    api_key: str | None = None,
    endpoint: str | None = None,
    *,
    service_name: str | None = None,
    capture_content: bool | None = None,
    instrument: bool | Iterable[str] = True,
    tracer_provider: TracerProvider | None = None,
    export_all: bool = False,
    exporter: SpanExporter | None = None,
    max_queue_size: int | None = None,
    export_timeout: float | None = None,
) -> AethermindHandle:
    """Send this application's LLM usage and cost to Aethermind.

    ``api_key``/``endpoint`` default to ``AETHERMIND_API_KEY``/``AETHERMIND_ENDPOINT``; a
    missing key raises ``ConfigError`` now rather than losing data later. ``instrument`` is
    True (every supported library that is installed), False, or library names. ``exporter``
    replaces the OTLP/HTTP exporter (tests, or a custom transport). ``max_queue_size`` bounds
    the spans held while the endpoint is slow or down (the excess is dropped and counted);
    ``export_timeout`` bounds each export, retries included. Calling it again for the same
    tracer provider returns the existing handle.
    """
    config = ExporterConfig.resolve(
        api_key,
        endpoint,
        capture_content=capture_content,
        export_all=export_all,
        max_queue_size=max_queue_size,
        export_timeout=export_timeout,
    )
    provider = _tracer_provider(tracer_provider, service_name)
    with _handles_lock:
        existing = _handles.get(provider)
        if existing is not None:
            logger.info("aethermind: already initialised for this tracer provider")
            return existing
        handle = _build(config, provider, exporter)
        _handles[provider] = handle
    handle.instrumented = _instrument(instrument, provider, handle.processor)
    atexit.register(handle.shutdown)
    logger.info(
        "aethermind: initialised",
        extra={"endpoint": config.traces_endpoint, "instrumented": list(handle.instrumented)},
    )
    return handle


def _tracer_provider(explicit: TracerProvider | None, service_name: str | None) -> TracerProvider:
    if explicit is not None:
        return explicit
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current  # the application's own: we join it
    # No SDK provider yet: build one the standard way (OTEL_SERVICE_NAME and
    # OTEL_RESOURCE_ATTRIBUTES are read by Resource.create) and make it the global one.
    attributes = {SERVICE_NAME: service_name} if service_name else {}
    provider = TracerProvider(resource=Resource.create(attributes))
    trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:
        logger.warning(
            "aethermind: a non-SDK global tracer provider is already set; using our own provider"
            " for the instrumented LLM clients only"
        )
    return provider


def _build(
    config: ExporterConfig, provider: TracerProvider, exporter: SpanExporter | None
) -> AethermindHandle:
    answers = ErrorAnswerRecorder()
    if exporter is None:
        session = requests.Session()
        session.hooks["response"].append(answers)
        exporter = OTLPSpanExporter(
            endpoint=config.traces_endpoint,
            headers={"Authorization": f"Bearer {config.api_key}"},
            compression=Compression.Gzip,
            timeout=config.export_timeout_seconds,
            session=session,
        )
    counting = CountingExporter(exporter, endpoint=config.traces_endpoint, answers=answers)
    batch = BatchSpanProcessor(
        counting,
        # Slack above our own counted bound, so the SDK never drops uncounted.
        max_queue_size=config.max_queue_size + config.max_export_batch_size,
        max_export_batch_size=config.max_export_batch_size,
        schedule_delay_millis=config.schedule_delay_millis,
    )
    queue = BoundedQueue(batch, counting, config.max_queue_size)
    processor = AethermindSpanProcessor(
        queue, capture_content=config.capture_content, export_all=config.export_all
    )
    provider.add_span_processor(processor)
    return AethermindHandle(provider, processor, counting, queue, ())


def _instrument(
    which: bool | Iterable[str], provider: TracerProvider, processor: AethermindSpanProcessor
) -> tuple[str, ...]:
    if which is False:
        return ()
    wanted = None if which is True else set(which)
    done: list[str] = []
    for library, module_name, class_name in INSTRUMENTATIONS:
        if library in done or (wanted is not None and library not in wanted):
            continue
        if importlib.util.find_spec(library) is None or not _module_available(module_name):
            continue
        try:
            instrumentor: Any = getattr(importlib.import_module(module_name), class_name)()
            if not instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.instrument(tracer_provider=provider)
        except Exception:
            logger.exception("aethermind: could not instrument", extra={"library": library})
            continue
        done.append(library)
        if library in SELF_TRACING_SCOPES:
            processor.drop_scope(SELF_TRACING_SCOPES[library])
    return tuple(done)


def _module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False
