"""The row the writer stores for one span (``TelemetryRow``), and how to build it from the
normalized ``UsageRecord`` and ``Cost`` plus the span's own fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from aethermind.semconv.record import Cost, UsageRecord

SPAN_STATUSES = frozenset({"UNSET", "OK", "ERROR"})


@dataclass(frozen=True, slots=True)
class TelemetryRow:
    """One ``telemetry_events`` row, minus ``id`` (assigned by the database), ``model``
    (a generated column: response model, else request model) and ``organization_id``
    (given to ``write_rows`` once per batch, so a batch can never mix tenants).

    ``timestamp`` is the span's start time and must be timezone-aware. ``trace_id`` and
    ``span_id`` are lowercase hex (32 and 16 characters in OTLP). ``cost`` is None when the
    span could not be priced. ``cost_source`` is ``computed``/``provided``/``unknown``, or
    None for spans that are not model calls (agent and tool spans): those never count as
    unpriced.
    """

    trace_id: str
    span_id: str
    name: str
    timestamp: datetime
    parent_span_id: str | None = None
    kind: str | None = None
    duration_ms: float | None = None
    status: str = "UNSET"
    error_type: str | None = None
    service: str | None = None
    environment: str | None = None
    provider: str | None = None
    operation: str | None = None
    request_model: str | None = None
    response_model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    total_tokens: int | None = None
    cost: Decimal | None = None
    cost_input: Decimal | None = None
    cost_cache_read: Decimal | None = None
    cost_cache_write: Decimal | None = None
    cost_output: Decimal | None = None
    cost_source: str | None = None
    price_model_id: str | None = None
    provided_cost: Decimal | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    resource_attributes: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.timestamp.tzinfo is None or self.timestamp.utcoffset() is None:
            raise ValueError(f"timestamp must be timezone-aware (span {self.span_id!r})")
        if not self.trace_id or not self.span_id:
            raise ValueError("trace_id and span_id must be non-empty")
        if self.status not in SPAN_STATUSES:
            raise ValueError(f"status must be one of {sorted(SPAN_STATUSES)}, got {self.status!r}")

    @property
    def model(self) -> str | None:
        """What the database's generated ``model`` column will hold."""
        return self.response_model or self.request_model


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(TelemetryRow))
"""The ``telemetry_events`` columns a ``TelemetryRow`` fills, in field order."""


def row_from_usage(
    record: UsageRecord,
    cost: Cost,
    *,
    trace_id: str,
    span_id: str,
    name: str,
    timestamp: datetime,
    parent_span_id: str | None = None,
    kind: str | None = None,
    duration_ms: float | None = None,
    status: str = "UNSET",
    attributes: Mapping[str, Any] | None = None,
    resource_attributes: Mapping[str, Any] | None = None,
) -> TelemetryRow:
    """Build the stored row for one span from its normalized usage and its cost.

    A span whose record carries ``error_type`` is stored with status ``ERROR`` even when the
    instrumentation left the OTel status unset. ``total_tokens`` falls back to input + output
    when the span gave both but no total. Non-model spans (``is_llm_call`` False) keep no
    cost source, so they are never counted as unpriced calls.
    """
    return TelemetryRow(
        *record_from_usage(
            record,
            cost,
            money_as_text=False,
            trace_id=trace_id,
            span_id=span_id,
            name=name,
            timestamp=timestamp,
            parent_span_id=parent_span_id,
            kind=kind,
            duration_ms=duration_ms,
            status=status,
            attributes=dict(attributes or {}),
            resource_attributes=dict(resource_attributes or {}),
        )
    )


def record_from_usage(
    record: UsageRecord,
    cost: Cost,
    *,
    trace_id: str,
    span_id: str,
    name: str,
    timestamp: datetime,
    parent_span_id: str | None,
    kind: str | None,
    duration_ms: float | None,
    status: str,
    attributes: Mapping[str, Any],
    resource_attributes: Mapping[str, Any],
    money_as_text: bool = True,
) -> tuple[Any, ...]:
    """``row_from_usage`` as the writer's COPY record: a tuple in ``COLUMNS`` order, money
    as decimal text unless ``money_as_text`` is False (binary ``numeric`` encoding costs
    about 1.5 µs a value; the writer's staging table takes text and PostgreSQL casts it).

    The caller vouches for what ``TelemetryRow.__post_init__`` would check (an aware
    timestamp, non-empty ids, a known status), as the receiver's decoder guarantees.
    """
    money = _decimal_text if money_as_text else _same
    total = record.total_tokens
    if total is None and record.input_tokens is not None and record.output_tokens is not None:
        total = record.input_tokens + record.output_tokens
    if record.error_type is not None:
        status = "ERROR"
    priced = cost.total is not None and cost.source != "unknown"
    return (
        trace_id,
        span_id,
        name,
        timestamp,
        parent_span_id,
        kind,
        duration_ms,
        status,
        record.error_type,
        record.service,
        record.environment,
        record.provider,
        record.operation,
        record.request_model,
        record.response_model,
        record.input_tokens,
        record.output_tokens,
        record.cache_read_tokens,
        record.cache_write_tokens,
        record.reasoning_tokens,
        total,
        money(cost.total) if priced else None,
        money(cost.input) if priced else None,
        money(cost.cache_read) if priced else None,
        money(cost.cache_write) if priced else None,
        money(cost.output) if priced else None,
        cost.source if (record.is_llm_call or priced) else None,
        cost.price_model_id,
        money(record.provided_cost),
        attributes,
        resource_attributes,
    )


def _same(value: Decimal | None) -> Decimal | str | None:
    return value


def _decimal_text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def usage_from_row(row: Mapping[str, Any]) -> UsageRecord:
    """The usage record a stored row stands for: what repricing feeds the price function."""
    return UsageRecord(
        provider=row["provider"],
        operation=row["operation"],
        request_model=row["request_model"],
        response_model=row["response_model"],
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
        cache_read_tokens=row["cache_read_tokens"],
        cache_write_tokens=row["cache_write_tokens"],
        reasoning_tokens=row["reasoning_tokens"],
        total_tokens=row["total_tokens"],
        provided_cost=row["provided_cost"],
        error_type=row["error_type"],
        service=row["service"],
        environment=row["environment"],
        is_llm_call=row["cost_source"] is not None,
    )
