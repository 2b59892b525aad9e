"""The dimension rollups: who and what spent it (user, session, agent, each tag), summed per
hour and per month, one row per (dimension, value). Migration 0010 says why they are not
keys of the usage rollups.

The writer moves them with the usage rollups, in the same statement, from the same counted
span rows; repricing moves their costs; retention deletes them with the spans; queries read
the hourly rows by value (exact sums) and the monthly rows by rank (top-N candidates, and
month-to-date for budgets).
"""

from __future__ import annotations

from aethermind.storage.dimensions import ATTRIBUTION
from aethermind.storage.rollups import (
    ROLLUP_SUMS,
    TOKEN_COLUMNS,
    rollup_aggregates_sql,
    rollup_regroup_sql,
    rollup_upsert_sql,
)
from aethermind.storage.tags import TAG_PREFIX

HOURLY_TABLE = "dimension_rollup_hourly"
DAILY_TABLE = "dimension_rollup_daily"
MONTHLY_TABLE = "dimension_rollup_monthly"
UNNAMED = "*"
"""The dimension of the one row a span adds when it names no user, session or agent and has
no tag keys in force (instead of a '' row for each of the three): the null group of those
three is their own '' rows plus the ``UNNAMED`` '' rows."""
DIMENSION_KEYS: tuple[str, ...] = ("dimension", "value")
"""The rollups' key columns besides organization and time: the dimension's name as queries
name it (``user``, ``tag.team``) and the span's value ('' for none)."""
MONTHLY_SUMS: tuple[str, ...] = (
    "calls",
    "errors",
    *TOKEN_COLUMNS,
    "cost",
    "priced_calls",
    "unpriced_calls",
    "provided_cost",
    "provided_calls",
    "cost_of_provided",
)
"""What the monthly rows sum (the hourly rows sum all of ``rollups.ROLLUP_SUMS``): what
top-N ranks by and budgets per dimension value read, on either cost basis."""
DIMENSION_TABLES: tuple[tuple[str, str], ...] = (
    (HOURLY_TABLE, "hour"),
    (DAILY_TABLE, "day"),
    (MONTHLY_TABLE, "month"),
)
"""The dimension rollup tables and their time column, finest first."""
COST_SUMS: tuple[str, ...] = ("cost", "priced_calls", "unpriced_calls")
"""What a change of price moves (in every rollup table)."""


def dimension_values_sql(source: str) -> str:
    """Each row of ``source`` (span rows with the attribution columns and ``tags``) once per
    dimension, as ``dimension`` and ``value`` (NULL for none: the aggregates make it ''); a
    span with none of them once, as ``UNNAMED``. A span's ``tags`` hold every key the
    organization named when it was stored (JSON null for a span without a value), so the
    span moves the same rows whenever it moves."""
    pairs = ", ".join(f"('{name}', s.{column})" for name, column in ATTRIBUTION.items())
    unnamed = (
        f"coalesce({', '.join(f's.{c}' for c in ATTRIBUTION.values())}) IS NULL AND s.tags IS NULL"
    )
    return f"""
        SELECT s.*, d.dimension, d.value FROM {source} s
         CROSS JOIN LATERAL (
               SELECT * FROM (VALUES {pairs}) AS a(dimension, value) WHERE NOT ({unnamed})
               UNION ALL
               SELECT '{TAG_PREFIX}' || t.key, t.value FROM jsonb_each_text(s.tags) AS t
               UNION ALL
               SELECT '{UNNAMED}', NULL WHERE {unnamed}
         ) AS d(dimension, value)"""


def dimension_rollup_ctes(moved: str, *, prefix: str = "dim") -> list[str]:
    """CTEs that add ``moved`` (span rows as ``rollups.rollup_aggregates_sql`` takes them,
    with a ``weight`` of +1 or -1, and the attribution columns) to the dimension rollups."""
    spans, hours, months = f"{prefix}_spans", f"{prefix}_agg", f"{prefix}_month"
    days = f"{prefix}_day"
    keys = DIMENSION_KEYS
    hourly_agg = rollup_aggregates_sql(spans, weight="weight", keys=keys)
    hourly_up = rollup_upsert_sql(hours, table=HOURLY_TABLE, keys=keys, time_first=False)
    daily_agg = rollup_regroup_sql(hours, "day", keys=keys)
    daily_up = rollup_upsert_sql(
        days, table=DAILY_TABLE, time_column="day", keys=keys, time_first=False
    )
    monthly_agg = rollup_regroup_sql(
        hours, "month", keys=keys, sums=MONTHLY_SUMS, latency_bounds=False
    )
    monthly_up = rollup_upsert_sql(
        months, table=MONTHLY_TABLE, time_column="month", keys=keys, sums=MONTHLY_SUMS,
        latency_bounds=False, time_first=False,
    )  # fmt: skip
    return [
        f"{spans} AS ({dimension_values_sql(moved)})",
        f"{hours} AS ({hourly_agg})",
        f"{prefix}_up AS ({hourly_up})",
        f"{days} AS ({daily_agg})",
        f"{prefix}_day_up AS ({daily_up})",
        f"{months} AS ({monthly_agg})",
        f"{prefix}_month_up AS ({monthly_up})",
    ]


assert set(MONTHLY_SUMS) <= set(ROLLUP_SUMS)
