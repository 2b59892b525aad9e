"""Budget alerts: every receiver replica periodically compares each organization's
month-to-date cost with its budget and posts a Slack-compatible message to the budget's
webhook when thresholds are crossed, once per threshold and UTC month across all replicas.

How one check goes (``check_budgets``, also usable on its own):

- The budgets are listed across organizations (owner transaction); each organization's
  month-to-date cost and deliveries are then read in its own tenant transaction.
- Thresholds crossed and not yet held are claimed (``budgets.claim_thresholds``): the
  unique ``(organization, month, threshold)`` row decides which replica announces them.
  Everything one check claims for an organization goes out as one message, named after
  the highest threshold (jumping from 0 to 90% says "threshold 80%" once, not twice).
- Delivery: up to ``max_attempts`` POSTs, retried on network errors, timeouts, 5xx, 408
  and 429 with exponential backoff and jitter, honouring ``Retry-After``. Other answers
  (4xx, redirects) are permanent. No database transaction is held across HTTP.
- A round that fails is recorded ``failed``. After a transient failure it is claimed again
  by any replica from ``next_attempt_at`` (a pause that doubles per round, up to an hour),
  for the rest of the month; after a permanent one only once the budget's webhook changes.
  A delivered threshold is never sent again. A replica that dies mid-delivery leaves its
  claim ``pending`` until the lease (twice the longest possible round) runs out; one that
  shuts down mid-delivery hands it back at once. Either way the message may then go out
  twice if the first POST had in fact arrived: at least once rather than lost.

Webhook URLs carry secrets (Slack's token is in the path): only their host is ever logged
or stored in errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import aiohttp
import asyncpg
from aiohttp import web

from aethermind import __version__
from aethermind.receiver.config import ReceiverConfig
from aethermind.receiver.metrics import ReceiverMetrics
from aethermind.receiver.state import METRICS, POOL
from aethermind.storage import budgets
from aethermind.storage.scope import PoolOrConnection

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]

RETRYABLE_STATUSES = frozenset({408, 425, 429})
"""Retried besides every 5xx: the request may succeed later as it is."""
ALERT_ID_HEADER = "X-Aethermind-Alert-Id"
"""Same value on every attempt and round of one announcement, for receivers that dedupe."""
_RESPONSE_SNIPPET_BYTES = 200
_MAX_EXPONENT = 30  # 2**30 times any sane base is past every cap; keeps floats finite


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard one delivery round tries, and when a failed round is tried again."""

    max_attempts: int = 5
    timeout_seconds: float = 10.0
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 30.0
    failed_retry_seconds: float = 300.0
    failed_retry_max_seconds: float = 3600.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        for name in (
            "timeout_seconds",
            "backoff_base_seconds",
            "backoff_max_seconds",
            "failed_retry_seconds",
            "failed_retry_max_seconds",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @classmethod
    def from_config(cls, config: ReceiverConfig) -> RetryPolicy:
        return cls(
            max_attempts=config.alert_webhook_max_attempts,
            timeout_seconds=config.alert_webhook_timeout_seconds,
            failed_retry_seconds=config.alert_retry_failed_seconds,
            failed_retry_max_seconds=max(3600.0, config.alert_retry_failed_seconds),
        )

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Pause after failed attempt ``attempt`` (1-based): doubling from the base, capped,
        times a random 50-100% so replicas and organizations do not retry in step."""
        exponent = min(attempt - 1, _MAX_EXPONENT)
        ceiling = min(self.backoff_max_seconds, self.backoff_base_seconds * 2.0**exponent)
        return ceiling * rng.uniform(0.5, 1.0)

    def round_pause(self, rounds: int) -> float:
        """Seconds before a transiently failed round ``rounds`` (1-based) may be retried."""
        exponent = min(rounds - 1, _MAX_EXPONENT)
        return min(self.failed_retry_max_seconds, self.failed_retry_seconds * 2.0**exponent)

    @property
    def lease_seconds(self) -> float:
        """How long a claim is held: twice the longest round (every attempt timing out,
        every pause at its cap) plus a minute, so a live claimer never loses its lease."""
        longest = (
            self.max_attempts * self.timeout_seconds
            + (self.max_attempts - 1) * self.backoff_max_seconds
        )
        return 2 * longest + 60


# --- the message (pure) ---------------------------------------------------------------------


def _usd(amount: Decimal) -> str:
    # Cents rounded down like the percent, so "79% ($39.99)" never reads "79% ($40.00)".
    return f"${amount.quantize(Decimal('0.01'), rounding=ROUND_DOWN):,}"


@dataclass(frozen=True, slots=True)
class Alert:
    """One announcement: the thresholds it covers and the figures it reports."""

    organization_id: UUID
    organization: str
    """The organization's slug."""
    month: date
    thresholds: tuple[int, ...]
    """Ascending; the message is named after the last (highest)."""
    cost_usd: Decimal
    limit_usd: Decimal
    unpriced_calls: int = 0
    scope: budgets.BudgetScope = budgets.ORGANIZATION
    """Whose spend the budget limits: the organization's, or one user's or tag value's."""

    @property
    def threshold(self) -> int:
        return self.thresholds[-1]

    @property
    def percent_used(self) -> Decimal:
        return budgets.percent_used(self.cost_usd, self.limit_usd)

    @property
    def alert_id(self) -> str:
        scope = f"{self.scope.label}:" if self.scope.dimension else ""
        return f"{self.organization_id}:{scope}{self.month:%Y-%m}:{self.threshold}"

    def text(self) -> str:
        # Whole percent rounded down: the text never claims more than was spent.
        percent = int(self.percent_used.to_integral_value(rounding=ROUND_DOWN))
        who = f"organization {self.organization}"
        if self.scope.dimension:
            who = f"{self.scope.label} in {who}"
        return (
            f"Aethermind: {who} has used {percent}% "
            f"({_usd(self.cost_usd)}) of its {_usd(self.limit_usd)} monthly LLM budget "
            f"(threshold {self.threshold}%)"
        )

    def body(self) -> dict[str, Any]:
        """Slack-compatible (``text``); the other fields are for machines and are ignored by
        Slack. Money as decimal strings, as everywhere in the API."""
        return {
            "text": self.text(),
            "alert_id": self.alert_id,
            "organization": self.organization,
            "organization_id": str(self.organization_id),
            "scope": self.scope.as_dict(),
            "month": f"{self.month:%Y-%m}",
            "threshold": self.threshold,
            "thresholds": list(self.thresholds),
            "percent_used": format(budgets.percent_display(self.cost_usd, self.limit_usd), "f"),
            "month_to_date_usd": format(self.cost_usd, "f"),
            "monthly_limit_usd": format(self.limit_usd, "f"),
            "unpriced_calls": self.unpriced_calls,
        }


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP date; None when
    absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _retryable(status: int) -> bool:
    return status in RETRYABLE_STATUSES or 500 <= status < 600


def _scrub(text: str, url: str) -> str:
    """``text`` without the secret part of ``url`` (a server may echo its request line)."""
    parts = urlsplit(url)
    for secret in (url, parts.path + (f"?{parts.query}" if parts.query else ""), parts.path):
        if len(secret) > 1:
            text = text.replace(secret, "/***")
    return text


def _describe(exc: BaseException, policy: RetryPolicy) -> str:
    """An error as a short phrase with no URL in it (aiohttp messages carry the full URL)."""
    if isinstance(exc, TimeoutError):
        return f"timed out after {policy.timeout_seconds:g}s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or type(exc.os_error).__name__}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return type(exc).__name__


# --- delivery -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookOutcome:
    delivered: bool
    attempts: int
    error: str | None = None
    permanent: bool = False
    """Retrying the same request cannot help (4xx, redirect, bad URL)."""
    retry_after: float | None = None
    """The server's last Retry-After, in seconds."""


async def post_webhook(
    session: aiohttp.ClientSession,
    url: str,
    body: Mapping[str, Any],
    *,
    policy: RetryPolicy,
    headers: Mapping[str, str] | None = None,
    sleep: Sleep = asyncio.sleep,
    rng: random.Random | None = None,
    clock: Clock = _utcnow,
) -> WebhookOutcome:
    """POST ``body`` as JSON until a 2xx, a permanent failure or ``max_attempts``. Never
    raises for network or HTTP errors; never logs more of ``url`` than its host.

    A ``Retry-After`` longer than the policy's longest pause ends the round early (the
    next round is then scheduled no sooner than it asks)."""
    rng = rng or random.Random()
    host = budgets.webhook_host(url)
    data = json.dumps(body).encode()
    request_headers = {
        "Content-Type": "application/json",
        "User-Agent": f"aethermind/{__version__}",
        **(headers or {}),
    }
    timeout = aiohttp.ClientTimeout(total=policy.timeout_seconds)
    error = "no attempt made"
    for attempt in range(1, policy.max_attempts + 1):
        retry_after: float | None = None
        try:
            # Redirects are not followed: a POST redirected elsewhere is a misconfiguration,
            # and following it could send the alert (and our headers) to another host.
            async with session.post(
                url, data=data, headers=request_headers, timeout=timeout, allow_redirects=False
            ) as response:
                if 200 <= response.status < 300:
                    return WebhookOutcome(True, attempt)
                error = f"HTTP {response.status}"
                with contextlib.suppress(Exception):
                    raw = await response.content.read(_RESPONSE_SNIPPET_BYTES)
                    snippet = " ".join(raw.decode("utf-8", "replace").split())
                    if snippet:
                        error += f": {_scrub(snippet, url)}"
                if not _retryable(response.status):
                    if 300 <= response.status < 400:
                        error += " (redirects are not followed: set the final URL)"
                    return WebhookOutcome(False, attempt, error, permanent=True)
                retry_after = parse_retry_after(response.headers.get("Retry-After"), clock())
        except aiohttp.InvalidURL:
            return WebhookOutcome(False, attempt, "invalid webhook URL", permanent=True)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = _describe(exc, policy)
        if attempt == policy.max_attempts:
            return WebhookOutcome(False, attempt, error, retry_after=retry_after)
        pause = policy.backoff(attempt, rng)
        if retry_after is not None:
            if retry_after > policy.backoff_max_seconds:
                return WebhookOutcome(False, attempt, error, retry_after=retry_after)
            pause = max(pause, retry_after)
        logger.info(
            "webhook attempt failed, retrying",
            extra={"webhook_host": host, "attempt": attempt, "error": error, "pause_s": pause},
        )
        await sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover - the loop always returns


@dataclass(frozen=True, slots=True)
class AlertResult:
    alert: Alert
    delivered: bool
    attempts: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What one check did: budgets looked at, and the announcements it attempted."""

    budgets_checked: int
    alerts: tuple[AlertResult, ...] = ()
    errors: int = 0
    """Organizations whose check failed (database errors); logged, retried next check."""

    @property
    def delivered(self) -> list[Alert]:
        return [r.alert for r in self.alerts if r.delivered]

    @property
    def failed(self) -> list[Alert]:
        return [r.alert for r in self.alerts if not r.delivered]


async def check_budgets(
    pool: PoolOrConnection,
    *,
    session: aiohttp.ClientSession | None = None,
    policy: RetryPolicy | None = None,
    clock: Clock = _utcnow,
    sleep: Sleep = asyncio.sleep,
    rng: random.Random | None = None,
    concurrency: int = 4,
    timeout: float | None = 10.0,
) -> CheckResult:
    """One pass over every budget: claim and announce the thresholds crossed this UTC month
    (of ``clock()``). Organizations are handled ``concurrency`` at a time, so one slow
    webhook does not hold up the others while the pool keeps connections for ingest (each
    organization holds one only for its short reads and writes, never across HTTP); a
    database error in one is logged and skipped.
    ``session`` defaults to a new one for this call."""
    policy = policy or RetryPolicy()
    rng = rng or random.Random()
    entries = await budgets.list_budgets(pool, timeout=timeout)
    if not entries:
        return CheckResult(0)
    gate = asyncio.Semaphore(concurrency)
    async with contextlib.AsyncExitStack() as stack:
        if session is None:
            session = await stack.enter_async_context(aiohttp.ClientSession())

        async def one(entry: budgets.BudgetedOrganization) -> AlertResult | None:
            async with gate:
                return await _check_organization(
                    pool, entry, session=session, policy=policy, clock=clock, sleep=sleep,
                    rng=rng, timeout=timeout,
                )  # fmt: skip

        outcomes = await asyncio.gather(*(one(e) for e in entries), return_exceptions=True)
    results: list[AlertResult] = []
    errors = 0
    for entry, outcome in zip(entries, outcomes, strict=True):
        if isinstance(outcome, asyncio.CancelledError):
            raise outcome
        if isinstance(outcome, BaseException):
            errors += 1
            logger.warning(
                "budget check failed for an organization",
                extra={"organization": entry.slug, **_error_fields(outcome)},
            )
        elif outcome is not None:
            results.append(outcome)
    return CheckResult(len(entries), tuple(results), errors)


def _error_fields(exc: BaseException) -> dict[str, Any]:
    # Database and OS errors say nothing about webhooks; anything else is named by type only.
    fields: dict[str, Any] = {"error": type(exc).__name__}
    if isinstance(exc, (asyncpg.PostgresError, OSError)):
        fields["detail"] = str(exc)[:300]
    return fields


async def _check_organization(
    pool: PoolOrConnection,
    entry: budgets.BudgetedOrganization,
    *,
    session: aiohttp.ClientSession,
    policy: RetryPolicy,
    clock: Clock,
    sleep: Sleep,
    rng: random.Random,
    timeout: float | None,
) -> AlertResult | None:
    budget = entry.budget
    now = clock()
    month = budgets.month_of(now)
    usage, deliveries = await budgets.month_status(
        pool, budget.organization_id, month, scope=budget.scope, timeout=timeout
    )
    crossed = budgets.crossed_thresholds(
        usage.cost_usd, budget.monthly_limit_usd, budget.thresholds
    )
    # Read first, so the usual check (nothing new) writes nothing; the claim re-checks.
    held = {d.threshold for d in deliveries if not d.claimable(now)}
    wanted = [t for t in crossed if t not in held]
    if not wanted:
        return None
    claim = await budgets.claim_thresholds(
        pool, budget.organization_id, month, wanted, now=now,
        lease_seconds=policy.lease_seconds, cost_usd=usage.cost_usd,
        limit_usd=budget.monthly_limit_usd, scope=budget.scope, timeout=timeout,
    )  # fmt: skip
    if claim is None:
        return None  # another replica holds them
    alert = Alert(
        organization_id=budget.organization_id,
        organization=entry.slug,
        month=month,
        thresholds=claim.thresholds,
        cost_usd=usage.cost_usd,
        limit_usd=budget.monthly_limit_usd,
        unpriced_calls=usage.unpriced_calls,
        scope=budget.scope,
    )
    return await _deliver(
        pool, alert, claim, budget.webhook_url, session=session, policy=policy, clock=clock,
        sleep=sleep, rng=rng, timeout=timeout,
    )  # fmt: skip


async def _deliver(
    pool: PoolOrConnection,
    alert: Alert,
    claim: budgets.Claim,
    url: str,
    *,
    session: aiohttp.ClientSession,
    policy: RetryPolicy,
    clock: Clock,
    sleep: Sleep,
    rng: random.Random,
    timeout: float | None,
) -> AlertResult:
    fields = {
        "organization": alert.organization,
        "scope": alert.scope.label,
        "month": f"{alert.month:%Y-%m}",
        "thresholds": list(alert.thresholds),
        "webhook_host": budgets.webhook_host(url),
    }
    try:
        outcome = await post_webhook(
            session, url, alert.body(), policy=policy, headers={ALERT_ID_HEADER: alert.alert_id},
            sleep=sleep, rng=rng, clock=clock,
        )  # fmt: skip
    except asyncio.CancelledError:
        # Shutting down mid-delivery: hand the claim back so the next check anywhere takes
        # it, instead of it waiting out the lease.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                budgets.mark_failed(
                    pool, claim, attempts=0, error="interrupted: receiver shut down",
                    next_attempt_at=clock(), timeout=timeout,
                ),
                timeout=5,
            )  # fmt: skip
        raise
    except Exception as exc:
        # A bug rather than the network; still never leave the claim pending for a lease.
        outcome = WebhookOutcome(False, 1, f"internal error: {type(exc).__name__}")
    if outcome.delivered:
        await budgets.mark_delivered(
            pool, claim, attempts=outcome.attempts, delivered_at=clock(), timeout=timeout
        )
        logger.info("budget alert delivered", extra={**fields, "attempts": outcome.attempts})
        return AlertResult(alert, True, outcome.attempts)
    error = outcome.error or "not delivered"
    next_attempt_at = None
    if not outcome.permanent:
        pause = max(policy.round_pause(claim.rounds), outcome.retry_after or 0.0)
        next_attempt_at = clock() + timedelta(seconds=pause)
    await budgets.mark_failed(
        pool, claim, attempts=outcome.attempts, error=error, next_attempt_at=next_attempt_at,
        timeout=timeout,
    )  # fmt: skip
    logger.warning(
        "budget alert not delivered",
        extra={
            **fields,
            "attempts": outcome.attempts,
            "error": error,
            "next_attempt_at": next_attempt_at.isoformat() if next_attempt_at else None,
        },
    )
    return AlertResult(alert, False, outcome.attempts, error)


# --- the loop in the receiver ---------------------------------------------------------------


async def run_alert_loop(
    pool: PoolOrConnection,
    *,
    interval_seconds: float,
    policy: RetryPolicy,
    session: aiohttp.ClientSession,
    clock: Clock = _utcnow,
    metrics: ReceiverMetrics | None = None,
) -> None:
    """Check budgets every ``interval_seconds`` (the first one interval after start) until
    cancelled. A failed check is logged, counted, and the loop goes on."""
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            result = await check_budgets(pool, session=session, policy=policy, clock=clock)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("budget check failed", extra=_error_fields(exc))
            if metrics is not None:
                metrics.budget_checks.labels("failed").inc()
            continue
        if metrics is not None:
            metrics.budget_checks.labels("failed" if result.errors else "ok").inc()
            metrics.budget_alerts.labels("delivered").inc(len(result.delivered))
            metrics.budget_alerts.labels("failed").inc(len(result.failed))
        if result.alerts:
            logger.info(
                "budget check done",
                extra={
                    "budgets": result.budgets_checked,
                    "delivered": len(result.delivered),
                    "failed": len(result.failed),
                },
            )


def alert_loop_ctx(config: ReceiverConfig) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context running the alert loop on the application's pool (append it after
    the one that sets the pool); ``alert_check_seconds = 0`` turns it off."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if config.alert_check_seconds <= 0:
            yield
            return
        async with aiohttp.ClientSession() as session:
            task = asyncio.create_task(
                run_alert_loop(
                    app[POOL],
                    interval_seconds=config.alert_check_seconds,
                    policy=RetryPolicy.from_config(config),
                    session=session,
                    metrics=app[METRICS],
                ),
                name="aethermind-budget-alerts",
            )
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return ctx
