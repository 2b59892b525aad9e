"""The span processor: a thin OpenTelemetry shell over the pure functions in ``enrich``.

It sits beside the application's own processors, never changes the spans they see, and hands
new, enriched spans to a downstream processor (normally a BatchSpanProcessor over OTLP/HTTP).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from aethermind.exporter.attribution import span_attributes
from aethermind.exporter.enrich import enrich_span
from aethermind.semconv import PriceBook, default_price_book

logger = logging.getLogger(__name__)


class AethermindSpanProcessor(SpanProcessor):
    """Enrich LLM spans with normalized usage and cost, then pass them to ``downstream``.

    ``capture_content``: ship prompt and completion attributes (off by default; many teams
    must not send them). ``export_all``: ship non-LLM spans too. ``drop_scopes``: spans from
    these instrumentation scopes are never shipped, which is how a setup that has both an
    instrumentation package and a client SDK's built-in tracing avoids counting a call twice.
    """

    def __init__(
        self,
        downstream: SpanProcessor,
        *,
        capture_content: bool = False,
        export_all: bool = False,
        drop_scopes: Iterable[str] = (),
        price_book: PriceBook | None = None,
    ) -> None:
        self._downstream = downstream
        self._capture_content = capture_content
        self._export_all = export_all
        self._drop_scopes = frozenset(drop_scopes)
        self._price_book = price_book or default_price_book()
        self.enriched = 0
        self.skipped = 0
        self.failed = 0

    @property
    def downstream(self) -> SpanProcessor:
        return self._downstream

    def drop_scope(self, scope: str) -> None:
        """Stop shipping spans of ``scope`` (used by ``init_aethermind`` for de-duplication)."""
        self._drop_scopes = self._drop_scopes | {scope}

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        # Who and what the code around it spends for (``aethermind.attributes``), carried as
        # baggage; usage and cost wait for the end.
        try:
            attribution = span_attributes(parent_context)
            if attribution:
                span.set_attributes(attribution)
        except Exception:  # never raise into the app
            self.failed += 1

    def on_end(self, span: ReadableSpan) -> None:
        try:
            scope = span.instrumentation_scope
            if scope is not None and scope.name in self._drop_scopes:
                self.skipped += 1
                return
            enriched = enrich_span(
                span,
                price_book=self._price_book,
                capture_content=self._capture_content,
                export_all=self._export_all,
            )
            if enriched is None:
                self.skipped += 1
                return
            self.enriched += 1
            self._downstream.on_end(enriched)
        except Exception:  # telemetry must never raise into the application
            self.failed += 1
            logger.exception("aethermind: could not process a span", extra={"span_name": span.name})

    def shutdown(self) -> None:
        try:
            self._downstream.shutdown()
        except Exception:
            logger.exception("aethermind: span processor shutdown failed")

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        try:
            return self._downstream.force_flush(timeout_millis)
        except Exception:
            logger.exception("aethermind: span processor flush failed")
            return False
