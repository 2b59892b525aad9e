"""Cutting a binary OTLP trace request down to ``max_spans_per_request`` spans before parsing.

upb allocates every message of a request before Python sees any: 16 MiB of two-byte empty
spans costs about 1.5 GB and 5 s. Walking only the envelope (requests, resource spans,
scope spans, span boundaries) in Python and re-framing the request to stop after the last
span we keep bounds that by the limit. Spans are never looked into here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

from aethermind.ingest.otlp.errors import MalformedBodyError

_LEN = 2
_TAG_RESOURCE_SPANS = 1  # ExportTraceServiceRequest.resource_spans
_TAG_SCOPE_SPANS = 2  # ResourceSpans.scope_spans
_TAG_SPANS = 2  # ScopeSpans.spans
_SPAN_TAG_BYTE = 0x12  # field 2, wire type LEN: starts every span on the wire


class _Unreadable(Exception):
    """The envelope is not well-formed."""


@dataclass(frozen=True, slots=True)
class Trimmed:
    """A request cut after its first ``kept`` spans, and what was cut."""

    body: bytes
    cut_spans: int
    first_cut_at: str
    """Where the first cut span was, as ``resource_spans[i].scope_spans[j].spans[k]``."""


def trim_spans(body: bytes, max_spans: int) -> Trimmed | None:
    """The request cut to ``max_spans`` spans, or None when it has no more than that.

    Raises :class:`MalformedBodyError` when the envelope cannot be walked: truncated, a
    length past its end, an invalid wire type, unbalanced groups. upb refuses all of those
    too, but only after allocating everything before them, which is what this avoids.
    """
    # Every span starts with a 0x12 byte, so a body with fewer such bytes (the usual case,
    # checked in microseconds) cannot hold too many spans.
    if body.count(_SPAN_TAG_BYTE) <= max_spans:
        return None
    try:
        return _trim(body, max_spans)
    except (_Unreadable, IndexError):  # IndexError: a field runs past the end
        raise MalformedBodyError(
            "invalid OTLP protobuf body: the request envelope is truncated or malformed"
        ) from None


def _trim(data: bytes, max_spans: int) -> Trimmed | None:
    seen = 0
    cut: tuple[int, int, int, int, int] | None = None
    cut_where = ""
    cut_count = 0
    end = len(data)
    pos = 0
    ri = -1
    while pos < end:
        field_start = pos
        field, wire, pos = _tag(data, pos)
        if field != _TAG_RESOURCE_SPANS or wire != _LEN:
            pos = _skip(data, pos, field, wire, end)
            continue
        length, pos = _varint(data, pos)
        resource_end = _within(pos + length, end)
        ri += 1
        resource_start = pos
        si = -1
        while pos < resource_end:
            scope_field_start = pos
            field, wire, pos = _tag(data, pos)
            if field != _TAG_SCOPE_SPANS or wire != _LEN:
                pos = _skip(data, pos, field, wire, resource_end)
                continue
            length, pos = _varint(data, pos)
            scope_end = _within(pos + length, resource_end)
            si += 1
            scope_start = pos
            k = 0
            while pos < scope_end:
                span_start = pos
                if data[pos] == _SPAN_TAG_BYTE and data[pos + 1] < 0x80:
                    # The common case inline: a span under 128 bytes' worth of length byte.
                    pos = _within(pos + 2 + data[pos + 1], scope_end)
                else:
                    field, wire, pos = _tag(data, pos)
                    if field != _TAG_SPANS or wire != _LEN:
                        pos = _skip(data, pos, field, wire, scope_end)
                        continue
                    length, pos = _varint(data, pos)
                    pos = _within(pos + length, scope_end)
                if seen < max_spans:
                    seen += 1
                elif cut is None:
                    cut = (field_start, resource_start, scope_field_start, scope_start, span_start)
                    cut_where = f"resource_spans[{ri}].scope_spans[{si}].spans[{k}]"
                    cut_count = 1
                else:
                    cut_count += 1
                k += 1
    if cut is None:
        return None
    request_field, resource_start, scope_field, scope_start, span_start = cut
    # Re-frame: everything before the cut span, with the two enclosing lengths rewritten;
    # whatever followed it (later spans, scopes, resources, schema URLs) is dropped.
    scope_payload = data[scope_start:span_start]
    resource_payload = (
        data[resource_start:scope_field] + _field_header(_TAG_SCOPE_SPANS, len(scope_payload))
    ) + scope_payload
    body = (
        data[:request_field]
        + _field_header(_TAG_RESOURCE_SPANS, len(resource_payload))
        + resource_payload
    )
    return Trimmed(body=body, cut_spans=cut_count, first_cut_at=cut_where)


def _tag(data: bytes, pos: int) -> tuple[int, int, int]:
    byte = data[pos]
    if byte < 0x80:
        tag, pos = byte, pos + 1
    else:
        tag, pos = _varint(data, pos)
    field = tag >> 3
    if field == 0:
        _fail()
    return field, tag & 7, pos


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    end = len(data)
    while True:
        if pos >= end or shift > 63:
            _fail()
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _skip(data: bytes, pos: int, field: int, wire: int, end: int) -> int:
    """Past one field value of ``wire`` type, as upb skips unknown fields; groups are
    walked with an explicit stack, so no nesting depth can exhaust the Python stack."""
    groups: list[int] = []
    while True:
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == _LEN:
            length, pos = _varint(data, pos)
            pos += length
        elif wire == 5:
            pos += 4
        elif wire == 3:
            groups.append(field)
        elif wire == 4 and groups and groups[-1] == field:
            groups.pop()
        else:
            _fail()
        pos = _within(pos, end)
        if not groups:
            return pos
        field, wire, pos = _tag(data, pos)


def _within(pos: int, end: int) -> int:
    if pos > end:
        _fail()
    return pos


def _field_header(field: int, length: int) -> bytes:
    return _encode_varint(field << 3 | _LEN) + _encode_varint(length)


def _encode_varint(number: int) -> bytes:
    out = bytearray()
    while number >= 0x80:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _fail() -> NoReturn:
    raise _Unreadable
