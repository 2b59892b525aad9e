"""Recomputes stored costs from stored token counts with a caller-supplied price function,
batch by batch, each batch updating its spans and the rollups (usage and dimension) in one
transaction.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from aethermind.semconv.record import Cost, UsageRecord
from aethermind.storage.deciding import counting_lock_sql
from aethermind.storage.dimension_rollups import dimension_rollup_ctes
from aethermind.storage.dimensions import ATTRIBUTION, DIMENSIONS
from aethermind.storage.rollups import (
    PRICE_LINES,
    PRICED_INPUTS,
    ROLLUP_INPUTS,
    ROLLUP_TABLES,
)
from aethermind.storage.scope import PoolOrConnection, tenant_transaction
from aethermind.storage.span_row import COST_COLUMNS, PG_TYPES, cost_values, usage_from_row

logger = logging.getLogger(__name__)

PriceFn = Callable[[UsageRecord, datetime], Cost]
"""Prices one span's usage as of its start time (current prices plus org overrides)."""
ProgressFn = Callable[[int, int], None]
"""Called after each batch with (spans examined so far, spans in the range)."""

_COST_FIELDS = COST_COLUMNS
_COST = COST_COLUMNS.index("cost")
_SOURCE = COST_COLUMNS.index("cost_source")
_DIMS = DIMENSIONS


_UPDATE_COSTS_SQL = f"""
    UPDATE telemetry_events t
       SET {", ".join(f"{c} = u.{c}" for c in COST_COLUMNS)}
      FROM unnest($2::timestamptz[], $3::text[], $4::text[],
                  {", ".join(f"${i + 5}::{PG_TYPES[c]}[]" for i, c in enumerate(COST_COLUMNS))})
           AS u(ts, trace_id, span_id, {", ".join(COST_COLUMNS)})
     WHERE t.organization_id = $1 AND t."timestamp" = u.ts
       AND t.trace_id = u.trace_id AND t.span_id = u.span_id"""
"""Sets every cost column of the spans named by (start time, trace id, span id)."""
_SPAN_MEASURES = (
    *(c for c in ROLLUP_INPUTS if c not in PRICED_INPUTS),
    *ATTRIBUTION.values(),
    "tags",
)
_OLD = ", ".join(f"old_{c}" for c in PRICED_INPUTS)
_NEW = ", ".join(f"new_{c}" for c in PRICED_INPUTS)
_MOVE_DIMENSION_COSTS_SQL = f"""
    WITH u AS (
        SELECT * FROM unnest($2::timestamptz[], $3::text[], $4::text[],
                             {
    ", ".join(f"${i + 5}::{PG_TYPES[c]}[]" for i, c in enumerate((*PRICED_INPUTS, *PRICED_INPUTS)))
})
               AS u(ts, trace_id, span_id, {_OLD}, {_NEW})
    ), spans AS (
        SELECT e."timestamp", {", ".join(f"e.{c}" for c in _SPAN_MEASURES)}, u.*
          FROM u JOIN telemetry_events e
            ON e.organization_id = $1 AND e."timestamp" = u.ts
           AND e.trace_id = u.trace_id AND e.span_id = u.span_id
    ), moved AS (
        SELECT "timestamp", {", ".join(_SPAN_MEASURES)},
               {", ".join(f"old_{c} AS {c}" for c in PRICED_INPUTS)}, -1 AS weight FROM spans
        UNION ALL
        SELECT "timestamp", {", ".join(_SPAN_MEASURES)}, {_NEW}, 1 FROM spans
    ), {", ".join(dimension_rollup_ctes("moved"))}
    SELECT 1"""
"""Moves the dimension rollups by the counted spans' old costs out and new costs in (every
other measure cancels out)."""


@dataclass(frozen=True, slots=True)
class RepriceResult:
    examined: int
    changed: int


def _new_costs(row: Any, cost: Cost) -> tuple[Any, ...]:
    """The cost columns as the writer would store them for this cost."""
    return cost_values(cost, is_llm_call=row["cost_source"] is not None)


_PRICED_AT = [COST_COLUMNS.index(c) for c in PRICED_INPUTS]
_LINES_AT = [COST_COLUMNS.index(c) for c in PRICE_LINES]
_MOVED_SUMS = ("cost", "priced_calls", "unpriced_calls", "cost_of_provided", *PRICE_LINES)
"""The usage rollups' sums a price moves, in ``_contribution``'s order."""


def _no_delta() -> list[Any]:
    return [Decimal(0), 0, 0, Decimal(0), *(Decimal(0) for _ in PRICE_LINES)]


def _contribution(costs: tuple[Any, ...], reported: bool) -> tuple[Any, ...]:
    """One span's share of ``_MOVED_SUMS`` given its cost columns (``COST_COLUMNS``) and
    whether it reported a cost of its own."""
    cost, source = costs[_COST], costs[_SOURCE]
    parts = tuple(costs[i] or Decimal(0) for i in _LINES_AT)
    if cost is not None:
        return (cost, 1, 0, cost if reported else Decimal(0), *parts)
    return (Decimal(0), 0, 1 if source == "unknown" else 0, Decimal(0), *parts)


