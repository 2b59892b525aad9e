"""Retention: drop whole monthly partitions older than every organization's retention,
and delete each organization's spans and rollup rows past its own (shorter) retention.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aethermind.storage.dimension_rollups import (
    DAILY_TABLE,
    HOURLY_TABLE,
    MONTHLY_SUMS,
    MONTHLY_TABLE,
)
from aethermind.storage.rollups import ROLLUP_TABLES
from aethermind.storage.scope import PoolOrConnection, owner_transaction

logger = logging.getLogger(__name__)

_PARTITION = re.compile(r"^telemetry_events_p(\d{4})(\d{2})$")

DELETE_DIMENSION_HOURS_SQL = f"""
    WITH gone AS (
        DELETE FROM {HOURLY_TABLE} WHERE organization_id = $1 AND hour < $2 RETURNING *
    ), by_month AS (
        SELECT date_trunc('month', hour, 'UTC') AS month, dimension, value,
               {", ".join(f"sum({c}) AS {c}" for c in MONTHLY_SUMS)}
          FROM gone GROUP BY 1, 2, 3
    ), moved AS (
        UPDATE {MONTHLY_TABLE} m
           SET {", ".join(f"{c} = m.{c} - g.{c}" for c in MONTHLY_SUMS)}
          FROM by_month g
         WHERE m.organization_id = $1 AND m.month = g.month
           AND m.dimension = g.dimension AND m.value = g.value
    )
    SELECT count(*) FROM gone"""
"""Deletes an organization's dimension hours before $2 and takes them out of their months,
so a month's totals stay the sums of its kept hours (``DELETE_DIMENSION_MONTHS_SQL`` then
deletes the months wholly before $2). Answers how many hours went."""
DELETE_DIMENSION_DAYS_SQL = f"DELETE FROM {DAILY_TABLE} WHERE organization_id = $1 AND day < $2"
DELETE_DIMENSION_MONTHS_SQL = (
    f"DELETE FROM {MONTHLY_TABLE} WHERE organization_id = $1 AND month + interval '1 month' <= $2"
)


@dataclass(frozen=True, slots=True)
class RetentionResult:
    dropped_partitions: list[str] = field(default_factory=list)
    deleted_spans: int = 0
    deleted_rollup_rows: int = 0


def _day_floor(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _month_end(year: int, month: int) -> datetime:
    return datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)


async def apply_retention(
    pool_or_conn: PoolOrConnection,
    *,
    now: datetime | None = None,
    timeout: float | None = None,
) -> RetentionResult:
    """Enforce every organization's ``retention_days`` as of ``now`` (default: the clock).

    Cutoffs are floored to the UTC day (so up to a day more than ``retention_days`` is
    kept): the raw spans and the hourly and daily rollups then always cover the same time.
    Runs as the owner; each organization in its own transaction.
    """
    now = now or datetime.now(UTC)
    dropped: list[str] = []
    deleted_spans = deleted_rollup = 0
    async with owner_transaction(pool_or_conn) as conn:
        orgs = await conn.fetch("SELECT id, retention_days FROM organizations", timeout=timeout)
        partitions = await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'telemetry_events'::regclass",
            timeout=timeout,
        )
    if not orgs:
        return RetentionResult()
    longest = max(int(o["retention_days"]) for o in orgs)
    global_cutoff = _day_floor(now - timedelta(days=longest))
    for record in partitions:
        match = _PARTITION.match(record["relname"])
        if match is None:
            continue  # the default partition, or one we did not make
        if _month_end(int(match.group(1)), int(match.group(2))) <= global_cutoff:
            async with owner_transaction(pool_or_conn) as conn:
                await conn.execute(f'DROP TABLE IF EXISTS "{record["relname"]}"', timeout=timeout)
            dropped.append(record["relname"])
    for org in orgs:
        cutoff = _day_floor(now - timedelta(days=int(org["retention_days"])))
        async with owner_transaction(pool_or_conn) as conn:
            status = await conn.execute(
                'DELETE FROM telemetry_events WHERE organization_id = $1 AND "timestamp" < $2',
                org["id"], cutoff, timeout=timeout,
            )  # fmt: skip
            deleted_spans += int(status.split()[-1])
            for table, time_column in ROLLUP_TABLES:
                status = await conn.execute(
                    f"DELETE FROM {table} WHERE organization_id = $1 AND {time_column} < $2",
                    org["id"], cutoff, timeout=timeout,
                )  # fmt: skip
                deleted_rollup += int(status.split()[-1])
            deleted_rollup += await conn.fetchval(
                DELETE_DIMENSION_HOURS_SQL, org["id"], cutoff, timeout=timeout
            )
            for sql in (DELETE_DIMENSION_DAYS_SQL, DELETE_DIMENSION_MONTHS_SQL):
                status = await conn.execute(sql, org["id"], cutoff, timeout=timeout)
                deleted_rollup += int(status.split()[-1])
            status = await conn.execute(
                'DELETE FROM metric_usage WHERE organization_id = $1 AND "time" < $2',
                org["id"], cutoff, timeout=timeout,
            )  # fmt: skip
            deleted_rollup += int(status.split()[-1])
            # Traces whose spans are past retention need no more deciding (writer.py).
            await conn.execute(
                "DELETE FROM linked_traces WHERE organization_id = $1 AND last_start < $2",
                org["id"], cutoff, timeout=timeout,
            )  # fmt: skip
    result = RetentionResult(dropped, deleted_spans, deleted_rollup)
    logger.info(
        "retention applied",
        extra={
            "dropped_partitions": dropped,
            "deleted_spans": deleted_spans,
            "deleted_rollup_rows": deleted_rollup,
        },
    )
    return result
