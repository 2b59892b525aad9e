"""Who spent it: the user, session and agent a span names (or its resource does), stored per
span and answered by ``GET /v1/aggregates`` (group_by, filters, top N) and ``stats``; spans
go through the real OTel SDK and OTLP exporter."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.plugins.receiver import RunningReceiver
from tests.receiver.helpers import export_with_otel

# (user attribute and value, session, agent, input tokens, cost-driving model)
CALLS: list[dict[str, Any]] = [
    {"user.id": "alice", "session.id": "s-1", "gen_ai.agent.name": "planner", "tokens": 5000},
    {"user.id": "alice", "session.id": "s-1", "gen_ai.agent.name": "planner", "tokens": 3000},
    {"enduser.id": "bob", "gen_ai.conversation.id": "s-2", "agent.name": "writer", "tokens": 1000},
    {"llm.user": "carol", "tokens": 200},  # OpenAI's request `user`, as OpenLLMetry records it
    {"tokens": 100},  # no user on the span: the resource's
]


def spans() -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "assistant", "user.id": "from-resource"})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    for call in CALLS:
        with tracer.start_as_current_span("chat gpt-4o") as span:
            span.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.usage.input_tokens": call["tokens"],
                    "gen_ai.usage.output_tokens": 10,
                    **{k: v for k, v in call.items() if k != "tokens"},
                }
            )
    provider.shutdown()
    return list(exporter.get_finished_spans())


async def aggregates(receiver: RunningReceiver, **params: str) -> list[dict[str, Any]]:
    response = await receiver.session.get(
        f"{receiver.url}/v1/aggregates", params=params, headers=receiver.acme.read_headers()
    )
    assert response.status == 200, await response.text()
    rows: list[dict[str, Any]] = (await response.json())["rows"]
    return rows


async def test_usage_by_user_session_and_agent(receiver: RunningReceiver) -> None:
    result = await export_with_otel(spans(), receiver.traces_url, receiver.acme.ingest_key)
    assert result is SpanExportResult.SUCCESS

    by_user = {r["user"]: r["input_tokens"] for r in await aggregates(receiver, group_by="user")}
    assert by_user == {"alice": 8000, "bob": 1000, "carol": 200, "from-resource": 100}
    by_session = await aggregates(receiver, group_by="session")
    assert {r["session"]: r["calls"] for r in by_session} == {"s-1": 2, "s-2": 1, None: 2}
    by_agent = await aggregates(receiver, group_by="agent,user")
    assert {(r["agent"], r["user"]): r["calls"] for r in by_agent} == {
        ("planner", "alice"): 2,
        ("writer", "bob"): 1,
        (None, "carol"): 1,
        (None, "from-resource"): 1,
    }
    [alice] = await aggregates(receiver, user="alice")
    assert (alice["calls"], alice["input_tokens"]) == (2, 8000)
    assert "user" not in alice  # a filter is not a group key


async def test_top_n_orders_by_the_measure_asked_for(receiver: RunningReceiver) -> None:
    await export_with_otel(spans(), receiver.traces_url, receiver.acme.ingest_key)
    top = await aggregates(receiver, group_by="user", limit="2")  # by cost unless told
    assert [r["user"] for r in top] == ["alice", "bob"]
    by_calls = await aggregates(receiver, group_by="user", order_by="calls", limit="1")
    assert [(r["user"], r["calls"]) for r in by_calls] == [("alice", 2)]


async def test_a_users_costliest_traces(receiver: RunningReceiver) -> None:
    await export_with_otel(spans(), receiver.traces_url, receiver.acme.ingest_key)

    async def top_traces(**params: str) -> Any:
        response = await receiver.session.get(
            f"{receiver.url}/v1/top-traces", params=params, headers=receiver.acme.read_headers()
        )
        return response.status, await response.json()

    status, everyone = await top_traces()
    assert status == 200 and len(everyone["traces"]) == len(CALLS)
    status, alices = await top_traces(user="alice")
    assert status == 200 and len(alices["traces"]) == 2
    assert {t["total_tokens"] for t in alices["traces"]} == {5010, 3010}
    status, body = await top_traces(**{"tag.team": "search"})  # no tag keys named
    assert status == 400 and "tag keys" in body["error"]["message"]
    status, body = await top_traces(usr="alice")
    assert status == 400


async def test_bad_top_n_parameters_are_400s(receiver: RunningReceiver) -> None:
    for params in ({"order_by": "latency"}, {"limit": "0"}, {"limit": "ten"}, {"group_by": "usr"}):
        response = await receiver.session.get(
            f"{receiver.url}/v1/aggregates", params=params, headers=receiver.acme.read_headers()
        )
        assert response.status == 400, params
        body = await response.json()
        assert body["error"]["status"] == 400


async def test_the_sdks_attributes_reach_the_breakdown(receiver: RunningReceiver) -> None:
    """``aethermind.attributes`` around an LLM call, through the SDK's processor."""
    import aethermind
    from aethermind.exporter import AethermindSpanProcessor

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "assistant"}))
    provider.add_span_processor(AethermindSpanProcessor(SimpleSpanProcessor(exporter)))
    with aethermind.attributes(user="dave", session="s-9"):
        with provider.get_tracer("app").start_as_current_span("chat gpt-4o") as span:
            span.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.usage.input_tokens": 700,
                    "gen_ai.usage.output_tokens": 70,
                }
            )
    provider.shutdown()
    shipped = list(exporter.get_finished_spans())
    result = await export_with_otel(shipped, receiver.traces_url, receiver.acme.ingest_key)
    assert result is SpanExportResult.SUCCESS
    rows = await aggregates(receiver, group_by="user,session")
    assert [(r["user"], r["session"], r["input_tokens"]) for r in rows] == [("dave", "s-9", 700)]


