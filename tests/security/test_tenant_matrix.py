"""Who may do what, on a running `aethermind serve`: two organizations, a key of each scope
(ingest, read, admin), a revoked key and no key, against every route. Each answer has the
expected status, a key reads and writes only its own organization's data, and nothing in a
body, a query string or a header (an organization id, another organization's trace id or
span ids) ever picks the organization.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import grpc
import pytest
import requests
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from aethermind.storage.config import DatabaseConfig
from aethermind.storage.database import Database
from aethermind.storage.prices import create_price
from aethermind.storage.tenants import create_key, create_organization, revoke_key
from tests.faults.load import genai_request
from tests.faults.serving import owner_fetch
from tests.plugins.database import run_async
from tests.security.conftest import Target

pytestmark = pytest.mark.slow  # see pyproject.toml: a subprocess, a browser or a fuzzer

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
CREDENTIALS = ("ingest", "read", "admin", "revoked", "none")
OPEN = {c: 200 for c in CREDENTIALS}


def by_scope(allowed: str) -> dict[str, int]:
    """200 for the key with ``allowed``, 403 for the other keys (and the revoked one), 401
    without a key."""
    return {c: 200 if c == allowed else 401 if c == "none" else 403 for c in CREDENTIALS}


EXPECTED = {
    "POST /v1/traces": by_scope("ingest"),
    "POST /v1/ingest": by_scope("ingest"),
    "POST /v1/logs": by_scope("ingest"),
    "POST /v1/metrics": by_scope("ingest"),
    "GET /v1/aggregates": by_scope("read"),
    "GET /v1/traces/{id}": by_scope("read"),
    "GET /v1/top-traces": by_scope("read"),
    "GET /v1/keys": by_scope("admin"),
    "POST /v1/keys": {**by_scope("admin"), "admin": 201},
    "DELETE /v1/keys/{key}": by_scope("admin"),
    "GET /v1/prices": by_scope("admin"),
    "POST /v1/prices": {**by_scope("admin"), "admin": 201},
    "DELETE /v1/prices/{price}": {**by_scope("admin"), "admin": 204},
    "GET /v1/tags": by_scope("admin"),
    "PUT /v1/tags": by_scope("admin"),
    "GET /v1/cost-basis": by_scope("admin"),
    "PUT /v1/cost-basis": by_scope("admin"),
    # OTLP/gRPC, its status codes read as the HTTP statuses they stand for.
    "GRPC TraceService/Export": by_scope("ingest"),
    "GRPC LogsService/Export": by_scope("ingest"),
    "GRPC MetricsService/Export": by_scope("ingest"),
    "GET /dashboard": OPEN,
    "GET /healthz": OPEN,
    "GET /readyz": OPEN,
    "GET /metrics": OPEN,
}


@dataclass
class Org:
    slug: str
    id: UUID
    keys: dict[str, str]
    service: str
    trace_id: str = ""
    span_ids: tuple[str, ...] = ()


def make_orgs(database_url: str) -> dict[str, Org]:
    async def make() -> dict[str, Org]:
        config = DatabaseConfig(database_url=database_url, min_pool_size=1, max_pool_size=2)
        orgs = {}
        async with Database(config) as pool:
            for name in ("a", "b"):
                org = await create_organization(
                    pool, f"Tenant {name}", slug=f"tenant-{name}", rate_limit_per_min=10**6
                )
                keys = {}
                for scope in ("ingest", "read", "admin"):
                    _, keys[scope] = await create_key(pool, org.id, [scope], name=scope)
                revoked, keys["revoked"] = await create_key(
                    pool, org.id, ["ingest", "read", "admin"], name="revoked"
                )
                await revoke_key(pool, revoked.id)
                orgs[name] = Org(org.slug, org.id, keys, f"svc-{name}")
        return orgs

    return run_async(make())


def headers_for(org: Org, credential: str, *, header: str = "bearer") -> dict[str, str]:
    if credential == "none":
        return {}
    key = org.keys[credential]
    return {"Authorization": f"Bearer {key}"} if header == "bearer" else {"x-api-key": key}


def logs_body(org: Org) -> bytes:
    """One Claude Code usage event, from the organization's own service."""
    record = {
        "timeUnixNano": str(time.time_ns()),
        "body": {"stringValue": "claude_code.api_request"},
        "attributes": [
            {"key": "event.name", "value": {"stringValue": "api_request"}},
            {"key": "model", "value": {"stringValue": "claude-haiku-4-5"}},
            {"key": "input_tokens", "value": {"intValue": str(int.from_bytes(os.urandom(2)))}},
            {"key": "output_tokens", "value": {"intValue": "5"}},
        ],
    }
    resource = [{"key": "service.name", "value": {"stringValue": org.service}}]
    return json.dumps({"resourceLogs": [{
        "resource": {"attributes": resource}, "scopeLogs": [{"logRecords": [record]}],
    }]}).encode()  # fmt: skip


