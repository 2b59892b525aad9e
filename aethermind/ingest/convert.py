"""Decoded OTLP spans -> stored rows: which spans are kept, what is removed, what they cost.

Pure: no I/O. The receiver computes cost itself from the tokens (authoritative); a cost the
span carried is kept beside it as ``provided_cost``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from aethermind.ingest.events import ReportedCall
from aethermind.ingest.otlp import DecodedSpan
from aethermind.ingest.policy import TenantPolicy
from aethermind.ingest.window import TimeWindow
from aethermind.semconv import PriceBook, UsageRecord, normalize
from aethermind.semconv.attributes import ATTRIBUTION_KEYS as _ATTRIBUTION_KEYS
from aethermind.semconv.filtering import shippable_attributes
from aethermind.semconv.record import MAX_NAME_LENGTH
from aethermind.storage.inheritance import Values, dimensions_of, nearest_values, own_values
from aethermind.storage.span_row import copy_row
from aethermind.storage.tags import TAG_PREFIX, tag_values

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
    carriers: int = 0
    """Spans that are not GenAI spans but name a user, session, agent or tag value: kept
    without their attributes, so that the spans under them that arrive in other requests
    inherit their values (``storage/inheritance.py``)."""
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
        self.carriers += other.carriers
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
    # What each span names itself, read once: it decides whether a span that is not a GenAI
    # span is kept (a carrier), what a stored span passes on, and what the request's spans
    # inherit from one another.
    may_name = _ATTRIBUTION_KEYS.union(tag_keys) if tag_keys else _ATTRIBUTION_KEYS
    given = {
        (span.trace_id, span.span_id): own_values(span.attributes, tag_keys)
        for span in spans
        if not may_name.isdisjoint(span.attributes)
    }
    tree = _request_tree(spans, given)
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
        inheritable = given.get((span.trace_id, span.span_id)) if given else None
        carrier = False
        if record is None:
            if not keep_all_spans:
                carrier = inheritable is not None
                if not carrier:
                    result.dropped_not_genai += 1
                    continue
                result.carriers += 1
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
        if tree is not None and span.parent_span_id:
            record, tags, inheritable = _inherit(
                span, record, tags, inheritable, tree=tree, tag_keys=tag_keys
            )
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
                attributes={}
                if carrier
                else shippable_attributes(attributes, capture_content=capture),
                resource_attributes=cached[1],
                instrumentation_scope=span.scope_name[:MAX_NAME_LENGTH] or None,
                tags=tags,
                inheritable=inheritable,
            )
        )
    return result


@dataclass(slots=True)
class _RequestTree:
    """The spans of one request by (trace id, span id): each one's parent, and the values
    of those whose own attributes name any (``storage/inheritance.py``)."""

    parent_of: dict[tuple[str, str], tuple[str, str] | None]
    given: dict[tuple[str, str], Values | None]


def _request_tree(
    spans: Sequence[DecodedSpan], given: dict[tuple[str, str], Values | None]
) -> _RequestTree | None:
    """The request's tree when a span of it may inherit (some span names a parent, and some
    span names a value: ``given``); None otherwise, the common case of root spans alone."""
    if not any(given.values()) or not any(span.parent_span_id for span in spans):
        return None
    parent_of = {
        (span.trace_id, span.span_id): (span.trace_id, span.parent_span_id)
        if span.parent_span_id
        else None
        for span in spans
    }
    return _RequestTree(parent_of, given)


def _inherit(
    span: DecodedSpan,
    record: UsageRecord,
    tags: dict[str, str | None] | None,
    inheritable: Values | None,
    *,
    tree: _RequestTree,
    tag_keys: tuple[str, ...],
) -> tuple[UsageRecord, dict[str, str | None] | None, Values | None]:
    """``span``'s record, tags and what it passes on, with the values it does not name
    itself taken from its nearest ancestor in the request that names them."""
    own = inheritable or {}
    missing = [d for d in dimensions_of(tag_keys) if d not in own]
    parent = (span.trace_id, span.parent_span_id)
    inherited = nearest_values(missing, parent, tree.parent_of, tree.given)
    if not inherited:
        return record, tags, inheritable
    record = replace(
        record,
        user=inherited.get("user", record.user),
        session=inherited.get("session", record.session),
        agent=inherited.get("agent", record.agent),
    )
    if tags is not None:
        tags = {key: inherited.get(TAG_PREFIX + key, value) for key, value in tags.items()}
    return record, tags, {**inherited, **own}


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
                parent_span_id=call.parent_span_id,
                kind="CLIENT",  # an outgoing call to the provider
                duration_ms=(call.end_time_unix_nano - start) / 1e6,
                status="ERROR" if call.failed else "UNSET",
                attributes=shippable_attributes(call.attributes, capture_content=capture),
                resource_attributes=call.resource_attributes,
                instrumentation_scope=call.scope,
            )
        )
    return result
