"""What the aggregates' SQL builders share: the query's shape, how rollup-shaped rows are
summed, and how groups are ordered and cut (``queries.py`` for the usage rollups and raw
spans, ``dimension_queries.py`` for the dimension rollups)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aethermind.storage.dimensions import ORDER_BY
from aethermind.storage.histogram import BUCKET_COLUMNS
from aethermind.storage.rollups import PRICE_LINES, TOKEN_COLUMNS


@dataclass(frozen=True, slots=True)
class Shape:
    """What an aggregates query asks for, besides the organization and the range."""

    group_by: Sequence[str] = ()
    granularity: str | None = None
    filters: Mapping[str, str] = field(default_factory=dict)
    order_by: str | None = None
    limit: int | None = None


ROLLUP_MEASURES: tuple[str, ...] = (
    "sum(calls)::bigint AS calls",
    "sum(errors)::bigint AS errors",
    *(f"sum({c})::bigint AS {c}" for c in TOKEN_COLUMNS),
    "sum(cost) AS cost",
    *(f"sum({c}) AS {c}" for c in PRICE_LINES),
    "sum(priced_calls)::bigint AS priced_calls",
    "sum(unpriced_calls)::bigint AS unpriced_calls",
    "sum(provided_cost) AS provided_cost",
    "sum(provided_calls)::bigint AS provided_calls",
    "sum(cost_of_provided) AS cost_of_provided",
    "min(latency_min_ms) AS latency_min_ms",
    "max(latency_max_ms) AS latency_max_ms",
    *(f"sum({c})::bigint AS {c}" for c in BUCKET_COLUMNS),
)
"""The SELECT list that sums rollup-shaped rows into one answer row (``queries._row``
reads it, percentiles from the histogram)."""


def ordered_sql(
    keys: Sequence[str], order_by: str | None, limit: int | None, *, limit_param: int
) -> tuple[str, list[Any]]:
    """GROUP BY, ORDER BY (the bucket and keys; or the ``order_by`` measure, descending,
    then those) and LIMIT, and the LIMIT's parameter."""
    clause = f" GROUP BY {', '.join(keys)}" if keys else ""
    order = [f"{ORDER_BY[order_by]} DESC NULLS LAST"] if order_by else []
    order += keys
    if order:
        clause += f" ORDER BY {', '.join(order)}"
    if limit is None:
        return clause, []
    return f"{clause} LIMIT ${limit_param}", [limit]