def metrics_body(org: Org) -> bytes:
    """One GenAI token-usage histogram point (a delta), from the organization's own service."""
    now = time.time_ns()
    point = {
        "attributes": [
            {"key": "gen_ai.token.type", "value": {"stringValue": "input"}},
            {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
            {"key": "gen_ai.response.model", "value": {"stringValue": "gpt-4o"}},
        ],
        "startTimeUnixNano": str(now - 10**9),
        "timeUnixNano": str(now),
        "count": "1",
        "sum": float(int.from_bytes(os.urandom(2))),
    }
    resource = [{"key": "service.name", "value": {"stringValue": org.service}}]
    return json.dumps({"resourceMetrics": [{
        "resource": {"attributes": resource},
        "scopeMetrics": [{"metrics": [{"name": "gen_ai.client.token.usage", "histogram": {
            "aggregationTemporality": 1, "dataPoints": [point]}}]}],
    }]}).encode()  # fmt: skip


def traces_body(org: Org, count: int = 2, **resource: str) -> bytes:
    spans = []
    now = time.time_ns()
    for _ in range(count):
        spans.append(
            {
                "traceId": os.urandom(16).hex(),
                "spanId": os.urandom(8).hex(),
                "name": "chat gpt-4o",
                "kind": 3,
                "startTimeUnixNano": str(now - 1_000_000),
                "endTimeUnixNano": str(now),
                "attributes": [
                    {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                    {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
                    {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "10"}},
                    {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "5"}},
                ],
            }
        )
    attributes = [{"key": "service.name", "value": {"stringValue": org.service}}]
    attributes += [{"key": k, "value": {"stringValue": v}} for k, v in resource.items()]
    return json.dumps(
        {
            "resourceSpans": [
                {"resource": {"attributes": attributes}, "scopeSpans": [{"spans": spans}]}
            ]
        }
    ).encode()


def events_body(org: Org, **extra: Any) -> bytes:
    event = {
        "provider": "openai",
        "model": "gpt-4o",
        "input_tokens": 7,
        "output_tokens": 3,
        "service": org.service,
        "timestamp": datetime.now(UTC).isoformat(),
        "id": os.urandom(8).hex(),
        **extra,
    }
    return json.dumps({"events": [event]}).encode()


@dataclass
class GrpcAnswer:
    """A gRPC call's outcome in the matrix's terms: the HTTP status its code stands for."""

    status_code: int


GRPC_AS_HTTP = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
}


def grpc_call(target: Target, service: str, org: Org, headers: dict[str, str]) -> GrpcAnswer:
    """``service``'s Export with ``headers`` as metadata; traces as protobuf spans of the
    organization's service, logs as its Claude Code event, metrics as its GenAI token usage."""
    if service == "TraceService":
        body, _ = genai_request(2, service=org.service)
        method = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
    elif service == "MetricsService":
        request = json_format.Parse(metrics_body(org), ExportMetricsServiceRequest())
        body = request.SerializeToString()
        method = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
    else:
        body = json_format.Parse(logs_body(org), ExportLogsServiceRequest()).SerializeToString()
        method = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
    metadata = tuple((k.lower(), v) for k, v in headers.items())
    with grpc.insecure_channel(target.grpc_target) as channel:
        try:
            channel.unary_unary(method)(body, metadata=metadata, timeout=30)
        except grpc.RpcError as exc:
            return GrpcAnswer(GRPC_AS_HTTP.get(exc.code(), 500))
    return GrpcAnswer(200)


