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
