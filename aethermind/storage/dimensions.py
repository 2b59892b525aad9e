"""The dimensions usage is broken down by: one list for the rollups' keys, the queries'
``group_by`` and filters, the API's validation and its OpenAPI document, and the CLI."""

from __future__ import annotations

DIMENSIONS: tuple[str, ...] = ("provider", "model", "service", "operation", "environment")
"""Each is a stored span column (``model``: the response model, else the request model) and
a key column of the rollup tables, where a span without a value counts under ''."""

ATTRIBUTION: dict[str, str] = {"user": "user_id", "session": "session_id", "agent": "agent_name"}
"""Who and what spent it: each dimension's stored span column. Not rollup keys (users and
sessions run into the millions): queries grouped or filtered by them read the stored spans."""

QUERY_DIMENSIONS: tuple[str, ...] = (*DIMENSIONS, *ATTRIBUTION)
"""What ``group_by`` and the filters take."""

ORDER_BY: dict[str, str] = {"cost_usd": "cost", "calls": "calls", "total_tokens": "total_tokens"}
"""What top-N rows may be ordered by (descending): each name's summed column."""


def column_of(dimension: str) -> str:
    """The stored span column of a dimension (a rollup key names its own column)."""
    return ATTRIBUTION.get(dimension, dimension)
