"""OTLP/HTTP response bodies: ``ExportTraceServiceResponse`` on success, ``google.rpc.Status``
on failure, each in the request's encoding, with the exact ``Content-Type`` to send.

Protobuf bodies come from the real generated classes. JSON bodies are written by hand for
these two tiny messages, following the proto3 JSON mapping (defaults omitted, ``int64``
``rejectedSpans`` as a decimal string); the tests check them against ``json_format``, which is
kept out of here because ``google.protobuf`` ships no type stubs.
"""

from __future__ import annotations

import json
from typing import Any

from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from aethermind.ingest.otlp.errors import OtlpRequestError
from aethermind.ingest.otlp.media import OtlpFormat, find_format
from aethermind.ingest.otlp.model import DecodedRequest

_MAX_MESSAGE_LENGTH = 4096

# HTTP status -> google.rpc.Code, after the HTTP mapping documented in google/rpc/code.proto;
# 413 is what gRPC servers answer for an oversized message. The spec says clients must not
# act on Status.code, so it is for people reading logs.
_GRPC_CODES = {
    400: code_pb2.INVALID_ARGUMENT,
    401: code_pb2.UNAUTHENTICATED,
    403: code_pb2.PERMISSION_DENIED,
    404: code_pb2.NOT_FOUND,
    409: code_pb2.ABORTED,
    413: code_pb2.RESOURCE_EXHAUSTED,
    415: code_pb2.INVALID_ARGUMENT,
    429: code_pb2.RESOURCE_EXHAUSTED,
    499: code_pb2.CANCELLED,
    500: code_pb2.INTERNAL,
    501: code_pb2.UNIMPLEMENTED,
    503: code_pb2.UNAVAILABLE,
    504: code_pb2.DEADLINE_EXCEEDED,
}

_FULL_SUCCESS = {
    # The spec: "The server MUST leave the partial_success field unset" on full success.
    OtlpFormat.PROTOBUF: ExportTraceServiceResponse().SerializeToString(),
    OtlpFormat.JSON: b"{}",
}


def grpc_code(http_status: int) -> int:
    """The ``google.rpc.Code`` for an HTTP status; UNKNOWN when there is no fitting one."""
    code: int = _GRPC_CODES.get(http_status, code_pb2.UNKNOWN)
    return code


def encode_export_response(
    fmt: OtlpFormat, *, rejected_spans: int = 0, error_message: str = ""
) -> tuple[bytes, str]:
    """The 200 response body and its ``Content-Type``.

    ``partial_success`` is set when spans were rejected or there is a message (the spec
    allows a warning with ``rejected_spans`` 0), and left unset otherwise.
    """
    if rejected_spans < 0:
        raise ValueError(f"rejected_spans must not be negative, got {rejected_spans}")
    if not rejected_spans and not error_message:
        return _FULL_SUCCESS[fmt], fmt.content_type
    message = _safe_message(error_message)
    if fmt is OtlpFormat.PROTOBUF:
        response = ExportTraceServiceResponse()
        response.partial_success.rejected_spans = rejected_spans
        response.partial_success.error_message = message
        return _serialize(response), fmt.content_type
    partial: dict[str, Any] = {}
    if rejected_spans:
        partial["rejectedSpans"] = str(rejected_spans)
    if message:
        partial["errorMessage"] = message
    return _json({"partialSuccess": partial}), fmt.content_type


def encode_decoded_response(
    decoded: DecodedRequest, *, later_rejected: int = 0, later_reason: str = ""
) -> tuple[bytes, str]:
    """The 200 response for a decoded request, reporting the spans the decoder rejected and
    ``later_rejected`` more that a later step refused (``later_reason`` says why)."""
    return encode_export_response(
        decoded.format,
        rejected_spans=decoded.rejected_spans + later_rejected,
        error_message="; ".join(m for m in (decoded.error_message, later_reason) if m),
    )


def encode_status(
    http_status: int, message: str, *, content_type: OtlpFormat | str | None = None
) -> tuple[bytes, str]:
    """A 4xx/5xx body: a ``google.rpc.Status`` with ``code`` and ``message``.

    ``content_type`` is the request's ``Content-Type`` header (or its parsed format); the
    body is JSON when it names neither OTLP encoding, as for a 415, so it stays readable.
    """
    fmt = content_type if isinstance(content_type, OtlpFormat) else find_format(content_type)
    if fmt is None:
        fmt = OtlpFormat.JSON
    code = grpc_code(http_status)
    message = _safe_message(message)
    if fmt is OtlpFormat.PROTOBUF:
        return _serialize(status_pb2.Status(code=code, message=message)), fmt.content_type
    status: dict[str, Any] = {}
    if code:
        status["code"] = code
    if message:
        status["message"] = message
    return _json(status), fmt.content_type


def encode_error(
    error: OtlpRequestError, *, content_type: OtlpFormat | str | None = None
) -> tuple[bytes, str]:
    """The body for a decoding-layer error; answer it with ``error.status``."""
    return encode_status(error.status, error.message, content_type=content_type)


def _safe_message(message: str) -> str:
    # Protobuf strings must be valid UTF-8; a header aiohttp decoded with surrogateescape
    # could otherwise make encoding the error itself fail.
    if len(message) > _MAX_MESSAGE_LENGTH:
        message = message[: _MAX_MESSAGE_LENGTH - 3] + "..."
    return message.encode("utf-8", "replace").decode("utf-8")


def _serialize(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return data


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode("ascii")
