"""The pure middle of the pipeline, without a server or a database: spans and JSON events
to stored rows, each organization's policy applied, prices computed, nothing else loaded."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

from aethermind.ingest.convert import calls_to_rows, spans_to_rows
from aethermind.ingest.events import parse_events
from aethermind.ingest.otlp import DecodedSpan
from aethermind.ingest.policy import TenantPolicies, TenantPolicy
from aethermind.semconv import PriceBook, PriceOverride
from aethermind.storage.span_row import COLUMNS

START = int(datetime(2026, 11, 1, 12, tzinfo=UTC).timestamp()) * 1_000_000_000
BOOK = PriceBook()
RESOURCE = {"service.name": "billing", "deployment.environment.name": "prod"}


def span(
    attributes: dict[str, object], *, name: str = "chat gpt-4o", status: int = 0
) -> DecodedSpan:
    return DecodedSpan(
        trace_id="ab" * 16, span_id="cd" * 8, parent_span_id=None, name=name, kind=3,
        start_time_unix_nano=START, end_time_unix_nano=START + 812_000_000,
        status_code=0, status_message="", attributes=attributes,
        resource_attributes=RESOURCE, scope_name="opentelemetry.instrumentation.openai",
        scope_version="", event_count=0,
    )  # fmt: skip


CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.usage.input_tokens": 1200,
    "gen_ai.usage.output_tokens": 300,
    "gen_ai.prompt.0.content": "a secret prompt",
}


def as_dict(row: tuple[object, ...]) -> dict[str, object]:
    return dict(zip(COLUMNS, row, strict=True))


def test_a_chat_span_becomes_one_priced_row_without_its_content() -> None:
    conversion = spans_to_rows([span(CHAT)], policy=TenantPolicy(), price_book=BOOK)
    (row,) = map(as_dict, conversion.rows)
    assert (row["provider"], row["request_model"], row["service"]) == (
        "openai",
        "gpt-4o",
        "billing",
    )
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (1200, 300, 1500)
    # gpt-4o: $2.50 in, $10 out per million tokens.
    assert Decimal(str(row["cost"])) == Decimal("0.006")
    assert row["duration_ms"] == 812.0 and row["cost_source"] == "computed"
    assert "gen_ai.prompt.0.content" not in row["attributes"]  # type: ignore[operator]


def test_content_is_kept_only_for_an_organization_that_opted_in() -> None:
    conversion = spans_to_rows(
        [span(CHAT)], policy=TenantPolicy(capture_content=True), price_book=BOOK
    )
    assert as_dict(conversion.rows[0])["attributes"]["gen_ai.prompt.0.content"]  # type: ignore[index]


def test_spans_that_are_not_genai_are_counted_and_dropped_unless_kept() -> None:
    plain = span({"http.method": "GET"}, name="GET /")
    dropped = spans_to_rows([plain], policy=TenantPolicy(), price_book=BOOK)
    assert (dropped.rows, dropped.dropped_not_genai) == ([], 1)
    kept = spans_to_rows([plain], policy=TenantPolicy(), price_book=BOOK, keep_all_spans=True)
    row = as_dict(kept.rows[0])
    assert row["cost_source"] is None and row["service"] == "billing"  # never an unpriced call


def test_an_organizations_override_prices_its_model_and_no_one_elses() -> None:
    house = {**CHAT, "gen_ai.request.model": "house-model"}
    override = PriceOverride("house-*", input_per_mtok=Decimal(1), output_per_mtok=Decimal(2))
    mine = spans_to_rows([span(house)], policy=TenantPolicy(overrides=(override,)), price_book=BOOK)
    theirs = spans_to_rows([span(house)], policy=TenantPolicy(), price_book=BOOK)
    assert Decimal(str(as_dict(mine.rows[0])["cost"])) == Decimal("0.0018")
    assert as_dict(theirs.rows[0])["cost"] is None
    assert as_dict(theirs.rows[0])["cost_source"] == "unknown"


def test_events_become_calls_with_ids_from_their_content() -> None:
    event = {
        "provider": "openai", "model": "gpt-4o", "input_tokens": 1200, "output_tokens": 300,
        "timestamp": "2026-11-01T12:00:00Z", "duration_ms": 812, "service": "billing",
    }  # fmt: skip
    body = json.dumps({"events": [event, event, {"model": 5}]}).encode()
    parsed = parse_events(body, max_events=100)
    assert parsed.rejected == 1
    assert parsed.errors == [
        "events[2].model: must be a non-empty string",
        "events[2].timestamp: is required (ISO 8601 or epoch milliseconds)",
    ]
    first, again = parsed.calls
    assert (first.trace_id, first.span_id) == (again.trace_id, again.span_id)  # a retry is one row
    rows = calls_to_rows(parsed.calls, policy=TenantPolicy(), price_book=BOOK).rows
    assert Decimal(str(as_dict(rows[0])["cost"])) == Decimal("0.006")


def test_policies_are_loaded_once_per_ttl_per_organization() -> None:
    loads: list[object] = []
    now = [0.0]

    async def load(organization_id: object) -> tuple[tuple[PriceOverride, ...], tuple[str, ...]]:
        loads.append(organization_id)
        return (), ()

    async def scenario() -> None:
        policies = TenantPolicies(load, ttl_seconds=30, clock=lambda: now[0])
        acme, globex = uuid4(), uuid4()
        await policies.policy(acme, capture_content=False)
        await policies.policy(acme, capture_content=True)
        await policies.policy(globex, capture_content=False)
        now[0] = 31.0
        await policies.policy(acme, capture_content=False)
        assert loads == [acme, globex, acme]

    asyncio.run(scenario())


def test_the_pipeline_loads_neither_the_web_server_nor_the_driver() -> None:
    code = (
        "import sys, aethermind.ingest.convert, aethermind.ingest.events, "
        "aethermind.ingest.policy, aethermind.ingest.otlp; "
        "print([m for m in ('aiohttp', 'asyncpg') if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_an_events_cost_is_kept_to_the_last_digit_never_through_a_float() -> None:
    # Thirty digits: a float keeps about seventeen.
    cost = "0.123456789012345678901234567890"
    body = (
        '{"events": [{"provider": "openai", "model": "gpt-4o", "input_tokens": 1.0E3,'
        f' "output_tokens": 100, "timestamp": 1764590400000.5, "cost": {cost},'
        ' "attributes": {"ratio": 0.25}}]}'
    ).encode()
    parsed = parse_events(body, max_events=10)
    assert parsed.errors == []
    (row,) = calls_to_rows(parsed.calls, policy=TenantPolicy(), price_book=BOOK).rows
    stored = as_dict(row)
    assert Decimal(str(stored["provided_cost"])) == Decimal(cost)
    assert stored["input_tokens"] == 1000
    assert stored["attributes"]["ratio"] == 0.25  # type: ignore[index]


def test_an_event_is_read_like_a_span_of_the_same_call_without_fake_attributes() -> None:
    event = {
        "provider": "OpenAI", "model": "gpt-4o", "input_tokens": 1000, "output_tokens": 100,
        "cache_read_tokens": 400, "reasoning_tokens": 40, "timestamp": "2026-11-01T12:00:00Z",
        "status": "error", "attributes": {"feature": "search"},
    }  # fmt: skip
    (call,) = parse_events(json.dumps({"events": [event]}).encode(), max_events=1).calls
    as_span = span(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "OpenAI",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 100,
            "gen_ai.usage.cache_read.input_tokens": 400,
            "gen_ai.usage.reasoning.output_tokens": 40,
        }
    )
    from_span = as_dict(spans_to_rows([as_span], policy=TenantPolicy(), price_book=BOOK).rows[0])
    from_event = as_dict(calls_to_rows([call], policy=TenantPolicy(), price_book=BOOK).rows[0])
    for column in ("provider", "input_tokens", "output_tokens", "cache_read_tokens",
                   "reasoning_tokens", "total_tokens", "cost", "cost_source"):  # fmt: skip
        assert from_event[column] == from_span[column], column
    assert from_event["error_type"] == "_OTHER" and from_event["status"] == "ERROR"
    assert from_event["attributes"] == {"feature": "search"}  # only what the client sent


def test_a_span_takes_what_it_does_not_name_from_its_nearest_ancestor_in_the_request() -> None:
    """A request handler's span (not GenAI, so not stored) names the user and a tag; the
    agent span under it names the agent; the model call under that names only its own
    session: it is the handler's user's, the agent's, in its own session."""
    handler = span(
        {"user.id": "alice", "team": "search", "http.route": "/chat"}, name="POST /chat"
    )._replace(span_id="01" * 8)
    agent = span(
        {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"}
    )._replace(span_id="02" * 8, parent_span_id="01" * 8)
    call = span({**CHAT, "session.id": "s-1"})._replace(span_id="03" * 8, parent_span_id="02" * 8)
    resource = {**RESOURCE, "user.id": "service-account"}
    spans = [s._replace(resource_attributes=resource) for s in (call, agent, handler)]
    conversion = spans_to_rows(spans, policy=TenantPolicy(tag_keys=("team",)), price_book=BOOK)
    by_id = {row["span_id"]: row for row in map(as_dict, conversion.rows)}
    # The handler is kept, without its attributes or any usage, for what it passes on.
    assert set(by_id) == {"01" * 8, "02" * 8, "03" * 8} and conversion.carriers == 1
    handler_row = by_id["01" * 8]
    assert handler_row["attributes"] == {} and handler_row["usage_role"] is None
    assert handler_row["inheritable"] == {"user": "alice", "tag.team": "search"}
    stored = by_id["03" * 8]
    assert (stored["user_id"], stored["session_id"], stored["agent_name"]) == (
        "alice", "s-1", "planner",
    )  # fmt: skip
    assert stored["tags"] == {"team": "search"}
    # What it passes on: its own and what it inherited here (for spans under it that come
    # in another request), never the resource's.
    assert stored["inheritable"] == {
        "user": "alice", "session": "s-1", "agent": "planner", "tag.team": "search"
    }  # fmt: skip
    # Alone, the call is the resource's user's.
    (alone,) = map(as_dict, spans_to_rows(
        [call._replace(resource_attributes=resource, parent_span_id=None)],
        policy=TenantPolicy(tag_keys=("team",)), price_book=BOOK,
    ).rows)  # fmt: skip
    assert (alone["user_id"], alone["agent_name"], alone["tags"]) == (
        "service-account", None, {"team": None},
    )  # fmt: skip
    assert alone["inheritable"] == {"session": "s-1"}
