"""Keeping the key cache in step with revocations made on any replica.

Two ways, both running: a LISTEN on ``aethermind_key_revoked`` hears a revocation the moment
it commits; a poll every ``revocation_poll_seconds`` asks for the keys revoked lately. The
listener is the fast path; the poll is what holds behind a transaction-mode pooler
(PgBouncer, RDS Proxy), where a LISTEN stays on whichever server connection ran it and
notifications silently stop, and it bounds how long a missed notification can matter. Turn
the listener off there (``revocation_listen``): the poll alone then sets the delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from aethermind.receiver.keycache import KeyCache
from aethermind.storage import tenants

logger = logging.getLogger(__name__)

LISTEN_RETRY_SECONDS = 1.0
POLL_OVERLAP = timedelta(minutes=2)
"""Each poll looks this far behind the latest revocation it saw: a revocation is stamped
with its transaction's start, so one that committed late can carry an older time (and the
replicas' clocks may differ)."""


async def listen_for_revocations(pool: Any, keys: KeyCache[tenants.VerifiedKey]) -> None:
    """Drop revoked keys from the cache as soon as any replica revokes them.

    While the listening connection is down a notification could be missed, so every
    reconnection starts by clearing the whole cache; keys are then verified afresh. The
    first connection instead drops the keys revoked since this process started: keys
    verified while it was connecting (a slow start under load) stay verified.
    """
    started = datetime.now(UTC)
    first = True
    while True:
        try:
            async with pool.acquire() as conn:
                done = asyncio.get_running_loop().create_future()

                def on_revoked(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
                    dropped = keys.forget_key_ids([payload])
                    logger.info(
                        "api key revoked elsewhere", extra={"key_id": payload, "dropped": dropped}
                    )

                def on_lost(_conn: Any, done: asyncio.Future[None] = done) -> None:
                    if not done.done():
                        done.set_result(None)

                await conn.add_listener(tenants.KEY_REVOKED_CHANNEL, on_revoked)
                conn.add_termination_listener(on_lost)
                try:  # from here on, however it ends, the connection goes back without them
                    if first:
                        revoked = await tenants.keys_revoked_since(pool, started - POLL_OVERLAP)
                        if revoked:  # forgetting voids verifications in flight: only if needed
                            keys.forget_key_ids([str(key_id) for key_id, _ in revoked])
                        first = False
                    else:
                        keys.clear()
                    await done
                finally:
                    with contextlib.suppress(Exception):
                        await conn.remove_listener(tenants.KEY_REVOKED_CHANNEL, on_revoked)
                    conn.remove_termination_listener(on_lost)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning(
                "revocation listener down, retrying", extra={"error": type(exc).__name__}
            )
        keys.clear()
        await asyncio.sleep(LISTEN_RETRY_SECONDS)


async def poll_revocations(
    pool: Any,
    keys: KeyCache[tenants.VerifiedKey],
    *,
    interval_seconds: float,
    timeout: float | None = None,
) -> None:
    """Every ``interval_seconds``, drop from the cache the keys revoked since the last poll."""
    latest = datetime.now(UTC)
    applied: dict[str, datetime] = {}
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            revoked = await tenants.keys_revoked_since(pool, latest - POLL_OVERLAP, timeout=timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("revocation poll failed", extra={"error": type(exc).__name__})
            continue
        fresh = [str(key_id) for key_id, _ in revoked if str(key_id) not in applied]
        if fresh:
            dropped = keys.forget_key_ids(fresh)
            logger.info("api keys revoked (poll)", extra={"key_ids": fresh, "dropped": dropped})
        for key_id, revoked_at in revoked:
            applied[str(key_id)] = revoked_at
            latest = max(latest, revoked_at)
        horizon = latest - 2 * POLL_OVERLAP
        for stale in [k for k, at in applied.items() if at < horizon]:
            del applied[stale]