def call(
    target: Target, route: str, org: Org, headers: dict[str, str], **params: str
) -> requests.Response | GrpcAnswer:
    method, path = route.split(" ")
    if method == "GRPC":
        return grpc_call(target, path.split("/")[0], org, headers)
    url = target.url + path.replace("{id}", org.trace_id)
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    if method == "DELETE":
        # A throwaway key or price of this organization each time, so revoking never
        # touches the matrix's own keys.
        if "{key}" in path:
            url = target.url + path.replace("{key}", str(throwaway_key(target, org)))
        else:
            url = target.url + path.replace("{price}", str(throwaway_price(target, org)))
        return requests.delete(url, headers=headers, params=params, timeout=30)
    if path == "/v1/prices" and method == "POST":
        body = json.dumps(
            {"model_pattern": "matrix-*", "input_per_mtok": "1", "output_per_mtok": "2"}
        ).encode()
        return requests.post(
            url, data=body, headers={**headers, "Content-Type": JSON}, params=params, timeout=30
        )
    if path == "/v1/tags" and method == "PUT":
        body = json.dumps({"keys": [f"m-{org.slug}"]}).encode()
        return requests.put(
            url, data=body, headers={**headers, "Content-Type": JSON}, params=params, timeout=30
        )
    if path == "/v1/cost-basis" and method == "PUT":
        body = json.dumps({"cost_basis": "computed"}).encode()
        return requests.put(
            url, data=body, headers={**headers, "Content-Type": JSON}, params=params, timeout=30
        )
    if path == "/v1/keys" and method == "POST":
        body = json.dumps({"scopes": ["read"], "name": "matrix"}).encode()
        return requests.post(
            url, data=body, headers={**headers, "Content-Type": JSON}, params=params, timeout=30
        )
    if method == "POST":
        if path == "/v1/traces":
            body, ctype = traces_body(org), JSON
        elif path == "/v1/logs":
            body, ctype = logs_body(org), JSON
        elif path == "/v1/metrics":
            body, ctype = metrics_body(org), JSON
        else:
            body, ctype = events_body(org), JSON
        return requests.post(
            url, data=body, headers={**headers, "Content-Type": ctype}, params=params, timeout=30
        )
    if path in ("/v1/aggregates", "/v1/top-traces"):
        params = {"from": since, **params}
        if path == "/v1/aggregates":
            params.setdefault("group_by", "service")
    return requests.get(url, headers=headers, params=params, timeout=30)


def throwaway_key(target: Target, org: Org) -> UUID:
    async def make() -> UUID:
        config = DatabaseConfig(database_url=target.database_url, min_pool_size=1, max_pool_size=1)
        async with Database(config) as pool:
            record, _ = await create_key(pool, org.id, ["read"], name="throwaway")
        return record.id

    return run_async(make())


def throwaway_price(target: Target, org: Org) -> UUID:
    async def make() -> UUID:
        config = DatabaseConfig(database_url=target.database_url, min_pool_size=1, max_pool_size=1)
        async with Database(config) as pool:
            price = await create_price(
                pool, org.id, "throwaway-*", input_per_mtok=Decimal(1), output_per_mtok=Decimal(1)
            )
        return price.id

    return run_async(make())


def org_of_rows(
    target: Target, column: str, values: list[str], *, table: str = "telemetry_events"
) -> Counter[str]:
    rows = owner_fetch(
        target.database_url,
        f"""SELECT o.slug, count(*) AS n FROM {table} e
              JOIN organizations o ON o.id = e.organization_id
             WHERE e.{column} = ANY($1) GROUP BY o.slug""",
        values,
    )
    return Counter({r["slug"]: r["n"] for r in rows})