async def test_the_organizations_own_tags(receiver: RunningReceiver) -> None:
    """An admin key names the tag keys; spans keep their values (span first, else the
    resource's); breakdowns and filters take `tag.<key>`; other organizations see nothing."""
    from tests.receiver.test_admin import admin_headers

    admin = await admin_headers(receiver)
    put = await receiver.session.put(
        f"{receiver.url}/v1/tags", json={"keys": ["team", "customer"]}, headers=admin
    )
    assert put.status == 200, await put.text()
    assert (await put.json()) == {"keys": ["team", "customer"]}

    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "assistant", "customer": "acme-corp"})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    for team, tokens in (("search", 900), ("search", 100), ("support", 50), (None, 5)):
        with provider.get_tracer("app").start_as_current_span("chat gpt-4o") as span:
            span.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.usage.input_tokens": tokens,
                    "gen_ai.usage.output_tokens": 1,
                    **({"team": team} if team else {}),
                }
            )
    provider.shutdown()
    sent = list(exporter.get_finished_spans())
    assert (
        await export_with_otel(sent, receiver.traces_url, receiver.acme.ingest_key)
        is SpanExportResult.SUCCESS
    )

    rows = await aggregates(receiver, group_by="tag.team,tag.customer")
    assert {(r["tag.team"], r["tag.customer"]): r["input_tokens"] for r in rows} == {
        ("search", "acme-corp"): 1000,
        ("support", "acme-corp"): 50,
        (None, "acme-corp"): 5,
    }
    [search] = await aggregates(receiver, **{"tag.team": "search"})
    assert search["calls"] == 2

    for params in ({"group_by": "tag.region"}, {"tag.region": "eu"}, {"group_by": "tag.bad key"}):
        response = await receiver.session.get(
            f"{receiver.url}/v1/aggregates", params=params, headers=receiver.acme.read_headers()
        )
        assert response.status == 400, params
    got = await receiver.session.get(f"{receiver.url}/v1/tags", headers=admin)
    assert (await got.json()) == {"keys": ["team", "customer"]}
    for body in ({"keys": ["a"] * 2}, {"keys": [f"k{i}" for i in range(9)]}, {"keys": ["a b"]}):
        bad = await receiver.session.put(f"{receiver.url}/v1/tags", json=body, headers=admin)
        assert bad.status == 400, body
    reader = await receiver.session.get(
        f"{receiver.url}/v1/tags", headers=receiver.acme.read_headers()
    )
    assert reader.status == 403
    globex = await receiver.session.get(
        f"{receiver.url}/v1/aggregates",
        params={"group_by": "tag.team"},
        headers=receiver.globex.read_headers(),
    )
    assert globex.status == 400  # globex named no tags: acme's are not its own


def _chat_with(*extra: dict[str, Any], **fields: Any) -> dict[str, Any]:
    from tests.receiver.helpers import otlp_json_span

    base = otlp_json_span(**fields)
    base["attributes"] = [*base["attributes"], *extra]
    return base


async def _post_json(receiver: RunningReceiver, spans: list[dict[str, Any]]) -> int:
    from tests.receiver.helpers import JSON, otlp_json_body

    response = await receiver.session.post(
        receiver.traces_url,
        data=otlp_json_body(spans),
        headers=receiver.acme.ingest_headers(**{"Content-Type": JSON}),
    )
    return response.status


