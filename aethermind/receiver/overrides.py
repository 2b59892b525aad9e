"""Per-organization pricing policy (price overrides, content opt-in), cached with a TTL so
the hot path never queries for it; a price change shows up within the TTL.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from aethermind.receiver.rows import TenantPolicy
from aethermind.semconv import PriceOverride
from aethermind.storage.prices import list_prices

OverridesLoader = Callable[[UUID], Awaitable[tuple[PriceOverride, ...]]]


class TenantPolicies:
    def __init__(
        self,
        load_overrides: OverridesLoader,
        *,
        ttl_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load_overrides
        self._ttl = ttl_seconds
        self._clock = clock
        self._entries: dict[UUID, tuple[float, tuple[PriceOverride, ...]]] = {}

    async def policy(self, organization_id: UUID, *, capture_content: bool) -> TenantPolicy:
        entry = self._entries.get(organization_id)
        now = self._clock()
        if entry is None or entry[0] <= now:
            overrides = await self._load(organization_id)
            if len(self._entries) > 10_000:
                self._entries.clear()
            entry = (now + self._ttl, overrides)
            self._entries[organization_id] = entry
        return TenantPolicy(capture_content=capture_content, overrides=entry[1])

    def forget(self, organization_id: UUID) -> None:
        self._entries.pop(organization_id, None)


async def load_price_overrides(
    pool: Any, organization_id: UUID, *, timeout: float | None = None
) -> tuple[PriceOverride, ...]:
    """The organization's stored price overrides as the pricing code takes them."""
    stored = await list_prices(pool, organization_id, timeout=timeout)
    return tuple(
        PriceOverride(
            model_pattern=price.model_pattern,
            input_per_mtok=price.input_per_mtok,
            output_per_mtok=price.output_per_mtok,
            cache_read_per_mtok=price.cache_read_per_mtok,
            cache_write_per_mtok=price.cache_write_per_mtok,
            valid_from=price.valid_from,
            provider=price.provider,
        )
        for price in stored
    )
