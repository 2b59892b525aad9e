"""Row-level security checked in plain SQL as the server's role: on a connection of the
login role, ``SET ROLE aethermind_app`` (what every pool connection does), then

- with no ``aethermind.org_id`` setting, every tenant table shows no rows;
- with organization A's id, only A's rows, in every tenant table;
- rows of organization B cannot be inserted, nor A's rows moved to B, under A's setting;
  B's rows cannot be updated or deleted (they are invisible);
- partitions of ``telemetry_events`` cannot be read directly (RLS applies to the parent);
- a malformed setting is an error, not a way around the policy, and the setting ends with
  its transaction.

The tenant tables are found in the catalog (every table with an ``organization_id``
column, and ``organizations``), so a table added later is covered too.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest

from aethermind.storage.prices import create_price
from aethermind.storage.scope import APP_ROLE, ORG_SETTING
from aethermind.storage.tenants import create_key, create_organization
from aethermind.storage.writer import write_rows
from tests.storage.factories import make_rows

TENANT_TABLES_SQL = """
    SELECT c.relname AS table_name, c.relrowsecurity AS rls, c.relforcerowsecurity AS forced
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition
       AND (c.relname = 'organizations' OR EXISTS (
             SELECT 1 FROM pg_attribute a
              WHERE a.attrelid = c.oid AND a.attname = 'organization_id' AND NOT a.attisdropped))
     ORDER BY 1
