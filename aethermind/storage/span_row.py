"""The stored span: ``telemetry_events``'s columns declared once (name, order, Python type,
PostgreSQL type), and the one function that fills them from a span's normalized usage.

Everything that touches the columns reads them from here: the row builder, the writer's COPY
and staging table, repricing, and the test that compares this declaration with the table.
Adding a column means: a field here, a migration, and the line in ``copy_row`` that fills it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from aethermind.semconv.attributes import AGENT_REQUEST_SCOPES, SELF_TRACING_SDK_SCOPES
from aethermind.semconv.record import Cost, UsageRecord

SPAN_STATUSES = frozenset({"UNSET", "OK", "ERROR"})


# Each field's metadata: its PostgreSQL type, and whether a price decides it (reprice).
_TEXT = {"pg_type": "text", "cost": False}
_TIMESTAMPTZ = {"pg_type": "timestamptz", "cost": False}
_FLOAT8 = {"pg_type": "float8", "cost": False}
_INT8 = {"pg_type": "int8", "cost": False}
_NUMERIC = {"pg_type": "numeric", "cost": False}
_JSONB = {"pg_type": "jsonb", "cost": False}
_COST_NUMERIC = {"pg_type": "numeric", "cost": True}
_COST_TEXT = {"pg_type": "text", "cost": True}


@dataclass(frozen=True, slots=True, kw_only=True)
class TelemetryRow:
    """One ``telemetry_events`` row, minus ``id`` (assigned by the database), ``model``
    (a generated column: response model, else request model) and ``organization_id``
    (given to the writer once per batch, so a batch can never mix tenants). Field order is
    the order ``COPY`` and the staging table use.

    ``timestamp`` is the span's start time and must be timezone-aware. ``trace_id`` and
    ``span_id`` are lowercase hex (32 and 16 characters in OTLP). ``cost`` is None when the
    span could not be priced. ``cost_source`` is ``computed``/``provided``/``unknown``, or
    None for spans that are not model calls (agent and tool spans): those never count as
    unpriced.
    """

    trace_id: str = field(metadata=_TEXT)
    span_id: str = field(metadata=_TEXT)
    parent_span_id: str | None = field(default=None, metadata=_TEXT)
    name: str = field(metadata=_TEXT)
    kind: str | None = field(default=None, metadata=_TEXT)
    timestamp: datetime = field(metadata=_TIMESTAMPTZ)
    duration_ms: float | None = field(default=None, metadata=_FLOAT8)
    status: str = field(default="UNSET", metadata=_TEXT)
    error_type: str | None = field(default=None, metadata=_TEXT)
    service: str | None = field(default=None, metadata=_TEXT)
    environment: str | None = field(default=None, metadata=_TEXT)
    provider: str | None = field(default=None, metadata=_TEXT)
    operation: str | None = field(default=None, metadata=_TEXT)
    request_model: str | None = field(default=None, metadata=_TEXT)
    response_model: str | None = field(default=None, metadata=_TEXT)
    input_tokens: int | None = field(default=None, metadata=_INT8)
    output_tokens: int | None = field(default=None, metadata=_INT8)
    cache_read_tokens: int | None = field(default=None, metadata=_INT8)
    cache_write_tokens: int | None = field(default=None, metadata=_INT8)
    reasoning_tokens: int | None = field(default=None, metadata=_INT8)
    total_tokens: int | None = field(default=None, metadata=_INT8)
    cost: Decimal | None = field(default=None, metadata=_COST_NUMERIC)
    cost_input: Decimal | None = field(default=None, metadata=_COST_NUMERIC)
    cost_cache_read: Decimal | None = field(default=None, metadata=_COST_NUMERIC)
    cost_cache_write: Decimal | None = field(default=None, metadata=_COST_NUMERIC)
    cost_output: Decimal | None = field(default=None, metadata=_COST_NUMERIC)
    cost_modality: Decimal | None = field(default=None, metadata=_COST_NUMERIC)
    """Audio, image and video tokens at their own rates (``semconv/pricing_units.py``)."""
    cost_fees: Decimal | None = field(default=None, metadata=_COST_NUMERIC)
    """Per-call fees: server-tool calls and per-request prices."""
    cost_other: Decimal | None = field(default=None, metadata=_COST_NUMERIC)
    """A cost that is not tokens, reported by a span that is not a model call."""
    cost_saved_by_cache: Decimal | None = field(default=None, metadata=_COST_NUMERIC)
    """What cache reads saved against the uncached input rate (not part of ``cost``)."""
    cost_source: str | None = field(default=None, metadata=_COST_TEXT)
    price_model_id: str | None = field(default=None, metadata=_COST_TEXT)
    provided_cost: Decimal | None = field(default=None, metadata=_NUMERIC)
    attributes: Mapping[str, Any] = field(default_factory=dict, metadata=_JSONB)
    resource_attributes: Mapping[str, Any] = field(default_factory=dict, metadata=_JSONB)
    usage_role: str | None = field(default=None, metadata=_TEXT)
    """``request``, ``rollup`` or None: see ``usage_role`` below and ``storage/counting.py``."""
    instrumentation_scope: str | None = field(default=None, metadata=_TEXT)
    """The OTel instrumentation scope that wrote the span (cut to ``MAX_NAME_LENGTH``)."""
    response_id: str | None = field(default=None, metadata=_TEXT)
    """The provider's response id, kept for root request spans only (``twin_key``)."""
    user_id: str | None = field(default=None, metadata=_TEXT)
    """Who the call was for (the ``user`` dimension); see ``UsageRecord.user``."""
    session_id: str | None = field(default=None, metadata=_TEXT)
    """The ``session`` dimension."""
    agent_name: str | None = field(default=None, metadata=_TEXT)
    """The ``agent`` dimension."""
    tags: Mapping[str, str | None] | None = field(default=None, metadata=_JSONB)
    """The span's value for each of its organization's tag keys (None for a key it has no
    value for: ``storage/tags.tag_values``), or None when the organization names none."""
    inheritable: Mapping[str, str] | None = field(default=None, metadata=_JSONB)
    """What the span passes on to the spans under it (``storage/inheritance.py``)."""
    service_tier: str | None = field(default=None, metadata=_TEXT)
    """The tier that served the request (``batch``, ``flex``, ``priority``, ...); None for
    standard (the ``service_tier`` dimension; see ``semconv/tiers.py``)."""
    units: Mapping[str, int] | None = field(default=None, metadata=_JSONB)
    """Usage billed at rates of its own (``UsageRecord.units``), kept so repricing sees it."""

    def __post_init__(self) -> None:
        if self.timestamp.tzinfo is None or self.timestamp.utcoffset() is None:
            raise ValueError(f"timestamp must be timezone-aware (span {self.span_id!r})")
        if not self.trace_id or not self.span_id:
            raise ValueError("trace_id and span_id must be non-empty")
        if self.status not in SPAN_STATUSES:
            raise ValueError(f"status must be one of {sorted(SPAN_STATUSES)}, got {self.status!r}")
        if self.usage_role is None:
            # Built by hand without a role: the rule the migration applied to older rows (a
            # cost source marks a model call), which agrees with ``usage_role()``.
            object.__setattr__(self, "usage_role", _role_of_stored(self))

    @property
    def model(self) -> str | None:
        """What the database's generated ``model`` column will hold."""
        return self.response_model or self.request_model


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(TelemetryRow))
"""The ``telemetry_events`` columns a span fills, in declaration order."""
PG_TYPES: dict[str, str] = {f.name: f.metadata["pg_type"] for f in fields(TelemetryRow)}
"""Each column's PostgreSQL type, as the table declares it."""
MONEY_COLUMNS: frozenset[str] = frozenset(c for c, t in PG_TYPES.items() if t == "numeric")
COST_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(TelemetryRow) if f.metadata["cost"])
"""The columns a price decides (what ``reprice`` rewrites), in table order."""

