"""Read side: the rows of ``GET /v1/aggregates``, one trace's spans, the costliest traces,
and per-organization usage for operators.

Aggregates come from the daily rollup for the whole UTC days of the range, the hourly
rollup for the remaining whole hours and raw spans for the partial hours at its ends,
whenever the granularity is an hour or coarser (latency percentiles then interpolated from
the histogram); from raw spans alone for minute buckets or ranges without a whole hour
(exact ``percentile_cont``). Both paths return the same calls, tokens and costs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from aethermind.storage.aggregate_sql import ROLLUP_MEASURES, Shape, ordered_sql
from aethermind.storage.cost_basis import (
    DEFAULT_COST_BASIS,
    CostBasis,
    cost_on_basis,
    read_cost_basis,
)
from aethermind.storage.counting import reason_not_counted
from aethermind.storage.dimension_queries import answerable_dimension, dimension_rows
from aethermind.storage.dimensions import (
    ORDER_BY,
    QUERY_DIMENSIONS,
    column_of,
    in_force_sql,
    is_dimension,
)
from aethermind.storage.histogram import BUCKET_COLUMNS, percentile
from aethermind.storage.metric_usage import metric_aggregates, metric_rows_on_basis
from aethermind.storage.rollups import (
    IS_ERROR_SQL,
    IS_UNPRICED_SQL,
    PRICE_LINES,
    ROLLUP_KEYS,
    ROLLUP_SUMS,
    TOKEN_COLUMNS,
    rollup_aggregates_sql,
)
from aethermind.storage.scope import PoolOrConnection, owner_transaction, tenant_transaction
from aethermind.storage.span_row import COLUMNS, TRACE_DECIDED_COLUMNS
from aethermind.storage.tags import tag_of

GROUP_KEYS: tuple[str, ...] = QUERY_DIMENSIONS
FILTER_KEYS: tuple[str, ...] = QUERY_DIMENSIONS
ORDER_KEYS: tuple[str, ...] = tuple(ORDER_BY)
MAX_LIMIT = 10_000
GRANULARITIES: tuple[str, ...] = ("minute", "hour", "day", "week", "month")
QUANTILES: tuple[tuple[str, float], ...] = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
Source = Literal["auto", "rollup", "raw"]


def _validate(
    from_: datetime,
    to: datetime,
    group_by: Sequence[str],
    granularity: str | None,
    filters: Mapping[str, str],
    *,
    order_by: str | None = None,
    limit: int | None = None,
) -> None:
    for name, value in (("from", from_), ("to", to)):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"'{name}' must be timezone-aware, got {value!r}")
    if to <= from_:
        raise ValueError(f"'to' ({to.isoformat()}) must be after 'from' ({from_.isoformat()})")
    unknown = [g for g in group_by if not is_dimension(g)]
    if unknown:
        raise ValueError(f"cannot group by {unknown}; allowed: {list(GROUP_KEYS)}, tag.<key>")
    if len(set(group_by)) != len(group_by):
        raise ValueError(f"group_by repeats a key: {list(group_by)}")
    if granularity is not None and granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {list(GRANULARITIES)}, got {granularity!r}")
    bad_filters = [f for f in filters if not is_dimension(f)]
    if bad_filters:
        raise ValueError(f"cannot filter on {bad_filters}; allowed: {list(FILTER_KEYS)}, tag.<key>")
    if order_by is not None and order_by not in ORDER_KEYS:
        raise ValueError(f"order_by must be one of {list(ORDER_KEYS)}, got {order_by!r}")
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")


def _hour_aligned(value: datetime) -> bool:
    utc = value.astimezone(UTC)
    return utc.minute == 0 and utc.second == 0 and utc.microsecond == 0


def can_use_rollup(from_: datetime, to: datetime, granularity: str | None) -> bool:
    """The rollup alone answers when both ends fall on UTC hours and buckets are whole
    hours (or coarser, which are made of whole UTC hours)."""
    return _hour_aligned(from_) and _hour_aligned(to) and granularity != "minute"


def _floor(value: datetime, unit: str) -> datetime:
    utc = value.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return utc.replace(hour=0) if unit == "day" else utc


def _ceil(value: datetime, unit: str) -> datetime:
    floor = _floor(value, unit)
    if floor == value:
        return floor
    return floor + (timedelta(days=1) if unit == "day" else timedelta(hours=1))


@dataclass(frozen=True, slots=True)
class RollupPlan:
    """How [from, to) splits: daily rows for [day_from, day_to), hourly rows for
    [hour_from, day_from) and [day_to, hour_to), raw spans for the partial hours
    [from, hour_from) and [hour_to, to). Empty pieces have equal ends."""

    hour_from: datetime
    hour_to: datetime
    day_from: datetime
    day_to: datetime


def plan_rollup(from_: datetime, to: datetime, granularity: str | None) -> RollupPlan | None:
    """The split of a range over the rollups, or None when it holds no whole UTC hour (or
    buckets are minutes), in which case raw spans answer alone."""
    if granularity == "minute":
        return None
    hour_from, hour_to = _ceil(from_, "hour"), _floor(to, "hour")
    if hour_from >= hour_to:
        return None
    day_from, day_to = _ceil(hour_from, "day"), _floor(hour_to, "day")
    if granularity == "hour" or day_from >= day_to:
        day_from = day_to = hour_to  # no daily part: hourly rows cover [hour_from, hour_to)
    return RollupPlan(hour_from, hour_to, day_from, day_to)


def _where(
    filters: Mapping[str, str], *, first_param: int, null_as_empty: bool
) -> tuple[str, list[str]]:
    clauses, args = [], []
    for i, (key, value) in enumerate(sorted(filters.items())):
        column = column_of(key) if null_as_empty else f"coalesce({column_of(key)}, '')"
        clauses.append(f"{column} = ${first_param + i}")
        args.append(value)
    return "".join(f" AND {c}" for c in clauses), args


def _rollup_sql(shape: Shape) -> tuple[str, list[Any]]:
    """Daily rows in [$6, $7), hourly rows in [$4, $6) and [$7, $5), raw spans in the
    partial hours [$2, $4) and [$5, $3) aggregated exactly as the writer aggregates them
    into the rollups; then everything summed into the requested groups (see RollupPlan)."""
    group_by, granularity = shape.group_by, shape.granularity
    rollup_where, args = _where(shape.filters, first_param=8, null_as_empty=True)
    raw_where, _ = _where(shape.filters, first_param=8, null_as_empty=False)
    measures_in = [*ROLLUP_KEYS, *ROLLUP_SUMS, "latency_min_ms", "latency_max_ms"]
    edges = (
        "(SELECT * FROM telemetry_events WHERE organization_id = $1 AND counted"
        ' AND ("timestamp" >= $2 AND "timestamp" < $4 OR "timestamp" >= $5 AND "timestamp" < $3)'
        f"{raw_where}) AS edges"
    )
    dims = list(group_by)
    select = [f"date_trunc('{granularity}', hour, 'UTC') AS bucket"] if granularity else []
    select += dims
    keys = (["bucket"] if granularity else []) + dims
    group, limit_args = ordered_sql(keys, shape.order_by, shape.limit, limit_param=8 + len(args))
    sql = f"""
        WITH parts AS (
            SELECT day AS hour, {", ".join(measures_in)} FROM usage_rollup_daily
             WHERE organization_id = $1 AND day >= $6 AND day < $7{rollup_where}
            UNION ALL
            SELECT hour, {", ".join(measures_in)} FROM usage_rollup_hourly
             WHERE organization_id = $1
               AND (hour >= $4 AND hour < $6 OR hour >= $7 AND hour < $5){rollup_where}
            UNION ALL
            {rollup_aggregates_sql(edges)}
        )
        SELECT {", ".join(select + list(ROLLUP_MEASURES))} FROM parts{group}"""
    return sql, [*args, *limit_args]


def _raw_sql(shape: Shape) -> tuple[str, list[Any]]:
    group_by, granularity = shape.group_by, shape.granularity
    select = [f"date_trunc('{granularity}', \"timestamp\", 'UTC') AS bucket"] if granularity else []
    select += [f"coalesce({column_of(d)}, '') AS \"{d}\"" for d in group_by]
    measures = [
        "count(*) AS calls",
        f"count(*) FILTER (WHERE {IS_ERROR_SQL}) AS errors",
        *(f"coalesce(sum({c}), 0)::bigint AS {c}" for c in TOKEN_COLUMNS),
        "sum(cost) AS cost",
        *(f"sum({c}) AS {c}" for c in PRICE_LINES),
        "count(cost) AS priced_calls",
        f"count(*) FILTER (WHERE {IS_UNPRICED_SQL}) AS unpriced_calls",
        "sum(provided_cost) AS provided_cost",
        "count(provided_cost) AS provided_calls",
        "sum(cost) FILTER (WHERE provided_cost IS NOT NULL) AS cost_of_provided",
        "percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY duration_ms)"
        " AS percentiles",
    ]
    where, args = _where(shape.filters, first_param=4, null_as_empty=False)
    for dimension in sorted({*group_by, *shape.filters}):
        in_force = in_force_sql(dimension)
        if in_force:
            where += f" AND {in_force}"
    keys = (["bucket"] if granularity else []) + [f'"{d}"' for d in group_by]
    group, limit_args = ordered_sql(keys, shape.order_by, shape.limit, limit_param=4 + len(args))
    sql = (
        f"SELECT {', '.join(select + measures)} FROM telemetry_events"
        f' WHERE organization_id = $1 AND counted AND "timestamp" >= $2 AND "timestamp" < $3'
        f"{where}{group}"
    )
    return sql, [*args, *limit_args]


def _row(
    record: Mapping[str, Any],
    group_by: Sequence[str],
    granularity: str | None,
    *,
    rollup: bool,
    basis: CostBasis = DEFAULT_COST_BASIS,
) -> dict[str, Any]:
    out: dict[str, Any] = {key: (record[key] or None) for key in group_by}
    if granularity:
        out["bucket"] = record["bucket"]
    out["calls"] = int(record["calls"])
    out["errors"] = int(record["errors"])
    for column in TOKEN_COLUMNS:
        out[column] = int(record[column])
    priced = int(record["priced_calls"])
    cost = record["cost"]
    out["cost_usd"] = Decimal(cost) if priced and cost is not None else None
    out["cost_breakdown_usd"] = (
        {part: Decimal(record[c] or 0) for part, c in BREAKDOWN_PARTS.items()}
        if out["cost_usd"] is not None
        else None
    )
    saved = record["cost_saved_by_cache"]
    out["saved_by_caching_usd"] = Decimal(saved or 0) if out["cost_usd"] is not None else None
    out["unpriced_calls"] = int(record["unpriced_calls"])
    provided = record["provided_cost"]
    out["provided_cost_usd"] = Decimal(provided) if record["provided_calls"] else None
    if basis != "computed":
        out["computed_cost_usd"] = out["cost_usd"]
        out["cost_usd"] = cost_on_basis(
            basis, out["cost_usd"], record["cost_of_provided"], out["provided_cost_usd"]
        )
    if rollup:
        counts = [int(record[c]) for c in BUCKET_COLUMNS]
        latencies = [
            percentile(
                counts, q, minimum=record["latency_min_ms"], maximum=record["latency_max_ms"]
            )
            for _, q in QUANTILES
        ]
    else:
        latencies = record["percentiles"] or [None, None, None]
    out["latency_ms"] = {name: _microseconds(latencies[i]) for i, (name, _) in enumerate(QUANTILES)}
    return out


def _microseconds(milliseconds: float | None) -> float | None:
    """Latency to the microsecond: finer digits are interpolation artefacts, not data."""
    return None if milliseconds is None else round(milliseconds, 3)


async def aggregates(
    pool_or_conn: PoolOrConnection,
    organization_id: UUID | str,
    from_: datetime,
    to: datetime,
    *,
    group_by: Sequence[str] = (),
    granularity: str | None = None,
    filters: Mapping[str, str] | None = None,
    order_by: str | None = None,
    limit: int | None = None,
    source: Source = "auto",
    timeout: float | None = None,
) -> list[dict[str, Any]]:
    """The rows of ``GET /v1/aggregates`` for spans with ``from_ <= start < to``.

    Each row: the ``group_by`` keys (None where spans did not say), ``bucket`` (a UTC
    datetime, only with ``granularity``), ``calls``, ``errors``, the six token sums,
    ``cost_usd`` (Decimal summing the priced spans; None when none was priced),
    ``unpriced_calls`` and ``latency_ms`` ``{"p50", "p95", "p99"}`` (floats, None when no
    span had a duration). Rows are ordered by bucket, then group keys; with ``order_by``
    (``ORDER_KEYS``) by that measure, descending, first; ``limit`` keeps the first rows
    (top N). An empty range yields no rows. ``source`` forces the rollup or the raw path
    (for tests and benchmarks); forcing the rollup on a range or a dimension it cannot
    answer exactly raises ValueError. Grouping or filtering by a dimension of
    ``ATTRIBUTION`` (user, session, agent) or a tag alone reads the dimension rollups
    (``dimension_queries.py``); with other dimensions, the stored spans. Usage reported
    only as metrics is added where ``metric_usage.py``'s rule lets it count (spans win per
    service and UTC day); its rows have no latency.
    """
    filters = dict(filters or {})
    _validate(from_, to, group_by, granularity, filters, order_by=order_by, limit=limit)
    shape = Shape(group_by, granularity, filters, order_by, limit)
    in_rollups = all(k in ROLLUP_KEYS for k in (*group_by, *filters))
    dimension = answerable_dimension(shape)
    plan = plan_rollup(from_, to, granularity)
    if source == "rollup" and not (
        can_use_rollup(from_, to, granularity) and (in_rollups or dimension)
    ):
        raise ValueError(
            "the rollups answer only hour-aligned ranges with granularity >= hour, grouped"
            f" and filtered by {list(ROLLUP_KEYS)}, or by one other dimension alone"
        )
    use_rollup = source != "raw" and plan is not None and (in_rollups or dimension is not None)
    org = UUID(str(organization_id))
    async with tenant_transaction(pool_or_conn, organization_id) as conn:
        await _check_tags(conn, org, [*group_by, *filters], timeout=timeout)
        basis = await read_cost_basis(conn, org, timeout=timeout)
        from_metrics = await metric_aggregates(
            conn, org, from_, to, group_by=group_by, granularity=granularity,
            filters=filters, timeout=timeout,
        )  # fmt: skip
        rerank = limit is not None and (
            bool(from_metrics) or (basis != "computed" and order_by == "cost_usd")
        )
        if rerank:
            # Metric usage can lift a group into the top N, and the SQL ranks by our own
            # cost: rank after adding it, on the organization's basis.
            shape = Shape(group_by, granularity, filters, order_by, None)
        records = await _span_records(
            conn, org, from_, to, shape, plan=plan, use_rollup=use_rollup,
            in_rollups=in_rollups, dimension=dimension, timeout=timeout,
        )  # fmt: skip
    # An ungrouped sum over no rows is one row of NULLs: that is "no calls", not a row.
    rows = [
        _row(r, group_by, granularity, rollup=use_rollup, basis=basis)
        for r in records
        if r["calls"]
    ]
    if not from_metrics and not rerank:
        return rows
    return _with_metric_usage(
        rows,
        metric_rows_on_basis(from_metrics, basis),
        group_by=group_by,
        granularity=granularity,
        order_by=order_by,
        limit=limit,
    )


async def _span_records(
    conn: Any,
    org: UUID,
    from_: datetime,
    to: datetime,
    shape: Shape,
    *,
    plan: RollupPlan | None,
    use_rollup: bool,
    in_rollups: bool,
    dimension: str | None,
    timeout: float | None,
) -> list[Any]:
    sql, params = "", []
    if use_rollup and plan is not None and in_rollups:
        sql, args = _rollup_sql(shape)
        bounds = (plan.hour_from, plan.hour_to, plan.day_from, plan.day_to)
        params = [org, from_, to, *bounds, *args]
    elif not use_rollup:
        sql, args = _raw_sql(shape)
        params = [org, from_, to, *args]
    if sql:
        return list(await conn.fetch(sql, *params, timeout=timeout))
    assert plan is not None and dimension is not None
    ends = (from_, to, plan.hour_from, plan.hour_to, plan.day_from, plan.day_to)
    return list(await dimension_rows(conn, org, dimension, shape, ends, timeout=timeout))


_SUMMED = ("calls", "errors", *TOKEN_COLUMNS)
BREAKDOWN_PARTS: dict[str, str] = {
    "input": "cost_input",
    "cache_read": "cost_cache_read",
    "cache_write": "cost_cache_write",
    "output": "cost_output",
    "modality": "cost_modality",
    "fees": "cost_fees",
    "other": "cost_other",
}
"""``cost_breakdown_usd``'s parts and the summed column of each. Costs a call reported
without a split (a provided cost standing in for an unknown price) are in ``cost_usd`` only,
so the parts may sum to less."""


def _with_metric_usage(
    rows: list[dict[str, Any]],
    from_metrics: list[dict[str, Any]],
    *,
    group_by: Sequence[str],
    granularity: str | None,
    order_by: str | None,
    limit: int | None,
) -> list[dict[str, Any]]:
    """Span rows with the metric usage that counts (``metric_usage.py``) added to their
    groups, or as groups of their own, in the aggregates' order, cut to ``limit``. Latency
    stays the spans' (metrics give no per-call durations)."""
    keys = (["bucket"] if granularity else []) + list(group_by)
    by_key = {tuple(row[k] for k in keys): row for row in rows}
    for metric_row in from_metrics:
        key = tuple(metric_row[k] for k in keys)
        row = by_key.get(key)
        if row is None:
            row = {k: metric_row[k] for k in keys}
            row.update({column: 0 for column in _SUMMED})
            row.update(
                cost_usd=None,
                cost_breakdown_usd=None,
                saved_by_caching_usd=None,
                unpriced_calls=0,
                provided_cost_usd=None,
            )
            if "computed_cost_usd" in metric_row:
                row["computed_cost_usd"] = None
            row["latency_ms"] = {name: None for name, _ in QUANTILES}
            by_key[key] = row
        for column in _SUMMED:
            row[column] += metric_row[column]
        for money in ("cost_usd", "provided_cost_usd", "computed_cost_usd"):
            if metric_row.get(money) is not None:
                row[money] = (row[money] or Decimal(0)) + metric_row[money]
    merged = sorted(by_key.values(), key=lambda r: tuple(r[k] or "" for k in keys))
    if order_by is not None:
        measure = "cost_usd" if order_by == "cost_usd" else order_by
        merged.sort(key=lambda r: (r[measure] is None, -(r[measure] or 0)))
    return merged[:limit] if limit is not None else merged


