"""OTLP logs (``POST /v1/logs``): decode an ``ExportLogsServiceRequest`` (protobuf or
OTLP/JSON) within the same limits as spans into flat records, and encode the response.
Which records report an LLM call is ``agent_events``' business. Pure: no I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from aethermind.ingest.otlp import (
    MAX_TIME_UNIX_NANO,
    DecodeLimits,
    MalformedBodyError,
    OtlpFormat,
)

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
