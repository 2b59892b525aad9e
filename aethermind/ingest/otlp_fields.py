"""Flat attribute and envelope decoding shared by the OTLP logs and metrics decoders: the
values a usage mapping reads (strings, numbers, booleans), bounded by the same limits as
spans' attributes; arrays, maps and bytes are dropped. Pure: no I/O.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from aethermind.ingest.otlp import DecodeLimits, MalformedBodyError, OtlpFormat

MAX_ERROR_MESSAGE = 1000
"""The longest ``partial_success.error_message`` sent back."""
_MAX_REASONS = 5


@dataclass(slots=True)
class Rejections:
    """Records (or data points) a request held that are not kept, and the first reasons."""

    count: int = 0
    reasons: list[str] = field(default_factory=list)

    def add(self, count: int, reason: str) -> None:
        self.count += count
        if len(self.reasons) < _MAX_REASONS:
            self.reasons.append(reason)

    @property
    def message(self) -> str:
        return "; ".join(self.reasons)[:MAX_ERROR_MESSAGE]


def proto_attributes(entries: Any, limits: DecodeLimits) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for entry in list(entries)[: limits.max_attributes_per_span]:
        assert isinstance(entry, KeyValue)
        if not 0 < len(entry.key) <= limits.max_attribute_key_length:
            continue
        out[entry.key] = proto_value(entry.value, limits)
    return out


def proto_value(value: AnyValue, limits: DecodeLimits) -> Any:
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


def json_list(obj: Any, camel: str, snake: str) -> list[dict[str, Any]]:
    if not isinstance(obj, dict):
        raise MalformedBodyError("an OTLP/JSON envelope level is not an object")
    value = obj.get(camel, obj.get(snake, []))
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise MalformedBodyError(f"'{camel}' must be a list of objects")
    return value


def json_object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def json_nanos(value: Any) -> int:
    """A JSON ``fixed64``: a decimal string or an integer; -1 (rejected) when unreadable."""
    if value is None:
        return 0
    if type(value) is int:
        return value
    if isinstance(value, str) and value.isdigit() and len(value) <= 20:
        return int(value)
    return -1


def json_attributes(entries: Any, limits: DecodeLimits) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not isinstance(entries, list):
        return out
    for entry in entries[: limits.max_attributes_per_span]:
        if not isinstance(entry, dict):
            continue
        key = entry.get("key")
        if not isinstance(key, str) or not 0 < len(key) <= limits.max_attribute_key_length:
            continue
        out[key] = json_value(entry.get("value"), limits)
    return out


def json_value(value: Any, limits: DecodeLimits) -> Any:
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


def encode_partial_success(
    fmt: OtlpFormat, response: Message, rejected_field: str, rejected: int, message: str
) -> tuple[bytes, str]:
    """An ``Export*ServiceResponse`` 200 body in the request's encoding: ``partial_success``
    with ``rejected`` items in ``rejected_field`` (snake case) and ``message``, unset when
    nothing was rejected and there is nothing to say."""
    if not rejected and not message:
        body = b"{}" if fmt is OtlpFormat.JSON else response.SerializeToString()
        return body, fmt.content_type
    message = message[:MAX_ERROR_MESSAGE]
    if fmt is OtlpFormat.PROTOBUF:
        partial = response.partial_success  # type: ignore[attr-defined]
        setattr(partial, rejected_field, rejected)
        partial.error_message = message
        return response.SerializeToString(), fmt.content_type
    body_fields: dict[str, Any] = {}
    if rejected:
        head, *rest = rejected_field.split("_")
        body_fields[head + "".join(word.title() for word in rest)] = str(rejected)
    if message:
        body_fields["errorMessage"] = message
    return json.dumps({"partialSuccess": body_fields}).encode(), fmt.content_type
