"""Existing OpenTelemetry Collectors forward to the receiver: the shipped config must keep
naming what the receiver expects, and requests shaped exactly as the Collector's
`otlp_http` exporter sends them must get answers it understands."""

from __future__ import annotations

import gzip
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from aethermind.ingest.agent_events import READERS
from aethermind.ingest.usage_metrics import READERS as METRIC_READERS
from tests.plugins.receiver import ReceiverFactory, RunningReceiver
from tests.receiver.helpers import PROTOBUF, llm_spans, protobuf_body

pytestmark = pytest.mark.slow  # see pyproject.toml: a subprocess, a browser or a fuzzer

CONFIG = Path(__file__).resolve().parent.parent / "otel-config.yaml"
# What the Collector's otlp_http exporter sends (confighttp + otlphttpexporter).
COLLECTOR_HEADERS = {
    "Content-Type": PROTOBUF,
    "Content-Encoding": "gzip",
    "User-Agent": "OpenTelemetry Collector Contrib/0.140.0 (linux/amd64)",
}
# The Collector retries only these, honouring Retry-After; anything else is permanent.
COLLECTOR_RETRYABLE = {429, 502, 503, 504}


def load_config() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    return document


def test_collector_config_names_the_receiver_path_the_key_header_and_the_env_variable() -> None:
    config = load_config()
    exporters = config["exporters"]
    (name,) = [n for n in exporters if n.split("/")[0] in ("otlp_http", "otlphttp")]
    exporter = exporters[name]
    assert exporter["traces_endpoint"].rstrip("}").endswith("/v1/traces")
    assert exporter["headers"]["Authorization"] == "Bearer ${env:AETHERMIND_API_KEY}"
    assert (exporter["compression"], exporter["encoding"]) == ("gzip", "proto")
    assert exporter["retry_on_failure"]["enabled"] is True
    assert exporter["sending_queue"]["enabled"] is True
    # The receiver listens on 4318 by default, like the Collector: the example moves it.
    assert ":4318/" not in exporter["traces_endpoint"]

    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")
    assert exporter["logs_endpoint"].rstrip("}").endswith("/v1/logs")
    assert exporter["metrics_endpoint"].rstrip("}").endswith("/v1/metrics")
    for signal in ("traces", "logs", "metrics"):
        pipeline = config["service"]["pipelines"][signal]
        assert pipeline["processors"][0] == "memory_limiter"
        assert "batch" in pipeline["processors"]
        assert pipeline["exporters"] == [name]
        for processor in pipeline["processors"]:
            assert processor in config["processors"]


def test_collector_log_filter_keeps_every_agent_usage_event_the_receiver_reads() -> None:
    [condition] = load_config()["processors"]["filter/usage_events_only"]["logs"]["log_record"]
    for reader in READERS:
        assert f'"{reader.event}"' in condition, reader.event


def test_collector_metric_filter_keeps_every_usage_metric_the_receiver_reads() -> None:
    [condition] = load_config()["processors"]["filter/usage_metrics_only"]["metrics"]["metric"]
    named = set(re.findall(r'name == "([^"]+)"', condition))
    assert named == {reader.metric for reader in METRIC_READERS}


async def test_collector_shaped_request_gets_a_protobuf_export_response(
    receiver: RunningReceiver,
) -> None:
    response = await receiver.session.post(
        receiver.traces_url,
        data=gzip.compress(protobuf_body(llm_spans(25))),
        headers={**COLLECTOR_HEADERS, "Authorization": f"Bearer {receiver.acme.ingest_key}"},
    )
    assert response.status == 200
    # The Collector parses the body only for exactly this content type.
    assert response.headers["Content-Type"] == PROTOBUF
    ExportTraceServiceResponse.FromString(await response.read())
    assert await receiver.count_rows(receiver.acme) == 25


async def test_refusals_the_collector_must_retry_carry_retry_after_in_seconds(
    receiver_factory: ReceiverFactory,
) -> None:
    receiver = await receiver_factory()
    headers = {**COLLECTOR_HEADERS, "Authorization": f"Bearer {receiver.globex.ingest_key}"}
    body = gzip.compress(protobuf_body(llm_spans(400)))
    assert (
        await receiver.session.post(receiver.traces_url, data=body, headers=headers)
    ).status == 200
    limited = await receiver.session.post(receiver.traces_url, data=body, headers=headers)
    assert limited.status == 429 and limited.status in COLLECTOR_RETRYABLE
    assert limited.headers["Retry-After"].isdigit()
    # Permanent errors are not in the retryable set, so a bad key is not retried forever.
    unknown = await receiver.session.post(
        receiver.traces_url,
        data=body,
        headers={**COLLECTOR_HEADERS, "Authorization": "Bearer aether_nope_nope"},
    )
    assert unknown.status == 401 and unknown.status not in COLLECTOR_RETRYABLE
