"""Usage reported as OTLP metrics: its rows, how they are written, and how the aggregates
read them.

Metrics are aggregates, not calls: a token counter says how many tokens a service used over
an interval, not which calls used them. They are stored apart from spans (``metric_usage``,
migration 0013) and read by the aggregates under one rule, **spans win per service and UTC
day**: a service's metric usage on a day counts only when that service reported no span or
event usage that day. A coding agent that sends both usage events and token metrics
(Claude Code does) is then counted once, from its events, whatever the order they arrive
in; a service that sends only metrics still shows its usage. The rule is per service, not
per model, because agents name the model differently in each signal (Claude Code's metrics
carry the alias asked for, ``claude-sonnet-4-5``, its events the snapshot that answered).

A row is one data point of one series (a metric and its attribute set) with one
``measure``: what one unit of its value adds to the aggregates' columns (``MEASURES``).
A cumulative series' increase over an interval is computed when read, from consecutive
points of one (series, start time), a value below its predecessor being a reset; a delta
point is its own increase. A re-delivered point has the same key and is stored once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from aethermind.storage.cost_basis import CostBasis
from aethermind.storage.rollups import TOKEN_COLUMNS
from aethermind.storage.scope import PoolOrConnection, tenant_transaction

MEASURES: dict[str, dict[str, int]] = {
    "input_tokens": {"input_tokens": 1, "total_tokens": 1},
    "cache_read_tokens": {"input_tokens": 1, "cache_read_tokens": 1, "total_tokens": 1},
    "cache_write_tokens": {"input_tokens": 1, "cache_write_tokens": 1, "total_tokens": 1},
    "cache_read_of_input": {"cache_read_tokens": 1},
    "output_tokens": {"output_tokens": 1, "total_tokens": 1},
    "reasoning_tokens": {"output_tokens": 1, "reasoning_tokens": 1, "total_tokens": 1},
    "reasoning_of_output": {"reasoning_tokens": 1},
    "calls": {"calls": 1},
    "failed_calls": {"calls": 1, "errors": 1},
    "provided_cost": {"provided_cost": 1},
}
"""What one unit of a row's value adds to each aggregate column. ``input_tokens`` follows
the GenAI conventions (cache reads and writes included), so a cache count a source reports
apart from its input count (Claude Code's ``cacheRead``) adds to both, while one already
inside another series' input count (Gemini CLI's ``cache``) is ``cache_read_of_input``."""

METRIC_DIMENSIONS: dict[str, str] = {
    "provider": "provider",
    "model": "model",
    "service": "service",
    "user": "user_id",
    "session": "session_id",
}
"""The aggregates' dimensions a metric row has, and its column for each. Grouped by any
other dimension, metric usage falls under "no value"; filtered by one, it is left out."""

MAX_POINTS_PER_WRITE = 10_000


@dataclass(frozen=True, slots=True)
class MetricUsageRow:
    series: str
    """A digest of the metric's name, resource and point attributes: one counter."""
    start_time: datetime
    time: datetime
    cumulative: bool
    measure: str
    value: float
    unit_price: Decimal | None
    """USD per unit of ``value`` at ``time`` (None when unpriced; unused for non-tokens)."""
    service: str
    provider: str
    model: str
    user_id: str | None
    session_id: str | None

    def __post_init__(self) -> None:
        if self.measure not in MEASURES:
            raise ValueError(f"unknown measure {self.measure!r}; known: {sorted(MEASURES)}")


_INSERT_SQL = """
    INSERT INTO metric_usage (organization_id, series, start_time, "time", cumulative, measure,
                              value, unit_price, service, provider, model, user_id, session_id)
    SELECT $1, * FROM unnest($2::text[], $3::timestamptz[], $4::timestamptz[], $5::boolean[],
                             $6::text[], $7::float8[], $8::numeric[], $9::text[], $10::text[],
                             $11::text[], $12::text[], $13::text[])
    ON CONFLICT DO NOTHING"""


async def write_metric_usage(
    pool_or_conn: PoolOrConnection,
    organization_id: UUID | str,
    rows: Sequence[MetricUsageRow],
    *,
    timeout: float | None = None,
) -> int:
    """Store ``rows`` in one transaction, committed when this returns; how many were new
    (a point stored before is skipped)."""
    if not rows:
        return 0
    if len(rows) > MAX_POINTS_PER_WRITE:
        raise ValueError(f"at most {MAX_POINTS_PER_WRITE} metric points per write")
    columns = list(zip(*(_as_tuple(r) for r in rows), strict=True))
    async with tenant_transaction(pool_or_conn, organization_id) as conn:
        status = await conn.execute(
            _INSERT_SQL, UUID(str(organization_id)), *columns, timeout=timeout
        )
    return int(status.split()[-1])


def _as_tuple(row: MetricUsageRow) -> tuple[Any, ...]:
    return (
        row.series, row.start_time, row.time, row.cumulative, row.measure, row.value,
        row.unit_price, row.service, row.provider, row.model, row.user_id, row.session_id,
    )  # fmt: skip


