"""Budgets and deliveries in PostgreSQL: defaults and updates, month-to-date cost from the
rollup, tenant isolation, and claims that only one caller can win."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from aethermind.storage import budgets
from aethermind.storage.scope import tenant_transaction
from aethermind.storage.tenants import Organization, create_organization
from tests.alerts.conftest import MARCH, spend

HOOK = "https://hooks.slack.com/services/T000/B000/s3cr3t"
MARCH_MONTH = date(2025, 3, 1)


async def test_a_new_budget_alerts_at_50_80_100_percent_by_default(
    pool: Any, acme: Organization
) -> None:
    budget = await budgets.set_budget(
        pool, acme.id, monthly_limit_usd=Decimal("50"), webhook_url=HOOK
    )
    assert (budget.monthly_limit_usd, budget.thresholds) == (Decimal(50), (50, 80, 100))
    assert await budgets.get_budget(pool, acme.id) == budget
    assert "s3cr3t" not in repr(budget) and "s3cr3t" not in str(budget.as_dict())


async def test_updating_a_budget_keeps_what_was_not_given(pool: Any, acme: Organization) -> None:
    first = await budgets.set_budget(
        pool, acme.id, monthly_limit_usd=Decimal(50), thresholds=[90, 75], webhook_url=HOOK
    )
    second = await budgets.set_budget(pool, acme.id, monthly_limit_usd=Decimal("80.5"))
    assert (second.monthly_limit_usd, second.thresholds, second.webhook_url) == (
        Decimal("80.5"),
        (75, 90),
        HOOK,
    )
    assert second.created_at == first.created_at and second.updated_at >= first.updated_at


async def test_invalid_budgets_are_refused(pool: Any, acme: Organization) -> None:
    with pytest.raises(ValueError, match="needs a webhook URL"):
        await budgets.set_budget(pool, acme.id, monthly_limit_usd=Decimal(50))
    for bad in (Decimal(0), Decimal(-1), Decimal("NaN")):
        with pytest.raises(ValueError, match="positive"):
            await budgets.set_budget(pool, acme.id, monthly_limit_usd=bad, webhook_url=HOOK)
    with pytest.raises(TypeError, match="Decimal"):
        await budgets.set_budget(pool, acme.id, monthly_limit_usd=50.0, webhook_url=HOOK)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="between 1 and 1000"):
        await budgets.set_budget(
            pool, acme.id, monthly_limit_usd=Decimal(5), thresholds=[0], webhook_url=HOOK
        )
    assert await budgets.get_budget(pool, acme.id) is None
    # The database refuses what the code would have (defence in depth).
    async with tenant_transaction(pool, acme.id) as conn:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO budgets (organization_id, monthly_limit_usd, thresholds, webhook_url)"
                " VALUES ($1, 10, '{0}', $2)",
                acme.id,
                HOOK,
            )


async def test_deleting_a_budget(pool: Any, acme: Organization) -> None:
    await budgets.set_budget(pool, acme.id, monthly_limit_usd=Decimal(5), webhook_url=HOOK)
    assert [b.slug for b in await budgets.list_budgets(pool)] == ["acme"]
    assert await budgets.delete_budget(pool, acme.id) is True
    assert await budgets.delete_budget(pool, acme.id) is False
    assert await budgets.list_budgets(pool) == []


async def test_month_to_date_is_the_utc_calendar_month_of_one_organization(
    pool: Any, acme: Organization
) -> None:
    globex = await create_organization(pool, "Globex", slug="globex")
    await spend(pool, acme.id, "1.25", datetime(2025, 3, 1, tzinfo=UTC), unpriced=3)
    await spend(pool, acme.id, "2.5", datetime(2025, 3, 31, 23, 59, 59, tzinfo=UTC))
    await spend(pool, acme.id, "100", datetime(2025, 2, 28, 23, 59, 59, tzinfo=UTC))
    await spend(pool, acme.id, "100", datetime(2025, 4, 1, tzinfo=UTC))
    await spend(pool, globex.id, "100", MARCH)

    usage = await budgets.month_to_date(pool, acme.id, MARCH_MONTH)

    assert (usage.cost_usd, usage.calls, usage.unpriced_calls) == (Decimal("3.75"), 5, 3)
    empty = await budgets.month_to_date(pool, acme.id, date(2025, 5, 1))
    assert (empty.cost_usd, empty.calls) == (Decimal(0), 0)


async def test_budgets_and_deliveries_are_tenant_data(pool: Any, acme: Organization) -> None:
    globex = await create_organization(pool, "Globex", slug="globex")
    await budgets.set_budget(pool, acme.id, monthly_limit_usd=Decimal(5), webhook_url=HOOK)
    await budgets.claim_thresholds(pool, acme.id, MARCH_MONTH, [50], now=MARCH, lease_seconds=60)

    async with pool.acquire() as conn:  # no organization set: nothing visible
        for table in ("budgets", "alert_deliveries"):
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table
    assert await budgets.get_budget(pool, globex.id) is None
    assert await budgets.list_deliveries(pool, globex.id, MARCH_MONTH) == []
    async with tenant_transaction(pool, globex.id) as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(
                "INSERT INTO budgets (organization_id, monthly_limit_usd, webhook_url)"
                " VALUES ($1, 10, $2)",
                acme.id,
                HOOK,
            )
    async with tenant_transaction(pool, acme.id) as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM alert_deliveries")  # history is never deleted


async def test_of_many_concurrent_claims_exactly_one_wins(pool: Any, acme: Organization) -> None:
    claims = await asyncio.gather(
        *(
            budgets.claim_thresholds(
                pool, acme.id, MARCH_MONTH, [50, 80], now=MARCH, lease_seconds=60
            )
            for _ in range(12)
        )
    )
    won = [c for c in claims if c is not None]
    assert len(won) == 1 and won[0].thresholds == (50, 80) and won[0].rounds == 1
    assert {d.status for d in await budgets.list_deliveries(pool, acme.id, MARCH_MONTH)} == {
        "pending"
    }


async def test_a_failed_claim_comes_back_when_due_and_a_delivered_one_never(
    pool: Any, acme: Organization
) -> None:
    claim = await budgets.claim_thresholds(
        pool, acme.id, MARCH_MONTH, [50], now=MARCH, lease_seconds=60
    )
    assert claim is not None
    later = MARCH + timedelta(minutes=5)
    await budgets.mark_failed(pool, claim, attempts=3, error="HTTP 503", next_attempt_at=later)
    early = MARCH + timedelta(minutes=4)
    assert await budgets.claim_thresholds(
        pool, acme.id, MARCH_MONTH, [50], now=early, lease_seconds=60
    ) is None  # fmt: skip

    again = await budgets.claim_thresholds(
        pool, acme.id, MARCH_MONTH, [50], now=later, lease_seconds=60
    )
    assert again is not None and again.rounds == 2
    # The first claimer's lease is gone: it cannot record over the new claimer.
    assert await budgets.mark_failed(pool, claim, attempts=1, error="x", next_attempt_at=None) == 0
    assert await budgets.mark_delivered(pool, again, attempts=1, delivered_at=later) == 1

    far = MARCH + timedelta(days=10)
    assert await budgets.claim_thresholds(
        pool, acme.id, MARCH_MONTH, [50], now=far, lease_seconds=60
    ) is None  # fmt: skip
    (done,) = await budgets.list_deliveries(pool, acme.id, MARCH_MONTH)
    assert (done.status, done.attempts, done.rounds, done.delivered_at) == (
        "delivered",
        4,
        2,
        later,
    )


async def test_report_shows_each_threshold_with_its_delivery(pool: Any, acme: Organization) -> None:
    await budgets.set_budget(pool, acme.id, monthly_limit_usd=Decimal(50), webhook_url=HOOK)
    await spend(pool, acme.id, "41.234", MARCH)
    claim = await budgets.claim_thresholds(
        pool, acme.id, MARCH_MONTH, [50], now=MARCH, lease_seconds=60
    )
    assert claim is not None
    await budgets.mark_delivered(pool, claim, attempts=2, delivered_at=MARCH)

    report = await budgets.budget_report(pool, acme.id, "acme", now=MARCH)

    assert report is not None
    document = report.as_dict()
    assert document["month"] == "2025-03"
    assert (document["month_to_date_usd"], document["percent_used"]) == (
        Decimal("41.234"),
        Decimal("82.46"),
    )
    rows = [
        (t["threshold"], t["crossed"], t["status"], t["attempts"]) for t in document["thresholds"]
    ]
    assert rows == [(50, True, "delivered", 2), (80, True, None, 0), (100, False, None, 0)]

    april = await budgets.budget_report(pool, acme.id, "acme", now=datetime(2025, 4, 2, tzinfo=UTC))
    assert april is not None
    assert (april.usage.cost_usd, april.deliveries) == (Decimal(0), ())
    globex = await create_organization(pool, "Globex", slug="globex")
    assert await budgets.budget_report(pool, globex.id, "globex") is None
