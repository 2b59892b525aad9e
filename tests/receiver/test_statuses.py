"""Every status the contract lists for POST /v1/traces, each with the body the OTLP spec asks
for (a google.rpc.Status in the request's encoding) and the headers clients act on."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator

from google.rpc import status_pb2

from aethermind.receiver.state import ADMISSION
from aethermind.storage.tenants import create_key, revoke_key
from tests.plugins.receiver import ReceiverFactory, RunningReceiver
from tests.receiver.helpers import (
    JSON,
    PROTOBUF,
    llm_spans,
    otlp_json_body,
    otlp_json_span,
    protobuf_body,
)


async def test_400_for_an_undecodable_body_with_a_status_in_protobuf(
    receiver: RunningReceiver,
) -> None:
    response = await receiver.session.post(
        receiver.traces_url,
        data=b"\xff\xff\xff\x0f garbage",
        headers=receiver.acme.ingest_headers(**{"Content-Type": PROTOBUF}),
    )
    assert response.status == 400
    assert response.headers["Content-Type"] == PROTOBUF
    status = status_pb2.Status.FromString(await response.read())
    assert status.message


async def test_400_for_broken_json_and_corrupt_gzip(receiver: RunningReceiver) -> None:
    for data, headers in (
        (b'{"resourceSpans": [', {"Content-Type": JSON}),
        (b"\x1f\x8b\x08\x00garbage", {"Content-Type": JSON, "Content-Encoding": "gzip"}),
    ):
        response = await receiver.session.post(
            receiver.traces_url, data=data, headers=receiver.acme.ingest_headers(**headers)
        )
        assert response.status == 400
        assert (await response.json())["message"]


async def test_401_without_a_key_or_with_an_unknown_one(receiver: RunningReceiver) -> None:
    body = protobuf_body(llm_spans(1))
    for headers in (
        {},
        {"Authorization": "Bearer aether_nosuchid0000_secret"},
        {"x-api-key": "not-even-a-key"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ):
        response = await receiver.session.post(
            receiver.traces_url, data=body, headers={"Content-Type": PROTOBUF, **headers}
        )
        assert response.status == 401, headers
    assert await receiver.count_rows(receiver.acme) == 0


async def test_x_api_key_header_works_like_bearer(receiver: RunningReceiver) -> None:
    response = await receiver.session.post(
        receiver.traces_url,
        data=protobuf_body(llm_spans(1)),
        headers={"Content-Type": PROTOBUF, "x-api-key": receiver.acme.ingest_key},
    )
    assert response.status == 200


async def test_403_for_a_read_only_key_and_for_a_revoked_key(receiver: RunningReceiver) -> None:
    body = protobuf_body(llm_spans(1))
    read_only = await receiver.session.post(
        receiver.traces_url,
        data=body,
        headers={"Content-Type": PROTOBUF, "Authorization": f"Bearer {receiver.acme.read_key}"},
    )
    assert read_only.status == 403
    key, full_key = await create_key(receiver.pool, receiver.acme.id, ["ingest"], name="doomed")
    headers = {"Content-Type": PROTOBUF, "Authorization": f"Bearer {full_key}"}
    assert (
        await receiver.session.post(receiver.traces_url, data=body, headers=headers)
    ).status == 200
    await revoke_key(receiver.pool, key.id)
    # Revocation reaches the key cache through LISTEN/NOTIFY; the contract allows 5 seconds.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    status = 200
    while loop.time() < deadline:
        status = (
            await receiver.session.post(receiver.traces_url, data=body, headers=headers)
        ).status
        if status == 403:
            break
        await asyncio.sleep(0.1)
    assert status == 403


async def test_413_for_a_body_over_the_limit_even_when_it_only_grows_after_inflating(
    receiver_factory: ReceiverFactory,
) -> None:
    receiver = await receiver_factory(max_body_bytes=64 * 1024)
    big = protobuf_body(llm_spans(400))
    assert len(big) > 64 * 1024
    response = await receiver.session.post(
        receiver.traces_url,
        data=big,
        headers=receiver.acme.ingest_headers(**{"Content-Type": PROTOBUF}),
    )
    assert response.status == 413
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))  # 50 MiB of zeros in about 50 KiB
    assert len(bomb) < 64 * 1024
    response = await receiver.session.post(
        receiver.traces_url,
        data=bomb,
        headers=receiver.acme.ingest_headers(
            **{"Content-Type": PROTOBUF, "Content-Encoding": "gzip"}
        ),
    )
    assert response.status == 413
    deflated = zlib.compress(b"\0" * (10 * 1024 * 1024))
    response = await receiver.session.post(
        receiver.traces_url,
        data=deflated,
        headers=receiver.acme.ingest_headers(
            **{"Content-Type": PROTOBUF, "Content-Encoding": "deflate"}
        ),
    )
    assert response.status == 413


async def test_415_for_other_content_types_with_a_json_status(receiver: RunningReceiver) -> None:
    response = await receiver.session.post(
        receiver.traces_url,
        data=b"hello",
        headers=receiver.acme.ingest_headers(**{"Content-Type": "text/plain"}),
    )
    assert response.status == 415
    assert response.headers["Content-Type"] == JSON
    assert "message" in await response.json()


async def test_429_with_retry_after_when_the_organization_is_over_its_limit(
    receiver: RunningReceiver,
) -> None:
    # globex is limited to 600 spans a minute, with a burst of one minute's worth.
    headers = receiver.globex.ingest_headers(**{"Content-Type": PROTOBUF})
    first = await receiver.session.post(
        receiver.traces_url, data=protobuf_body(llm_spans(500)), headers=headers
    )
    assert first.status == 200
    assert (
        first.headers.get("X-RateLimit-Limit") is None
        or first.headers["X-RateLimit-Limit"] == "600"
    )
    second = await receiver.session.post(
        receiver.traces_url, data=protobuf_body(llm_spans(200)), headers=headers
    )
    assert second.status == 429
    assert int(second.headers["Retry-After"]) >= 1
    assert second.headers["X-RateLimit-Limit"] == "600"
    assert int(second.headers["X-RateLimit-Remaining"]) < 200  # 100 left, plus the refill meanwhile
    status = status_pb2.Status.FromString(await second.read())
    assert "rate limit" in status.message
    assert await receiver.count_rows(receiver.globex) == 500
    # acme's bucket is its own: globex being throttled does not touch it.
    other = await receiver.session.post(
        receiver.traces_url,
        data=protobuf_body(llm_spans(200)),
        headers=receiver.acme.ingest_headers(**{"Content-Type": PROTOBUF}),
    )
    assert other.status == 200


async def test_503_with_retry_after_at_once_when_saturated(
    receiver_factory: ReceiverFactory,
) -> None:
    receiver = await receiver_factory(max_inflight_requests=1)
    release = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b"\x0a"  # a request that has started but whose body is still coming
        await release.wait()
        yield b"\x00"

    slow = asyncio.create_task(
        receiver.session.post(
            receiver.traces_url,
            data=slow_body(),
            headers=receiver.acme.ingest_headers(**{"Content-Type": PROTOBUF}),
        )
    )
    for _ in range(100):
        if receiver.app[ADMISSION].inflight:
            break
        await asyncio.sleep(0.02)
    assert receiver.app[ADMISSION].inflight == 1
    started = asyncio.get_running_loop().time()
    response = await receiver.session.post(
        receiver.traces_url,
        data=protobuf_body(llm_spans(1)),
        headers=receiver.acme.ingest_headers(**{"Content-Type": PROTOBUF}),
    )
    assert response.status == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert asyncio.get_running_loop().time() - started < 5  # refused, not queued
    release.set()
    assert (await slow).status == 200


async def test_failed_authentication_is_throttled_per_client_and_key_id(
    receiver_factory: ReceiverFactory,
) -> None:
    receiver = await receiver_factory(auth_max_failures_per_minute=5)
    bad = {"Content-Type": PROTOBUF, "Authorization": f"Bearer aether_nosuchid0000_{'s' * 43}"}
    statuses = [
        (await receiver.session.post(receiver.traces_url, data=b"", headers=bad)).status
        for _ in range(7)
    ]
    assert statuses[:5] == [401] * 5
    assert statuses[5:] == [429, 429]
    # The same address with another key is not refused: only that pair failed.
    other_bad = {
        "Content-Type": PROTOBUF,
        "Authorization": f"Bearer aether_otherid00000_{'s' * 43}",
    }
    response = await receiver.session.post(receiver.traces_url, data=b"", headers=other_bad)
    assert response.status == 401
    valid = receiver.acme.ingest_headers(**{"Content-Type": PROTOBUF})
    response = await receiver.session.post(receiver.traces_url, data=b"", headers=valid)
    assert response.status == 200


async def test_json_partial_success_message_names_the_problem(receiver: RunningReceiver) -> None:
    spans = [otlp_json_span(start="0")]
    response = await receiver.session.post(
        receiver.traces_url,
        data=otlp_json_body(spans),
        headers=receiver.acme.ingest_headers(**{"Content-Type": JSON}),
    )
    body = await response.json()
    assert body["partialSuccess"]["rejectedSpans"] == "1"
    assert "time" in body["partialSuccess"]["errorMessage"]


async def test_the_root_redirects_to_the_dashboard(receiver: RunningReceiver) -> None:
    response = await receiver.session.get(receiver.url + "/", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "dashboard"
    followed = await receiver.session.get(receiver.url + "/")
    assert followed.status == 200 and str(followed.url).endswith("/dashboard")


async def test_unknown_routes_and_wrong_methods_answer_json_like_every_error(
    receiver: RunningReceiver,
) -> None:
    missing = await receiver.session.get(receiver.url + "/v1/nothing-here")
    assert missing.status == 404
    assert missing.content_type == "application/json"
    body = await missing.json()
    assert body["error"]["status"] == 404 and "/v1/nothing-here" in body["error"]["message"]

    wrong = await receiver.session.delete(receiver.url + "/v1/aggregates")
    assert wrong.status == 405
    assert wrong.content_type == "application/json"
    assert "GET" in wrong.headers["Allow"]
    body = await wrong.json()
    assert body["error"]["status"] == 405 and "GET" in body["error"]["message"]