async def _check_tags(
    conn: Any, org: UUID, dimensions: Iterable[str], *, timeout: float | None
) -> None:
    """ValueError when a ``tag.<key>`` among ``dimensions`` names a key the organization did
    not name (a typo would otherwise answer "no spans")."""
    tags = {tag_of(d) for d in dimensions} - {None}
    if not tags:
        return
    configured = await conn.fetchval(
        "SELECT tag_keys FROM organizations WHERE id = $1", org, timeout=timeout
    )
    missing = sorted(str(t) for t in tags if t not in (configured or ()))
    if missing:
        raise ValueError(
            f"tag {missing[0]!r} is not one of the organization's tag keys"
            f" ({', '.join(configured or ()) or 'none configured'})"
        )


_SPAN_COLUMNS = (*(f'"{c}"' for c in COLUMNS), "model", *TRACE_DECIDED_COLUMNS)
"""What the trace API shows of a span: every stored column, the generated model and whether
it counts (and why not)."""


async def trace_spans(
    pool_or_conn: PoolOrConnection,
    organization_id: UUID | str,
    trace_id: str,
    *,
    since: datetime,
    until: datetime,
    timeout: float | None = None,
) -> list[dict[str, Any]]:
    """The stored spans of one trace in this organization that start in [since, until), in
    start order; each with its normalized fields, ``cost_usd`` (None when unpriced),
    ``status``, and ``counted``: True when the span counts toward totals, else why not
    (``"rollup"``, ``"duplicate"``, also for a twin counted in another trace; False for a
    span without usage). The time range keeps the
    lookup to the partitions it can be in."""
    async with tenant_transaction(pool_or_conn, organization_id) as conn:
        records = await conn.fetch(
            f"SELECT {', '.join(_SPAN_COLUMNS)} FROM telemetry_events"
            " WHERE organization_id = $1 AND trace_id = $2"
            '   AND "timestamp" >= $3 AND "timestamp" < $4'
            ' ORDER BY "timestamp", span_id',
            UUID(str(organization_id)),
            trace_id.lower(),
            since,
            until,
            timeout=timeout,
        )
    spans = []
    for record in records:
        span = dict(record)
        span["cost_usd"] = span.pop("cost")
        elsewhere = span.pop("counted_elsewhere")
        if not span["counted"]:
            span["counted"] = reason_not_counted(span["usage_role"], counted_elsewhere=elsewhere)
        spans.append(span)
    return spans


