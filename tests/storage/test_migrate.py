"""Migrations: applied once, safe to run twice and from two replicas at once."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from aethermind.storage.migrate import load_migrations, migrate, pending_migrations
from aethermind.storage.span_row import COLUMNS, PG_TYPES, TRACE_DECIDED_COLUMNS


async def test_migrate_applies_everything_once_then_nothing(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert await pending_migrations(conn) == [m.name for m in load_migrations()]
        first = await migrate(conn)
        assert first == [m.name for m in load_migrations()]
        assert await migrate(conn) == []
        assert await pending_migrations(conn) == []
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(first)
    finally:
        await conn.close()


async def test_two_migrators_at_once_apply_each_migration_exactly_once(
    empty_database_url: str,
) -> None:
    conns = [await asyncpg.connect(empty_database_url) for _ in range(2)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        names = [m.name for m in load_migrations()]
        assert sorted(results, key=len) == [[], names]
        assert await conns[0].fetchval("SELECT count(*) FROM schema_migrations") == len(names)
    finally:
        for c in conns:
            await c.close()


def test_migration_files_are_numbered_and_ordered() -> None:
    names = [m.name for m in load_migrations()]
    assert names == sorted(names)
    assert names[0] == "0001_schema"


async def test_the_stored_span_declaration_is_the_tables_columns(pool: Any) -> None:
    """``span_row.TelemetryRow`` owns the columns: the migrations must have made exactly
    those, of those types (besides the id, the tenant and the generated model column, which
    the writer never fills), and the columns the writer decides from the whole trace. Order
    is free: every statement names its columns."""
    rows = await pool.fetch(
        """SELECT column_name, udt_name FROM information_schema.columns
            WHERE table_schema = current_schema() AND table_name = 'telemetry_events'
            ORDER BY ordinal_position"""
    )
    table = [(r["column_name"], r["udt_name"]) for r in rows]
    filled = [c for c in table if c[0] not in {"id", "organization_id", "model"}]
    assert sorted(filled) == sorted([
        *((name, PG_TYPES[name]) for name in COLUMNS),
        *((name, "bool") for name in TRACE_DECIDED_COLUMNS),
    ])  # fmt: skip
    assert {"id", "organization_id", "model"} <= {name for name, _ in table}