async def test_hostile_values_are_bounded_and_cannot_blow_up_the_rollups(
    receiver: RunningReceiver,
) -> None:
    from aethermind.semconv.record import MAX_NAME_LENGTH
    from aethermind.storage.inheritance import MAX_DEPTH
    from aethermind.storage.scope import tenant_transaction
    from tests.receiver.helpers import random_trace_id

    def user(value: str) -> dict[str, Any]:
        return {"key": "user.id", "value": {"stringValue": value}}

    # Huge values are cut (and counted); many distinct values cost a row each, no more.
    huge = [_chat_with(user("u" * 100_000 + str(i))) for i in range(3)]
    many = [_chat_with(user(f"user-{i}")) for i in range(500)]
    assert await _post_json(receiver, huge + many) == 200
    # Invalid UTF-8 in a value (JSON with a lone surrogate escape): refused or stored as text.
    status = await _post_json(receiver, [_chat_with(user("\ud800 lone surrogate"))])
    assert status in (200, 400)
    # Parent ids that loop, and a chain deeper than inheritance looks: bounded, stored.
    trace = random_trace_id()
    loop = [
        _chat_with(trace_id=trace, span_id="a" * 16, parentSpanId="b" * 16),
        _chat_with(trace_id=trace, span_id="b" * 16, parentSpanId="a" * 16),
    ]
    chain_trace = random_trace_id()
    chain = [_chat_with(user("root-user"), trace_id=chain_trace, span_id=f"{1:016x}")]
    for depth in range(2, MAX_DEPTH + 10):
        chain.append(
            _chat_with(
                trace_id=chain_trace, span_id=f"{depth:016x}", parentSpanId=f"{depth - 1:016x}"
            )
        )
    assert await _post_json(receiver, loop + chain) == 200

    rows = await receiver.rows(receiver.acme)
    assert max(len(r["user_id"] or "") for r in rows) == MAX_NAME_LENGTH
    by_span = {r["span_id"]: r for r in rows if r["trace_id"] == chain_trace}
    # Each walk stops after MAX_DEPTH levels, but what a span inherited it passes on: the
    # whole chain is the root's user.
    inherited = {by_span[f"{d:016x}"]["user_id"] for d in range(2, MAX_DEPTH + 10)}
    assert inherited == {"root-user"}
    assert {r["user_id"] for r in rows if r["trace_id"] == trace} == {None}  # the loop
    async with tenant_transaction(receiver.pool, receiver.acme.id) as conn:
        hourly = await conn.fetchval(
            "SELECT count(*) FROM dimension_rollup_hourly WHERE dimension = 'user'"
        )
        longest = await conn.fetchval("SELECT max(length(value)) FROM dimension_rollup_hourly")
    assert hourly <= len(rows) + 1 and longest <= MAX_NAME_LENGTH
    metrics = await (await receiver.session.get(f"{receiver.url}/metrics")).text()
    assert "aethermind_dimension_values_cut_total 3.0" in metrics


CALLEE = """
import sys
from opentelemetry import context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from aethermind.exporter import AethermindSpanProcessor

endpoint, key, baggage = sys.argv[1:4]
exporter = OTLPSpanExporter(endpoint=endpoint, headers={"Authorization": f"Bearer {key}"})
provider = TracerProvider(resource=Resource.create({"service.name": "summarizer"}))
provider.add_span_processor(AethermindSpanProcessor(SimpleSpanProcessor(exporter)))
# As a server instrumentation does with the incoming request's headers.
token = context.attach(W3CBaggagePropagator().extract({"baggage": baggage}))
try:
    with provider.get_tracer("callee").start_as_current_span("chat gpt-4o") as span:
        span.set_attributes({
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 900,
            "gen_ai.usage.output_tokens": 90,
        })
finally:
    context.detach(token)
provider.shutdown()
"""


async def test_the_sdks_attributes_cross_to_another_process_as_baggage(
    receiver: RunningReceiver,
) -> None:
    """The caller sets who the work is for; the service it calls, another process, makes the
    LLM call: its span is that user's, session's and tag value's."""
    import asyncio
    import subprocess
    import sys

    from opentelemetry.baggage.propagation import W3CBaggagePropagator

    import aethermind
    from aethermind.storage.tenants import set_tag_keys

    await set_tag_keys(receiver.pool, receiver.acme.id, ["customer"])
    headers: dict[str, str] = {}
    with aethermind.attributes(user="erin", session="s-77", tags={"customer": "acme corp"}):
        W3CBaggagePropagator().inject(headers)
    argv = [sys.executable, "-c", CALLEE, receiver.traces_url, receiver.acme.ingest_key]
    done = await asyncio.to_thread(
        subprocess.run, [*argv, headers["baggage"]], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    rows = await aggregates(receiver, group_by="user,session,tag.customer")
    assert [(r["user"], r["session"], r["tag.customer"], r["input_tokens"]) for r in rows] == [
        ("erin", "s-77", "acme corp", 900)
    ]
