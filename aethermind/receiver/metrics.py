"""The receiver's Prometheus metrics, in a registry owned by one application instance."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from aethermind.semconv.price_data import snapshot_info

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class ReceiverMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "aethermind_http_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "aethermind_http_request_duration_seconds",
            "HTTP request latency",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.grpc_requests = Counter(
            "aethermind_grpc_requests",
            "OTLP/gRPC calls by method and status code",
            ["method", "code"],
            registry=r,
        )
        self.grpc_request_seconds = Histogram(
            "aethermind_grpc_request_duration_seconds",
            "OTLP/gRPC call latency",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.write_seconds = Histogram(
            "aethermind_write_duration_seconds",
            "Time to commit one batch of rows",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.spans_received = Counter(
            "aethermind_spans_received", "Spans decoded from requests", registry=r
        )
        self.spans_stored = Counter(
            "aethermind_spans_stored", "Spans committed as new rows", registry=r
        )
        self.spans_duplicate = Counter(
            "aethermind_spans_duplicate",
            "Spans already stored (re-sent), not stored again",
            registry=r,
        )
        self.spans_dropped = Counter(
            "aethermind_spans_dropped",
            "Accepted spans not stored, by reason",
            ["reason"],
            registry=r,
        )
        self.spans_rejected = Counter(
            "aethermind_spans_rejected",
            "Spans rejected as invalid, by reason",
            ["reason"],
            registry=r,
        )
        self.price_lookups_refused = Counter(
            "aethermind_price_lookups_refused",
            "Spans stored unpriced because their organization spent its budget of lookups"
            " of new model names (aethermind reprice prices them later)",
            registry=r,
        )
        self.values_truncated = Counter(
            "aethermind_attribute_values_truncated",
            "Attribute values cut to the length limit",
            registry=r,
        )
        self.dimension_values_cut = Counter(
            "aethermind_dimension_values_cut",
            "Spans whose user, session or agent was cut to the length limit",
            registry=r,
        )
        self.log_records_received = Counter(
            "aethermind_log_records_received",
            "OTLP log records decoded (POST /v1/logs)",
            registry=r,
        )
        self.log_records_dropped = Counter(
            "aethermind_log_records_dropped",
            "Accepted log records not stored, by reason (no_usage: they report no LLM call)",
            ["reason"],
            registry=r,
        )
        self.metric_points_received = Counter(
            "aethermind_metric_points_received",
            "OTLP metric data points decoded (POST /v1/metrics)",
            registry=r,
        )
        self.metric_points_dropped = Counter(
            "aethermind_metric_points_dropped",
            "Accepted metric data points not stored, by reason (no_usage: they report no LLM"
            " usage; duplicate: stored before)",
            ["reason"],
            registry=r,
        )
        self.metric_points_stored = Counter(
            "aethermind_metric_points_stored",
            "Metric data points committed as usage (POST /v1/metrics)",
            registry=r,
        )
        self.attribution_carriers = Counter(
            "aethermind_attribution_carriers",
            "Spans that are not GenAI spans kept (without attributes or usage) because they"
            " name a user, session, agent or tag value the spans under them inherit",
            registry=r,
        )
        self.attributes_dropped = Counter(
            "aethermind_attributes_dropped",
            "Attributes dropped by the per-span limits",
            registry=r,
        )
        self.inflight = Gauge(
            "aethermind_inflight_requests", "Ingest requests being processed", registry=r
        )
        self.auth_cache = Counter(
            "aethermind_auth_cache", "API key cache lookups", ["result"], registry=r
        )
        self.auth_failures = Counter(
            "aethermind_auth_failures", "Rejected credentials by reason", ["reason"], registry=r
        )
        self.rate_limited = Counter(
            "aethermind_rate_limited",
            "Requests refused by an organization's rate limit",
            registry=r,
        )
        prices = snapshot_info()
        self.price_snapshot_age = Gauge(
            "aethermind_price_snapshot_age_seconds",
            "Seconds since the newest price change the genai-prices data in use knows of"
            " (prices changed later are not in it); NaN when the data dates none",
            registry=r,
        )
        self.price_snapshot_age.set_function(lambda: prices.age_seconds() or math.nan)
        self.price_snapshot = Gauge(
            "aethermind_price_snapshot",
            "1, labelled with the genai-prices version in use and whether its prices came"
            " from its updater (only when the operator turned updating on)",
            ["genai_prices_version", "auto_updated"],
            registry=r,
        )
        self.price_snapshot.labels(prices.package_version, str(prices.auto_updated).lower()).set(1)
        self.rate_limit_fallback = Gauge(
            "aethermind_rate_limit_local_fallback",
            "1 while Redis is unreachable and the in-process limit is used",
            registry=r,
        )
        self.saturated = Counter(
            "aethermind_saturated",
            "Requests answered 503 because the server was saturated",
            registry=r,
        )
        self.storage_unavailable = Counter(
            "aethermind_storage_unavailable",
            "Requests answered 503 because storage failed",
            registry=r,
        )
        self.budget_checks = Counter(
            "aethermind_budget_checks",
            "Budget checks by this process, by outcome (ok, failed)",
            ["outcome"],
            registry=r,
        )
        self.budget_alerts = Counter(
            "aethermind_budget_alerts",
            "Budget alert webhook deliveries, by outcome (delivered, failed: retried later)",
            ["outcome"],
            registry=r,
        )
