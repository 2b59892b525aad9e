"""``GET /openapi.json``: the OpenAPI 3.1 document of every route the receiver serves.

Built in code from the constants the handlers use (group keys, granularities, token columns,
span kinds), so the document cannot drift from what the query code accepts and returns.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

from aiohttp import web

from aethermind.ingest.otlp import MAX_TIME_UNIX_NANO
from aethermind.receiver.dashboard import DASHBOARD_PATH, PLOTLY_ASSET, STATIC_PREFIX
from aethermind.receiver.schemas import TAG_DIMENSION_PATTERN, component_schemas
from aethermind.storage.queries import (
    FILTER_KEYS,
    GRANULARITIES,
    GROUP_KEYS,
    MAX_LIMIT,
    ORDER_KEYS,
)

OPENAPI_PATH: Final = "/openapi.json"
OPENAPI_VERSION: Final = "3.1.0"
JSON: Final = "application/json"
PROTOBUF: Final = "application/x-protobuf"

Schema = dict[str, Any]

_DESCRIPTION = """\
Aethermind receives OpenTelemetry traces of LLM calls (OTLP/HTTP), normalizes and prices
them, and answers usage and cost queries per organization.

**Keys.** Every `/v1/` route takes an API key (a string starting `aether_`) as
`Authorization: Bearer <key>` or `x-api-key: <key>`. A key has scopes: `ingest` (write
telemetry: `POST /v1/traces`, `POST /v1/ingest`), `read` (query: `GET /v1/aggregates`,
`GET /v1/traces/{trace_id}`, `GET /v1/top-traces`) and `admin` (manage the organization's
keys and price overrides: `GET`/`POST /v1/keys`, `DELETE /v1/keys/{key_id}`,
`GET`/`POST /v1/prices`, `DELETE /v1/prices/{price_id}`; budgets are set with the CLI).
The organization is always the key's; no parameter can choose another. A missing or unknown
key is a 401, a revoked key or one without the route's scope a 403; an address that
keeps presenting bad keys gets 429 with `Retry-After` for a while.

**Money** is a decimal string (`"0.0125"`), never a float; `null` means no span of the
row could be priced (an unknown model never costs $0). **Instants** are ISO 8601 in UTC.

**Errors** of the query API and `POST /v1/ingest` are `{"error": {"status", "message"}}`;
`POST /v1/traces` answers a `google.rpc.Status` in the request's encoding, as the OTLP
specification requires. Every response carries `X-Request-Id` (the client's, when it sent a
well-formed one).

