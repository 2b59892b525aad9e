"""The key cache and the failure throttle behind authentication (``receiver/auth.py``):
bcrypt kept off the hot path.

bcrypt is slow by design, so a verified key is cached in memory under a fast digest of the key
(never the key itself) for a TTL, unknown keys are cached negatively, and concurrent first uses
of one key share a single verification. Revocations reach the cache through ``forget_key_ids``
(fed by the revocation watcher).

Failures are throttled per (client address, key id) and per key id (``AuthThrottles``), never
per address alone: behind a shared proxy or Collector one client's bad keys must not lock out
every tenant. A key that verified before in this process (``KeyCache.verified_before``) is let
through every throttle, so a valid key is never refused for someone else's failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from aethermind.semconv.bounded import BoundedCache


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
        # Digest -> key id of every key that verified (unrevoked) in this process, kept past
        # the TTL: what lets a valid key through the failure throttles.
        self._verified_before: BoundedCache[bytes, str] = BoundedCache(max_entries)
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
        if verified is not None and not getattr(verified, "revoked", False):
            self._verified_before.put(digest, str(verified.key_id))
        if len(self._entries) >= self._max:
            self._evict(now)
        ttl = self._ttl if verified is not None else self._negative_ttl
        self._entries[digest] = _Entry(verified, now + ttl)
        return verified

    def verified_before(self, digest: bytes) -> bool:
        """Whether the key of ``digest`` (``key_digest``) verified in this process and was
        not revoked since."""
        try:
            self._verified_before[digest]
        except KeyError:
            return False
        return True

    def forget_key_ids(self, key_ids: Iterable[Any]) -> int:
        """Drop cached entries of these key ids (revoked); returns how many were dropped."""
        wanted = {str(k) for k in key_ids}
        self._generation += 1
        self._verified_before.discard_values(wanted)
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
        self._verified_before.forget_all()

    def _evict(self, now: float) -> None:
        for digest in [d for d, e in self._entries.items() if e.expires_at <= now]:
            del self._entries[digest]
        if len(self._entries) >= self._max:
            self._entries.clear()


class FailureThrottle:
    """Counts auth failures per key (a client address, a key id, a pair) in a sliding
    window; too many -> blocked until the oldest leaves the window."""

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
        self._failures: dict[Hashable, deque[float]] = {}
        self.blocked = 0

    def retry_after(self, who: Hashable, *, pending: int = 0) -> float | None:
        """Seconds ``who`` must wait, or None when it may try; ``pending`` attempts still
        being checked count as failures already (they may all be)."""
        times = self._failures.get(who)
        if not times:
            if pending < self._max_failures:
                return None
            self.blocked += 1
            return 1.0
        now = self._clock()
        while times and times[0] <= now - self._window:
            times.popleft()
        if len(times) + pending < self._max_failures:
            return None
        self.blocked += 1
        return max(times[0] + self._window - now, 1.0) if times else 1.0

    def record_failure(self, who: Hashable) -> None:
        if len(self._failures) >= self._max_addresses and who not in self._failures:
            self._failures.clear()
        self._failures.setdefault(who, deque(maxlen=self._max_failures)).append(self._clock())


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    retry_after_seconds: float


class AuthThrottles:
    """The failure budgets a key check passes before bcrypt runs.

    - per (client address, key id): a client that keeps failing waits, and nobody else
      does, even when all clients arrive through one proxy address;
    - per key id, from any address: each failed check of a known key id costs a bcrypt
      (~0.2 s of CPU), and a key id is known to whoever holds any key of its organization,
      so guesses against one key id from many addresses are capped too;
    - per organization, across its key ids (an admin key can make many): bcrypt checks
      that failed, known once the key id's row names the organization (``gate``).

    Checks in progress count as failures already (they may all be), so a burst of
    concurrent guesses cannot all start their bcrypt before the first one fails; distinct
    keys count, not requests, so many requests presenting one new valid key are one check.
    Keys without a key id (malformed) count under the id ``""``.
    """

    def __init__(
        self,
        *,
        max_failures_per_client: int = 30,
        max_failures_per_key_id: int = 10,
        max_failures_per_organization: int = 30,
        window_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_client = FailureThrottle(
            max_failures=max_failures_per_client, window_seconds=window_seconds, clock=clock
        )
        self.per_key_id = FailureThrottle(
            max_failures=max_failures_per_key_id, window_seconds=window_seconds, clock=clock
        )
        self.per_organization = FailureThrottle(
            max_failures=max_failures_per_organization, window_seconds=window_seconds, clock=clock
        )
        self._checking_keys: dict[str, set[bytes]] = {}  # key id -> digests being checked
        self._checking_orgs: dict[Hashable, int] = {}  # organization -> bcrypts running

    def refusal(self, address: str, key_id: str, digest: bytes = b"") -> Refusal | None:
        wait = self.per_client.retry_after((address, key_id))
        if wait is not None:
            return Refusal("too many failed keys from this client with this key id", wait)
        if not key_id:
            return None  # malformed: refused without a lookup, so nothing to cap
        others = self._checking_keys.get(key_id, set()) - {digest}
        wait = self.per_key_id.retry_after(key_id, pending=len(others))
        if wait is not None:
            return Refusal("too many failed checks of this key id", wait)
        return None

    @contextlib.contextmanager
    def checking(self, key_id: str, digest: bytes) -> Iterator[None]:
        """Counts the check of one key (by digest) of ``key_id`` as in progress."""
        digests = self._checking_keys.setdefault(key_id, set())
        new = digest not in digests
        digests.add(digest)
        try:
            yield
        finally:
            if new:
                digests.discard(digest)
                if not digests:
                    del self._checking_keys[key_id]

    @contextlib.asynccontextmanager
    async def gate(self, organization: Hashable) -> AsyncIterator[None]:
        """Around one bcrypt check of a key of ``organization``: refuses (raising
        ``KeyChecksRefused``) when the organization's failed checks, with those running,
        reach its budget; a check that ends without a match is recorded by the caller."""
        running = self._checking_orgs.get(organization, 0)
        wait = self.per_organization.retry_after(organization, pending=running)
        if wait is not None:
            raise KeyChecksRefused(
                Refusal("too many failed key checks for this organization", wait)
            )
        self._checking_orgs[organization] = running + 1
        try:
            yield
        finally:
            left = self._checking_orgs[organization] - 1
            if left:
                self._checking_orgs[organization] = left
            else:
                del self._checking_orgs[organization]

    def record_failure(self, address: str, key_id: str, *, checked_secret: bool = True) -> None:
        """A failed key; ``checked_secret`` False when no bcrypt ran for it (a revoked key
        is known from its cached verification), so the key id's budget is not spent."""
        self.per_client.record_failure((address, key_id))
        if key_id and checked_secret:
            self.per_key_id.record_failure(key_id)

    def record_organization_failure(self, organization: Hashable) -> None:
        self.per_organization.record_failure(organization)


class KeyChecksRefused(Exception):
    """Raised by ``AuthThrottles.gate``: no bcrypt for this key now."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal
