"""The decoder's documented limits (aethermind/ingest/otlp/limits.py) hold end to end on a
running `aethermind serve`: what is cut is stored cut, and counted in `/metrics`.

- more than 128 attributes on a span or a resource: the extra ones dropped, counted in
  ``aethermind_attributes_dropped_total``;
- values (and span names) over 8 KiB, arrays over 1024 elements: cut, counted in
  ``aethermind_attribute_values_truncated_total``; keys over 256 characters dropped;
- more than 10,000 spans in a request: the first 10,000 stored, the rest rejected in
  ``partial_success`` (200, so the client does not retry) and counted in
  ``aethermind_spans_rejected_total``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from aethermind.ingest.otlp import DEFAULT_LIMITS
from tests.faults.serving import owner_fetch
from tests.security.conftest import Target

pytestmark = pytest.mark.slow  # see pyproject.toml: a subprocess, a browser or a fuzzer

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
LIMITS = DEFAULT_LIMITS
MIB = 2**20


def kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, list):
        return KeyValue(
            key=key,
            value=AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=v) for v in value])),
        )
    return KeyValue(key=key, value=AnyValue(string_value=value))


GENAI = [
    kv("gen_ai.operation.name", "chat"),
    kv("gen_ai.provider.name", "openai"),
    kv("gen_ai.request.model", "gpt-4o"),
    kv("gen_ai.usage.input_tokens", 100),
    kv("gen_ai.usage.output_tokens", 10),
]


def span(*, name: str = "chat gpt-4o", attributes: list[KeyValue] | None = None) -> Span:
    now = time.time_ns()
    return Span(
        trace_id=os.urandom(16),
        span_id=os.urandom(8),
        name=name,
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=now - 1_000_000,
        end_time_unix_nano=now,
        attributes=GENAI + (attributes or []),
    )


def request_of(spans: list[Span], resource: list[KeyValue] | None = None) -> bytes:
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource={"attributes": [kv("service.name", "limits"), *(resource or [])]},
                scope_spans=[ScopeSpans(scope={"name": "limits"}, spans=spans)],
            )
        ]
    ).SerializeToString()


METRICS = {
    "truncated": ("aethermind_attribute_values_truncated_total", {}),
    "dropped": ("aethermind_attributes_dropped_total", {}),
    "rejected": ("aethermind_spans_rejected_total", {"reason": "invalid_span"}),
    "received": ("aethermind_spans_received_total", {}),
    "stored": ("aethermind_spans_stored_total", {}),
}


def counters(target: Target) -> dict[str, float]:
    return {k: target.served.metric(name, **labels) for k, (name, labels) in METRICS.items()}


def post(target: Target, body: bytes, content_type: str = PROTOBUF) -> requests.Response:
    key = target.tenants["limits"].ingest_key
    return requests.post(
        f"{target.url}/v1/traces",
        data=body,
        headers={"Content-Type": content_type, "Authorization": f"Bearer {key}"},
        timeout=120,
    )


def stored_row(target: Target, span_id: bytes) -> dict[str, Any]:
    (row,) = owner_fetch(
        target.database_url,
        """SELECT name, attributes, resource_attributes, input_tokens
             FROM telemetry_events WHERE span_id = $1""",
        span_id.hex(),
    )
    row["attributes"] = _json(row["attributes"])
    row["resource_attributes"] = _json(row["resource_attributes"])
    return row


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def test_attributes_past_128_are_dropped_and_counted(target: Target) -> None:
    before = counters(target)
    extra = [kv(f"extra.{i:03d}", i) for i in range(200)]
    resource_extra = [kv(f"res.{i:03d}", i) for i in range(200)]
    wide = span(attributes=extra)
    response = post(target, request_of([wide], resource_extra))
    assert response.status_code == 200
    after = counters(target)
    row = stored_row(target, wide.span_id)
    dropped = after["dropped"] - before["dropped"]
    print(
        f"\n[security] span with {len(GENAI) + 200} attributes and a resource with 201: "
        f"stored {len(row['attributes'])} span attributes and "
        f"{len(row['resource_attributes'])} resource attributes; "
        f"aethermind_attributes_dropped_total +{dropped:.0f}"
    )
    assert len(row["attributes"]) <= LIMITS.max_attributes_per_span
    assert len(row["resource_attributes"]) <= LIMITS.max_attributes_per_span
    assert row["input_tokens"] == 100  # the GenAI attributes, first, were kept
    # 205 - 128 on the span, 201 - 128 on the resource.
    assert dropped == (len(GENAI) + 200 - 128) + (201 - 128)


def test_huge_values_names_arrays_and_keys_are_cut_and_counted(target: Target) -> None:
    before = counters(target)
    huge = span(
        name="n" * MIB,
        attributes=[
            kv("prompt.like.value", "v" * MIB),
            kv("long.array", list(range(2000))),
            kv("k" * 300, "a key over 256 characters"),
        ],
    )
    response = post(target, request_of([huge]))
    assert response.status_code == 200
    after = counters(target)
    row = stored_row(target, huge.span_id)
    attributes = row["attributes"]
    truncated = after["truncated"] - before["truncated"]
    print(
        f"\n[security] 1 MiB span name, 1 MiB attribute value, 2000-element array, 300-char key "
        f"(request {len(request_of([huge])) / MIB:.1f} MiB): stored name {len(row['name'])} "
        f"chars, value {len(attributes['prompt.like.value'])} chars, array "
        f"{len(attributes['long.array'])} elements, long key kept: "
        f"{'k' * 300 in attributes}; aethermind_attribute_values_truncated_total "
        f"+{truncated:.0f}, aethermind_attributes_dropped_total "
        f"+{after['dropped'] - before['dropped']:.0f}"
    )
    assert len(row["name"]) == LIMITS.max_attribute_value_length
    assert len(attributes["prompt.like.value"]) == LIMITS.max_attribute_value_length
    assert len(attributes["long.array"]) == LIMITS.max_array_length
    assert "k" * 300 not in attributes
    assert truncated >= 3  # name, value, array


def test_more_than_10000_spans_store_the_first_10000_and_reject_the_rest(target: Target) -> None:
    limit = LIMITS.max_spans_per_request
    results = {}
    for content_type in (PROTOBUF, JSON):
        before = counters(target)
        spans = [span() for _ in range(limit + 50)]
        body = request_of(spans)
        if content_type == JSON:
            body = _as_otlp_json(spans)
        started = time.monotonic()
        response = post(target, body, content_type)
        elapsed = time.monotonic() - started
        assert response.status_code == 200
        if content_type == PROTOBUF:
            rejected = ExportTraceServiceResponse.FromString(
                response.content
            ).partial_success.rejected_spans
            message = ExportTraceServiceResponse.FromString(
                response.content
            ).partial_success.error_message
        else:
            partial = response.json()["partialSuccess"]
            rejected, message = int(partial["rejectedSpans"]), partial["errorMessage"]
        after = counters(target)
        ids = [s.span_id.hex() for s in spans]
        (row,) = owner_fetch(
            target.database_url,
            """SELECT count(*) FILTER (WHERE span_id = ANY($1)) AS first,
                      count(*) FILTER (WHERE span_id = ANY($2)) AS rest
                 FROM telemetry_events""",
            ids[:limit],
            ids[limit:],
        )
        results[content_type] = (row["first"], row["rest"])
        print(
            f"\n[security] {limit + 50} spans in one {content_type} request "
            f"({len(body) / MIB:.1f} MiB, {elapsed:.1f}s): 200, partial_success rejected "
            f"{rejected} ({message!r}); stored {row['first']} of the first {limit}, "
            f"{row['rest']} of the rest; aethermind_spans_rejected_total "
            f"+{after['rejected'] - before['rejected']:.0f}, stored_total "
            f"+{after['stored'] - before['stored']:.0f}"
        )
        assert rejected == 50 and "10000" in message.replace(",", "")
        assert (row["first"], row["rest"]) == (limit, 0)
        assert after["rejected"] - before["rejected"] == 50
        assert after["stored"] - before["stored"] == limit


def _as_otlp_json(spans: list[Span]) -> bytes:
    def value(v: AnyValue) -> dict[str, Any]:
        if v.HasField("int_value"):
            return {"intValue": str(v.int_value)}
        return {"stringValue": v.string_value}

    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": "limits"}}]
                    },
                    "scopeSpans": [
                        {
                            "scope": {"name": "limits"},
                            "spans": [
                                {
                                    "traceId": s.trace_id.hex(),
                                    "spanId": s.span_id.hex(),
                                    "name": s.name,
                                    "kind": 3,
                                    "startTimeUnixNano": str(s.start_time_unix_nano),
                                    "endTimeUnixNano": str(s.end_time_unix_nano),
                                    "attributes": [
                                        {"key": a.key, "value": value(a.value)}
                                        for a in s.attributes
                                    ],
                                }
                                for s in spans
                            ],
                        }
                    ],
                }
            ]
        }
    ).encode()
