"""Storage going away: the receiver answers 503 with Retry-After (clients retry), recovers by
itself when the database is back, and nothing acknowledged is lost or doubled."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from aethermind.receiver.app import create_app
from aethermind.storage.config import DatabaseConfig
from aethermind.storage.database import Database
from aethermind.storage.embedded import EmbeddedPostgres
from aethermind.storage.migrate import migrate
from aethermind.storage.scope import tenant_transaction
from tests.plugins.receiver import TEST_CONFIG, make_tenant
from tests.receiver.helpers import PROTOBUF, llm_spans, protobuf_body

pytestmark = pytest.mark.slow  # see pyproject.toml: a subprocess, a browser or a fuzzer


async def test_database_stopped_then_restarted_loses_and_doubles_nothing(
    reachable_tmp_path: Path,
) -> None:
    server = EmbeddedPostgres(reachable_tmp_path / "db")
    dsn = await server.start()
    database = Database(DatabaseConfig(database_url=dsn, max_pool_size=4, connect_timeout=2))
    pool = await database.open()
    try:
        await migrate(pool)
        tenant = await make_tenant(pool, "acme")

        @contextlib.asynccontextmanager
        async def provide() -> AsyncIterator[Any]:
            yield pool

        app = create_app(
            replace(
                TEST_CONFIG, write_timeout_seconds=3, auth_timeout_seconds=3, retry_after_seconds=1
            ),
            provide,
        )
        async with TestServer(app, host="127.0.0.1") as test_server, ClientSession() as session:
            url = str(test_server.make_url("/v1/traces"))
            headers = tenant.ingest_headers(**{"Content-Type": PROTOBUF})
            before, during = protobuf_body(llm_spans(50)), protobuf_body(llm_spans(70))
            assert (await session.post(url, data=before, headers=headers)).status == 200

            await server.stop()
            refused = await session.post(url, data=during, headers=headers)
            assert refused.status == 503
            assert refused.headers["Retry-After"] == "1"
            ready = await session.get(str(test_server.make_url("/readyz")))
            assert ready.status == 503

            await server.start()
            # What a real exporter does next: retry the refused batch (and, being unsure,
            # maybe the acknowledged one too).
            statuses = []
            for _ in range(20):
                response = await session.post(url, data=during, headers=headers)
                statuses.append(response.status)
                if response.status == 200:
                    break
            assert statuses[-1] == 200
            assert (await session.post(url, data=before, headers=headers)).status == 200
            assert (await session.get(str(test_server.make_url("/readyz")))).status == 200

        async with tenant_transaction(pool, tenant.id) as conn:
            stored = await conn.fetchval("SELECT count(*) FROM telemetry_events")
            calls = await conn.fetchval("SELECT sum(calls) FROM usage_rollup_hourly")
        assert (stored, calls) == (120, 120)
    finally:
        await database.close()
        await server.stop()
