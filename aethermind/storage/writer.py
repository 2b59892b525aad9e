"""Stores a batch of spans for one organization in one transaction: binary ``COPY`` into a
session temp staging table, then one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` whose
``RETURNING`` rows feed the hourly and daily rollup upserts, so a re-sent span is neither
stored nor counted twice.

Bulk path: measured against ``INSERT ... SELECT FROM unnest($1::text[], ...)`` with one
array parameter per column (``benchmarks/bench_writer.py``), COPY staging is faster: asyncpg
encodes COPY records without the per-element checks it makes on array parameters, and the
server work (the partitioned insert with its indexes) is the same for both.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any
from uuid import UUID

from aethermind.storage.histogram import BUCKET_COLUMNS
from aethermind.storage.rows import COLUMNS, TelemetryRow
from aethermind.storage.scope import ORG_SETTING, PoolOrConnection, connection

logger = logging.getLogger(__name__)

__all__ = [
    "TelemetryRow",
    "ensure_partitions",
    "write_record_groups",
    "write_records",
    "write_rows",
]

# One definition of "error" and "unpriced", shared with the raw-row queries.
IS_ERROR_SQL = "(status = 'ERROR' OR error_type IS NOT NULL)"
IS_UNPRICED_SQL = "(cost IS NULL AND cost_source = 'unknown')"

_PG_TYPES: dict[str, str] = {
    "trace_id": "text",
    "span_id": "text",
    "name": "text",
    "timestamp": "timestamptz",
    "parent_span_id": "text",
    "kind": "text",
    "duration_ms": "float8",
    "status": "text",
    "error_type": "text",
    "service": "text",
    "environment": "text",
    "provider": "text",
    "operation": "text",
    "request_model": "text",
    "response_model": "text",
    "input_tokens": "int8",
    "output_tokens": "int8",
    "cache_read_tokens": "int8",
    "cache_write_tokens": "int8",
    "reasoning_tokens": "int8",
    "total_tokens": "int8",
    "cost": "numeric",
    "cost_input": "numeric",
    "cost_cache_read": "numeric",
    "cost_cache_write": "numeric",
    "cost_output": "numeric",
    "cost_source": "text",
    "price_model_id": "text",
    "provided_cost": "numeric",
    "attributes": "jsonb",
    "resource_attributes": "jsonb",
}
assert set(_PG_TYPES) == set(COLUMNS), "every TelemetryRow field needs a PostgreSQL type"

ROLLUP_KEYS = ("provider", "model", "service", "operation", "environment")
TOKEN_COLUMNS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_tokens",
)
ROLLUP_SUMS = (
    "calls",
    "errors",
    *TOKEN_COLUMNS,
    "cost",
    "priced_calls",
    "unpriced_calls",
    "latency_count",
    "latency_sum_ms",
    *BUCKET_COLUMNS,
)


def rollup_aggregates_sql(source: str) -> str:
    """SELECT list + FROM + GROUP BY that turns span rows in ``source`` into rollup rows
    (hour, the five dimensions, then the measures in ``ROLLUP_SUMS`` order, min, max)."""
    bucket = "width_bucket(duration_ms, aethermind_latency_bounds())"
    buckets = ",\n        ".join(
        f"count(*) FILTER (WHERE {bucket} = {i}) AS {col}" for i, col in enumerate(BUCKET_COLUMNS)
    )
    tokens = ",\n        ".join(f"coalesce(sum({c}), 0) AS {c}" for c in TOKEN_COLUMNS)
    dims = ", ".join(f"coalesce({k}, '') AS {k}" for k in ROLLUP_KEYS)
    return f"""
        SELECT date_trunc('hour', "timestamp", 'UTC') AS hour, {dims},
        count(*) AS calls,
        count(*) FILTER (WHERE {IS_ERROR_SQL}) AS errors,
        {tokens},
        coalesce(sum(cost), 0) AS cost,
        count(cost) AS priced_calls,
        count(*) FILTER (WHERE {IS_UNPRICED_SQL}) AS unpriced_calls,
        count(duration_ms) AS latency_count,
        coalesce(sum(duration_ms), 0) AS latency_sum_ms,
        {buckets},
        min(duration_ms) AS latency_min_ms,
        max(duration_ms) AS latency_max_ms
        FROM {source}
        GROUP BY 1, 2, 3, 4, 5, 6"""


def rollup_regroup_sql(source: str, unit: str) -> str:
    """Rows shaped like ``rollup_aggregates_sql`` summed into coarser ``unit`` buckets
    (e.g. ``day``); the time column keeps the name ``hour`` so shapes stay the same."""
    sums = ", ".join(f"sum({c}) AS {c}" for c in ROLLUP_SUMS)
    return f"""
        SELECT date_trunc('{unit}', hour, 'UTC') AS hour, {", ".join(ROLLUP_KEYS)}, {sums},
               min(latency_min_ms) AS latency_min_ms, max(latency_max_ms) AS latency_max_ms
          FROM {source}
         GROUP BY 1, 2, 3, 4, 5, 6"""


ROLLUP_TABLES: tuple[tuple[str, str], ...] = (
    ("usage_rollup_hourly", "hour"),
    ("usage_rollup_daily", "day"),
)
"""Rollup tables and their time column, finest first."""


def rollup_upsert_sql(
    source_cte: str,
    *,
    table: str = "usage_rollup_hourly",
    time_column: str = "hour",
    sign: str = "+",
) -> str:
    """INSERT into a rollup table from a CTE shaped like ``rollup_aggregates_sql`` (time
    column named ``hour``), adding to existing rows. Rows go in key order so concurrent
    writers lock rollup rows in the same order and cannot deadlock."""
    cols = [
        "organization_id",
        time_column,
        *ROLLUP_KEYS,
        *ROLLUP_SUMS,
        "latency_min_ms",
        "latency_max_ms",
    ]
    sets = [f"{c} = r.{c} {sign} excluded.{c}" for c in ROLLUP_SUMS]
    sets.append("latency_min_ms = least(r.latency_min_ms, excluded.latency_min_ms)")
    sets.append("latency_max_ms = greatest(r.latency_max_ms, excluded.latency_max_ms)")
    select_cols = ", ".join(
        ["$1::uuid", "hour", *ROLLUP_KEYS, *ROLLUP_SUMS, "latency_min_ms", "latency_max_ms"]
    )
    return f"""
        INSERT INTO {table} AS r ({", ".join(cols)})
        SELECT {select_cols} FROM {source_cte}
        ORDER BY hour, {", ".join(ROLLUP_KEYS)}
        ON CONFLICT (organization_id, {time_column}, {", ".join(ROLLUP_KEYS)}) DO UPDATE SET
            {", ".join(sets)}"""


STAGING_TABLE = "aethermind_staging"
# Per session, emptied at every commit, so it never holds rows between batches. Creating it
# "if not exists" at the start of each write costs a catalog lookup, and works on any
# connection (including behind a transaction-mode pooler).
# Money travels as decimal text and is cast here: asyncpg's binary numeric encoding costs
# about 1.5 µs a value, five or six values a span, which the cast in PostgreSQL does not.
_MONEY = frozenset(c for c in COLUMNS if _PG_TYPES[c] == "numeric")
# "batch" numbers the groups of one grouped write, to count each group's new rows.
STAGING_COLUMNS = (*COLUMNS, "batch")
CREATE_STAGING_SQL = (
    f"CREATE TEMP TABLE IF NOT EXISTS {STAGING_TABLE} ("
    + ", ".join(f'"{c}" {"text" if c in _MONEY else _PG_TYPES[c]}' for c in COLUMNS)
    + ", batch integer) ON COMMIT DELETE ROWS"
)


DAILY_UPSERT = rollup_upsert_sql("agg_daily", table="usage_rollup_daily", time_column="day")


def _insert_sql() -> str:
    quoted = ", ".join(f'"{c}"' for c in COLUMNS)
    selected = ", ".join(f'"{c}"::numeric' if c in _MONEY else f'"{c}"' for c in COLUMNS)
    returned = (
        '"timestamp"',
        "trace_id",
        "span_id",
        *ROLLUP_KEYS,
        "status",
        "error_type",
        "duration_ms",
    )
    returning = ", ".join((*returned, *TOKEN_COLUMNS, "cost", "cost_source"))
    return f"""
        WITH ins AS (
            INSERT INTO telemetry_events (organization_id, {quoted})
            SELECT $1::uuid, {selected} FROM {STAGING_TABLE}
            ON CONFLICT DO NOTHING
            RETURNING {returning}
        ), agg AS ({rollup_aggregates_sql("ins")}
        ), up AS ({rollup_upsert_sql("agg")}
        ), agg_daily AS ({rollup_regroup_sql("agg", "day")}
        ), up_daily AS ({DAILY_UPSERT}
        )
        SELECT s.batch, count(*) AS inserted
          FROM {STAGING_TABLE} s
         WHERE ("timestamp", trace_id, span_id) IN (SELECT "timestamp", trace_id, span_id FROM ins)
         GROUP BY s.batch"""


INSERT_SQL = _insert_sql()
_RECORD = attrgetter(*COLUMNS)
_TIMESTAMP = COLUMNS.index("timestamp")


class _MonthCache:
    """Months known to have a partition, per pool (or connection) object.

    asyncpg pools cannot be weakly referenced, so entries are keyed by identity, hold their
    pool, and the least recently used is dropped past a handful (a process has one pool;
    tests make many). A month dropped by retention elsewhere is harmless: its rows land in
    the default partition, and they are past retention anyway.
    """

    def __init__(self, capacity: int = 8) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[int, tuple[Any, set[tuple[int, int]]]] = OrderedDict()

    def months_for(self, owner: Any) -> set[tuple[int, int]]:
        key = id(owner)
        entry = self._entries.get(key)
        if entry is None or entry[0] is not owner:
            entry = (owner, set())
            self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)
        return entry[1]


_known_months = _MonthCache()


def _month(ts: datetime) -> tuple[int, int]:
    utc = ts.astimezone(UTC)
    return utc.year, utc.month


def _next_month(month: tuple[int, int]) -> tuple[int, int]:
    year, mon = month
    return (year + 1, 1) if mon == 12 else (year, mon + 1)


async def ensure_partitions(
    pool_or_conn: PoolOrConnection, instants: Sequence[datetime], *, timeout: float | None = None
) -> int:
    """Make sure the monthly partitions for ``instants`` exist, and the month after the
    latest (so a month's first batch never waits on DDL). Cached per pool; returns the
    number of partitions created."""
    known = _known_months.months_for(pool_or_conn)
    months = {_month(ts) for ts in instants}
    if months:
        months.add(_next_month(max(months)))
    missing = sorted(months - known)
    if not missing:
        return 0
    starts = [datetime(y, m, 1, tzinfo=UTC) for y, m in missing]
    async with connection(pool_or_conn) as conn:
        created: int = await conn.fetchval(
            "SELECT aethermind_ensure_month_partitions($1::timestamptz[])", starts, timeout=timeout
        )
    known.update(missing)
    if created:
        logger.info(
            "created telemetry partitions",
            extra={"count": created, "months": [f"{y}-{m:02d}" for y, m in missing]},
        )
    return created


async def write_rows(
    pool_or_conn: PoolOrConnection,
    organization_id: UUID | str,
    rows: Sequence[TelemetryRow],
    *,
    timeout: float | None = None,
) -> int:
    """Store ``rows`` for ``organization_id`` in one transaction; return how many were new.

    Spans already stored (same organization, start time, trace and span id) are skipped and
    do not touch the rollup. When this returns, the rows and the rollup are committed.
    """
    return await write_records(
        pool_or_conn, organization_id, [_copy_record(r) for r in rows], timeout=timeout
    )


_MONEY_INDEXES = tuple(i for i, c in enumerate(COLUMNS) if c in _MONEY)


def _copy_record(row: TelemetryRow) -> tuple[Any, ...]:
    values = list(_RECORD(row))
    for i in _MONEY_INDEXES:
        if values[i] is not None:
            values[i] = str(values[i])
    return tuple(values)


async def write_records(
    pool_or_conn: PoolOrConnection,
    organization_id: UUID | str,
    records: Sequence[tuple[Any, ...]],
    *,
    timeout: float | None = None,
) -> int:
    """``write_rows`` for rows already laid out as COPY records: tuples in ``COLUMNS``
    order with money as decimal text (``rows.record_from_usage`` builds them; the receiver's
    hot path skips a row object per span).
    """
    (inserted,) = await write_record_groups(
        pool_or_conn, organization_id, [records], timeout=timeout
    )
    return inserted


async def write_record_groups(
    pool_or_conn: PoolOrConnection,
    organization_id: UUID | str,
    groups: Sequence[Sequence[tuple[Any, ...]]],
    *,
    timeout: float | None = None,
) -> list[int]:
    """Store several groups of COPY records of one organization in ONE transaction, and
    return how many rows of each group were new.

    The receiver gathers concurrent requests of an organization into one such write: one
    commit, one rollup upsert, and no two transactions of its own waiting on each other's
    locks on the same rollup rows. A span sent twice within one call counts in both groups.
    """
    total = sum(len(g) for g in groups)
    if not total:
        return [0] * len(groups)
    org = str(UUID(str(organization_id)))  # validated, so it can be inlined below
    await ensure_partitions(
        pool_or_conn, [r[_TIMESTAMP] for g in groups for r in g], timeout=timeout
    )
    staged = [(*r, batch) for batch, g in enumerate(groups) for r in g]
    async with connection(pool_or_conn) as conn, conn.transaction():
        # One round trip: the tenant setting (see scope.tenant_transaction) and the staging
        # table. Simple-query protocol cannot take parameters, hence the inlined UUID.
        await conn.execute(
            f"SELECT set_config('{ORG_SETTING}', '{org}', true); {CREATE_STAGING_SQL}",
            timeout=timeout,
        )
        await conn.copy_records_to_table(
            STAGING_TABLE, records=staged, columns=STAGING_COLUMNS, timeout=timeout
        )
        counted = await conn.fetch(INSERT_SQL, org, timeout=timeout)
    inserted = [0] * len(groups)
    for row in counted:
        inserted[row["batch"]] = row["inserted"]
    if sum(inserted) != total:
        logger.debug(
            "skipped already-stored spans",
            extra={"organization_id": org, "batch": total, "inserted": sum(inserted)},
        )
    return inserted