async def top_traces(
    pool_or_conn: PoolOrConnection,
    organization_id: UUID | str,
    from_: datetime,
    to: datetime,
    *,
    limit: int = 10,
    filters: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> list[dict[str, Any]]:
    """The traces with the highest counted cost among spans started in ``[from_, to)``:
    ``trace_id``, ``root_name`` (the span without a parent, if stored), ``spans`` (all
    stored), ``cost_usd``, ``unpriced_calls`` and ``total_tokens`` (counted spans only, as in
    every total), ``started_at``, ``duration_ms``. With ``filters`` (dimension: value, as
    the aggregates take them), only the spans that have those values: a user's or a
    session's costliest traces."""
    if not 0 < limit <= 1000:
        raise ValueError(f"limit must be within 1..1000, got {limit}")
    filters = dict(filters or {})
    _validate(from_, to, (), None, filters)
    where, args = _where(filters, first_param=5, null_as_empty=False)
    for dimension in sorted(filters):
        in_force = in_force_sql(dimension)
        if in_force:
            where += f" AND {in_force}"
    async with tenant_transaction(pool_or_conn, organization_id) as conn:
        await _check_tags(conn, UUID(str(organization_id)), filters, timeout=timeout)
        records = await conn.fetch(
            f"""
            SELECT trace_id,
                   (array_agg(name ORDER BY "timestamp") FILTER (WHERE parent_span_id IS NULL))[1]
                       AS root_name,
                   count(*) AS spans,
                   sum(cost) FILTER (WHERE counted) AS cost_usd,
                   count(*) FILTER (WHERE counted AND {IS_UNPRICED_SQL}) AS unpriced_calls,
                   coalesce(sum(total_tokens) FILTER (WHERE counted), 0)::bigint AS total_tokens,
                   min("timestamp") AS started_at,
                   extract(epoch FROM
                       max("timestamp" + make_interval(secs => coalesce(duration_ms, 0) / 1000))
                       - min("timestamp")) * 1000 AS duration_ms
              FROM telemetry_events
             WHERE organization_id = $1 AND "timestamp" >= $2 AND "timestamp" < $3{where}
             GROUP BY trace_id
            HAVING sum(cost) FILTER (WHERE counted) IS NOT NULL
             ORDER BY sum(cost) FILTER (WHERE counted) DESC, trace_id
             LIMIT $4
            """,
            UUID(str(organization_id)),
            from_,
            to,
            limit,
            *args,
            timeout=timeout,
        )
    return [
        {
            **dict(r),
            "duration_ms": float(r["duration_ms"]) if r["duration_ms"] is not None else None,
        }
        for r in records
    ]


async def organization_usage(
    pool_or_conn: PoolOrConnection,
    from_: datetime,
    to: datetime,
    *,
    timeout: float | None = None,
) -> list[dict[str, Any]]:
    """Operator view: every organization with its usage in the UTC hours overlapping
    ``[from_, to)`` (from the rollup): ``organization_id``, ``slug``, ``name``, ``plan``,
    ``calls``, ``errors``, ``total_tokens``, ``cost_usd``, ``unpriced_calls``. Runs as the
    owner, across tenants."""
    _validate(from_, to, (), None, {})
    async with owner_transaction(pool_or_conn) as conn:
        records = await conn.fetch(
            """
            SELECT o.id AS organization_id, o.slug, o.name, o.plan,
                   coalesce(sum(r.calls), 0)::bigint AS calls,
                   coalesce(sum(r.errors), 0)::bigint AS errors,
                   coalesce(sum(r.total_tokens), 0)::bigint AS total_tokens,
                   CASE WHEN sum(r.priced_calls) > 0 THEN sum(r.cost) END AS cost_usd,
                   coalesce(sum(r.unpriced_calls), 0)::bigint AS unpriced_calls
              FROM organizations o
              LEFT JOIN usage_rollup_hourly r
                ON r.organization_id = o.id
               AND r.hour >= date_trunc('hour', $1::timestamptz, 'UTC') AND r.hour < $2
             GROUP BY o.id
             ORDER BY calls DESC, o.slug
            """,
            from_,
            to,
            timeout=timeout,
        )
    return [dict(r) for r in records]
