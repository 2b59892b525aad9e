"""Decoding OTLP trace requests as real exporters send them, protobuf and OTLP/JSON.

Protobuf input comes from the OTel Python SDK's own encoder on real spans, so it is byte for
byte what the OTLP/HTTP exporter sends; OTLP/JSON input is written by hand per the spec.
The helpers at the top are shared with the fuzz tests.
"""

from __future__ import annotations

import base64
import json
import math
import subprocess
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from aethermind.ingest.otlp import (
    JSON_CONTENT_TYPE,
    MAX_TIME_UNIX_NANO,
    PROTOBUF_CONTENT_TYPE,
    DecodedRequest,
    DecodedSpan,
    DecodeLimits,
    MalformedBodyError,
    OtlpFormat,
    OtlpRequestError,
    UnsupportedContentTypeError,
    decode_traces,
)

# --- helpers (also used by test_otlp_fuzz) ---------------------------------------------

OTLP_KIND = {
    SpanKind.INTERNAL: 1,
    SpanKind.SERVER: 2,
    SpanKind.CLIENT: 3,
    SpanKind.PRODUCER: 4,
    SpanKind.CONSUMER: 5,
}
TRACE_ID = "5b8efff798038103d269b633813fc60c"
SPAN_ID = "eee19b7ec3c1b174"
PARENT_ID = "eee19b7ec3c1b173"
START = 1_700_000_000_000_000_000
END = START + 1_500_000_000


