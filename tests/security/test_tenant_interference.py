"""One organization's traffic never changes another's numbers: attacks from issue 13 of 7
performed through the receiver on a real PostgreSQL, each checked from the victim's side."""

from __future__ import annotations

import asyncio
import gc
import re
import time
import tracemalloc
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.plugins.receiver import ReceiverFactory, RunningReceiver, Tenant
from tests.receiver.helpers import JSON, PROTOBUF, otlp_json_body, otlp_json_span, protobuf_body
from tests.storage.factories import owner_fetch

WRAPPER_SCOPE = "my-genai-wrapper"


def _spans(
    scope: str, attributes: dict[str, Any], resource: dict[str, Any] | None = None
) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(resource or {"service.name": "svc"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer(scope).start_as_current_span("generate") as span:
        span.set_attributes(attributes)
    provider.shutdown()
    return list(exporter.get_finished_spans())


async def _send(receiver: RunningReceiver, tenant: Tenant, spans: list[ReadableSpan]) -> None:
    response = await receiver.session.post(
        receiver.traces_url, data=protobuf_body(spans),
        headers=tenant.ingest_headers(**{"Content-Type": PROTOBUF}),
    )  # fmt: skip
    assert response.status == 200, await response.text()


GEMINI = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "gcp.gemini",
    "gen_ai.request.model": "gemini-2.5-flash",
    "gen_ai.usage.input_tokens": 2000,
    "gen_ai.usage.output_tokens": 1000,
    "gen_ai.usage.reasoning.output_tokens": 500,
}


async def test_one_organizations_scope_cannot_change_how_anothers_tokens_are_counted(
    receiver: RunningReceiver,
) -> None:
    # Gemini's output count leaves thoughts out, so a GenAI-convention span of 1000 output
    # and 500 reasoning tokens is 1500 output tokens. Organization A first sends, under the
    # same made-up scope name, a span spelled the OpenInference way (which counts thoughts
    # in): what that taught the normalizer must not leak into B's numbers.
    await _send(
        receiver, receiver.acme,
        _spans(WRAPPER_SCOPE, {**GEMINI, "openinference.span.kind": "LLM"}),
    )  # fmt: skip
    await _send(receiver, receiver.globex, _spans(WRAPPER_SCOPE, GEMINI))
    (row,) = await receiver.rows(receiver.globex)
    assert row["output_tokens"] == 1500
    assert row["total_tokens"] == 3500


async def test_content_in_resource_attributes_is_kept_only_for_organizations_that_opted_in(
    receiver: RunningReceiver,
) -> None:
    resource = {"service.name": "svc", "gen_ai.prompt": "a secret prompt in the resource"}
    chat = {**GEMINI, "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"}
    await _send(receiver, receiver.acme, _spans("tests", chat, resource))
    (row,) = await receiver.rows(receiver.acme)
    assert "gen_ai.prompt" not in row["resource_attributes"]
    assert row["resource_attributes"]["service.name"] == "svc"


async def test_an_admin_key_cannot_pile_up_overrides_or_costly_patterns(
    receiver: RunningReceiver,
) -> None:
    from aethermind.storage.prices import MAX_PRICE_OVERRIDES
    from aethermind.storage.tenants import create_key

    _, admin_key = await create_key(receiver.pool, receiver.acme.id, ["admin"], name="admin")
    headers = {"Authorization": f"Bearer {admin_key}"}

    async def add(pattern: str) -> Any:
        return await receiver.session.post(
            f"{receiver.url}/v1/prices", headers=headers,
            json={"model_pattern": pattern, "input_per_mtok": "1", "output_per_mtok": "2"},
        )  # fmt: skip

    # The pattern of the measured attack: hundreds of ? (fnmatch backtracking per span).
    refused = await add("?" * 150 + "*")
    assert refused.status == 400
    assert "only *" in (await refused.json())["error"]["message"]
    assert (await add("*a*b*c*")).status == 400
    for i in range(MAX_PRICE_OVERRIDES):
        assert (await add(f"house-model-{i}*")).status == 201
    over = await add("one-too-many")
    assert over.status == 400
    assert f"at most {MAX_PRICE_OVERRIDES}" in (await over.json())["error"]["message"]
    # Another organization is not affected by acme's count.
    _, globex_admin = await create_key(receiver.pool, receiver.globex.id, ["admin"])
    response = await receiver.session.post(
        f"{receiver.url}/v1/prices", headers={"Authorization": f"Bearer {globex_admin}"},
        json={"model_pattern": "mine", "input_per_mtok": "1", "output_per_mtok": "2"},
    )  # fmt: skip
    assert response.status == 201


def _otlp_span_at(start_unix_nano: int) -> dict[str, Any]:
    return otlp_json_span(start=str(start_unix_nano), end=str(start_unix_nano + 250_000_000))


async def _partitions(receiver: RunningReceiver) -> set[str]:
    rows = await owner_fetch(
        receiver.pool,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'telemetry_events'::regclass",
    )
    return {r["relname"] for r in rows}


async def test_spans_in_far_months_are_rejected_and_create_no_partitions(
    receiver: RunningReceiver,
) -> None:
    # The attack: one request whose spans start in hundreds of different months, from 1970
    # to 2262. Each new month would be a partition created under a lock on the shared table,
    # never dropped by retention, and every trace lookup would lock them all.
    month_ns = 31 * 86_400 * 10**9
    hostile = [_otlp_span_at(i * month_ns) for i in range(1, 3400, 7)]  # 1970 .. 2258
    partitions_before = await _partitions(receiver)
    response = await receiver.session.post(
        receiver.traces_url, data=otlp_json_body(hostile),
        headers=receiver.acme.ingest_headers(**{"Content-Type": JSON}),
    )  # fmt: skip
    assert response.status == 200
    partial = (await response.json())["partialSuccess"]
    in_window = sum(1 for s in hostile if _recent(int(s["startTimeUnixNano"])))
    assert int(partial["rejectedSpans"]) == len(hostile) - in_window
    assert "outside the accepted time window" in partial["errorMessage"]
    assert "30 days" in partial["errorMessage"]  # the FREE plan's retention
    assert await receiver.count_rows(receiver.acme) == in_window
    # At most the current month and its neighbours exist, whatever was sent.
    assert len(await _partitions(receiver) - partitions_before) <= 2
    metrics = await (await receiver.session.get(f"{receiver.url}/metrics")).text()
    rejected = len(hostile) - in_window
    assert f'aethermind_spans_rejected_total{{reason="out_of_window"}} {rejected}.0' in metrics

    # The other organization's spans, now and an hour ahead (clock skew), are stored.
    now = time.time_ns()
    response = await receiver.session.post(
        receiver.traces_url,
        data=otlp_json_body([_otlp_span_at(now - 10**9), _otlp_span_at(now + 3600 * 10**9)]),
        headers=receiver.globex.ingest_headers(**{"Content-Type": JSON}),
    )
    assert await response.json() == {}
    assert await receiver.count_rows(receiver.globex) == 2


def _recent(start_unix_nano: int) -> bool:
    now = time.time_ns()
    return now - 30 * 86_400 * 10**9 <= start_unix_nano <= now + 86_400 * 10**9


async def test_the_time_window_follows_retention_and_settings(
    receiver_factory: ReceiverFactory,
) -> None:
    receiver = await receiver_factory(max_span_age_days=2, max_span_future_seconds=60)
    now = time.time_ns()
    day = 86_400 * 10**9
    spans = [
        _otlp_span_at(now - 3 * day),  # older than the 2 days set
        _otlp_span_at(now - day),
        _otlp_span_at(now + 30 * 10**9),
        _otlp_span_at(now + 600 * 10**9),  # 10 minutes ahead, past the 60 s set
    ]
    response = await receiver.session.post(
        receiver.traces_url, data=otlp_json_body(spans),
        headers=receiver.acme.ingest_headers(**{"Content-Type": JSON}),
    )  # fmt: skip
    partial = (await response.json())["partialSuccess"]
    assert partial["rejectedSpans"] == "2"
    assert "2 days old" in partial["errorMessage"] and "60 s ahead" in partial["errorMessage"]
    assert await receiver.count_rows(receiver.acme) == 2
    # Plain JSON events obey the same window, and say so.
    response = await receiver.session.post(
        f"{receiver.url}/v1/ingest",
        json={"events": [{"model": "gpt-4o", "timestamp": (now - 3 * day) // 10**6}]},
        headers=receiver.acme.ingest_headers(),
    )
    body = await response.json()
    assert (body["accepted"], body["rejected"], body["stored"]) == (0, 1, 0)
    assert "outside the accepted time window" in body["errors"][0]


def _unique_model_spans(first: int, count: int) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    for i in range(first, first + count):
        name = f"{i:08d}-" + "m" * (8 * 1024 - 9)  # unique in its first characters
        with tracer.start_as_current_span("chat") as span:
            span.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": name,
                    "gen_ai.usage.input_tokens": 10,
                    "gen_ai.usage.output_tokens": 5,
                }
            )
    provider.shutdown()
    return list(exporter.get_finished_spans())


async def test_unique_model_names_leave_the_server_no_bigger(receiver: RunningReceiver) -> None:
    # The attack: 3,000 spans with unique 8 KiB model names (72 MiB retained before the fix,
    # 1.8 MiB after, measured here). genai-prices remembered every
    # name it was asked about (~49 MiB for these), and our own caches kept 65,536 of them.
    from aethermind.receiver.state import PRICE_BOOK
    from aethermind.semconv.record import MAX_NAME_LENGTH

    book = receiver.app[PRICE_BOOK]
    gc.collect()
    tracemalloc.start()
    try:
        for first in range(0, 3000, 500):
            await _send(receiver, receiver.acme, _unique_model_spans(first, 500))
        gc.collect()
        retained, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert retained < 8 * 1024 * 1024, f"{retained / 2**20:.1f} MiB retained"
    snapshot = vars(book)["_snapshot"]
    assert not snapshot._lookup_cache and not snapshot._provider_cache
    assert not snapshot._provider_misses
    rows = await receiver.rows(receiver.acme)
    assert len(rows) == 3000
    assert {len(r["request_model"]) for r in rows} == {MAX_NAME_LENGTH}
    # Past its budget of new-name lookups (a burst of 1024) acme's spans wait unpriced,
    # counted, rather than spending everyone's CPU on genai-prices' tables.
    metrics = await (await receiver.session.get(f"{receiver.url}/metrics")).text()
    refused = re.search(r"^aethermind_price_lookups_refused_total (\S+)$", metrics, re.M)
    assert refused is not None
    # 3000 new names, 1024 in the burst, ~100 a second more while the test runs
    assert 1000 < float(refused.group(1)) <= 1976
    # The other organization's spans are priced as ever.
    await _send(
        receiver,
        receiver.globex,
        _spans(
            "tests", {**GEMINI, "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"}
        ),
    )
    (row,) = await receiver.rows(receiver.globex)
    assert row["cost"] is not None and row["cost"] > 0


async def test_bad_keys_through_a_shared_proxy_lock_out_nobody_else(
    receiver_factory: ReceiverFactory,
) -> None:
    # Every client arrives through one load balancer (the test client's 127.0.0.1), which
    # the operator trusts, so X-Forwarded-For names the clients. Before: 30 bad keys a
    # minute from the proxy's address gave every tenant 429, valid keys included.
    from aethermind.receiver.state import KEYS
    from aethermind.storage.keys import parse_key

    receiver = await receiver_factory(
        trusted_proxies=("127.0.0.1/32",), auth_max_failures_per_minute=30,
        auth_max_failures_per_organization_per_minute=15,
        max_inflight_requests=100,  # the burst below is all let in, to reach the key check
    )  # fmt: skip
    acme, globex = receiver.acme, receiver.globex
    body = protobuf_body(_spans("tests", {**GEMINI, "gen_ai.provider.name": "openai"}))

    async def post(key: str, client: str) -> int:
        response = await receiver.session.post(
            receiver.traces_url, data=body,
            headers={"Authorization": f"Bearer {key}", "Content-Type": PROTOBUF,
                     "X-Forwarded-For": client},
        )  # fmt: skip
        return response.status

    assert await post(globex.ingest_key, "198.51.100.20") == 200  # globex's own key, in use
    # 1. Garbage keys from one client: that client waits, the rest of the proxy's traffic not.
    garbage = [await post(f"garbage-{i}", "203.0.113.5") for i in range(40)]
    assert garbage[:30] == [401] * 30 and set(garbage[30:]) == {429}
    assert await post(acme.ingest_key, "203.0.113.5") == 200  # same client, a valid key
    assert await post(acme.ingest_key, "198.51.100.7") == 200

    # 2. Guesses against one key id (globex knows its own) from many addresses, each a
    # bcrypt: capped per key id, concurrent bursts included. The real key still works.
    parsed = parse_key(globex.ingest_key)
    assert parsed is not None
    checks_before = receiver.app[KEYS].misses
    guesses = await asyncio.gather(
        *(
            post(f"aether_{parsed.public_id}_{'g' * 40}{i:03d}", f"198.18.{i // 250}.{i % 250}")
            for i in range(60)
        )
    )
    bcrypt_checks = receiver.app[KEYS].misses - checks_before
    assert bcrypt_checks <= 10, bcrypt_checks
    assert guesses.count(401) == bcrypt_checks and guesses.count(429) == 60 - bcrypt_checks, guesses
    assert await post(globex.ingest_key, "198.18.0.1") == 200
    assert await post(acme.ingest_key, "198.18.0.1") == 200

    # 3. More key ids of the same organization (an admin key can make many) do not buy
    # more bcrypt: the organization's budget (15 here) covers all its key ids together.
    from aethermind.storage.tenants import create_key

    more = [(await create_key(receiver.pool, globex.id, ["ingest"]))[1] for _ in range(2)]
    answers = [
        await post(f"aether_{extra.split('_')[1]}_{'h' * 40}{i:03d}", f"198.19.0.{i}")
        for extra in more
        for i in range(12)
    ]
    # A 401 is a bcrypt that ran and failed; a 429 was refused before any.
    assert answers.count(401) == 15 - bcrypt_checks, answers
    assert answers.count(429) == len(answers) - answers.count(401)
    assert await post(globex.ingest_key, "198.19.0.1") == 200  # verified before: passes
    assert await post(acme.ingest_key, "198.19.0.1") == 200  # another organization
    assert await receiver.count_rows(acme) == 1  # the same span each time, stored once