CopyRow = tuple[Any, ...]
"""A stored span laid out for the writer's COPY: a plain tuple in ``COLUMNS`` order, money as
decimal text (asyncpg's binary numeric encoding costs about 1.5 µs a value; the staging table
takes text and PostgreSQL casts it). Built positionally, because that is the hot path (a
namedtuple built by keyword costs about 3 µs a row); ``tests/storage/test_span_row.py``
proves every value lands in its declared column, and a length check runs at import."""


TRACE_DECIDED_COLUMNS: tuple[str, ...] = ("counted", "counted_elsewhere")
"""The columns besides ``COLUMNS`` that the writer decides from the whole trace (whether the
span counts toward totals, and whether its trace would count it but a twin span in another
trace counts instead: ``storage/counting.py``)."""


def twin_key(usage: UsageRecord, parent_span_id: str | None, scope: str | None) -> str | None:
    """The response id a span is matched on (``storage/counting.py``).

    A root request span's, of a provider whose SDK traces itself (``SELF_TRACING_SDK_SCOPES``),
    matched with spans of other traces: two instrumentations' spans of one request land in
    different traces only when neither had a span to join, each starting a trace of its own
    (under a parent they are in one trace, where the trace's own rule tells them apart); the
    known case is such an SDK beside an instrumentation that does not make its span current.
    And any request record of an agent scope (``AGENT_REQUEST_SCOPES``), matched within its
    trace: an agent's usage event and its span of the same request are siblings there.
    Other spans pay neither the index entry nor the lookup."""
    if usage.response_id is None or not usage.is_llm_call:
        return None
    if parent_span_id is None and usage.provider in SELF_TRACING_SDK_SCOPES:
        return usage.response_id
    if scope in AGENT_REQUEST_SCOPES:
        return usage.response_id
    return None


