"""Stores a batch of spans for one organization in one transaction: binary ``COPY`` into a
session temp staging table, then one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` whose
``RETURNING`` rows feed the hourly and daily rollup upserts, so a re-sent span is neither
stored nor counted twice.

Each provider request counts once: the new spans go in with what their own batch shows,
then ``deciding.settle`` decides their traces as wholes and moves the rollups, in the same
transaction (``storage/deciding.py`` says how).

Bulk path: measured against ``INSERT ... SELECT FROM unnest($1::text[], ...)`` with one
array parameter per column (``benchmarks/bench_writer.py``), COPY staging is faster: asyncpg
encodes COPY records without the per-element checks it makes on array parameters, and the
server work (the partitioned insert with its indexes) is the same for both.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from aethermind.storage import deciding
from aethermind.storage.scope import ORG_SETTING, PoolOrConnection, connection
from aethermind.storage.span_row import (
    COLUMNS,
    MONEY_COLUMNS,
    PG_TYPES,
    TRACE_DECIDED_COLUMNS,
    CopyRow,
    TelemetryRow,
    as_copy_row,
)

logger = logging.getLogger(__name__)

__all__ = [
    "PartitionCache",
    "TelemetryRow",
    "ensure_partitions",
    "write_copy_row_groups",
    "write_copy_rows",
    "write_rows",
]

STAGING_TABLE = "aethermind_staging_5"
"""Numbered by shape: behind a pooler, a server session may still hold an older shape."""
# Per session, emptied at every commit, so it never holds rows between batches. Creating it
# "if not exists" at the start of each write costs a catalog lookup, and works on any
# connection (including behind a transaction-mode pooler).
# Money travels as decimal text and is cast here: asyncpg's binary numeric encoding costs
# about 1.5 µs a value, five or six values a span, which the cast in PostgreSQL does not.
# "batch" numbers the groups of one grouped write, to count each group's new rows.
# "ord" numbers the staged rows from 1, to pick each one's final "counted" out of an array.
STAGING_COLUMNS = deciding.STAGED_COLUMNS
_STAGED_TYPES = {**PG_TYPES, **dict.fromkeys(MONEY_COLUMNS, "text"),
                 **dict.fromkeys(TRACE_DECIDED_COLUMNS, "boolean"),
                 "batch": "integer", "ord": "integer"}  # fmt: skip
CREATE_STAGING_SQL = (
    f"CREATE TEMP TABLE IF NOT EXISTS {STAGING_TABLE} ("
    + ", ".join(f'"{c}" {_STAGED_TYPES[c]}' for c in STAGING_COLUMNS)
    + ") ON COMMIT DELETE ROWS"
)


def _insert_sql() -> str:
    """$1 organization. Inserts the staged spans not stored yet, with the "counted" their
    batch alone gives them, and answers the ``ord`` of each one inserted; then takes the
    organization's counting lock (``deciding.counting_lock_sql``), so that the statements
    after it see every span a writer that held the lock before committed. The lock comes
    last (the second branch of a UNION ALL runs after the first), so inserts never wait on
    it; in this statement it saves a round trip."""
    quoted = ", ".join(f'"{c}"' for c in (*COLUMNS, *TRACE_DECIDED_COLUMNS))
    selected = ", ".join(
        f'"{c}"::numeric' if c in MONEY_COLUMNS else f'"{c}"'
        for c in (*COLUMNS, *TRACE_DECIDED_COLUMNS)
    )
    return f"""
        WITH ins AS (
            INSERT INTO telemetry_events (organization_id, {quoted})
            SELECT $1::uuid, {selected} FROM {STAGING_TABLE}
            ON CONFLICT DO NOTHING
            RETURNING "timestamp", trace_id, span_id
        )
        SELECT s.ord FROM {STAGING_TABLE} s
         WHERE ("timestamp", trace_id, span_id) IN
               (SELECT "timestamp", trace_id, span_id FROM ins)
        UNION ALL
        SELECT NULL FROM ({deciding.counting_lock_sql("$1")}) AS locked"""


INSERT_SQL = _insert_sql()
_TIMESTAMP = COLUMNS.index("timestamp")


class PartitionCache:
    """The months known to have a ``telemetry_events`` partition in one database, so a
    batch whose months are all known skips the partition check. Owned by whatever owns the
    writes to that database (the receiver's write coalescer; a benchmark); a write without
    one checks every time.

    A month dropped by retention elsewhere is harmless: its rows land in the default
    partition, and they are past retention anyway.
    """

    def __init__(self) -> None:
        self.months: set[tuple[int, int]] = set()
        self.written: dict[tuple[int, int], int] = {}
        """Spans this process wrote per month, until the month's partition was analyzed."""


ANALYZE_AFTER_ROWS = 500
"""Spans written into a month after which the writer has its partition analyzed, once per
process (``aethermind_analyze_month`` in migration 0006 says why)."""


async def _analyze_young_partitions(
    pool_or_conn: PoolOrConnection,
    partitions: PartitionCache,
    months: Counter[tuple[int, int]],
    *,
    timeout: float | None,
) -> None:
    for month, rows in months.items():
        count = partitions.written.get(month, 0)
        if count >= 0:
            partitions.written[month] = count + rows
    for month, count in list(partitions.written.items()):
        if count < ANALYZE_AFTER_ROWS:
            continue
        partitions.written[month] = -1  # done (or tried) for this process
        try:
            async with connection(pool_or_conn) as conn:
                analyzed = await conn.fetchval(
                    "SELECT aethermind_analyze_month($1)",
                    datetime(*month, 1, tzinfo=UTC),
                    timeout=timeout,
                )
        except Exception as exc:  # the spans are committed: statistics must not fail them
            logger.warning(
                "could not analyze a young partition; autovacuum will",
                extra={"month": f"{month[0]}-{month[1]:02d}", "error": repr(exc)},
            )
            continue
        logger.info(
            "analyzed a young partition",
            extra={"month": f"{month[0]}-{month[1]:02d}", "analyzed": analyzed},
        )


def _month(ts: datetime) -> tuple[int, int]:
    if ts.tzinfo is UTC:  # as the receiver builds them: no conversion
        return ts.year, ts.month
    utc = ts.astimezone(UTC)
    return utc.year, utc.month


def _next_month(month: tuple[int, int]) -> tuple[int, int]:
    year, mon = month
    return (year + 1, 1) if mon == 12 else (year, mon + 1)


MAX_NEW_PARTITIONS_PER_WRITE = 3
"""Creating a partition locks the events table for every tenant, so one write creates at
most this many (the newest months; say a backfill's latest month and the next). The rows of
the other months wait in the default partition, and move out when a later write creates
their month. The receiver's time window bounds the months that can exist at all."""


def months_of(instants: Sequence[datetime]) -> Counter[tuple[int, int]]:
    """How many of ``instants`` fall in each UTC month."""
    return Counter(_month(ts) for ts in instants)


async def ensure_partitions(
    pool_or_conn: PoolOrConnection,
    instants: Sequence[datetime],
    *,
    partitions: PartitionCache | None = None,
    max_new: int = MAX_NEW_PARTITIONS_PER_WRITE,
    timeout: float | None = None,
    months: Counter[tuple[int, int]] | None = None,
) -> int:
    """Make sure the monthly partitions for ``instants`` exist, and the month after the
    latest (so a month's first batch never waits on DDL), creating at most ``max_new``.
    Returns the number created. ``months``: ``months_of(instants)``, when the caller has
    it."""
    known = partitions.months if partitions is not None else set()
    wanted = set(months if months is not None else months_of(instants))
    if wanted:
        wanted.add(_next_month(max(wanted)))
    missing = sorted(wanted - known)
    if not missing:
        return 0
    if len(missing) > max_new:
        logger.info(
            "partitions deferred: rows wait in the default partition",
            extra={"deferred": [f"{y}-{m:02d}" for y, m in missing[:-max_new]]},
        )
        missing = missing[-max_new:]
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
    partitions: PartitionCache | None = None,
    timeout: float | None = None,
) -> int:
    """Store ``rows`` for ``organization_id`` in one transaction; return how many were new.

    Spans already stored (same organization, start time, trace and span id) are skipped and
    do not touch the rollup. When this returns, the rows and the rollup are committed.
    """
    return await write_copy_rows(
        pool_or_conn,
        organization_id,
        [as_copy_row(r) for r in rows],
        partitions=partitions,
        timeout=timeout,
    )


