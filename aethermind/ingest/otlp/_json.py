"""OTLP/JSON trace requests to decoded spans, walking ``json.loads`` output directly.

OTLP/JSON is the proto3 JSON mapping with the OTLP spec's changes: ids are hex (not base64),
enums are integers, unknown fields are ignored. Being liberal in what we accept, ids may
also be base64 (the plain proto3 mapping some clients use), enums names, 64-bit integers
strings or numbers (the JS exporter sends numbers), and field names snake_case.

Only the envelope (``resourceSpans``, ``scopeSpans``, ``spans``) has to have the right JSON
types for the request to decode; anything wrong inside a span rejects that span alone, and
anything wrong inside an attribute drops that attribute alone.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable
from typing import Any

from aethermind.ingest.otlp._batch import (
    BAD_PARENT_SPAN_ID,
    BAD_SPAN_ID,
    BAD_START_TIME,
    BAD_TRACE_ID,
    Batch,
    clean_text,
    non_finite_name,
    time_problem,
)
from aethermind.ingest.otlp.errors import MalformedBodyError
from aethermind.ingest.otlp.limits import MAX_TIME_UNIX_NANO, DecodeLimits
from aethermind.ingest.otlp.media import OtlpFormat
from aethermind.ingest.otlp.model import DecodedRequest, DecodedSpan

NOT_AN_OBJECT = "that is not a JSON object"
BAD_NAME = "with a name that is not a string"
BAD_ATTRIBUTES = "with attributes that are not a list"

_UTF8_BOM = b"\xef\xbb\xbf"
# In a JSON text a NUL or a lone surrogate can only come from an escape, so when the body has
# neither escape no string needs cleaning and the walk skips the per-string check.
_NEEDS_CLEANING = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")

_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1
_MAX_INT_TEXT = 24
_MAX_SPAN_KIND = 5
_MAX_STATUS_CODE = 2

_SPAN_KINDS = {
    "SPAN_KIND_UNSPECIFIED": 0,
    "SPAN_KIND_INTERNAL": 1,
    "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4,
    "SPAN_KIND_CONSUMER": 5,
}
_STATUS_CODES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}

_STRING, _BOOL, _INT, _DOUBLE, _BYTES, _ARRAY, _KVLIST = range(7)
_VALUE_FIELDS = {
    "stringValue": _STRING,
    "string_value": _STRING,
    "boolValue": _BOOL,
    "bool_value": _BOOL,
    "intValue": _INT,
    "int_value": _INT,
    "doubleValue": _DOUBLE,
    "double_value": _DOUBLE,
    "bytesValue": _BYTES,
    "bytes_value": _BYTES,
    "arrayValue": _ARRAY,
    "array_value": _ARRAY,
    "kvlistValue": _KVLIST,
    "kvlist_value": _KVLIST,
}
_NON_FINITE_NAMES = frozenset({"NaN", "Infinity", "-Infinity"})


class _Invalid:
    """Marks a value of the wrong JSON type: its attribute is dropped."""


_INVALID = _Invalid()


def decode_json(body: bytes, limits: DecodeLimits) -> DecodedRequest:
    """Decode an OTLP/JSON ``ExportTraceServiceRequest``; raises :class:`MalformedBodyError`."""
    if body.startswith(_UTF8_BOM):
        body = body[len(_UTF8_BOM) :]
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError, bad UTF-8 and over-long integer literals.
        raise MalformedBodyError(f"invalid OTLP/JSON body: {exc}") from None
    if not isinstance(document, dict):
        raise MalformedBodyError(
            f"invalid OTLP/JSON body: expected an object, got {_json_type(document)}"
        )
    batch = Batch(OtlpFormat.JSON, limits)
    clean = clean_text if _NEEDS_CLEANING.search(body) else None
    _JsonReader(batch, clean).read(document)
    return batch.result()


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _field(obj: dict[str, Any], camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _envelope_list(obj: dict[str, Any], camel: str, snake: str, where: str) -> list[Any]:
    value = _field(obj, camel, snake)
    if value is None:
        return []
    if type(value) is not list:
        raise MalformedBodyError(
            f"invalid OTLP/JSON body: {where}{camel} must be an array, got {_json_type(value)}"
        )
    return value


def _envelope_object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if type(value) is not dict:
        raise MalformedBodyError(
            f"invalid OTLP/JSON body: {where} must be an object, got {_json_type(value)}"
        )
    return value


def _id(value: Any, size: int) -> bytes | None:
    """Hex (any case, per the spec) or base64 id of ``size`` bytes, or None."""
    if type(value) is not str:
        return None
    if len(value) == 2 * size:
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            return None
    elif len(value) == (size + 2) // 3 * 4:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
    else:
        return None
    # fromhex skips spaces, so a 32-character string may hold fewer bytes.
    return raw if len(raw) == size else None


def _uint64(value: Any) -> int | None:
    """A 64-bit unsigned integer as JSON allows it: number, decimal string, or the
    ``{"low", "high"}`` pair old JS exporters sent; None when it is none of these."""
    kind = type(value)
    if kind is int:
        number: int = value
    elif kind is str:
        number_or_none = _parse_int(value)
        if number_or_none is None:
            return None
        number = number_or_none
    elif kind is float:
        if not value.is_integer():
            return None
        number = int(value)
    elif kind is dict:
        low, high = value.get("low"), value.get("high")
        if type(low) is not int or type(high) is not int:
            return None
        number = (high & 0xFFFFFFFF) << 32 | (low & 0xFFFFFFFF)
    else:
        return None
    return number if 0 <= number <= _UINT64_MAX else None


def _int64(value: Any) -> int | None:
    kind = type(value)
    if kind is int:
        number: int = value
    elif kind is str:
        number_or_none = _parse_int(value)
        if number_or_none is None:
            return None
        number = number_or_none
    elif kind is float:
        if not value.is_integer():
            return None
        number = int(value)
    else:
        return None
    return number if _INT64_MIN <= number <= _INT64_MAX else None


def _parse_int(text: str) -> int | None:
    """A decimal string to int. ``int()`` also takes spaces, ``_`` and other scripts' digits,
    which is harmless; the length bound keeps it from ever doing big-number work."""
    if len(text) > _MAX_INT_TEXT:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _enum(value: Any, names: dict[str, int], highest: int) -> int:
    """An enum as the spec says (an integer) or as proto3 JSON also allows (its name);
    anything unknown reads as 0, the unspecified value."""
    kind = type(value)
    if kind is int:
        number: int = value
    elif kind is str:
        if value.isascii() and value.isdigit() and len(value) < 4:
            number = int(value)
        else:
            number = names.get(value.upper(), 0)
    else:
        return 0
    return number if 0 <= number <= highest else 0


def _where(ri: int, si: int, k: int) -> str:
    return f"resourceSpans[{ri}].scopeSpans[{si}].spans[{k}]"


class _JsonReader:
    __slots__ = (
        "_batch",
        "_clean",
        "_keys",
        "_max_attrs",
        "_max_depth",
        "_max_items",
        "_max_key",
        "_max_len",
    )

    def __init__(self, batch: Batch, clean: Callable[[str], str] | None) -> None:
        limits = batch.limits
        self._batch = batch
        self._clean = clean
        self._keys: dict[str, str] = {}
        self._max_len = limits.max_attribute_value_length
        self._max_key = limits.max_attribute_key_length
        self._max_attrs = limits.max_attributes_per_span
        self._max_items = limits.max_array_length
        self._max_depth = limits.max_value_depth

    def read(self, document: dict[str, Any]) -> None:
        batch = self._batch
        room = batch.limits.max_spans_per_request
        text = self.text
        for ri, raw_resource_spans in enumerate(
            _envelope_list(document, "resourceSpans", "resource_spans", "")
        ):
            where = f"resourceSpans[{ri}]"
            resource_spans = _envelope_object(raw_resource_spans, where)
            resource = _envelope_object(resource_spans.get("resource"), f"{where}.resource")
            resource_entries = _envelope_list(
                resource, "attributes", "attributes", f"{where}.resource."
            )
            # Decoded at its first kept span, as the protobuf reader does.
            resource_attributes: dict[str, Any] | None = None
            for si, raw_scope_spans in enumerate(
                _envelope_list(resource_spans, "scopeSpans", "scope_spans", f"{where}.")
            ):
                scope_where = f"{where}.scopeSpans[{si}]"
                scope_spans = _envelope_object(raw_scope_spans, scope_where)
                spans = _envelope_list(scope_spans, "spans", "spans", f"{scope_where}.")
                count = len(spans)
                if count > room:
                    batch.reject_over_limit(count - room, _where(ri, si, room))
                    count = room
                room -= count
                if not count:
                    continue
                if resource_attributes is None:
                    resource_attributes = self.attributes(resource_entries)
                scope = _envelope_object(scope_spans.get("scope"), f"{scope_where}.scope")
                name = scope.get("name")
                version = scope.get("version")
                scope_name = text(name) if type(name) is str else ""
                scope_version = text(version) if type(version) is str else ""
                for k in range(count):
                    span = spans[k]
                    if type(span) is not dict:
                        batch.reject(NOT_AN_OBJECT, _where(ri, si, k))
                        continue
                    decoded = self.span(span, resource_attributes, scope_name, scope_version)
                    if isinstance(decoded, str):
                        batch.reject(decoded, _where(ri, si, k), span.get("name"))
                    else:
                        batch.spans.append(decoded)

    def span(
        self,
        span: dict[str, Any],
        resource_attributes: dict[str, Any],
        scope_name: str,
        scope_version: str,
    ) -> DecodedSpan | str:
        """The decoded span, or the reason to reject it."""
        get = span.get
        trace_id = _id(get("traceId") or get("trace_id"), 16)
        if trace_id is None or trace_id == _ZERO_TRACE_ID:
            return BAD_TRACE_ID
        span_id = _id(get("spanId") or get("span_id"), 8)
        if span_id is None or span_id == _ZERO_SPAN_ID:
            return BAD_SPAN_ID
        parent_hex: str | None = None
        parent = get("parentSpanId") or get("parent_span_id")
        if parent:  # absent, null and "" all mean a root span
            parent_id = _id(parent, 8)
            if parent_id is None:
                return BAD_PARENT_SPAN_ID
            if parent_id != _ZERO_SPAN_ID:
                parent_hex = parent_id.hex()
        start = get("startTimeUnixNano")
        start = _uint64(get("start_time_unix_nano") if start is None else start)
        end = get("endTimeUnixNano")
        end = _uint64(get("end_time_unix_nano") if end is None else end)
        if start is None or end is None or not 0 < start <= end <= MAX_TIME_UNIX_NANO:
            # None (not a number) reads as 0, which time_problem reports as missing.
            return time_problem(start or 0, end or 0) or BAD_START_TIME
        name = get("name")
        if name is None:
            name = ""
        elif type(name) is not str:
            return BAD_NAME
        attributes = get("attributes")
        if attributes is None:
            attributes = []
        elif type(attributes) is not list:
            return BAD_ATTRIBUTES
        status = get("status")
        code = 0
        message = ""
        if type(status) is dict:
            code = _enum(status.get("code"), _STATUS_CODES, _MAX_STATUS_CODE)
            raw_message = status.get("message")
            if type(raw_message) is str and raw_message:
                message = self.text(raw_message)
        events = get("events")
        return DecodedSpan(
            trace_id.hex(),
            span_id.hex(),
            parent_hex,
            self.text(name) if name else name,
            _enum(get("kind"), _SPAN_KINDS, _MAX_SPAN_KIND),
            start,
            end,
            code,
            message,
            self.attributes(attributes),
            resource_attributes,
            scope_name,
            scope_version,
            len(events) if type(events) is list else 0,
        )

    def text(self, value: str) -> str:
        if len(value) > self._max_len:
            value = value[: self._max_len]
            self._batch.truncated += 1
        return value if self._clean is None else self._clean(value)

    def attributes(self, entries: list[Any]) -> dict[str, Any]:
        """A JSON ``KeyValue`` array to a dict; see ``_ProtoReader.attributes`` for the key
        cache. Entries that are not ``{"key": str, "value": object}`` are dropped."""
        out: dict[str, Any] = {}
        count = len(entries)
        if count > self._max_attrs:
            self._batch.dropped += count - self._max_attrs
            entries = entries[: self._max_attrs]
        keys = self._keys
        max_len = self._max_len
        clean = self._clean
        for entry in entries:
            if type(entry) is not dict:
                self._batch.dropped += 1
                continue
            value = entry.get("value")
            if type(value) is dict:
                # The common value kinds inline, by lowerCamelCase name; anything else
                # (snake_case, bytes, arrays, wrong types) goes through _value.
                item = value.get("stringValue")
                if type(item) is str:
                    if len(item) > max_len:
                        item = item[:max_len]
                        self._batch.truncated += 1
                    if clean is not None:
                        item = clean(item)
                elif item is None and (raw := value.get("intValue")) is not None:
                    item = _int64(raw)
                    if item is None:
                        item = _INVALID
                elif item is None and type(raw := value.get("boolValue")) is bool:
                    item = raw
                elif item is None and (raw := value.get("doubleValue")) is not None:
                    item = _double(raw)
                elif item is None and (raw := value.get("arrayValue")) is not None:
                    # Top-level arrays (depth 1) are always within max_value_depth >= 1.
                    item = self._array(raw, 2)
                else:
                    item = self._value(value, 1)
            elif value is None:
                item = None
            else:
                item = _INVALID
            raw_key = entry.get("key")
            if type(raw_key) is str:
                key = keys.get(raw_key)
                if key is None:
                    key = keys[raw_key] = self._clean_key(raw_key)
            else:
                key = ""
            if key and item is not _INVALID:
                out[key] = item
            else:
                self._batch.dropped += 1
        return out

    def _clean_key(self, key: str) -> str:
        if len(key) > self._max_key:
            return ""
        return key if self._clean is None else self._clean(key)

    def _value(self, value: dict[str, Any], depth: int) -> Any:
        """A JSON ``AnyValue`` object: the first known field that is not null wins, as in
        a proto3 oneof; no known field is the empty value (None)."""
        for field, raw in value.items():
            kind = _VALUE_FIELDS.get(field)
            if kind is None or raw is None:
                continue  # unknown fields are ignored, per the OTLP/JSON spec
            if kind == _STRING:
                return self.text(raw) if type(raw) is str else _INVALID
            if kind == _INT:
                number = _int64(raw)
                return _INVALID if number is None else number
            if kind == _BOOL:
                return raw if type(raw) is bool else _INVALID
            if kind == _DOUBLE:
                return _double(raw)
            if kind == _BYTES:
                return self._bytes(raw)
            if depth > self._max_depth:
                self._batch.truncated += 1
                return None
            if kind == _ARRAY:
                return self._array(raw, depth + 1)
            return self._kvlist(raw, depth + 1)
        return None

    def _nested(self, value: Any, depth: int) -> Any:
        """An array element or key-value list value; a wrong type becomes None."""
        if type(value) is not dict:
            if value is not None:
                self._batch.truncated += 1
            return None
        item = self._value(value, depth)
        if item is _INVALID:
            self._batch.truncated += 1
            return None
        return item

    def _items(self, container: Any) -> list[Any] | _Invalid:
        """The ``values`` list of an ``arrayValue`` or ``kvlistValue``, cut to the limit."""
        if type(container) is not dict:
            return _INVALID
        values = container.get("values")
        if values is None:
            return []
        if type(values) is not list:
            return _INVALID
        if len(values) > self._max_items:
            self._batch.truncated += 1
            return values[: self._max_items]
        return values

    def _array(self, container: Any, depth: int) -> tuple[Any, ...] | _Invalid:
        values = self._items(container)
        if isinstance(values, _Invalid):
            return values
        # The common short all-strings array (finish reasons) without a call per element.
        if all(type(element) is dict for element in values):
            strings = [element.get("stringValue") for element in values]
            if all(type(item) is str for item in strings):
                return tuple([self.text(item) for item in strings])
        return tuple([self._nested(element, depth) for element in values])

    def _kvlist(self, container: Any, depth: int) -> dict[str, Any] | _Invalid:
        entries = self._items(container)
        if isinstance(entries, _Invalid):
            return entries
        out: dict[str, Any] = {}
        for entry in entries:
            key = entry.get("key") if type(entry) is dict else None
            key = self._clean_key(key) if type(key) is str else ""
            if key:
                out[key] = self._nested(entry.get("value"), depth)
            else:
                self._batch.dropped += 1
        return out

    def _bytes(self, raw: Any) -> str | _Invalid:
        """Base64 (standard or URL-safe, padding optional, as proto3 JSON parsers accept)."""
        if type(raw) is not str:
            return _INVALID
        try:
            padded = raw + "=" * (-len(raw) % 4)
            if "-" in raw or "_" in raw:
                data = base64.urlsafe_b64decode(padded)
            else:
                data = base64.b64decode(padded, validate=True)
        except (binascii.Error, ValueError):
            return _INVALID
        if len(data) > self._max_len:
            data = data[: self._max_len]
            self._batch.truncated += 1
        return base64.b64encode(data).decode("ascii")


def _double(raw: Any) -> float | str | _Invalid:
    """A JSON number, or a string as proto3 JSON allows ("1.5", "NaN", "Infinity")."""
    kind = type(raw)
    if kind is float:
        number: float = raw
    elif kind is int:
        try:
            number = float(raw)
        except OverflowError:
            return _INVALID
    elif kind is str:
        if raw in _NON_FINITE_NAMES:
            name: str = raw
            return name
        if not (0 < len(raw) <= 64 and raw.isascii()):
            return _INVALID
        try:
            number = float(raw)
        except ValueError:
            return _INVALID
    else:
        return _INVALID
    return number if math.isfinite(number) else non_finite_name(number)