def _role_of_stored(row: TelemetryRow) -> str | None:
    if row.cost_source is not None:
        return "request"
    return "rollup" if _reports_usage(row) else None


def _reports_usage(usage: UsageRecord | TelemetryRow) -> bool:
    return (
        usage.input_tokens is not None
        or usage.output_tokens is not None
        or usage.total_tokens is not None
        or usage.cache_read_tokens is not None
        or usage.cache_write_tokens is not None
        or usage.reasoning_tokens is not None
        or usage.provided_cost is not None
    )


def usage_role(usage: UsageRecord) -> str | None:
    """A span's part in counting: ``request`` for a provider request (even one that failed
    and reported nothing), ``rollup`` for any other span that reports usage (which can only be
    the sum of requests made under it), None for a span without usage."""
    if usage.is_llm_call:
        return "request"
    return "rollup" if _reports_usage(usage) else None


def cost_values(cost: Cost, *, is_llm_call: bool) -> tuple[Any, ...]:
    """The ``COST_COLUMNS`` for a span priced at ``cost``, in that order: the one rule of
    what a priced, unpriced or non-model span stores. Unpriced keeps no amounts; a span that
    is not a model call keeps no cost source, so it never counts as an unpriced call."""
    priced = cost.total is not None and cost.source != "unknown"
    source = cost.source if (is_llm_call or priced) else None
    if not priced:
        return (None, None, None, None, None, None, None, None, None, source, cost.price_model_id)
    return (
        cost.total,
        cost.input,
        cost.cache_read,
        cost.cache_write,
        cost.output,
        cost.modality,
        cost.fees,
        cost.other,
        cost.saved_by_cache,
        source,
        cost.price_model_id,
    )


