"""The key cache and the failure throttle behind authentication (``receiver/auth.py``):
bcrypt kept off the hot path.

bcrypt is slow by design, so a verified key is cached in memory under a fast digest of the key
(never the key itself) for a TTL, unknown keys are cached negatively, concurrent first uses of
one key share a single verification, and clients that keep failing are throttled by address.
Revocations reach the cache through ``forget_key_ids`` (fed by the revocation watcher).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar


class VerifiedKeyLike(Protocol):
    @property
    def key_id(self) -> Any: ...


K = TypeVar("K", bound=VerifiedKeyLike)


def key_digest(key: str) -> bytes:
    # A fast keyed-free digest is enough here: it only indexes an in-memory cache and the
    # real check (bcrypt) already ran for any entry that grants access.
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=20).digest()


@dataclass(slots=True)
class _Entry(Generic[K]):
    verified: K | None
    expires_at: float


class KeyCache(Generic[K]):
    """Digest -> verified key (or None for unknown), with TTLs and single-flight verification."""

    def __init__(
        self,
        verify: Callable[[str], Awaitable[K | None]],
        *,
        ttl_seconds: float = 300.0,
        negative_ttl_seconds: float = 5.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._verify = verify
        self._ttl = ttl_seconds
        self._negative_ttl = negative_ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._entries: dict[bytes, _Entry[K]] = {}
        self._inflight: dict[bytes, asyncio.Future[K | None]] = {}
        # Bumped by every revocation and clear: a verification that was in flight across one
        # may have read the key before it was revoked, so its answer is used once, not kept.
        self._generation = 0
        self.hits = 0
        self.misses = 0

    async def get(self, key: str) -> K | None:
        digest = key_digest(key)
        entry = self._entries.get(digest)
        now = self._clock()
        if entry is not None and entry.expires_at > now:
            self.hits += 1
            return entry.verified
        pending = self._inflight.get(digest)
        if pending is not None:
            self.hits += 1
            return await asyncio.shield(pending)
        self.misses += 1
        future: asyncio.Future[K | None] = asyncio.get_running_loop().create_future()
        self._inflight[digest] = future
        generation = self._generation
        try:
            verified = await self._verify(key)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody logs it as lost
            raise
        finally:
            self._inflight.pop(digest, None)
        future.set_result(verified)
        if generation != self._generation:
            return verified
        if len(self._entries) >= self._max:
            self._evict(now)
        ttl = self._ttl if verified is not None else self._negative_ttl
        self._entries[digest] = _Entry(verified, now + ttl)
        return verified

    def forget_key_ids(self, key_ids: Iterable[Any]) -> int:
        """Drop cached entries of these key ids (revoked); returns how many were dropped."""
        wanted = {str(k) for k in key_ids}
        self._generation += 1
        doomed = [
            digest
            for digest, entry in self._entries.items()
            if entry.verified is not None and str(entry.verified.key_id) in wanted
        ]
        for digest in doomed:
            del self._entries[digest]
        return len(doomed)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()

    def _evict(self, now: float) -> None:
        for digest in [d for d, e in self._entries.items() if e.expires_at <= now]:
            del self._entries[digest]
        if len(self._entries) >= self._max:
            self._entries.clear()


class FailureThrottle:
    """Counts auth failures per client address in a sliding window; too many -> blocked."""

    def __init__(
        self,
        *,
        max_failures: int = 30,
        window_seconds: float = 60.0,
        max_addresses: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_failures = max_failures
        self._window = window_seconds
        self._max_addresses = max_addresses
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self.blocked = 0

    def retry_after(self, address: str) -> float | None:
        """Seconds this address must wait, or None when it may try."""
        times = self._failures.get(address)
        if not times:
            return None
        now = self._clock()
        while times and times[0] <= now - self._window:
            times.popleft()
        if len(times) < self._max_failures:
            return None
        self.blocked += 1
        return max(times[0] + self._window - now, 1.0)

    def record_failure(self, address: str) -> None:
        if len(self._failures) >= self._max_addresses and address not in self._failures:
            self._failures.clear()
        self._failures.setdefault(address, deque(maxlen=self._max_failures)).append(self._clock())

    def record_success(self, address: str) -> None:
        self._failures.pop(address, None)
