"""Transactions that say whose data they touch: a tenant transaction sets the organization
that row-level security filters on; an owner transaction drops to the login role and says it
is doing maintenance, for operator work (migrations, creating organizations, retention).

Pool connections run as the NOLOGIN role ``aethermind_app`` (see ``database.py``), which
row-level security applies to even when the URL logs in as a superuser. The org setting is
transaction-local (``set_config(..., true)``), so it can never leak to the next user of a
pooled connection. ``SET LOCAL ROLE NONE`` is not a security boundary against our own code:
RLS here guards against a query that forgets its organization filter, not against code
that already holds the database URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias
from uuid import UUID

import asyncpg

APP_ROLE = "aethermind_app"
ORG_SETTING = "aethermind.org_id"
MAINTENANCE_SETTING = "aethermind.maintenance"
"""Set ('on') for a transaction of the owner's cross-tenant work: with row-level security
forced on the owner too, the ``owner_maintenance`` policies admit the owning role only then
(migration 0004)."""
BECOME_OWNER_SQL = f"SET LOCAL ROLE NONE; SET LOCAL {MAINTENANCE_SETTING} = 'on'"
"""What a transaction runs first to do the owner's work: the login role, maintenance on."""

# asyncpg is untyped, so these are documentation: an ``asyncpg.Connection`` (or a pool's
# proxy of one) and "an ``asyncpg.Pool`` or such a connection".
Connection: TypeAlias = Any
PoolOrConnection: TypeAlias = Any


@asynccontextmanager
async def connection(pool_or_conn: PoolOrConnection) -> AsyncIterator[Connection]:
    """Borrow a connection from a pool, or use the given one as is."""
    if isinstance(pool_or_conn, asyncpg.Pool):
        async with pool_or_conn.acquire() as conn:
            yield conn
    else:
        yield pool_or_conn


@asynccontextmanager
async def tenant_transaction(
    pool_or_conn: PoolOrConnection, organization_id: UUID | str
) -> AsyncIterator[Connection]:
    """A transaction in which row-level security shows only ``organization_id``'s rows."""
    org = str(UUID(str(organization_id)))  # validates: never send a malformed id to SQL
    async with connection(pool_or_conn) as conn, conn.transaction():
        await conn.execute("SELECT set_config('aethermind.org_id', $1, true)", org)
        yield conn


@asynccontextmanager
async def owner_transaction(pool_or_conn: PoolOrConnection) -> AsyncIterator[Connection]:
    """A transaction running as the login role (the schema owner), across tenants."""
    async with connection(pool_or_conn) as conn, conn.transaction():
        await conn.execute(BECOME_OWNER_SQL)
        yield conn
