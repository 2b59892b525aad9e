"""Coding agents' usage events (Codex CLI, Gemini CLI; Claude Code's beside its spans),
shaped as their telemetry sources emit them, sent through the real OTel SDK exporters:
counted once, with tokens read by each agent's counting rules, priced, and attributed to
the developer and session."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from aethermind.semconv import PriceBook, UsageRecord
from aethermind.semconv.attributes import CLAUDE_CODE_EVENTS_SCOPE, CLAUDE_CODE_TRACING_SCOPE
from tests.plugins.receiver import RunningReceiver
from tests.receiver.test_otlp_logs import aggregates

SECOND = 1_000_000_000

# Codex's common event fields (conversation, account, model) and its completed responses,
# counts as decimal text the way its log layer formats them; OpenAI counting: cached input
# inside input, reasoning inside output.
CODEX_COMMON = {
    "conversation.id": "019e5dc9-b10c-7371", "app.version": "0.145.0",
    "auth_mode": "ApiKey", "originator": "codex_exec", "user.account_id": "acct-7",
    "user.email": "dev@acme.test", "terminal.type": "xterm", "model": "gpt-5-codex",
    "slug": "gpt-5-codex",
}  # fmt: skip
CODEX_RESPONSES = [
    {"input_token_count": "12000", "output_token_count": "800", "cached_token_count": 9000,
     "reasoning_token_count": 512, "tool_token_count": "0"},
    {"input_token_count": "14500", "output_token_count": "300", "cached_token_count": 11000,
     "reasoning_token_count": 128, "tool_token_count": "0"},
]  # fmt: skip

# Gemini CLI's api_response: prompt (cached inside), candidates (thoughts apart), tool-use
# prompt tokens apart.
GEMINI_RESPONSES = [
    {"model": "gemini-2.5-pro", "input_token_count": 12000, "cached_content_token_count": 8000,
     "output_token_count": 350, "thoughts_token_count": 420, "tool_token_count": 30,
     "total_token_count": 12800, "duration_ms": 2100, "status_code": 200, "prompt_id": "p-1"},
    {"model": "gemini-2.5-flash", "input_token_count": 3000, "cached_content_token_count": 0,
     "output_token_count": 90, "thoughts_token_count": 0, "tool_token_count": 0,
     "total_token_count": 3090, "duration_ms": 600, "status_code": 200, "prompt_id": "p-2"},
]  # fmt: skip
GEMINI_WHO = {"session.id": "gem-session-1", "user.email": "dev2@acme.test",
              "installation.id": "inst-1"}  # fmt: skip


def emit(
    receiver: RunningReceiver, service: str, records: list[tuple[int, str, dict[str, Any]]]
) -> None:
    exporter = OTLPLogExporter(
        endpoint=f"{receiver.url}/v1/logs",
        headers={"Authorization": f"Bearer {receiver.acme.ingest_key}"},
    )
    provider = LoggerProvider(resource=Resource.create({"service.name": service}))
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    logger = provider.get_logger(service)
    for timestamp, body, attributes in records:
        logger.emit(timestamp=timestamp, body=body, attributes=attributes)
    provider.shutdown()


def cost(provider: str, model: str, **tokens: int) -> Decimal:
    price = (
        PriceBook()
        .price(UsageRecord(provider=provider, request_model=model, **tokens), time.time_ns())
        .total
    )
    assert price is not None
    return price


async def test_codex_completions_counted_once_with_openai_counting(
    receiver: RunningReceiver,
) -> None:
    now = time.time_ns() - 120 * SECOND
    records = [(now, "codex.conversation_starts",
                {**CODEX_COMMON, "event.name": "codex.conversation_starts"})]  # fmt: skip
    for i, response in enumerate(CODEX_RESPONSES):
        attributes = {**CODEX_COMMON, "event.name": "codex.sse_event",
                      "event.kind": "response.completed", **response}  # fmt: skip
        records.append((now + (i + 1) * 10 * SECOND, "codex.sse_event", attributes))
        # Logged again a moment later: the same response, not a second one.
        records.append((now + (i + 1) * 10 * SECOND + 7_000_000, "codex.sse_event", attributes))
        delta = {**CODEX_COMMON, "event.name": "codex.sse_event",
                 "event.kind": "response.output_text.delta", "duration_ms": "3"}  # fmt: skip
        records.append((now + (i + 1) * 10 * SECOND, "codex.sse_event", delta))
    await asyncio.to_thread(emit, receiver, "codex_exec", records)
    [row] = await aggregates(receiver, group_by="user,session,model", service="codex_exec")
    assert (row["user"], row["session"], row["model"]) == (
        "dev@acme.test",
        "019e5dc9-b10c-7371",
        "gpt-5-codex",
    )
    assert row["calls"] == len(CODEX_RESPONSES)
    assert row["input_tokens"] == sum(int(r["input_token_count"]) for r in CODEX_RESPONSES)
    assert row["cache_read_tokens"] == sum(r["cached_token_count"] for r in CODEX_RESPONSES)
    assert row["output_tokens"] == sum(int(r["output_token_count"]) for r in CODEX_RESPONSES)
    assert row["reasoning_tokens"] == sum(r["reasoning_token_count"] for r in CODEX_RESPONSES)
    metrics = await (await receiver.session.get(f"{receiver.url}/metrics")).text()
    assert 'aethermind_log_records_dropped_total{reason="repeated"} 2.0' in metrics
    assert Decimal(row["cost_usd"]) == sum(
        cost("openai", "gpt-5-codex", input_tokens=int(r["input_token_count"]),
             output_tokens=int(r["output_token_count"]),
             cache_read_tokens=r["cached_token_count"],
             reasoning_tokens=r["reasoning_token_count"])
        for r in CODEX_RESPONSES
    )  # fmt: skip


async def test_gemini_responses_count_thoughts_and_tool_prompts(
    receiver: RunningReceiver,
) -> None:
    now = time.time_ns() - 120 * SECOND
    records = []
    for i, response in enumerate(GEMINI_RESPONSES):
        at = now + i * 10 * SECOND
        records.append((at, "API response", {**GEMINI_WHO, "event.name": "gemini_cli.api_response",
                                             **response}))  # fmt: skip
        # The GenAI-conventions restatement of the same response is not a second call.
        records.append((at, "GenAI operation details", {
            **GEMINI_WHO, "event.name": "gen_ai.client.inference.operation.details",
            "gen_ai.request.model": response["model"],
            "gen_ai.usage.input_tokens": response["input_token_count"],
            "gen_ai.usage.output_tokens": response["output_token_count"],
        }))  # fmt: skip
    await asyncio.to_thread(emit, receiver, "gemini-cli", records)
    rows = {r["model"]: r for r in await aggregates(receiver, group_by="model,user,session")}
    for response in GEMINI_RESPONSES:
        row = rows[response["model"]]
        assert (row["user"], row["session"], row["calls"]) == ("dev2@acme.test", "gem-session-1", 1)
        inputs = response["input_token_count"] + response["tool_token_count"]
        outputs = response["output_token_count"] + response["thoughts_token_count"]
        assert (row["input_tokens"], row["output_tokens"]) == (inputs, outputs)
        assert row["input_tokens"] + row["output_tokens"] == response["total_token_count"]
        assert row["cache_read_tokens"] == response["cached_content_token_count"]
        assert row["reasoning_tokens"] == response["thoughts_token_count"]
        assert Decimal(row["cost_usd"]) == cost(
            "google", response["model"], input_tokens=inputs, output_tokens=outputs,
            cache_read_tokens=response["cached_content_token_count"],
            reasoning_tokens=response["thoughts_token_count"],
        )  # fmt: skip


# Claude Code with its enhanced telemetry: each request is a `claude_code.llm_request` span
# (bare counts, the alias asked for, the provider's request id) under an interaction span,
# and an `api_request` event emitted inside the interaction span (the snapshot that
# answered, the same request id, its own cost).
CLAUDE_REQUESTS = [
    {"input_tokens": 1300, "output_tokens": 275, "cache_read_tokens": 2400,
     "cache_creation_tokens": 700},
    {"input_tokens": 90, "output_tokens": 40, "cache_read_tokens": 3700,
     "cache_creation_tokens": 0},
]  # fmt: skip
CLAUDE_WHO = {"session.id": "cc-session", "user.id": "device-1", "terminal.type": "xterm"}


def claude_code_signals(receiver: RunningReceiver, *, spans_first: bool) -> None:
    """One interaction of two requests, its spans and its events exported in either order."""
    resource = Resource.create({"service.name": "claude-code"})
    auth = {"Authorization": f"Bearer {receiver.acme.ingest_key}"}
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces", headers=auth))
    )
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{receiver.url}/v1/logs", headers=auth))
    )
    tracer = tracer_provider.get_tracer(CLAUDE_CODE_TRACING_SCOPE)
    logger = logger_provider.get_logger(CLAUDE_CODE_EVENTS_SCOPE)
    with tracer.start_as_current_span("claude_code.interaction", attributes=CLAUDE_WHO):
        for i, counts in enumerate(CLAUDE_REQUESTS):
            request_id = f"req_cc_{i}"
            with tracer.start_as_current_span("claude_code.llm_request", attributes={
                **CLAUDE_WHO, "span.type": "llm_request", "model": "claude-sonnet-4-5",
                "gen_ai.system": "anthropic", "gen_ai.request.model": "claude-sonnet-4-5",
                "request_id": request_id, "gen_ai.response.id": request_id, **counts,
            }):  # fmt: skip
                time.sleep(0.002)
            logger.emit(body="claude_code.api_request", attributes={
                **CLAUDE_WHO, "event.name": "api_request", "request_id": request_id,
                "model": "claude-sonnet-4-5-20250929", "cost_usd": 0.01, "duration_ms": 2,
                **counts,
            })  # fmt: skip
    first, second = (
        (tracer_provider, logger_provider) if spans_first else (logger_provider, tracer_provider)
    )
    first.force_flush()
    second.force_flush()
    tracer_provider.shutdown()
    logger_provider.shutdown()


@pytest.mark.parametrize("spans_first", [True, False])
async def test_claude_code_span_and_event_of_one_request_count_once_in_either_order(
    receiver: RunningReceiver, spans_first: bool
) -> None:
    await asyncio.to_thread(claude_code_signals, receiver, spans_first=spans_first)
    [row] = await aggregates(receiver, group_by="model,user,session")
    # The event counts (it names the snapshot that answered), not the span beside it.
    assert (row["model"], row["user"], row["session"]) == (
        "claude-sonnet-4-5-20250929", "device-1", "cc-session",
    )  # fmt: skip
    assert row["calls"] == len(CLAUDE_REQUESTS)
    assert row["output_tokens"] == sum(c["output_tokens"] for c in CLAUDE_REQUESTS)
    assert row["cache_read_tokens"] == sum(c["cache_read_tokens"] for c in CLAUDE_REQUESTS)
    assert row["input_tokens"] == sum(
        c["input_tokens"] + c["cache_read_tokens"] + c["cache_creation_tokens"]
        for c in CLAUDE_REQUESTS
    )
    stored = [r for r in await receiver.rows(receiver.acme) if r["usage_role"] == "request"]
    assert len(stored) == 2 * len(CLAUDE_REQUESTS)  # both records kept, one counted each
    assert sorted(r["instrumentation_scope"] for r in stored if r["counted"]) == [
        CLAUDE_CODE_EVENTS_SCOPE
    ] * len(CLAUDE_REQUESTS)
