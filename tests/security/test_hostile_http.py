"""Hostile input over HTTP against a running `aethermind serve`: random and mutated bodies,
OTLP with values of the wrong type or out of range, invalid UTF-8, deep nesting, gzip bombs
and corrupt streams, and junk `/v1/ingest` events.

Whatever arrives, the answer is never a 5xx, the server stays up, and no stored row holds
nonsense (negative tokens, times outside 1970..2262, NaN or negative durations and costs,
malformed ids), checked in SQL after each run. The pure decoders have their own property
tests (tests/receiver/test_otlp_fuzz.py); these go through HTTP, auth, storage and back.

Examples per property: AETHERMIND_FUZZ_EXAMPLES (default 100); the runs are derandomized
(the same examples every time) unless AETHERMIND_FUZZ_RANDOM=1.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import grpc
import pytest
import requests
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from tests.faults.load import genai_request
from tests.faults.serving import owner_fetch
from tests.receiver.helpers import RECENT_UNIX_NANO
from tests.security.conftest import Target

pytestmark = pytest.mark.slow  # see pyproject.toml: a subprocess, a browser or a fuzzer

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
EXAMPLES = int(os.environ.get("AETHERMIND_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("AETHERMIND_FUZZ_RANDOM"),
    database=None,
    suppress_health_check=list(HealthCheck),
)

VALID_PROTOBUF, _ = genai_request(3)
VALID_METRICS_JSON = json.dumps({"resourceMetrics": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "fuzz"}}]},
    "scopeMetrics": [{"metrics": [{"name": "claude_code.token.usage", "sum": {
        "aggregationTemporality": 2, "isMonotonic": True, "dataPoints": [{
            "attributes": [{"key": "type", "value": {"stringValue": "output"}},
                           {"key": "model", "value": {"stringValue": "claude-haiku-4-5"}}],
            "startTimeUnixNano": str(RECENT_UNIX_NANO - 10**9),
            "timeUnixNano": str(RECENT_UNIX_NANO), "asInt": "1200"}]}}]}],
}]}).encode()  # fmt: skip
VALID_METRICS_PROTOBUF = json_format.Parse(
    VALID_METRICS_JSON, ExportMetricsServiceRequest()
).SerializeToString()
VALID_JSON = json.dumps(
    {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "fuzz"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "fuzz"},
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "name": "chat gpt-4o",
                                "kind": 3,
                                "startTimeUnixNano": str(RECENT_UNIX_NANO),
                                "endTimeUnixNano": str(RECENT_UNIX_NANO + 250_000_000),
                                "attributes": [
                                    {
                                        "key": "gen_ai.operation.name",
                                        "value": {"stringValue": "chat"},
                                    },
                                    {
                                        "key": "gen_ai.provider.name",
                                        "value": {"stringValue": "openai"},
                                    },
                                    {
                                        "key": "gen_ai.request.model",
                                        "value": {"stringValue": "gpt-4o"},
                                    },
                                    {
                                        "key": "gen_ai.usage.input_tokens",
                                        "value": {"intValue": "12"},
                                    },
                                    {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 3}},
                                ],
                                "status": {"code": 1},
                            }
                        ],
                    }
                ],
            }
        ]
    }
).encode()


# --- sending ----------------------------------------------------------------------------


class Sender:
    """Posts to the target and keeps the statuses; any 5xx fails the example at once."""

    def __init__(self, target: Target, key: str) -> None:
        self.target = target
        self.key = key
        self.session = requests.Session()
        self.statuses: Counter[int] = Counter()

    def post(
        self, path: str, body: bytes, content_type: str | None, encoding: str | None = None
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.key}"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        if encoding is not None:
            headers["Content-Encoding"] = encoding
        response = self.session.post(
            f"{self.target.url}{path}", data=body, headers=headers, timeout=60
        )
        self.statuses[response.status_code] += 1
        assert response.status_code < 500, (response.status_code, response.content[:500])
        assert b"Traceback" not in response.content
        return response

    def summary(self) -> str:
        return ", ".join(f"{status}: {n}" for status, n in sorted(self.statuses.items()))


def check_stored_rows(target: Target) -> dict[str, int]:
    """Counts of rows holding nonsense (all must be 0), over every organization."""
    (events,) = owner_fetch(
        target.database_url,
        """
        SELECT count(*) AS rows,
          count(*) FILTER (WHERE least(input_tokens, output_tokens, cache_read_tokens,
                 cache_write_tokens, reasoning_tokens, total_tokens) < 0) AS negative_tokens,
          count(*) FILTER (WHERE greatest(input_tokens, output_tokens, cache_read_tokens,
                 cache_write_tokens, reasoning_tokens, total_tokens) > 1e13) AS absurd_tokens,
          count(*) FILTER (WHERE "timestamp" < '1970-01-01T00:00:00Z'
                 OR "timestamp" > '2262-04-12T00:00:00Z') AS bad_timestamps,
          count(*) FILTER (WHERE duration_ms = 'NaN' OR duration_ms < 0
                 OR duration_ms = 'Infinity') AS bad_durations,
          count(*) FILTER (WHERE 'NaN' IN (cost, cost_input, cost_output, cost_cache_read,
                 cost_cache_write, provided_cost)
                 OR least(cost, cost_input, cost_output, cost_cache_read, cost_cache_write,
                          provided_cost) < 0) AS bad_costs,
          count(*) FILTER (WHERE trace_id !~ '^[0-9a-f]{32}$' OR span_id !~ '^[0-9a-f]{16}$'
                 OR trace_id = repeat('0', 32) OR span_id = repeat('0', 16)) AS bad_ids,
          count(*) FILTER (WHERE greatest(length(user_id), length(session_id),
                 length(agent_name)) > 256) AS unbounded_attribution
          FROM telemetry_events
        """,
    )
    (rollup,) = owner_fetch(
        target.database_url,
        """
        SELECT count(*) FILTER (WHERE calls < 0 OR input_tokens < 0 OR output_tokens < 0
                 OR total_tokens < 0 OR cost < 0 OR cost = 'NaN' OR latency_sum_ms = 'NaN'
                 OR latency_sum_ms < 0) AS bad_rollup_rows
          FROM usage_rollup_hourly
        """,
    )
    (dimensions,) = owner_fetch(
        target.database_url,
        """
        SELECT count(*) FILTER (WHERE calls < 0 OR cost < 0 OR cost = 'NaN'
                 OR length(value) > 256) AS bad_dimension_rows
          FROM dimension_rollup_hourly
        """,
    )
    counts = {**events, **rollup, **dimensions}
    bad = {k: v for k, v in counts.items() if k != "rows" and v}
    assert not bad, f"stored rows hold nonsense: {bad}"
    assert target.served.healthy(), "the server stopped answering /healthz"
    return counts


# --- strategies ---------------------------------------------------------------------------

EXTREME_INTS = st.sampled_from(
    [
        -(2**63),
        -(2**31),
        -1,
        0,
        1,
        2**31,
        10**12,
        10**12 + 1,
        2**53 + 1,
        2**63 - 1,
        2**63,
        2**64 - 1,
        2**64,
        10**30,
    ]
)
INTS = st.one_of(EXTREME_INTS, st.integers(-(2**70), 2**70))
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
TEXT = st.text(max_size=40)
NUMBERISH = st.one_of(
    INTS,
    INTS.map(str),
    FLOATS,
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-0", "0x10", " 12", "", "١٢"]),
    TEXT,
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
)


def hex_of(length: int) -> st.SearchStrategy[str]:
    """Valid ids: ``length`` hex digits, never all zero (hypothesis likes zeros)."""
    return st.binary(min_size=length // 2 - 1, max_size=length // 2 - 1).map(
        lambda b: "a1" + b.hex()
    )


IDS = st.one_of(
    st.sampled_from([0, 8, 15, 16, 17, 31, 32, 33, 64]).flatmap(
        lambda n: st.text(alphabet="0123456789abcdefABCDEF", min_size=n, max_size=n)
    ),
    st.just("0" * 32),
    st.just("0" * 16),
    TEXT,
    INTS,
    st.none(),
    hex_of(32),
    hex_of(16),
)

JSON_LEAVES = st.one_of(
    st.fixed_dictionaries({"stringValue": st.one_of(TEXT, INTS, st.none())}),
    st.fixed_dictionaries({"intValue": NUMBERISH}),
    st.fixed_dictionaries({"doubleValue": NUMBERISH}),
    st.fixed_dictionaries({"boolValue": st.one_of(st.booleans(), TEXT, INTS)}),
    st.fixed_dictionaries({"bytesValue": st.one_of(TEXT, st.binary(max_size=20).map(bytes.hex))}),
    st.just({}),
    NUMBERISH,
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: st.one_of(
        st.fixed_dictionaries(
            {"arrayValue": st.fixed_dictionaries({"values": st.lists(children, max_size=4)})}
        ),
        st.fixed_dictionaries(
            {
                "kvlistValue": st.fixed_dictionaries(
                    {
                        "values": st.lists(
                            st.fixed_dictionaries({"key": TEXT, "value": children}), max_size=4
                        )
                    }
                )
            }
        ),
        st.lists(children, max_size=3),
    ),
    max_leaves=12,
)
TOKEN_KEYS = st.sampled_from(
    [
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.reasoning.output_tokens",
        "gen_ai.usage.total_tokens",
        "gen_ai.usage.prompt_tokens",
        "llm.usage.total_tokens",
        "llm.token_count.prompt",
        "gen_ai.usage.cost",
        "gen_ai.request.model",
        "gen_ai.response.model",
        "gen_ai.provider.name",
        "service.name",
        # Who spent it: bounded values whatever is sent (and what is inherited through
        # hostile parent ids).
        "user.id",
        "enduser.id",
        "session.id",
        "gen_ai.agent.name",
        "gen_ai.conversation.id",
    ]
)
ATTRIBUTES = st.lists(
    st.one_of(
        st.fixed_dictionaries({"key": TOKEN_KEYS, "value": JSON_VALUES}),
        st.fixed_dictionaries({"key": st.one_of(TEXT, INTS, st.none()), "value": JSON_VALUES}),
        NUMBERISH,
    ),
    max_size=8,
)
BASE_ATTRIBUTES = [
    {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
    {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
    {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
]
TIMES = st.one_of(
    st.just(str(RECENT_UNIX_NANO)),
    INTS,
    INTS.map(str),
    FLOATS,
    TEXT,
    st.none(),
)


def sometimes(draw: st.DrawFn, valid: Any, hostile: st.SearchStrategy[Any]) -> Any:
    """Mostly the valid value, so that spans get stored with the hostile parts that remain;
    a quarter of the time something hostile."""
    return draw(hostile) if draw(st.integers(0, 3)) == 0 else valid


@st.composite
def hostile_json_span(draw: st.DrawFn) -> Any:
    start = RECENT_UNIX_NANO - draw(st.integers(0, 10**14))  # within the last day
    span: dict[str, Any] = {
        "traceId": sometimes(draw, draw(hex_of(32)), IDS),
        "spanId": sometimes(draw, draw(hex_of(16)), IDS),
        "name": sometimes(draw, "chat gpt-4o", st.one_of(TEXT, INTS, st.none())),
        "kind": sometimes(draw, 3, st.one_of(st.integers(-5, 10), INTS, TEXT)),
        "startTimeUnixNano": sometimes(draw, str(start), TIMES),
        "endTimeUnixNano": sometimes(draw, str(start + 250_000_000), TIMES),
        "attributes": BASE_ATTRIBUTES + draw(ATTRIBUTES),
        "status": sometimes(
            draw,
            {"code": 1},
            st.one_of(
                st.fixed_dictionaries({"code": st.one_of(st.integers(-3, 5), INTS, TEXT)}),
                NUMBERISH,
            ),
        ),
    }
    if draw(st.integers(0, 3)) == 0:
        span["parentSpanId"] = draw(IDS)
    if draw(st.integers(0, 3)) == 0:  # a field of the wrong shape somewhere
        field = draw(st.sampled_from(sorted(span)))
        span[field] = draw(st.one_of(NUMBERISH, st.lists(NUMBERISH, max_size=2), st.just({})))
    return span


@st.composite
def hostile_json_request(draw: st.DrawFn) -> bytes:
    spans = draw(st.lists(hostile_json_span(), min_size=1, max_size=4))
    resource_attributes = draw(st.one_of(st.just([]), ATTRIBUTES))
    document: Any = {
        "resourceSpans": [
            {
                "resource": {"attributes": resource_attributes},
                "scopeSpans": [{"scope": {"name": draw(TEXT)}, "spans": spans}],
            }
        ]
    }
    if draw(st.integers(0, 9)) == 0:  # the envelope itself of the wrong shape
        document = draw(
            st.sampled_from(
                [
                    {"resourceSpans": spans},
                    {"resourceSpans": [{"scopeSpans": spans}]},
                    {"resourceSpans": {"0": document}},
                    [document],
                    None,
                ]
            )
        )
    body = json.dumps(document, allow_nan=True, ensure_ascii=draw(st.booleans())).encode()
    if draw(st.booleans()):  # invalid UTF-8 (or surrogates) spliced in
        junk = draw(
            st.sampled_from(
                [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x00", b"\xe2\x82"]
            )
        )
        at = draw(st.integers(0, len(body)))
        body = body[:at] + junk + body[at:]
    return body


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    body = bytearray(base)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "delete", "insert", "truncate", "duplicate"]))
        at = draw(st.integers(0, max(len(body) - 1, 0)))
        if op == "flip" and body:
            body[at] ^= draw(st.integers(1, 255))
        elif op == "delete":
            del body[at : at + draw(st.integers(1, 16))]
        elif op == "insert":
            body[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "truncate":
            del body[at:]
        else:
            body[at:at] = body[at : at + draw(st.integers(1, 64))]
    return bytes(body)


AnyValueStrategy = st.SearchStrategy[AnyValue]


def _any_values() -> AnyValueStrategy:
    leaves = st.one_of(
        st.builds(lambda s: AnyValue(string_value=s), st.text(max_size=30)),
        st.builds(lambda i: AnyValue(int_value=i), st.integers(-(2**63), 2**63 - 1)),
        st.builds(lambda f: AnyValue(double_value=f), FLOATS),
        st.builds(lambda b: AnyValue(bool_value=b), st.booleans()),
        st.builds(lambda b: AnyValue(bytes_value=b), st.binary(max_size=20)),
        st.just(AnyValue()),
    )

    def extend(children: AnyValueStrategy) -> AnyValueStrategy:
        def array(values: list[AnyValue]) -> AnyValue:
            value = AnyValue()
            value.array_value.values.extend(values)
            return value

        return st.builds(array, st.lists(children, max_size=3))

    return st.recursive(leaves, extend, max_leaves=8)


@st.composite
def hostile_protobuf_request(draw: st.DrawFn) -> bytes:
    """Well-formed protobuf whose values are anything the wire allows."""
    spans = []
    for _ in range(draw(st.integers(1, 4))):
        attributes = [
            KeyValue(key="gen_ai.operation.name", value=AnyValue(string_value="chat")),
            KeyValue(key="gen_ai.request.model", value=AnyValue(string_value="gpt-4o")),
        ]
        for _ in range(draw(st.integers(0, 5))):
            key = draw(st.one_of(TOKEN_KEYS, st.text(max_size=20)))
            attributes.append(KeyValue(key=key, value=draw(_any_values())))
        start = RECENT_UNIX_NANO - draw(st.integers(0, 10**14))  # within the last day
        u64 = st.integers(0, 2**64 - 1)
        spans.append(
            Span(
                trace_id=sometimes(draw, bytes.fromhex(draw(hex_of(32))), st.binary(max_size=40)),
                span_id=sometimes(draw, bytes.fromhex(draw(hex_of(16))), st.binary(max_size=20)),
                parent_span_id=sometimes(draw, b"", st.binary(max_size=12)),
                name=draw(st.text(max_size=30)),
                kind=sometimes(draw, 3, st.integers(-(2**31), 2**31 - 1)),
                start_time_unix_nano=sometimes(draw, start, u64),
                end_time_unix_nano=sometimes(draw, start + 250_000_000, u64),
                attributes=attributes,
                status=Status(code=sometimes(draw, 1, st.integers(-(2**31), 2**31 - 1))),
            )
        )
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])]
    )
    return request.SerializeToString()


def encode(body: bytes, how: str) -> tuple[bytes, str | None]:
    """The body with a Content-Encoding, honest or not."""
    if how == "gzip":
        return gzip.compress(body), "gzip"
    if how == "deflate":
        return zlib.compress(body), "deflate"
    if how == "raw-labelled-gzip":
        return body, "gzip"
    if how == "corrupt-gzip":
        packed = bytearray(gzip.compress(body))
        packed[len(packed) // 2] ^= 0x55
        return bytes(packed), "gzip"
    if how == "truncated-gzip":
        packed = gzip.compress(body)
        return packed[: max(len(packed) // 2, 1)], "gzip"
    return body, None


ENCODINGS = st.sampled_from(
    ["none", "none", "gzip", "deflate", "raw-labelled-gzip", "corrupt-gzip", "truncated-gzip"]
)
CONTENT_TYPES = st.sampled_from(
    [PROTOBUF, JSON, "application/json; charset=utf-8", "application/x-protobuf; q=1"]
)


# --- /v1/traces -------------------------------------------------------------------------


def run_property(
    target: Target, tenant: str, label: str, build: Callable[[Sender], Callable[[], None]]
) -> None:
    sender = Sender(target, target.tenants[tenant].ingest_key)
    build(sender)()
    counts = check_stored_rows(target)
    print(
        f"\n[security] {label}: {sum(sender.statuses.values())} requests, statuses "
        f"{{{sender.summary()}}}; rows in the database {counts['rows']}, with nonsense 0; "
        f"server healthy"
    )


def test_random_and_mutated_bodies_are_never_a_5xx(target: Target) -> None:
    bodies = st.one_of(
        st.binary(max_size=4096),
        mutated(VALID_PROTOBUF),
        mutated(VALID_JSON),
        mutated(gzip.compress(VALID_PROTOBUF)),
        mutated(VALID_METRICS_JSON),
        mutated(VALID_METRICS_PROTOBUF),
    )

    def build(sender: Sender) -> Callable[[], None]:
        @FUZZ
        @given(body=bodies, content_type=CONTENT_TYPES, how=ENCODINGS)
        def run(body: bytes, content_type: str, how: str) -> None:
            data, encoding = encode(body, how)
            sender.post("/v1/traces", data, content_type, encoding)
            sender.post("/v1/logs", data, content_type, encoding)
            sender.post("/v1/metrics", data, content_type, encoding)

        return run

    run_property(
        target,
        "fuzz",
        "/v1/traces, /v1/logs and /v1/metrics random, truncated and mutated bodies",
        build,
    )


GRPC_METHODS = (
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
)
GRPC_REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def test_grpc_random_bodies_and_wrong_metadata_get_a_status_never_a_crash(
    target: Target,
) -> None:
    """Over OTLP/gRPC: random and mutated bodies, gzip or not, with a good key, no key, a
    garbled key or binary metadata; every call ends in OK or a refusal the OTLP spec names
    (never UNKNOWN or INTERNAL), and nothing absurd is stored."""
    key = target.tenants["fuzz"].ingest_key
    metadata_choices = st.sampled_from(
        [
            (("authorization", f"Bearer {key}"),),
            (("x-api-key", key),),
            (),
            (("authorization", "Bearer"),),
            (("authorization", f"Basic {key}"),),
            (("x-api-key", key[:-3] + "zzz"),),
            (("authorization", f"Bearer {key}"), ("x-api-key-bin", b"\x00\xff")),
        ]
    )
    codes: Counter[str] = Counter()
    bodies = st.one_of(
        st.binary(max_size=4096),
        mutated(VALID_PROTOBUF),
        st.just(VALID_PROTOBUF),
        mutated(VALID_METRICS_PROTOBUF),
    )
    with grpc.insecure_channel(target.grpc_target) as channel:
        exports = {
            (method, compression): channel.unary_unary(method)
            for method in GRPC_METHODS
            for compression in (grpc.Compression.NoCompression, grpc.Compression.Gzip)
        }

        @FUZZ
        @given(
            body=bodies,
            metadata=metadata_choices,
            method=st.sampled_from(GRPC_METHODS),
            gzip_it=st.booleans(),
        )
        def run(body: bytes, metadata: Any, method: str, gzip_it: bool) -> None:
            compression = grpc.Compression.Gzip if gzip_it else grpc.Compression.NoCompression
            try:
                exports[(method, compression)](
                    body, metadata=metadata, timeout=60, compression=compression
                )
            except grpc.RpcError as exc:
                codes[exc.code().name] += 1
                assert exc.code() in GRPC_REFUSALS, (exc.code(), exc.details())
                assert "Traceback" not in (exc.details() or "")
            else:
                codes["OK"] += 1

        run()
    counts = check_stored_rows(target)
    print(
        f"\n[security] OTLP/gRPC random bodies and metadata: {sum(codes.values())} calls, codes"
        f" {dict(sorted(codes.items()))}; rows in the database {counts['rows']}, with nonsense 0"
    )
    assert codes["OK"] > 0 and codes["INVALID_ARGUMENT"] > 0


def test_otlp_json_with_wrong_types_and_extreme_values_stores_nothing_absurd(
    target: Target,
) -> None:
    def build(sender: Sender) -> Callable[[], None]:
        @FUZZ
        @given(body=hostile_json_request(), how=st.sampled_from(["none", "none", "gzip"]))
        def run(body: bytes, how: str) -> None:
            data, encoding = encode(body, how)
            sender.post("/v1/traces", data, JSON, encoding)

        return run

    run_property(target, "fuzz", "/v1/traces OTLP/JSON with hostile fields", build)


def test_protobuf_with_extreme_ids_times_and_values_stores_nothing_absurd(
    target: Target,
) -> None:
    def build(sender: Sender) -> Callable[[], None]:
        @FUZZ
        @given(body=hostile_protobuf_request())
        def run(body: bytes) -> None:
            sender.post("/v1/traces", body, PROTOBUF)

        return run

    run_property(target, "fuzz", "/v1/traces protobuf with hostile values", build)


def _nested_json(depth: int) -> bytes:
    value = '{"stringValue": "x"}'
    opening = '{"arrayValue": {"values": [' * depth
    closing = "]}}" * depth
    span = json.loads(VALID_JSON)["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    marker = '"__NESTED__"'
    span["attributes"].append({"key": "deep", "value": "__NESTED__"})
    text = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})
    return text.replace(marker, opening + value + closing).encode()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _nested_protobuf(depth: int) -> bytes:
    value = _field(1, b"x")  # AnyValue.string_value
    for _ in range(depth):
        value = _field(5, _field(1, value))  # AnyValue.array_value -> ArrayValue.values
    attribute = _field(1, b"deep") + _field(2, value)  # KeyValue
    request = ExportTraceServiceRequest.FromString(VALID_PROTOBUF)
    span = request.resource_spans[0].scope_spans[0].spans[0].SerializeToString()
    span += _field(9, attribute)  # Span.attributes
    scope_spans = _field(2, span)
    resource_spans = _field(2, scope_spans)
    return _field(1, resource_spans)


@pytest.mark.parametrize("depth", [9, 64, 1_000, 100_000])
def test_deeply_nested_values_are_cut_or_refused_not_a_crash(target: Target, depth: int) -> None:
    sender = Sender(target, target.tenants["fuzz"].ingest_key)
    answers = {}
    for content_type, body in ((JSON, _nested_json(depth)), (PROTOBUF, _nested_protobuf(depth))):
        response = sender.post("/v1/traces", body, content_type)
        answers[content_type.split("/")[1]] = response.status_code
        assert response.status_code in (200, 400, 413)
    counts = check_stored_rows(target)
    print(f"\n[security] attribute nested {depth} deep: {answers}; rows {counts['rows']}")


BOMB_SIZE = 64 * 1024 * 1024  # four times the 16 MiB limit


def _members(count: int, size: int) -> bytes:
    return b"".join(gzip.compress(b"\0" * size) for _ in range(count))


@pytest.mark.parametrize(
    ("case", "build", "encoding", "expected"),
    [
        ("gzip bomb 64 MiB", lambda: gzip.compress(b"\0" * BOMB_SIZE, 9), "gzip", {413}),
        ("deflate bomb", lambda: zlib.compress(b"\0" * BOMB_SIZE, 9), "deflate", {413}),
        ("raw deflate bomb", lambda: _raw_deflate(b"\0" * BOMB_SIZE), "deflate", {413}),
        ("20 gzip members of 1 MiB", lambda: _members(20, 2**20), "gzip", {413}),
        (
            "gzip of a gzip bomb",
            lambda: gzip.compress(gzip.compress(b"\0" * BOMB_SIZE)),
            "gzip",
            {400},
        ),
        (
            "gzip twice, declared twice",
            lambda: gzip.compress(gzip.compress(VALID_PROTOBUF)),
            "gzip, gzip",
            {415},
        ),
        ("truncated gzip", lambda: gzip.compress(VALID_PROTOBUF)[:-12], "gzip", {400}),
        ("bad gzip CRC", lambda: _bad_crc(gzip.compress(VALID_PROTOBUF)), "gzip", {400}),
        (
            "gzip then garbage",
            lambda: gzip.compress(VALID_PROTOBUF) + b"garbage",
            "gzip",
            {200, 400},
        ),
        ("unknown coding br", lambda: VALID_PROTOBUF, "br", {415}),
        ("17 MiB identity", lambda: b"\0" * (17 * 2**20), None, {413}),
    ],
)
def test_compression_bombs_and_corrupt_streams(
    target: Target, case: str, build: Callable[[], bytes], encoding: str | None, expected: set[int]
) -> None:
    sender = Sender(target, target.tenants["fuzz"].ingest_key)
    body = build()
    before = target.served.rss_bytes()
    response = sender.post("/v1/traces", body, PROTOBUF, encoding)
    grew = target.served.rss_bytes() - before
    print(
        f"\n[security] {case}: {len(body)} bytes on the wire -> {response.status_code}; "
        f"server RSS +{grew / 2**20:.0f} MiB"
    )
    assert response.status_code in expected
    assert grew < 100 * 2**20
    assert target.served.healthy()


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def _bad_crc(packed: bytes) -> bytes:
    return packed[:-8] + bytes(b ^ 0xFF for b in packed[-8:-4]) + packed[-4:]


# --- /v1/ingest -------------------------------------------------------------------------

HUGE = "x" * 2**20
EVENT_TEXT = st.one_of(TEXT, st.just(HUGE), INTS, st.none(), st.lists(TEXT, max_size=2))
EVENT_TIMES = st.one_of(
    st.just("2026-11-20T10:00:00Z"),
    st.sampled_from(
        [
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "2262-04-11T23:47:16.854775Z",
            "2262-04-12T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "not a time",
        ]
    ),
    INTS,
    FLOATS,
    st.none(),
)


@st.composite
def hostile_event(draw: st.DrawFn) -> Any:
    event: dict[str, Any] = {
        "provider": sometimes(draw, "openai", EVENT_TEXT),
        "model": sometimes(draw, "gpt-4o", EVENT_TEXT),
        "timestamp": sometimes(
            draw, f"2026-11-20T10:{draw(st.integers(0, 59)):02d}:00Z", EVENT_TIMES
        ),
    }
    for name in (
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
        "total_tokens",
        "duration_ms",
        "latency_ms",
        "cost",
    ):
        if draw(st.booleans()):
            event[name] = sometimes(draw, draw(st.integers(0, 10**6)), NUMBERISH)
    for name in ("id", "trace_id", "span_id"):
        if draw(st.integers(0, 3)) == 0:
            event[name] = draw(IDS)
    for name in ("service", "environment", "status", "error_type", "operation"):
        if draw(st.integers(0, 2)) == 0:
            event[name] = sometimes(draw, "x", EVENT_TEXT)
    if draw(st.integers(0, 3)) == 0:
        event["attributes"] = draw(
            st.one_of(st.dictionaries(TEXT, NUMBERISH, max_size=4), NUMBERISH)
        )
    if draw(st.integers(0, 19)) == 0:
        return draw(NUMBERISH)
    return event


@st.composite
def hostile_events_body(draw: st.DrawFn) -> bytes:
    events = draw(st.lists(hostile_event(), max_size=5))
    document: Any = {"events": events}
    if draw(st.integers(0, 9)) == 0:
        document = draw(
            st.sampled_from([events, {"events": {"0": events}}, {"event": events}, None])
        )
    return json.dumps(document, allow_nan=True).encode()


def test_ingest_events_with_nan_negative_enormous_and_wrong_types_store_nothing_absurd(
    target: Target,
) -> None:
    def build(sender: Sender) -> Callable[[], None]:
        @FUZZ
        @given(body=hostile_events_body())
        def run(body: bytes) -> None:
            sender.post("/v1/ingest", body, JSON)

        return run

    run_property(target, "ingest-fuzz", "/v1/ingest hostile events", build)
    (row,) = owner_fetch(
        target.database_url,
        """SELECT count(*) AS rows, coalesce(max(length(request_model)), 0) AS longest_model
             FROM telemetry_events e JOIN organizations o ON o.id = e.organization_id
            WHERE o.slug = 'ingest-fuzz'""",
    )
    assert row["longest_model"] <= 1024  # huge strings are cut, not stored whole
