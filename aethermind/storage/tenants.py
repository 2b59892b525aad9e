"""Organizations and their API keys: create, look up, list, revoke, verify.

Creating organizations and finding them by slug are operator work (owner role). Keys are
managed inside the organization's tenant transaction, so row-level security applies.
Verification has to find a key before it knows the organization: it goes through the
SECURITY DEFINER function ``aethermind_find_key(public_id)``, which returns one key's row
and its organization's limits; the bcrypt check then happens here, in a worker thread.
After a revocation, ``NOTIFY aethermind_key_revoked, '<key id>'`` lets other replicas drop
cached verifications.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import os
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeAlias
from uuid import UUID

import asyncpg

from aethermind.storage import keys
from aethermind.storage.scope import (
    PoolOrConnection,
    connection,
    owner_transaction,
    tenant_transaction,
)
from aethermind.storage.tags import parse_tag_keys

logger = logging.getLogger(__name__)

Plan = Literal["FREE", "PRO", "ENTERPRISE"]
PLANS: tuple[Plan, ...] = ("FREE", "PRO", "ENTERPRISE")
KEY_REVOKED_CHANNEL = "aethermind_key_revoked"
LAST_USED_RESOLUTION_SECONDS = 60
"""``last_used_at`` is written at most this often per key: a write per request would cost
more than the information is worth."""


class OrganizationExistsError(ValueError):
    """The slug is taken."""


@dataclass(frozen=True, slots=True)
class Organization:
    id: UUID
    name: str
    slug: str
    plan: str
    rate_limit_per_min: int
    retention_days: int
    capture_content: bool
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, as the CLI prints it."""
        return {
            "id": str(self.id),
            "name": self.name,
            "slug": self.slug,
            "plan": self.plan,
            "rate_limit_per_min": self.rate_limit_per_min,
            "retention_days": self.retention_days,
            "capture_content": self.capture_content,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key's stored record (never the key itself)."""

    id: UUID
    organization_id: UUID
    public_id: str
    scopes: tuple[str, ...]
    name: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "organization_id": str(self.organization_id),
            "public_id": self.public_id,
            "scopes": list(self.scopes),
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


@dataclass(frozen=True, slots=True)
class VerifiedKey:
    """What a correct key grants. ``revoked`` keys verify (so the caller can answer 403
    rather than 401) but grant nothing."""

    key_id: UUID
    organization_id: UUID
    organization_slug: str
    scopes: frozenset[str]
    plan: str
    rate_limit_per_min: int
    retention_days: int
    capture_content: bool
    revoked: bool

    def allows(self, scope: str) -> bool:
        return not self.revoked and scope in self.scopes


_ORG_COLUMNS = (
    "id, name, slug, plan, rate_limit_per_min, retention_days, capture_content, created_at"
)
_KEY_COLUMNS = "id, organization_id, public_id, scopes, name, created_at, last_used_at, revoked_at"


def _organization(row: Any) -> Organization:
    return Organization(**dict(row))


def _api_key(row: Any) -> ApiKey:
    values = dict(row)
    values["scopes"] = tuple(values["scopes"])
    return ApiKey(**values)


def slugify(name: str) -> str:
    """A slug from a display name: lowercase ASCII, digits and dashes."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:63].strip("-")
    if not slug:
        raise ValueError(f"cannot derive a slug from organization name {name!r}; pass one")
    return slug


async def create_organization(
    pool_or_conn: PoolOrConnection,
    name: str,
    *,
    slug: str | None = None,
    plan: Plan = "FREE",
    rate_limit_per_min: int | None = None,
    retention_days: int | None = None,
    capture_content: bool = False,
    timeout: float | None = None,
) -> Organization:
    """Create an organization; limits default to its plan's (table ``plans``)."""
    if plan not in PLANS:
        raise ValueError(f"plan must be one of {PLANS}, got {plan!r}")
    for setting, value in (
        ("rate_limit_per_min", rate_limit_per_min),
        ("retention_days", retention_days),
    ):
        if value is not None and value <= 0:
            raise ValueError(f"{setting} must be positive, got {value}")
    slug = slug if slug is not None else slugify(name)
    async with owner_transaction(pool_or_conn) as conn:
        try:
            row = await conn.fetchrow(
                f"""
                INSERT INTO organizations
                    (name, slug, plan, rate_limit_per_min, retention_days, capture_content)
                SELECT $1, $2, p.name, coalesce($4, p.rate_limit_per_min),
                       coalesce($5, p.retention_days), $6
                  FROM plans p WHERE p.name = $3
                RETURNING {_ORG_COLUMNS}
                """,
                name,
                slug,
                plan,
                rate_limit_per_min,
                retention_days,
                capture_content,
                timeout=timeout,
            )
        except asyncpg.UniqueViolationError as exc:
            raise OrganizationExistsError(f"organization slug {slug!r} is taken") from exc
        except asyncpg.CheckViolationError as exc:
            raise ValueError(f"invalid organization name or slug {slug!r}: {exc}") from exc
    if row is None:
        raise ValueError(f"plan {plan!r} is not in the plans table")
    organization = _organization(row)
    logger.info(
        "organization created", extra={"organization_id": str(organization.id), "slug": slug}
    )
    return organization


async def get_organization_by_slug(
    pool_or_conn: PoolOrConnection, slug: str, *, timeout: float | None = None
) -> Organization | None:
    async with owner_transaction(pool_or_conn) as conn:
        row = await conn.fetchrow(
            f"SELECT {_ORG_COLUMNS} FROM organizations WHERE slug = $1", slug, timeout=timeout
        )
    return None if row is None else _organization(row)


async def get_organization(
    pool_or_conn: PoolOrConnection, organization_id: UUID | str, *, timeout: float | None = None
) -> Organization | None:
    """The organization, seen from inside its own tenant transaction."""
    async with tenant_transaction(pool_or_conn, organization_id) as conn:
        row = await conn.fetchrow(
            f"SELECT {_ORG_COLUMNS} FROM organizations WHERE id = $1",
            UUID(str(organization_id)),
            timeout=timeout,
        )
    return None if row is None else _organization(row)


async def list_organizations(
    pool_or_conn: PoolOrConnection, *, timeout: float | None = None
) -> list[Organization]:
    async with owner_transaction(pool_or_conn) as conn:
        rows = await conn.fetch(
            f"SELECT {_ORG_COLUMNS} FROM organizations ORDER BY created_at", timeout=timeout
        )
    return [_organization(r) for r in rows]


async def create_key(
    pool_or_conn: PoolOrConnection,
    organization_id: UUID | str,
    scopes: Iterable[str],
    name: str | None = None,
    *,
    timeout: float | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns its record and the full key, which is never retrievable again."""
    scope_tuple = keys.normalize_scopes(list(scopes))
    public_id, full_key = keys.new_key()
    key_hash = await asyncio.to_thread(keys.hash_key, full_key)
    async with tenant_transaction(pool_or_conn, organization_id) as conn:
        row = await conn.fetchrow(
            f"""
            INSERT INTO api_keys (organization_id, public_id, key_hash, scopes, name)
            VALUES ($1, $2, $3, $4, $5)
            RETURNING {_KEY_COLUMNS}
            """,
            UUID(str(organization_id)),
            public_id,
            key_hash,
            list(scope_tuple),
            name,
            timeout=timeout,
        )
    record = _api_key(row)
    logger.info(
        "api key created",
        extra={
            "organization_id": str(record.organization_id),
            "key_id": str(record.id),
            "scopes": scope_tuple,
        },
    )
    return record, full_key


async def list_keys(
    pool_or_conn: PoolOrConnection, organization_id: UUID | str, *, timeout: float | None = None
) -> list[ApiKey]:
    async with tenant_transaction(pool_or_conn, organization_id) as conn:
        rows = await conn.fetch(
            f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id", timeout=timeout
        )
    return [_api_key(r) for r in rows]


async def revoke_key(
    pool_or_conn: PoolOrConnection,
    key_id: UUID | str,
    *,
    organization_id: UUID | str | None = None,
    timeout: float | None = None,
) -> ApiKey | None:
    """Revoke a key (idempotent: the first revocation time is kept) and notify replicas.

    With ``organization_id`` the key must belong to it (an org admin revoking its own key);
    without, this is operator work (``aethermind key revoke KEY_ID``). Returns None when
    no such key exists.
    """
    try:
        key_uuid = UUID(str(key_id))
    except ValueError:
        return None
    scope = (
        owner_transaction(pool_or_conn)
        if organization_id is None
        else tenant_transaction(pool_or_conn, organization_id)
    )
    async with scope as conn:
        row = await conn.fetchrow(
            f"""
            UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
             WHERE id = $1
            RETURNING {_KEY_COLUMNS}
            """,
            key_uuid,
            timeout=timeout,
        )
        if row is not None:
            # Delivered at commit, so listeners never hear of a revocation that rolled back.
            await conn.execute(
                "SELECT pg_notify($1, $2)", KEY_REVOKED_CHANNEL, str(key_uuid), timeout=timeout
            )
    if row is None:
        return None
    record = _api_key(row)
    logger.info(
        "api key revoked",
        extra={"organization_id": str(record.organization_id), "key_id": str(key_uuid)},
    )
    return record


async def keys_revoked_since(
    pool_or_conn: PoolOrConnection, since: datetime, *, timeout: float | None = None
) -> list[tuple[UUID, datetime]]:
    """(key id, revoked at) of every key revoked at or after ``since``, any organization:
    what a replica polls when LISTEN/NOTIFY cannot reach it."""
    async with connection(pool_or_conn) as conn:  # SECURITY DEFINER: ids only
        rows = await conn.fetch(
            "SELECT key_id, revoked_at FROM aethermind_keys_revoked_since($1)",
            since,
            timeout=timeout,
        )
    return [(row["key_id"], row["revoked_at"]) for row in rows]


KEY_CHECK_THREADS = 2
KEY_CHECK_NICENESS = 10


@functools.cache
def _key_checks() -> concurrent.futures.ThreadPoolExecutor:
    """The threads that run bcrypt checks: few, and at a lower scheduling priority, so a
    flood of guesses (each ~0.2 s of CPU) slows the guesses, not the serving threads or
    PostgreSQL beside them. A valid key is checked once and then cached."""
    return concurrent.futures.ThreadPoolExecutor(
        max_workers=KEY_CHECK_THREADS, thread_name_prefix="key-check", initializer=_lower_priority
    )


def _lower_priority() -> None:
    with contextlib.suppress(OSError, AttributeError):  # not Linux, or not allowed
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), KEY_CHECK_NICENESS)


SecretCheckGate: TypeAlias = Callable[[UUID], AbstractAsyncContextManager[None]]
"""Wraps each bcrypt check with the organization the key id belongs to: the caller's chance
to refuse (by raising) or to account for the check before ~0.2 s of CPU is spent on it."""


async def verify_key(
    pool_or_conn: PoolOrConnection,
    key: str,
    *,
    timeout: float | None = None,
    secret_check_gate: SecretCheckGate | None = None,
) -> VerifiedKey | None:
    """Who a presented key belongs to and what it may do, or None when it is not a key we
    issued (malformed, unknown public id, or wrong secret).

    bcrypt runs in a worker thread. A revoked key still verifies, with ``revoked=True``.
    Malformed keys and unknown public ids return at once: the public id is not secret, so
    skipping bcrypt for them leaks nothing, and it keeps garbage traffic cheap.
    """
    parsed = keys.parse_key(key)
    if parsed is None:
        return None
    async with connection(pool_or_conn) as conn:  # no org yet: SECURITY DEFINER lookup
        rows = await conn.fetch(
            "SELECT * FROM aethermind_find_key($1)", parsed.public_id, timeout=timeout
        )
    for row in rows:
        gate = (
            secret_check_gate(row["organization_id"])
            if secret_check_gate is not None
            else contextlib.nullcontext()
        )
        async with gate:
            matches = await asyncio.get_running_loop().run_in_executor(
                _key_checks(), keys.check_key, key, row["key_hash"]
            )
        if matches:
            verified = VerifiedKey(
                key_id=row["key_id"],
                organization_id=row["organization_id"],
                organization_slug=row["organization_slug"],
                scopes=frozenset(row["scopes"]),
                plan=row["plan"],
                rate_limit_per_min=row["rate_limit_per_min"],
                retention_days=row["retention_days"],
                capture_content=row["capture_content"],
                revoked=row["revoked_at"] is not None,
            )
            if not verified.revoked:
                await _touch(pool_or_conn, verified, timeout=timeout)
            return verified
    return None


async def _touch(
    pool_or_conn: PoolOrConnection, verified: VerifiedKey, *, timeout: float | None
) -> None:
    async with tenant_transaction(pool_or_conn, verified.organization_id) as conn:
        await conn.execute(
            f"""
            UPDATE api_keys SET last_used_at = now()
             WHERE id = $1 AND organization_id = $2
               AND (last_used_at IS NULL
                    OR last_used_at < now() - interval '{LAST_USED_RESOLUTION_SECONDS} seconds')
            """,
            verified.key_id,
            verified.organization_id,
            timeout=timeout,
        )


async def get_tag_keys(
    pool_or_conn: PoolOrConnection, organization_id: UUID | str, *, timeout: float | None = None
) -> tuple[str, ...]:
    async with tenant_transaction(pool_or_conn, organization_id) as conn:
        keys: list[str] | None = await conn.fetchval(
            "SELECT tag_keys FROM organizations WHERE id = $1",
            UUID(str(organization_id)),
            timeout=timeout,
        )
    return tuple(keys or ())


async def set_tag_keys(
    pool_or_conn: PoolOrConnection,
    organization_id: UUID | str,
    keys: Iterable[str],
    *,
    timeout: float | None = None,
) -> tuple[str, ...]:
    """Replace the organization's tag keys (validated); returns them as stored. Spans stored
    before keep the tag values they had: a new key applies to spans that arrive after."""
    parsed = parse_tag_keys(keys)
    async with tenant_transaction(pool_or_conn, organization_id) as conn:
        await conn.execute(
            "UPDATE organizations SET tag_keys = $2 WHERE id = $1",
            UUID(str(organization_id)),
            list(parsed),
            timeout=timeout,
        )
    return parsed
