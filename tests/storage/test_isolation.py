"""Row-level security: a transaction sees only the organization it names, and nothing
when it names none, even though the test server's login role is a superuser."""

from __future__ import annotations

from typing import Any

from aethermind.storage.scope import tenant_transaction
from aethermind.storage.writer import write_rows
from tests.storage.factories import create_org, make_rows

TENANT_TABLES = (
    "telemetry_events",
    "usage_rollup_hourly",
    "usage_rollup_daily",
    "api_keys",
    "model_prices",
    "organizations",
)


async def test_without_an_organization_setting_nothing_is_visible(pool: Any) -> None:
    org = await create_org(pool, "acme")
    await write_rows(pool, org, make_rows(20))
    async with pool.acquire() as conn:
        for table in TENANT_TABLES:
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table
        async with conn.transaction():
            assert await conn.fetchval("SELECT count(*) FROM telemetry_events") == 0


async def test_an_organization_never_sees_another_organizations_rows(pool: Any) -> None:
    a = await create_org(pool, "org-a")
    b = await create_org(pool, "org-b")
    await write_rows(pool, a, make_rows(30, seed=1))
    await write_rows(pool, b, make_rows(12, seed=2))
    async with tenant_transaction(pool, a) as conn:
        assert await conn.fetchval("SELECT count(*) FROM telemetry_events") == 30
        assert (
            await conn.fetchval("SELECT count(DISTINCT organization_id) FROM usage_rollup_hourly")
            == 1
        )
        assert await conn.fetchval("SELECT count(*) FROM organizations") == 1
    async with tenant_transaction(pool, b) as conn:
        assert await conn.fetchval("SELECT count(*) FROM telemetry_events") == 12
        # Even an explicit filter on the other organization finds nothing.
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM telemetry_events WHERE organization_id = $1", a
            )
            == 0
        )


async def test_the_setting_does_not_outlive_its_transaction(pool: Any) -> None:
    org = await create_org(pool, "acme")
    await write_rows(pool, org, make_rows(5))
    async with pool.acquire() as conn:
        async with tenant_transaction(conn, org):
            assert await conn.fetchval("SELECT count(*) FROM telemetry_events") == 5
        assert await conn.fetchval("SELECT count(*) FROM telemetry_events") == 0


async def test_a_tenant_cannot_write_rows_for_another_organization(pool: Any) -> None:
    import asyncpg
    import pytest

    a = await create_org(pool, "org-a")
    b = await create_org(pool, "org-b")
    async with tenant_transaction(pool, a) as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(
                "INSERT INTO telemetry_events"
                ' (organization_id, trace_id, span_id, name, "timestamp")'
                " VALUES ($1, 't', 's', 'n', now())",
                b,
            )
