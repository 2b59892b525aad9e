"""Coding agents' usage events (OTLP log records) as ``ReportedCall``s, stored like
``/v1/ingest``'s events. Pure: no I/O.

Coding agents report their spend as log events, not spans. One reader per agent, each
from the agent's own telemetry source and docs:

- **Claude Code** (``CLAUDE_CODE_ENABLE_TELEMETRY=1``): ``claude_code.api_request``, one per
  request to the model: ``model``, ``input_tokens`` (uncached input only),
  ``output_tokens``, ``cache_read_tokens``, ``cache_creation_tokens``, its own ``cost_usd``
  (kept as the provided cost; ours is computed from the tokens), ``duration_ms``; who in
  ``user.email`` / ``user.account_uuid``, the session in ``session.id``.
- **Codex CLI** (``[otel]`` in ``config.toml``): ``codex.sse_event`` with ``event.kind``
  ``response.completed``: ``input_token_count`` (cached included, as OpenAI counts),
  ``cached_token_count``, ``output_token_count`` (reasoning included),
  ``reasoning_token_count``, the counts often as decimal text; ``model``, ``user.email`` /
  ``user.account_id``, ``conversation.id`` as the session. Codex can log one response's
  completion more than once, moments apart and without a response id: its identity is the
  conversation, model and counts (a conversation's context only grows, so two of its
  responses with the very same counts are the same response), and a repeat in the same
  export is stored once. (A repeat exported in a later batch is not caught: rows are keyed
  by their time too.) Other ``codex.sse_event``
  kinds carry no usage. Its ``tool_token_count`` is the response's total tokens (Codex
  passes ``usage.total_tokens`` there), not tool tokens: not read. Codex's trace export
  restates ``response.completed`` as a span event on a span without usage attributes;
  span events are not read for usage, so the call counts once, from its log record.
- **Gemini CLI** (``telemetry.enabled``): ``gemini_cli.api_response``: ``model``,
  ``input_token_count`` (the prompt, cached included), ``cached_content_token_count``,
  ``output_token_count`` (the candidates: thoughts not included), ``thoughts_token_count``,
  ``tool_token_count`` (tool-use prompt, billed as input), ``duration_ms``,
  ``status_code``; ``user.email``, ``session.id``. Its
  ``gen_ai.client.inference.operation.details`` event restates the same response and is
  not counted.
- **GenAI semantic conventions**: ``gen_ai.client.inference.operation.details`` carries the
  inference span's attributes, read by ``normalize`` exactly as a span's. Instrumentations
  emit it inside the inference span: its call is stored under that span, where the trace's
  rule (``storage/counting.py``) counts the request once, span and event alike; an event
  without its span counts alone. From the agents above, it is their restatement: dropped.

Counts are normalized to the GenAI conventions (input includes cache reads and writes,
output includes reasoning). Records of other names carry no usage: counted and dropped.
Unless a reader says otherwise, a record's identity is a digest of its content, so a
re-delivered record is the same row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aethermind.ingest.events import ReportedCall
from aethermind.ingest.logs import LogRecordView
from aethermind.semconv import attributes as a
from aethermind.semconv.normalize import normalize, provided_cost, reported_usage
from aethermind.semconv.record import MAX_RESPONSE_ID_LENGTH

MAX_TOKENS = 10**12
_MAX_REASONS = 5


@dataclass(frozen=True, slots=True)
class Counts:
    """A call's tokens, by the GenAI conventions' counting."""

    input: int | None
    output: int | None
    cache_read: int | None = None
    cache_write: int | None = None
    reasoning: int | None = None


class Unusable(ValueError):
    """A usage event whose counts cannot be read; the message says which and why."""


@dataclass(frozen=True, slots=True)
class AgentReader:
    """How one agent's usage event reads."""

    agent: str
    """The service name when the resource names none."""
    provider: str
    event: str
    carries_usage: Callable[[Mapping[str, Any]], bool]
    counts: Callable[[Mapping[str, Any]], Counts]
    user_keys: tuple[str, ...]
    session_keys: tuple[str, ...]
    identity: Callable[[LogRecordView], str]
    provided_cost_key: str | None = None
    scope: str | None = None
    """The scope its events are stored under (see ``attributes.AGENT_REQUEST_SCOPES``)."""
    request_id_key: str | None = None
    """The attribute holding the provider's request id: the agent's span of the same
    request records it too, and the two count once (``storage/counting.py``)."""


