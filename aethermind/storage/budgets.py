"""Monthly budgets and the record of their alerts: set, get and delete a budget, month-to-
date cost from the rollups, claim thresholds and record outcomes.

A budget limits the spend of its scope (``BudgetScope``): the organization's, or one user's
or one tag value's within it (``tag.team`` = ``search``), each with its own thresholds,
webhook and deliveries.

Budgets and deliveries are tenant data (row-level security); only ``list_budgets``, the
scan over every organization, runs as the owner. Months are UTC calendar months. A
threshold is claimed by inserting its ``alert_deliveries`` row (see migration 0003), so of
several replicas exactly one announces it; results are recorded under the claim's lease.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any, Literal
from urllib.parse import urlsplit
from uuid import UUID, uuid4

from aethermind.semconv.record import MAX_NAME_LENGTH
from aethermind.storage.cost_basis import cost_on_basis, read_cost_basis
from aethermind.storage.dimension_rollups import MONTHLY_TABLE
from aethermind.storage.metric_usage import metric_aggregates, metric_rows_on_basis
from aethermind.storage.scope import (
    Connection,
    PoolOrConnection,
    owner_transaction,
    tenant_transaction,
)
from aethermind.storage.tags import TAG_PREFIX, tag_of

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLDS: tuple[int, ...] = (50, 80, 100)
MAX_THRESHOLDS = 20
MAX_THRESHOLD_PERCENT = 1000
"""Mirrors the checks on ``budgets.thresholds`` in migration 0003."""

DeliveryStatus = Literal["pending", "delivered", "failed"]

MAX_BUDGETS = 100
"""Budgets an organization may have, its own and its users' and tag values' together: each
is checked on every pass of the alert loop."""
BUDGET_DIMENSIONS: tuple[str, ...] = ("user",)
"""Dimensions a budget may be scoped to, besides ``tag.<key>`` for the organization's keys."""

_BUDGET_COLUMNS = (
    "organization_id, dimension, value, monthly_limit_usd, thresholds, webhook_url,"
    " created_at, updated_at"
)
_DELIVERY_COLUMNS = (
    "organization_id, dimension, value, month, threshold, status, attempts, rounds,"
    " last_error, lease_id, lease_expires_at, next_attempt_at, cost_usd, limit_usd,"
    " claimed_at, delivered_at"
)


@dataclass(frozen=True, slots=True)
class BudgetScope:
    """Whose spend a budget limits: the organization's (no dimension, the default), or the
    spans of one value of a dimension (``user`` = ``alice``; ``tag.team`` = ``search``)."""

    dimension: str = ""
    value: str = ""

    def __post_init__(self) -> None:
        if (self.dimension == "") != (self.value == ""):
            raise ValueError("a budget's scope names both a dimension and a value, or neither")
        if self.dimension and self.dimension not in BUDGET_DIMENSIONS:
            tag_of(self.dimension)  # ValueError for a bad key
            if not self.dimension.startswith(TAG_PREFIX):
                raise ValueError(
                    f"budgets are per organization, {', '.join(BUDGET_DIMENSIONS)} or tag.<key>,"
                    f" not {self.dimension!r}"
                )
        if len(self.value) > MAX_NAME_LENGTH:
            raise ValueError(f"a budget's value is at most {MAX_NAME_LENGTH} characters")

    @property
    def label(self) -> str:
        """``organization``, or ``user=alice``, ``tag.team=search``."""
        return f"{self.dimension}={self.value}" if self.dimension else "organization"

    def as_dict(self) -> dict[str, str] | None:
        return {"dimension": self.dimension, "value": self.value} if self.dimension else None


ORGANIZATION = BudgetScope()


# --- pure helpers ---------------------------------------------------------------------------


