"""Per-organization policy (price overrides, tag keys, content opt-in), cached with a TTL so
the hot path never queries for it; a price or tag change shows up within the TTL.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from uuid import UUID

from aethermind.semconv import PriceOverride
from aethermind.semconv.pricing import LookupBudget


@dataclass(frozen=True, slots=True)
class TenantPolicy:
    """What one organization asked for, as far as turning its telemetry into rows goes."""

    capture_content: bool = False
    overrides: tuple[PriceOverride, ...] = ()
    lookups: LookupBudget | None = None
    """Its budget of price-table lookups for names not cached yet (``semconv.pricing``)."""
    tag_keys: tuple[str, ...] = ()
    """The tag keys it configured (``storage/tags.py``): each span's values are kept."""


Loaded = tuple[tuple[PriceOverride, ...], tuple[str, ...]]
"""What the loader reads of an organization: its price overrides and its tag keys."""
OverridesLoader = Callable[[UUID], Awaitable[Loaded]]


class TenantPolicies:
    """Each organization's policy, its price overrides and tag keys loaded through
    ``load_overrides`` (the storage read, injected: this module does no I/O) and kept
    ``ttl_seconds``."""

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
        self._entries: dict[UUID, tuple[float, Loaded]] = {}
        # Kept apart from the TTL'd entries: a budget must outlive a policy refresh.
        self._lookups: dict[UUID, LookupBudget] = {}

    async def policy(self, organization_id: UUID, *, capture_content: bool) -> TenantPolicy:
        entry = self._entries.get(organization_id)
        now = self._clock()
        if entry is None or entry[0] <= now:
            loaded = await self._load(organization_id)
            if len(self._entries) > 10_000:
                self._entries.clear()
            entry = (now + self._ttl, loaded)
            self._entries[organization_id] = entry
        lookups = self._lookups.get(organization_id)
        if lookups is None:
            if len(self._lookups) > 10_000:
                self._lookups.clear()
            lookups = self._lookups[organization_id] = LookupBudget()
        overrides, tag_keys = entry[1]
        return TenantPolicy(
            capture_content=capture_content,
            overrides=overrides,
            lookups=lookups,
            tag_keys=tag_keys,
        )

    def forget(self, organization_id: UUID) -> None:
        self._entries.pop(organization_id, None)
