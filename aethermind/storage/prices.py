"""Per-organization model price overrides (USD per million tokens): create, list, update,
delete. Matching a span's model against ``model_pattern`` is the pricing code's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from aethermind.semconv import PriceOverride
from aethermind.semconv.pricing_patterns import check_model_pattern
from aethermind.semconv.tiers import MAX_TIER_LENGTH, STANDARD_NAMES, normalize_tier
from aethermind.storage.scope import PoolOrConnection, owner_transaction, tenant_transaction

MAX_PRICE_OVERRIDES = 100
"""Price overrides one organization may hold: every span of it is matched against them."""

PRICE_FIELDS = ("input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok")
"""The money columns of an override, USD per million tokens."""
_COLUMNS = (
    "id, organization_id, provider, model_pattern, input_per_mtok, output_per_mtok,"
    " cache_read_per_mtok, cache_write_per_mtok, valid_from, created_at, service_tier"
)


@dataclass(frozen=True, slots=True)
class StoredPrice:
    """One organization's price override as stored (``semconv.PriceOverride`` is the same
    price as the pricing code applies it; genai-prices' ``ModelPrice`` is a list price)."""

    id: UUID
    organization_id: UUID
    provider: str | None
    model_pattern: str
    input_per_mtok: Decimal | None
    output_per_mtok: Decimal | None
    cache_read_per_mtok: Decimal | None
    cache_write_per_mtok: Decimal | None
    valid_from: datetime
    created_at: datetime
    service_tier: str | None = None
    """The tier it prices; None: standard requests (``semconv/tiers.py``)."""

    def as_dict(self) -> dict[str, Any]:
        """The override as the API and ``aethermind price ... --json`` show it (money and
        instants still as Decimal and datetime: each caller renders them)."""
        return {
            "id": str(self.id),
            "organization_id": str(self.organization_id),
            "provider": self.provider,
            "model_pattern": self.model_pattern,
            "service_tier": self.service_tier,
            **{name: getattr(self, name) for name in PRICE_FIELDS},
            "valid_from": self.valid_from,
            "created_at": self.created_at,
        }


def _check(prices: dict[str, Decimal | None]) -> None:
    for name, value in prices.items():
        if value is not None and not isinstance(value, Decimal):
            raise TypeError(
                f"{name} must be a Decimal (money is never float), got {type(value).__name__}"
            )
        if value is not None and value < 0:
            raise ValueError(f"{name} must not be negative, got {value}")


def _checked_tier(value: str | None) -> str | None:
    """A tier as stored: None for standard (its synonyms included); ValueError for a value
    that is not a tier name."""
    if value is None:
        return None
    tier = normalize_tier(value)
    if tier is None and value.strip().lower() not in STANDARD_NAMES:
        raise ValueError(f"service_tier must be a tier name, got {value!r}")
    if tier is not None and (len(value.strip()) > MAX_TIER_LENGTH or not tier.isprintable()):
        raise ValueError(f"service_tier must be at most {MAX_TIER_LENGTH} characters")
    return tier


async def create_price(
    pool_or_conn: PoolOrConnection,
    organization_id: UUID | str,
    model_pattern: str,
    *,
    provider: str | None = None,
    input_per_mtok: Decimal | None = None,
    output_per_mtok: Decimal | None = None,
    cache_read_per_mtok: Decimal | None = None,
    cache_write_per_mtok: Decimal | None = None,
    valid_from: datetime | None = None,
    service_tier: str | None = None,
    timeout: float | None = None,
) -> StoredPrice:
    """Add an override; ``valid_from`` defaults to now (the database clock); with
    ``service_tier``, it prices only requests served at that tier."""
    service_tier = _checked_tier(service_tier)
    prices = {
        "input_per_mtok": input_per_mtok,
        "output_per_mtok": output_per_mtok,
        "cache_read_per_mtok": cache_read_per_mtok,
        "cache_write_per_mtok": cache_write_per_mtok,
    }
    _check(prices)
    try:
        check_model_pattern(model_pattern)
    except ValueError as exc:
        raise ValueError(f"model_pattern {exc}") from None
    async with tenant_transaction(pool_or_conn, organization_id) as conn:
        # One organization's overrides are counted and added one writer at a time, so
        # concurrent requests cannot pass the cap together.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1::text, 7))",
            str(organization_id), timeout=timeout,
        )  # fmt: skip
        held = await conn.fetchval("SELECT count(*) FROM model_prices", timeout=timeout)
        if held >= MAX_PRICE_OVERRIDES:
            raise ValueError(
                f"an organization holds at most {MAX_PRICE_OVERRIDES} price overrides;"
                " delete one first"
            )
        row = await conn.fetchrow(
            f"""
            INSERT INTO model_prices (organization_id, provider, model_pattern, input_per_mtok,
                output_per_mtok, cache_read_per_mtok, cache_write_per_mtok, valid_from,
                service_tier)
            VALUES ($1, $2, $3, $4, $5, $6, $7, coalesce($8, now()), $9)
            RETURNING {_COLUMNS}
            """,
            UUID(str(organization_id)), provider, model_pattern, *prices.values(), valid_from,
            service_tier, timeout=timeout,
        )  # fmt: skip
    return StoredPrice(**dict(row))


