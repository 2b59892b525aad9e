"""A running receiver for tests: the real aiohttp application on a real port, on a fresh
migrated database, with two organizations and their keys.

Fixtures: ``receiver`` (a ``RunningReceiver``), and ``receiver_factory`` to start one with
another ``ReceiverConfig``. Real clients (the OTel OTLP exporters, aiohttp, requests) talk to
``receiver.url`` over HTTP.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from aethermind.receiver.app import create_app
from aethermind.receiver.config import ReceiverConfig
from aethermind.receiver.grpc_server import grpc_serving
from aethermind.storage.tenants import Organization, create_key, create_organization


@dataclass
class Tenant:
    organization: Organization
    ingest_key: str
    read_key: str

    @property
    def id(self) -> Any:
        return self.organization.id

    def ingest_headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.ingest_key}", **extra}

    def read_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.read_key}"}


@dataclass
class RunningReceiver:
    url: str
    pool: Any
    server: TestServer
    acme: Tenant
    globex: Tenant
    session: ClientSession
    extra: dict[str, Any] = field(default_factory=dict)
    grpc_target: str = ""
    """``127.0.0.1:PORT`` of the OTLP/gRPC server, when started with ``grpc=True``."""

    @property
    def traces_url(self) -> str:
        return f"{self.url}/v1/traces"

    @property
    def app(self) -> web.Application:
        return self.server.app

    async def count_rows(self, tenant: Tenant) -> int:
        from aethermind.storage.scope import tenant_transaction

        async with tenant_transaction(self.pool, tenant.id) as conn:
            count: int = await conn.fetchval("SELECT count(*) FROM telemetry_events")
        return count

    async def rows(self, tenant: Tenant) -> list[dict[str, Any]]:
        from aethermind.storage.scope import tenant_transaction

        async with tenant_transaction(self.pool, tenant.id) as conn:
            records = await conn.fetch(
                'SELECT * FROM telemetry_events ORDER BY "timestamp", span_id'
            )
        return [dict(r) for r in records]


async def make_tenant(pool: Any, slug: str, **org_options: Any) -> Tenant:
    org = await create_organization(pool, slug.title(), slug=slug, **org_options)
    _, ingest = await create_key(pool, org.id, ["ingest"], name="ingest")
    _, read = await create_key(pool, org.id, ["read"], name="read")
    return Tenant(org, ingest, read)


# Small defaults keep tests fast and make limits reachable; tests override what they probe.
TEST_CONFIG = ReceiverConfig(host="127.0.0.1", port=4318, grpc_port=0)

ReceiverFactory = Callable[..., Awaitable[RunningReceiver]]


@pytest.fixture
async def receiver_factory(pool: Any) -> AsyncIterator[ReceiverFactory]:
    stack = contextlib.AsyncExitStack()
    tenants: dict[str, Tenant] = {}

    async def start(
        config: ReceiverConfig | None = None, *, grpc: bool = False, **changes: Any
    ) -> RunningReceiver:
        """A receiver on a free port; with ``grpc``, its OTLP/gRPC server too (on another)."""
        cfg = replace(config or TEST_CONFIG, **changes)
        if not tenants:
            tenants["acme"] = await make_tenant(pool, "acme")
            tenants["globex"] = await make_tenant(pool, "globex", rate_limit_per_min=600)

        @contextlib.asynccontextmanager
        async def provide_pool() -> AsyncIterator[Any]:
            yield pool

        server = TestServer(create_app(cfg, provide_pool), host="127.0.0.1")
        await server.start_server()
        stack.push_async_callback(server.close)
        grpc_port = None
        if grpc:
            grpc_port = await stack.enter_async_context(grpc_serving(server.app, cfg, bind_port=0))
        session = ClientSession()
        stack.push_async_callback(session.close)
        return RunningReceiver(
            url=str(server.make_url("")).rstrip("/"),
            pool=pool,
            server=server,
            acme=tenants["acme"],
            globex=tenants["globex"],
            session=session,
            grpc_target=f"127.0.0.1:{grpc_port}" if grpc_port else "",
        )

    try:
        yield start
    finally:
        await stack.aclose()


@pytest.fixture
async def receiver(receiver_factory: ReceiverFactory) -> RunningReceiver:
    return await receiver_factory()
