"""The dimensions usage is broken down by: one list for the rollups' keys, the queries'
``group_by`` and filters, the API's validation and its OpenAPI document, and the CLI."""

from __future__ import annotations

DIMENSIONS: tuple[str, ...] = ("provider", "model", "service", "operation", "environment")
"""Each is a stored span column (``model``: the response model, else the request model) and
a key column of the rollup tables, where a span without a value counts under ''."""
