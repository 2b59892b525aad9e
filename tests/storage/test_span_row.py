"""The stored span's one declaration and the builders that lay rows out by it: every value
lands in its declared column, and the cost rule is the same for the writer and reprice."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from decimal import Decimal

from aethermind.semconv.record import Cost, UsageRecord
from aethermind.storage.span_row import (
    COLUMNS,
    COST_COLUMNS,
    MONEY_COLUMNS,
    TelemetryRow,
    as_copy_row,
    copy_row,
    cost_values,
    row_from_usage,
)

WHEN = datetime(2026, 11, 1, tzinfo=UTC)


def _probe() -> tuple[UsageRecord, Cost, dict[str, object]]:
    """Usage, cost and span fields whose every value is different, to find it by value."""
    usage = UsageRecord(
        provider="p-provider", operation="p-operation", request_model="p-request",
        response_model="p-response", input_tokens=101, output_tokens=102,
        cache_read_tokens=103, cache_write_tokens=104, reasoning_tokens=105, total_tokens=106,
        provided_cost=Decimal("0.107"), error_type="p-error", service="p-service",
        environment="p-environment", response_id="p-response-id", user="p-user",
        session="p-session", agent="p-agent", service_tier="p-tier",
        units={"input_audio_tokens": 107},
    )  # fmt: skip
    cost = Cost(
        source="computed", total=Decimal("0.201"), input=Decimal("0.202"),
        cache_read=Decimal("0.203"), cache_write=Decimal("0.204"), output=Decimal("0.205"),
        price_model_id="p-price-model", modality=Decimal("0.206"), fees=Decimal("0.207"),
        other=Decimal("0.208"), saved_by_cache=Decimal("0.209"),
    )  # fmt: skip
    span = {
        "trace_id": "p-trace", "span_id": "p-span", "parent_span_id": "p-parent",
        "name": "p-name", "kind": "p-kind", "timestamp": WHEN, "duration_ms": 301.5,
        "status": "OK", "attributes": {"p": "attributes"}, "resource_attributes": {"p": "res"},
        "instrumentation_scope": "p-scope", "tags": {"p": "tag"},
        "inheritable": {"user": "p-inheritable"},
    }  # fmt: skip
    return usage, cost, span


def test_a_root_request_span_of_a_self_tracing_sdk_keeps_its_response_id() -> None:
    """Kept for matching twins in other traces (storage/counting.py): root request spans of
    providers whose SDK traces itself only."""
    usage, cost, span = _probe()

    def response_id(**changes: object) -> object:
        record = UsageRecord(**{**{f: getattr(usage, f) for f in usage.__slots__}, **changes})  # type: ignore[arg-type]
        root = copy_row(record, cost, **{**span, "parent_span_id": None})  # type: ignore[arg-type]
        return dict(zip(COLUMNS, root, strict=True))["response_id"]

    assert response_id(provider="anthropic") == "p-response-id"
    assert response_id(provider="anthropic", is_llm_call=False) is None  # an agent span
    assert response_id(provider="openai") is None


def test_copy_row_puts_every_value_in_its_declared_column() -> None:
    usage, cost, span = _probe()
    row = dict(zip(COLUMNS, copy_row(usage, cost, **span), strict=True))  # type: ignore[arg-type]
    assert row == {
        "trace_id": "p-trace", "span_id": "p-span", "parent_span_id": "p-parent",
        "name": "p-name", "kind": "p-kind", "timestamp": WHEN, "duration_ms": 301.5,
        "status": "ERROR",  # the span named an error type
        "error_type": "p-error", "service": "p-service", "environment": "p-environment",
        "provider": "p-provider", "operation": "p-operation", "request_model": "p-request",
        "response_model": "p-response", "input_tokens": 101, "output_tokens": 102,
        "cache_read_tokens": 103, "cache_write_tokens": 104, "reasoning_tokens": 105,
        "total_tokens": 106, "cost": "0.201", "cost_input": "0.202", "cost_cache_read": "0.203",
        "cost_cache_write": "0.204", "cost_output": "0.205", "cost_modality": "0.206",
        "cost_fees": "0.207", "cost_other": "0.208", "cost_saved_by_cache": "0.209",
        "cost_source": "computed",
        "price_model_id": "p-price-model", "provided_cost": "0.107",
        "attributes": {"p": "attributes"}, "resource_attributes": {"p": "res"},
        "usage_role": "request", "instrumentation_scope": "p-scope",
        "response_id": None,  # kept on root spans only: this one has a parent
        "user_id": "p-user", "session_id": "p-session", "agent_name": "p-agent",
        "tags": {"p": "tag"}, "inheritable": {"user": "p-inheritable"},
        "service_tier": "p-tier", "units": {"input_audio_tokens": 107},
    }  # fmt: skip


def test_the_typed_row_and_the_copy_row_are_the_same_span() -> None:
    usage, cost, span = _probe()
    typed = row_from_usage(usage, cost, **span)  # type: ignore[arg-type]
    assert isinstance(typed.cost, Decimal) and typed.cost == Decimal("0.201")
    assert as_copy_row(typed) == copy_row(usage, cost, **span)  # type: ignore[arg-type]
    assert [f.name for f in fields(TelemetryRow)] == list(COLUMNS)
    assert MONEY_COLUMNS == {
        "cost", "cost_input", "cost_cache_read", "cost_cache_write", "cost_output",
        "cost_modality", "cost_fees", "cost_other", "cost_saved_by_cache", "provided_cost",
    }  # fmt: skip


def test_one_cost_rule_for_priced_unpriced_and_non_model_spans() -> None:
    priced = dict(zip(COST_COLUMNS, cost_values(_probe()[1], is_llm_call=True), strict=True))
    assert priced["cost"] == Decimal("0.201") and priced["cost_source"] == "computed"
    unknown = Cost(source="unknown", price_model_id=None)
    unpriced = dict(zip(COST_COLUMNS, cost_values(unknown, is_llm_call=True), strict=True))
    assert unpriced["cost"] is None and unpriced["cost_source"] == "unknown"  # counts unpriced
    tool = dict(zip(COST_COLUMNS, cost_values(unknown, is_llm_call=False), strict=True))
    assert tool["cost"] is None and tool["cost_source"] is None  # never an unpriced call
