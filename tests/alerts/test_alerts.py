"""Budget alerts as an organization sees them: one Slack-compatible message per threshold
and month, retried through webhook failures, never twice, whichever replica checks."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from aethermind.receiver.alerts import ALERT_ID_HEADER
from aethermind.storage import budgets
from aethermind.storage.config import DatabaseConfig
from aethermind.storage.database import Database
from aethermind.storage.tenants import Organization, create_organization
from tests.alerts.conftest import FAST, MARCH, SECRET_PATH, Check, Clock, Sleeps, Webhook, spend
from tests.plugins.services import free_port

pytestmark = pytest.mark.usefixtures("webhook")

MARCH_MONTH = date(2025, 3, 1)


async def set_budget(pool: Any, org: Organization, webhook: Webhook, **options: Any) -> None:
    await budgets.set_budget(
        pool,
        org.id,
        monthly_limit_usd=Decimal(options.pop("limit", "50")),
        webhook_url=options.pop("url", None) or webhook.url(),
        **options,
    )


async def statuses(pool: Any, org: Organization, month: date = MARCH_MONTH) -> dict[int, str]:
    return {d.threshold: d.status for d in await budgets.list_deliveries(pool, org.id, month)}


async def delivery(pool: Any, org: Organization, threshold: int) -> budgets.Delivery:
    found = [d for d in await budgets.list_deliveries(pool, org.id, MARCH_MONTH)]
    return next(d for d in found if d.threshold == threshold)


async def test_crossing_half_the_budget_posts_one_slack_message(
    pool: Any, acme: Organization, webhook: Webhook, check: Check
) -> None:
    await set_budget(pool, acme, webhook)
    await spend(pool, acme.id, "26", MARCH - timedelta(days=5), unpriced=2)

    result = await check()

    assert len(webhook.calls) == 1
    call = webhook.calls[0]
    assert call.path == SECRET_PATH
    assert call.headers["Content-Type"] == "application/json"
    assert call.headers[ALERT_ID_HEADER] == f"{acme.id}:2025-03:50"
    assert call.body == {
        "text": "Aethermind: organization acme has used 52% ($26.00) of its $50.00 monthly"
        " LLM budget (threshold 50%)",
        "alert_id": f"{acme.id}:2025-03:50",
        "organization": "acme",
        "organization_id": str(acme.id),
        "scope": None,
        "month": "2025-03",
        "threshold": 50,
        "thresholds": [50],
        "percent_used": "52.00",
        "month_to_date_usd": "26",
        "monthly_limit_usd": "50",
        "unpriced_calls": 2,
    }
    assert [a.threshold for a in result.delivered] == [50] and not result.failed
    assert await statuses(pool, acme) == {50: "delivered"}
    assert (await delivery(pool, acme, 50)).delivered_at == MARCH


async def test_checking_again_sends_nothing_more(
    pool: Any, acme: Organization, webhook: Webhook, check: Check
) -> None:
    await set_budget(pool, acme, webhook)
    await spend(pool, acme.id, "30", MARCH)
    await check()
    for _ in range(3):
        result = await check()
        assert result.alerts == ()
    assert len(webhook.calls) == 1


async def test_eighty_and_one_hundred_percent_each_send_one_message(
    pool: Any, acme: Organization, webhook: Webhook, check: Check
) -> None:
    await set_budget(pool, acme, webhook)
    await spend(pool, acme.id, "24.99", MARCH)
    await check()
    assert webhook.calls == []  # 49.98%: below the first threshold

    await spend(pool, acme.id, "0.01", MARCH)  # exactly 50%: reached
    await check()
    await spend(pool, acme.id, "16.23", MARCH)  # $41.23
    await check()
    await check()
    await spend(pool, acme.id, "8.77", MARCH)  # $50.00
    await check()
    await spend(pool, acme.id, "100", MARCH)  # 300%: nothing left to announce
    await check()

    assert webhook.texts == [
        "Aethermind: organization acme has used 50% ($25.00) of its $50.00 monthly LLM budget"
        " (threshold 50%)",
        "Aethermind: organization acme has used 82% ($41.23) of its $50.00 monthly LLM budget"
        " (threshold 80%)",
        "Aethermind: organization acme has used 100% ($50.00) of its $50.00 monthly LLM budget"
        " (threshold 100%)",
    ]
    assert await statuses(pool, acme) == {50: "delivered", 80: "delivered", 100: "delivered"}


async def test_thresholds_crossed_at_once_go_out_as_one_message(
    pool: Any, acme: Organization, webhook: Webhook, check: Check
) -> None:
    await set_budget(pool, acme, webhook, limit="1000", thresholds=[25, 50, 80, 100])
    await spend(pool, acme.id, "1234.5", MARCH)

    await check()
    await check()

    assert len(webhook.calls) == 1
    body = webhook.calls[0].body
    assert body["text"] == (
        "Aethermind: organization acme has used 123% ($1,234.50) of its $1,000.00 monthly LLM"
        " budget (threshold 100%)"
    )
    assert (body["threshold"], body["thresholds"]) == (100, [25, 50, 80, 100])
    assert await statuses(pool, acme) == dict.fromkeys((25, 50, 80, 100), "delivered")


async def test_a_new_month_starts_from_zero(
    pool: Any, acme: Organization, webhook: Webhook, check: Check, clock: Clock
) -> None:
    await set_budget(pool, acme, webhook)
    await spend(pool, acme.id, "45", datetime(2025, 3, 31, 23, 59, 59, tzinfo=UTC))
    await check()
    assert [c.body["threshold"] for c in webhook.calls] == [80]

    clock.now = datetime(2025, 4, 1, 0, 0, tzinfo=UTC)
    await check()
    assert len(webhook.calls) == 1  # April has spent nothing yet

    await spend(pool, acme.id, "30", datetime(2025, 4, 2, tzinfo=UTC))
    await check()
    assert len(webhook.calls) == 2
    april = webhook.calls[1].body
    assert (april["month"], april["threshold"], april["month_to_date_usd"]) == ("2025-04", 50, "30")
    assert await statuses(pool, acme, date(2025, 4, 1)) == {50: "delivered"}


async def test_a_failing_webhook_is_retried_with_backoff_and_delivered_once(
    pool: Any, acme: Organization, webhook: Webhook, check: Check, sleeps: Sleeps
) -> None:
    await set_budget(pool, acme, webhook)
    await spend(pool, acme.id, "30", MARCH)
    webhook.fail(2, status=503)

    result = await check()
    await check()

    assert len(webhook.calls) == 3
    assert len(result.delivered) == 1
    first, second = sleeps.pauses
    assert 0.005 <= first <= 0.01 and 0.01 <= second <= 0.02  # doubling, with jitter
    found = await delivery(pool, acme, 50)
    assert (found.status, found.attempts, found.last_error) == ("delivered", 3, None)


async def test_exhausted_attempts_fail_the_round_and_a_later_check_retries(
    pool: Any, acme: Organization, webhook: Webhook, check: Check, clock: Clock
) -> None:
    await set_budget(pool, acme, webhook)
    await spend(pool, acme.id, "30", MARCH)
    webhook.fail(6, status=500, text="internal_error")

    result = await check()
    assert len(result.failed) == 1 and len(webhook.calls) == 3
    failed = await delivery(pool, acme, 50)
    assert (failed.status, failed.attempts) == ("failed", 3)
    assert failed.last_error == "HTTP 500: internal_error"
    assert failed.next_attempt_at == MARCH + timedelta(seconds=60)

    clock.advance(seconds=59)
    await check()
    assert len(webhook.calls) == 3  # not due yet

    clock.advance(seconds=1)
    await check()  # second round fails too: the pause doubles
    assert len(webhook.calls) == 6
    assert (await delivery(pool, acme, 50)).next_attempt_at == clock.now + timedelta(seconds=120)

    clock.advance(seconds=120)
    await check()
    await check()
    assert len(webhook.calls) == 7
    done = await delivery(pool, acme, 50)
    assert (done.status, done.attempts, done.rounds) == ("delivered", 7, 3)


async def test_retry_after_is_honoured_within_a_round(
    pool: Any, acme: Organization, webhook: Webhook, check: Check, sleeps: Sleeps
) -> None:
    await set_budget(pool, acme, webhook)
    await spend(pool, acme.id, "30", MARCH)
    webhook.fail(1, status=429, **{"Retry-After": "3"})

    await check(policy=replace(FAST, backoff_max_seconds=5.0))

    assert sleeps.pauses[0] >= 3.0
    assert len(webhook.calls) == 2 and await statuses(pool, acme) == {50: "delivered"}


async def test_a_long_retry_after_ends_the_round_and_delays_the_next(
    pool: Any, acme: Organization, webhook: Webhook, check: Check, clock: Clock
) -> None:
    await set_budget(pool, acme, webhook)
    await spend(pool, acme.id, "30", MARCH)
    webhook.fail(1, status=503, **{"Retry-After": "3600"})

    await check()
    assert len(webhook.calls) == 1
    assert (await delivery(pool, acme, 50)).next_attempt_at == MARCH + timedelta(hours=1)

    clock.advance(seconds=61)
    await check()
    assert len(webhook.calls) == 1
    clock.advance(hours=1)
    await check()
    assert len(webhook.calls) == 2 and await statuses(pool, acme) == {50: "delivered"}


async def test_a_rejected_webhook_waits_for_a_new_url(
    pool: Any, acme: Organization, webhook: Webhook, check: Check, clock: Clock
) -> None:
    await set_budget(pool, acme, webhook)
    await spend(pool, acme.id, "30", MARCH)
    webhook.fail(1, status=404, text="no_service")

    await check()
    rejected = await delivery(pool, acme, 50)
    assert (rejected.status, rejected.attempts) == ("failed", 1)  # a 404 is not retried
    assert (rejected.last_error, rejected.next_attempt_at) == ("HTTP 404: no_service", None)

    clock.advance(hours=6)
    await check()
    assert len(webhook.calls) == 1

    await budgets.set_budget(
        pool, acme.id, monthly_limit_usd=Decimal(50), webhook_url=webhook.url("/services/fixed")
    )
    await check()
    assert [c.path for c in webhook.calls] == [SECRET_PATH, "/services/fixed"]
    assert await statuses(pool, acme) == {50: "delivered"}


async def test_an_unreachable_webhook_is_retried_in_a_later_round(
    pool: Any, acme: Organization, webhook: Webhook, check: Check, clock: Clock
) -> None:
    dead = f"http://127.0.0.1:{free_port()}{SECRET_PATH}"
    await set_budget(pool, acme, webhook, url=dead)
    await spend(pool, acme.id, "30", MARCH)

    await check()
    failed = await delivery(pool, acme, 50)
    assert failed.status == "failed" and failed.attempts == 3
    assert failed.last_error is not None and failed.last_error.startswith("cannot connect")
    assert failed.next_attempt_at == MARCH + timedelta(seconds=60)


async def test_webhook_urls_never_reach_logs_or_stored_errors(
    pool: Any,
    acme: Organization,
    webhook: Webhook,
    check: Check,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    globex = await create_organization(pool, "Globex", slug="globex")
    await set_budget(pool, acme, webhook)
    await set_budget(pool, globex, webhook, url=f"http://127.0.0.1:{free_port()}{SECRET_PATH}")
    await spend(pool, acme.id, "30", MARCH)
    await spend(pool, globex.id, "30", MARCH)
    webhook.fail(3, status=500, text=f"bad request line: POST {SECRET_PATH}?x=1 HTTP/1.1")

    await check()

    ours = [r for r in caplog.records if r.name.startswith("aethermind")]
    assert any(getattr(r, "webhook_host", None) == "127.0.0.1" for r in ours)
    for record in ours:
        assert "s3cr3t" not in json.dumps(record.__dict__, default=str), record.getMessage()
    for org in (acme, globex):
        error = (await delivery(pool, org, 50)).last_error
        assert error is not None and "s3cr3t" not in error
    report = await budgets.budget_report(pool, acme.id, "acme", now=MARCH)
    assert report is not None and "s3cr3t" not in json.dumps(report.as_dict(), default=str)
    assert "s3cr3t" not in repr(report)


async def test_two_replicas_checking_at_once_deliver_each_threshold_once(
    pool: Any, database_url: str, acme: Organization, webhook: Webhook, check: Check
) -> None:
    globex = await create_organization(pool, "Globex", slug="globex")
    await set_budget(pool, acme, webhook)
    await set_budget(pool, globex, webhook, url=webhook.url("/globex"))
    webhook.delay = 0.02  # replicas overlap while a message is in flight
    config = DatabaseConfig(database_url=database_url, min_pool_size=1, max_pool_size=4)
    spent = 0
    async with Database(config) as other_replica:
        for total, expected in ((10, 0), (26, 2), (41, 4), (45, 4), (60, 6)):
            for org in (acme, globex):
                await spend(pool, org.id, str(total - spent), MARCH)
            spent = total
            await asyncio.gather(*(check(on=p) for p in (pool, other_replica) * 3))
            assert len(webhook.calls) == expected, total
    keys = sorted((c.path, c.body["threshold"]) for c in webhook.calls)
    assert keys == sorted((p, t) for p in (SECRET_PATH, "/globex") for t in (50, 80, 100))


async def test_a_claim_left_by_a_dead_replica_is_taken_over_after_its_lease(
    pool: Any, acme: Organization, webhook: Webhook, check: Check, clock: Clock
) -> None:
    await set_budget(pool, acme, webhook)
    await spend(pool, acme.id, "30", MARCH)
    dead = await budgets.claim_thresholds(
        pool, acme.id, MARCH_MONTH, [50], now=MARCH, lease_seconds=FAST.lease_seconds
    )
    assert dead is not None  # ...and that replica never reports back

    await check()
    assert webhook.calls == []
    clock.advance(seconds=FAST.lease_seconds)
    await check()
    await check()
    assert len(webhook.calls) == 1
    # The dead replica waking up cannot turn the delivery back into a failure.
    assert await budgets.mark_failed(pool, dead, attempts=1, error="x", next_attempt_at=None) == 0
    assert await statuses(pool, acme) == {50: "delivered"}


async def test_shutting_down_mid_delivery_hands_the_claim_back(
    pool: Any, acme: Organization, webhook: Webhook, check: Check
) -> None:
    await set_budget(pool, acme, webhook)
    await spend(pool, acme.id, "30", MARCH)
    webhook.hold = asyncio.Event()
    task = asyncio.create_task(check())
    for _ in range(200):
        if webhook.calls:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    released = await delivery(pool, acme, 50)
    assert (released.status, released.next_attempt_at) == ("failed", MARCH)

    webhook.hold.set()
    webhook.hold = None
    await check()
    assert len(webhook.calls) == 2 and await statuses(pool, acme) == {50: "delivered"}


async def test_only_organizations_over_a_threshold_hear_anything(
    pool: Any, acme: Organization, webhook: Webhook, check: Check
) -> None:
    globex = await create_organization(pool, "Globex", slug="globex")
    initech = await create_organization(pool, "Initech", slug="initech")
    await set_budget(pool, acme, webhook, limit="100")
    await set_budget(pool, globex, webhook, limit="10", url=webhook.url("/globex"))
    await spend(pool, acme.id, "20", MARCH)  # 20%
    await spend(pool, globex.id, "6", MARCH)  # 60%
    await spend(pool, initech.id, "1000", MARCH)  # no budget

    result = await check()

    assert result.budgets_checked == 2
    assert [(c.path, c.body["organization"]) for c in webhook.calls] == [("/globex", "globex")]


async def test_a_removed_budget_stops_alerts(
    pool: Any, acme: Organization, webhook: Webhook, check: Check
) -> None:
    await set_budget(pool, acme, webhook)
    assert await budgets.delete_budget(pool, acme.id)
    await spend(pool, acme.id, "300", MARCH)
    assert (await check()).budgets_checked == 0
    assert webhook.calls == []


async def test_a_webhook_that_never_answers_times_out_and_fails_the_round(
    pool: Any, acme: Organization, webhook: Webhook, check: Check
) -> None:
    await set_budget(pool, acme, webhook)
    await spend(pool, acme.id, "30", MARCH)
    webhook.hold = asyncio.Event()  # released at teardown

    result = await check(policy=replace(FAST, timeout_seconds=0.2, max_attempts=2))

    assert len(result.failed) == 1 and len(webhook.calls) == 2
    failed = await delivery(pool, acme, 50)
    assert (failed.status, failed.last_error) == ("failed", "timed out after 0.2s")
    assert failed.next_attempt_at == MARCH + timedelta(seconds=60)


async def test_a_redirecting_webhook_is_not_followed(
    pool: Any, acme: Organization, webhook: Webhook, check: Check
) -> None:
    await set_budget(pool, acme, webhook)
    await spend(pool, acme.id, "30", MARCH)
    webhook.fail(1, status=301, text="", Location=webhook.url("/elsewhere"))

    await check()

    assert [c.path for c in webhook.calls] == [SECRET_PATH]
    failed = await delivery(pool, acme, 50)
    assert failed.status == "failed" and failed.next_attempt_at is None
    assert failed.last_error == "HTTP 301 (redirects are not followed: set the final URL)"


async def test_budgets_of_a_tag_value_and_of_a_user_alert_on_their_own_spend(
    pool: Any, acme: Organization, webhook: Webhook, check: Check
) -> None:
    from aethermind.storage.tenants import set_tag_keys

    search = budgets.BudgetScope("tag.team", "search")
    alice = budgets.BudgetScope("user", "alice")
    with pytest.raises(ValueError, match="not one of the organization's tag keys"):
        await set_budget(pool, acme, webhook, limit="10", scope=search)
    await set_tag_keys(pool, acme.id, ["team"])
    await set_budget(pool, acme, webhook, limit="1000")  # the organization's: not crossed
    await set_budget(pool, acme, webhook, limit="10", scope=search)
    await set_budget(pool, acme, webhook, limit="20", scope=alice)
    when = MARCH - timedelta(days=3)
    await spend(pool, acme.id, "6", when, user="alice", tags={"team": "search"})
    await spend(pool, acme.id, "40", when, user="bob", tags={"team": "ads"})  # neither's
    await spend(pool, acme.id, "6", when, user="bob", tags={"team": "search"})

    await check()

    by_scope = {call.body["scope"]["dimension"]: call.body for call in webhook.calls}
    assert set(by_scope) == {"tag.team"}  # alice spent 6 of 20: under her first threshold
    body = by_scope["tag.team"]
    assert body["text"] == (
        "Aethermind: tag.team=search in organization acme has used 120% ($12.00) of its"
        " $10.00 monthly LLM budget (threshold 100%)"
    )
    assert body["alert_id"] == f"{acme.id}:tag.team=search:2025-03:100"
    assert body["scope"] == {"dimension": "tag.team", "value": "search"}
    # The organization's own budget and alice's have their own deliveries: none yet.
    assert await budgets.list_deliveries(pool, acme.id, MARCH_MONTH) == []
    assert await budgets.list_deliveries(pool, acme.id, MARCH_MONTH, scope=alice) == []

    await spend(pool, acme.id, "5", when, user="alice", tags={"team": "ads"})
    await check()
    assert webhook.calls[-1].body["scope"] == {"dimension": "user", "value": "alice"}
    assert webhook.calls[-1].body["threshold"] == 50  # 11 of 20
    report = await budgets.budget_report(pool, acme.id, "acme", scope=alice, now=MARCH)
    assert report is not None and report.usage.cost_usd == Decimal(11)


async def test_an_organization_has_a_bounded_number_of_budgets(
    pool: Any, acme: Organization, webhook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(budgets, "MAX_BUDGETS", 2)
    await set_budget(pool, acme, webhook)
    await set_budget(pool, acme, webhook, scope=budgets.BudgetScope("user", "alice"))
    with pytest.raises(ValueError, match="at most 2 budgets"):
        await set_budget(pool, acme, webhook, scope=budgets.BudgetScope("user", "bob"))
    # Changing one that exists is not a new one.
    await set_budget(pool, acme, webhook, limit="70", scope=budgets.BudgetScope("user", "alice"))
    with pytest.raises(ValueError, match="dimension and a value"):
        budgets.BudgetScope("user", "")
    with pytest.raises(ValueError, match="not 'model'"):
        budgets.BudgetScope("model", "gpt-4o")
