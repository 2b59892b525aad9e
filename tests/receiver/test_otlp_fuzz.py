"""Hostile input: whatever the bytes, decoding and body reading either succeed with storable
spans or raise the typed request error, never anything else.

Besides random and mutated input, one property is differential: a random protobuf request
and its OTLP/JSON rendering must decode to the same spans.
"""

from __future__ import annotations

import asyncio
import copy
import gzip
import json
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from aethermind.ingest.otlp import (
    JSON_CONTENT_TYPE,
    PROTOBUF_CONTENT_TYPE,
    DecodedRequest,
    DecodeLimits,
    MalformedBodyError,
    OtlpRequestError,
    decode_traces,
    read_body,
)
from aethermind.ingest.otlp._wire import trim_spans
from tests.ingest.test_otlp_decode import check_invariants, sdk_request, to_otlp_json

pytestmark = pytest.mark.slow  # see pyproject.toml: a subprocess, a browser or a fuzzer

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CONTENT_TYPES = [PROTOBUF_CONTENT_TYPE, JSON_CONTENT_TYPE]
SMALL_LIMITS = DecodeLimits(
    max_spans_per_request=5,
    max_attributes_per_span=4,
    max_attribute_value_length=8,
    max_attribute_key_length=8,
    max_array_length=3,
    max_value_depth=2,
)

_REQUEST, _ = sdk_request(2)
VALID_PROTOBUF = _REQUEST.SerializeToString()
VALID_JSON_DOCUMENT = to_otlp_json(_REQUEST)
VALID_JSON = json.dumps(VALID_JSON_DOCUMENT).encode()


def decode_or_typed_error(
    body: bytes, content_type: str, limits: DecodeLimits | None = None
) -> DecodedRequest | None:
    try:
        decoded = (
            decode_traces(body, content_type)
            if limits is None
            else decode_traces(body, content_type, limits=limits)
        )
    except OtlpRequestError as exc:
        assert exc.status in (400, 415)
        assert exc.message
        return None
    check_invariants(decoded)
    return decoded


# --- random and mutated bytes ----------------------------------------------------------------


@FUZZ
@given(body=st.binary(max_size=2000), content_type=st.sampled_from(CONTENT_TYPES))
def test_random_bytes_decode_or_raise_the_typed_error(body: bytes, content_type: str) -> None:
    decode_or_typed_error(body, content_type)


mutations = st.lists(
    st.tuples(
        st.sampled_from(["flip", "truncate", "insert", "delete", "zero"]),
        st.integers(min_value=0, max_value=10**6),
        st.binary(min_size=1, max_size=8),
    ),
    min_size=1,
    max_size=4,
)


def mutate(data: bytes, edits: list[tuple[str, int, bytes]]) -> bytes:
    buffer = bytearray(data)
    for operation, position, payload in edits:
        if not buffer:
            break
        at = position % len(buffer)
        if operation == "flip":
            buffer[at] ^= payload[0] or 1
        elif operation == "truncate":
            del buffer[at:]
        elif operation == "insert":
            buffer[at:at] = payload
        elif operation == "delete":
            del buffer[at : at + len(payload)]
        else:
            buffer[at] = 0
    return bytes(buffer)


@FUZZ
@given(edits=mutations, small_limits=st.booleans())
def test_mutated_sdk_protobuf_decodes_or_raises_the_typed_error(
    edits: list[tuple[str, int, bytes]], small_limits: bool
) -> None:
    body = mutate(VALID_PROTOBUF, edits)
    decode_or_typed_error(body, PROTOBUF_CONTENT_TYPE, SMALL_LIMITS if small_limits else None)


@FUZZ
@given(edits=mutations)
def test_mutated_json_text_decodes_or_raises_the_typed_error(
    edits: list[tuple[str, int, bytes]],
) -> None:
    decode_or_typed_error(mutate(VALID_JSON, edits), JSON_CONTENT_TYPE)


@FUZZ
@given(edits=mutations)
def test_the_envelope_walk_refuses_only_what_upb_refuses_too(
    edits: list[tuple[str, int, bytes]],
) -> None:
    # With a limit of one span the walk runs on every body with two 0x12 bytes; it must
    # never turn a request upb would accept into a 400.
    body = mutate(VALID_PROTOBUF, edits)
    try:
        trim_spans(body, 1)
    except MalformedBodyError:
        with pytest.raises(DecodeError):
            ExportTraceServiceRequest.FromString(body)


# --- structurally wrong JSON --------------------------------------------------------------


