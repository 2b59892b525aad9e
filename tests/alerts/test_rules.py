"""The pure rules behind budget alerts: thresholds, money and percent in the message, retry
timing, Retry-After, URL handling, months, and the receiver's alert settings."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime
from decimal import Decimal
from uuid import UUID

import pytest

from aethermind.receiver.alerts import Alert, RetryPolicy, parse_retry_after
from aethermind.receiver.config import ReceiverConfig, ReceiverConfigError
from aethermind.storage.budgets import (
    crossed_thresholds,
    month_bounds,
    month_of,
    parse_thresholds,
    redact_url,
    validate_webhook_url,
    webhook_host,
)

SLACK = "https://hooks.slack.com/services/T000/B000/s3cr3tXXXXXXXX"
ORG = UUID("00000000-0000-4000-8000-000000000001")


def alert(cost: str, limit: str, thresholds: tuple[int, ...] = (80,)) -> Alert:
    return Alert(ORG, "acme", date(2025, 3, 1), thresholds, Decimal(cost), Decimal(limit))


def test_the_message_reads_as_the_issue_asks() -> None:
    assert alert("41.23", "50").text() == (
        "Aethermind: organization acme has used 82% ($41.23) of its $50.00 monthly LLM budget"
        " (threshold 80%)"
    )


def test_the_percent_never_says_more_than_was_spent() -> None:
    # 79.999%: "79%", never "80%"; cents rounded down the same way; thousands separated.
    assert "used 79% ($39.99)" in alert("39.9995", "50", (50,)).text()
    assert alert("39.9995", "50", (50,)).body()["percent_used"] == "79.99"
    assert "($12,345.67) of its $10,000.00" in alert("12345.675", "10000", (100,)).text()


def test_the_body_names_the_highest_threshold_and_lists_them_all() -> None:
    body = alert("90", "100", (50, 80)).body()
    assert (body["threshold"], body["thresholds"], body["alert_id"]) == (
        80,
        [50, 80],
        f"{ORG}:2025-03:80",
    )


def test_a_threshold_is_reached_at_exactly_its_amount() -> None:
    assert crossed_thresholds(Decimal("24.99"), Decimal(50), (50, 80)) == []
    assert crossed_thresholds(Decimal("25"), Decimal(50), (80, 50)) == [50]
    assert crossed_thresholds(Decimal("0.0000001"), Decimal("0.0000001"), (100, 150)) == [100]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("50,80,100", (50, 80, 100)), (" 100, 50 ,50", (50, 100)), ("90%", (90,)), ("150", (150,))],
)
def test_thresholds_parse_sorted_and_without_repeats(text: str, expected: tuple[int, ...]) -> None:
    assert parse_thresholds(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("50,abc", "comma-separated list of whole percentages"),
        ("50.5", "whole percentages"),
        ("", "whole percentages"),
        ("0,50", "between 1 and 1000"),
        ("5000", "between 1 and 1000"),
        (",".join(str(i) for i in range(1, 30)), "at most 20"),
    ],
)
def test_bad_thresholds_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_thresholds(text)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://hooks.slack.com/s3cr3t", "must start with https://"),
        ("hooks.slack.com/s3cr3t", "must start with https://"),
        ("https:///s3cr3t", "no host"),
        ("https://hooks.slack.com:99999/s3cr3t", "malformed"),
        ("https://hooks.slack.com/a b/s3cr3t", "spaces"),
    ],
)
def test_bad_webhook_urls_are_refused_without_repeating_them(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        validate_webhook_url(url)
    assert "s3cr3t" not in str(raised.value)


def test_only_the_host_of_a_webhook_is_ever_shown() -> None:
    assert validate_webhook_url(f"  {SLACK} ") == SLACK
    assert webhook_host(SLACK) == "hooks.slack.com"
    assert redact_url(SLACK) == "https://hooks.slack.com/***"
    assert redact_url("http://127.0.0.1:8080/x?token=s3cr3t") == "http://127.0.0.1:8080/***"


def test_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    policy = RetryPolicy(backoff_base_seconds=1, backoff_max_seconds=30)
    rng = random.Random(1)
    for attempt, ceiling in ((1, 1), (2, 2), (3, 4), (5, 16), (6, 30), (10_000, 30)):
        pauses = [policy.backoff(attempt, rng) for _ in range(50)]
        assert all(ceiling / 2 <= p <= ceiling for p in pauses), attempt
        assert len(set(pauses)) > 1  # jittered


def test_failed_rounds_wait_longer_each_time_up_to_an_hour() -> None:
    policy = RetryPolicy(failed_retry_seconds=300)
    assert [policy.round_pause(r) for r in (1, 2, 3, 4, 5, 6, 10_000)] == [
        300, 600, 1200, 2400, 3600, 3600, 3600,
    ]  # fmt: skip


def test_a_lease_outlasts_the_longest_possible_round() -> None:
    policy = RetryPolicy(max_attempts=5, timeout_seconds=10, backoff_max_seconds=30)
    assert policy.lease_seconds > 5 * 10 + 4 * 30


def test_retry_policy_rejects_impossible_values() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="timeout_seconds"):
        RetryPolicy(timeout_seconds=0)


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    now = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after("Mon, 10 Mar 2025 12:01:30 GMT", now) == 90
    assert parse_retry_after("Mon, 10 Mar 2025 11:00:00 GMT", now) == 0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_months_are_utc_calendar_months() -> None:
    assert month_of(datetime(2025, 12, 31, 23, 30, tzinfo=UTC)) == date(2025, 12, 1)
    assert month_bounds(date(2025, 12, 1)) == (
        datetime(2025, 12, 1, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        month_of(datetime(2025, 3, 1))


def test_alert_settings_come_from_the_environment() -> None:
    config = ReceiverConfig.from_env(
        {
            "AETHERMIND_ALERT_CHECK_SECONDS": "5",
            "AETHERMIND_ALERT_WEBHOOK_TIMEOUT_SECONDS": "2.5",
            "AETHERMIND_ALERT_WEBHOOK_MAX_ATTEMPTS": "7",
            "AETHERMIND_ALERT_RETRY_FAILED_SECONDS": "60",
        }
    )
    assert (
        config.alert_check_seconds,
        config.alert_webhook_timeout_seconds,
        config.alert_webhook_max_attempts,
        config.alert_retry_failed_seconds,
    ) == (5, 2.5, 7, 60)
    policy = RetryPolicy.from_config(config)
    assert (policy.max_attempts, policy.timeout_seconds, policy.failed_retry_seconds) == (
        7,
        2.5,
        60,
    )
    defaults = ReceiverConfig.from_env({})
    assert (defaults.alert_check_seconds, defaults.alert_webhook_max_attempts) == (30, 5)


def test_bad_alert_settings_name_the_setting() -> None:
    with pytest.raises(ReceiverConfigError, match="AETHERMIND_ALERT_CHECK_SECONDS"):
        ReceiverConfig.from_env({"AETHERMIND_ALERT_CHECK_SECONDS": "often"})
    with pytest.raises(ReceiverConfigError, match="alert_webhook_max_attempts"):
        ReceiverConfig.from_env({"AETHERMIND_ALERT_WEBHOOK_MAX_ATTEMPTS": "0"})
    with pytest.raises(ReceiverConfigError, match="alert_check_seconds"):
        ReceiverConfig(alert_check_seconds=-1)
    assert ReceiverConfig(alert_check_seconds=0).alert_check_seconds == 0  # off
