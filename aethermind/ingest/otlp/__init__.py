"""The pure OTLP/HTTP trace layer of the receiver: read and inflate a body within limits,
decode protobuf or OTLP/JSON into flat spans, and encode the OTLP responses.

Typical handler flow::

    fmt = parse_content_type(request.headers.get("Content-Type"))      # 415
    body = await read_request_body(request, max_size=...)               # 413, 415, 400
    decoded = decode_body(body, fmt, limits=...)                        # 400
    ... store decoded.spans ...
    payload, content_type = encode_decoded_response(decoded)            # 200
    # on OtlpRequestError as exc: encode_error(exc, content_type=...), status exc.status
"""

from __future__ import annotations

from aethermind.ingest.otlp.body import (
    DEFAULT_MAX_BODY_SIZE,
    parse_content_encoding,
    read_body,
    read_request_body,
)
from aethermind.ingest.otlp.decode import decode_body, decode_traces
from aethermind.ingest.otlp.errors import (
    BodyTooLargeError,
    MalformedBodyError,
    OtlpRequestError,
    UnsupportedContentEncodingError,
    UnsupportedContentTypeError,
    UnsupportedMediaTypeError,
)
from aethermind.ingest.otlp.limits import DEFAULT_LIMITS, MAX_TIME_UNIX_NANO, DecodeLimits
from aethermind.ingest.otlp.media import (
    JSON_CONTENT_TYPE,
    PROTOBUF_CONTENT_TYPE,
    OtlpFormat,
    find_format,
    parse_content_type,
)
from aethermind.ingest.otlp.model import DecodedRequest, DecodedSpan
from aethermind.ingest.otlp.response import (
    encode_decoded_response,
    encode_error,
    encode_export_response,
    encode_status,
    grpc_code,
)

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_BODY_SIZE",
    "JSON_CONTENT_TYPE",
    "MAX_TIME_UNIX_NANO",
    "PROTOBUF_CONTENT_TYPE",
    "BodyTooLargeError",
    "DecodeLimits",
    "DecodedRequest",
    "DecodedSpan",
    "MalformedBodyError",
    "OtlpFormat",
    "OtlpRequestError",
    "UnsupportedContentEncodingError",
    "UnsupportedContentTypeError",
    "UnsupportedMediaTypeError",
    "decode_body",
    "decode_traces",
    "encode_decoded_response",
    "encode_error",
    "encode_export_response",
    "encode_status",
    "find_format",
    "grpc_code",
    "parse_content_encoding",
    "parse_content_type",
    "read_body",
    "read_request_body",
]
