"""OTLP logs (``POST /v1/logs``): decode an ``ExportLogsServiceRequest`` (protobuf or
OTLP/JSON) within the same limits as spans into flat records, and encode the response.
Which records report an LLM call is ``agent_events``' business. Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from aethermind.ingest.otlp import (
    MAX_TIME_UNIX_NANO,
    DecodeLimits,
    MalformedBodyError,
    OtlpFormat,
)
from aethermind.ingest.otlp_fields import (
    Rejections,
    encode_partial_success,
    json_attributes,
    json_list,
    json_nanos,
    json_object,
    proto_attributes,
)


@dataclass(slots=True)
class LogRecordView:
    """One log record as the mapping reads it: its time, name and flat attributes."""

    time_unix_nano: int
    event_name: str
    attributes: dict[str, Any]
    resource_attributes: dict[str, Any]
    trace_id: str | None = None
    """The trace the record was emitted in (hex), when it was emitted inside a span..."""
    span_id: str | None = None
    """... and that span's id."""


_RawRecord = tuple[int, str, dict[str, Any], dict[str, Any], str | None, str | None]
_TRACE_ID_HEX = 32
_SPAN_ID_HEX = 16


def _context_id(value: Any, length: int) -> str | None:
    """A trace or span id as lower-case hex, or None when unset, malformed or all zero."""
    if isinstance(value, bytes):
        value = value.hex()
    if not isinstance(value, str) or len(value) != length:
        return None
    hex_id = value.lower()
    if hex_id.strip("0") == "" or any(c not in "0123456789abcdef" for c in hex_id):
        return None
    return hex_id


@dataclass(slots=True)
class DecodedLogs:
    format: OtlpFormat
    records: list[LogRecordView] = field(default_factory=list)
    rejections: Rejections = field(default_factory=Rejections)


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
        records: Iterator[_RawRecord] = _proto_records(request, limits)
    else:
        try:
            document = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise MalformedBodyError(f"body is not valid JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise MalformedBodyError("body must be a JSON object (ExportLogsServiceRequest)")
        records = _json_records(document, limits)
    room = limits.max_spans_per_request
    for time_unix_nano, event_name, attributes, resource, trace_id, span_id in records:
        if room <= 0:
            decoded.rejections.add(1, f"over the limit of {limits.max_spans_per_request} records")
            continue
        room -= 1
        if not 0 <= time_unix_nano <= MAX_TIME_UNIX_NANO:
            decoded.rejections.add(1, "timeUnixNano out of range")
            continue
        decoded.records.append(
            LogRecordView(time_unix_nano, event_name, attributes, resource, trace_id, span_id)
        )
    return decoded


def _proto_records(request: ExportLogsServiceRequest, limits: DecodeLimits) -> Iterator[_RawRecord]:
    for resource_logs in request.resource_logs:
        resource = proto_attributes(resource_logs.resource.attributes, limits)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                body = record.body.string_value if record.body.HasField("string_value") else ""
                time = record.time_unix_nano or record.observed_time_unix_nano
                name = record.event_name or body
                yield (
                    time,
                    name[: limits.max_attribute_value_length],
                    proto_attributes(record.attributes, limits),
                    resource,
                    _context_id(record.trace_id, _TRACE_ID_HEX),
                    _context_id(record.span_id, _SPAN_ID_HEX),
                )


def _json_records(document: dict[str, Any], limits: DecodeLimits) -> Iterator[_RawRecord]:
    for resource_logs in json_list(document, "resourceLogs", "resource_logs"):
        resource_obj = json_object(resource_logs.get("resource"))
        resource = json_attributes(resource_obj.get("attributes"), limits)
        for scope_logs in json_list(resource_logs, "scopeLogs", "scope_logs"):
            for record in json_list(scope_logs, "logRecords", "log_records"):
                time = json_nanos(record.get("timeUnixNano", record.get("time_unix_nano")))
                if not time:
                    time = json_nanos(
                        record.get("observedTimeUnixNano", record.get("observed_time_unix_nano"))
                    )
                body = json_object(record.get("body")).get("stringValue")
                name = record.get("eventName", record.get("event_name")) or body
                yield (
                    time,
                    (name if isinstance(name, str) else "")[: limits.max_attribute_value_length],
                    json_attributes(record.get("attributes"), limits),
                    resource,
                    _context_id(record.get("traceId", record.get("trace_id")), _TRACE_ID_HEX),
                    _context_id(record.get("spanId", record.get("span_id")), _SPAN_ID_HEX),
                )


def encode_logs_response(fmt: OtlpFormat, *, rejected: int, message: str) -> tuple[bytes, str]:
    """The 200 body: ``partial_success`` with the rejected records, unset when none were."""
    return encode_partial_success(
        fmt, ExportLogsServiceResponse(), "rejected_log_records", rejected, message
    )