def record_sdk_spans(count: int = 3) -> list[ReadableSpan]:
    """Real finished SDK spans: an LLM call with typical GenAI attributes under a parent."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "chatbot", "deployment.environment": "prod"})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("opentelemetry.instrumentation.openai", "0.40.0")
    with tracer.start_as_current_span("agent run", kind=SpanKind.INTERNAL):
        for i in range(count):
            with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT) as span:
                span.set_attributes(
                    {
                        "gen_ai.system": "openai",
                        "gen_ai.request.model": "gpt-4o",
                        "gen_ai.usage.input_tokens": 1200 + i,
                        "gen_ai.usage.output_tokens": 300,
                        "gen_ai.request.temperature": 0.7,
                        "gen_ai.response.finish_reasons": ("stop", "length"),
                        "llm.is_streaming": False,
                        "llm.request.functions": (1, 2, 3),
                    }
                )
                span.add_event("gen_ai.content.prompt", {"gen_ai.prompt": "hi"})
                if i == 1:
                    span.set_status(Status(StatusCode.ERROR, "rate limited"))
    provider.shutdown()
    return list(exporter.get_finished_spans())


def sdk_request(count: int = 3) -> tuple[ExportTraceServiceRequest, list[ReadableSpan]]:
    spans = record_sdk_spans(count)
    return encode_spans(spans), spans


def to_otlp_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """OTLP/JSON per the spec: the proto3 JSON mapping, but hex ids and integer enums."""
    document: dict[str, Any] = json_format.MessageToDict(request, use_integers_for_enums=True)
    for span in iter_json_spans(document):
        for field in ("traceId", "spanId", "parentSpanId"):
            if field in span:
                span[field] = base64.b64decode(span[field]).hex()
    return document


def iter_json_spans(document: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            yield from scope_spans.get("spans", [])


def json_body(document: Any) -> bytes:
    return json.dumps(document).encode("utf-8")


def check_invariants(decoded: DecodedRequest) -> None:
    """What the storage layer relies on, whatever the input was."""
    assert decoded.rejected_spans >= 0
    assert (decoded.rejected_spans > 0) == bool(decoded.error_message)
    for span in decoded.spans:
        assert isinstance(span, DecodedSpan)
        assert len(span.trace_id) == 32 and span.trace_id == span.trace_id.lower()
        assert int(span.trace_id, 16) != 0
        assert len(span.span_id) == 16 and int(span.span_id, 16) != 0
        assert span.parent_span_id is None or len(span.parent_span_id) == 16
        assert 0 < span.start_time_unix_nano <= span.end_time_unix_nano <= MAX_TIME_UNIX_NANO
        assert 0 <= span.kind <= 5 and 0 <= span.status_code <= 2
        assert span.event_count >= 0
        for text in (span.name, span.status_message, span.scope_name, span.scope_version):
            check_text(text)
        check_attributes(span.attributes)
        check_attributes(span.resource_attributes)


def check_text(text: Any) -> None:
    assert isinstance(text, str)
    assert "\x00" not in text
    text.encode("utf-8")  # no lone surrogates


def check_attributes(attributes: Mapping[str, Any]) -> None:
    for key, value in attributes.items():
        check_text(key)
        assert key
        check_value(value)
    # Storable as jsonb: strict JSON, no NaN.
    json.dumps(attributes, allow_nan=False)


def check_value(value: Any) -> None:
    if isinstance(value, str):
        check_text(value)
    elif isinstance(value, float):
        assert math.isfinite(value)
    elif isinstance(value, tuple):
        for item in value:
            check_value(item)
    elif isinstance(value, dict):
        check_attributes(value)
    else:
        assert value is None or isinstance(value, (bool, int))
        if isinstance(value, int):
            assert -(2**63) <= value < 2**63


def any_value(value: Any) -> AnyValue:
    if isinstance(value, AnyValue):
        return value
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, dict):
        return AnyValue(
            kvlist_value={"values": [KeyValue(key=k, value=any_value(v)) for k, v in value.items()]}
        )
    if isinstance(value, (list, tuple)):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    assert value is None
    return AnyValue()


def proto_span(**overrides: Any) -> Span:
    """A valid protobuf span; ``overrides`` set or replace fields (ids as bytes)."""
    attributes = overrides.pop("attributes", {"gen_ai.system": "openai"})
    fields: dict[str, Any] = {
        "trace_id": bytes.fromhex(TRACE_ID),
        "span_id": bytes.fromhex(SPAN_ID),
        "name": "chat",
        "kind": Span.SPAN_KIND_CLIENT,
        "start_time_unix_nano": START,
        "end_time_unix_nano": END,
    }
    fields.update(overrides)
    span = Span(**fields)
    for key, value in attributes.items():
        span.attributes.append(KeyValue(key=key, value=any_value(value)))
    return span


def proto_request(*spans: Span, resource: Mapping[str, Any] | None = None) -> bytes:
    resource_spans = ResourceSpans(scope_spans=[ScopeSpans(spans=list(spans))])
    for key, value in (resource or {"service.name": "svc"}).items():
        resource_spans.resource.attributes.append(KeyValue(key=key, value=any_value(value)))
    return ExportTraceServiceRequest(resource_spans=[resource_spans]).SerializeToString()


def json_span(**overrides: Any) -> dict[str, Any]:
    span: dict[str, Any] = {
        "traceId": TRACE_ID,
        "spanId": SPAN_ID,
        "name": "chat",
        "kind": 3,
        "startTimeUnixNano": str(START),
        "endTimeUnixNano": str(END),
        "attributes": [{"key": "gen_ai.system", "value": {"stringValue": "openai"}}],
    }
    span.update(overrides)
    return span


def json_request(*spans: Any, resource: Any = None) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": resource
                or {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
                "scopeSpans": [{"scope": {"name": "lib", "version": "1.0"}, "spans": list(spans)}],
            }
        ]
    }


def decode_json(document: Any, limits: DecodeLimits | None = None) -> DecodedRequest:
    if limits is None:
        return decode_traces(json_body(document), JSON_CONTENT_TYPE)
    return decode_traces(json_body(document), JSON_CONTENT_TYPE, limits=limits)


def decode_proto(body: bytes, limits: DecodeLimits | None = None) -> DecodedRequest:
    if limits is None:
        return decode_traces(body, PROTOBUF_CONTENT_TYPE)
    return decode_traces(body, PROTOBUF_CONTENT_TYPE, limits=limits)


def only_span(decoded: DecodedRequest) -> DecodedSpan:
    assert decoded.rejected_spans == 0, decoded.error_message
    assert len(decoded.spans) == 1
    return decoded.spans[0]


def expected_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(attributes or {})


# --- protobuf from the real SDK encoder --------------------------------------------------


def test_sdk_exporter_request_decodes_to_the_recorded_spans() -> None:
    request, sdk_spans = sdk_request(3)
    decoded = decode_proto(request.SerializeToString())
    check_invariants(decoded)
    assert decoded.format is OtlpFormat.PROTOBUF
    assert decoded.rejected_spans == 0 and decoded.error_message == ""
    by_id = {span.span_id: span for span in decoded.spans}
    assert len(by_id) == len(sdk_spans) == 4
    for sdk_span in sdk_spans:
        context = sdk_span.context
        assert context is not None
        span = by_id[format(context.span_id, "016x")]
        assert span.trace_id == format(context.trace_id, "032x")
        parent = sdk_span.parent
        assert span.parent_span_id == (format(parent.span_id, "016x") if parent else None)
        assert span.name == sdk_span.name
        assert span.kind == OTLP_KIND[sdk_span.kind]
        assert span.start_time_unix_nano == sdk_span.start_time
        assert span.end_time_unix_nano == sdk_span.end_time
        assert span.status_code == sdk_span.status.status_code.value
        assert span.status_message == (sdk_span.status.description or "")
        assert span.attributes == expected_attributes(sdk_span.attributes)
        assert span.resource_attributes == dict(sdk_span.resource.attributes)
        assert span.scope_name == "opentelemetry.instrumentation.openai"
        assert span.scope_version == "0.40.0"
        assert span.event_count == len(sdk_span.events)


def test_array_attributes_become_tuples_like_the_sdk_keeps_them() -> None:
    request, _ = sdk_request(1)
    llm = next(s for s in decode_proto(request.SerializeToString()).spans if s.kind == 3)
    assert llm.attributes["gen_ai.response.finish_reasons"] == ("stop", "length")
    assert llm.attributes["llm.request.functions"] == (1, 2, 3)
    assert llm.attributes["llm.is_streaming"] is False
    assert llm.attributes["gen_ai.request.temperature"] == 0.7


def test_error_status_and_message_survive() -> None:
    request, _ = sdk_request(2)
    errors = [s for s in decode_proto(request.SerializeToString()).spans if s.status_code == 2]
    assert [(s.status_code, s.status_message) for s in errors] == [(2, "rate limited")]


def test_spans_of_one_resource_share_one_resource_dict() -> None:
    request, _ = sdk_request(3)
    spans = decode_proto(request.SerializeToString()).spans
    assert len({id(span.resource_attributes) for span in spans}) == 1
    assert spans[0].resource_attributes["service.name"] == "chatbot"


def test_empty_protobuf_body_is_an_empty_successful_request() -> None:
    decoded = decode_proto(b"")
    assert decoded.spans == [] and decoded.rejected_spans == 0 and decoded.error_message == ""


def test_uppercase_ids_are_not_possible_in_protobuf_but_output_is_lowercase_hex() -> None:
    span = only_span(decode_proto(proto_request(proto_span(trace_id=b"\xab" * 16))))
    assert span.trace_id == "ab" * 16


def test_bytes_kvlist_empty_and_nested_values() -> None:
    attributes = {
        "raw": b"\x00\x01\xff",
        "map": {"a": 1, "b": ["x", {"c": True}]},
        "empty": None,
        "nested": [[1, 2], [3.5]],
    }
    span = only_span(decode_proto(proto_request(proto_span(attributes=attributes))))
    assert span.attributes == {
        "raw": base64.b64encode(b"\x00\x01\xff").decode(),
        "map": {"a": 1, "b": ("x", {"c": True})},
        "empty": None,
        "nested": ((1, 2), (3.5,)),
    }


def test_non_finite_doubles_become_their_proto3_json_names() -> None:
    attributes = {"nan": math.nan, "inf": math.inf, "ninf": -math.inf, "ok": 1.5}
    span = only_span(decode_proto(proto_request(proto_span(attributes=attributes))))
    assert span.attributes == {"nan": "NaN", "inf": "Infinity", "ninf": "-Infinity", "ok": 1.5}


def test_nul_characters_are_replaced_so_postgres_can_store_them() -> None:
    span = only_span(
        decode_proto(
            proto_request(proto_span(name="a\x00b", attributes={"k\x00": "v\x00", "arr": ["\x00"]}))
        )
    )
    assert span.name == "a\ufffdb"
    assert span.attributes == {"k\ufffd": "v\ufffd", "arr": ("\ufffd",)}


def test_invalid_utf8_string_in_protobuf_is_a_400() -> None:
    body = proto_request(proto_span(name="chat"))
    with pytest.raises(MalformedBodyError) as caught:
        decode_proto(body.replace(b"chat", b"ch\xfft"))
    assert caught.value.status == 400


def test_garbage_protobuf_is_a_400() -> None:
    with pytest.raises(MalformedBodyError, match="invalid OTLP protobuf body"):
        decode_proto(b"\xff\xff\xff\xff not protobuf")


def test_unknown_span_kind_and_status_code_read_as_unspecified() -> None:
    span = proto_span(kind=17)
    span.status.code = 9
    decoded = only_span(decode_proto(proto_request(span)))
    assert (decoded.kind, decoded.status_code) == (0, 0)


def test_all_zero_parent_span_id_means_a_root_span() -> None:
    span = only_span(decode_proto(proto_request(proto_span(parent_span_id=bytes(8)))))
    assert span.parent_span_id is None


# --- rejections and partial success -------------------------------------------------------


BAD_PROTO_SPANS = {
    "short trace id": proto_span(trace_id=b"\x01" * 15),
    "zero trace id": proto_span(trace_id=bytes(16)),
    "long span id": proto_span(span_id=b"\x01" * 9),
    "zero span id": proto_span(span_id=bytes(8)),
    "bad parent": proto_span(parent_span_id=b"\x01" * 4),
    "no start": proto_span(start_time_unix_nano=0),
    "end before start": proto_span(end_time_unix_nano=START - 1),
    "no end": proto_span(end_time_unix_nano=0),
    "start after 2262": proto_span(start_time_unix_nano=2**63, end_time_unix_nano=2**63 + 1),
    "end after 2262": proto_span(end_time_unix_nano=2**64 - 1),
}


@pytest.mark.parametrize("case", sorted(BAD_PROTO_SPANS))
def test_an_unstorable_span_is_rejected_and_the_rest_accepted(case: str) -> None:
    good = proto_span(name="good")
    decoded = decode_proto(proto_request(good, BAD_PROTO_SPANS[case], good))
    check_invariants(decoded)
    assert [s.name for s in decoded.spans] == ["good", "good"]
    assert decoded.rejected_spans == 1
    assert decoded.error_message.startswith("rejected 1 of 3 spans: 1 with ")
    assert "resource_spans[0].scope_spans[0].spans[1] 'chat'" in decoded.error_message


def test_rejection_message_counts_each_reason_once_with_its_first_example() -> None:
    spans = [
        proto_span(name="a", trace_id=bytes(16)),
        proto_span(name="b"),
        proto_span(name="c", trace_id=bytes(16)),
        proto_span(name="d", end_time_unix_nano=1),
    ]
    decoded = decode_proto(proto_request(*spans))
    assert decoded.rejected_spans == 3
    assert decoded.error_message == (
        "rejected 3 of 4 spans: "
        "2 with an invalid trace id (must be 16 bytes, not all zero), "
        "first at resource_spans[0].scope_spans[0].spans[0] 'a'; "
        "1 with an end time before the start time (or no end time), "
        "first at resource_spans[0].scope_spans[0].spans[3] 'd'"
    )


def test_spans_past_the_request_limit_are_rejected_without_failing_the_request() -> None:
    limits = DecodeLimits(max_spans_per_request=3)
    body = proto_request(*[proto_span(name=str(i)) for i in range(5)])
    decoded = decode_proto(body, limits)
    assert [s.name for s in decoded.spans] == ["0", "1", "2"]
    assert decoded.rejected_spans == 2
    assert "2 over the limit of 3 spans per request" in decoded.error_message
    assert "spans[3]" in decoded.error_message


def multi_scope_request(layout: list[list[int]], extra_fields: bool = True) -> bytes:
    """Resources of scopes of ``n`` valid spans named by their order in the request, with
    the schema URLs and scopes that come after the spans on the wire."""
    request = ExportTraceServiceRequest()
    ordinal = 0
    for ri, scopes in enumerate(layout):
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.append(
            KeyValue(key="service.name", value=any_value(f"svc{ri}"))
        )
        for count in scopes:
            scope_spans = resource_spans.scope_spans.add()
            scope_spans.scope.name = "lib"
            for _ in range(count):
                scope_spans.spans.append(proto_span(name=str(ordinal)))
                ordinal += 1
            if extra_fields:
                scope_spans.schema_url = "https://opentelemetry.io/schemas/1.26.0"
        if extra_fields:
            resource_spans.schema_url = "https://opentelemetry.io/schemas/1.26.0"
    return request.SerializeToString()


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
def test_protobuf_span_limit_keeps_the_first_spans_across_resources_and_scopes(
    limit: int,
) -> None:
    body = multi_scope_request([[2, 0, 3], [], [1, 2]])  # 8 spans
    decoded = decode_proto(body, DecodeLimits(max_spans_per_request=limit))
    kept = min(limit, 8)
    assert [span.name for span in decoded.spans] == [str(i) for i in range(kept)]
    assert decoded.rejected_spans == 8 - kept
    assert {span.resource_attributes["service.name"] for span in decoded.spans} <= {
        "svc0",
        "svc2",
    }
    if kept < 8:
        assert f"{8 - kept} over the limit of {limit} spans per request" in decoded.error_message


def test_protobuf_span_limit_message_names_the_first_span_cut() -> None:
    body = multi_scope_request([[2, 0, 3], [], [1, 2]])
    decoded = decode_proto(body, DecodeLimits(max_spans_per_request=5))
    assert decoded.error_message == (
        "rejected 3 of 8 spans: 3 over the limit of 5 spans per request, "
        "first at resource_spans[2].scope_spans[0].spans[0]"
    )


def test_a_flood_of_empty_spans_is_cut_before_parsing_so_memory_stays_bounded() -> None:
    # 16 MiB of two-byte spans: parsing all of them would take ~1.5 GB and seconds.
    script = f"""
