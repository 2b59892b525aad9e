"""Aggregates by who and what spent it, from the dimension rollups: one user's (session's,
agent's, tag value's) usage, every value's, and the top N values over millions.

Exact sums come from the daily rows of the range's whole days, the hourly rows of its other
whole hours, and the raw spans of its partial hours at either end (aggregated as the writer
aggregates them), as ``queries.py`` sums the usage rollups. Top N ranks first
and sums second, so it reads the hours of a few hundred values, never of all of them:

1. Candidates: the ``C`` highest values of each month the range touches, by the measure
   asked for (``dimension_rollup_monthly``, an index per measure).
2. Exact range totals of the candidates (their hourly rows and edge spans).
3. A value that is no month's candidate has, in each month, at most that month's C-th
   total, so over the range at most the sum of those: if the N-th exact total reaches that
   bound, no other value can enter the top N (a tie at the N-th place may be broken either
   way). Otherwise ``C`` grows fourfold and the search repeats, at most ``MAX_SEARCHES``
   times and up to ``MAX_CANDIDATES``; then the range's rows of every value are grouped
   (exact, the slow way: spend spread evenly over many values has no leaders to find).

Monthly totals are upper bounds of any part of the month: retention keeps them equal to the
sum of the kept hours, and the writer moves them with every change of what counts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from aethermind.storage.aggregate_sql import ROLLUP_MEASURES, Shape, ordered_sql
from aethermind.storage.dimension_rollups import (
    DAILY_TABLE,
    HOURLY_TABLE,
    MONTHLY_TABLE,
    UNNAMED,
)
from aethermind.storage.dimensions import ATTRIBUTION, ORDER_BY, column_of, in_force_sql
from aethermind.storage.rollups import ROLLUP_KEYS, ROLLUP_SUMS, rollup_aggregates_sql

MAX_CANDIDATES = 25_600
"""Candidates per month past which top N groups the range's rows of every value."""
FIRST_CANDIDATES = 4
"""The first search takes this many times N candidates a month."""
MAX_SEARCHES = 2
"""Searches before grouping every value: where no value stands out (spend spread evenly),
more candidates rarely prove the bound and each search costs more than the last."""
_VALUE = "dimension_value"


def answerable_dimension(shape: Shape) -> str | None:
    """The dimension the dimension rollups answer ``shape`` by: the one non-rollup dimension
    it names, when it groups by nothing else and filters on nothing else."""
    named = {*shape.group_by, *shape.filters}
    if len(named) != 1:
        return None
    (dimension,) = named
    return None if dimension in ROLLUP_KEYS else dimension


def dimension_sql(dimension: str, shape: Shape, *, by_values: bool) -> tuple[str, list[Any]]:
    """$1 organization, $2-$3 the range, $4-$7 its ``queries.RollupPlan`` (whole hours
    [$4, $5), whole days [$6, $7)); with ``by_values``, $8 the values to keep (text[]). The
    rows of ``shape`` (grouped by ``dimension`` or not, by bucket or not), shaped for
    ``queries._row`` (rollup): daily rows, hourly rows, and the raw spans of the partial
    hours at the ends aggregated as the writer aggregates them."""
    column = column_of(dimension)
    in_force = in_force_sql(dimension)
    value_filter = " AND value = ANY($8::text[])" if by_values else ""
    edge_filter = f" AND coalesce({column}, '') = ANY($8::text[])" if by_values else ""
    if in_force:
        edge_filter += f" AND {in_force}"
    # The null group of user, session and agent also holds the spans that named none.
    dimensions = f"'{dimension}', '{UNNAMED}'" if dimension in ATTRIBUTION else f"'{dimension}'"
    edges = (
        f"(SELECT *, {column} AS {_VALUE} FROM telemetry_events"
        " WHERE organization_id = $1 AND counted"
        ' AND ("timestamp" >= $2 AND "timestamp" < $4 OR "timestamp" >= $5 AND "timestamp" < $3)'
        f"{edge_filter}) AS edges"
    )
    measures_in = ", ".join([*ROLLUP_SUMS, "latency_min_ms", "latency_max_ms"])
    granularity = shape.granularity
    select = [f"date_trunc('{granularity}', hour, 'UTC') AS bucket"] if granularity else []
    keys = ["bucket"] if granularity else []
    if shape.group_by:
        select.append(f'{_VALUE} AS "{dimension}"')
        keys.append(f'"{dimension}"')
    limit_param = 9 if by_values else 8
    group, limit_args = ordered_sql(keys, shape.order_by, shape.limit, limit_param=limit_param)
    sql = f"""
        WITH parts AS (
            SELECT day AS hour, value AS {_VALUE}, {measures_in} FROM {DAILY_TABLE}
             WHERE organization_id = $1 AND dimension IN ({dimensions})
               AND day >= $6 AND day < $7{value_filter}
            UNION ALL
            SELECT hour, value AS {_VALUE}, {measures_in} FROM {HOURLY_TABLE}
             WHERE organization_id = $1 AND dimension IN ({dimensions})
               AND (hour >= $4 AND hour < $6 OR hour >= $7 AND hour < $5){value_filter}
            UNION ALL
            {rollup_aggregates_sql(edges, keys=(_VALUE,))}
        )
        SELECT {", ".join(select + list(ROLLUP_MEASURES))} FROM parts{group}"""
    return sql, limit_args


