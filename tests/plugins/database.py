"""Real PostgreSQL for tests: the server named by ``AETHERMIND_TEST_DATABASE_URL``, else an
embedded one started once per session in a temp dir. The schema is migrated once into a
template database; each test that asks for ``database_url`` or ``pool`` gets a fresh copy
(``CREATE DATABASE ... TEMPLATE``), so tests never see each other's rows.

Fixtures: ``reachable_tmp_path`` (a temp dir the embedded server's OS user can enter, for
tests that start their own server: as root, pytest's own temp dirs are private to root),
``postgres_admin_url`` (session: the server's maintenance database, for tests
that create databases themselves), ``database_url`` (a fresh migrated database), ``pool``
(an ``asyncpg.Pool`` on it, connections running as the application role),
``empty_database_url`` (a fresh database with no schema, for migration tests).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from aethermind.storage.config import DatabaseConfig
from aethermind.storage.database import Database
from aethermind.storage.embedded import EmbeddedPostgres
from aethermind.storage.migrate import migrate

ENV_TEST_DATABASE_URL = "AETHERMIND_TEST_DATABASE_URL"

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, in a thread with its own loop, so it
    works whether or not the caller already has a running loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(asyncio.run, coro).result()


def with_database(url: str, database: str) -> str:
    """``url`` pointing at another database on the same server."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


async def _admin(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.contextmanager
def reachable_temp_dir() -> Iterator[Path]:
    """A fresh directory under the system temp dir that others may enter but not list
    (0711), removed afterwards: an embedded server run as its own OS user can live in it."""
    directory = Path(tempfile.mkdtemp(prefix="aethermind-test-"))
    directory.chmod(0o711)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def reachable_tmp_path() -> Iterator[Path]:
    with reachable_temp_dir() as directory:
        yield directory


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    url = os.environ.get(ENV_TEST_DATABASE_URL)
    if url:
        yield url
        return
    with reachable_temp_dir() as directory:
        server = EmbeddedPostgres(directory / "data")
        server.start_sync(timeout=120)
        try:
            yield server.dsn()
        finally:
            server.stop_sync(timeout=60)


@pytest.fixture(scope="session")
def template_database(postgres_admin_url: str) -> Iterator[str]:
    """Name of a database with every migration applied, used as a CREATE DATABASE template."""
    name = f"aethermind_tmpl_{uuid.uuid4().hex[:12]}"
    run_async(_admin(postgres_admin_url, f'CREATE DATABASE "{name}"'))

    async def _migrate() -> None:
        conn = await asyncpg.connect(with_database(postgres_admin_url, name))
        try:
            await migrate(conn)
        finally:
            await conn.close()

    run_async(_migrate())
    try:
        yield name
    finally:
        run_async(_admin(postgres_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _fresh_database(admin_url: str, template: str | None) -> Iterator[str]:
    name = f"aethermind_test_{uuid.uuid4().hex[:12]}"
    clause = f' TEMPLATE "{template}"' if template else ""
    run_async(_admin(admin_url, f'CREATE DATABASE "{name}"{clause}'))
    try:
        yield with_database(admin_url, name)
    finally:
        run_async(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def database_url(postgres_admin_url: str, template_database: str) -> Iterator[str]:
    """URL of a fresh, fully migrated database, dropped after the test."""
    yield from _fresh_database(postgres_admin_url, template_database)


@pytest.fixture
def empty_database_url(postgres_admin_url: str) -> Iterator[str]:
    """URL of a fresh database with no schema at all, dropped after the test."""
    yield from _fresh_database(postgres_admin_url, None)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[Any]:
    """An ``asyncpg.Pool`` on a fresh migrated database, as the server would open it."""
    config = DatabaseConfig(database_url=database_url, min_pool_size=1, max_pool_size=4)
    async with Database(config) as opened:
        yield opened