from aethermind.ingest.otlp import decode_traces
spans = b"\\x12\\x00" * (8 * 1024 * 1024)
def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)
scope = b"\\x12" + varint(len(spans)) + spans
body = b"\\x0a" + varint(len(scope)) + scope
decoded = decode_traces(body, {PROTOBUF_CONTENT_TYPE!r})
assert decoded.rejected_spans == 8 * 1024 * 1024, decoded.rejected_spans
# VmHWM is this process's own peak; ru_maxrss would start from the parent's size on Linux.
print(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) // 1024)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    peak_mib = int(result.stdout.strip())
    assert peak_mib < 300, peak_mib


@pytest.mark.parametrize(
    "body",
    [
        b"\x0a\x05\x12\x03\x12\x00",  # scope spans longer than their resource spans
        b"\x0a\x04\x12\x02\x12\x05",  # span longer than its scope
        b"\x0f",  # wire type 7
        b"\x0c",  # end group without a start
        b"\x0b\x14",  # group closed by another field's end
        b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # over-long varint
    ],
)
def test_malformed_envelopes_are_a_400_whatever_the_span_limit(body: bytes) -> None:
    for limits in (DecodeLimits(), DecodeLimits(max_spans_per_request=1)):
        padded = body + b"\x12" * 4 if limits.max_spans_per_request == 1 else body
        with pytest.raises(MalformedBodyError):
            decode_proto(padded, limits)