@pytest.fixture(scope="module")
def orgs(target: Target) -> dict[str, Org]:
    orgs = make_orgs(target.database_url)
    for org in orgs.values():
        body, keys = genai_request(3, service=org.service)
        response = requests.post(
            f"{target.url}/v1/traces",
            data=body,
            headers={**headers_for(org, "ingest"), "Content-Type": PROTOBUF},
            timeout=30,
        )
        assert response.status_code == 200
        org.trace_id = keys[0][0]
        org.span_ids = tuple(span for _, span in keys)
    return orgs


def test_every_route_answers_each_credential_as_expected(
    target: Target, orgs: dict[str, Org]
) -> None:
    mismatches = []
    answered: Counter[int] = Counter()
    for org in orgs.values():
        other = orgs["b" if org is orgs["a"] else "a"]
        for route, expected in EXPECTED.items():
            for credential in CREDENTIALS:
                for header in ("bearer", "x-api-key") if credential != "none" else ("bearer",):
                    response = call(target, route, org, headers_for(org, credential, header=header))
                    answered[response.status_code] += 1
                    if response.status_code != expected[credential]:
                        mismatches.append(
                            (org.slug, route, credential, header, response.status_code)
                        )
                    if response.status_code == 200 and route.startswith("GET /v1/"):
                        check_only_own_data(route, response.json(), org, other)
                    if response.status_code >= 400 and isinstance(response, requests.Response):
                        # OTLP routes answer a google.rpc.Status, the others a JSON error.
                        otlp = route in ("POST /v1/traces", "POST /v1/logs", "POST /v1/metrics")
                        assert otlp or "error" in response.json()
    cells = len(orgs) * len(EXPECTED) * len(CREDENTIALS)
    print(
        f"\n[security] tenant matrix: 2 organizations x {len(EXPECTED)} routes x "
        f"{len(CREDENTIALS)} credentials ({cells} cells, {sum(answered.values())} requests "
        f"with Bearer and x-api-key): statuses {dict(sorted(answered.items()))}; "
        f"unexpected {len(mismatches)}"
    )
    assert not mismatches, mismatches
    # /metrics is open to anyone who can reach the port: it names no organization.
    metrics = requests.get(f"{target.url}/metrics", timeout=30).text
    for org in orgs.values():
        assert str(org.id) not in metrics and org.slug not in metrics
    # What the ingest keys wrote belongs to their own organization only.
    for org in orgs.values():
        slugs = set(org_of_rows(target, "service", [org.service]))
        assert slugs == {org.slug}
        slugs = set(org_of_rows(target, "service", [org.service], table="metric_usage"))
        assert slugs == {org.slug}


def check_only_own_data(route: str, document: Any, org: Org, other: Org) -> None:
    if route == "GET /v1/aggregates":
        services = {row["service"] for row in document["rows"]}
        assert services == {org.service}, services
    elif route == "GET /v1/traces/{id}":
        assert document["trace_id"] == org.trace_id
        assert {s["span_id"] for s in document["spans"]} <= set(org.span_ids)
    elif route == "GET /v1/keys":
        assert {k["organization_id"] for k in document["keys"]} == {str(org.id)}
    elif route == "GET /v1/prices":
        assert {p["organization_id"] for p in document["prices"]} <= {str(org.id)}
    elif route in ("GET /v1/tags", "PUT /v1/tags"):
        assert set(document["keys"]) <= {f"m-{org.slug}"}
    elif route == "GET /v1/top-traces":
        ids = {t["trace_id"] for t in document["traces"]}
        assert org.trace_id in ids and other.trace_id not in ids


