"""Typed application state: what ``create_app`` builds and handlers read, one AppKey each."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from aethermind.ingest.policy import TenantPolicies
from aethermind.receiver.coalesce import WriteCoalescer
from aethermind.receiver.config import ReceiverConfig
from aethermind.receiver.keycache import FailureThrottle, KeyCache
from aethermind.receiver.metrics import ReceiverMetrics
from aethermind.receiver.ratelimit import RateLimiter
from aethermind.semconv import PriceBook
from aethermind.storage.tenants import VerifiedKey


@dataclass
class Services:
    """Everything a request may need, built once per application."""

    config: ReceiverConfig
    pool: Any
    keys: KeyCache[VerifiedKey]
    throttle: FailureThrottle
    limiter: RateLimiter
    metrics: ReceiverMetrics
    price_book: PriceBook
    policies: TenantPolicies
    writer: WriteCoalescer
    # Large bodies are decoded in a worker thread, two at a time at most: the event loop keeps
    # answering (health checks, small requests) and a burst of hostile 16 MiB bodies cannot
    # multiply the decoder's memory by the number of requests in flight.
    large_decodes: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))
    # Creating a key runs bcrypt (~0.2 s of CPU) in a worker thread; one at a time, so an
    # admin key creating keys in a loop cannot take the threads that check keys on ingest.
    key_hashing: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))
    inflight: int = 0
    draining: bool = False


SERVICES: web.AppKey[Services] = web.AppKey("services", Services)