def test_unknown_fields_and_groups_around_spans_do_not_confuse_the_cut() -> None:
    span = proto_span(name="0").SerializeToString()
    unknown = b"\x18\x07" + b"\x23\x08\x01\x24" + b"\x2d\x00\x00\x00\x00"  # varint, group, fixed32
    scope = unknown + (b"\x12" + _varint(len(span)) + span) * 3 + unknown
    resource = unknown + b"\x12" + _varint(len(scope)) + scope
    body = unknown + b"\x0a" + _varint(len(resource)) + resource + unknown
    full = decode_proto(body)
    cut = decode_proto(body, DecodeLimits(max_spans_per_request=2))
    assert len(full.spans) == 3 and full.rejected_spans == 0
    assert cut.spans == full.spans[:2] and cut.rejected_spans == 1


def test_span_limit_counts_across_resources_and_scopes_in_json() -> None:
    document = json_request(json_span(name="a"), json_span(name="b"))
    document["resourceSpans"].append(json_request(json_span(name="c"))["resourceSpans"][0])
    decoded = decode_json(document, DecodeLimits(max_spans_per_request=2))
    assert [s.name for s in decoded.spans] == ["a", "b"]
    assert decoded.rejected_spans == 1
    assert "resourceSpans[1].scopeSpans[0].spans[0]" in decoded.error_message