def _whole_record(record: LogRecordView) -> str:
    return _digest(
        [record.time_unix_nano, record.event_name, record.attributes, record.resource_attributes]
    )


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def count(attributes: Mapping[str, Any], key: str) -> int | None:
    """A token count: an integer or its decimal text (as some agents send); None when
    absent; raises ``Unusable`` when it is anything else."""
    value = attributes.get(key)
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if type(value) is not int or not 0 <= value <= MAX_TOKENS:
        raise Unusable(f"'{key}' must be a token count, got {value!r}")
    return value


def _sum(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _claude_code_counts(attributes: Mapping[str, Any]) -> Counts:
    uncached = count(attributes, "input_tokens")
    cache_read = count(attributes, "cache_read_tokens")
    cache_write = count(attributes, "cache_creation_tokens")
    # Claude Code's input_tokens leaves the cache out; the GenAI conventions' includes it.
    return Counts(
        input=_sum(uncached, cache_read, cache_write),
        output=count(attributes, "output_tokens"),
        cache_read=cache_read,
        cache_write=cache_write,
    )


def _codex_counts(attributes: Mapping[str, Any]) -> Counts:
    return Counts(
        input=count(attributes, "input_token_count"),
        output=count(attributes, "output_token_count"),
        cache_read=count(attributes, "cached_token_count"),
        reasoning=count(attributes, "reasoning_token_count"),
    )


def _codex_identity(record: LogRecordView) -> str:
    attributes = record.attributes
    keys = ("conversation.id", "model", "input_token_count", "cached_token_count",
            "output_token_count", "reasoning_token_count")  # fmt: skip
    return _digest(["codex.response.completed", *(str(attributes.get(k)) for k in keys)])


def _gemini_counts(attributes: Mapping[str, Any]) -> Counts:
    thoughts = count(attributes, "thoughts_token_count")
    return Counts(
        input=_sum(count(attributes, "input_token_count"), count(attributes, "tool_token_count")),
        output=_sum(count(attributes, "output_token_count"), thoughts),
        cache_read=count(attributes, "cached_content_token_count"),
        reasoning=thoughts,
    )


READERS: tuple[AgentReader, ...] = (
    AgentReader(
        agent="claude-code",
        provider="anthropic",
        event="claude_code.api_request",
        carries_usage=lambda _: True,
        counts=_claude_code_counts,
        user_keys=("user.email", "user.account_uuid", "user.id"),
        session_keys=("session.id",),
        identity=_whole_record,
        provided_cost_key="cost_usd",
        scope=a.CLAUDE_CODE_EVENTS_SCOPE,
        request_id_key="request_id",
    ),
    AgentReader(
        agent="codex",
        provider="openai",
        event="codex.sse_event",
        carries_usage=lambda attributes: (
            attributes.get("event.kind") == "response.completed"
            and "input_token_count" in attributes
        ),
        counts=_codex_counts,
        user_keys=("user.email", "user.account_id"),
        session_keys=("conversation.id",),
        identity=_codex_identity,
    ),
    AgentReader(
        agent="gemini-cli",
        provider="google",
        event="gemini_cli.api_response",
        carries_usage=lambda _: True,
        counts=_gemini_counts,
        user_keys=("user.email", "installation.id"),
        session_keys=("session.id",),
        identity=_whole_record,
    ),
)
"""The one list of agents whose usage events are read; the README's table follows it."""

_BY_EVENT: dict[str, AgentReader] = {reader.event: reader for reader in READERS}
# Claude Code also names the event without its prefix in the event.name attribute.
_BY_EVENT["api_request"] = _BY_EVENT["claude_code.api_request"]


@dataclass(slots=True)
class LogCalls:
    calls: list[ReportedCall] = field(default_factory=list)
    no_usage: int = 0
    """Records that report no LLM call: counted and dropped."""
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)
    repeated: int = 0
    """Usage events the request held twice (same identity): stored once."""


def reader_of(record: LogRecordView) -> AgentReader | None:
    """The reader of the agent whose usage event ``record`` is, if it is one."""
    reader = _BY_EVENT.get(record.event_name)
    if reader is None:
        name = record.attributes.get("event.name")
        reader = _BY_EVENT.get(name) if isinstance(name, str) else None
    if reader is None or not reader.carries_usage(record.attributes):
        return None
    return reader