_CANDIDATES_SQL = """
    SELECT m.month, c.value, c.measure
      FROM unnest($3::timestamptz[]) AS m(month)
     CROSS JOIN LATERAL (
           SELECT value, {measure} AS measure FROM {table}
            WHERE organization_id = $1 AND dimension = $2 AND month = m.month
            ORDER BY {measure} DESC LIMIT $4) AS c"""


async def dimension_rows(
    conn: Any,
    organization_id: UUID,
    dimension: str,
    shape: Shape,
    bounds: tuple[datetime, ...],
    *,
    timeout: float | None,
) -> list[Any]:
    """The records of ``shape`` over ``bounds`` (from, to, then the range's
    ``queries.RollupPlan``: whole hours and whole days) from the dimension rollups; top N by
    the threshold search when the shape asks for the top values of the dimension alone."""
    if shape.filters:
        sql, args = dimension_sql(dimension, shape, by_values=True)
        values = [shape.filters[dimension]]
        return list(await conn.fetch(sql, organization_id, *bounds, values, *args, timeout=timeout))
    if shape.order_by is None or shape.limit is None or shape.granularity or not shape.group_by:
        sql, args = dimension_sql(dimension, shape, by_values=False)
        return list(await conn.fetch(sql, organization_id, *bounds, *args, timeout=timeout))
    return await _top_values(conn, organization_id, dimension, shape, bounds, timeout=timeout)


async def _top_values(
    conn: Any,
    organization_id: UUID,
    dimension: str,
    shape: Shape,
    bounds: tuple[datetime, ...],
    *,
    timeout: float | None,
) -> list[Any]:
    assert shape.order_by is not None and shape.limit is not None
    limit, measure = shape.limit, ORDER_BY[shape.order_by]
    months = _months(bounds[0], bounds[1])
    candidates_sql = _CANDIDATES_SQL.format(measure=measure, table=MONTHLY_TABLE)
    exact_sql, exact_args = dimension_sql(dimension, shape, by_values=True)
    per_month = limit * FIRST_CANDIDATES
    for _ in range(MAX_SEARCHES):
        if per_month > MAX_CANDIDATES:
            break
        ranked = await conn.fetch(
            candidates_sql, organization_id, dimension, months, per_month, timeout=timeout
        )
        by_month: dict[datetime, list[Any]] = {}
        for record in ranked:
            by_month.setdefault(record["month"], []).append(record["measure"])
        # A month with fewer than C values has all of them among the candidates.
        bound = sum(
            (values[-1] for values in by_month.values() if len(values) == per_month), start=0
        )
        # '' (spans without a value) always competes: its total also holds the UNNAMED rows.
        values = sorted({record["value"] for record in ranked} | {""})
        exact = await conn.fetch(
            exact_sql, organization_id, *bounds, values, *exact_args, timeout=timeout
        )
        complete = all(len(v) < per_month for v in by_month.values())
        if complete or (len(exact) == limit and _measure(exact[-1], measure) >= bound):
            return list(exact)
        per_month *= 4
    sql, args = dimension_sql(dimension, shape, by_values=False)
    return list(await conn.fetch(sql, organization_id, *bounds, *args, timeout=timeout))


def _measure(record: Any, measure: str) -> Any:
    value = record[measure]
    return 0 if value is None else value


def _months(from_: datetime, to: datetime) -> list[datetime]:
    """The first instants (UTC) of the calendar months ``[from_, to)`` touches."""
    start = from_.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    months = []
    while start < to:
        months.append(start)
        start = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return months