# --- limits on attributes ------------------------------------------------------------------


def test_attributes_past_the_limit_are_dropped_and_counted() -> None:
    limits = DecodeLimits(max_attributes_per_span=3)
    attributes = {f"k{i}": i for i in range(5)}
    decoded = decode_proto(proto_request(proto_span(attributes=attributes)), limits)
    assert only_span(decoded).attributes == {"k0": 0, "k1": 1, "k2": 2}
    assert decoded.dropped_attributes == 2


def test_long_string_values_names_and_bytes_are_truncated_and_counted() -> None:
    limits = DecodeLimits(max_attribute_value_length=4)
    span = proto_span(name="abcdefgh", attributes={"s": "123456", "b": b"123456", "ok": "1234"})
    decoded = decode_proto(proto_request(span), limits)
    decoded_span = only_span(decoded)
    assert decoded_span.name == "abcd"
    assert decoded_span.attributes == {
        "s": "1234",
        "b": base64.b64encode(b"1234").decode(),
        "ok": "1234",
    }
    assert decoded.truncated_values == 3


def test_empty_and_over_long_keys_are_dropped() -> None:
    limits = DecodeLimits(max_attribute_key_length=5)
    span = proto_span(attributes={"": 1, "toolong": 2, "fine": 3})
    decoded = decode_proto(proto_request(span, resource={"svc": "x"}), limits)
    assert only_span(decoded).attributes == {"fine": 3}
    assert decoded.dropped_attributes == 2


def test_long_arrays_are_cut_and_counted() -> None:
    limits = DecodeLimits(max_array_length=2)
    decoded = decode_proto(
        proto_request(proto_span(attributes={"a": [1, 2, 3], "b": ["x"] * 3})), limits
    )
    assert only_span(decoded).attributes == {"a": (1, 2), "b": ("x", "x")}
    assert decoded.truncated_values == 2


def test_values_nested_past_the_depth_limit_become_none() -> None:
    value: Any = "leaf"
    for _ in range(5):
        value = [value]
    limits = DecodeLimits(max_value_depth=3)
    decoded = decode_proto(proto_request(proto_span(attributes={"deep": value})), limits)
    assert only_span(decoded).attributes == {"deep": (((None,),),)}
    assert decoded.truncated_values == 1


def test_protobuf_nested_beyond_the_parser_limit_is_a_400_not_a_crash() -> None:
    # Built as raw wire bytes: AnyValue{array_value{values{...}}} 200 levels deep.
    inner = AnyValue(string_value="x").SerializeToString()
    for _ in range(200):
        array = b"\x0a" + _varint(len(inner)) + inner  # ArrayValue.values = 1
        inner = b"\x2a" + _varint(len(array)) + array  # AnyValue.array_value = 5
    pair = b"\x0a\x01k" + b"\x12" + _varint(len(inner)) + inner
    span = proto_span(attributes={}).SerializeToString() + b"\x4a" + _varint(len(pair)) + pair
    scope = b"\x12" + _varint(len(span)) + span
    resource = b"\x12" + _varint(len(scope)) + scope
    body = b"\x0a" + _varint(len(resource)) + resource
    with pytest.raises(MalformedBodyError):
        decode_proto(body)


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        if number:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


