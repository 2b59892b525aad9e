"""Binary protobuf OTLP trace requests to decoded spans, via the upb-backed generated classes.

This is the hot path. upb parses the whole request in C; what costs is every Python-level
field access (each makes a wrapper object), so each field is read once, into a local.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Sequence
from itertools import islice
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from aethermind.ingest.otlp._batch import (
    BAD_PARENT_SPAN_ID,
    BAD_SPAN_ID,
    BAD_START_TIME,
    BAD_TRACE_ID,
    REPLACEMENT,
    Batch,
    non_finite_name,
    time_problem,
)
from aethermind.ingest.otlp._wire import trim_spans
from aethermind.ingest.otlp.errors import MalformedBodyError
from aethermind.ingest.otlp.limits import MAX_TIME_UNIX_NANO, DecodeLimits
from aethermind.ingest.otlp.media import OtlpFormat
from aethermind.ingest.otlp.model import DecodedRequest, DecodedSpan

_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)
_MAX_SPAN_KIND = 5
_MAX_STATUS_CODE = 2
_which_value = AnyValue.WhichOneof
_isfinite = math.isfinite


def decode_protobuf(body: bytes, limits: DecodeLimits) -> DecodedRequest:
    """Decode a binary ``ExportTraceServiceRequest``; raises :class:`MalformedBodyError`."""
    trimmed = trim_spans(body, limits.max_spans_per_request)
    if trimmed is not None:
        body = trimmed.body
    try:
        request = ExportTraceServiceRequest.FromString(body)
    except Exception as exc:  # upb raises DecodeError; whatever the parser raises is a 400
        raise MalformedBodyError(f"invalid OTLP protobuf body: {exc}") from None
    batch = Batch(OtlpFormat.PROTOBUF, limits)
    if trimmed is not None:
        batch.reject_over_limit(trimmed.cut_spans, trimmed.first_cut_at)
    _ProtoReader(batch).read(request)
    return batch.result()


def _problem(span: Span) -> str:
    """Why a span failed the combined check in the hot loop, one test at a time."""
    trace_id = span.trace_id
    if len(trace_id) != 16 or trace_id == _ZERO_TRACE_ID:
        return BAD_TRACE_ID
    span_id = span.span_id
    if len(span_id) != 8 or span_id == _ZERO_SPAN_ID:
        return BAD_SPAN_ID
    if span.parent_span_id and len(span.parent_span_id) != 8:
        return BAD_PARENT_SPAN_ID
    # The hot loop only calls this for a span that failed one of these checks.
    return time_problem(span.start_time_unix_nano, span.end_time_unix_nano) or BAD_START_TIME


def _where(ri: int, si: int, k: int) -> str:
    return f"resource_spans[{ri}].scope_spans[{si}].spans[{k}]"


class _ProtoReader:
    __slots__ = (
        "_batch",
        "_keys",
        "_max_attrs",
        "_max_depth",
        "_max_items",
        "_max_key",
        "_max_len",
    )

    def __init__(self, batch: Batch) -> None:
        limits = batch.limits
        self._batch = batch
        self._keys: dict[str, str] = {}
        self._max_len = limits.max_attribute_value_length
        self._max_key = limits.max_attribute_key_length
        self._max_attrs = limits.max_attributes_per_span
        self._max_items = limits.max_array_length
        self._max_depth = limits.max_value_depth

    def read(self, request: ExportTraceServiceRequest) -> None:
        batch = self._batch
        spans_out = batch.spans
        append = spans_out.append
        text = self.text
        attributes = self.attributes
        max_len = self._max_len
        # The request holds at most max_spans_per_request spans: trim_spans cut the rest.
        for ri, resource_spans in enumerate(request.resource_spans):
            # Decoded at its first span: a resource without spans costs nothing and its
            # attributes count nowhere, in both wire formats.
            resource_attributes: dict[str, Any] | None = None
            for si, scope_spans in enumerate(resource_spans.scope_spans):
                spans = scope_spans.spans
                if not spans:
                    continue
                if resource_attributes is None:
                    resource_attributes = attributes(resource_spans.resource.attributes)
                scope = scope_spans.scope
                scope_name = text(scope.name)
                scope_version = text(scope.version)
                for k, span in enumerate(spans):
                    trace_id = span.trace_id
                    span_id = span.span_id
                    parent = span.parent_span_id
                    start = span.start_time_unix_nano
                    end = span.end_time_unix_nano
                    if (
                        len(trace_id) != 16
                        or trace_id == _ZERO_TRACE_ID
                        or len(span_id) != 8
                        or span_id == _ZERO_SPAN_ID
                        or (parent and len(parent) != 8)
                        or not 0 < start <= end <= MAX_TIME_UNIX_NANO
                    ):
                        batch.reject(_problem(span), _where(ri, si, k), span.name)
                        continue
                    name = span.name
                    if len(name) > max_len or "\x00" in name:
                        name = text(name)
                    kind: int = span.kind
                    if not 0 <= kind <= _MAX_SPAN_KIND:
                        kind = 0
                    status = span.status
                    code: int = status.code
                    if not 0 <= code <= _MAX_STATUS_CODE:
                        code = 0
                    message = status.message
                    if message:
                        message = text(message)
                    append(
                        DecodedSpan(
                            trace_id.hex(),
                            span_id.hex(),
                            parent.hex() if parent and parent != _ZERO_SPAN_ID else None,
                            name,
                            kind,
                            start,
                            end,
                            code,
                            message,
                            attributes(span.attributes),
                            resource_attributes,
                            scope_name,
                            scope_version,
                            len(span.events),
                        )
                    )

    def text(self, value: str) -> str:
        """A span-level string, cut to the value length limit; upb has checked its UTF-8."""
        if len(value) > self._max_len:
            value = value[: self._max_len]
            self._batch.truncated += 1
        if "\x00" in value:
            value = value.replace("\x00", REPLACEMENT)
        return value

    def attributes(self, pairs: Sequence[KeyValue]) -> dict[str, Any]:
        """``KeyValue`` list to a dict: the attributes of a span or a resource.

        The loop is the decoder's hottest code. Checking ``string_value`` before
        ``WhichOneof`` saves a call for strings, most values; keys go through a per-request
        cache, which both skips their checks after the first span and shares one key
        object among all spans. Attributes past the limit are dropped, first ones kept.
        """
        out: dict[str, Any] = {}
        count = len(pairs)
        if count > self._max_attrs:
            self._batch.dropped += count - self._max_attrs
            pairs = list(islice(pairs, self._max_attrs))
        keys = self._keys
        max_len = self._max_len
        for pair in pairs:
            value = pair.value
            item: Any = value.string_value
            if item:
                if len(item) > max_len:
                    item = item[:max_len]
                    self._batch.truncated += 1
                if "\x00" in item:
                    item = item.replace("\x00", REPLACEMENT)
            else:
                which = _which_value(value, "value")
                if which == "int_value":
                    item = value.int_value
                elif which == "bool_value":
                    item = value.bool_value
                elif which == "double_value":
                    item = value.double_value
                    if not _isfinite(item):
                        item = non_finite_name(item)
                elif which == "array_value":
                    # One-string arrays (finish reasons, in nearly every LLM span) inline;
                    # top-level arrays (depth 1) are always within max_value_depth >= 1.
                    values = value.array_value.values
                    if len(values) == 1:
                        first = values[0].string_value
                        if first and len(first) <= max_len and "\x00" not in first:
                            item = (first,)
                        else:
                            item = self._array(values, 2)
                    else:
                        item = self._array(values, 2)
                elif which != "string_value":
                    item = self._other_value(value, which, 1)
            raw_key = pair.key
            key = keys.get(raw_key)
            if key is None:
                key = keys[raw_key] = self._clean_key(raw_key)
            if key:
                out[key] = item
            else:
                self._batch.dropped += 1
        return out

    def _clean_key(self, key: str) -> str:
        """The key to store, or "" to drop the attribute (empty or over the length limit)."""
        if len(key) > self._max_key:
            return ""
        return key.replace("\x00", REPLACEMENT) if "\x00" in key else key

    def _value(self, value: AnyValue, depth: int) -> Any:
        which = _which_value(value, "value")
        if which == "string_value":
            return self.text(value.string_value)
        if which in ("int_value", "bool_value"):
            return getattr(value, which)
        if which == "double_value":
            number = value.double_value
            return number if _isfinite(number) else non_finite_name(number)
        return self._other_value(value, which, depth)

    def _other_value(self, value: AnyValue, which: str | None, depth: int) -> Any:
        """Empty, bytes, array and key-value list values, rare in LLM telemetry."""
        if which is None:
            return None
        if which == "bytes_value":
            raw = value.bytes_value
            if len(raw) > self._max_len:
                raw = raw[: self._max_len]
                self._batch.truncated += 1
            return base64.b64encode(raw).decode("ascii")
        if which == "array_value":
            if depth > self._max_depth:
                self._batch.truncated += 1
                return None
            return self._array(value.array_value.values, depth + 1)
        if which == "kvlist_value":
            if depth > self._max_depth:
                self._batch.truncated += 1
                return None
            return self._kvlist(self._cut(value.kvlist_value.values), depth + 1)
        # string_value_strindex points into a profiles dictionary no trace request has.
        self._batch.truncated += 1
        return None

    def _array(self, values: Sequence[AnyValue], depth: int) -> tuple[Any, ...]:
        """Array elements; the common short all-strings array (finish reasons) is cheapest."""
        if len(values) <= self._max_items:
            items = [element.string_value for element in values]
            if all(items):
                max_len = self._max_len
                for item in items:
                    if len(item) > max_len or "\x00" in item:
                        break
                else:
                    return tuple(items)
        return tuple([self._value(element, depth) for element in self._cut(values)])

    def _cut(self, items: Sequence[Any]) -> Iterable[Any]:
        if len(items) > self._max_items:
            self._batch.truncated += 1
            return islice(items, self._max_items)
        return items

    def _kvlist(self, pairs: Iterable[KeyValue], depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for pair in pairs:
            key = self._clean_key(pair.key)
            if key:
                out[key] = self._value(pair.value, depth)
            else:
                self._batch.dropped += 1
        return out
