"""Tenant isolation through the HTTP interface, and rate limits shared through Redis."""

from __future__ import annotations

import asyncio

from aethermind.receiver.state import LIMITER
from tests.plugins.receiver import ReceiverFactory, RunningReceiver
from tests.plugins.services import RedisServer
from tests.receiver.helpers import (
    JSON,
    PROTOBUF,
    llm_spans,
    otlp_json_body,
    otlp_json_span,
    protobuf_body,
)


async def test_organizations_never_see_or_write_each_others_rows(receiver: RunningReceiver) -> None:
    acme, globex = receiver.acme, receiver.globex
    await receiver.session.post(
        receiver.traces_url, data=protobuf_body(llm_spans(3, service="acme-app")),
        headers=acme.ingest_headers(**{"Content-Type": PROTOBUF}),
    )  # fmt: skip
    # A body naming the other organization's id (as a resource or span attribute) changes
    # nothing: the organization is always the key's.
    spoof = otlp_json_span(
        attributes=[
            {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
            {"key": "organization_id", "value": {"stringValue": str(acme.id)}},
        ]
    )
    await receiver.session.post(
        receiver.traces_url, data=otlp_json_body([spoof], service="globex-app"),
        headers=globex.ingest_headers(**{"Content-Type": JSON}),
    )  # fmt: skip
    assert await receiver.count_rows(acme) == 3
    assert await receiver.count_rows(globex) == 1

    for tenant, service, calls in ((acme, "acme-app", 3), (globex, "globex-app", 1)):
        response = await receiver.session.get(
            f"{receiver.url}/v1/aggregates",
            params={"group_by": "service", "organization_id": str(acme.id)},
            headers=tenant.read_headers(),
        )
        assert response.status == 400  # an organization parameter is refused, not obeyed
        response = await receiver.session.get(
            f"{receiver.url}/v1/aggregates",
            params={"group_by": "service", "from": "2025-01-01T00:00:00Z"},
            headers=tenant.read_headers(),
        )
        rows = (await response.json())["rows"]
        assert [(r["service"], r["calls"]) for r in rows] == [(service, calls)]

    # One organization's trace id is not found through the other's key.
    (acme_row, *_) = await receiver.rows(acme)
    trace_url = f"{receiver.url}/v1/traces/{acme_row['trace_id']}"
    assert (await receiver.session.get(trace_url, headers=globex.read_headers())).status == 404
    mine = await receiver.session.get(trace_url, headers=acme.read_headers())
    assert mine.status == 200
    assert len((await mine.json())["spans"]) == 1


async def test_rate_limit_through_redis_is_shared_by_two_replicas(
    receiver_factory: ReceiverFactory, redis_url: str
) -> None:
    first = await receiver_factory(redis_url=redis_url)
    second = await receiver_factory(redis_url=redis_url)
    headers = first.globex.ingest_headers(**{"Content-Type": PROTOBUF})
    ok = await first.session.post(
        first.traces_url, data=protobuf_body(llm_spans(400)), headers=headers
    )
    assert ok.status == 200
    # globex's 600 spans a minute are spent across replicas: the second one refuses the rest.
    refused = await second.session.post(
        second.traces_url, data=protobuf_body(llm_spans(300)), headers=headers
    )
    assert refused.status == 429
    assert refused.headers["X-RateLimit-Limit"] == "600"
    assert not second.app[LIMITER].using_fallback


async def test_redis_going_away_falls_back_to_the_local_limit(
    receiver_factory: ReceiverFactory, private_redis: RedisServer
) -> None:
    receiver = await receiver_factory(redis_url=private_redis.url)
    headers = receiver.acme.ingest_headers(**{"Content-Type": PROTOBUF})
    assert (
        await receiver.session.post(
            receiver.traces_url, data=protobuf_body(llm_spans(5)), headers=headers
        )
    ).status == 200
    private_redis.stop()
    await asyncio.sleep(0.1)
    response = await receiver.session.post(
        receiver.traces_url, data=protobuf_body(llm_spans(5)), headers=headers
    )
    assert response.status == 200  # ingestion goes on, limited in-process
    assert receiver.app[LIMITER].using_fallback
    metrics = await (await receiver.session.get(f"{receiver.url}/metrics")).text()
    assert "aethermind_rate_limit_local_fallback 1.0" in metrics
    assert await receiver.count_rows(receiver.acme) == 10