@pytest.mark.parametrize(
    "field", ["max_spans_per_request", "max_attribute_value_length", "max_value_depth"]
)
@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_decode_limits_refuse_values_that_are_not_positive_ints(field: str, bad: Any) -> None:
    with pytest.raises(ValueError, match=f"DecodeLimits.{field} must be a positive integer"):
        DecodeLimits(**{field: bad})


def test_decode_limits_cap_nesting_depth_far_below_the_recursion_limit() -> None:
    with pytest.raises(ValueError, match="max_value_depth must be at most 64"):
        DecodeLimits(max_value_depth=65)


# --- content types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "fmt"),
    [
        ("application/x-protobuf", OtlpFormat.PROTOBUF),
        ("Application/X-Protobuf", OtlpFormat.PROTOBUF),
        ("application/protobuf", OtlpFormat.PROTOBUF),
        ("application/json", OtlpFormat.JSON),
        ("application/json; charset=utf-8", OtlpFormat.JSON),
        ("  APPLICATION/JSON ;charset=UTF-8", OtlpFormat.JSON),
    ],
)
def test_content_types_with_parameters_and_any_case_are_understood(
    content_type: str, fmt: OtlpFormat
) -> None:
    body = b"" if fmt is OtlpFormat.PROTOBUF else b"{}"
    assert decode_traces(body, content_type).format is fmt


@pytest.mark.parametrize(
    "content_type", [None, "", "text/plain", "application/grpc", "application/jsonx", "json"]
)
def test_other_content_types_are_a_415(content_type: str | None) -> None:
    with pytest.raises(UnsupportedContentTypeError) as caught:
        decode_traces(b"{}", content_type)
    assert caught.value.status == 415
    assert "application/x-protobuf" in caught.value.message


# --- OTLP/JSON -------------------------------------------------------------------------------


def test_json_from_the_same_sdk_spans_decodes_like_protobuf() -> None:
    request, _ = sdk_request(3)
    from_proto = decode_proto(request.SerializeToString())
    from_json = decode_json(to_otlp_json(request))
    check_invariants(from_json)
    assert from_json.format is OtlpFormat.JSON
    assert from_json.spans == from_proto.spans


def test_json_per_spec_with_integers_as_strings_and_as_numbers() -> None:
    document = json_request(
        json_span(
            traceId=TRACE_ID.upper(),
            parentSpanId=PARENT_ID,
            startTimeUnixNano=START,  # the JS exporter sends numbers
            endTimeUnixNano=str(END),
            status={"code": 2, "message": "boom"},
            events=[{"name": "e1"}, {"name": "e2"}],
            attributes=[
                {"key": "as_string", "value": {"intValue": "9007199254740993"}},
                {"key": "as_number", "value": {"intValue": 42}},
                {"key": "negative", "value": {"intValue": "-7"}},
                {"key": "double", "value": {"doubleValue": 0.25}},
                {"key": "double_int", "value": {"doubleValue": 3}},
                {"key": "bool", "value": {"boolValue": True}},
                {"key": "bytes", "value": {"bytesValue": base64.b64encode(b"\x01\x02").decode()}},
                {
                    "key": "array",
                    "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": 1}]}},
                },
                {
                    "key": "map",
                    "value": {
                        "kvlistValue": {"values": [{"key": "x", "value": {"boolValue": False}}]}
                    },
                },
                {"key": "empty", "value": {}},
                {"key": "no_value"},
            ],
        )
    )
    span = only_span(decode_json(document))
    assert span == DecodedSpan(
        trace_id=TRACE_ID,
        span_id=SPAN_ID,
        parent_span_id=PARENT_ID,
        name="chat",
        kind=3,
        start_time_unix_nano=START,
        end_time_unix_nano=END,
        status_code=2,
        status_message="boom",
        attributes={
            "as_string": 9007199254740993,
            "as_number": 42,
            "negative": -7,
            "double": 0.25,
            "double_int": 3.0,
            "bool": True,
            "bytes": base64.b64encode(b"\x01\x02").decode(),
            "array": ("a", 1),
            "map": {"x": False},
            "empty": None,
            "no_value": None,
        },
        resource_attributes={"service.name": "svc"},
        scope_name="lib",
        scope_version="1.0",
        event_count=2,
    )


def test_json_unknown_fields_are_ignored_at_every_level() -> None:
    document = json_request(
        json_span(
            futureField={"anything": [1, 2]},
            attributes=[{"key": "k", "value": {"stringValue": "v", "future": 1}, "extra": True}],
            status={"code": 1, "newThing": "x"},
        )
    )
    document["futureTopLevel"] = 1
    document["resourceSpans"][0]["schemaUrl"] = "https://opentelemetry.io/schemas/1.26.0"
    document["resourceSpans"][0]["scopeSpans"][0]["scope"]["attributes"] = []
    span = only_span(decode_json(document))
    assert span.attributes == {"k": "v"} and span.status_code == 1


