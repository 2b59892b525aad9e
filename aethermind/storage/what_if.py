"""What-if: what the usage in aggregates rows would have cost on another model, at that
model's list prices today. Tokens are taken as recorded, every row's (unpriced calls
included: their tokens are known even where their own model's price is not)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from aethermind.semconv import PriceBook, UsageRecord
from aethermind.semconv.record import MAX_NAME_LENGTH


class UnknownModel(ValueError):
    """The what-if model has no list price."""


def add_what_if_costs(
    rows: Sequence[dict[str, Any]],
    model: str,
    price_book: PriceBook,
    *,
    at_unix_nano: int | None = None,
) -> str:
    """Sets ``what_if_cost_usd`` on each row (Decimal); answers the priced model's id.
    ``UnknownModel`` when ``model`` cannot be priced."""
    if not model or len(model) > MAX_NAME_LENGTH:
        raise UnknownModel(f"what-if model must be 1 to {MAX_NAME_LENGTH} characters")
    at = time.time_ns() if at_unix_nano is None else at_unix_nano
    probe = price_book.what_if(model, UsageRecord(), at)
    if probe is None:
        raise UnknownModel(f"no list price for model {model!r}")
    for row in rows:
        tokens = UsageRecord(
            input_tokens=row["input_tokens"],
            output_tokens=row["output_tokens"],
            cache_read_tokens=row["cache_read_tokens"],
            cache_write_tokens=row["cache_write_tokens"],
            reasoning_tokens=row["reasoning_tokens"],
        )
        priced = price_book.what_if(model, tokens, at)
        row["what_if_cost_usd"] = None if priced is None else priced[0]
    return probe[1]