"""


def org_column(table: str) -> str:
    return "id" if table == "organizations" else "organization_id"


@contextlib.asynccontextmanager
async def as_app(database_url: str) -> AsyncIterator[Any]:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"SET ROLE {APP_ROLE}")
        assert await conn.fetchval("SELECT current_user") == APP_ROLE
        yield conn
    finally:
        await conn.close()


# Rows for tables that have no storage call used here; seeded as the owner when the table
# exists, so the checks on them are not vacuous.
OPTIONAL_SEEDS = {
    "budgets": "INSERT INTO budgets (organization_id, monthly_limit_usd, webhook_url) "
    "VALUES ($1, 100, 'https://hooks.example.com/x')",
    "alert_deliveries": "INSERT INTO alert_deliveries (organization_id, month, threshold, "
    "claimed_at) VALUES ($1, date '2026-11-01', 50, now())",
    "linked_traces": "INSERT INTO linked_traces (organization_id, trace_id, last_start) "
    "VALUES ($1, md5(random()::text), now())",
    "metric_usage": 'INSERT INTO metric_usage (organization_id, series, start_time, "time", '
    "cumulative, measure, value) VALUES ($1, md5(random()::text), now(), now(), false, "
    "'input_tokens', 10)",
}


async def seed(pool: Any, database_url: str) -> tuple[UUID, UUID]:
    ids = []
    for slug, rows, seed_ in (("rls-a", 30, 1), ("rls-b", 12, 2)):
        org = await create_organization(pool, slug, slug=slug)
        await create_key(pool, org.id, ["ingest"])
        await create_key(pool, org.id, ["read"])
        await create_price(
            pool, org.id, f"ft:{slug}*", input_per_mtok=Decimal(1), output_per_mtok=Decimal(2)
        )
        await write_rows(pool, org.id, make_rows(rows, seed=seed_))
        ids.append(org.id)
    owner = await asyncpg.connect(database_url)
    try:
        for table, sql in OPTIONAL_SEEDS.items():
            if await owner.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
                for org_id in ids:
                    await owner.execute(sql, org_id)
    finally:
        await owner.close()
    return ids[0], ids[1]


async def test_the_app_role_sees_only_the_organization_it_names_and_cannot_write_others(
    pool: Any, database_url: str
) -> None:
    a, b = await seed(pool, database_url)
    owner = await asyncpg.connect(database_url)
    try:
        tables = [dict(r) for r in await owner.fetch(TENANT_TABLES_SQL)]
        truth = {
            t["table_name"]: {
                org: await owner.fetchval(f"SELECT count(*) FROM {table} WHERE {column} = $1", org)
                for org in (a, b)
            }
            for t in tables
            for table, column in [(t["table_name"], org_column(t["table_name"]))]
        }
        partitions = [
            r["part"]
            for r in await owner.fetch(
                "SELECT inhrelid::regclass::text AS part FROM pg_inherits "
                "WHERE inhparent = 'telemetry_events'::regclass"
            )
        ]
    finally:
        await owner.close()
    assert {"telemetry_events", "usage_rollup_hourly", "api_keys", "organizations"} <= set(truth)
    not_protected = [t["table_name"] for t in tables if not t["rls"]]
    assert not not_protected, f"tenant tables without row-level security: {not_protected}"

    async with as_app(database_url) as conn:
        unset = {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in truth}
        assert set(unset.values()) == {0}, unset

        seen: dict[str, int] = {}
        async with conn.transaction():
            await conn.execute(f"SELECT set_config('{ORG_SETTING}', $1, true)", str(a))
            for table in truth:
                column = org_column(table)
                seen[table] = await conn.fetchval(f"SELECT count(*) FROM {table}")
                others = await conn.fetchval(
                    f"SELECT count(*) FROM {table} WHERE {column} <> $1", a
                )
                assert others == 0, table
                assert seen[table] == truth[table][a], table
                # Naming B explicitly finds nothing either.
                assert (
                    await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {column} = $1", b) == 0
                )
        # The setting was local to that transaction.
        assert await conn.fetchval("SELECT count(*) FROM telemetry_events") == 0

        refused = await writes_refused_under_a(conn, a, b)
        changed = await changes_to_b_under_a(conn, a, b)

        denied_partitions = []
        for partition in partitions:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetchval(f"SELECT count(*) FROM {partition}")
            denied_partitions.append(partition)

        async with conn.transaction():
            await conn.execute(f"SELECT set_config('{ORG_SETTING}', 'not-a-uuid', true)")
            with pytest.raises(asyncpg.InvalidTextRepresentationError):
                await conn.fetchval("SELECT count(*) FROM telemetry_events")

    owner = await asyncpg.connect(database_url)
    try:
        for table in truth:
            column = org_column(table)
            after = await owner.fetchval(f"SELECT count(*) FROM {table} WHERE {column} = $1", b)
            assert after == truth[table][b], f"B's rows in {table} changed"
    finally:
        await owner.close()

    print(
        f"\n[security] row-level security as {APP_ROLE}: tenant tables "
        + ", ".join(f"{t} (A {truth[t][a]}, B {truth[t][b]})" for t in truth)
        + f"; visible with no setting: {sum(unset.values())}; visible under A: "
        + ", ".join(f"{t} {n}" for t, n in seen.items())
        + f"; writes of B's rows under A refused: {refused}; updates/deletes reaching B's "
        f"rows: {changed}; partitions readable directly: 0 of {len(denied_partitions)}"
    )
    assert changed == {"update": 0, "delete": 0}


async def writes_refused_under_a(conn: Any, a: UUID, b: UUID) -> list[str]:
    """Each statement tries to create or move a row into B while A is set; all must fail."""
    now = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
    attempts = {
        "insert telemetry_events": (
            "INSERT INTO telemetry_events (organization_id, trace_id, span_id, name, "
            "\"timestamp\") VALUES ($1, repeat('a', 32), repeat('b', 16), 'x', $2)",
            (b, now),
        ),
        "insert usage_rollup_hourly": (
            "INSERT INTO usage_rollup_hourly (organization_id, hour, calls) VALUES ($1, $2, 1)",
            (b, now),
        ),
        "insert usage_rollup_daily": (
            "INSERT INTO usage_rollup_daily (organization_id, day, calls) VALUES ($1, $2, 1)",
            (b, now),
        ),
        "insert api_keys": (
            "INSERT INTO api_keys (organization_id, public_id, key_hash, scopes) "
            "VALUES ($1, 'abcdefgh1234', 'x', ARRAY['read'])",
            (b,),
        ),
        "insert model_prices": (
            "INSERT INTO model_prices (organization_id, model_pattern) VALUES ($1, 'gpt-*')",
            (b,),
        ),
        "insert organizations": (
            "INSERT INTO organizations (id, name, slug, plan, rate_limit_per_min, "
            "retention_days) VALUES ($1, 'evil', 'evil', 'FREE', 1, 1)",
            (b,),
        ),
        "move A's spans to B": (
            "UPDATE telemetry_events SET organization_id = $1 WHERE organization_id = $2",
            (b, a),
        ),
        "move A's keys to B": (
            "UPDATE api_keys SET organization_id = $1 WHERE organization_id = $2",
            (b, a),
        ),
    }
    if await conn.fetchval("SELECT to_regclass('budgets') IS NOT NULL"):
        attempts["insert budgets"] = (OPTIONAL_SEEDS["budgets"], (b,))
    refused = []
    for label, (sql, args) in attempts.items():
        async with conn.transaction():
            await conn.execute(f"SELECT set_config('{ORG_SETTING}', $1, true)", str(a))
            try:
                async with conn.transaction():  # a savepoint, so the outer one survives
                    await conn.execute(sql, *args)
            except asyncpg.InsufficientPrivilegeError:
                refused.append(label)
            else:
                raise AssertionError(f"{label} was allowed under organization A")
    return refused


async def changes_to_b_under_a(conn: Any, a: UUID, b: UUID) -> dict[str, int]:
    async with conn.transaction():
        await conn.execute(f"SELECT set_config('{ORG_SETTING}', $1, true)", str(a))
        updated = await conn.execute(
            "UPDATE telemetry_events SET input_tokens = 0 WHERE organization_id = $1", b
        )
        deleted = await conn.execute(
            "DELETE FROM usage_rollup_hourly WHERE organization_id = $1", b
        )
    return {"update": int(updated.split()[-1]), "delete": int(deleted.split()[-1])}


def _as_user(url: str, user: str) -> str:
    """``url`` with another login role (trust authentication on the test servers)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


