"""OTLP logs (``POST /v1/logs``): decode an ``ExportLogsServiceRequest`` (protobuf or
OTLP/JSON) within the same limits as spans, and turn the records that report an LLM call into
``ReportedCall``s, stored like ``/v1/ingest``'s events. Pure: no I/O.

Coding agents report their spend as log events, not spans. Today one shape is read:

- Claude Code's ``claude_code.api_request`` event (``CLAUDE_CODE_ENABLE_TELEMETRY=1``): one
  per request to the model, with ``model``, ``input_tokens`` (uncached input only),
  ``output_tokens``, ``cache_read_tokens``, ``cache_creation_tokens``, its own ``cost_usd``
  (kept as the provided cost; ours is computed from the tokens) and ``duration_ms``; who
  ran it in ``user.email`` / ``user.account_uuid`` and ``session.id``.

Other records carry no usage: counted and dropped, as spans that are not GenAI spans are.
A record's identity is a digest of its content, so a re-delivered record is the same row.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from aethermind.ingest.events import ReportedCall
from aethermind.ingest.otlp import (
    MAX_TIME_UNIX_NANO,
    DecodeLimits,
    MalformedBodyError,
    OtlpFormat,
)
from aethermind.semconv import attributes as a
from aethermind.semconv.normalize import reported_usage

CLAUDE_CODE_API_REQUEST = "claude_code.api_request"
_API_REQUEST_NAMES = frozenset({CLAUDE_CODE_API_REQUEST, "api_request"})
_MAX_TOKENS = 10**12
_MAX_ERROR_MESSAGE = 1000


@dataclass(slots=True)
class LogRecordView:
    """One log record as the mapping reads it: its time, name and flat attributes."""

    time_unix_nano: int
    event_name: str
    attributes: dict[str, Any]
    resource_attributes: dict[str, Any]


@dataclass(slots=True)
class DecodedLogs:
    format: OtlpFormat
    records: list[LogRecordView] = field(default_factory=list)
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    def reject(self, count: int, reason: str) -> None:
        self.rejected += count
        if len(self.reasons) < 5:
            self.reasons.append(reason)

    @property
    def error_message(self) -> str:
        return "; ".join(self.reasons)[:_MAX_ERROR_MESSAGE]


def decode_logs(body: bytes, fmt: OtlpFormat, limits: DecodeLimits) -> DecodedLogs:
    """The request's records, at most ``limits.max_spans_per_request`` (the rest rejected
    through ``partial_success``), attributes bounded as spans' are; MalformedBodyError (400)
    for a body that is not an ``ExportLogsServiceRequest``."""
    decoded = DecodedLogs(fmt)
    if fmt is OtlpFormat.PROTOBUF:
        try:
            request = ExportLogsServiceRequest.FromString(body)
        except Exception as exc:  # upb raises DecodeError; whatever the parser raises is a 400
            raise MalformedBodyError(f"body is not an ExportLogsServiceRequest: {exc}") from exc
        records: Iterator[tuple[int, str, Any, Any]] = _proto_records(request, limits)
    else:
        try:
            document = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise MalformedBodyError(f"body is not valid JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise MalformedBodyError("body must be a JSON object (ExportLogsServiceRequest)")
        records = _json_records(document, limits)
    room = limits.max_spans_per_request
    for time_unix_nano, event_name, attributes, resource in records:
        if room <= 0:
            decoded.reject(1, f"over the limit of {limits.max_spans_per_request} records")
            continue
        room -= 1
        if not 0 <= time_unix_nano <= MAX_TIME_UNIX_NANO:
            decoded.reject(1, "timeUnixNano out of range")
            continue
        decoded.records.append(LogRecordView(time_unix_nano, event_name, attributes, resource))
    return decoded


def _proto_records(
    request: ExportLogsServiceRequest, limits: DecodeLimits
) -> Iterator[tuple[int, str, dict[str, Any], dict[str, Any]]]:
    for resource_logs in request.resource_logs:
        resource = _proto_attributes(resource_logs.resource.attributes, limits)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                body = record.body.string_value if record.body.HasField("string_value") else ""
                time = record.time_unix_nano or record.observed_time_unix_nano
                name = record.event_name or body
                yield (
                    time,
                    name[: limits.max_attribute_value_length],
                    (_proto_attributes(record.attributes, limits)),
                    resource,
                )


def _proto_attributes(entries: Any, limits: DecodeLimits) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for entry in list(entries)[: limits.max_attributes_per_span]:
        assert isinstance(entry, KeyValue)
        if not 0 < len(entry.key) <= limits.max_attribute_key_length:
            continue
        out[entry.key] = _proto_value(entry.value, limits)
    return out


def _proto_value(value: AnyValue, limits: DecodeLimits) -> Any:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value[: limits.max_attribute_value_length]
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bool_value":
        return value.bool_value
    return None  # arrays, maps and bytes say nothing the mapping reads


def _json_records(
    document: dict[str, Any], limits: DecodeLimits
) -> Iterator[tuple[int, str, dict[str, Any], dict[str, Any]]]:
    for resource_logs in _list(document, "resourceLogs", "resource_logs"):
        resource_obj = _object(resource_logs.get("resource"))
        resource = _json_attributes(resource_obj.get("attributes"), limits)
        for scope_logs in _list(resource_logs, "scopeLogs", "scope_logs"):
            for record in _list(scope_logs, "logRecords", "log_records"):
                time = _nanos(record.get("timeUnixNano", record.get("time_unix_nano")))
                if not time:
                    time = _nanos(
                        record.get("observedTimeUnixNano", record.get("observed_time_unix_nano"))
                    )
                body = _object(record.get("body")).get("stringValue")
                name = record.get("eventName", record.get("event_name")) or body
                yield (
                    time,
                    (name if isinstance(name, str) else "")[: limits.max_attribute_value_length],
                    _json_attributes(record.get("attributes"), limits),
                    resource,
                )


def _list(obj: Any, camel: str, snake: str) -> list[dict[str, Any]]:
    if not isinstance(obj, dict):
        raise MalformedBodyError("an OTLP/JSON envelope level is not an object")
    value = obj.get(camel, obj.get(snake, []))
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise MalformedBodyError(f"'{camel}' must be a list of objects")
    return value


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _nanos(value: Any) -> int:
    """A JSON ``fixed64``: a decimal string or an integer; -1 (rejected) when unreadable."""
    if value is None:
        return 0
    if type(value) is int:
        return value
    if isinstance(value, str) and value.isdigit() and len(value) <= 20:
        return int(value)
    return -1


def _json_attributes(entries: Any, limits: DecodeLimits) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not isinstance(entries, list):
        return out
    for entry in entries[: limits.max_attributes_per_span]:
        if not isinstance(entry, dict):
            continue
        key = entry.get("key")
        if not isinstance(key, str) or not 0 < len(key) <= limits.max_attribute_key_length:
            continue
        out[key] = _json_value(entry.get("value"), limits)
    return out


def _json_value(value: Any, limits: DecodeLimits) -> Any:
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("stringValue"), str):
        return value["stringValue"][: limits.max_attribute_value_length]
    if "intValue" in value:
        raw = value["intValue"]
        if type(raw) is int or (isinstance(raw, str) and raw.lstrip("-").isdigit()):
            number = int(raw)
            return number if -(2**63) <= number < 2**63 else None
        return None
    if "doubleValue" in value:
        raw = value["doubleValue"]
        return float(raw) if type(raw) in (int, float) and math.isfinite(raw) else None
    if isinstance(value.get("boolValue"), bool):
        return value["boolValue"]
    return None


# --- what becomes usage ---------------------------------------------------------------------


@dataclass(slots=True)
class LogCalls:
    calls: list[ReportedCall] = field(default_factory=list)
    no_usage: int = 0
    """Records that report no LLM call: counted and dropped."""
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)


def calls_from_logs(records: list[LogRecordView]) -> LogCalls:
    """The LLM calls the records report (see the module docstring); records of a known call
    event with unusable counts are rejected, with the reason."""
    result = LogCalls()
    for record in records:
        if not _is_api_request(record):
            result.no_usage += 1
            continue
        call = _claude_code_call(record)
        if isinstance(call, str):
            result.rejected += 1
            if len(result.reasons) < 5:
                result.reasons.append(call)
        else:
            result.calls.append(call)
    return result


def _is_api_request(record: LogRecordView) -> bool:
    name = record.attributes.get("event.name")
    return record.event_name == CLAUDE_CODE_API_REQUEST or (
        isinstance(name, str) and name in _API_REQUEST_NAMES
    )


def _count(attributes: Mapping[str, Any], key: str) -> int | str | None:
    """A token count: an integer (or its decimal text, as some agents send); None when
    absent; the reason when unusable."""
    value = attributes.get(key)
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if type(value) is not int or not 0 <= value <= _MAX_TOKENS:
        return f"{CLAUDE_CODE_API_REQUEST}: '{key}' must be a token count, got {value!r}"
    return value


def _claude_code_call(record: LogRecordView) -> ReportedCall | str:
    attributes, resource = record.attributes, record.resource_attributes
    model = attributes.get("model")
    if not isinstance(model, str) or not model:
        return f"{CLAUDE_CODE_API_REQUEST}: no 'model'"
    counts: dict[str, int | None] = {}
    for key in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens"):
        count = _count(attributes, key)
        if isinstance(count, str):
            return count
        counts[key] = count
    uncached, cache_read, cache_write = (
        counts["input_tokens"], counts["cache_read_tokens"], counts["cache_creation_tokens"]
    )  # fmt: skip
    # Claude Code's input_tokens leaves the cache out; the GenAI conventions' includes it.
    inputs = [c for c in (uncached, cache_read, cache_write) if c is not None]
    provided = _money(attributes.get("cost_usd"))
    service = resource.get(a.SERVICE_NAME)
    usage = reported_usage(
        provider="anthropic",
        operation="chat",
        request_model=model,
        response_model=None,
        input_tokens=sum(inputs) if inputs else None,
        output_tokens=counts["output_tokens"],
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=None,
        total_tokens=None,
        provided_cost=provided,
        error_type=None,
        failed=False,
        service=service if isinstance(service, str) else "claude-code",
        environment=None,
    )
    merged = {**resource, **attributes}
    user = _text(merged, "user.email") or _text(merged, "user.account_uuid")
    usage.user, usage.session = user, _text(merged, "session.id")
    duration = attributes.get("duration_ms")
    duration_ns = 0
    if isinstance(duration, (int, float)) and not isinstance(duration, bool):
        if 0 <= duration < 10**9:
            duration_ns = int(duration * 1_000_000)
    end = record.time_unix_nano
    start = max(end - duration_ns, 1)
    digest = hashlib.sha256(
        json.dumps(
            [record.time_unix_nano, record.event_name, attributes, resource],
            sort_keys=True, default=str,
        ).encode()
    ).hexdigest()  # fmt: skip
    return ReportedCall(
        usage=usage,
        trace_id=digest[:32],
        span_id=digest[32:48],
        name=f"chat {model}"[:256],
        start_time_unix_nano=start,
        end_time_unix_nano=end,
        failed=False,
        attributes={k: v for k, v in attributes.items() if k != "cost_usd"},
        resource_attributes=dict(resource),
    )


def _text(attributes: Mapping[str, Any], key: str) -> str | None:
    value = attributes.get(key)
    return value[:256] if isinstance(value, str) and value else None


def _money(value: Any) -> Decimal | None:
    if type(value) in (int, float) and math.isfinite(value) and value >= 0:
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            amount = Decimal(value)
        except InvalidOperation:
            return None
        return amount if amount.is_finite() and amount >= 0 else None
    return None


def encode_logs_response(fmt: OtlpFormat, *, rejected: int, message: str) -> tuple[bytes, str]:
    """The 200 body: ``partial_success`` with the rejected records, unset when none were."""
    if not rejected and not message:
        body = b"{}" if fmt is OtlpFormat.JSON else ExportLogsServiceResponse().SerializeToString()
        return body, fmt.content_type
    message = message[:_MAX_ERROR_MESSAGE]
    if fmt is OtlpFormat.PROTOBUF:
        response = ExportLogsServiceResponse()
        response.partial_success.rejected_log_records = rejected
        response.partial_success.error_message = message
        return response.SerializeToString(), fmt.content_type
    partial: dict[str, Any] = {}
    if rejected:
        partial["rejectedLogRecords"] = str(rejected)
    if message:
        partial["errorMessage"] = message
    return json.dumps({"partialSuccess": partial}).encode(), fmt.content_type
