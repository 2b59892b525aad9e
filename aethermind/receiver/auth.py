"""Authenticating a request: key -> organization and scopes, with throttling of clients that
keep presenting bad keys (``keycache.AuthThrottles``). The organization always comes from the
key, never from the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from uuid import UUID

from aiohttp import web

from aethermind.receiver.errors import (
    Forbidden,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    is_storage_unavailable,
)
from aethermind.receiver.keycache import AuthThrottles, KeyChecksRefused, Refusal, key_digest
from aethermind.receiver.state import CONFIG, KEYS, METRICS, THROTTLE, TRUSTED_PROXIES
from aethermind.storage import tenants
from aethermind.storage.keys import parse_key
from aethermind.storage.tenants import VerifiedKey

BEARER_PREFIX = "bearer "
API_KEY_HEADER = "x-api-key"
FORWARDED_FOR_HEADER = "X-Forwarded-For"


def presented_key(request: web.Request) -> str | None:
    """The key from ``Authorization: Bearer`` or ``x-api-key``, whichever is present."""
    return key_from(request.headers.get("Authorization"), request.headers.get(API_KEY_HEADER))


def key_from(authorization: str | None, api_key: str | None) -> str | None:
    """The key an ``Authorization: Bearer`` value or an ``x-api-key`` value carries: the one
    rule for HTTP headers and gRPC metadata alike."""
    header = authorization or ""
    if header[:7].lower() == BEARER_PREFIX:
        key = header[7:].strip()
        if key:
            return key
    key = (api_key or "").strip()
    return key or None


def gated_verifier(
    pool: Any, throttles: AuthThrottles, *, timeout: float
) -> Callable[[str], Awaitable[VerifiedKey | None]]:
    """``tenants.verify_key`` with every bcrypt check passed through the organization's
    budget of failed checks (``AuthThrottles.gate``), and failures recorded against it."""

    async def verify(key: str) -> VerifiedKey | None:
        checked: list[UUID] = []

        @contextlib.asynccontextmanager
        async def gate(organization_id: UUID) -> AsyncIterator[None]:
            async with throttles.gate(organization_id):
                checked.append(organization_id)
                yield

        verified = await tenants.verify_key(pool, key, timeout=timeout, secret_check_gate=gate)
        if verified is None:
            for organization_id in checked:
                throttles.record_organization_failure(organization_id)
        return verified

    return verify


def client_address(request: web.Request) -> str:
    """The TCP peer, or what ``X-Forwarded-For`` says when the peer is a trusted proxy."""
    return request.app[TRUSTED_PROXIES].client_address(
        request.remote, request.headers.getall(FORWARDED_FOR_HEADER, ())
    )


async def authenticate(request: web.Request, scope: str) -> VerifiedKey:
    """The verified key of ``request`` if it may use ``scope``; raises the HTTP error if not."""
    return await authenticate_key(
        request.app, presented_key(request), client_address(request), scope
    )


async def authenticate_key(
    app: web.Application, key: str | None, address: str, scope: str
) -> VerifiedKey:
    """The verified ``key``, presented from ``address``, if it may use ``scope``; raises the
    error to answer if not (the same for every transport: HTTP maps it to a status, gRPC to
    a status code)."""
    metrics = app[METRICS]
    if key is None:
        metrics.auth_failures.labels("missing").inc()
        raise Unauthorized("missing API key: send Authorization: Bearer <key> or x-api-key")
    parsed = parse_key(key)
    key_id = parsed.public_id if parsed is not None else ""
    throttles = app[THROTTLE]
    # A key that verified before passes: someone else's failures never refuse a valid key.
    digest = key_digest(key)
    known = app[KEYS].verified_before(digest)
    if not known:
        refusal = throttles.refusal(address, key_id, digest)
        if refusal is not None:
            raise _throttled(app, refusal)
    hits_before = app[KEYS].hits
    try:
        # Bounded: a key checked while the pool is exhausted or the database hangs gets a
        # 503 in time, instead of holding the request open.
        async with asyncio.timeout(app[CONFIG].auth_timeout_seconds):
            if known:
                verified = await app[KEYS].get(key)
            else:
                with throttles.checking(key_id, digest):
                    verified = await app[KEYS].get(key)
    except KeyChecksRefused as exc:
        raise _throttled(app, exc.refusal) from None
    except Exception as exc:
        if is_storage_unavailable(exc):
            raise Unavailable(
                "storage unavailable while checking the API key",
                headers={"Retry-After": str(app[CONFIG].retry_after_seconds)},
            ) from exc
        raise
    metrics.auth_cache.labels("hit" if app[KEYS].hits > hits_before else "miss").inc()
    if verified is None:
        throttles.record_failure(address, key_id)
        metrics.auth_failures.labels("unknown").inc()
        raise Unauthorized("unknown API key")
    if verified.revoked:
        throttles.record_failure(address, key_id, checked_secret=False)
        metrics.auth_failures.labels("revoked").inc()
        raise Forbidden("API key revoked")
    if scope not in verified.scopes:
        metrics.auth_failures.labels("scope").inc()
        raise Forbidden(f"API key lacks the {scope!r} scope")
    return verified


def _throttled(app: web.Application, refusal: Refusal) -> TooManyRequests:
    app[METRICS].auth_failures.labels("throttled").inc()
    return TooManyRequests(
        refusal.reason, headers={"Retry-After": str(math.ceil(refusal.retry_after_seconds))}
    )
