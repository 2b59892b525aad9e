"""The hourly and daily rollups: their columns, and the SQL that turns stored spans into
rollup rows and adds (or subtracts) them. The writer adds each committed batch's rows in the
same statement; repricing moves them by its deltas; queries read them.
"""

from __future__ import annotations

from aethermind.storage.dimensions import DIMENSIONS
from aethermind.storage.histogram import BUCKET_COLUMNS

# One definition of "error" and "unpriced", shared with the raw-row queries.
IS_ERROR_SQL = "(status = 'ERROR' OR error_type IS NOT NULL)"
IS_UNPRICED_SQL = "(cost IS NULL AND cost_source = 'unknown')"

ROLLUP_KEYS = DIMENSIONS
"""The rollup tables' key columns besides organization and time: every dimension."""
TOKEN_COLUMNS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_tokens",
)
BREAKDOWN_COLUMNS: tuple[str, ...] = (
    "cost_input",
    "cost_cache_read",
    "cost_cache_write",
    "cost_output",
    "cost_modality",
    "cost_fees",
    "cost_other",
)
"""A priced span's cost split the way a bill is (``semconv.record.Cost``): uncached input,
cache reads, cache writes, output (reasoning included), audio/image/video tokens at their
own rates, per-call fees, and costs that are not tokens."""
SAVINGS_COLUMNS: tuple[str, ...] = ("cost_saved_by_cache",)
"""What a price says beside the cost: what cache reads saved (not part of ``cost``)."""
PRICE_LINES: tuple[str, ...] = (*BREAKDOWN_COLUMNS, *SAVINGS_COLUMNS)
"""Every per-span figure a price decides besides ``cost``, summed in the rollups."""
PRICED_INPUTS: tuple[str, ...] = ("cost", "cost_source", *PRICE_LINES)
"""The span columns of ``ROLLUP_INPUTS`` that a price decides."""
ROLLUP_INPUTS: tuple[str, ...] = (
    "status",
    "error_type",
    "duration_ms",
    *TOKEN_COLUMNS,
    *PRICED_INPUTS,
    "provided_cost",
)
"""The span columns besides time and keys that ``rollup_aggregates_sql`` reads: what any
statement moving spans in or out of the rollups must select."""
ROLLUP_SUMS = (
    "calls",
    "errors",
    *TOKEN_COLUMNS,
    "cost",
    *PRICE_LINES,
    "priced_calls",
    "unpriced_calls",
    "provided_cost",
    "provided_calls",
    "cost_of_provided",
    "latency_count",
    "latency_sum_ms",
    *BUCKET_COLUMNS,
)


def rollup_aggregates_sql(
    source: str, *, weight: str | None = None, keys: tuple[str, ...] = ROLLUP_KEYS
) -> str:
    """SELECT list + FROM + GROUP BY that turns span rows in ``source`` into rollup rows
    (hour, the ``keys`` (the five dimensions), then the measures in ``ROLLUP_SUMS`` order,
    min, max).

    With ``weight`` (a column of +1 or -1), each row adds or takes away its share: how a
    span that starts or stops counting moves the rollups. Latency min and max only widen
    (a rollup row's bounds for interpolating percentiles, not exact figures)."""
    bucket = "width_bucket(duration_ms, aethermind_latency_bounds())"

    def total(column: str) -> str:
        return (
            f"coalesce(sum({column}), 0)"
            if weight is None
            else (f"coalesce(sum({weight} * {column}), 0)")
        )

    def total_where(column: str, condition: str) -> str:
        weighted = column if weight is None else f"{weight} * {column}"
        return f"coalesce(sum({weighted}) FILTER (WHERE {condition}), 0)"

    def when(condition: str) -> str:
        return (
            f"count(*) FILTER (WHERE {condition})"
            if weight is None
            else (f"coalesce(sum({weight}) FILTER (WHERE {condition}), 0)")
        )

    each = "count(*)" if weight is None else f"sum({weight})"
    widening = "" if weight is None else f" FILTER (WHERE {weight} > 0)"
    buckets = ",\n        ".join(
        f"{when(f'{bucket} = {i}')} AS {col}" for i, col in enumerate(BUCKET_COLUMNS)
    )
    tokens = ",\n        ".join(f"{total(c)} AS {c}" for c in TOKEN_COLUMNS)
    dims = ", ".join(f"coalesce({k}, '') AS {k}" for k in keys)
    return f"""
        SELECT date_trunc('hour', "timestamp", 'UTC') AS hour, {dims},
        {each} AS calls,
        {when(IS_ERROR_SQL)} AS errors,
        {tokens},
        {total("cost")} AS cost,
        {", ".join(f"{total(c)} AS {c}" for c in PRICE_LINES)},
        {when("cost IS NOT NULL")} AS priced_calls,
        {when(IS_UNPRICED_SQL)} AS unpriced_calls,
        {total("provided_cost")} AS provided_cost,
        {when("provided_cost IS NOT NULL")} AS provided_calls,
        {total_where("cost", "provided_cost IS NOT NULL")} AS cost_of_provided,
        {when("duration_ms IS NOT NULL")} AS latency_count,
        {total("duration_ms")} AS latency_sum_ms,
        {buckets},
        min(duration_ms){widening} AS latency_min_ms,
        max(duration_ms){widening} AS latency_max_ms
        FROM {source}
        GROUP BY {_positions(keys)}"""


