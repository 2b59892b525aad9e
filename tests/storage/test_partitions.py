"""Monthly partitions: created as data arrives, whatever its age, never failing an insert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aethermind.storage.scope import owner_transaction
from aethermind.storage.writer import PartitionCache, ensure_partitions, write_rows
from tests.storage.factories import create_org, make_rows, owner_fetch


async def partition_counts(pool: Any) -> dict[str, int]:
    rows = await owner_fetch(
        pool, "SELECT tableoid::regclass::text AS p, count(*) FROM telemetry_events GROUP BY 1"
    )
    return {r["p"]: r["count"] for r in rows}


async def test_old_and_future_spans_land_in_their_month_partitions(pool: Any) -> None:
    org = await create_org(pool, "acme")
    old = make_rows(3, start=datetime(2019, 2, 27, tzinfo=UTC), spacing=timedelta(days=1), seed=1)
    future = make_rows(
        2, start=datetime(2031, 12, 31, 23, 59, tzinfo=UTC), spacing=timedelta(minutes=2), seed=2
    )
    assert await write_rows(pool, org, old) == 3
    assert await write_rows(pool, org, future) == 2
    counts = await partition_counts(pool)
    assert counts == {
        "telemetry_events_p201902": 2,
        "telemetry_events_p201903": 1,
        "telemetry_events_p203112": 1,
        "telemetry_events_p203201": 1,
    }
    # The month after the newest is created ahead of time.
    [row] = await owner_fetch(pool, "SELECT to_regclass('telemetry_events_p203202') IS NOT NULL")
    assert row[0]


async def test_rows_in_the_default_partition_move_when_their_month_is_created(pool: Any) -> None:
    org = await create_org(pool, "acme")
    async with owner_transaction(pool) as conn:
        await conn.execute(
            "INSERT INTO telemetry_events"
            ' (organization_id, trace_id, span_id, name, "timestamp", response_model)'
            " VALUES ($1, 't', 's', 'n', '2020-06-15T00:00:00Z', 'm')",
            org,
        )
    assert await partition_counts(pool) == {"telemetry_events_default": 1}
    await ensure_partitions(pool, [datetime(2020, 6, 1, tzinfo=UTC)])
    assert await partition_counts(pool) == {"telemetry_events_p202006": 1}
    [row] = await owner_fetch(pool, "SELECT model FROM telemetry_events")
    assert row["model"] == "m"


async def test_partition_checks_are_cached_by_their_owner(pool: Any) -> None:
    when = [datetime(2024, 5, 5, tzinfo=UTC)]
    partitions = PartitionCache()
    assert await ensure_partitions(pool, when, partitions=partitions) == 2
    async with owner_transaction(pool) as conn:
        await conn.execute("DROP TABLE telemetry_events_p202405")
    # Cached: no catalog round trip, so the drop goes unnoticed...
    assert await ensure_partitions(pool, when, partitions=partitions) == 0
    # ...and an insert for that month still succeeds, into the default partition.
    org = await create_org(pool, "acme")
    rows = make_rows(1, start=when[0])
    assert await write_rows(pool, org, rows, partitions=partitions) == 1
    assert await partition_counts(pool) == {"telemetry_events_default": 1}


async def test_one_write_creates_at_most_a_few_partitions_and_the_rest_wait(pool: Any) -> None:
    # A write spanning ten months creates only the newest few partitions (each creation
    # locks the table for every tenant); the other rows wait in the default partition and
    # move out when a later write creates their month.
    org = await create_org(pool, "acme")
    rows = [
        row
        for month in range(1, 11)
        for row in make_rows(1, start=datetime(2024, month, 3, tzinfo=UTC), seed=month)
    ]
    assert await write_rows(pool, org, rows) == 10
    counts = await partition_counts(pool)
    assert counts.pop("telemetry_events_default") == 8
    assert counts == {"telemetry_events_p202409": 1, "telemetry_events_p202410": 1}
    assert await ensure_partitions(pool, [datetime(2024, 3, 1, tzinfo=UTC)]) == 2
    counts = await partition_counts(pool)
    assert counts["telemetry_events_p202403"] == counts["telemetry_events_p202404"] == 1
    assert counts["telemetry_events_default"] == 6
