"""Which span times are accepted: from the organization's retention back to a little ahead.

Every month a span falls in is a partition of the shared events table, and creating one
locks that table for every tenant; a month past retention is deleted at the next retention
pass anyway, and a month far ahead would never be. So a span (or reported call) whose start
lies outside the window is rejected, reported back through ``partial_success``, and never
creates a partition: the number of months any tenant can make exist is bounded by the window.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

NANOS_PER_SECOND = 1_000_000_000
SECONDS_PER_DAY = 86_400

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_MICROS = SECONDS_PER_DAY * 1_000_000

DEFAULT_MAX_FUTURE_SECONDS = 86_400.0
"""How far ahead of the receiver's clock a span may start: a day absorbs any clock skew."""


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Accepted start times, in Unix nanoseconds, both ends included."""

    earliest_unix_nano: int
    latest_unix_nano: int
    max_age_days: int
    max_future_seconds: float

    def admits(self, start_unix_nano: int) -> bool:
        return self.earliest_unix_nano <= start_unix_nano <= self.latest_unix_nano

    def stored_range(self) -> tuple[datetime, datetime]:
        """[since, until) holding every span this window's organization can have stored:
        retention floors its cutoff to the UTC day, so a day more on the old side. Lookups
        bounded by it touch only the partitions the spans can be in."""
        since = _EPOCH + timedelta(microseconds=self.earliest_unix_nano // 1000 - _DAY_MICROS)
        until = _EPOCH + timedelta(microseconds=self.latest_unix_nano // 1000 + 1)
        return since, until

    def reason(self, rejected: int, *, what: str = "span(s) start") -> str:
        """The ``partial_success`` message for ``rejected`` spans (or ``what``) outside
        the window."""
        return (
            f"{rejected} {what} outside the accepted time window (at most"
            f" {self.max_age_days} days old, the organization's retention, and at most"
            f" {self.max_future_seconds:g} s ahead of the receiver's clock)"
        )


def span_time_window(
    *,
    retention_days: int,
    max_age_days: int = 0,
    max_future_seconds: float = DEFAULT_MAX_FUTURE_SECONDS,
    now_unix_nano: int | None = None,
) -> TimeWindow:
    """The window for an organization keeping ``retention_days``; ``max_age_days`` (when > 0)
    shortens it further, never lengthens it: older spans would be deleted by retention."""
    now = time.time_ns() if now_unix_nano is None else now_unix_nano
    age_days = min(retention_days, max_age_days) if max_age_days > 0 else retention_days
    return TimeWindow(
        earliest_unix_nano=now - age_days * SECONDS_PER_DAY * NANOS_PER_SECOND,
        latest_unix_nano=now + int(max_future_seconds * NANOS_PER_SECOND),
        max_age_days=age_days,
        max_future_seconds=max_future_seconds,
    )