async def reprice(
    pool_or_conn: PoolOrConnection,
    organization_id: UUID | str,
    from_: datetime,
    to: datetime,
    price_fn: PriceFn,
    *,
    batch_size: int = 2000,
    progress: ProgressFn | None = None,
    timeout: float | None = None,
) -> RepriceResult:
    """Reprice the organization's spans that started in ``[from_, to)``.

    Only spans whose cost columns change are written; the rollup's cost, priced and
    unpriced counts in the hourly and daily rollups move by the same deltas in the same
    transaction (for the spans that count; the others are not in the rollups), so rollup and
    raw rows
    agree after every batch (a crash mid-way leaves earlier batches repriced, later ones not;
    running again finishes the job). Returns how many spans were examined and changed.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    org = UUID(str(organization_id))
    async with tenant_transaction(pool_or_conn, org) as conn:
        total: int = await conn.fetchval(
            "SELECT count(*) FROM telemetry_events"
            ' WHERE organization_id = $1 AND "timestamp" >= $2 AND "timestamp" < $3',
            org, from_, to, timeout=timeout,
        )  # fmt: skip
    examined = changed = 0
    cursor: tuple[datetime, str, str] | None = None
    while True:
        async with tenant_transaction(pool_or_conn, org) as conn:
            # The writer's lock: whether a span counts does not change while it is repriced.
            await conn.execute(counting_lock_sql(f"'{org}'"), timeout=timeout)
            rows = await conn.fetch(
                f"""
                SELECT "timestamp", trace_id, span_id,
                       date_trunc('hour', "timestamp", 'UTC') AS hour,
                       {", ".join(f"coalesce({d}, '') AS {d}" for d in _DIMS)},
                       request_model, response_model, input_tokens, output_tokens,
                       cache_read_tokens, cache_write_tokens, reasoning_tokens, total_tokens,
                       provided_cost, error_type, counted, units, usage_role,
                       {", ".join(_COST_FIELDS)}
                  FROM telemetry_events
                 WHERE organization_id = $1 AND "timestamp" >= $2 AND "timestamp" < $3
                   AND ($4::timestamptz IS NULL OR ("timestamp", trace_id, span_id) > ($4, $5, $6))
                 ORDER BY "timestamp", trace_id, span_id
                 LIMIT $7
                   FOR UPDATE
                """,
                org, from_, to, *(cursor or (None, None, None)), batch_size, timeout=timeout,
            )  # fmt: skip
            if not rows:
                break
            updates: list[tuple[Any, ...]] = []
            moves: list[tuple[Any, ...]] = []
            deltas: dict[tuple[Any, ...], list[Any]] = defaultdict(_no_delta)
            for row in rows:
                record = usage_from_row({**dict(row), **{d: row[d] or None for d in _DIMS}})
                new = _new_costs(row, price_fn(record, row["timestamp"]))
                old = tuple(row[f] for f in _COST_FIELDS)
                if new == old:
                    continue
                updates.append((row["timestamp"], row["trace_id"], row["span_id"], *new))
                if not row["counted"]:
                    continue  # not in the rollups: nothing there moves
                moves.append(
                    (*updates[-1][:3], *(old[i] for i in _PRICED_AT), *(new[i] for i in _PRICED_AT))
                )
                delta = deltas[(row["hour"], *(row[d] for d in _DIMS))]
                reported = row["provided_cost"] is not None
                for i, (was, now) in enumerate(zip(_contribution(old, reported),
                                                   _contribution(new, reported),
                                                   strict=True)):  # fmt: skip
                    delta[i] += now - was
            if updates:
                await _apply(conn, org, updates, deltas, timeout=timeout)
            if moves:
                columns = [list(c) for c in zip(*moves, strict=True)]
                await conn.execute(_MOVE_DIMENSION_COSTS_SQL, org, *columns, timeout=timeout)
            examined += len(rows)
            changed += len(updates)
            last = rows[-1]
            cursor = (last["timestamp"], last["trace_id"], last["span_id"])
        if progress is not None:
            progress(examined, total)
        if len(rows) < batch_size:
            break
    logger.info(
        "repriced spans",
        extra={"organization_id": str(org), "examined": examined, "changed": changed},
    )
    return RepriceResult(examined=examined, changed=changed)


async def _apply(
    conn: Any,
    org: UUID,
    updates: list[tuple[Any, ...]],
    deltas: dict[tuple[Any, ...], list[Any]],
    *,
    timeout: float | None,
) -> None:
    columns = list(zip(*updates, strict=True))
    await conn.execute(_UPDATE_COSTS_SQL, org, *(list(c) for c in columns), timeout=timeout)
    for table, time_column in ROLLUP_TABLES:
        merged: dict[tuple[Any, ...], list[Any]] = defaultdict(_no_delta)
        for (hour, *dims), delta in deltas.items():
            start = hour if time_column == "hour" else _utc_midnight(hour)
            target = merged[(start, *dims)]
            for i, value in enumerate(delta):
                target[i] += value
        keys = sorted(merged)
        width = len(_DIMS)
        types = ["int8" if c.endswith("_calls") else "numeric" for c in _MOVED_SUMS]
        arrays = ", ".join(
            [
                "$2::timestamptz[]",
                *(f"${i + 3}::text[]" for i in range(width)),
                *(f"${width + 3 + i}::{t}[]" for i, t in enumerate(types)),
            ]
        )
        same_keys = " AND ".join(f"r.{d} = d.{d}" for d in _DIMS)
        sets = ", ".join(f"{c} = r.{c} + d.{c}" for c in _MOVED_SUMS)
        await conn.execute(
            f"""
            UPDATE {table} r SET {sets}
              FROM unnest({arrays}) AS d(t, {", ".join((*_DIMS, *_MOVED_SUMS))})
             WHERE r.organization_id = $1 AND r.{time_column} = d.t AND {same_keys}
            """,
            org,
            *([k[i] for k in keys] for i in range(width + 1)),
            *([merged[k][i] for k in keys] for i in range(len(_MOVED_SUMS))),
            timeout=timeout,
        )


def _utc_midnight(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
