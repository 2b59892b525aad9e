"""Revocations reach a replica that cannot LISTEN (behind a transaction-mode pooler) through
the poll, within its interval; the setting is what bounds the delay."""

from __future__ import annotations

import asyncio

import pytest

from aethermind.receiver.config import ReceiverConfig, ReceiverConfigError
from aethermind.storage.tenants import create_key, revoke_key
from tests.plugins.receiver import ReceiverFactory, RunningReceiver
from tests.receiver.helpers import PROTOBUF


async def _status(receiver: RunningReceiver, key: str) -> int:
    response = await receiver.session.post(
        receiver.traces_url, data=b"",
        headers={"Authorization": f"Bearer {key}", "Content-Type": PROTOBUF},
    )  # fmt: skip
    return response.status


async def _revoked_by_another_replica(receiver: RunningReceiver) -> tuple[str, str]:
    """A fresh ingest key, in use here (so cached), then revoked elsewhere."""
    record, key = await create_key(receiver.pool, receiver.acme.id, ["ingest"])
    assert await _status(receiver, key) == 200
    assert await revoke_key(receiver.pool, record.id) is not None
    return str(record.id), key


async def test_without_listen_the_poll_refuses_a_revoked_key_within_its_interval(
    receiver_factory: ReceiverFactory,
) -> None:
    receiver = await receiver_factory(revocation_listen=False, revocation_poll_seconds=0.2)
    _, key = await _revoked_by_another_replica(receiver)
    statuses = []
    for _ in range(50):  # up to 5 s; the poll runs every 0.2 s
        statuses.append(await _status(receiver, key))
        if statuses[-1] == 403:
            break
        await asyncio.sleep(0.1)
    assert statuses[-1] == 403, statuses  # within 5 s: the poll, not the cache's 300 s TTL


async def test_with_neither_listen_nor_a_short_poll_the_cached_key_lingers(
    receiver_factory: ReceiverFactory,
) -> None:
    # The control: what the poll above is for. A long interval leaves the key cached.
    receiver = await receiver_factory(revocation_listen=False, revocation_poll_seconds=3600)
    _, key = await _revoked_by_another_replica(receiver)
    await asyncio.sleep(1.0)
    assert await _status(receiver, key) == 200


def test_turning_off_both_ways_is_refused() -> None:
    with pytest.raises(ReceiverConfigError, match="revocation_poll_seconds"):
        ReceiverConfig(revocation_listen=False, revocation_poll_seconds=0)
    config = ReceiverConfig.from_env(
        {"AETHERMIND_REVOCATION_LISTEN": "false", "AETHERMIND_REVOCATION_POLL_SECONDS": "5"}
    )
    assert (config.revocation_listen, config.revocation_poll_seconds) == (False, 5.0)


async def test_a_listener_stopped_while_catching_up_leaves_its_connection_clean(
    database_url: str, recwarn: pytest.WarningsRecorder
) -> None:
    """Stopped before it settles (here: waiting for a second connection of a one-connection
    pool during its first catch-up), the listener takes its notification and termination
    callbacks off the connection before handing it back (asyncpg warns when a connection
    comes back to its pool still listening)."""
    import asyncpg

    from aethermind.receiver.keycache import KeyCache
    from aethermind.receiver.revocations import listen_for_revocations
    from aethermind.storage.config import DatabaseConfig
    from aethermind.storage.database import Database

    async def verify(_key: str) -> None:
        return None

    config = DatabaseConfig(database_url=database_url, min_pool_size=1, max_pool_size=1)
    async with Database(config) as pool:
        listener = asyncio.create_task(listen_for_revocations(pool, KeyCache(verify)))
        observer = await asyncpg.connect(database_url)
        try:
            for _ in range(200):  # up to 10 s for the listener to be listening
                listening = await observer.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
                )
                if listening:
                    break
                await asyncio.sleep(0.05)
            assert listening
        finally:
            await observer.close()
        listener.cancel()
        with pytest.raises(asyncio.CancelledError):
            await listener
        async with pool.acquire():
            pass  # the connection is back in the pool and out again
    leaks = [w for w in recwarn if issubclass(w.category, asyncpg.InterfaceWarning)]
    assert not leaks, [str(w.message) for w in leaks]