async def list_prices(
    pool_or_conn: PoolOrConnection,
    organization_id: UUID | str,
    *,
    at: datetime | None = None,
    timeout: float | None = None,
) -> list[StoredPrice]:
    """The organization's overrides, oldest first; with ``at``, only those valid by then."""
    async with tenant_transaction(pool_or_conn, organization_id) as conn:
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM model_prices WHERE organization_id = $1"
            " AND ($2::timestamptz IS NULL OR valid_from <= $2)"
            " ORDER BY valid_from, created_at, id",
            UUID(str(organization_id)), at, timeout=timeout,
        )  # fmt: skip
    return [StoredPrice(**dict(r)) for r in rows]


async def update_price(
    pool_or_conn: PoolOrConnection,
    organization_id: UUID | str,
    price_id: UUID | str,
    *,
    timeout: float | None = None,
    **changes: Any,
) -> StoredPrice | None:
    """Change some fields of an override; returns None when it does not exist here."""
    allowed = {"provider", "model_pattern", "valid_from", "service_tier", *PRICE_FIELDS}
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"cannot update {sorted(unknown)}; allowed: {sorted(allowed)}")
    _check({k: v for k, v in changes.items() if k in PRICE_FIELDS})
    if "service_tier" in changes:
        changes["service_tier"] = _checked_tier(changes["service_tier"])
    if not changes:
        raise ValueError("nothing to update")
    names = sorted(changes)
    sets = ", ".join(f"{name} = ${i + 3}" for i, name in enumerate(names))
    async with tenant_transaction(pool_or_conn, organization_id) as conn:
        row = await conn.fetchrow(
            f"UPDATE model_prices SET {sets} WHERE organization_id = $1 AND id = $2"
            f" RETURNING {_COLUMNS}",
            UUID(str(organization_id)), UUID(str(price_id)), *(changes[n] for n in names),
            timeout=timeout,
        )  # fmt: skip
    return None if row is None else StoredPrice(**dict(row))


async def delete_price(
    pool_or_conn: PoolOrConnection,
    organization_id: UUID | str,
    price_id: UUID | str,
    *,
    timeout: float | None = None,
) -> bool:
    async with tenant_transaction(pool_or_conn, organization_id) as conn:
        status = await conn.execute(
            "DELETE FROM model_prices WHERE organization_id = $1 AND id = $2",
            UUID(str(organization_id)), UUID(str(price_id)), timeout=timeout,
        )  # fmt: skip
    return bool(status == "DELETE 1")


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
            service_tier=price.service_tier,
        )
        for price in stored
    )


@dataclass(frozen=True, slots=True)
class UnpricedModel:
    organization: str
    provider: str | None
    model: str | None
    calls: int
    last_seen: datetime


async def unpriced_models(
    pool_or_conn: PoolOrConnection,
    since: datetime,
    *,
    organization_id: UUID | None = None,
    timeout: float | None = None,
) -> list[UnpricedModel]:
    """Counted calls since ``since`` that no price covered, per organization and model,
    most calls first: what a price override (or a newer genai-prices) would fix. Runs as
    the owner (an operator's view across organizations unless one is named)."""
    async with owner_transaction(pool_or_conn) as conn:
        rows = await conn.fetch(
            """
            SELECT o.slug AS organization, e.provider, e.model, count(*) AS calls,
                   max(e."timestamp") AS last_seen
              FROM telemetry_events e JOIN organizations o ON o.id = e.organization_id
             WHERE e."timestamp" >= $1 AND e.counted AND e.cost IS NULL
               AND e.cost_source = 'unknown'
               AND ($2::uuid IS NULL OR e.organization_id = $2)
             GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 3 LIMIT 1000
            """,
            since, organization_id, timeout=timeout,
        )  # fmt: skip
    return [UnpricedModel(**dict(r)) for r in rows]


async def overrides_in_force(
    pool_or_conn: PoolOrConnection,
    *,
    organization_id: UUID | None = None,
    timeout: float | None = None,
) -> list[tuple[str, StoredPrice]]:
    """Every organization's price overrides (or one's), with its slug."""
    async with owner_transaction(pool_or_conn) as conn:
        rows = await conn.fetch(
            f"""
            SELECT o.slug, {", ".join(f"p.{c.strip()}" for c in _COLUMNS.split(","))}
              FROM model_prices p JOIN organizations o ON o.id = p.organization_id
             WHERE ($1::uuid IS NULL OR p.organization_id = $1)
             ORDER BY o.slug, p.valid_from, p.id
            """,
            organization_id, timeout=timeout,
        )  # fmt: skip
    return [
        (r["slug"], StoredPrice(**{k: v for k, v in dict(r).items() if k != "slug"})) for r in rows
    ]