def test_json_enum_names_and_snake_case_fields_are_accepted_too() -> None:
    span = {
        "trace_id": TRACE_ID,
        "span_id": SPAN_ID,
        "parent_span_id": PARENT_ID,
        "name": "chat",
        "kind": "SPAN_KIND_SERVER",
        "start_time_unix_nano": str(START),
        "end_time_unix_nano": str(END),
        "status": {"code": "STATUS_CODE_ERROR"},
        "attributes": [{"key": "k", "value": {"string_value": "v"}}],
    }
    document = {"resource_spans": [{"scope_spans": [{"spans": [span]}]}]}
    decoded = only_span(decode_json(document))
    assert (decoded.kind, decoded.status_code) == (2, 2)
    assert decoded.parent_span_id == PARENT_ID
    assert decoded.attributes == {"k": "v"}


def test_json_base64_ids_from_plain_proto3_mappers_are_accepted() -> None:
    document = json_request(
        json_span(
            traceId=base64.b64encode(bytes.fromhex(TRACE_ID)).decode(),
            spanId=base64.b64encode(bytes.fromhex(SPAN_ID)).decode(),
        )
    )
    span = only_span(decode_json(document))
    assert (span.trace_id, span.span_id) == (TRACE_ID, SPAN_ID)


def test_json_timestamps_as_long_bits_from_old_js_exporters() -> None:
    low, high = START & 0xFFFFFFFF, START >> 32
    span = only_span(
        decode_json(json_request(json_span(startTimeUnixNano={"low": low, "high": high})))
    )
    assert span.start_time_unix_nano == START


def test_json_doubles_as_strings_including_nan() -> None:
    attributes = [
        {"key": "nan", "value": {"doubleValue": "NaN"}},
        {"key": "inf", "value": {"doubleValue": "Infinity"}},
        {"key": "text", "value": {"doubleValue": "2.5"}},
    ]
    span = only_span(decode_json(json_request(json_span(attributes=attributes))))
    assert span.attributes == {"nan": "NaN", "inf": "Infinity", "text": 2.5}


def test_json_nan_literals_are_tolerated_and_made_storable() -> None:
    body = json_body(json_request(json_span(attributes=[]))).replace(
        b'"attributes": []', b'"attributes": [{"key": "x", "value": {"doubleValue": NaN}}]'
    )
    span = only_span(decode_traces(body, JSON_CONTENT_TYPE))
    assert span.attributes == {"x": "NaN"}


def test_json_attribute_values_of_the_wrong_type_drop_only_that_attribute() -> None:
    attributes = [
        {"key": "ok", "value": {"stringValue": "v"}},
        {"key": "huge", "value": {"intValue": "99999999999999999999"}},
        {"key": "fraction", "value": {"intValue": 1.5}},
        {"key": "bool_as_string", "value": {"boolValue": "true"}},
        {"key": "string_as_number", "value": {"stringValue": 5}},
        {"key": "bad_bytes", "value": {"bytesValue": "***"}},
        {"key": "value_is_list", "value": [1]},
        {"key": 7, "value": {"stringValue": "non-string key"}},
        "not an object",
        {"key": "array_not_object", "value": {"arrayValue": [1, 2]}},
        {"key": "huge_double", "value": {"doubleValue": 10**400}},
    ]
    decoded = decode_json(json_request(json_span(attributes=attributes)))
    assert only_span(decoded).attributes == {"ok": "v"}
    assert decoded.dropped_attributes == len(attributes) - 1


def test_json_wrong_types_inside_arrays_become_none() -> None:
    attributes = [
        {
            "key": "a",
            "value": {"arrayValue": {"values": [{"stringValue": "x"}, 5, {"intValue": "z"}]}},
        },
    ]
    decoded = decode_json(json_request(json_span(attributes=attributes)))
    assert only_span(decoded).attributes == {"a": ("x", None, None)}
    assert decoded.truncated_values == 2