def test_ids_in_bodies_queries_and_headers_never_pick_the_organization(
    target: Target, orgs: dict[str, Org]
) -> None:
    a, b = orgs["a"], orgs["b"]
    read_a = headers_for(a, "read")
    outcomes = {}

    # Reading: an organization parameter is refused or ignored, never obeyed.
    response = call(target, "GET /v1/aggregates", a, read_a, organization_id=str(b.id))
    outcomes["aggregates?organization_id=B"] = response.status_code
    assert response.status_code == 400
    response = call(target, "GET /v1/top-traces", a, read_a, organization_id=str(b.id))
    outcomes["top-traces?organization_id=B"] = response.status_code
    assert response.status_code in (200, 400)
    if response.status_code == 200:
        ids = {t["trace_id"] for t in response.json()["traces"]}
        assert b.trace_id not in ids and a.trace_id in ids
    # A filter naming what only B has finds nothing of B's.
    response = call(target, "GET /v1/top-traces", a, read_a, service=b.service)
    outcomes["top-traces?service=B's"] = response.status_code
    assert response.status_code == 200 and response.json()["traces"] == []
    response = requests.get(
        f"{target.url}/v1/traces/{b.trace_id}",
        headers={**read_a, "X-Organization-Id": str(b.id)},
        params={"organization_id": str(b.id)},
        timeout=30,
    )
    outcomes["A's key on B's trace id"] = response.status_code
    assert response.status_code == 404
    assert b.trace_id not in response.text or "no spans" in response.text

    # Writing: B's id in the resource, in span attributes, in the query and in a header.
    spoof_headers = {**headers_for(a, "ingest"), "X-Organization-Id": str(b.id)}
    body = traces_body(a, organization_id=str(b.id), **{"aethermind.organization_id": str(b.id)})
    response = requests.post(
        f"{target.url}/v1/traces",
        data=body,
        params={"organization_id": str(b.id)},
        headers={**spoof_headers, "Content-Type": JSON},
        timeout=30,
    )
    outcomes["traces with B's id in resource, query, header"] = response.status_code
    assert response.status_code == 200
    sent = [s["spanId"] for s in json.loads(body)["resourceSpans"][0]["scopeSpans"][0]["spans"]]
    assert org_of_rows(target, "span_id", sent) == Counter({a.slug: len(sent)})

    event_id = os.urandom(8).hex()
    response = requests.post(
        f"{target.url}/v1/ingest",
        data=events_body(
            a, id=event_id, organization_id=str(b.id), attributes={"organization_id": str(b.id)}
        ),
        headers={**spoof_headers, "Content-Type": JSON},
        timeout=30,
    )
    outcomes["ingest with B's id in the event"] = response.status_code
    assert response.status_code == 200
    assert org_of_rows(target, "span_id", [event_id]) == Counter({a.slug: 1})

    # Re-sending B's exact spans with A's key makes A rows; B's rows are untouched.
    before_b = owner_fetch(
        target.database_url,
        "SELECT span_id, attributes FROM telemetry_events WHERE organization_id = $1",
        b.id,
    )
    body, _ = genai_request(1)
    request = _with_ids(body, b.trace_id, b.span_ids[0])
    response = requests.post(
        f"{target.url}/v1/traces",
        data=request,
        headers={**headers_for(a, "ingest"), "Content-Type": PROTOBUF},
        timeout=30,
    )
    assert response.status_code == 200
    after_b = owner_fetch(
        target.database_url,
        "SELECT span_id, attributes FROM telemetry_events WHERE organization_id = $1",
        b.id,
    )
    assert before_b == after_b
    assert org_of_rows(target, "span_id", [b.span_ids[0]])[a.slug] == 1
    outcomes["A re-sends B's trace and span ids"] = response.status_code
    # Keys: A's admin key on one of B's key ids finds nothing, and B's key keeps working.
    b_key = throwaway_key(target, b)
    response = requests.delete(
        f"{target.url}/v1/keys/{b_key}",
        headers={**headers_for(a, "admin"), "X-Organization-Id": str(b.id)},
        params={"organization_id": str(b.id)},
        timeout=30,
    )
    outcomes["A's admin key revokes B's key id"] = response.status_code
    assert response.status_code == 404
    [row] = owner_fetch(target.database_url, "SELECT revoked_at FROM api_keys WHERE id = $1", b_key)
    assert row["revoked_at"] is None
    print(f"\n[security] spoofing attempts: {outcomes}; every row landed in the key's organization")


def _with_ids(body: bytes, trace_id: str, span_id: str) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest.FromString(body)
    span = request.resource_spans[0].scope_spans[0].spans[0]
    span.trace_id = bytes.fromhex(trace_id)
    span.span_id = bytes.fromhex(span_id)
    return request.SerializeToString()