async def write_copy_rows(
    pool_or_conn: PoolOrConnection,
    organization_id: UUID | str,
    rows: Sequence[CopyRow],
    *,
    partitions: PartitionCache | None = None,
    timeout: float | None = None,
) -> int:
    """``write_rows`` for rows already laid out for COPY (``span_row.CopyRow``: tuples in
    ``COLUMNS`` order, money as decimal text), as the receiver's hot path builds them.
    """
    (inserted,) = await write_copy_row_groups(
        pool_or_conn, organization_id, [rows], partitions=partitions, timeout=timeout
    )
    return inserted


async def write_copy_row_groups(
    pool_or_conn: PoolOrConnection,
    organization_id: UUID | str,
    groups: Sequence[Sequence[tuple[Any, ...]]],
    *,
    partitions: PartitionCache | None = None,
    timeout: float | None = None,
) -> list[int]:
    """Store several groups of COPY rows of one organization in ONE transaction, and
    return how many rows of each group were new.

    The receiver gathers concurrent requests of an organization into one such write: one
    commit, one rollup upsert, and no two transactions of its own waiting on each other's
    locks on the same rollup rows. A span sent twice within one call counts in both groups.
    """
    total = sum(len(g) for g in groups)
    if not total:
        return [0] * len(groups)
    org = str(UUID(str(organization_id)))  # validated, so it can be inlined below
    months = months_of([r[_TIMESTAMP] for g in groups for r in g])
    await ensure_partitions(pool_or_conn, (), partitions=partitions, timeout=timeout, months=months)
    batch = deciding.batch_of(groups)
    flags = deciding.provisional_flags
    ordinal = iter(range(1, total + 1))
    staged = [(*r, *flags(r, batch), i, next(ordinal)) for i, g in enumerate(groups) for r in g]
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
        inserted_ords = {r[0] for r in await conn.fetch(INSERT_SQL, org, timeout=timeout)}
        inserted_ords.discard(None)  # the lock's row
        changed = await deciding.settle(
            conn, org, STAGING_TABLE, batch, staged, inserted_ords=inserted_ords, timeout=timeout
        )
    if partitions is not None and inserted_ords:
        await _analyze_young_partitions(pool_or_conn, partitions, months, timeout=timeout)
    if len(inserted_ords) == total:
        inserted = [len(g) for g in groups]
    else:
        inserted = [0] * len(groups)
        for row in staged:
            if row[deciding.STAGED_ORD] in inserted_ords:
                inserted[row[deciding.STAGED_BATCH]] += 1
    if len(inserted_ords) != total:
        logger.debug(
            "skipped already-stored spans",
            extra={"organization_id": org, "batch": total, "inserted": len(inserted_ords)},
        )
    if changed:
        logger.debug(
            "stored spans changed whether they count",
            extra={"organization_id": org, "changed": changed},
        )
    return inserted
