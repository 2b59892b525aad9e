"""The one owner of the connection pool (and of the embedded server when no URL is given):
``async with Database(config) as pool: ...``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from types import TracebackType
from typing import Any

import asyncpg
import orjson

from aethermind.storage.config import DatabaseConfig
from aethermind.storage.embedded import EmbeddedPostgres
from aethermind.storage.scope import APP_ROLE, Connection

logger = logging.getLogger(__name__)

SERVER_SETTINGS = {
    "application_name": "aethermind",
    # Our queries are short; JIT compilation costs more than it saves on them.
    "jit": "off",
}


_JSONB_VERSION = b"\x01"  # jsonb's binary wire format: a version byte, then JSON text


def _json_encode(value: Any) -> bytes:
    # orjson is several times faster than json on the writer's hot path (two documents per
    # span); json remains the fallback for what orjson refuses (ints beyond 64 bits).
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(value, separators=(",", ":"), default=str).encode()


def _jsonb_encode(value: Any) -> bytes:
    return _JSONB_VERSION + _json_encode(value)


def _jsonb_decode(data: bytes) -> Any:
    return orjson.loads(data[1:])


async def init_connection(conn: Connection) -> None:
    """Prepare a new pool connection: JSON codecs, and the application role.

    ``SET ROLE aethermind_app`` (when the role exists, i.e. after the first migration)
    makes row-level security apply even when the URL logs in as a superuser or as the
    table owner, both of which RLS otherwise exempts. asyncpg's ``RESET ALL`` on release
    keeps the role (``role`` is not reset by RESET ALL).
    """
    # Binary format, so jsonb also works in COPY (binary-only in asyncpg).
    await conn.set_type_codec(
        "jsonb", encoder=_jsonb_encode, decoder=_jsonb_decode, schema="pg_catalog", format="binary"
    )
    await conn.set_type_codec(
        "json", encoder=_json_encode, decoder=json.loads, schema="pg_catalog", format="binary"
    )
    can_use_role = await conn.fetchval(
        """
        SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)
           AND (pg_has_role(session_user, $1, 'MEMBER')
                OR (SELECT rolsuper FROM pg_roles WHERE rolname = session_user))
        """,
        APP_ROLE,
    )
    if can_use_role:
        await conn.execute(f"SET ROLE {APP_ROLE}")


class RowLevelSecurityError(RuntimeError):
    """The pool's connections would not run as the role row-level security applies to."""


async def require_app_role(pool: Any, *, timeout: float | None = 10.0) -> None:
    """Make every pool connection run as ``aethermind_app``, or refuse.

    Connections opened before a migration created the role (another replica's, say) run as
    the login role, which may own the tables and so bypass row-level security: they are
    expired here, so each is set up again, and a fresh one must then be the application
    role. A server that cannot switch to it fails closed instead of serving unscoped."""
    await pool.expire_connections()
    async with pool.acquire(timeout=timeout) as conn:
        role = await conn.fetchval("SELECT current_user", timeout=timeout)
    if role != APP_ROLE:
        raise RowLevelSecurityError(
            f"database connections run as {role!r}, not {APP_ROLE!r}, so row-level security "
            f"would not scope them to one organization: refusing to serve. Run the "
            f"migrations (`aethermind migrate`) as a role that can create {APP_ROLE!r} and "
            f"grant it to the login role."
        )


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    connect_timeout: float = 10.0,
    command_timeout: float | None = 60.0,
) -> Any:
    """An ``asyncpg.Pool`` whose connections are set up by ``init_connection``."""
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        timeout=connect_timeout,
        command_timeout=command_timeout,
        init=init_connection,
        server_settings=SERVER_SETTINGS,
    )


class Database:
    """Owns the pool, and the embedded server when ``config.database_url`` is None.

    Use as ``async with Database(config) as pool`` or call ``open()`` / ``close()``.
    Closing is idempotent. The embedded server is stopped only if this object started it.
    """

    def __init__(self, config: DatabaseConfig) -> None:
        self.config = config
        self._embedded: EmbeddedPostgres | None = None
        self._pool: Any = None
        self._dsn: str | None = None

    @property
    def pool(self) -> Any:
        if self._pool is None:
            raise RuntimeError("Database is not open")
        return self._pool

    @property
    def dsn(self) -> str:
        """The URL in use (for the embedded server, its unix-socket URL)."""
        if self._dsn is None:
            raise RuntimeError("Database is not open")
        return self._dsn

    @property
    def embedded(self) -> EmbeddedPostgres | None:
        """The embedded server handle, or None when a URL was configured."""
        return self._embedded

    async def open(self, *, timeout: float | None = None) -> Any:
        if self._pool is not None:
            return self._pool
        cfg = self.config
        if cfg.database_url is None:
            self._embedded = EmbeddedPostgres(cfg.data_dir)
            self._dsn = await self._embedded.start(timeout=timeout or cfg.embedded_start_timeout)
            logger.info(
                "using embedded PostgreSQL",
                extra={"data_dir": str(cfg.data_dir), "started_here": self._embedded.started_here},
            )
        else:
            self._dsn = cfg.database_url
        try:
            self._pool = await create_pool(
                self._dsn,
                min_size=cfg.min_pool_size,
                max_size=cfg.max_pool_size,
                connect_timeout=timeout or cfg.connect_timeout,
                command_timeout=cfg.command_timeout,
            )
        except BaseException:
            await self._stop_embedded(timeout=timeout)
            raise
        return self._pool

    async def close(self, *, timeout: float = 30.0) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                # close() waits for borrowed connections to come back; bound the wait.
                await asyncio.wait_for(pool.close(), timeout)
            except (TimeoutError, Exception):
                logger.warning("pool close failed or timed out; terminating", exc_info=True)
                pool.terminate()
        await self._stop_embedded(timeout=timeout)

    async def _stop_embedded(self, *, timeout: float | None) -> None:
        embedded, self._embedded = self._embedded, None
        if embedded is not None:
            await embedded.stop(timeout=timeout or 30.0)

    async def __aenter__(self) -> Any:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
