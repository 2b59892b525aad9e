"""Metric usage in storage: cumulative series counted by their increase (resets included),
re-delivered points once, spans winning per service and UTC day, metric usage lifting a
group into the top N, retention, and one organization never seeing another's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aethermind.storage.metric_usage import MetricUsageRow, write_metric_usage
from aethermind.storage.queries import aggregates
from aethermind.storage.retention import apply_retention
from aethermind.storage.writer import write_rows
from tests.storage.factories import create_org, make_rows

DAY = datetime(2025, 3, 12, tzinfo=UTC)
PRICE = Decimal("0.000003")


def point(
    minute: int,
    value: float,
    *,
    series: str = "s1",
    start_minute: int = 0,
    cumulative: bool = True,
    measure: str = "input_tokens",
    service: str = "agent",
    model: str = "m1",
    user: str | None = "dev@acme.test",
    day: datetime = DAY,
) -> MetricUsageRow:
    return MetricUsageRow(
        series=series,
        start_time=day + timedelta(minutes=start_minute),
        time=day + timedelta(minutes=minute),
        cumulative=cumulative,
        measure=measure,
        value=value,
        unit_price=PRICE if measure.endswith("_tokens") else None,
        service=service,
        provider="anthropic",
        model=model,
        user_id=user,
        session_id="s-1",
    )


async def totals(pool: Any, org: Any, **kwargs: Any) -> list[dict[str, Any]]:
    return await aggregates(pool, org, DAY, DAY + timedelta(days=1), **kwargs)


async def test_cumulative_points_count_their_increase_and_a_reset_starts_over(pool: Any) -> None:
    org = await create_org(pool, "acme")
    points = [point(1, 100), point(2, 250), point(3, 40), point(4, 90)]  # a reset at 3
    points += [point(5, 1000, start_minute=5), point(6, 1500, start_minute=5)]  # new start
    points += [point(7, 7, cumulative=False, series="d"), point(8, 5, cumulative=False, series="d")]
    assert await write_metric_usage(pool, org, points) == len(points)
    assert await write_metric_usage(pool, org, points) == 0  # re-delivered: stored once
    [row] = await totals(pool, org)
    assert row["input_tokens"] == 250 + 90 + 1500 + 12
    assert row["total_tokens"] == row["input_tokens"]
    assert row["cost_usd"] == Decimal(row["input_tokens"]) * PRICE
    assert row["calls"] == 0 and row["latency_ms"] == {"p50": None, "p95": None, "p99": None}
    # Buckets: each point's increase in the minute it was taken.
    by_minute = await totals(pool, org, granularity="minute")
    assert [r["input_tokens"] for r in by_minute] == [100, 150, 40, 50, 1000, 500, 7, 5]
    # A range that starts inside a series counts its first point from the point before it.
    [late] = await aggregates(pool, org, DAY + timedelta(minutes=2), DAY + timedelta(days=1))
    assert late["input_tokens"] == 150 + 40 + 50 + 1500 + 12


async def test_spans_win_per_service_and_utc_day(pool: Any) -> None:
    org = await create_org(pool, "acme")
    spans = make_rows(1, start=DAY + timedelta(hours=5))
    span_day = spans[0].timestamp.replace(hour=0, minute=0, second=0, microsecond=0)
    service = spans[0].service or ""
    await write_rows(pool, org, spans[:1])
    await write_metric_usage(pool, org, [
        point(10, 500, service=service, day=span_day, series="same-service"),
        point(11, 70, service="metrics-only", day=span_day, series="other"),
        point(12, 30, service=service, day=span_day + timedelta(days=1), series="next-day"),
    ])  # fmt: skip
    rows = await aggregates(pool, org, span_day, span_day + timedelta(days=2), group_by=["service"])
    by_service = {r["service"]: r for r in rows}
    assert by_service[service]["input_tokens"] == (spans[0].input_tokens or 0) + 30
    assert by_service["metrics-only"]["input_tokens"] == 70
    assert by_service["metrics-only"]["calls"] == 0


async def test_metric_usage_joins_groups_filters_and_the_top_n(pool: Any) -> None:
    org = await create_org(pool, "acme")
    await write_metric_usage(pool, org, [
        point(1, 10, model="small", series="a", cumulative=False),
        point(1, 9000, model="big", series="b", cumulative=False),
        point(1, 300, model="small", series="c", cumulative=False, measure="output_tokens"),
        point(2, 2, model="small", series="e", cumulative=False, measure="failed_calls"),
    ])  # fmt: skip
    [top] = await totals(pool, org, group_by=["model"], order_by="total_tokens", limit=1)
    assert (top["model"], top["total_tokens"]) == ("big", 9000)
    small = (await totals(pool, org, group_by=["model"], filters={"model": "small"}))[0]
    assert (small["input_tokens"], small["output_tokens"]) == (10, 300)
    assert (small["calls"], small["errors"]) == (2, 2)
    [who] = await totals(pool, org, group_by=["user", "agent"])
    assert (who["user"], who["agent"]) == ("dev@acme.test", None)
    assert await totals(pool, org, filters={"agent": "x"}) == []


async def test_retention_and_isolation(pool: Any) -> None:
    org = await create_org(pool, "acme")
    other = await create_org(pool, "other")
    await write_metric_usage(pool, org, [point(1, 10, cumulative=False)])
    await write_metric_usage(pool, other, [point(1, 99, cumulative=False)])
    [mine] = await totals(pool, org)
    assert mine["input_tokens"] == 10
    await apply_retention(pool, now=DAY + timedelta(days=400))
    assert await totals(pool, org) == [] and await totals(pool, other) == []


async def test_budgets_count_usage_reported_only_as_metrics(pool: Any) -> None:
    """A coding agent that sends only metrics spends against the organization's budget and
    its user's, on the organization's cost basis; a service's metrics on a day it also sent
    spans are not counted twice; a tag's budget is its spans' (metrics carry no tags)."""
    from datetime import date

    from aethermind.storage.budgets import BudgetScope, month_to_date
    from aethermind.storage.cost_basis import set_cost_basis

    org = await create_org(pool, "acme")
    month = date(DAY.year, DAY.month, 1)
    spans = make_rows(1, start=DAY + timedelta(hours=5))
    await write_rows(pool, org, spans)
    spans_only = {}
    for basis in ("provided", "computed"):
        await set_cost_basis(pool, org, basis)
        spans_only[basis] = (await month_to_date(pool, org, month)).cost_usd
    await write_metric_usage(pool, org, [
        point(10, 1000, series="tokens", cumulative=False, service="claude-code"),
        point(11, 4, series="calls", cumulative=False, measure="calls", service="claude-code"),
        point(12, 0.01, series="cost", cumulative=False, measure="provided_cost",
              service="claude-code"),
        point(13, 5000, series="twice", cumulative=False, service=spans[0].service or ""),
    ])  # fmt: skip
    metric_cost = 1000 * PRICE
    whole = await month_to_date(pool, org, month)
    assert whole.cost_usd == spans_only["computed"] + metric_cost
    assert whole.calls == 1 + 4
    dev = await month_to_date(pool, org, month, scope=BudgetScope("user", "dev@acme.test"))
    assert (dev.cost_usd, dev.calls) == (metric_cost, 4)
    tagged = await month_to_date(pool, org, month, scope=BudgetScope("tag.team", "x"))
    assert tagged.cost_usd == 0
    await set_cost_basis(pool, org, "provided")
    reported = (await month_to_date(pool, org, month)).cost_usd
    assert reported == spans_only["provided"] + Decimal("0.01")
    # The aggregates agree, and keep our own cost of both beside the reported basis.
    [row] = await totals(pool, org)
    assert row["cost_usd"] == reported
    assert row["computed_cost_usd"] == spans_only["computed"] + metric_cost