def month_of(moment: datetime) -> date:
    """The first day of ``moment``'s UTC calendar month."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"moment must be timezone-aware, got {moment!r}")
    utc = moment.astimezone(UTC)
    return date(utc.year, utc.month, 1)


def month_bounds(month: date) -> tuple[datetime, datetime]:
    """``[start, end)`` of a UTC calendar month, as instants."""
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    end = datetime(month.year + (month.month == 12), month.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def normalize_thresholds(values: Iterable[int]) -> tuple[int, ...]:
    """Thresholds sorted and without repeats; ValueError naming the bad one otherwise."""
    result = sorted(set(values))
    if not result:
        raise ValueError("thresholds must name at least one percentage")
    if len(result) > MAX_THRESHOLDS:
        raise ValueError(f"at most {MAX_THRESHOLDS} thresholds, got {len(result)}")
    for value in result:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"thresholds must be whole percentages, got {value!r}")
        if not 0 < value <= MAX_THRESHOLD_PERCENT:
            raise ValueError(
                f"thresholds must be between 1 and {MAX_THRESHOLD_PERCENT} percent, got {value}"
            )
    return tuple(result)


def parse_thresholds(text: str) -> tuple[int, ...]:
    """``"50,80,100"`` (a ``%`` after a number is allowed) as normalized thresholds."""
    parts = [p.strip().removesuffix("%").strip() for p in text.split(",")]
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        raise ValueError(
            f"thresholds must be a comma-separated list of whole percentages such as "
            f"50,80,100; got {text!r}"
        ) from None
    return normalize_thresholds(numbers)


def validate_webhook_url(url: str) -> str:
    """An ``http(s)://host/...`` URL, stripped; ValueError that never repeats the URL (its
    path may be a secret) but says what is wrong."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ValueError("webhook URL is malformed") from None
    if parts.scheme not in {"http", "https"}:
        raise ValueError(f"webhook URL must start with https:// or http://, not {parts.scheme!r}")
    if not parts.hostname:
        raise ValueError("webhook URL has no host")
    if any(c.isspace() for c in url):
        raise ValueError("webhook URL must not contain spaces")
    return url


def webhook_host(url: str) -> str:
    """The host of a webhook URL: the only part of it that may be logged or shown."""
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


