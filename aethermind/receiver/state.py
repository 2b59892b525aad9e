"""Typed application state, the aiohttp way: one ``AppKey`` per resource, each set by
``create_app`` (what exists before startup) or by its cleanup context (what needs the pool),
and read by the handlers that use it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from aethermind.ingest.policy import TenantPolicies
from aethermind.receiver.clientaddr import TrustedProxies
from aethermind.receiver.coalesce import WriteCoalescer
from aethermind.receiver.config import ReceiverConfig
from aethermind.receiver.keycache import AuthThrottles, KeyCache
from aethermind.receiver.metrics import ReceiverMetrics
from aethermind.receiver.ratelimit import RateLimiter
from aethermind.semconv import PriceBook
from aethermind.storage.tenants import VerifiedKey


@dataclass
class Admission:
    """How much ingest work this process has taken on, and whether it still takes more."""

    inflight: int = 0
    """Ingest requests being decoded or written; past ``max_inflight_requests``, 503."""
    draining: bool = False
    """Set at shutdown: /readyz turns 503 so load balancers stop sending."""
    # Large bodies are decoded in a worker thread, two at a time at most: the event loop keeps
    # answering (health checks, small requests) and a burst of hostile 16 MiB bodies cannot
    # multiply the decoder's memory by the number of requests in flight.
    large_decodes: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))


CONFIG = web.AppKey("config", ReceiverConfig)
METRICS = web.AppKey("metrics", ReceiverMetrics)
ADMISSION = web.AppKey("admission", Admission)
POOL: web.AppKey[Any] = web.AppKey("pool")
"""The asyncpg pool, owned by the pool provider given to ``create_app``."""
KEYS: web.AppKey[KeyCache[VerifiedKey]] = web.AppKey("keys")
THROTTLE = web.AppKey("throttle", AuthThrottles)
TRUSTED_PROXIES = web.AppKey("trusted_proxies", TrustedProxies)
LIMITER = web.AppKey("limiter", RateLimiter)
PRICE_BOOK = web.AppKey("price_book", PriceBook)
POLICIES = web.AppKey("policies", TenantPolicies)
WRITER = web.AppKey("writer", WriteCoalescer)
KEY_HASHING = web.AppKey("key_hashing", asyncio.Semaphore)
"""Creating a key runs bcrypt (~0.2 s of CPU) in a worker thread; one at a time, so an admin
key creating keys in a loop cannot take the threads that check keys on ingest."""