def copy_row(
    usage: UsageRecord,
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
    instrumentation_scope: str | None = None,
    tags: Mapping[str, str | None] | None = None,
    inheritable: Mapping[str, str] | None = None,
) -> CopyRow:
    """The stored span for one span's normalized ``usage`` and its ``cost``, as a
    ``CopyRow``.

    A span whose usage carries ``error_type`` is stored with status ``ERROR`` even when the
    instrumentation left the OTel status unset. ``total_tokens`` falls back to input + output
    when the span gave both but no total. The caller vouches for what
    ``TelemetryRow.__post_init__`` would check (an aware timestamp, non-empty ids, a known
    status), as the receiver's decoder guarantees.
    """
    total = usage.total_tokens
    if total is None and usage.input_tokens is not None and usage.output_tokens is not None:
        total = usage.input_tokens + usage.output_tokens
    (
        amount,
        cost_input,
        cache_read,
        cache_write,
        output,
        modality,
        fees,
        other,
        saved,
        source,
        price_model_id,
    ) = cost_values(cost, is_llm_call=usage.is_llm_call)
    # In COLUMNS order (tests/storage/test_span_row.py checks each position).
    return (
        trace_id,
        span_id,
        parent_span_id,
        name,
        kind,
        timestamp,
        duration_ms,
        "ERROR" if usage.error_type is not None else status,
        usage.error_type,
        usage.service,
        usage.environment,
        usage.provider,
        usage.operation,
        usage.request_model,
        usage.response_model,
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
        usage.reasoning_tokens,
        total,
        None if amount is None else str(amount),
        None if cost_input is None else str(cost_input),
        None if cache_read is None else str(cache_read),
        None if cache_write is None else str(cache_write),
        None if output is None else str(output),
        None if modality is None else str(modality),
        None if fees is None else str(fees),
        None if other is None else str(other),
        None if saved is None else str(saved),
        source,
        price_model_id,
        None if usage.provided_cost is None else str(usage.provided_cost),
        attributes,
        resource_attributes,
        usage_role(usage),
        instrumentation_scope,
        twin_key(usage, parent_span_id, instrumentation_scope),
        usage.user,
        usage.session,
        usage.agent,
        tags,
        inheritable,
        usage.service_tier,
        usage.units,
    )


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def row_from_usage(
    usage: UsageRecord,
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
    instrumentation_scope: str | None = None,
    tags: Mapping[str, str | None] | None = None,
    inheritable: Mapping[str, str] | None = None,
) -> TelemetryRow:
    """``copy_row`` as a checked, typed ``TelemetryRow`` (money as Decimal), for code that
    builds rows one at a time (tests, tools) rather than the receiver's hot path."""
    copy = copy_row(
        usage,
        cost,
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
        instrumentation_scope=instrumentation_scope,
        tags=tags,
        inheritable=inheritable,
    )
    values = dict(zip(COLUMNS, copy, strict=True))
    for column in MONEY_COLUMNS:
        if values[column] is not None:
            values[column] = Decimal(values[column])
    return TelemetryRow(**values)


def as_copy_row(row: TelemetryRow) -> CopyRow:
    """A typed row as the writer's ``CopyRow`` (money as decimal text)."""
    return tuple(_text(getattr(row, c)) if c in MONEY_COLUMNS else getattr(row, c) for c in COLUMNS)


def usage_from_row(row: Mapping[str, Any]) -> UsageRecord:
    """The usage a stored row stands for: what repricing feeds the price function."""
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
        is_llm_call=_is_model_call(row),
        service_tier=row.get("service_tier"),
        units=_units_of(row.get("units")),
    )


def _is_model_call(row: Mapping[str, Any]) -> bool:
    """A stored span's role says it was a model call; rows read without it, their cost source."""
    if "usage_role" in row:
        return bool(row["usage_role"] == "request")
    return row["cost_source"] is not None


def _units_of(stored: Any) -> dict[str, int] | None:
    """A stored ``units`` value (a dict from asyncpg's JSON codec, or JSON text) as counts."""
    if isinstance(stored, str):
        stored = json.loads(stored)
    if not isinstance(stored, dict) or not stored:
        return None
    return {k: v for k, v in stored.items() if type(v) is int}


def _check_layout() -> None:
    """Fail at import, not in a COPY, when the declaration and the builders disagree."""
    probe = copy_row(
        UsageRecord(),
        Cost(source="unknown"),
        trace_id="t", span_id="s", name="n", timestamp=datetime.now().astimezone(),
        parent_span_id=None, kind=None, duration_ms=None, status="UNSET",
        attributes={}, resource_attributes={},
    )  # fmt: skip
    if len(probe) != len(COLUMNS) or len(
        cost_values(Cost(source="unknown"), is_llm_call=True)
    ) != len(COST_COLUMNS):
        raise AssertionError("span_row: copy_row or cost_values does not match the declaration")


_check_layout()
