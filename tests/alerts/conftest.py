"""Fixtures for the budget alert tests: a webhook server standing in for Slack (records every
POST, answers from a script), an injected clock and sleep, and a way to spend money."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from aethermind.receiver.alerts import CheckResult, RetryPolicy, check_budgets
from aethermind.storage.span_row import TelemetryRow
from aethermind.storage.tenants import Organization, create_organization
from aethermind.storage.writer import write_rows
from tests.plugins.services import free_port

# Slack puts the webhook's secret token in the path; tests check it never leaks.
SECRET_PATH = "/services/T0AETHER/B0MIND/s3cr3t-t0ken-never-logged"
MARCH = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)

# Small pauses keep tests fast; the failed-round pause is checked against the fake clock.
FAST = RetryPolicy(
    max_attempts=3,
    timeout_seconds=2.0,
    backoff_base_seconds=0.01,
    backoff_max_seconds=0.05,
    failed_retry_seconds=60.0,
    failed_retry_max_seconds=600.0,
)


@dataclass
class Call:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Reply:
    status: int = 200
    text: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)


class Webhook:
    """Records each POST; answers with the scripted replies first, then ``200 ok``. With
    ``hold`` set, a request is recorded and then left waiting until the event is set."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.script: list[Reply] = []
        self.hold: asyncio.Event | None = None
        self.delay = 0.0
        self.base_url = ""

    def url(self, path: str = SECRET_PATH) -> str:
        return self.base_url + path

    def fail(self, times: int, status: int = 503, text: str = "try later", **headers: str) -> None:
        self.script.extend(Reply(status, text, dict(headers)) for _ in range(times))

    @property
    def texts(self) -> list[str]:
        return [c.body["text"] for c in self.calls]

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append(Call(request.path, dict(request.headers), await request.json()))
        if self.hold is not None:
            await self.hold.wait()
        await asyncio.sleep(self.delay)
        reply = self.script.pop(0) if self.script else Reply()
        return web.Response(status=reply.status, text=reply.text, headers=reply.headers)


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    hook = Webhook()
    app = web.Application()
    app.router.add_post("/{tail:.*}", hook.handle)
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    hook.base_url = str(server.make_url("")).rstrip("/")
    try:
        yield hook
    finally:
        if hook.hold is not None:
            hook.hold.set()
        await server.close()


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Sleeps:
    """An injected ``sleep`` that records the pauses instead of waiting them."""

    def __init__(self) -> None:
        self.pauses: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> Clock:
    return Clock(MARCH)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


Check = Callable[..., Awaitable[CheckResult]]


@pytest.fixture
def check(pool: Any, clock: Clock, sleeps: Sleeps) -> Check:
    """One alert check on ``pool`` (or ``on=`` another replica's pool) at the fake clock."""

    async def run(*, on: Any = None, policy: RetryPolicy = FAST) -> CheckResult:
        return await check_budgets(
            on if on is not None else pool,
            policy=policy,
            clock=clock,
            sleep=sleeps,
            rng=random.Random(7),
        )

    return run


@pytest.fixture
async def acme(pool: Any) -> Organization:
    return await create_organization(pool, "Acme", slug="acme")


async def spend(
    pool: Any,
    organization_id: UUID,
    usd: str,
    at: datetime,
    *,
    unpriced: int = 0,
    user: str | None = None,
    tags: dict[str, str | None] | None = None,
) -> None:
    """Store one priced LLM call costing ``usd`` at ``at`` (and ``unpriced`` calls with no
    known price), for ``user`` with ``tags`` if given, through the real writer so the
    rollups are what production has."""
    rows = [
        TelemetryRow(
            trace_id=uuid4().hex,
            span_id=uuid4().hex[:16],
            name="chat gpt-4o",
            timestamp=at,
            provider="openai",
            operation="chat",
            request_model="gpt-4o",
            input_tokens=1000,
            output_tokens=100,
            total_tokens=1100,
            cost=Decimal(usd) if i == 0 else None,
            cost_source="computed" if i == 0 else "unknown",
            user_id=user,
            tags=tags,
        )
        for i in range(1 + unpriced)
    ]
    await write_rows(pool, organization_id, rows)