OTLP_NAMES = [
    "resourceSpans", "scopeSpans", "spans", "resource", "scope", "attributes", "key", "value",
    "traceId", "spanId", "parentSpanId", "name", "kind", "startTimeUnixNano",
    "endTimeUnixNano", "status", "code", "message", "events", "stringValue", "intValue",
    "boolValue", "doubleValue", "bytesValue", "arrayValue", "kvlistValue", "values", "low",
    "high", "trace_id", "string_value", "array_value",
]  # fmt: skip

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)  # includes NUL; lone surrogates come from escapes below
    | st.sampled_from(["NaN", "Infinity", "-Infinity", "5b8efff798038103d269b633813fc60c", ""])
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(OTLP_NAMES) | st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, child in node.items():
            found.extend(paths(child, (*prefix, key)))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found.extend(paths(child, (*prefix, index)))
    return found


ALL_PATHS = paths(VALID_JSON_DOCUMENT)


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    document = copy.deepcopy(document)
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return document


@FUZZ
@given(
    replacements=st.lists(
        st.tuples(st.sampled_from(ALL_PATHS), json_values), min_size=1, max_size=3
    ),
    lone_surrogate=st.booleans(),
)
def test_json_with_any_part_replaced_by_any_value_decodes_or_raises_the_typed_error(
    replacements: list[tuple[tuple[Any, ...], Any]], lone_surrogate: bool
) -> None:
    document: Any = VALID_JSON_DOCUMENT
    for path, value in replacements:
        try:
            document = replaced(document, path, value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier replacement removed this path
    text = json.dumps(document)  # NaN and Infinity literals included
    if lone_surrogate:
        text = text.replace('"chat', '"\\ud800chat').replace('"gen_ai', '"\\udfffgen_ai')
    decode_or_typed_error(text.encode(), JSON_CONTENT_TYPE)


# --- differential: random protobuf request vs its OTLP/JSON rendering --------------------


def any_values(depth: int = 2) -> st.SearchStrategy[AnyValue]:
    scalars = st.one_of(
        st.builds(AnyValue),
        st.builds(AnyValue, string_value=st.text(max_size=12)),
        st.builds(AnyValue, bool_value=st.booleans()),
        st.builds(AnyValue, int_value=st.integers(min_value=-(2**63), max_value=2**63 - 1)),
        st.builds(AnyValue, double_value=st.floats(allow_nan=True, allow_infinity=True)),
        st.builds(AnyValue, bytes_value=st.binary(max_size=12)),
    )
    if depth == 0:
        return scalars
    children = st.lists(any_values(depth - 1), max_size=4)
    return st.one_of(
        scalars,
        children.map(lambda values: AnyValue(array_value={"values": values})),
        st.lists(key_values(depth - 1), max_size=4).map(
            lambda pairs: AnyValue(kvlist_value={"values": pairs})
        ),
    )


def key_values(depth: int = 2) -> st.SearchStrategy[KeyValue]:
    keys = st.sampled_from(["gen_ai.system", "k", "", "a" * 9]) | st.text(max_size=10)
    return st.builds(KeyValue, key=keys, value=any_values(depth))


odd_ids = st.one_of(st.binary(max_size=17), st.just(bytes(16)), st.just(bytes(8)))
odd_times = st.integers(min_value=0, max_value=2**64 - 1)


@st.composite
def spans(draw: st.DrawFn) -> Span:
    """Mostly valid spans, each field now and then replaced by an odd value."""

    def odd(valid: st.SearchStrategy[Any], weird: st.SearchStrategy[Any]) -> Any:
        return draw(weird) if draw(st.integers(0, 9)) == 0 else draw(valid)

    start = odd(st.integers(1_600_000_000_000_000_000, 1_800_000_000_000_000_000), odd_times)
    end = odd(st.integers(0, 10**12).map(lambda delta: min(start + delta, 2**64 - 1)), odd_times)
    return Span(
        trace_id=odd(st.binary(min_size=16, max_size=16), odd_ids),
        span_id=odd(st.binary(min_size=8, max_size=8), odd_ids),
        parent_span_id=odd(st.sampled_from([b""]) | st.binary(min_size=8, max_size=8), odd_ids),
        name=draw(st.text(max_size=12)),
        kind=odd(st.integers(0, 5), st.integers(-3, 2**31 - 1)),
        start_time_unix_nano=start,
        end_time_unix_nano=end,
        attributes=draw(st.lists(key_values(), max_size=6)),
        status=Status(
            code=odd(st.integers(0, 2), st.integers(-1, 2**31 - 1)),
            message=draw(st.text(max_size=12)),
        ),
        events=[{"name": "e"}] * draw(st.integers(0, 2)),
    )


requests = st.builds(
    ExportTraceServiceRequest,
    resource_spans=st.lists(
        st.builds(
            ResourceSpans,
            resource=st.builds(
                lambda attributes: {"attributes": attributes}, st.lists(key_values(1), max_size=3)
            ),
            scope_spans=st.lists(
                st.builds(ScopeSpans, spans=st.lists(spans(), max_size=4)), max_size=3
            ),
        ),
        max_size=3,
    ),
)


@settings(FUZZ, max_examples=150)
@given(request=requests, small_limits=st.booleans())
def test_protobuf_and_its_otlp_json_rendering_decode_to_the_same_spans(
    request: ExportTraceServiceRequest, small_limits: bool
) -> None:
    limits = SMALL_LIMITS if small_limits else DecodeLimits()
    from_proto = decode_or_typed_error(request.SerializeToString(), PROTOBUF_CONTENT_TYPE, limits)
    from_json = decode_or_typed_error(
        json.dumps(to_otlp_json(request)).encode(), JSON_CONTENT_TYPE, limits
    )
    assert from_proto is not None and from_json is not None
    event(f"accepted spans: {bool(from_proto.spans)}, rejected: {bool(from_proto.rejected_spans)}")
    event(f"values cut: {bool(from_proto.truncated_values or from_proto.dropped_attributes)}")
    assert from_json.spans == from_proto.spans
    assert from_json.rejected_spans == from_proto.rejected_spans
    assert from_json.truncated_values == from_proto.truncated_values
    assert from_json.dropped_attributes == from_proto.dropped_attributes


# --- the body reader ---------------------------------------------------------------------


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    return compressor.compress(data) + compressor.flush()


ENCODERS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "identity": ("identity", lambda data: data),
    "gzip": ("gzip", gzip.compress),
    "zlib": ("deflate", zlib.compress),
    "raw": ("deflate", raw_deflate),
}


