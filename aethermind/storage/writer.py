"""Stores a batch of spans for one organization in one transaction: binary ``COPY`` into a
session temp staging table, then one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` whose
``RETURNING`` rows feed the hourly and daily rollup upserts, so a re-sent span is neither
stored nor counted twice.

Each provider request counts once (``storage/counting.py``): before inserting, the writer
reads back the stored spans of the batch's traces, decides with them which spans count, and
in the same statement inserts the new spans with that decision, flips the stored spans whose
decision changed, and moves the rollups by exactly the difference. The organization's
writes take turns on a transaction-scoped advisory lock, so two writers (workers, replicas)
holding spans of one trace never decide without seeing each other's spans.

Bulk path: measured against ``INSERT ... SELECT FROM unnest($1::text[], ...)`` with one
array parameter per column (``benchmarks/bench_writer.py``), COPY staging is faster: asyncpg
encodes COPY records without the per-element checks it makes on array parameters, and the
server work (the partitioned insert with its indexes) is the same for both.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from aethermind.storage.counting import MAX_RECONCILED_SPANS, SpanFacts, counted_spans
from aethermind.storage.rollups import (
    DAILY_UPSERT,
    ROLLUP_KEYS,
    TOKEN_COLUMNS,
    rollup_aggregates_sql,
    rollup_regroup_sql,
    rollup_upsert_sql,
)
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

STAGING_TABLE = "aethermind_staging_2"
"""Numbered by shape: behind a pooler, a server session may still hold an older shape."""
# Per session, emptied at every commit, so it never holds rows between batches. Creating it
# "if not exists" at the start of each write costs a catalog lookup, and works on any
# connection (including behind a transaction-mode pooler).
# Money travels as decimal text and is cast here: asyncpg's binary numeric encoding costs
# about 1.5 µs a value, five or six values a span, which the cast in PostgreSQL does not.
# "batch" numbers the groups of one grouped write, to count each group's new rows.
# "ord" numbers the staged rows from 1, to pick each one's "counted" out of an array.
STAGING_COLUMNS = (*COLUMNS, "batch", "ord")
CREATE_STAGING_SQL = (
    f"CREATE TEMP TABLE IF NOT EXISTS {STAGING_TABLE} ("
    + ", ".join(f'"{c}" {"text" if c in MONEY_COLUMNS else PG_TYPES[c]}' for c in COLUMNS)
    + ", batch integer, ord integer) ON COMMIT DELETE ROWS"
)

TRACE_WINDOW = timedelta(hours=24)
"""Spans of one trace are decided together when their start times lie within this of each
other: the writer reads back the stored spans of a batch's traces that start up to this
long before the batch's earliest span and after its latest."""
MAX_RECONCILED_ROWS_PER_WRITE = 50_000
"""Stored spans one write reads back at most; traces past it are decided like oversized
ones (``counting.MAX_RECONCILED_SPANS``)."""
COUNTING_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtextextended('aethermind.counting:{org}', 0))"
"""Serializes the organization's decisions of what counts (held to the end of the
transaction). Keyed by organization: tenants never wait on each other here."""


_RETURNED = (
    '"timestamp"',
    "trace_id",
    "span_id",
    *ROLLUP_KEYS,
    "status",
    "error_type",
    "duration_ms",
    *TOKEN_COLUMNS,
    "cost",
    "cost_source",
)
"""What the rollups need of a span, as the insert and the counting update return it."""


def _insert_sql() -> str:
    """$1 organization; $2 each staged row's "counted" (by ``ord``); $3-$6 the stored spans
    whose "counted" changes: start times, trace ids, span ids, new values."""
    quoted = ", ".join(f'"{c}"' for c in (*COLUMNS, *TRACE_DECIDED_COLUMNS))
    selected = ", ".join(f'"{c}"::numeric' if c in MONEY_COLUMNS else f'"{c}"' for c in COLUMNS)
    returning = ", ".join(_RETURNED)
    changed_returning = ", ".join(f"t.{c}" for c in _RETURNED)
    return f"""
        WITH ins AS (
            INSERT INTO telemetry_events (organization_id, {quoted})
            SELECT $1::uuid, {selected}, ($2::boolean[])[ord] FROM {STAGING_TABLE}
            ON CONFLICT DO NOTHING
            RETURNING {returning}, counted
        ), changed AS (
            UPDATE telemetry_events t SET counted = c.counted
              FROM unnest($3::timestamptz[], $4::text[], $5::text[], $6::boolean[])
                   AS c(ts, trace_id, span_id, counted)
             WHERE t.organization_id = $1 AND t."timestamp" = c.ts
               AND t.trace_id = c.trace_id AND t.span_id = c.span_id
               AND t.counted <> c.counted
            RETURNING {changed_returning}, CASE WHEN c.counted THEN 1 ELSE -1 END AS weight
        ), moved AS (
            SELECT {returning}, 1 AS weight FROM ins WHERE counted
            UNION ALL
            SELECT {returning}, weight FROM changed
        ), agg AS ({rollup_aggregates_sql("moved", weight="weight")}
        ), up AS ({rollup_upsert_sql("agg")}
        ), agg_daily AS ({rollup_regroup_sql("agg", "day")}
        ), up_daily AS ({DAILY_UPSERT}
        )
        SELECT s.batch, count(*) AS inserted
          FROM {STAGING_TABLE} s
         WHERE ("timestamp", trace_id, span_id) IN (SELECT "timestamp", trace_id, span_id FROM ins)
         GROUP BY s.batch"""


