"""The dimensions usage is broken down by: one list for the rollups' keys, the queries'
``group_by`` and filters, the API's validation and its OpenAPI document, and the CLI."""

from __future__ import annotations

from aethermind.storage.tags import tag_of

DIMENSIONS: tuple[str, ...] = (
    "provider",
    "model",
    "service",
    "operation",
    "environment",
    "service_tier",
)
"""Each is a stored span column (``model``: the response model, else the request model) and
a key column of the rollup tables, where a span without a value counts under ''
(``service_tier``: a standard request)."""

ATTRIBUTION: dict[str, str] = {"user": "user_id", "session": "session_id", "agent": "agent_name"}
"""Who and what spent it: each dimension's stored span column. Not rollup keys (users and
sessions run into the millions): queries grouped or filtered by them read the stored spans."""

QUERY_DIMENSIONS: tuple[str, ...] = (*DIMENSIONS, *ATTRIBUTION)
"""What ``group_by`` and the filters take, besides ``tag.<key>`` for the organization's tag
keys (``storage/tags.py``), which read the stored spans too."""

ORDER_BY: dict[str, str] = {"cost_usd": "cost", "calls": "calls", "total_tokens": "total_tokens"}
"""What top-N rows may be ordered by (descending): each name's summed column."""


def is_dimension(name: str) -> bool:
    """Whether ``group_by`` and the filters take ``name`` (a tag with a valid key)."""
    if name in QUERY_DIMENSIONS:
        return True
    try:
        return tag_of(name) is not None
    except ValueError:
        return False


def column_of(dimension: str) -> str:
    """The SQL of a dimension's stored value: its span column (a rollup key names its own),
    or a tag's value in ``tags`` (the key is validated, so it is safe as a literal)."""
    key = tag_of(dimension)
    if key is not None:
        return f"(tags->>'{key}')"
    return ATTRIBUTION.get(dimension, dimension)


def in_force_sql(dimension: str) -> str | None:
    """For a tag, the SQL condition that a stored span had the key in force (spans stored
    before the organization named the key have no value for it, not even ''); None for other
    dimensions, which every span has."""
    key = tag_of(dimension)
    return None if key is None else f"(tags ? '{key}')"