def calls_from_logs(records: list[LogRecordView]) -> LogCalls:
    """The LLM calls the records report; a usage event with unusable counts is rejected,
    with the reason."""
    result = LogCalls()
    seen: set[str] = set()  # identities: a span id is the digest of one
    for record in records:
        reader = reader_of(record)
        if reader is None:
            genai = _genai_event_call(record) if _is_genai_event(record) else None
            if genai is None:
                result.no_usage += 1
                continue
            call = genai
        else:
            try:
                call = _call(reader, record)
            except Unusable as exc:
                result.rejected += 1
                if len(result.reasons) < _MAX_REASONS:
                    result.reasons.append(f"{reader.event}: {exc}")
                continue
        # A repeat logged at another moment has another time, so the stored row's key
        # (which holds the time) would not catch it: repeats in one request are caught here.
        if call.span_id in seen:
            result.repeated += 1
            continue
        seen.add(call.span_id)
        result.calls.append(call)
    return result


GENAI_DETAILS_EVENT = "gen_ai.client.inference.operation.details"
_AGENT_SERVICES = frozenset(reader.agent for reader in READERS)


def _is_genai_event(record: LogRecordView) -> bool:
    name = record.event_name or record.attributes.get("event.name")
    if name != GENAI_DETAILS_EVENT:
        return False
    return record.resource_attributes.get(a.SERVICE_NAME) not in _AGENT_SERVICES


def _genai_event_call(record: LogRecordView) -> ReportedCall | None:
    """The call a GenAI-conventions event reports, read like a span; None without usage."""
    usage = normalize(record.attributes, record.resource_attributes)
    if usage is None or not usage.is_llm_call or usage.model is None:
        return None
    digest = _whole_record(record)
    in_span = record.trace_id is not None and record.span_id is not None
    failed = usage.error_type is not None
    return ReportedCall(
        usage=usage,
        trace_id=record.trace_id if in_span and record.trace_id else digest[:32],
        parent_span_id=record.span_id if in_span else None,
        span_id=digest[32:48],
        name=f"{usage.operation or 'chat'} {usage.model}"[:256],
        start_time_unix_nano=record.time_unix_nano,
        end_time_unix_nano=record.time_unix_nano,
        failed=failed,
        attributes=dict(record.attributes),
        resource_attributes=dict(record.resource_attributes),
    )


def _call(reader: AgentReader, record: LogRecordView) -> ReportedCall:
    attributes, resource = record.attributes, record.resource_attributes
    model = attributes.get("model")
    if not isinstance(model, str) or not model:
        raise Unusable("no 'model'")
    counts = reader.counts(attributes)
    cost_key = reader.provided_cost_key
    provided = provided_cost(attributes.get(cost_key)) if cost_key else None
    service = resource.get(a.SERVICE_NAME)
    status = attributes.get("status_code")
    failed = type(status) is int and status >= 400
    usage = reported_usage(
        provider=reader.provider,
        operation="chat",
        request_model=model,
        response_model=None,
        input_tokens=counts.input,
        output_tokens=counts.output,
        cache_read_tokens=counts.cache_read,
        cache_write_tokens=counts.cache_write,
        reasoning_tokens=counts.reasoning,
        total_tokens=None,
        provided_cost=provided,
        error_type=str(status) if failed else None,
        failed=failed,
        service=service if isinstance(service, str) and service else reader.agent,
        environment=None,
    )
    merged = {**resource, **attributes}
    usage.user = _first_text(merged, reader.user_keys)
    usage.session = _first_text(merged, reader.session_keys)
    if reader.request_id_key is not None:
        request_id = attributes.get(reader.request_id_key)
        if isinstance(request_id, str) and 0 < len(request_id) <= MAX_RESPONSE_ID_LENGTH:
            usage.response_id = request_id
    end = record.time_unix_nano
    start = max(end - _duration_ns(attributes.get("duration_ms")), 1)
    digest = reader.identity(record)
    kept = {k: v for k, v in attributes.items() if k != reader.provided_cost_key}
    # Emitted inside a span (the agent traces too): the call is stored in that trace, under
    # that span, where the agent's own span of the same request is its sibling.
    in_span = record.trace_id is not None and record.span_id is not None
    return ReportedCall(
        usage=usage,
        trace_id=record.trace_id if in_span and record.trace_id else digest[:32],
        parent_span_id=record.span_id if in_span else None,
        scope=reader.scope,
        span_id=digest[32:48],
        name=f"chat {model}"[:256],
        start_time_unix_nano=start,
        end_time_unix_nano=end,
        failed=failed,
        attributes=kept,
        resource_attributes=dict(resource),
    )


def _duration_ns(value: Any) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 10**9:
        return int(value * 1_000_000)
    return 0


def _first_text(attributes: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = attributes.get(key)
        if isinstance(value, str) and value:
            return value[:256]
    return None