def _increase_sql() -> str:
    """Each point of the organization in [$2, $3) with its increase: a delta point's value;
    a cumulative point's value less its predecessor's in the same (series, start time), or
    its whole value after a reset or as the first point. The predecessor is the previous
    point in the range (a window), and only for a series' first point in the range is it
    looked up before the range: one index probe per series, not per point."""
    before_range = (
        "(SELECT q.value FROM metric_usage q WHERE q.organization_id = m.organization_id"
        ' AND q.series = m.series AND q.start_time = m.start_time AND q."time" < $2'
        ' ORDER BY q."time" DESC LIMIT 1)'
    )
    return f"""
        SELECT p.*,
               CASE WHEN NOT p.cumulative THEN p.value
                    WHEN p.value >= coalesce(p.prior, 0) THEN p.value - coalesce(p.prior, 0)
                    ELSE p.value END AS increase
          FROM (SELECT m.*,
                       CASE WHEN m.cumulative THEN coalesce(
                           lag(m.value) OVER (PARTITION BY m.series, m.start_time
                                              ORDER BY m."time"),
                           {before_range}) END AS prior
                  FROM metric_usage m
                 WHERE m.organization_id = $1 AND m."time" >= $2 AND m."time" < $3) AS p
         WHERE NOT EXISTS (
               SELECT 1 FROM usage_rollup_daily d
                WHERE d.organization_id = p.organization_id
                  AND d.day = date_trunc('day', p."time", 'UTC')
                  AND d.service = p.service AND d.calls > 0)"""


def _measure_sum(column: str) -> str:
    weights = {m: w[column] for m, w in MEASURES.items() if column in w}
    cases = " ".join(f"WHEN '{m}' THEN {w}" for m, w in sorted(weights.items()))
    return f"coalesce(sum(increase * CASE measure {cases} ELSE 0 END), 0)"


def _aggregate_sql(
    group_by: Sequence[str], granularity: str | None, filters: Mapping[str, str]
) -> tuple[str, list[Any]]:
    select = [f"date_trunc('{granularity}', \"time\", 'UTC') AS bucket"] if granularity else []
    keys = ["bucket"] if granularity else []
    for dimension in group_by:
        column = METRIC_DIMENSIONS.get(dimension)
        select.append(
            f"coalesce({column}, '') AS \"{dimension}\"" if column else f"'' AS \"{dimension}\""
        )
        keys.append(f'"{dimension}"')
    where, args = [], []
    for i, (dimension, value) in enumerate(sorted(filters.items())):
        where.append(f"coalesce({METRIC_DIMENSIONS[dimension]}, '') = ${4 + i}")
        args.append(value)
    tokens = [f"{_measure_sum(c)}::bigint AS {c}" for c in TOKEN_COLUMNS]
    priced = "measure IN ({})".format(
        ", ".join(f"'{m}'" for m, w in MEASURES.items() if set(w) & set(TOKEN_COLUMNS))
    )
    measures = [
        f"{_measure_sum('calls')}::bigint AS calls",
        f"{_measure_sum('errors')}::bigint AS errors",
        *tokens,
        f"sum(increase::numeric * unit_price) FILTER (WHERE {priced}) AS cost",
        f"count(*) FILTER (WHERE {priced} AND unit_price IS NULL AND increase > 0)"
        " AS unpriced_points",
        f"{_measure_sum('provided_cost')} AS provided_cost",
    ]
    sql = f"SELECT {', '.join(select + measures)} FROM ({_increase_sql()}) AS points"
    if where:
        sql += " WHERE " + " AND ".join(where)
    if keys:
        sql += f" GROUP BY {', '.join(keys)}"
    return sql, args


async def metric_aggregates(
    conn: Any,
    organization_id: UUID,
    from_: datetime,
    to: datetime,
    *,
    group_by: Sequence[str],
    granularity: str | None,
    filters: Mapping[str, str],
    timeout: float | None = None,
) -> list[dict[str, Any]]:
    """The metric usage that counts (see the module docstring) in [from_, to), summed into
    the aggregates' groups, in the aggregates' row shape without latencies (metrics give no
    per-call durations): calls, errors, the token sums, ``cost_usd`` (None when nothing was
    priced), ``unpriced_calls`` 0 and ``provided_cost_usd``. Runs on a connection inside
    the caller's tenant transaction."""
    if any(dimension not in METRIC_DIMENSIONS for dimension in filters):
        return []
    sql, args = _aggregate_sql(group_by, granularity, filters)
    records = await conn.fetch(sql, organization_id, from_, to, *args, timeout=timeout)
    rows = []
    for record in records:
        row: dict[str, Any] = {key: (record[key] or None) for key in group_by}
        if granularity:
            row["bucket"] = record["bucket"]
        row["calls"] = int(record["calls"])
        row["errors"] = int(record["errors"])
        for column in TOKEN_COLUMNS:
            row[column] = int(record[column])
        cost = record["cost"]
        row["cost_usd"] = Decimal(cost) if cost is not None else None
        row["unpriced_calls"] = 0
        provided = record["provided_cost"]
        row["provided_cost_usd"] = Decimal(str(provided)) if provided else None
        if row["calls"] or any(row[c] for c in TOKEN_COLUMNS) or provided:
            rows.append(row)
    return rows


def metric_rows_on_basis(
    metric_rows: list[dict[str, Any]], basis: CostBasis
) -> list[dict[str, Any]]:
    """Metric usage rows with their cost on ``basis``: an agent's own cost metric where it
    sent one (a metric row's cost and reported cost are sums of different series). Off the
    computed basis, ``computed_cost_usd`` keeps ours, as span rows do."""
    if basis == "computed":
        return metric_rows
    for row in metric_rows:
        row["computed_cost_usd"] = row["cost_usd"]
        if row["provided_cost_usd"] is not None:
            row["cost_usd"] = row["provided_cost_usd"]
    return metric_rows