def redact_url(url: str) -> str:
    """``https://hooks.slack.com/***``: scheme and host, the rest (a secret) hidden."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/***"


def percent_used(cost_usd: Decimal, limit_usd: Decimal) -> Decimal:
    """Month-to-date cost as a percentage of the limit (exact, unrounded)."""
    return cost_usd * 100 / limit_usd


def percent_display(cost_usd: Decimal, limit_usd: Decimal) -> Decimal:
    """``percent_used`` to two places, rounded down: never shows more than was spent."""
    return percent_used(cost_usd, limit_usd).quantize(Decimal("0.01"), rounding=ROUND_DOWN)


def crossed_thresholds(
    cost_usd: Decimal, limit_usd: Decimal, thresholds: Iterable[int]
) -> list[int]:
    """Thresholds reached: ``cost >= limit * threshold / 100``, compared exactly."""
    return sorted(t for t in thresholds if cost_usd * 100 >= limit_usd * t)


# --- records --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Budget:
    organization_id: UUID
    dimension: str
    value: str
    monthly_limit_usd: Decimal
    thresholds: tuple[int, ...]
    # Kept out of repr so a budget in a log line or traceback never shows the secret.
    webhook_url: str = field(repr=False)
    created_at: datetime
    updated_at: datetime

    @property
    def webhook_host(self) -> str:
        return webhook_host(self.webhook_url)

    @property
    def scope(self) -> BudgetScope:
        return BudgetScope(self.dimension, self.value)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form with the webhook URL redacted to its host."""
        return {
            "organization_id": str(self.organization_id),
            "scope": self.scope.as_dict(),
            "monthly_limit_usd": self.monthly_limit_usd,
            "thresholds": list(self.thresholds),
            "webhook_host": self.webhook_host,
            "webhook_url": redact_url(self.webhook_url),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class BudgetedOrganization:
    """One row of the operator's scan: a budget and whom it belongs to."""

    budget: Budget
    slug: str
    name: str


@dataclass(frozen=True, slots=True)
class MonthToDate:
    month: date
    cost_usd: Decimal
    calls: int
    unpriced_calls: int
    """Calls with no known price: not in ``cost_usd`` (never counted as $0 silently)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    organization_id: UUID
    dimension: str
    value: str
    month: date
    threshold: int
    status: DeliveryStatus
    attempts: int
    rounds: int
    last_error: str | None
    lease_id: UUID | None
    lease_expires_at: datetime | None
    next_attempt_at: datetime | None
    cost_usd: Decimal | None
    limit_usd: Decimal | None
    claimed_at: datetime
    delivered_at: datetime | None

    def claimable(self, now: datetime) -> bool:
        """Whether ``claim_thresholds`` would take this row again at ``now`` (mirrors its
        UPDATE): a failed delivery that is due, or a pending one whose claimer's lease ran
        out (it died mid-delivery)."""
        if self.status == "failed":
            return self.next_attempt_at is not None and self.next_attempt_at <= now
        if self.status == "pending":
            return self.lease_expires_at is not None and self.lease_expires_at <= now
        return False

    def as_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "status": self.status,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "claimed_at": self.claimed_at,
            "delivered_at": self.delivered_at,
            "next_attempt_at": self.next_attempt_at,
        }


@dataclass(frozen=True, slots=True)
class Claim:
    """Thresholds this caller now owns the delivery of, under ``lease_id``."""

    organization_id: UUID
    scope: BudgetScope
    month: date
    thresholds: tuple[int, ...]
    lease_id: UUID
    lease_expires_at: datetime
    rounds: int
    """The highest delivery round among them (1 for a first claim)."""


def _budget(row: Any) -> Budget:
    values = dict(row)
    values["thresholds"] = tuple(values["thresholds"])
    return Budget(**values)


def _delivery(row: Any) -> Delivery:
    return Delivery(**dict(row))


def _check_limit(monthly_limit_usd: Decimal) -> Decimal:
    if isinstance(monthly_limit_usd, bool) or not isinstance(monthly_limit_usd, Decimal):
        raise TypeError(
            "monthly_limit_usd must be a Decimal (money is never float), "
            f"got {type(monthly_limit_usd).__name__}"
        )
    if not monthly_limit_usd.is_finite() or monthly_limit_usd <= 0:
        raise ValueError(f"monthly limit must be a positive amount, got {monthly_limit_usd}")
    return monthly_limit_usd


# --- budgets --------------------------------------------------------------------------------


async def set_budget(
    pool_or_conn: PoolOrConnection,
    organization_id: UUID | str,
    *,
    monthly_limit_usd: Decimal,
    thresholds: Iterable[int] | None = None,
    webhook_url: str | None = None,
    scope: BudgetScope = ORGANIZATION,
    timeout: float | None = None,
) -> Budget:
    """Create or replace the organization's budget for ``scope`` (its own by default; a tag
    must be one of the organization's tag keys; at most ``MAX_BUDGETS`` budgets).

    ``thresholds`` default to 50, 80, 100 for a new budget and stay as they were when
    omitted on an existing one; so does ``webhook_url``, which a new budget must have.
    Thresholds already announced this month are not announced again, whatever the new limit.
    When the webhook changes, this month's failed deliveries become due at once, so fixing
    a wrong URL is enough to have them retried at the next check.
    """
    limit = _check_limit(monthly_limit_usd)
    levels = None if thresholds is None else list(normalize_thresholds(thresholds))
    url = None if webhook_url is None else validate_webhook_url(webhook_url)
    org = UUID(str(organization_id))
    async with tenant_transaction(pool_or_conn, org) as conn:
        # The organization's row, locked: budgets of one organization are set one at a time,
        # so the count below holds.
        tag_keys = await conn.fetchval(
            "SELECT tag_keys FROM organizations WHERE id = $1 FOR UPDATE", org, timeout=timeout
        )
        key = tag_of(scope.dimension)
        if key is not None and key not in (tag_keys or ()):
            raise ValueError(
                f"tag {key!r} is not one of the organization's tag keys"
                f" ({', '.join(tag_keys or ()) or 'none configured'})"
            )
        previous = await conn.fetchval(
            "SELECT webhook_url FROM budgets WHERE organization_id = $1 AND dimension = $2"
            " AND value = $3 FOR UPDATE",
            org, scope.dimension, scope.value, timeout=timeout,
        )  # fmt: skip
        if previous is None and url is None:
            raise ValueError("a new budget needs a webhook URL")
        if previous is None:
            count = await conn.fetchval(
                "SELECT count(*) FROM budgets WHERE organization_id = $1", org, timeout=timeout
            )
            if count >= MAX_BUDGETS:
                raise ValueError(f"an organization has at most {MAX_BUDGETS} budgets")
        row = await conn.fetchrow(
            f"""
            INSERT INTO budgets AS b (organization_id, monthly_limit_usd, thresholds, webhook_url,
                                      dimension, value)
            VALUES ($1, $2, coalesce($3::integer[], $5::integer[]), $4, $6, $7)
            ON CONFLICT (organization_id, dimension, value) DO UPDATE SET
                monthly_limit_usd = excluded.monthly_limit_usd,
                thresholds = coalesce($3::integer[], b.thresholds),
                webhook_url = excluded.webhook_url,
                updated_at = now()
            RETURNING {_BUDGET_COLUMNS}
            """,
            org, limit, levels, url or previous, list(DEFAULT_THRESHOLDS), scope.dimension,
            scope.value, timeout=timeout,
        )  # fmt: skip
        if previous is not None and url is not None and url != previous:
            # Due at once: claimed_at is never later than the clock of the next check.
            await conn.execute(
                "UPDATE alert_deliveries SET next_attempt_at = claimed_at"
                " WHERE organization_id = $1 AND dimension = $2 AND value = $3"
                " AND status = 'failed'",
                org, scope.dimension, scope.value, timeout=timeout,
            )  # fmt: skip
    budget = _budget(row)
    logger.info(
        "budget set",
        extra={
            "organization_id": str(org),
            "scope": scope.label,
            "monthly_limit_usd": str(budget.monthly_limit_usd),
            "thresholds": list(budget.thresholds),
            "webhook_host": budget.webhook_host,
        },
    )
    return budget


_ONE_BUDGET = "organization_id = $1 AND dimension = $2 AND value = $3"


async def get_budget(
    pool_or_conn: PoolOrConnection,
    organization_id: UUID | str,
    *,
    scope: BudgetScope = ORGANIZATION,
    timeout: float | None = None,
) -> Budget | None:
    async with tenant_transaction(pool_or_conn, organization_id) as conn:
        row = await conn.fetchrow(
            f"SELECT {_BUDGET_COLUMNS} FROM budgets WHERE {_ONE_BUDGET}",
            UUID(str(organization_id)), scope.dimension, scope.value, timeout=timeout,
        )  # fmt: skip
    return None if row is None else _budget(row)


async def delete_budget(
    pool_or_conn: PoolOrConnection,
    organization_id: UUID | str,
    *,
    scope: BudgetScope = ORGANIZATION,
    timeout: float | None = None,
) -> bool:
    """Remove the budget (no more alerts); its delivery history stays. True if it existed."""
    async with tenant_transaction(pool_or_conn, organization_id) as conn:
        status = await conn.execute(
            f"DELETE FROM budgets WHERE {_ONE_BUDGET}",
            UUID(str(organization_id)), scope.dimension, scope.value, timeout=timeout,
        )  # fmt: skip
    return bool(int(status.split()[-1]))


async def list_budgets(
    pool_or_conn: PoolOrConnection, *, timeout: float | None = None
) -> list[BudgetedOrganization]:
    """Every organization's budget: operator work across tenants (owner role)."""
    columns = ", ".join(f"b.{c.strip()}" for c in _BUDGET_COLUMNS.split(","))
    async with owner_transaction(pool_or_conn) as conn:
        rows = await conn.fetch(
            f"SELECT {columns}, o.slug, o.name FROM budgets b"
            " JOIN organizations o ON o.id = b.organization_id"
            " ORDER BY o.slug, b.dimension, b.value",
            timeout=timeout,
        )
    result = []
    for row in rows:
        values = dict(row)
        slug, name = values.pop("slug"), values.pop("name")
        result.append(BudgetedOrganization(_budget(values), slug, name))
    return result


# --- month to date and deliveries -----------------------------------------------------------


_MONTH_SUMS = (
    "coalesce(sum(cost), 0) AS cost, coalesce(sum(calls), 0) AS calls,"
    " coalesce(sum(unpriced_calls), 0) AS unpriced_calls,"
    " sum(cost_of_provided) AS cost_of_provided,"
    " sum(provided_cost) FILTER (WHERE provided_calls > 0) AS provided_cost"
)
"""A month's spend from rollup rows, with what either cost basis needs."""


async def _month_to_date(
    conn: Connection, org: UUID, month: date, scope: BudgetScope, *, timeout: float | None
) -> MonthToDate:
    start, end = month_bounds(month)
    if scope.dimension:
        # One row: the dimension rollups keep each value's month, moved with every write.
        row = await conn.fetchrow(
            f"SELECT {_MONTH_SUMS} FROM {MONTHLY_TABLE} WHERE {_ONE_BUDGET} AND month = $4",
            org, scope.dimension, scope.value, start, timeout=timeout,
        )  # fmt: skip
    else:
        # The daily rollup is written in the same transaction as the spans, so it is
        # complete; a month is ~31 rows per dimension group. Unpriced spans add 0 to the
        # cost sum.
        row = await conn.fetchrow(
            f"SELECT {_MONTH_SUMS} FROM usage_rollup_daily"
            " WHERE organization_id = $1 AND day >= $2 AND day < $3",
            org, start, end, timeout=timeout,
        )  # fmt: skip
    basis = await read_cost_basis(conn, org, timeout=timeout)
    cost = cost_on_basis(basis, row["cost"], row["cost_of_provided"], row["provided_cost"])
    assert cost is not None
    calls = int(row["calls"])
    # Usage only reported as metrics (a coding agent's token and cost counters) is spend
    # too, counted as the aggregates count it: where the service sent no spans that day.
    # Metric rows carry users, not tags: a tag's budget is its spans'.
    filters = {scope.dimension: scope.value} if scope.dimension else {}
    from_metrics = await metric_aggregates(
        conn, org, start, end, group_by=[], granularity=None, filters=filters, timeout=timeout
    )
    for metric_row in metric_rows_on_basis(from_metrics, basis):
        cost += metric_row["cost_usd"] or 0
        calls += metric_row["calls"]
    return MonthToDate(month, Decimal(cost), calls, int(row["unpriced_calls"]))


async def _deliveries(
    conn: Connection, org: UUID, month: date, scope: BudgetScope, *, timeout: float | None
) -> list[Delivery]:
    rows = await conn.fetch(
        f"SELECT {_DELIVERY_COLUMNS} FROM alert_deliveries"
        f" WHERE {_ONE_BUDGET} AND month = $4 ORDER BY threshold",
        org, scope.dimension, scope.value, month, timeout=timeout,
    )  # fmt: skip
    return [_delivery(r) for r in rows]


async def month_to_date(
    pool_or_conn: PoolOrConnection,
    organization_id: UUID | str,
    month: date,
    *,
    scope: BudgetScope = ORGANIZATION,
    timeout: float | None = None,
) -> MonthToDate:
    """The scope's cost for a UTC calendar month: its priced spans' and the usage it reported
    only as metrics, on the organization's cost basis."""
    org = UUID(str(organization_id))
    async with tenant_transaction(pool_or_conn, org) as conn:
        return await _month_to_date(conn, org, month, scope, timeout=timeout)


async def list_deliveries(
    pool_or_conn: PoolOrConnection,
    organization_id: UUID | str,
    month: date,
    *,
    scope: BudgetScope = ORGANIZATION,
    timeout: float | None = None,
) -> list[Delivery]:
    org = UUID(str(organization_id))
    async with tenant_transaction(pool_or_conn, org) as conn:
        return await _deliveries(conn, org, month, scope, timeout=timeout)


async def month_status(
    pool_or_conn: PoolOrConnection,
    organization_id: UUID | str,
    month: date,
    *,
    scope: BudgetScope = ORGANIZATION,
    timeout: float | None = None,
) -> tuple[MonthToDate, list[Delivery]]:
    """Month-to-date cost and the month's deliveries, read in one transaction."""
    org = UUID(str(organization_id))
    async with tenant_transaction(pool_or_conn, org) as conn:
        usage = await _month_to_date(conn, org, month, scope, timeout=timeout)
        return usage, await _deliveries(conn, org, month, scope, timeout=timeout)


async def claim_thresholds(
    pool_or_conn: PoolOrConnection,
    organization_id: UUID | str,
    month: date,
    thresholds: Sequence[int],
    *,
    now: datetime,
    lease_seconds: float,
    cost_usd: Decimal | None = None,
    limit_usd: Decimal | None = None,
    scope: BudgetScope = ORGANIZATION,
    timeout: float | None = None,
) -> Claim | None:
    """Take the delivery of those ``thresholds`` that nobody holds: never claimed this month
    (a new row: ``INSERT ... ON CONFLICT DO NOTHING``), failed and due again, or pending
    under an expired lease. Concurrent callers never get the same threshold: the insert
    waits on the other's uncommitted row, and the update re-checks its condition on the
    row another caller just changed. Returns None when nothing was claimed.
    """
    org = UUID(str(organization_id))
    wanted = sorted(set(thresholds))
    if not wanted:
        return None
    lease_id = uuid4()
    lease_expires_at = now + timedelta(seconds=lease_seconds)
    async with tenant_transaction(pool_or_conn, org) as conn:
        inserted = await conn.fetch(
            """
            INSERT INTO alert_deliveries (organization_id, month, threshold, status, lease_id,
                lease_expires_at, cost_usd, limit_usd, claimed_at, dimension, value)
            SELECT $1, $2, t, 'pending', $4, $5, $6, $7, $8, $9, $10
              FROM unnest($3::integer[]) AS t
            ON CONFLICT (organization_id, dimension, value, month, threshold) DO NOTHING
            RETURNING threshold, rounds
            """,
            org, month, wanted, lease_id, lease_expires_at, cost_usd, limit_usd, now,
            scope.dimension, scope.value, timeout=timeout,
        )  # fmt: skip
        taken = await conn.fetch(
            """
            UPDATE alert_deliveries SET status = 'pending', lease_id = $4,
                   lease_expires_at = $5, cost_usd = $6, limit_usd = $7, claimed_at = $8,
                   next_attempt_at = NULL, rounds = rounds + 1
             WHERE organization_id = $1 AND month = $2 AND threshold = ANY ($3::integer[])
               AND dimension = $9 AND value = $10
               AND (status = 'failed' AND next_attempt_at <= $8
                    OR status = 'pending' AND lease_expires_at <= $8)
            RETURNING threshold, rounds
            """,
            org, month, wanted, lease_id, lease_expires_at, cost_usd, limit_usd, now,
            scope.dimension, scope.value, timeout=timeout,
        )  # fmt: skip
    claimed = [*inserted, *taken]
    if not claimed:
        return None
    return Claim(
        organization_id=org,
        scope=scope,
        month=month,
        thresholds=tuple(sorted(r["threshold"] for r in claimed)),
        lease_id=lease_id,
        lease_expires_at=lease_expires_at,
        rounds=max(int(r["rounds"]) for r in claimed),
    )


async def mark_delivered(
    pool_or_conn: PoolOrConnection,
    claim: Claim,
    *,
    attempts: int,
    delivered_at: datetime,
    timeout: float | None = None,
) -> int:
    """Record that the webhook accepted the message for the claim's thresholds.

    Not conditional on the lease: the message did go out, and recording it (even after the
    lease expired) keeps any other claimer's later result from turning it back into a
    failure, and the threshold from being announced again. Returns the rows updated.
    """
    async with tenant_transaction(pool_or_conn, claim.organization_id) as conn:
        status = await conn.execute(
            """
            UPDATE alert_deliveries SET status = 'delivered', attempts = attempts + $4,
                   delivered_at = $5, lease_id = NULL, lease_expires_at = NULL,
                   next_attempt_at = NULL
             WHERE organization_id = $1 AND month = $2 AND threshold = ANY ($3::integer[])
               AND dimension = $6 AND value = $7 AND status <> 'delivered'
            """,
            claim.organization_id, claim.month, list(claim.thresholds), attempts, delivered_at,
            claim.scope.dimension, claim.scope.value, timeout=timeout,
        )  # fmt: skip
    return int(status.split()[-1])


async def mark_failed(
    pool_or_conn: PoolOrConnection,
    claim: Claim,
    *,
    attempts: int,
    error: str,
    next_attempt_at: datetime | None,
    timeout: float | None = None,
) -> int:
    """Record a delivery round that did not get through. ``next_attempt_at`` is when the
    thresholds may be claimed again (None: only after the webhook changes). Only the
    current claimer (same lease) may write this. Returns the rows updated."""
    async with tenant_transaction(pool_or_conn, claim.organization_id) as conn:
        status = await conn.execute(
            """
            UPDATE alert_deliveries SET status = 'failed', attempts = attempts + $5,
                   last_error = $6, next_attempt_at = $7, lease_id = NULL,
                   lease_expires_at = NULL
             WHERE organization_id = $1 AND month = $2 AND threshold = ANY ($3::integer[])
               AND lease_id = $4 AND status = 'pending' AND dimension = $8 AND value = $9
            """,
            claim.organization_id, claim.month, list(claim.thresholds), claim.lease_id,
            attempts, error[:500], next_attempt_at, claim.scope.dimension, claim.scope.value,
            timeout=timeout,
        )  # fmt: skip
    return int(status.split()[-1])


@dataclass(frozen=True, slots=True)
class BudgetReport:
    """A budget and where the organization stands this month: what ``aethermind budget
    show`` prints."""

    organization_id: UUID
    organization: str
    budget: Budget
    usage: MonthToDate
    deliveries: tuple[Delivery, ...]

    def as_dict(self) -> dict[str, Any]:
        cost, limit = self.usage.cost_usd, self.budget.monthly_limit_usd
        crossed = set(crossed_thresholds(cost, limit, self.budget.thresholds))
        by_threshold = {d.threshold: d for d in self.deliveries}
        thresholds = []
        for threshold in self.budget.thresholds:
            delivery = by_threshold.get(threshold)
            entry: dict[str, Any] = {"threshold": threshold, "crossed": threshold in crossed}
            if delivery is None:
                entry.update(status=None, attempts=0, last_error=None, claimed_at=None,
                             delivered_at=None, next_attempt_at=None)  # fmt: skip
            else:
                entry.update(delivery.as_dict())
            thresholds.append(entry)
        return {
            "organization_id": str(self.organization_id),
            "organization": self.organization,
            "budget": self.budget.as_dict(),
            "month": f"{self.usage.month:%Y-%m}",
            "month_to_date_usd": cost,
            "percent_used": percent_display(cost, limit),
            "calls": self.usage.calls,
            "unpriced_calls": self.usage.unpriced_calls,
            "thresholds": thresholds,
        }


async def budget_report(
    pool_or_conn: PoolOrConnection,
    organization_id: UUID | str,
    organization: str,
    *,
    scope: BudgetScope = ORGANIZATION,
    now: datetime | None = None,
    timeout: float | None = None,
) -> BudgetReport | None:
    """The scope's budget, month-to-date cost and this month's deliveries as of ``now``
    (default: the clock), read in one transaction; None without a budget."""
    org = UUID(str(organization_id))
    month = month_of(now or datetime.now(UTC))
    async with tenant_transaction(pool_or_conn, org) as conn:
        row = await conn.fetchrow(
            f"SELECT {_BUDGET_COLUMNS} FROM budgets WHERE {_ONE_BUDGET}",
            org, scope.dimension, scope.value, timeout=timeout,
        )  # fmt: skip
        if row is None:
            return None
        usage = await _month_to_date(conn, org, month, scope, timeout=timeout)
        deliveries = await _deliveries(conn, org, month, scope, timeout=timeout)
    return BudgetReport(org, organization, _budget(row), usage, tuple(deliveries))
