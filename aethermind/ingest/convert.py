"""Decoded OTLP spans -> stored rows: which spans are kept, what is removed, what they cost.

Pure: no I/O. The receiver computes cost itself from the tokens (authoritative); a cost the
span carried is kept beside it as ``provided_cost``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aethermind.ingest.events import ReportedCall
from aethermind.ingest.otlp import DecodedSpan
from aethermind.ingest.policy import TenantPolicy
from aethermind.ingest.window import TimeWindow
from aethermind.semconv import PriceBook, UsageRecord, normalize
from aethermind.semconv.filtering import shippable_attributes
from aethermind.semconv.record import MAX_NAME_LENGTH
from aethermind.storage.span_row import copy_row
from aethermind.storage.tags import tag_values

SPAN_KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
STATUS_CODES = ("UNSET", "OK", "ERROR")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class Conversion:
    """The rows to store and what happened to the rest."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    """``storage.span_row.CopyRow`` tuples, as the writer's COPY takes them."""
    dropped_not_genai: int = 0
    out_of_window: int = 0
    """Spans rejected for a start time outside the organization's window (``window.py``)."""
    dimensions_cut: int = 0
    """Spans whose user, session or agent was cut to ``MAX_NAME_LENGTH``."""
    window: TimeWindow | None = None

    @property
    def rejection_message(self) -> str:
        """Why ``out_of_window`` spans were rejected, for the response; empty when none were."""
        if self.window is None or not self.out_of_window:
            return ""
        return self.window.reason(self.out_of_window)

    def add(self, other: Conversion) -> None:
        """Append the conversion of the next slice of the same request."""
        self.rows.extend(other.rows)
        self.dropped_not_genai += other.dropped_not_genai
        self.out_of_window += other.out_of_window
        self.dimensions_cut += other.dimensions_cut
        self.window = self.window or other.window


def spans_to_rows(
    spans: Sequence[DecodedSpan],
    *,
    policy: TenantPolicy,
    price_book: PriceBook,
    window: TimeWindow | None = None,
    keep_all_spans: bool = False,
) -> Conversion:
    result = Conversion(window=window)
    # Resources are shared by the spans of one ResourceSpans: filter each once.
    resources: dict[int, tuple[Mapping[str, Any], dict[str, Any]]] = {}
    capture = policy.capture_content
    tag_keys = policy.tag_keys
    for span in spans:
        if window is not None and not window.admits(span.start_time_unix_nano):
            result.out_of_window += 1
            continue
        attributes = span.attributes
        resource = span.resource_attributes
        status_error = span.status_code == 2
        record = normalize(
            attributes,
            resource,
            scope=span.scope_name or None,
            status_error=status_error,
        )
        if record is None:
            if not keep_all_spans:
                result.dropped_not_genai += 1
                continue
            record = _plain_record(resource, status_error)
        elif record.cut:
            result.dimensions_cut += 1
        cached = resources.get(id(resource))
        if cached is None or cached[0] is not resource:
            cached = (resource, shippable_attributes(resource, capture_content=capture))
            resources[id(resource)] = cached
        start = span.start_time_unix_nano
        cost = price_book.price(record, start, overrides=policy.overrides, lookups=policy.lookups)
        tags = None
        if tag_keys:
            tags, cut = tag_values(tag_keys, attributes, resource)
            if cut and not record.cut:
                result.dimensions_cut += 1
        result.rows.append(
            copy_row(
                record,
                cost,
                trace_id=span.trace_id,
                span_id=span.span_id,
                name=span.name,
                timestamp=_EPOCH + timedelta(microseconds=start // 1000),
                parent_span_id=span.parent_span_id,
                kind=SPAN_KINDS[span.kind] if 0 <= span.kind < len(SPAN_KINDS) else None,
                duration_ms=(span.end_time_unix_nano - start) / 1e6,
                status=STATUS_CODES[span.status_code] if 0 <= span.status_code <= 2 else "UNSET",
                attributes=shippable_attributes(attributes, capture_content=capture),
                resource_attributes=cached[1],
                instrumentation_scope=span.scope_name[:MAX_NAME_LENGTH] or None,
                tags=tags,
            )
        )
    return result


def _plain_record(resource: Mapping[str, Any], status_error: bool) -> UsageRecord:
    """A non-GenAI span kept with --keep-all-spans: no usage, not a model call."""
    from aethermind.semconv import attributes as a

    service = resource.get(a.SERVICE_NAME)
    environment = resource.get(a.DEPLOYMENT_ENVIRONMENT_NAME) or resource.get(
        a.DEPLOYMENT_ENVIRONMENT
    )
    return UsageRecord(
        service=service if isinstance(service, str) else None,
        environment=environment if isinstance(environment, str) else None,
        error_type="_OTHER" if status_error else None,
        is_llm_call=False,
    )


def calls_to_rows(
    calls: Sequence[ReportedCall],
    *,
    policy: TenantPolicy,
    price_book: PriceBook,
    window: TimeWindow | None = None,
) -> Conversion:
    """The rows of calls reported as plain events (``ingest/events.py``): priced like spans,
    their extra attributes filtered like span attributes."""
    result = Conversion(window=window)
    capture = policy.capture_content
    for call in calls:
        start = call.start_time_unix_nano
        if window is not None and not window.admits(start):
            result.out_of_window += 1
            continue
        cost = price_book.price(
            call.usage, start, overrides=policy.overrides, lookups=policy.lookups
        )
        result.rows.append(
            copy_row(
                call.usage,
                cost,
                trace_id=call.trace_id,
                span_id=call.span_id,
                name=call.name,
                timestamp=_EPOCH + timedelta(microseconds=start // 1000),
                parent_span_id=None,
                kind="CLIENT",  # an outgoing call to the provider
                duration_ms=(call.end_time_unix_nano - start) / 1e6,
                status="ERROR" if call.failed else "UNSET",
                attributes=shippable_attributes(call.attributes, capture_content=capture),
                resource_attributes=call.resource_attributes,
            )
        )
    return result