def _positions(keys: tuple[str, ...]) -> str:
    """GROUP BY the time column and the keys, by position."""
    return ", ".join(str(i) for i in range(1, len(keys) + 2))


def rollup_regroup_sql(
    source: str,
    unit: str,
    *,
    keys: tuple[str, ...] = ROLLUP_KEYS,
    sums: tuple[str, ...] = ROLLUP_SUMS,
    latency_bounds: bool = True,
) -> str:
    """Rows shaped like ``rollup_aggregates_sql`` summed into coarser ``unit`` buckets
    (e.g. ``day``); the time column keeps the name ``hour`` so shapes stay the same. Only
    ``sums`` (and the latency bounds, with ``latency_bounds``) are carried."""
    summed = ", ".join(f"sum({c}) AS {c}" for c in sums)
    bounds = (
        ", min(latency_min_ms) AS latency_min_ms, max(latency_max_ms) AS latency_max_ms"
        if latency_bounds
        else ""
    )
    return f"""
        SELECT date_trunc('{unit}', hour, 'UTC') AS hour, {", ".join(keys)}, {summed}{bounds}
          FROM {source}
         GROUP BY {_positions(keys)}"""


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
    keys: tuple[str, ...] = ROLLUP_KEYS,
    sums: tuple[str, ...] = ROLLUP_SUMS,
    latency_bounds: bool = True,
    time_first: bool = True,
) -> str:
    """INSERT into a rollup table from a CTE shaped like ``rollup_aggregates_sql`` (time
    column named ``hour``), adding to existing rows. Rows go in the order of the table's
    primary key (``time_first``: time, then the keys) so concurrent writers lock rollup rows
    in the same order and cannot deadlock."""
    bounds = ["latency_min_ms", "latency_max_ms"] if latency_bounds else []
    cols = ["organization_id", time_column, *keys, *sums, *bounds]
    sets = [f"{c} = r.{c} {sign} excluded.{c}" for c in sums]
    if latency_bounds:
        sets.append("latency_min_ms = least(r.latency_min_ms, excluded.latency_min_ms)")
        sets.append("latency_max_ms = greatest(r.latency_max_ms, excluded.latency_max_ms)")
    select_cols = ", ".join(["$1::uuid", "hour", *keys, *sums, *bounds])
    return f"""
        INSERT INTO {table} AS r ({", ".join(cols)})
        SELECT {select_cols} FROM {source_cte}
        ORDER BY {", ".join(["hour", *keys] if time_first else [*keys, "hour"])}
        ON CONFLICT (organization_id, {time_column}, {", ".join(keys)}) DO UPDATE SET
            {", ".join(sets)}"""


DAILY_UPSERT = rollup_upsert_sql("agg_daily", table="usage_rollup_daily", time_column="day")
