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

from aethermind.exporter.diagnose import ErrorAnswerRecorder

logger = logging.getLogger(__name__)

_MAX_REASONS_LOGGED = 32  # distinct reasons remembered, so the set stays small


class CountingExporter(SpanExporter):
    """Pass-through exporter that counts what was taken, shipped and failed; never raises.

    A failure is logged at error level once per distinct reason (the server's own message
    where ``answers`` recorded one), then at debug level, so a wrong key is one clear line,
    not one a batch."""

    def __init__(
        self,
        inner: SpanExporter,
        *,
        endpoint: str = "",
        answers: ErrorAnswerRecorder | None = None,
    ) -> None:
        self._inner = inner
        self._endpoint = endpoint
        self._answers = answers
        self._lock = threading.Lock()
        self._reasons_logged: set[str] = set()
        self.taken = 0
        self.exported = 0
        self.failed = 0
        self.failed_batches = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            self.taken += len(spans)
        try:
            result = self._inner.export(spans)
        except Exception:
            logger.exception("aethermind: export raised", extra={"spans": len(spans)})
            result = SpanExportResult.FAILURE
        answer = self._answers.take() if self._answers is not None else None
        with self._lock:
            if result is SpanExportResult.SUCCESS:
                self.exported += len(spans)
                return result
            self.failed += len(spans)
            self.failed_batches += 1
            reason = (
                answer.describe()
                if answer is not None
                else "no HTTP answer (is the receiver running at that address?)"
            )
            first = reason not in self._reasons_logged
            if first and len(self._reasons_logged) < _MAX_REASONS_LOGGED:
                self._reasons_logged.add(reason)
        (logger.error if first else logger.debug)(
            "aethermind: export to %s failed: %s; %d spans dropped",
            self._endpoint or "the exporter",
            reason,
            len(spans),
            extra={"endpoint": self._endpoint, "reason": reason, "spans": len(spans)},
        )
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
