"""``create_app``: the one aiohttp application (ingest, query API, dashboard, operations).

Resources are owned by cleanup contexts: the pool comes from a provider the caller passes
(the CLI opens the database, tests pass theirs), Redis and the revocation listener are
opened here and closed on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any
from uuid import UUID

from aiohttp import web

from aethermind.ingest.policy import TenantPolicies
from aethermind.receiver import admin, dashboard, ingest, openapi, ops, query
from aethermind.receiver.alerts import alert_loop_ctx
from aethermind.receiver.auth import client_address, gated_verifier
from aethermind.receiver.clientaddr import TrustedProxies
from aethermind.receiver.coalesce import WriteCoalescer
from aethermind.receiver.config import ReceiverConfig
from aethermind.receiver.errors import HttpError
from aethermind.receiver.keycache import AuthThrottles, KeyCache
from aethermind.receiver.logs import request_id_var
from aethermind.receiver.metrics import ReceiverMetrics
from aethermind.receiver.ratelimit import RateLimiter
from aethermind.receiver.revocations import listen_for_revocations, poll_revocations
from aethermind.receiver.state import (
    ADMISSION,
    CONFIG,
    KEY_HASHING,
    KEYS,
    LIMITER,
    METRICS,
    POLICIES,
    POOL,
    PRICE_BOOK,
    THROTTLE,
    TRUSTED_PROXIES,
    WRITER,
    Admission,
)
from aethermind.semconv import PriceOverride, default_price_book
from aethermind.storage import tenants
from aethermind.storage.prices import load_price_overrides

logger = logging.getLogger(__name__)

PoolProvider = Callable[[], AbstractAsyncContextManager[Any]]
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def create_app(config: ReceiverConfig, pool_provider: PoolProvider) -> web.Application:
    middlewares = [_request_context, _cors(config.cors_origins)]
    if config.recycle_connection_every:
        middlewares.insert(0, _recycle_connections(config.recycle_connection_every))
    app = web.Application(
        middlewares=middlewares,
        client_max_size=config.max_body_bytes,
        # We inflate request bodies ourselves, bounded, so a gzip bomb never fully inflates.
        handler_args={"auto_decompress": False},
    )
    metrics = ReceiverMetrics()
    app[CONFIG] = config
    app[METRICS] = metrics
    app[TRUSTED_PROXIES] = TrustedProxies.parse(config.trusted_proxies)
    app[ADMISSION] = Admission()
    app[KEY_HASHING] = asyncio.Semaphore(1)
    app.cleanup_ctx.append(_resources_ctx(config, pool_provider, metrics))
    app.cleanup_ctx.append(alert_loop_ctx(config))  # after the pool is set; stops first
    app.on_shutdown.append(_start_draining)
    app.router.add_post("/v1/traces", ingest.otlp_traces)
    app.router.add_post("/v1/logs", ingest.otlp_logs)
    app.router.add_post("/v1/metrics", ingest.otlp_metrics)
    app.router.add_post("/v1/ingest", ingest.json_ingest)
    app.router.add_get("/v1/aggregates", query.aggregates)
    app.router.add_get("/v1/traces/{trace_id}", query.trace)
    app.router.add_get("/v1/top-traces", query.top_traces)
    app.router.add_get("/v1/keys", admin.list_keys)
    app.router.add_post("/v1/keys", admin.create_key)
    app.router.add_delete("/v1/keys/{key_id}", admin.revoke_key)
    app.router.add_get("/v1/prices", admin.list_prices)
    app.router.add_post("/v1/prices", admin.create_price)
    app.router.add_delete("/v1/prices/{price_id}", admin.delete_price)
    app.router.add_get("/v1/tags", admin.get_tags)
    app.router.add_put("/v1/tags", admin.put_tags)
    app.router.add_get("/v1/cost-basis", admin.get_cost_basis)
    app.router.add_put("/v1/cost-basis", admin.put_cost_basis)
    app.router.add_get(openapi.OPENAPI_PATH, openapi.serve)
    ops.add_routes(app)
    dashboard.add_routes(app)
    return app


def _resources_ctx(
    config: ReceiverConfig, pool_provider: PoolProvider, metrics: ReceiverMetrics
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async with pool_provider() as pool, _redis(config.redis_url) as redis:

            async def load_overrides(
                organization_id: UUID,
            ) -> tuple[tuple[PriceOverride, ...], tuple[str, ...]]:
                timeout = config.auth_timeout_seconds
                overrides = await load_price_overrides(pool, organization_id, timeout=timeout)
                return overrides, await tenants.get_tag_keys(pool, organization_id, timeout=timeout)

            app[POOL] = pool
            throttles = AuthThrottles(
                max_failures_per_client=config.auth_max_failures_per_minute,
                max_failures_per_key_id=config.auth_max_failures_per_key_id_per_minute,
                max_failures_per_organization=config.auth_max_failures_per_organization_per_minute,
            )
            app[THROTTLE] = throttles
            app[KEYS] = KeyCache(
                gated_verifier(pool, throttles, timeout=config.auth_timeout_seconds),
                ttl_seconds=config.auth_cache_ttl_seconds,
                negative_ttl_seconds=config.auth_negative_ttl_seconds,
            )
            app[LIMITER] = RateLimiter(
                redis, on_fallback=lambda on: metrics.rate_limit_fallback.set(int(on))
            )
            app[PRICE_BOOK] = default_price_book()
            app[POLICIES] = TenantPolicies(load_overrides, ttl_seconds=config.overrides_ttl_seconds)
            app[WRITER] = WriteCoalescer(pool, timeout=config.write_timeout_seconds)
            watchers = _watch_revocations(pool, app[KEYS], config)
            try:
                yield
            finally:
                for watcher in watchers:
                    watcher.cancel()
                for watcher in watchers:
                    with contextlib.suppress(asyncio.CancelledError):
                        await watcher
                await app[WRITER].close()

    return ctx


@contextlib.asynccontextmanager
async def _redis(url: str | None) -> AsyncIterator[Any]:
    if not url:
        yield None
        return
    from redis import asyncio as aioredis

    client = aioredis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        yield client
    finally:
        await client.aclose()


def _watch_revocations(
    pool: Any, keys: KeyCache[tenants.VerifiedKey], config: ReceiverConfig
) -> list[asyncio.Task[None]]:
    watchers = []
    if config.revocation_listen:
        watchers.append(asyncio.create_task(listen_for_revocations(pool, keys)))
    if config.revocation_poll_seconds > 0:
        poll = poll_revocations(
            pool,
            keys,
            interval_seconds=config.revocation_poll_seconds,
            timeout=config.auth_timeout_seconds,
        )
        watchers.append(asyncio.create_task(poll))
    return watchers


async def _start_draining(app: web.Application) -> None:
    app[ADMISSION].draining = True


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, structured access log, metrics, and no stack trace ever reaching a client."""
    incoming = request.headers.get("X-Request-Id", "")
    request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
    token = request_id_var.set(request_id)
    started = time.perf_counter()
    route = request.match_info.route.resource
    route_name = route.canonical if route is not None else "unmatched"
    status = 500
    try:
        try:
            response = await handler(request)
        except HttpError as exc:
            response = web.json_response(
                {"error": {"status": exc.status, "message": exc.message}},
                status=exc.status,
                headers=exc.headers,
            )
        except web.HTTPException as exc:
            response = exc if exc.status < 400 else _json_http_error(request, exc)
        except Exception:
            logger.exception("unhandled error", extra={"route": route_name})
            response = web.json_response(
                {"error": {"status": 500, "message": "internal error", "request_id": request_id}},
                status=500,
            )
        status = response.status
        response.headers["X-Request-Id"] = request_id
        return response
    finally:
        elapsed = time.perf_counter() - started
        metrics = request.app[METRICS]
        metrics.requests.labels(route_name, str(status)).inc()
        metrics.request_seconds.labels(route_name).observe(elapsed)
        logger.info(
            "request",
            extra={
                "method": request.method,
                "route": route_name,
                "status": status,
                "ms": round(elapsed * 1000, 2),
                "remote": request.remote,
                "client": client_address(request),
            },
        )
        request_id_var.reset(token)


