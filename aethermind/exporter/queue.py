"""A counted bound in front of the SDK's BatchSpanProcessor.

The batch processor drops spans silently (a log line once) when its queue is full, and its
own drop metric is off unless an SDK-wide environment variable is set. We keep our own count
of spans handed over and spans taken by the exporter, refuse (and count) spans past our bound,
and give the batch processor's queue some slack so it never drops on its own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

logger = logging.getLogger(__name__)


class CountingExporter(SpanExporter):
    """Pass-through exporter that counts what was taken, shipped and failed; never raises."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.taken = 0
        self.exported = 0
        self.failed = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            self.taken += len(spans)
        try:
            result = self._inner.export(spans)
        except Exception:
            logger.exception("aethermind: export raised", extra={"spans": len(spans)})
            result = SpanExportResult.FAILURE
        with self._lock:
            if result is SpanExportResult.SUCCESS:
                self.exported += len(spans)
            else:
                self.failed += len(spans)
        if result is not SpanExportResult.SUCCESS:
            logger.warning("aethermind: export failed", extra={"spans": len(spans)})
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class BoundedQueue(SpanProcessor):
    """Hands spans to ``downstream`` while fewer than ``bound`` wait for ``exporter``."""

    def __init__(self, downstream: SpanProcessor, exporter: CountingExporter, bound: int) -> None:
        self._downstream = downstream
        self._exporter = exporter
        self._bound = bound
        self._lock = threading.Lock()
        self.handed = 0
        self.dropped = 0

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            if self.handed - self._exporter.taken >= self._bound:
                self.dropped += 1
                dropped = self.dropped
            else:
                self.handed += 1
                dropped = 0
        if dropped:
            if dropped == 1 or dropped % 1000 == 0:  # a warning, not a flood of them
                logger.warning(
                    "aethermind: export queue full, dropping spans", extra={"dropped": dropped}
                )
            return
        self._downstream.on_end(span)

    def shutdown(self) -> None:
        self._downstream.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._downstream.force_flush(timeout_millis)
