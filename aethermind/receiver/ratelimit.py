"""Per-organization rate limits in spans per minute: a token bucket with a one-minute burst.

In-process by default. With Redis configured the bucket lives in Redis (one Lua script, Redis'
own clock) so every replica draws from the same bucket; if Redis goes away we fall back to
the in-process bucket, say so in logs and metrics, and try Redis again a little later.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

logger = logging.getLogger(__name__)

REDIS_RETRY_SECONDS = 5.0
_BUCKET_TTL_SECONDS = 180

# KEYS[1] bucket hash; ARGV: capacity, refill per second, cost. Returns
# {allowed, remaining tokens (floor), milliseconds until `cost` tokens are available}.
_TOKEN_BUCKET_LUA = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil then
  tokens = capacity
  at = now
end
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local allowed = 0
local wait_ms = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  wait_ms = math.ceil((cost - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return {allowed, math.floor(tokens), wait_ms}
"""


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one request, with what the X-RateLimit headers report."""

    allowed: bool
    limit_per_minute: int
    remaining: int
    retry_after_seconds: float
    backend: str

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit_per_minute),
            "X-RateLimit-Remaining": str(max(self.remaining, 0)),
            "X-RateLimit-Reset": str(math.ceil(self.retry_after_seconds)),
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after_seconds)))
        return headers


def bucket_shape(limit_per_minute: int, cost: int) -> tuple[float, float, float]:
    """(capacity, refill per second, cost) for a request of ``cost`` spans.

    A request larger than a whole minute's allowance could never pass; it is charged the full
    bucket instead, so a big batch waits for a full bucket rather than failing forever.
    """
    capacity = float(max(limit_per_minute, 1))
    return capacity, capacity / 60.0, float(min(max(cost, 1), capacity))


class LocalBuckets:
    """Token buckets in this process's memory, one per organization."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_buckets: int = 100_000):
        self._clock = clock
        self._max = max_buckets
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str, limit_per_minute: int, cost: int) -> Decision:
        capacity, rate, charge = bucket_shape(limit_per_minute, cost)
        now = self._clock()
        tokens, at = self._buckets.get(key, (capacity, now))
        tokens = min(capacity, tokens + max(0.0, now - at) * rate)
        if tokens >= charge:
            tokens -= charge
            allowed, wait = True, 0.0
        else:
            allowed, wait = False, (charge - tokens) / rate
        if len(self._buckets) >= self._max and key not in self._buckets:
            self._buckets.clear()  # bounded memory; a cleared bucket starts full
        self._buckets[key] = (tokens, now)
        until_full = (capacity - tokens) / rate
        return Decision(
            allowed, limit_per_minute, int(tokens), wait if not allowed else until_full, "local"
        )


class RedisLike(Protocol):
    def register_script(self, script: str) -> Any: ...


class RateLimiter:
    """Shared limit through Redis when configured and reachable, else the local buckets."""

    def __init__(
        self,
        redis: RedisLike | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_fallback: Callable[[bool], None] | None = None,
    ) -> None:
        self._local = LocalBuckets(clock)
        self._clock = clock
        self._redis = redis
        self._script = redis.register_script(_TOKEN_BUCKET_LUA) if redis is not None else None
        self._redis_down_until = 0.0
        self._on_fallback = on_fallback
        self.using_fallback = False

    async def take(self, organization_id: str, limit_per_minute: int, cost: int) -> Decision:
        if self._script is not None and self._clock() >= self._redis_down_until:
            try:
                decision = await self._take_redis(organization_id, limit_per_minute, cost)
            except Exception as exc:  # any Redis failure: keep ingesting on the local limit
                self._redis_down_until = self._clock() + REDIS_RETRY_SECONDS
                self._set_fallback(True, exc)
            else:
                self._set_fallback(False, None)
                return decision
        return self._local.take(organization_id, limit_per_minute, cost)

    async def _take_redis(self, organization_id: str, limit_per_minute: int, cost: int) -> Decision:
        assert self._script is not None
        capacity, rate, charge = bucket_shape(limit_per_minute, cost)
        allowed, remaining, wait_ms = await self._script(
            keys=[f"aethermind:ratelimit:{organization_id}"],
            args=[capacity, rate, charge, _BUCKET_TTL_SECONDS],
        )
        remaining = int(remaining)
        wait = (capacity - remaining) / rate if allowed else int(wait_ms) / 1000.0
        return Decision(bool(allowed), limit_per_minute, remaining, wait, "redis")

    def _set_fallback(self, on: bool, exc: BaseException | None) -> None:
        if on == self.using_fallback:
            return
        self.using_fallback = on
        if on:
            logger.warning(
                "rate limit: Redis unreachable, using the in-process limit",
                extra={"error": type(exc).__name__ if exc else None},
            )
        else:
            logger.info("rate limit: Redis reachable again, limits shared across replicas")
        if self._on_fallback is not None:
            self._on_fallback(on)