async def _in_chunks(data: bytes, sizes: list[int]) -> AsyncIterator[bytes]:
    position = 0
    for size in sizes:
        if position >= len(data):
            break
        yield data[position : position + size]
        position += size
    if position < len(data):
        yield data[position:]


def read_or_typed_error(
    data: bytes, encoding: str | None, sizes: list[int], max_size: int
) -> bytes | None:
    try:
        return asyncio.run(
            read_body(_in_chunks(data, sizes), content_encoding=encoding, max_size=max_size)
        )
    except OtlpRequestError as exc:
        assert exc.status in (400, 413, 415)
        return None


chunk_sizes = st.lists(st.integers(min_value=1, max_value=300), max_size=20)


@FUZZ
@given(
    payload=st.binary(max_size=3000),
    encoder=st.sampled_from(sorted(ENCODERS)),
    sizes=chunk_sizes,
)
def test_any_payload_round_trips_through_any_encoding_and_chunking(
    payload: bytes, encoder: str, sizes: list[int]
) -> None:
    encoding, compress = ENCODERS[encoder]
    assert read_or_typed_error(compress(payload), encoding, sizes, 1 << 20) == payload


@FUZZ
@given(
    payload=st.binary(max_size=3000),
    encoder=st.sampled_from(sorted(ENCODERS)),
    sizes=chunk_sizes,
    max_size=st.integers(min_value=1, max_value=4000),
)
def test_the_limit_holds_for_any_payload(
    payload: bytes, encoder: str, sizes: list[int], max_size: int
) -> None:
    encoding, compress = ENCODERS[encoder]
    result = read_or_typed_error(compress(payload), encoding, sizes, max_size)
    if len(payload) > max_size:
        assert result is None
    elif result is not None:
        assert result == payload


@FUZZ
@given(
    payload=st.binary(min_size=1, max_size=2000),
    encoder=st.sampled_from(["gzip", "zlib", "raw"]),
    edits=mutations,
    sizes=chunk_sizes,
)
def test_mutated_compressed_streams_read_or_raise_the_typed_error(
    payload: bytes, encoder: str, edits: list[tuple[str, int, bytes]], sizes: list[int]
) -> None:
    encoding, compress = ENCODERS[encoder]
    data = mutate(compress(payload), edits)
    assume(data)
    read_or_typed_error(data, encoding, sizes, 1 << 16)


@FUZZ
@given(
    data=st.binary(max_size=500),
    encoding=st.sampled_from(["gzip", "deflate", "identity", "br", "", "gzip, gzip"]) | st.text(),
    sizes=chunk_sizes,
)
def test_random_bytes_with_any_encoding_header_read_or_raise_the_typed_error(
    data: bytes, encoding: str, sizes: list[int]
) -> None:
    read_or_typed_error(data, encoding, sizes, 1 << 16)
