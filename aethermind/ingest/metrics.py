"""OTLP metrics (``POST /v1/metrics``): decode an ``ExportMetricsServiceRequest`` (protobuf
or OTLP/JSON) into flat data points, within the same limits as spans, and encode the
response. Which points report usage is ``usage_metrics``' business; only the metrics it
names are read past their name. Pure: no I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from aethermind.ingest.otlp import (
    MAX_TIME_UNIX_NANO,
    DecodeLimits,
    MalformedBodyError,
    OtlpFormat,
)
from aethermind.ingest.otlp_fields import (
    Rejections,
    encode_partial_success,
    json_attributes,
    json_list,
    json_nanos,
    json_object,
    proto_attributes,
)

POINT_KINDS: tuple[str, ...] = ("sum", "gauge", "histogram", "exponential_histogram")
"""The data kinds whose points are read (a summary's quantiles say nothing about usage)."""

_JSON_KINDS = {"sum": "sum", "gauge": "gauge", "histogram": "histogram",
               "exponentialHistogram": "exponential_histogram",
               "exponential_histogram": "exponential_histogram"}  # fmt: skip
_CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
_CUMULATIVE_NAMES = ("AGGREGATION_TEMPORALITY_CUMULATIVE", _CUMULATIVE)


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One data point as the usage mapping reads it.

    ``value`` is a number point's value, or a histogram's sum (None when it has none);
    ``count`` a histogram's count (None for number points). ``cumulative`` points hold the
    total since ``start_time_unix_nano``; the others, the change over their interval.
    """

    metric: str
    kind: str
    cumulative: bool
    start_time_unix_nano: int
    time_unix_nano: int
    value: float | None
    count: int | None
    attributes: dict[str, Any]
    resource_attributes: dict[str, Any]


@dataclass(slots=True)
class DecodedMetrics:
    format: OtlpFormat
    points: list[MetricPoint] = field(default_factory=list)
    unread: int = 0
    """Points of metrics no reader names: counted and dropped, their attributes unread."""
    rejections: Rejections = field(default_factory=Rejections)

    @property
    def total(self) -> int:
        return len(self.points) + self.unread


Wanted = Callable[[str], bool]
"""Whether a metric's points are worth decoding, by the metric's name."""


@dataclass(frozen=True, slots=True)
class _RawPoint:
    metric: str
    kind: str
    cumulative: bool
    start: int
    time: int
    value: float | None
    count: int | None
    attributes: dict[str, Any]


def decode_metrics(
    body: bytes, fmt: OtlpFormat, limits: DecodeLimits, wanted: Wanted
) -> DecodedMetrics:
    """The request's points of ``wanted`` metrics, at most ``limits.max_spans_per_request``
    points in all (the rest rejected through ``partial_success``); a point with an
    impossible time or a negative or non-finite value is rejected with the reason.
    MalformedBodyError (400) for a body that is not an ``ExportMetricsServiceRequest``."""
    decoded = DecodedMetrics(fmt)
    if fmt is OtlpFormat.PROTOBUF:
        try:
            request = ExportMetricsServiceRequest.FromString(body)
        except Exception as exc:  # upb raises DecodeError; whatever the parser raises is a 400
            raise MalformedBodyError(f"body is not an ExportMetricsServiceRequest: {exc}") from exc
        resources: Iterator[tuple[dict[str, Any], Iterator[_RawPoint | None]]] = _proto_points(
            request, limits, wanted
        )
    else:
        try:
            document = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise MalformedBodyError(f"body is not valid JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise MalformedBodyError("body must be a JSON object (ExportMetricsServiceRequest)")
        resources = _json_points(document, limits, wanted)
    room = limits.max_spans_per_request
    for resource, points in resources:
        for point in points:
            if room <= 0:
                decoded.rejections.add(
                    1, f"over the limit of {limits.max_spans_per_request} data points"
                )
                continue
            room -= 1
            if point is None:
                decoded.unread += 1
                continue
            problem = _problem(point)
            if problem:
                decoded.rejections.add(1, f"{point.metric}: {problem}")
                continue
            decoded.points.append(
                MetricPoint(
                    point.metric,
                    point.kind,
                    point.cumulative,
                    point.start,
                    point.time,
                    point.value,
                    point.count,
                    point.attributes,
                    resource,
                )
            )
    return decoded


def _problem(point: _RawPoint) -> str | None:
    if not 0 < point.time <= MAX_TIME_UNIX_NANO:
        return "timeUnixNano out of range"
    if not 0 <= point.start <= point.time:
        return "startTimeUnixNano after timeUnixNano"
    if point.value is not None and not (math.isfinite(point.value) and point.value >= 0):
        return f"value {point.value!r} is not a non-negative number"
    if point.count is not None and point.count < 0:
        return "negative count"
    return None


def _proto_points(
    request: ExportMetricsServiceRequest, limits: DecodeLimits, wanted: Wanted
) -> Iterator[tuple[dict[str, Any], Iterator[_RawPoint | None]]]:
    for resource_metrics in request.resource_metrics:
        resource = proto_attributes(resource_metrics.resource.attributes, limits)
        yield resource, _proto_resource_points(resource_metrics, limits, wanted)


def _proto_resource_points(
    resource_metrics: Any, limits: DecodeLimits, wanted: Wanted
) -> Iterator[_RawPoint | None]:
    for scope_metrics in resource_metrics.scope_metrics:
        for metric in scope_metrics.metrics:
            kind = metric.WhichOneof("data")
            if kind is None:
                continue
            data = getattr(metric, kind)
            name = metric.name[: limits.max_attribute_value_length]
            read = kind in POINT_KINDS and wanted(name)
            cumulative = getattr(data, "aggregation_temporality", 0) == _CUMULATIVE
            for point in data.data_points:
                if not read:
                    yield None
                    continue
                if kind in ("sum", "gauge"):
                    number = point.WhichOneof("value")
                    value: float | None = (
                        float(point.as_int) if number == "as_int" else point.as_double
                    )
                    count = None
                else:
                    value = point.sum if point.HasField("sum") else None
                    count = point.count
                yield _RawPoint(
                    name,
                    kind,
                    cumulative,
                    point.start_time_unix_nano,
                    point.time_unix_nano,
                    value,
                    count,
                    proto_attributes(point.attributes, limits),
                )


def _json_points(
    document: dict[str, Any], limits: DecodeLimits, wanted: Wanted
) -> Iterator[tuple[dict[str, Any], Iterator[_RawPoint | None]]]:
    for resource_metrics in json_list(document, "resourceMetrics", "resource_metrics"):
        resource_obj = json_object(resource_metrics.get("resource"))
        resource = json_attributes(resource_obj.get("attributes"), limits)
        yield resource, _json_resource_points(resource_metrics, limits, wanted)


def _json_resource_points(
    resource_metrics: dict[str, Any], limits: DecodeLimits, wanted: Wanted
) -> Iterator[_RawPoint | None]:
    for scope_metrics in json_list(resource_metrics, "scopeMetrics", "scope_metrics"):
        for metric in json_list(scope_metrics, "metrics", "metrics"):
            name = metric.get("name")
            name = (name if isinstance(name, str) else "")[: limits.max_attribute_value_length]
            key = next((k for k in _JSON_KINDS if isinstance(metric.get(k), dict)), None)
            if key is None:
                continue
            kind, data = _JSON_KINDS[key], metric[key]
            read = wanted(name)
            temporality = data.get("aggregationTemporality", data.get("aggregation_temporality"))
            cumulative = temporality in _CUMULATIVE_NAMES
            for point in json_list(data, "dataPoints", "data_points"):
                if not read:
                    yield None
                    continue
                yield _json_point(name, kind, cumulative, point, limits)


def _json_point(
    name: str, kind: str, cumulative: bool, point: dict[str, Any], limits: DecodeLimits
) -> _RawPoint:
    start = json_nanos(point.get("startTimeUnixNano", point.get("start_time_unix_nano")))
    time = json_nanos(point.get("timeUnixNano", point.get("time_unix_nano")))
    count: int | None = None
    if kind in ("sum", "gauge"):
        value = _json_number(point.get("asDouble", point.get("as_double")))
        if value is None:
            value = _json_number(point.get("asInt", point.get("as_int")), integer=True)
    else:
        value = _json_number(point.get("sum"))
        raw_count = _json_number(point.get("count"), integer=True)
        count = int(raw_count) if raw_count is not None else 0
    return _RawPoint(
        name,
        kind,
        cumulative,
        start,
        time,
        value,
        count,
        json_attributes(point.get("attributes"), limits),
    )


def _json_number(value: Any, *, integer: bool = False) -> float | None:
    """A JSON number, or an integer as decimal text (OTLP/JSON's 64-bit integers); NaN
    (rejected) for anything else that is present."""
    if value is None:
        return None
    if isinstance(value, str) and integer and value.lstrip("-").isdigit() and len(value) <= 20:
        return float(int(value))
    if type(value) in (int, float):
        return float(value)
    return math.nan


def encode_metrics_response(fmt: OtlpFormat, *, rejected: int, message: str) -> tuple[bytes, str]:
    """The 200 body: ``partial_success`` with the rejected data points, unset when none were."""
    return encode_partial_success(
        fmt, ExportMetricsServiceResponse(), "rejected_data_points", rejected, message
    )