def _json_http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's own errors (no route: 404, wrong method: 405, ...) answered as JSON like
    every other error, keeping their headers (``Allow`` on a 405)."""
    if exc.status == 404:
        message = f"no route for {request.method} {request.path}; see /openapi.json"
    elif exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        message = f"method {request.method} not allowed on {request.path}; allowed: {allowed}"
    else:
        message = exc.reason
    headers = {k: v for k, v in exc.headers.items() if k.lower() not in _BODY_HEADERS}
    return web.json_response(
        {"error": {"status": exc.status, "message": message}}, status=exc.status, headers=headers
    )


_BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding"})


def _recycle_connections(every: int) -> Any:
    """Close about one response in ``every`` with ``Connection: close`` (see the setting)."""
    chance = 1.0 / every
    draw = random.Random().random  # balancing, not security: any generator will do

    @web.middleware
    async def recycle(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if draw() < chance and not response.prepared:
            response.force_close()
        return response

    return recycle


def _cors(origins: tuple[str, ...]) -> Any:
    allowed = frozenset(origins)
    allow_any = "*" in allowed

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        permitted = origin is not None and (allow_any or origin in allowed)
        if not permitted or not request.path.startswith("/v1/"):
            return await handler(request)
        assert origin is not None
        headers = {
            "Access-Control-Allow-Origin": origin,
            "Vary": "Origin",
            "Access-Control-Expose-Headers": "X-Request-Id, Retry-After, X-RateLimit-Limit, "
            "X-RateLimit-Remaining, X-RateLimit-Reset",
        }
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            headers.update(
                {
                    "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
                    "Access-Control-Allow-Headers": "Authorization, Content-Type, "
                    "Content-Encoding, x-api-key, X-Request-Id",
                    "Access-Control-Max-Age": "600",
                }
            )
            return web.Response(status=204, headers=headers)
        response = await handler(request)
        response.headers.update(headers)
        return response

    return cors
