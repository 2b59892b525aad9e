"""OTLP/HTTP response bodies, checked by parsing them back with the real generated classes
and the reference proto3 JSON mapping (``json_format``)."""

from __future__ import annotations

import json

import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from aethermind.ingest.otlp import (
    JSON_CONTENT_TYPE,
    PROTOBUF_CONTENT_TYPE,
    BodyTooLargeError,
    OtlpFormat,
    UnsupportedContentTypeError,
    decode_traces,
    encode_decoded_response,
    encode_error,
    encode_export_response,
    encode_status,
    grpc_code,
)
from tests.ingest.test_otlp_decode import json_body, json_request, json_span


def test_full_success_leaves_partial_success_unset() -> None:
    body, content_type = encode_export_response(OtlpFormat.PROTOBUF)
    assert content_type == "application/x-protobuf"
    assert not ExportTraceServiceResponse.FromString(body).HasField("partial_success")
    body, content_type = encode_export_response(OtlpFormat.JSON)
    assert (body, content_type) == (b"{}", "application/json")


def test_partial_success_in_protobuf() -> None:
    body, content_type = encode_export_response(
        OtlpFormat.PROTOBUF, rejected_spans=3, error_message="3 spans had bad ids"
    )
    response = ExportTraceServiceResponse.FromString(body)
    assert content_type == PROTOBUF_CONTENT_TYPE
    assert response.partial_success.rejected_spans == 3
    assert response.partial_success.error_message == "3 spans had bad ids"


def test_partial_success_in_json_has_rejected_spans_as_a_decimal_string() -> None:
    body, content_type = encode_export_response(
        OtlpFormat.JSON, rejected_spans=3, error_message="bad ids"
    )
    assert content_type == JSON_CONTENT_TYPE
    assert json.loads(body) == {"partialSuccess": {"rejectedSpans": "3", "errorMessage": "bad ids"}}
    expected = ExportTraceServiceResponse()
    expected.partial_success.rejected_spans = 3
    expected.partial_success.error_message = "bad ids"
    assert json.loads(body) == json_format.MessageToDict(expected)
    assert json_format.Parse(body, ExportTraceServiceResponse()) == expected


def test_a_warning_without_rejections_is_allowed_by_the_spec() -> None:
    body, _ = encode_export_response(OtlpFormat.JSON, error_message="attributes truncated")
    assert json.loads(body) == {"partialSuccess": {"errorMessage": "attributes truncated"}}


def test_response_for_a_decoded_request_reports_its_rejections_in_its_format() -> None:
    document = json_request(json_span(), json_span(traceId="00"))
    decoded = decode_traces(json_body(document), "application/json; charset=utf-8")
    body, content_type = encode_decoded_response(decoded)
    assert content_type == "application/json"
    partial = json.loads(body)["partialSuccess"]
    assert partial["rejectedSpans"] == "1"
    assert partial["errorMessage"].startswith("rejected 1 of 2 spans: 1 with an invalid trace id")


def test_negative_rejections_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="rejected_spans"):
        encode_export_response(OtlpFormat.JSON, rejected_spans=-1)


@pytest.mark.parametrize(
    "content_type", [PROTOBUF_CONTENT_TYPE, "application/x-protobuf; proto=x", OtlpFormat.PROTOBUF]
)
def test_error_status_in_protobuf_when_the_request_was_protobuf(
    content_type: str | OtlpFormat,
) -> None:
    body, response_type = encode_status(400, "bad body", content_type=content_type)
    assert response_type == PROTOBUF_CONTENT_TYPE
    status = status_pb2.Status.FromString(body)
    assert (status.code, status.message) == (3, "bad body")


@pytest.mark.parametrize("content_type", [JSON_CONTENT_TYPE, None, "", "text/plain"])
def test_error_status_is_json_when_the_request_was_json_or_unusable(
    content_type: str | None,
) -> None:
    body, response_type = encode_status(415, "unsupported", content_type=content_type)
    assert response_type == JSON_CONTENT_TYPE
    assert json.loads(body) == {"code": 3, "message": "unsupported"}
    expected = status_pb2.Status(code=3, message="unsupported")
    assert json_format.Parse(body, status_pb2.Status()) == expected


def test_encode_error_uses_the_errors_status() -> None:
    error = BodyTooLargeError("too big", limit=10)
    body, _ = encode_error(error, content_type=PROTOBUF_CONTENT_TYPE)
    status = status_pb2.Status.FromString(body)
    assert (status.code, status.message) == (8, "too big")  # RESOURCE_EXHAUSTED


def test_error_for_an_undecodable_header_is_still_encodable() -> None:
    # aiohttp decodes header bytes with surrogateescape; such text must not break encoding.
    error = UnsupportedContentTypeError("unsupported Content-Type 'x\udcff'")
    for fmt in OtlpFormat:
        body, _ = encode_error(error, content_type=fmt)
        assert body


def test_long_messages_are_cut() -> None:
    body, _ = encode_status(400, "x" * 100_000, content_type=JSON_CONTENT_TYPE)
    assert len(json.loads(body)["message"]) == 4096


@pytest.mark.parametrize(
    ("http_status", "code"),
    [(400, 3), (401, 16), (403, 7), (413, 8), (415, 3), (429, 8), (503, 14), (418, 2)],
)
def test_http_statuses_map_to_grpc_codes(http_status: int, code: int) -> None:
    assert grpc_code(http_status) == code
