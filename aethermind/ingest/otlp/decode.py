"""Decoding an OTLP/HTTP trace request body, protobuf or JSON, into flat spans.

Pure: bytes in, :class:`DecodedRequest` out, no I/O. Whatever the bytes, the only exceptions
are :class:`OtlpRequestError` subclasses (400 undecodable, 415 unsupported content type).
"""

from __future__ import annotations

from aethermind.ingest.otlp._json import decode_json
from aethermind.ingest.otlp._proto import decode_protobuf
from aethermind.ingest.otlp.limits import DEFAULT_LIMITS, DecodeLimits
from aethermind.ingest.otlp.media import OtlpFormat, parse_content_type
from aethermind.ingest.otlp.model import DecodedRequest


def decode_traces(
    body: bytes, content_type: str | None, *, limits: DecodeLimits = DEFAULT_LIMITS
) -> DecodedRequest:
    """Decode an ``ExportTraceServiceRequest`` sent with ``content_type``.

    Spans that cannot be stored (bad ids, bad times, past ``limits.max_spans_per_request``)
    are left out and counted in ``rejected_spans`` with an explanation in ``error_message``,
    ready for the response's ``partial_success``; the request as a whole fails only when it
    cannot be decoded (:class:`MalformedBodyError`, 400) or its content type is not OTLP
    (:class:`UnsupportedContentTypeError`, 415). An empty body is an empty protobuf request.
    """
    fmt = parse_content_type(content_type)
    return decode_body(body, fmt, limits=limits)


def decode_body(
    body: bytes, fmt: OtlpFormat, *, limits: DecodeLimits = DEFAULT_LIMITS
) -> DecodedRequest:
    """Like :func:`decode_traces` once the handler has already parsed the content type (it
    must before reading the body, to answer 415 without reading it)."""
    if fmt is OtlpFormat.PROTOBUF:
        return decode_protobuf(body, limits)
    return decode_json(body, limits)