_RICHNESS_SQL = " + ".join(
    f"({c} IS NOT NULL)::int"
    for c in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
              "reasoning_tokens")
)  # fmt: skip
STORED_TRACE_SPANS_SQL = f"""
    SELECT t.trace_id, e.span_id, e.parent_span_id, e."timestamp", e.duration_ms,
           e.usage_role, e.counted, {_RICHNESS_SQL} AS richness
      FROM unnest($2::text[]) WITH ORDINALITY AS t(trace_id, n)
     CROSS JOIN LATERAL (
           SELECT * FROM telemetry_events
            WHERE organization_id = $1 AND trace_id = t.trace_id
              AND "timestamp" >= $3 AND "timestamp" < $4
            LIMIT {MAX_RECONCILED_SPANS + 1}) e
     ORDER BY t.n
     LIMIT {MAX_RECONCILED_ROWS_PER_WRITE}"""
"""The stored spans of the given traces in a time range, trace by trace, each trace cut at
one past ``MAX_RECONCILED_SPANS`` (so an oversized trace shows), the whole at
``MAX_RECONCILED_ROWS_PER_WRITE``."""


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


def _month(ts: datetime) -> tuple[int, int]:
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


async def ensure_partitions(
    pool_or_conn: PoolOrConnection,
    instants: Sequence[datetime],
    *,
    partitions: PartitionCache | None = None,
    max_new: int = MAX_NEW_PARTITIONS_PER_WRITE,
    timeout: float | None = None,
) -> int:
    """Make sure the monthly partitions for ``instants`` exist, and the month after the
    latest (so a month's first batch never waits on DDL), creating at most ``max_new``.
    Returns the number created."""
    known = partitions.months if partitions is not None else set()
    months = {_month(ts) for ts in instants}
    if months:
        months.add(_next_month(max(months)))
    missing = sorted(months - known)
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
    await ensure_partitions(
        pool_or_conn,
        [r[_TIMESTAMP] for g in groups for r in g],
        partitions=partitions,
        timeout=timeout,
    )
    staged = [(*r, batch) for batch, g in enumerate(groups) for r in g]
    staged = [(*r, ord_) for ord_, r in enumerate(staged, 1)]
    async with connection(pool_or_conn) as conn, conn.transaction():
        # One round trip: the tenant setting (see scope.tenant_transaction), the counting
        # lock and the staging table. Simple-query protocol cannot take parameters, hence the
        # inlined UUID.
        await conn.execute(
            f"SELECT set_config('{ORG_SETTING}', '{org}', true); "
            f"{COUNTING_LOCK_SQL.format(org=org)}; {CREATE_STAGING_SQL}",
            timeout=timeout,
        )
        await conn.copy_records_to_table(
            STAGING_TABLE, records=staged, columns=STAGING_COLUMNS, timeout=timeout
        )
        decision = await _decide(conn, org, staged, timeout=timeout)
        counted = await conn.fetch(
            INSERT_SQL,
            org,
            decision.new_counted,
            *decision.changes(),
            timeout=timeout,
        )
    inserted = [0] * len(groups)
    for row in counted:
        inserted[row["batch"]] = row["inserted"]
    if sum(inserted) != total:
        logger.debug(
            "skipped already-stored spans",
            extra={"organization_id": org, "batch": total, "inserted": sum(inserted)},
        )
    if decision.changed:
        logger.debug(
            "spans changed whether they count",
            extra={"organization_id": org, "changed": len(decision.changed)},
        )
    return inserted


