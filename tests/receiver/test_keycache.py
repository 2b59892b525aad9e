"""The key cache: a verification that was in flight when a key was revoked is not kept."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aethermind.receiver.keycache import KeyCache


@dataclass(frozen=True)
class Verified:
    key_id: str


async def test_a_verification_in_flight_across_a_revocation_is_used_once_not_cached() -> None:
    release = asyncio.Event()
    calls: list[str] = []

    async def verify(key: str) -> Verified | None:
        calls.append(key)
        await release.wait()
        return Verified("k1")  # read before the revocation committed

    cache: KeyCache[Verified] = KeyCache(verify, ttl_seconds=300)
    in_flight = asyncio.create_task(cache.get("aether_key"))
    await asyncio.sleep(0)
    assert cache.forget_key_ids(["k1"]) == 0  # the revocation arrives meanwhile
    release.set()
    assert await in_flight == Verified("k1")
    # The next request verifies again (and would now see the revocation).
    await cache.get("aether_key")
    assert len(calls) == 2


async def test_a_verified_key_is_cached_when_nothing_was_revoked_meanwhile() -> None:
    calls: list[str] = []

    async def verify(key: str) -> Verified | None:
        calls.append(key)
        return Verified("k1")

    cache: KeyCache[Verified] = KeyCache(verify, ttl_seconds=300)
    await cache.get("aether_key")
    await cache.get("aether_key")
    assert len(calls) == 1 and cache.hits == 1
