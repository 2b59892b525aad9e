"""LLM span conventions as data, one normalizer for all of them, and pricing.

This package depends on nothing else of Aethermind's: the SDK, the storage and the receiver
all read spans through it.
"""

from __future__ import annotations

from aethermind.semconv.normalize import normalize
from aethermind.semconv.pricing import PriceBook, PriceOverride, default_price_book, price_record
from aethermind.semconv.record import UNKNOWN_COST, Cost, CostSource, UsageRecord

__all__ = [
    "UNKNOWN_COST",
    "Cost",
    "CostSource",
    "PriceBook",
    "PriceOverride",
    "UsageRecord",
    "default_price_book",
    "normalize",
    "price_record",
]