BAD_JSON_SPANS: dict[str, Any] = {
    "not an object": 5,
    "trace id too short": json_span(traceId=TRACE_ID[:-2]),
    "trace id not hex": json_span(traceId="z" * 32),
    "trace id zero": json_span(traceId="0" * 32),
    "trace id number": json_span(traceId=5),
    "trace id with spaces": json_span(traceId="5b 8e" + TRACE_ID[5:]),
    "span id missing": json_span(spanId=None),
    "parent id bad": json_span(parentSpanId="abc"),
    "start missing": json_span(startTimeUnixNano=None),
    "start negative": json_span(startTimeUnixNano="-5"),
    "start not a number": json_span(startTimeUnixNano="soon"),
    "start fraction": json_span(startTimeUnixNano=1.5),
    "start huge": json_span(startTimeUnixNano="9" * 30, endTimeUnixNano="9" * 30),
    "start past 2262": json_span(startTimeUnixNano=str(2**63), endTimeUnixNano=str(2**63)),
    "end before start": json_span(endTimeUnixNano=str(START - 1)),
    "end past 2262": json_span(endTimeUnixNano=str(2**64 - 1)),
    "name not a string": json_span(name=["x"]),
    "attributes a string": json_span(attributes="gen_ai.system=openai"),
    "start a bool": json_span(startTimeUnixNano=True),
}


@pytest.mark.parametrize("case", sorted(BAD_JSON_SPANS))
def test_json_unusable_span_is_rejected_alone(case: str) -> None:
    good = json_span(name="good")
    decoded = decode_json(json_request(good, BAD_JSON_SPANS[case], good))
    check_invariants(decoded)
    assert [s.name for s in decoded.spans] == ["good", "good"]
    assert decoded.rejected_spans == 1
    assert "resourceSpans[0].scopeSpans[0].spans[1]" in decoded.error_message


BAD_JSON_ENVELOPES: dict[str, Any] = {
    "top level array": [],
    "top level string": "x",
    "resourceSpans object": {"resourceSpans": {}},
    "resourceSpans entry number": {"resourceSpans": [1]},
    "scopeSpans string": {"resourceSpans": [{"scopeSpans": "x"}]},
    "spans number": {"resourceSpans": [{"scopeSpans": [{"spans": 5}]}]},
    "resource list": {"resourceSpans": [{"resource": []}]},
    "resource attributes string": {"resourceSpans": [{"resource": {"attributes": "x"}}]},
    "scope string": {"resourceSpans": [{"scopeSpans": [{"scope": "x", "spans": [json_span()]}]}]},
}


@pytest.mark.parametrize("case", sorted(BAD_JSON_ENVELOPES))
def test_json_envelope_of_the_wrong_shape_is_a_400_naming_the_place(case: str) -> None:
    with pytest.raises(MalformedBodyError) as caught:
        decode_json(BAD_JSON_ENVELOPES[case])
    assert caught.value.status == 400
    assert caught.value.message.startswith("invalid OTLP/JSON body")


def test_json_nulls_mean_absent_fields() -> None:
    document = {
        "resourceSpans": [{"resource": None, "scopeSpans": [{"scope": None, "spans": None}]}]
    }
    assert decode_json(document).spans == []
    span = only_span(decode_json(json_request(json_span(attributes=None, status=None, kind=None))))
    assert (span.attributes, span.status_code, span.kind) == ({}, 0, 0)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"\xff\xfe{}",
        b'{"resourceSpans": [}',
        b'{"a": "\xc3\x28"}',  # invalid UTF-8
        b"[" * 100_000 + b"]" * 100_000,  # deeper than the json module recurses
        b'{"n": ' + b"9" * 5000 + b"}",  # over Python's int digit limit
    ],
)
def test_undecodable_json_is_a_400(body: bytes) -> None:
    with pytest.raises(MalformedBodyError):
        decode_traces(body, JSON_CONTENT_TYPE)


def test_json_with_a_utf8_bom_is_accepted() -> None:
    body = b"\xef\xbb\xbf" + json_body(json_request(json_span()))
    assert len(decode_traces(body, JSON_CONTENT_TYPE).spans) == 1


def test_json_lone_surrogates_and_nul_are_replaced() -> None:
    body = (
        b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"' + TRACE_ID.encode() + b'",'
        b'"spanId":"' + SPAN_ID.encode() + b'","name":"a\\ud800b\\u0000",'
        b'"startTimeUnixNano":"1","endTimeUnixNano":"2",'
        b'"attributes":[{"key":"k\\udfff","value":{"stringValue":"\\ud83d\\ude00 \\udc00"}}]}]}]}]}'
    )
    span = only_span(decode_traces(body, JSON_CONTENT_TYPE))
    assert span.name == "a\ufffdb\ufffd"
    assert span.attributes == {"k\ufffd": "\U0001f600 \ufffd"}


def test_every_error_is_an_otlp_request_error_with_a_status() -> None:
    for body, content_type in [(b"x", JSON_CONTENT_TYPE), (b"\xff", PROTOBUF_CONTENT_TYPE)]:
        with pytest.raises(OtlpRequestError) as caught:
            decode_traces(body, content_type)
        assert caught.value.status == 400
        assert "status=400" in repr(caught.value)


def test_decoded_request_reports_totals() -> None:
    decoded = decode_proto(proto_request(proto_span(), proto_span(trace_id=b"")))
    assert (decoded.total_spans, len(decoded.spans), decoded.rejected_spans) == (2, 1, 1)
