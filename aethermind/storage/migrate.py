"""Applies the ordered SQL files in ``migrations/`` once each, recorded in
``schema_migrations``, under an advisory lock so replicas starting together take turns.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

from aethermind.storage.scope import BECOME_OWNER_SQL, PoolOrConnection, connection

logger = logging.getLogger(__name__)

# Any constant works; this one spells b"aetherm" so unrelated apps sharing a database are
# unlikely to pick it.
MIGRATION_LOCK_KEY = 0x6165746865726D
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    """The packaged migrations in order; names are ``NNNN_name.sql``."""
    directory = resources.files("aethermind.storage") / "migrations"
    found = [
        Migration(entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8"))
        for entry in directory.iterdir()
        if _NAME.match(entry.name)
    ]
    found.sort(key=lambda m: m.name)
    numbers = [m.name[:4] for m in found]
    if len(set(numbers)) != len(numbers):
        raise RuntimeError(f"two migrations share a number: {numbers}")
    return found


async def migrate(pool_or_conn: PoolOrConnection, *, timeout: float | None = 300.0) -> list[str]:
    """Apply pending migrations; return the names applied (empty when up to date).

    Runs as the login role (the owner), each migration in its own transaction. Concurrent
    callers on the same database wait on a session advisory lock and then find nothing
    left to do. After applying anything, a pool's connections are recycled so new ones
    pick up the application role that the first migration creates.
    """
    migrations = load_migrations()
    applied: list[str] = []
    async with connection(pool_or_conn) as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY, timeout=timeout)
        try:
            async with conn.transaction():
                await conn.execute(BECOME_OWNER_SQL)
                await conn.execute(
                    """
                    CREATE TABLE IF NOT EXISTS schema_migrations (
                        name       text PRIMARY KEY,
                        checksum   text NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now()
                    )
                    """,
                    timeout=timeout,
                )
                rows = await conn.fetch(
                    "SELECT name, checksum FROM schema_migrations", timeout=timeout
                )
            done = {row["name"]: row["checksum"] for row in rows}
            for migration in migrations:
                if migration.name in done:
                    if done[migration.name] != migration.checksum:
                        logger.warning(
                            "applied migration differs from the packaged file",
                            extra={"migration": migration.name},
                        )
                    continue
                logger.info("applying migration", extra={"migration": migration.name})
                async with conn.transaction():
                    await conn.execute(BECOME_OWNER_SQL)
                    try:
                        await conn.execute(migration.sql, timeout=timeout)
                    except Exception as exc:
                        raise RuntimeError(f"migration {migration.name} failed: {exc}") from exc
                    await conn.execute(
                        "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)",
                        migration.name,
                        migration.checksum,
                        timeout=timeout,
                    )
                applied.append(migration.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    if applied and hasattr(pool_or_conn, "expire_connections"):
        await pool_or_conn.expire_connections()
    return applied


async def pending_migrations(
    pool_or_conn: PoolOrConnection, *, timeout: float | None = 30.0
) -> list[str]:
    """Names of packaged migrations not yet applied (for ``/readyz`` or a CLI check)."""
    async with connection(pool_or_conn) as conn:
        exists = await conn.fetchval(
            "SELECT to_regclass('schema_migrations') IS NOT NULL", timeout=timeout
        )
        done: set[str] = set()
        if exists:
            async with conn.transaction():
                await conn.execute(BECOME_OWNER_SQL)
                done = {
                    r["name"]
                    for r in await conn.fetch("SELECT name FROM schema_migrations", timeout=timeout)
                }
    return [m.name for m in load_migrations() if m.name not in done]