_TRACE_ID = COLUMNS.index("trace_id")
_SPAN_ID = COLUMNS.index("span_id")
_PARENT = COLUMNS.index("parent_span_id")
_DURATION = COLUMNS.index("duration_ms")
_ROLE = COLUMNS.index("usage_role")
_USAGE_KINDS = tuple(
    COLUMNS.index(c)
    for c in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
              "reasoning_tokens")
)  # fmt: skip
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class _Decision:
    """What one write decided: each staged row's "counted" (in ``ord`` order), and the
    stored spans whose "counted" changes, as (start, trace id, span id, new value)."""

    new_counted: list[bool]
    changed: list[tuple[datetime, str, str, bool]]

    def changes(self) -> tuple[list[datetime], list[str], list[str], list[bool]]:
        columns = tuple(zip(*self.changed, strict=True)) if self.changed else ((), (), (), ())
        return tuple(list(c) for c in columns)  # type: ignore[return-value]


def _micros(ts: datetime) -> int:
    return (ts - _EPOCH) // timedelta(microseconds=1)


def _facts(  # noqa: PLR0917 - one call per span, in column order
    span_id: str,
    parent: str | None,
    start: datetime,
    duration_ms: float | None,
    role: str | None,
    richness: int,
) -> SpanFacts:
    start_us = _micros(start)
    end_us = start_us + int((duration_ms or 0.0) * 1000)
    return SpanFacts(span_id, parent, start_us, max(start_us, end_us), role, richness)  # type: ignore[arg-type]


async def _decide(
    conn: Any, org: str, staged: Sequence[tuple[Any, ...]], *, timeout: float | None
) -> _Decision:
    """Decide which spans count, for the staged rows' traces: read their stored spans back
    (under the counting lock), decide each trace as a whole, and say what changes."""
    by_trace: dict[str, dict[str, tuple[Any, ...]]] = {}
    for row in staged:
        by_trace.setdefault(row[_TRACE_ID], {}).setdefault(row[_SPAN_ID], row)
    starts = [row[_TIMESTAMP] for row in staged]
    stored = await conn.fetch(
        STORED_TRACE_SPANS_SQL,
        org,
        list(by_trace),
        min(starts) - TRACE_WINDOW,
        max(starts) + TRACE_WINDOW,
        timeout=timeout,
    )
    stored_by_trace: dict[str, list[Any]] = {}
    for record in stored:
        stored_by_trace.setdefault(record["trace_id"], []).append(record)
    cut = len(stored) >= MAX_RECONCILED_ROWS_PER_WRITE
    last_fetched = stored[-1]["trace_id"] if cut else None
    unread = _unread_traces(by_trace, last_fetched) if cut else set()

    counted_ids: dict[str, set[str]] = {}
    changed: list[tuple[datetime, str, str, bool]] = []
    for trace_id, new_spans in by_trace.items():
        known = stored_by_trace.get(trace_id, ())
        oversized = trace_id in unread or len(known) > MAX_RECONCILED_SPANS
        facts: dict[str, SpanFacts] = {}
        if not oversized:
            for record in known:
                facts[record["span_id"]] = _facts(
                    record["span_id"],
                    record["parent_span_id"],
                    record["timestamp"],
                    record["duration_ms"],
                    record["usage_role"],
                    record["richness"],
                )
        for span_id, row in new_spans.items():
            if span_id not in facts:
                facts[span_id] = _facts(
                    span_id,
                    row[_PARENT],
                    row[_TIMESTAMP],
                    row[_DURATION],
                    row[_ROLE],
                    sum(row[i] is not None for i in _USAGE_KINDS),
                )
        decided = counted_spans(facts.values())
        if oversized:
            # Decided from this batch alone: requests count, roll-ups never do (their
            # requests may be among the spans not read back).
            decided = {i for i in decided if facts[i].role == "request"}
        else:
            for record in known:
                now = record["span_id"] in decided
                if now != record["counted"]:
                    changed.append((record["timestamp"], trace_id, record["span_id"], now))
        counted_ids[trace_id] = decided
    new_counted = [row[_SPAN_ID] in counted_ids[row[_TRACE_ID]] for row in staged]
    return _Decision(new_counted, changed)


def _unread_traces(by_trace: dict[str, Any], last_fetched: str | None) -> set[str]:
    """Traces the capped read back may have cut: the last one it reached and all after it."""
    order = list(by_trace)
    start = order.index(last_fetched) if last_fetched in by_trace else 0
    return set(order[start:])
