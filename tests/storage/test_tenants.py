"""Organizations and API keys: creation with plan defaults, key lifecycle, verification."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import bcrypt
import pytest

from aethermind.storage import keys
from aethermind.storage.tenants import (
    KEY_REVOKED_CHANNEL,
    OrganizationExistsError,
    create_key,
    create_organization,
    get_organization,
    get_organization_by_slug,
    list_keys,
    revoke_key,
    verify_key,
)
from tests.storage.factories import owner_fetch


async def test_organizations_take_their_plans_defaults_unless_given(pool: Any) -> None:
    free = await create_organization(pool, "Acme Corp")
    assert (free.slug, free.plan, free.rate_limit_per_min, free.retention_days) == (
        "acme-corp",
        "FREE",
        6000,
        30,
    )
    assert free.capture_content is False
    pro = await create_organization(pool, "Big", slug="big", plan="PRO", retention_days=200)
    assert (pro.rate_limit_per_min, pro.retention_days) == (60000, 200)
    assert await get_organization_by_slug(pool, "big") == pro
    assert await get_organization_by_slug(pool, "nope") is None
    assert await get_organization(pool, pro.id) == pro
    with pytest.raises(OrganizationExistsError):
        await create_organization(pool, "Again", slug="big")
    with pytest.raises(ValueError, match="plan"):
        await create_organization(pool, "X", plan="GOLD")  # type: ignore[arg-type]


async def test_a_created_key_verifies_with_its_scopes_and_limits(pool: Any) -> None:
    org = await create_organization(pool, "Acme", plan="PRO")
    record, key = await create_key(pool, org.id, ["read", "ingest"], "ci")
    assert key.startswith("aether_") and record.public_id in key
    assert record.scopes == ("ingest", "read")
    verified = await verify_key(pool, key)
    assert verified is not None
    assert verified.key_id == record.id and verified.organization_id == org.id
    assert (
        verified.scopes == {"ingest", "read"}
        and verified.allows("ingest")
        and not verified.allows("admin")
    )
    assert verified.rate_limit_per_min == 60000 and verified.organization_slug == "acme"
    assert not verified.revoked
    [listed] = await list_keys(pool, org.id)
    assert listed.last_used_at is not None


async def test_only_a_bcrypt_hash_of_cost_12_or_more_is_stored(pool: Any) -> None:
    org = await create_organization(pool, "Acme")
    _, key = await create_key(pool, org.id, ["ingest"])
    [row] = await owner_fetch(pool, "SELECT key_hash FROM api_keys")
    stored: str = row["key_hash"]
    parsed = keys.parse_key(key)
    assert parsed is not None
    # the secret is 43 urlsafe characters (it may itself contain "_"): take it from the parser
    assert key not in stored and parsed.secret not in stored
    assert stored.startswith("$2b$")
    assert int(stored.split("$")[2]) >= 12
    assert bcrypt.checkpw(key.encode(), stored.encode())
    with pytest.raises(ValueError):
        keys.hash_key(key, rounds=10)


async def test_wrong_unknown_and_malformed_keys_do_not_verify(pool: Any) -> None:
    org = await create_organization(pool, "Acme")
    _, key = await create_key(pool, org.id, ["ingest"])
    parsed = keys.parse_key(key)
    assert parsed is not None
    wrong_secret = keys.format_key(parsed.public_id, "x" * 43)
    unknown_id = keys.format_key("zzzzzzzzzzzz", parsed.secret)
    for candidate in (wrong_secret, unknown_id, "aether_", "Bearer " + key, key + "x", ""):
        assert await verify_key(pool, candidate) is None, candidate


async def test_revoking_a_key_marks_it_and_notifies_other_replicas(
    pool: Any, database_url: str
) -> None:
    org = await create_organization(pool, "Acme")
    other = await create_organization(pool, "Other")
    record, key = await create_key(pool, org.id, ["ingest", "read"])
    second, second_key = await create_key(pool, org.id, ["admin"])

    listener = await asyncpg.connect(database_url)
    heard: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(KEY_REVOKED_CHANNEL, lambda *args: heard.put_nowait(args[3]))
    try:
        # Another organization cannot revoke it.
        assert await revoke_key(pool, record.id, organization_id=other.id) is None
        revoked = await revoke_key(pool, record.id, organization_id=org.id)
        assert revoked is not None and revoked.revoked_at is not None
        assert await asyncio.wait_for(heard.get(), 5) == str(record.id)
        again = await revoke_key(pool, record.id)  # operator path; idempotent
        assert again is not None and again.revoked_at == revoked.revoked_at
    finally:
        await listener.close()

    verified = await verify_key(pool, key)
    assert verified is not None and verified.revoked and not verified.allows("ingest")
    still = await verify_key(pool, second_key)
    assert still is not None and not still.revoked
    assert [k.id for k in await list_keys(pool, org.id)] == sorted(
        [record.id, second.id], key=[record.id, second.id].index
    )
    assert await list_keys(pool, other.id) == []
    assert await revoke_key(pool, "not-a-uuid") is None


def test_scopes_are_validated() -> None:
    assert keys.normalize_scopes(["admin", "ingest", "ingest"]) == ("ingest", "admin")
    with pytest.raises(ValueError, match="unknown scopes"):
        keys.normalize_scopes(["write"])
    with pytest.raises(ValueError):
        keys.normalize_scopes([])