**CORS.** When the server is started with `--cors-origin`, the `/v1/` routes answer
preflight `OPTIONS` requests from those origins.
"""

_SECURITY: Final[list[dict[str, list[str]]]] = [{"bearerAuth": []}, {"apiKeyAuth": []}]
_NO_SECURITY: Final[list[dict[str, list[str]]]] = []


def _ref(kind: str, name: str) -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def _schema(name: str) -> Schema:
    return _ref("schemas", name)


_COUNT: Final = {"type": "integer", "minimum": 0}
_INSTANT: Final = {"type": "string", "format": "date-time", "examples": ["2026-11-01T00:00:00Z"]}
_EMPTY: Final = {"type": "string", "maxLength": 0}
# Epoch milliseconds past this are beyond OTLP's int64 nanoseconds.
_MAX_EPOCH_MS: Final = MAX_TIME_UNIX_NANO // 1_000_000


def _response(
    description: str,
    content: dict[str, Schema] | None = None,
    headers: dict[str, Schema] | None = None,
) -> Schema:
    """A response; every one carries ``X-Request-Id`` (set by the request middleware)."""
    response: Schema = {
        "description": description,
        "headers": {"X-Request-Id": _ref("headers", "X-Request-Id"), **(headers or {})},
    }
    if content:
        response["content"] = {media: {"schema": schema} for media, schema in content.items()}
    return response


def _json_error(description: str, headers: dict[str, Schema] | None = None) -> Schema:
    return _response(description, {JSON: _schema("Error")}, headers)


def _otlp_error(description: str, headers: dict[str, Schema] | None = None) -> Schema:
    return _response(
        description,
        {JSON: _schema("GoogleRpcStatus"), PROTOBUF: _schema("ProtobufMessage")},
        headers,
    )


_RETRY_AFTER: Final = {"Retry-After": _ref("headers", "Retry-After-Required")}
_RATE_LIMIT_HEADERS: Final = {
    "Retry-After": _ref("headers", "Retry-After-Required"),
    "X-RateLimit-Limit": _ref("headers", "X-RateLimit-Limit"),
    "X-RateLimit-Remaining": _ref("headers", "X-RateLimit-Remaining"),
    "X-RateLimit-Reset": _ref("headers", "X-RateLimit-Reset"),
}


def _auth_errors(error: Any, scope: str) -> dict[str, Schema]:
    return {
        "401": error("No API key, or an unknown one."),
        "403": error(f"The key is revoked or lacks the `{scope}` scope."),
    }


def _ingest_errors(error: Any) -> dict[str, Schema]:
    return {
        **_auth_errors(error, "ingest"),
        "413": error("The body is over the size limit, on the wire or after decompression."),
        "415": error("A Content-Type or Content-Encoding the route does not take."),
        "429": error(
            "The organization is over its rate limit (spans per minute), or this address "
            "sent too many bad keys. `X-RateLimit-*` come with the organization's limit.",
            _RATE_LIMIT_HEADERS,
        ),
        "503": error(
            "Storage unavailable, or the server is saturated or draining: retry after "
            "`Retry-After` seconds. Nothing was stored.",
            _RETRY_AFTER,
        ),
    }


def _query_errors() -> dict[str, Schema]:
    return {
        "400": _json_error("A parameter is missing its format, unknown, or out of range."),
        **_auth_errors(_json_error, "read"),
        "429": _json_error(
            "This address sent too many bad keys; retry after `Retry-After` seconds.",
            _RETRY_AFTER,
        ),
        "503": _json_error("Storage unavailable; retry after `Retry-After` seconds.", _RETRY_AFTER),
    }


def _admin_errors() -> dict[str, Schema]:
    return {**_query_errors(), **_auth_errors(_json_error, "admin")}


def _otlp_export(
    operation_id: str, summary: str, description: str, *, request: str, response: str, stored: str
) -> Schema:
    """One OTLP/HTTP export route: the same encodings, statuses and errors for every signal."""
    return {
        "post": {
            "operationId": operation_id,
            "tags": ["ingest"],
            "summary": summary,
            "description": description,
            "security": _SECURITY,
            "parameters": [_content_encoding_parameter()],
            "requestBody": {
                "required": True,
                "content": {
                    PROTOBUF: {"schema": _schema("ProtobufMessage")},
                    JSON: {"schema": _schema(request)},
                },
            },
            "responses": {
                "200": _response(
                    stored, {JSON: _schema(response), PROTOBUF: _schema("ProtobufMessage")}
                ),
                "400": _otlp_error("The body cannot be decoded, or holds unstorable values."),
                **_ingest_errors(_otlp_error),
            },
        }
    }


def _content_encoding_parameter() -> Schema:
    return {
        "name": "Content-Encoding",
        "in": "header",
        "required": False,
        "description": (
            "Compression of the body: `gzip`, `deflate` (zlib or raw) or `identity`, any "
            "case; at most one real coding in a list. Others are a 415. Limits apply after "
            "decompression too."
        ),
        "schema": {"type": "string", "examples": ["gzip", "deflate", "identity"]},
    }


def _paths() -> Schema:
    range_params = [_ref("parameters", "from"), _ref("parameters", "to")]
    filter_params = [_ref("parameters", f"filter_{name}") for name in FILTER_KEYS]
    return {
        "/v1/traces": _otlp_export(
            "exportTraces",
            "OTLP/HTTP trace export",
            (
                "OTLP/HTTP exactly as the OTLP specification says: an "
                "`ExportTraceServiceRequest` as protobuf or OTLP/JSON, optionally gzip or "
                "deflate compressed. The response is in the request's encoding. A 200 "
                "means the rows are committed; spans that cannot be stored are reported "
                "in `partialSuccess`. Re-sending the same spans never duplicates rows. "
                "Scope `ingest`."
            ),
            request="ExportTraceServiceRequest",
            response="ExportTraceServiceResponse",
            stored="The spans are stored (or rejected as listed in `partialSuccess`).",
        ),
        "/v1/logs": _otlp_export(
            "exportLogs",
            "OTLP/HTTP log export (coding agents' usage events)",
            (
                "OTLP/HTTP logs as the OTLP specification says: an "
                "`ExportLogsServiceRequest` as protobuf or OTLP/JSON, optionally gzip or "
                "deflate compressed, answered in the request's encoding. Records that "
                "report an LLM call (Claude Code's, Codex CLI's and Gemini CLI's usage "
                "events, the GenAI conventions' `gen_ai.client.inference.operation.details`) are "
                "stored, priced and counted like spans, committed before the 200; other "
                "records are counted and dropped. Records that cannot be stored are "
                "reported in `partialSuccess`. Re-sending the same records never "
                "duplicates rows. Scope `ingest`."
            ),
            request="ExportLogsServiceRequest",
            response="ExportLogsServiceResponse",
            stored="The usage records are stored (or rejected as listed in `partialSuccess`).",
        ),
        "/v1/metrics": _otlp_export(
            "exportMetrics",
            "OTLP/HTTP metric export (token and cost metrics)",
            (
                "OTLP/HTTP metrics as the OTLP specification says: an "
                "`ExportMetricsServiceRequest` as protobuf or OTLP/JSON, optionally gzip "
                "or deflate compressed, answered in the request's encoding. Data points of "
                "the usage metrics (Claude Code's `claude_code.token.usage` and "
                "`claude_code.cost.usage`, Gemini CLI's `gemini_cli.token.usage` and "
                "`gemini_cli.api.request.count`, the GenAI conventions' "
                "`gen_ai.client.token.usage` and `gen_ai.client.operation.duration`) are "
                "stored as metric usage, delta or cumulative, committed before the 200; "
                "other points are counted and dropped. Metric usage shows in the aggregates "
                "only for services that reported no span or event usage that UTC day. "
                "Points that cannot be stored are reported in `partialSuccess`. Re-sending "
                "the same points never counts them twice. Scope `ingest`."
            ),
            request="ExportMetricsServiceRequest",
            response="ExportMetricsServiceResponse",
            stored="The usage points are stored (or rejected as listed in `partialSuccess`).",
        ),
        "/v1/ingest": {
            "post": {
                "operationId": "ingestEvents",
                "tags": ["ingest"],
                "summary": "Plain JSON usage events",
                "description": (
                    "For clients without OpenTelemetry: each event becomes the same span an "
                    "OTLP client would send. Invalid events are counted in `rejected` (with "
                    "reasons in `errors`) while the valid ones are stored. Events without ids "
                    "get ids derived from their content, so a retried event is stored once. "
                    "Scope `ingest`."
                ),
                "security": _SECURITY,
                "parameters": [_content_encoding_parameter()],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _schema("IngestRequest")}},
                },
                "responses": {
                    "200": _response("Valid events stored.", {JSON: _schema("IngestResponse")}),
                    "400": _json_error('The body is not JSON, or not an object with "events".'),
                    **_ingest_errors(_json_error),
                },
            }
        },
        "/v1/aggregates": {
            "get": {
                "operationId": "getAggregates",
                "tags": ["query"],
                "summary": "Calls, tokens, cost and latency, grouped and bucketed",
                "description": (
                    "Spans with `from <= start < to` of the key's organization, summed per "
                    "group (`group_by`) and time bucket (`granularity`). Rows are ordered by "
                    "bucket, then group keys; with `order_by`, by that measure (descending) "
                    "first. `limit` keeps the first rows (top N; with `group_by` and no "
                    "`order_by`, the costliest). Filter on a tag with `tag.<key>=value`. A "
                    "range without spans has no rows. Scope `read`."
                ),
                "security": _SECURITY,
                "parameters": [
                    *range_params,
                    _ref("parameters", "group_by"),
                    _ref("parameters", "granularity"),
                    *filter_params,
                    {
                        "name": "order_by",
                        "in": "query",
                        "required": False,
                        "description": "Order rows by this measure, descending.",
                        "schema": {"type": "string", "enum": list(ORDER_KEYS)},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "description": "At most this many rows (top N).",
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                    },
                    {
                        "name": "what_if_model",
                        "in": "query",
                        "required": False,
                        "description": "Add `what_if_cost_usd` to each row: its tokens at "
                        "this model's list prices today (400 for a model without a price).",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 256},
                    },
                ],
                "responses": {
                    "200": _response("The aggregate rows.", {JSON: _schema("AggregatesResponse")}),
                    **_query_errors(),
                },
            }
        },
        "/v1/traces/{trace_id}": {
            "get": {
                "operationId": "getTrace",
                "tags": ["query"],
                "summary": "The stored spans of one trace",
                "description": (
                    "The stored spans of the trace in the key's organization, in start "
                    "order, with their normalized fields, cost and status. Scope `read`."
                ),
                "security": _SECURITY,
                "parameters": [
                    {
                        "name": "trace_id",
                        "in": "path",
                        "required": True,
                        "description": "The trace id: 32 hex characters (any case).",
                        "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{32}$"},
                    }
                ],
                "responses": {
                    "200": _response("The trace's spans.", {JSON: _schema("TraceResponse")}),
                    "404": _json_error("No span of this trace in the key's organization."),
                    **_query_errors(),
                },
            }
        },
        "/v1/top-traces": {
            "get": {
                "operationId": "getTopTraces",
                "tags": ["query"],
                "summary": "The costliest traces of a range",
                "description": (
                    "Traces with the highest total cost among spans started in "
                    "`[from, to)`; traces with no priced span are left out. With filters "
                    "(as the aggregates take them: `user=alice`, `tag.team=search`), the "
                    "cost of the spans that have those values: a user's costliest traces. "
                    "Scope `read`."
                ),
                "security": _SECURITY,
                "parameters": [
                    *range_params,
                    *filter_params,
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "description": "How many traces, at most.",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
                    },
                ],
                "responses": {
                    "200": _response("The traces.", {JSON: _schema("TopTracesResponse")}),
                    **_query_errors(),
                },
            }
        },
        "/v1/keys": {
            "get": {
                "operationId": "listKeys",
                "tags": ["admin"],
                "summary": "The organization's keys",
                "description": (
                    "Every key of the key's organization, revoked ones included, oldest first; "
                    "never the keys themselves. Scope `admin`."
                ),
                "security": _SECURITY,
                "responses": {
                    "200": _response("The keys.", {JSON: _schema("KeyList")}),
                    **_admin_errors(),
                },
            },
            "post": {
                "operationId": "createKey",
                "tags": ["admin"],
                "summary": "Create a key in the organization",
                "description": (
                    "A new key with the given scopes, in the admin key's organization. The "
                    "full key is in this answer only. Scope `admin`."
                ),
                "security": _SECURITY,
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _schema("NewKeyRequest")}},
                },
                "responses": {
                    "201": _response("The new key.", {JSON: _schema("CreatedKey")}),
                    **_admin_errors(),
                },
            },
        },
        "/v1/keys/{key_id}": {
            "delete": {
                "operationId": "revokeKey",
                "tags": ["admin"],
                "summary": "Revoke a key of the organization",
                "description": (
                    "Revokes the key (again is harmless: the first time is kept); every "
                    "replica refuses it within seconds. Scope `admin`."
                ),
                "security": _SECURITY,
                "parameters": [
                    {
                        "name": "key_id",
                        "in": "path",
                        "required": True,
                        "description": "The key's id (as listed), not the key.",
                        "schema": {"type": "string", "format": "uuid"},
                    }
                ],
                "responses": {
                    "200": _response("The revoked key.", {JSON: _schema("ApiKey")}),
                    "404": _json_error("No key with this id in the key's organization."),
                    **_admin_errors(),
                },
            }
        },
        "/v1/prices": {
            "get": {
                "operationId": "listPrices",
                "tags": ["admin"],
                "summary": "The organization's price overrides",
                "description": (
                    "Prices (USD per million tokens) that replace genai-prices' for models "
                    "matching a pattern, from `valid_from` on; oldest first. Scope `admin`."
                ),
                "security": _SECURITY,
                "responses": {
                    "200": _response("The overrides.", {JSON: _schema("PriceList")}),
                    **_admin_errors(),
                },
            },
            "post": {
                "operationId": "createPrice",
                "tags": ["admin"],
                "summary": "Add a price override",
                "description": (
                    "Spans received from now on are priced with it (other replicas within "
                    "30 s); `aethermind reprice` applies it to stored spans. Scope `admin`."
                ),
                "security": _SECURITY,
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _schema("NewPriceRequest")}},
                },
                "responses": {
                    "201": _response("The new override.", {JSON: _schema("Price")}),
                    **_admin_errors(),
                },
            },
        },
        "/v1/prices/{price_id}": {
            "delete": {
                "operationId": "deletePrice",
                "tags": ["admin"],
                "summary": "Delete a price override",
                "security": _SECURITY,
                "parameters": [
                    {
                        "name": "price_id",
                        "in": "path",
                        "required": True,
                        "description": "The override's id (as listed).",
                        "schema": {"type": "string", "format": "uuid"},
                    }
                ],
                "responses": {
                    "204": _response("Deleted."),
                    "404": _json_error("No override with this id in the key's organization."),
                    **_admin_errors(),
                },
            }
        },
        "/v1/tags": {
            "get": {
                "operationId": "getTags",
                "tags": ["admin"],
                "summary": "The organization's tag keys",
                "description": (
                    "The keys whose values each span keeps (from its attributes, else its "
                    "resource's), queried as `tag.<key>` in `group_by` and filters. Scope "
                    "`admin`."
                ),
                "security": _SECURITY,
                "responses": {
                    "200": _response("The tag keys.", {JSON: _schema("TagKeys")}),
                    **_admin_errors(),
                },
            },
            "put": {
                "operationId": "putTags",
                "tags": ["admin"],
                "summary": "Set the organization's tag keys",
                "description": (
                    "Replaces the tag keys. Spans received from now on keep their values "
                    "(other replicas within 30 s); spans stored before keep what they had. "
                    "Scope `admin`."
                ),
                "security": _SECURITY,
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _schema("TagKeysRequest")}},
                },
                "responses": {
                    "200": _response("The tag keys as stored.", {JSON: _schema("TagKeys")}),
                    **_admin_errors(),
                },
            },
        },
        "/v1/cost-basis": {
            "get": {
                "operationId": "getCostBasis",
                "tags": ["admin"],
                "summary": "Which cost the organization's totals count",
                "description": (
                    "`computed` (ours, from the tokens) or `provided` (the cost a span "
                    "reported, where it reported one). Scope `admin`."
                ),
                "security": _SECURITY,
                "responses": {
                    "200": _response("The cost basis.", {JSON: _schema("CostBasisDocument")}),
                    **_admin_errors(),
                },
            },
            "put": {
                "operationId": "putCostBasis",
                "tags": ["admin"],
                "summary": "Choose which cost the organization's totals count",
                "description": (
                    "Applies to every answer from now on, past spans included: both costs "
                    "stay stored, the aggregates' `cost_usd` and the organization's budget "
                    "count the chosen one, and `computed_cost_usd` shows ours beside it. "
                    "Scope `admin`."
                ),
                "security": _SECURITY,
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _schema("CostBasisRequest")}},
                },
                "responses": {
                    "200": _response(
                        "The cost basis as stored.", {JSON: _schema("CostBasisDocument")}
                    ),
                    **_admin_errors(),
                },
            },
        },
        "/healthz": {
            "get": {
                "operationId": "getHealth",
                "tags": ["operations"],
                "summary": "Liveness: the process is up",
                "security": _NO_SECURITY,
                "responses": {
                    "200": _response("Up.", {JSON: _schema("Health")}),
                },
            }
        },
        "/readyz": {
            "get": {
                "operationId": "getReadiness",
                "tags": ["operations"],
                "summary": "Readiness: the database is reachable and the server not draining",
                "security": _NO_SECURITY,
                "responses": {
                    "200": _response("Ready.", {JSON: _schema("Readiness")}),
                    "503": _response("Not ready.", {JSON: _schema("Readiness")}),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "getMetrics",
                "tags": ["operations"],
                "summary": "Prometheus metrics (text exposition format)",
                "security": _NO_SECURITY,
                "responses": {
                    "200": _response(
                        "The metrics of this serving process.",
                        {"text/plain": {"type": "string"}},
                    ),
                },
            }
        },
        OPENAPI_PATH: {
            "get": {
                "operationId": "getOpenApi",
                "tags": ["operations"],
                "summary": "This document",
                "security": _NO_SECURITY,
                "responses": {
                    "200": _response("The OpenAPI document.", {JSON: {"type": "object"}}),
                },
            }
        },
        DASHBOARD_PATH: {
            "get": {
                "operationId": "getDashboard",
                "tags": ["dashboard"],
                "summary": "The dashboard web page",
                "description": (
                    "A static page; it asks for a read key and calls the query API from the "
                    "browser. Served with a strict Content-Security-Policy and an ETag."
                ),
                "security": _NO_SECURITY,
                "responses": {
                    "200": _response(
                        "The page.",
                        {"text/html": {"type": "string"}},
                        _asset_headers(),
                    ),
                    "304": _response("Not modified (`If-None-Match` matched the ETag)."),
                },
            }
        },
        DASHBOARD_PATH + "/": {
            "get": {
                "operationId": "redirectDashboard",
                "tags": ["dashboard"],
                "summary": "Redirects to the dashboard page",
                "security": _NO_SECURITY,
                "responses": {
                    "308": _response(
                        "Permanent redirect to `../dashboard` (relative, so a path prefix "
                        "in front of the server is kept).",
                        headers={
                            "Location": {"required": True, "schema": {"type": "string"}},
                        },
                    ),
                },
            }
        },
        "/": {
            "get": {
                "operationId": "redirectRoot",
                "tags": ["dashboard"],
                "summary": "Redirects to the dashboard page",
                "security": _NO_SECURITY,
                "responses": {
                    "302": _response(
                        "Redirect to `dashboard` (relative, so a path prefix in front of the "
                        "server is kept).",
                        headers={
                            "Location": {"required": True, "schema": {"type": "string"}},
                        },
                    ),
                },
            }
        },
        STATIC_PREFIX + "{name}": {
            "get": {
                "operationId": "getDashboardAsset",
                "tags": ["dashboard"],
                "summary": "The dashboard's scripts and styles",
                "security": _NO_SECURITY,
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {
                            "type": "string",
                            "enum": ["dashboard.js", "dashboard.css", PLOTLY_ASSET],
                        },
                    }
                ],
                "responses": {
                    "200": _response(
                        "The asset (gzip-encoded when the client accepts it).",
                        {
                            "text/javascript": {"type": "string"},
                            "text/css": {"type": "string"},
                        },
                        _asset_headers(),
                    ),
                    "304": _response("Not modified (`If-None-Match` matched the ETag)."),
                    "404": _json_error("No such asset, or Plotly is not installed."),
                },
            }
        },
    }


def _asset_headers() -> dict[str, Schema]:
    return {
        "ETag": {"required": True, "schema": {"type": "string"}},
        "Cache-Control": {"required": True, "schema": {"type": "string"}},
    }


def _parameters() -> Schema:
    time_description = (
        "ISO 8601 date-time (a date alone means its midnight; no offset means UTC). "
        "Defaults: `to` now, `from` 30 days before `to`; `to` must be after `from`. "
        "An empty value is the same as leaving the parameter out."
    )
    moment = {"anyOf": [_INSTANT, {"type": "string", "format": "date"}, _EMPTY]}
    parameters: Schema = {
        "from": {
            "name": "from",
            "in": "query",
            "required": False,
            "description": "Start of the range, inclusive. " + time_description,
            "schema": moment,
        },
        "to": {
            "name": "to",
            "in": "query",
            "required": False,
            "description": "End of the range, exclusive. " + time_description,
            "schema": moment,
        },
        "group_by": {
            "name": "group_by",
            "in": "query",
            "required": False,
            "description": (
                "Comma-separated keys to group by, each at most once; empty items are ignored."
            ),
            "style": "form",
            "explode": False,
            "schema": {
                "type": "array",
                # Not uniqueItems: a key named twice is a 400, but empty items may repeat.
                "items": {
                    "anyOf": [
                        {"type": "string", "enum": [*GROUP_KEYS, ""]},
                        {"type": "string", "pattern": TAG_DIMENSION_PATTERN},
                    ],
                    "description": "A dimension, or `tag.<key>` for a configured tag key.",
                },
            },
        },
        "granularity": {
            "name": "granularity",
            "in": "query",
            "required": False,
            "description": (
                "Time buckets (UTC). Without it, one row per group for the whole range. "
                "`minute` allows ranges up to 7 days. Empty is the same as absent."
            ),
            "schema": {"type": "string", "enum": [*GRANULARITIES, ""]},
        },
    }
    for name in FILTER_KEYS:
        parameters[f"filter_{name}"] = {
            "name": name,
            "in": "query",
            "required": False,
            "description": f"Only spans whose {name} is exactly this.",
            "schema": {"type": "string"},
        }
    return parameters


def _any_value() -> Schema:
    return {
        "type": "object",
        "description": "OTLP AnyValue: one of the fields below.",
        "properties": {
            "stringValue": {"type": "string"},
            "boolValue": {"type": "boolean"},
            "intValue": {"type": ["string", "integer"], "description": "int64"},
            "doubleValue": {"type": ["number", "string"]},
            "bytesValue": {"type": "string", "contentEncoding": "base64"},
            "arrayValue": {
                "type": "object",
                "properties": {"values": {"type": "array", "items": _schema("AnyValue")}},
            },
            "kvlistValue": {
                "type": "object",
                "properties": {"values": {"type": "array", "items": _schema("KeyValue")}},
            },
        },
    }


def _otlp_schemas() -> Schema:
    unix_nano = {"type": ["string", "integer"], "description": "fixed64 nanoseconds"}
    return {
        "ProtobufMessage": {
            "type": "string",
            "format": "binary",
            "description": "A serialized protobuf message.",
        },
        "AnyValue": _any_value(),
        "KeyValue": {
            "type": "object",
            "properties": {"key": {"type": "string"}, "value": _schema("AnyValue")},
        },
        "ExportTraceServiceRequest": {
            "type": "object",
            "description": (
                "OTLP/JSON `ExportTraceServiceRequest` (loosely: the protobuf JSON mapping "
                "of opentelemetry/proto/trace/v1/trace.proto; ids are hex, 64-bit integers "
                "may be strings, enums integers)."
            ),
            "properties": {
                "resourceSpans": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "resource": {
                                "type": "object",
                                "properties": {
                                    "attributes": {
                                        "type": "array",
                                        "items": _schema("KeyValue"),
                                    }
                                },
                            },
                            "scopeSpans": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "scope": {"type": "object"},
                                        "spans": {"type": "array", "items": _schema("OtlpSpan")},
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
        "ExportLogsServiceRequest": {
            "type": "object",
            "description": (
                "OTLP/JSON `ExportLogsServiceRequest` (loosely: the protobuf JSON mapping of "
                "opentelemetry/proto/logs/v1/logs.proto)."
            ),
            "properties": {
                "resourceLogs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "resource": {"type": "object"},
                            "scopeLogs": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "scope": {"type": "object"},
                                        "logRecords": {
                                            "type": "array",
                                            "items": {
                                                "type": "object",
                                                "properties": {
                                                    "timeUnixNano": unix_nano,
                                                    "eventName": {"type": "string"},
                                                    "body": _schema("AnyValue"),
                                                    "attributes": {
                                                        "type": "array",
                                                        "items": _schema("KeyValue"),
                                                    },
                                                },
                                            },
                                        },
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
        "ExportLogsServiceResponse": {
            "type": "object",
            "description": (
                "`{}` on full success; `partialSuccess` when records were rejected "
                "(`rejectedLogRecords` is an int64, hence a decimal string in JSON)."
            ),
            "properties": {
                "partialSuccess": {
                    "type": "object",
                    "properties": {
                        "rejectedLogRecords": {"type": "string", "pattern": "^[0-9]+$"},
                        "errorMessage": {"type": "string"},
                    },
                }
            },
        },
        "ExportMetricsServiceRequest": {
            "type": "object",
            "description": (
                "OTLP/JSON `ExportMetricsServiceRequest` (loosely: the protobuf JSON mapping "
                "of opentelemetry/proto/metrics/v1/metrics.proto)."
            ),
            "properties": {
                "resourceMetrics": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "resource": {"type": "object"},
                            "scopeMetrics": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "scope": {"type": "object"},
                                        "metrics": {"type": "array", "items": {"type": "object"}},
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
        "ExportMetricsServiceResponse": {
            "type": "object",
            "description": (
                "`{}` on full success; `partialSuccess` when data points were rejected "
                "(`rejectedDataPoints` is an int64, hence a decimal string in JSON)."
            ),
            "properties": {
                "partialSuccess": {
                    "type": "object",
                    "properties": {
                        "rejectedDataPoints": {"type": "string", "pattern": "^[0-9]+$"},
                        "errorMessage": {"type": "string"},
                    },
                }
            },
        },
        "OtlpSpan": {
            "type": "object",
            "properties": {
                "traceId": {"type": "string", "pattern": "^[0-9a-fA-F]{32}$"},
                "spanId": {"type": "string", "pattern": "^[0-9a-fA-F]{16}$"},
                "parentSpanId": {"type": "string"},
                "name": {"type": "string"},
                "kind": {"type": "integer", "minimum": 0, "maximum": 5},
                "startTimeUnixNano": unix_nano,
                "endTimeUnixNano": unix_nano,
                "attributes": {"type": "array", "items": _schema("KeyValue")},
                "status": {
                    "type": "object",
                    "properties": {
                        "code": {"type": "integer", "minimum": 0, "maximum": 2},
                        "message": {"type": "string"},
                    },
                },
            },
        },
        "ExportTraceServiceResponse": {
            "type": "object",
            "description": (
                "`{}` on full success; `partialSuccess` when spans were rejected "
                "(`rejectedSpans` is an int64, hence a decimal string in JSON)."
            ),
            "properties": {
                "partialSuccess": {
                    "type": "object",
                    "properties": {
                        "rejectedSpans": {"type": "string", "pattern": "^[0-9]+$"},
                        "errorMessage": {"type": "string"},
                    },
                    "additionalProperties": False,
                }
            },
            "additionalProperties": False,
        },
        "GoogleRpcStatus": {
            "type": "object",
            "description": (
                "`google.rpc.Status` in the protobuf JSON mapping (fields equal to their "
                "default are left out). Clients must not act on `code`."
            ),
            "properties": {
                "code": {"type": "integer", "description": "A google.rpc.Code"},
                "message": {"type": "string"},
            },
            "additionalProperties": False,
        },
    }


def _schemas() -> Schema:
    return {
        # The admin routes' bodies, generated from the models the server validates with.
        **component_schemas(),
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["status", "message"],
                    "properties": {
                        "status": {"type": "integer", "minimum": 400, "maximum": 599},
                        "message": {"type": "string"},
                        "request_id": {"type": "string"},
                    },
                    "additionalProperties": False,
                }
            },
            "additionalProperties": False,
        },
        **_otlp_schemas(),
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"const": "ok"}},
        },
        "Readiness": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"type": "string", "enum": ["ready", "draining", "unavailable"]},
                "database": {
                    "type": "string",
                    "description": "`ok`, or the kind of failure reaching it.",
                },
            },
        },
    }


def _headers() -> Schema:
    seconds = {"type": "integer", "minimum": 0}
    return {
        "X-Request-Id": {
            "description": "The request's id, also in the server's logs.",
            "required": True,
            "schema": {"type": "string"},
        },
        "Retry-After-Required": {
            "description": "Seconds to wait before retrying.",
            "required": True,
            "schema": seconds,
        },
        "X-RateLimit-Limit": {
            "description": "The organization's limit, spans per minute.",
            "schema": seconds,
        },
        "X-RateLimit-Remaining": {"description": "Spans left now.", "schema": seconds},
        "X-RateLimit-Reset": {
            "description": "Seconds until the allowance is whole again.",
            "schema": seconds,
        },
    }


def _package_version() -> str:
    try:
        return version("aethermind")
    except PackageNotFoundError:
        return "0.0.0"


def build_document() -> dict[str, Any]:
    """The OpenAPI document, as a fresh dict (callers may mutate it)."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Aethermind receiver",
            "version": _package_version(),
            "description": _DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [
            {"name": "ingest", "description": "Write telemetry (scope `ingest`)."},
            {"name": "query", "description": "Read usage and cost (scope `read`)."},
            {
                "name": "admin",
                "description": "Manage the organization's keys and prices (scope `admin`).",
            },
            {"name": "operations", "description": "Health, readiness, metrics; no key."},
            {"name": "dashboard", "description": "The web page; no key."},
        ],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "aether_...",
                    "description": "`Authorization: Bearer aether_...`",
                },
                "apiKeyAuth": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-api-key",
                    "description": "The same key in `x-api-key`.",
                },
            },
            "parameters": _parameters(),
            "headers": _headers(),
            "schemas": _schemas(),
        },
    }


@cache
def document_bytes() -> bytes:
    """The served document, encoded once per process."""
    return json.dumps(build_document(), separators=(",", ":")).encode()


async def serve(request: web.Request) -> web.Response:
    return web.Response(
        body=document_bytes(),
        content_type=JSON,
        headers={"Cache-Control": "no-cache"},
    )
