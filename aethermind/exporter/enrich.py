"""Pure functions that turn one ended span into what Aethermind ships: usage and cost added,
content and credentials removed. Ended spans are immutable, so the result is a new span.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import StatusCode

from aethermind.semconv import Cost, PriceBook, UsageRecord, normalize
from aethermind.semconv import attributes as a
from aethermind.semconv.filtering import has_unshippable, is_content_key, shippable_attributes


def usage_attributes(record: UsageRecord, cost: Cost) -> dict[str, Any]:
    """The call's cost under the ``aethermind.`` namespace, for any backend to chart.

    Deliberately few: every attribute costs about 2 µs of OTLP encoding on every LLM span,
    and the usage itself is already on the span in its own convention (the receiver
    normalizes it again from there). ``record`` is what ``cost`` was computed from.
    """
    out: dict[str, Any] = {a.AETHERMIND_COST_SOURCE: cost.source}
    if cost.total is not None:
        # OTel attributes have no decimal type; float is the edge where the format demands it.
        out[a.AETHERMIND_COST_USD] = float(cost.total)
    if cost.price_model_id is not None:
        out[a.AETHERMIND_PRICE_MODEL] = cost.price_model_id
    return out


def _attributes_of(span: ReadableSpan) -> Mapping[str, Any]:
    """The span's attributes as a plain mapping, read-only.

    ``ReadableSpan.attributes`` is a read-only proxy over the SDK's ``BoundedAttributes``,
    whose every lookup runs Python-level mapping code under a lock: about 3 µs per span
    just to ask whether it is an LLM span. The SDK keeps the values in a plain dict inside;
    we read that one when it is there (never writing to it), else copy once.
    """
    inner = getattr(getattr(span, "_attributes", None), "_dict", None)
    if isinstance(inner, dict):
        return inner
    return dict(span.attributes or {})


def _shippable_events(events: Sequence[Event], *, capture_content: bool) -> tuple[Event, ...]:
    kept: list[Event] = []
    for event in events:
        if not capture_content and is_content_key(event.name):
            continue  # e.g. OpenLLMetry's gen_ai.content.prompt events carry the prompt itself
        attrs = shippable_attributes(event.attributes or {}, capture_content=capture_content)
        kept.append(Event(event.name, attrs, event.timestamp))
    return tuple(kept)


def enrich_span(
    span: ReadableSpan,
    *,
    price_book: PriceBook,
    capture_content: bool,
    export_all: bool,
) -> ReadableSpan | None:
    """The span to ship, or None when it is not an LLM span and we only ship those."""
    attributes = _attributes_of(span)
    scope = span.instrumentation_scope.name if span.instrumentation_scope else None
    record = normalize(
        attributes,
        None,  # service and environment stay on the resource; pricing does not need them
        scope=scope,
        status_error=span.status.status_code is StatusCode.ERROR,
    )
    if record is None:
        if not export_all:
            return None
        if not span.events and not has_unshippable(attributes, capture_content=capture_content):
            return span  # nothing to add or remove: ship the SDK's own span as it is
    new_attributes = shippable_attributes(attributes, capture_content=capture_content)
    if record is not None:
        cost = price_book.price(record, span.start_time or 0)
        new_attributes.update(usage_attributes(record, cost))
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=new_attributes,
        events=_shippable_events(span.events, capture_content=capture_content),
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )
