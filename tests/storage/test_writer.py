"""The writer: bulk, idempotent, and keeping the hourly rollup equal to the raw rows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from aethermind.semconv.record import Cost, UsageRecord
from aethermind.storage.histogram import BUCKET_COLUMNS, LATENCY_BOUNDS_MS
from aethermind.storage.scope import tenant_transaction
from aethermind.storage.span_row import TelemetryRow, as_copy_row, row_from_usage
from aethermind.storage.writer import write_copy_row_groups, write_rows
from tests.storage.factories import create_org, make_rows, owner_fetch

ROLLUP_CHECK = """
WITH raw AS (
    SELECT organization_id, date_trunc('{unit}', "timestamp", 'UTC') AS {time_column},
           coalesce(provider, '') AS provider, coalesce(model, '') AS model,
           coalesce(service, '') AS service, coalesce(operation, '') AS operation,
           coalesce(environment, '') AS environment,
           coalesce(service_tier, '') AS service_tier,
           count(*) AS calls,
           count(*) FILTER (WHERE status = 'ERROR' OR error_type IS NOT NULL) AS errors,
           coalesce(sum(input_tokens), 0) AS input_tokens,
           coalesce(sum(output_tokens), 0) AS output_tokens,
           coalesce(sum(total_tokens), 0) AS total_tokens, coalesce(sum(cost), 0) AS cost,
           count(cost) AS priced_calls,
           count(*) FILTER (WHERE cost IS NULL AND cost_source = 'unknown') AS unpriced_calls,
           count(duration_ms) AS latency_count,
           coalesce(sum(provided_cost), 0) AS provided_cost,
           count(provided_cost) AS provided_calls,
           coalesce(sum(cost_input), 0) AS cost_input,
           coalesce(sum(cost_output), 0) AS cost_output,
           coalesce(sum(cost_modality), 0) AS cost_modality,
           coalesce(sum(cost_fees), 0) AS cost_fees,
           coalesce(sum(cost_other), 0) AS cost_other,
           coalesce(sum(cost_saved_by_cache), 0) AS cost_saved_by_cache,
           coalesce(sum(cost) FILTER (WHERE provided_cost IS NOT NULL), 0) AS cost_of_provided
      FROM telemetry_events WHERE counted GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
)
SELECT count(*) FROM raw FULL JOIN (SELECT * FROM {table} WHERE calls <> 0) r USING
    (organization_id, {time_column}, provider, model, service, operation, environment,
     service_tier)
 WHERE raw.calls IS DISTINCT FROM r.calls OR raw.errors IS DISTINCT FROM r.errors
    OR raw.input_tokens IS DISTINCT FROM r.input_tokens
    OR raw.output_tokens IS DISTINCT FROM r.output_tokens
    OR raw.total_tokens IS DISTINCT FROM r.total_tokens
    OR raw.cost IS DISTINCT FROM r.cost OR raw.priced_calls IS DISTINCT FROM r.priced_calls
    OR raw.unpriced_calls IS DISTINCT FROM r.unpriced_calls
    OR raw.latency_count IS DISTINCT FROM r.latency_count
    OR raw.provided_cost IS DISTINCT FROM r.provided_cost
    OR raw.provided_calls IS DISTINCT FROM r.provided_calls
    OR raw.cost_input IS DISTINCT FROM r.cost_input
    OR raw.cost_output IS DISTINCT FROM r.cost_output
    OR raw.cost_modality IS DISTINCT FROM r.cost_modality
    OR raw.cost_fees IS DISTINCT FROM r.cost_fees
    OR raw.cost_other IS DISTINCT FROM r.cost_other
    OR raw.cost_saved_by_cache IS DISTINCT FROM r.cost_saved_by_cache
    OR raw.cost_of_provided IS DISTINCT FROM r.cost_of_provided
"""
DIMENSION_CHECK = """
WITH spans AS (
    SELECT e.*, d.dimension, coalesce(d.value, '') AS value
      FROM telemetry_events e
     CROSS JOIN LATERAL (
           SELECT * FROM (VALUES ('user', e.user_id), ('session', e.session_id),
                                 ('agent', e.agent_name)) AS a(dimension, value)
            WHERE NOT (coalesce(e.user_id, e.session_id, e.agent_name) IS NULL
                       AND e.tags IS NULL)
           UNION ALL SELECT 'tag.' || key, value FROM jsonb_each_text(e.tags)
           UNION ALL SELECT '*', NULL
            WHERE coalesce(e.user_id, e.session_id, e.agent_name) IS NULL AND e.tags IS NULL) d
     WHERE e.counted
), raw AS (
    SELECT organization_id, dimension, value,
           date_trunc('{unit}', "timestamp", 'UTC') AS {time_column},
           count(*) AS calls,
           count(*) FILTER (WHERE status = 'ERROR' OR error_type IS NOT NULL) AS errors,
           coalesce(sum(input_tokens), 0) AS input_tokens,
           coalesce(sum(total_tokens), 0) AS total_tokens, coalesce(sum(cost), 0) AS cost,
           count(cost) AS priced_calls,
           count(*) FILTER (WHERE cost IS NULL AND cost_source = 'unknown') AS unpriced_calls,
           coalesce(sum(provided_cost), 0) AS provided_cost,
           coalesce(sum(cost_input), 0) AS cost_input,
           coalesce(sum(cost_other), 0) AS cost_other,
           coalesce(sum(cost) FILTER (WHERE provided_cost IS NOT NULL), 0) AS cost_of_provided
      FROM spans GROUP BY 1, 2, 3, 4
)
SELECT count(*) FROM raw FULL JOIN (SELECT * FROM {table} WHERE calls <> 0) r USING
    (organization_id, dimension, value, {time_column})
 WHERE raw.calls IS DISTINCT FROM r.calls OR raw.errors IS DISTINCT FROM r.errors
    OR raw.input_tokens IS DISTINCT FROM r.input_tokens
    OR raw.total_tokens IS DISTINCT FROM r.total_tokens
    OR raw.cost IS DISTINCT FROM r.cost OR raw.priced_calls IS DISTINCT FROM r.priced_calls
    OR raw.unpriced_calls IS DISTINCT FROM r.unpriced_calls{provided}
"""
_DIMENSION_PROVIDED = (
    "\n    OR raw.provided_cost IS DISTINCT FROM r.provided_cost"
    "\n    OR raw.cost_input IS DISTINCT FROM r.cost_input"
    "\n    OR raw.cost_other IS DISTINCT FROM r.cost_other"
    "\n    OR raw.cost_of_provided IS DISTINCT FROM r.cost_of_provided"
)
_MONTHLY_PROVIDED = (
    "\n    OR raw.provided_cost IS DISTINCT FROM r.provided_cost"
    "\n    OR raw.cost_of_provided IS DISTINCT FROM r.cost_of_provided"
)
"""The monthly dimension rollup sums the reported costs but not the cost lines."""


async def rollup_mismatches(pool: Any) -> int:
    """Rollup rows (usage hourly and daily; dimension hourly and monthly) that disagree with
    the counted raw spans they summarize (rows a correction took to zero calls are no
    rows)."""
    total = 0
    for check, table, time_column, unit in (
        (ROLLUP_CHECK, "usage_rollup_hourly", "hour", "hour"),
        (ROLLUP_CHECK, "usage_rollup_daily", "day", "day"),
        (DIMENSION_CHECK, "dimension_rollup_hourly", "hour", "hour"),
        (DIMENSION_CHECK, "dimension_rollup_daily", "day", "day"),
        (DIMENSION_CHECK, "dimension_rollup_monthly", "month", "month"),
    ):
        provided = _MONTHLY_PROVIDED if unit == "month" else _DIMENSION_PROVIDED
        sql = check.format(table=table, time_column=time_column, unit=unit, provided=provided)
        rows = await owner_fetch(pool, sql)
        total += int(rows[0][0])
    return total


async def test_writing_a_batch_returns_the_count_and_stores_every_field(pool: Any) -> None:
    org = await create_org(pool, "acme")
    rows = make_rows(40)
    assert await write_rows(pool, org, rows) == 40
    async with tenant_transaction(pool, org) as conn:
        stored = await conn.fetchrow(
            "SELECT * FROM telemetry_events WHERE span_id = $1", rows[1].span_id
        )
    assert stored is not None
    original = rows[1]
    for field in (
        "trace_id",
        "name",
        "timestamp",
        "duration_ms",
        "status",
        "provider",
        "request_model",
        "response_model",
        "input_tokens",
        "cost",
        "cost_source",
        "attributes",
        "resource_attributes",
    ):
        assert stored[field] == getattr(original, field), field
    assert stored["model"] == original.response_model
    assert stored["organization_id"] == org


async def test_resending_spans_stores_and_counts_them_once(pool: Any) -> None:
    org = await create_org(pool, "acme")
    rows = make_rows(300)
    assert await write_rows(pool, org, rows[:200]) == 200
    # Overlapping re-send, plus a batch that repeats a span inside itself.
    assert await write_rows(pool, org, rows[100:]) == 100
    assert await write_rows(pool, org, [rows[0], rows[0], rows[1]]) == 0
    [counted] = await owner_fetch(
        pool,
        "SELECT (SELECT count(*) FROM telemetry_events), "
        "(SELECT sum(calls) FROM usage_rollup_hourly)",
    )
    assert tuple(counted) == (300, 300)
    assert await rollup_mismatches(pool) == 0


async def test_a_new_span_twice_in_one_grouped_write_is_stored_and_counted_once(
    pool: Any,
) -> None:
    org = await create_org(pool, "acme")
    [row] = [as_copy_row(r) for r in make_rows(1)]
    assert await write_copy_row_groups(pool, org, [[row], [row, row]]) == [1, 2]
    [counted] = await owner_fetch(
        pool,
        "SELECT (SELECT count(*) FROM telemetry_events), "
        "(SELECT sum(calls) FROM usage_rollup_hourly), (SELECT sum(calls) FROM usage_rollup_daily)",
    )
    assert tuple(counted) == (1, 1, 1)
    assert await rollup_mismatches(pool) == 0


async def test_concurrent_writers_of_the_same_spans_never_double_count(pool: Any) -> None:
    org = await create_org(pool, "acme")
    rows = make_rows(600, spacing=timedelta(seconds=20))
    batches = [rows[i : i + 150] for i in range(0, 600, 150)]
    results = await asyncio.gather(*(write_rows(pool, org, b) for b in batches * 3))
    assert sum(results) == 600
    assert await rollup_mismatches(pool) == 0


async def test_rollup_histogram_puts_each_span_in_its_latency_bucket(pool: Any) -> None:
    org = await create_org(pool, "acme")
    durations = [1.0, 5.0, 99.9, 100.0, 1234.5, 999999.0]
    rows = [
        TelemetryRow(
            trace_id="a" * 32,
            span_id=f"{i:016x}",
            name="chat",
            timestamp=datetime(2025, 1, 1, 0, i, tzinfo=UTC),
            duration_ms=d,
            provider="openai",
            request_model="gpt-4o",
            cost_source="unknown",
        )
        for i, d in enumerate(durations)
    ]
    await write_rows(pool, org, rows)
    [rollup] = await owner_fetch(pool, "SELECT * FROM usage_rollup_hourly")
    buckets = [rollup[c] for c in BUCKET_COLUMNS]
    assert buckets[0] == 1 and buckets[1] == 1  # 1.0 < 5 <= 5.0 < 10
    assert buckets[LATENCY_BOUNDS_MS.index(100)] == 1  # 99.9 in [50, 100)
    assert buckets[LATENCY_BOUNDS_MS.index(100) + 1] == 1  # 100.0 in [100, 250)
    assert buckets[-1] == 1
    assert rollup["latency_min_ms"] == 1.0 and rollup["latency_max_ms"] == 999999.0
    assert rollup["unpriced_calls"] == 6 and rollup["priced_calls"] == 0


async def test_histogram_bounds_match_the_database(pool: Any) -> None:
    [row] = await owner_fetch(pool, "SELECT aethermind_latency_bounds()")
    assert tuple(row[0]) == tuple(float(b) for b in LATENCY_BOUNDS_MS)


async def test_empty_batch_writes_nothing(pool: Any) -> None:
    org = await create_org(pool, "acme")
    assert await write_rows(pool, org, []) == 0


def test_row_rejects_naive_timestamps() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        TelemetryRow(trace_id="a", span_id="b", name="n", timestamp=datetime(2025, 1, 1))


def test_row_from_usage_maps_record_and_cost() -> None:
    record = UsageRecord(
        provider="openai",
        request_model="gpt-4o",
        response_model="gpt-4o-2024-08-06",
        input_tokens=100,
        output_tokens=20,
        error_type="timeout",
        service="api",
    )
    cost = Cost(
        source="computed",
        total=Decimal("0.001"),
        input=Decimal("0.0005"),
        output=Decimal("0.0005"),
        price_model_id="gpt-4o",
    )
    row = row_from_usage(
        record,
        cost,
        trace_id="t" * 32,
        span_id="s" * 16,
        name="chat gpt-4o",
        timestamp=datetime(2025, 1, 1, tzinfo=UTC),
        duration_ms=12.5,
    )
    assert row.model == "gpt-4o-2024-08-06"
    assert row.total_tokens == 120
    assert row.status == "ERROR"
    assert row.cost == Decimal("0.001") and row.cost_source == "computed"
    tool = row_from_usage(
        UsageRecord(is_llm_call=False),
        Cost(source="unknown"),
        trace_id="t",
        span_id="s",
        name="tool",
        timestamp=datetime(2025, 1, 1, tzinfo=UTC),
    )
    assert tool.cost is None and tool.cost_source is None