@contextlib.asynccontextmanager
async def _pool_of_new_login_role(database_url: str) -> AsyncIterator[tuple[str, Any]]:
    """A fresh login role that is not (yet) allowed to become the application role, and a
    server pool logged in as it."""
    from aethermind.storage.database import create_pool

    name = f"login_{uuid4().hex[:12]}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f"CREATE ROLE {name} LOGIN NOSUPERUSER")
        pool = await create_pool(_as_user(database_url, name), min_size=2, max_size=2)
        try:
            yield name, pool
        finally:
            await pool.close()
    finally:
        await admin.execute(f"DROP OWNED BY {name}")
        await admin.execute(f"DROP ROLE {name}")
        await admin.close()


async def test_a_pool_opened_before_the_role_was_usable_is_recycled_not_left_unscoped(
    database_url: str,
) -> None:
    from aethermind.storage.database import require_app_role

    async with _pool_of_new_login_role(database_url) as (login, pool):
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT current_user") == login  # not yet usable
        # What a migration (another replica's, say) does meanwhile.
        admin = await asyncpg.connect(database_url)
        await admin.execute(f"GRANT {APP_ROLE} TO {login}")
        await admin.close()
        await require_app_role(pool)
        for _ in range(3):
            async with pool.acquire() as conn:
                assert await conn.fetchval("SELECT current_user") == APP_ROLE


async def test_a_server_that_cannot_become_the_application_role_refuses_to_serve(
    database_url: str,
) -> None:
    from aethermind.storage.database import RowLevelSecurityError, require_app_role

    async with _pool_of_new_login_role(database_url) as (_, pool):
        with pytest.raises(RowLevelSecurityError, match="refusing to serve"):
            await require_app_role(pool)


@contextlib.asynccontextmanager
async def _database_owned_by_a_plain_login_role(
    admin_url: str,
) -> AsyncIterator[tuple[str, str]]:
    """A new database owned by a new login role that is no superuser but may create roles,
    like a managed PostgreSQL's master user, and may become the application role."""
    from urllib.parse import urlsplit, urlunsplit

    name = f"owner_{uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f"CREATE ROLE {name} LOGIN NOSUPERUSER CREATEROLE")
        await admin.execute(
            "DO $$ BEGIN CREATE ROLE aethermind_app NOLOGIN NOBYPASSRLS;"
            " EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        )
        await admin.execute(f"GRANT {APP_ROLE} TO {name}")
        await admin.execute(f'CREATE DATABASE "{name}" OWNER {name}')
        url = urlunsplit(urlsplit(_as_user(admin_url, name))._replace(path=f"/{name}"))
        yield name, url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f"DROP ROLE IF EXISTS {name}")
        await admin.close()


async def test_the_policies_bind_the_tables_owner_too_and_its_own_work_still_runs(
    postgres_admin_url: str,
) -> None:
    # The fail-open case: a server connection that never became the application role runs
    # as the login role, the tables' owner, which ENABLE ROW LEVEL SECURITY alone exempts.
    from aethermind.storage.database import create_pool
    from aethermind.storage.migrate import migrate
    from aethermind.storage.queries import organization_usage
    from aethermind.storage.retention import apply_retention
    from aethermind.storage.tenants import verify_key

    async with _database_owned_by_a_plain_login_role(postgres_admin_url) as (owner, url):
        pool = await create_pool(url, min_size=1, max_size=2)
        try:
            await migrate(pool)
            a = (await create_organization(pool, name="A", slug="force-a")).id
            b = (await create_organization(pool, name="B", slug="force-b")).id
            now = datetime.now(UTC)
            await write_rows(pool, a, make_rows(5, start=now, seed=1))
            await write_rows(pool, b, make_rows(3, start=now, seed=2))
            _, key = await create_key(pool, a, ["ingest"])
            # The owner's cross-tenant work goes on: key lookup, usage, retention.
            verified = await verify_key(pool, key)
            assert verified is not None and verified.organization_id == a
            usage = await organization_usage(
                pool, now.replace(day=1), now.replace(year=now.year + 1)
            )
            assert sum(u["calls"] for u in usage) == 8
            await apply_retention(pool)
        finally:
            await pool.close()
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT current_user") == owner
            assert await conn.fetchval("SELECT count(*) FROM telemetry_events") == 0
            async with conn.transaction():
                await conn.execute(f"SELECT set_config('{ORG_SETTING}', $1, true)", str(a))
                assert await conn.fetchval("SELECT count(*) FROM telemetry_events") == 5
                assert await conn.fetchval("SELECT count(*) FROM organizations") == 1
                assert await conn.fetchval("SELECT count(*) FROM api_keys") == 1
            # Maintenance is the owner's only: the application role cannot claim it.
            async with conn.transaction():
                await conn.execute(f"SET LOCAL ROLE {APP_ROLE}")
                await conn.execute("SET LOCAL aethermind.maintenance = 'on'")
                assert await conn.fetchval("SELECT count(*) FROM telemetry_events") == 0
        finally:
            await conn.close()
