"""Aggregates (rollup and raw agree), trace views, top traces, operator usage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from aethermind.storage.histogram import LATENCY_BOUNDS_MS
from aethermind.storage.queries import aggregates, organization_usage, top_traces, trace_spans
from aethermind.storage.writer import write_rows
from tests.storage.factories import create_org, make_rows

FROM = datetime(2025, 3, 10, 0, tzinfo=UTC)
TO = datetime(2025, 3, 20, 0, tzinfo=UTC)
EVER = datetime(2000, 1, 1, tzinfo=UTC)
NEVER = datetime(2100, 1, 1, tzinfo=UTC)
MEASURES = (
    "calls", "errors", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "reasoning_tokens", "total_tokens", "cost_usd", "unpriced_calls",
    "provided_cost_usd", "cost_breakdown_usd", "saved_by_caching_usd",
)  # fmt: skip


def assert_same(
    rollup: list[dict[str, Any]], raw: list[dict[str, Any]], keys: tuple[str, ...]
) -> None:
    assert len(rollup) == len(raw) > 0
    for r, w in zip(rollup, raw, strict=True):
        for key in keys:
            assert r[key] == w[key], key
        for measure in MEASURES:
            assert r[measure] == w[measure], (measure, r, w)
        for name in ("p50", "p95", "p99"):
            exact, estimate = w["latency_ms"][name], r["latency_ms"][name]
            assert (exact is None) == (estimate is None)
            if exact is None or r["calls"] < 50:
                continue  # a histogram cannot see the gaps between a few spans
            # With enough spans the estimate lands in the exact value's bucket or a neighbour.
            index = _bucket_index(exact)
            lower = LATENCY_BOUNDS_MS[index - 2] if index >= 2 else 0.0
            upper = (
                LATENCY_BOUNDS_MS[index + 1] if index + 1 < len(LATENCY_BOUNDS_MS) else float("inf")
            )
            assert lower <= estimate <= upper, (name, exact, estimate)


def _bucket_index(value: float) -> int:
    return sum(1 for bound in LATENCY_BOUNDS_MS if value >= bound)


@pytest.mark.parametrize(
    ("group_by", "granularity"),
    [
        ((), None), (("provider", "model"), None), (("service",), "day"),
        (("provider", "environment"), "hour"), (("model", "operation"), "week"), ((), "month"),
    ],
)  # fmt: skip
async def test_aggregates_from_the_rollup_equal_aggregates_from_raw_rows(
    pool: Any, group_by: tuple[str, ...], granularity: str | None
) -> None:
    org = await create_org(pool, "acme")
    rows = make_rows(900, spacing=timedelta(minutes=13))
    await write_rows(pool, org, rows[:500])
    await write_rows(pool, org, rows[300:])  # duplicates on purpose
    kwargs: dict[str, Any] = {"group_by": group_by, "granularity": granularity}
    rollup = await aggregates(pool, org, FROM, TO, source="rollup", **kwargs)
    raw = await aggregates(pool, org, FROM, TO, source="raw", **kwargs)
    assert_same(rollup, raw, group_by + (("bucket",) if granularity else ()))
    assert sum(r["calls"] for r in rollup) == sum(1 for r in rows if FROM <= r.timestamp < TO)


async def test_aggregate_rows_have_the_contract_shape(pool: Any) -> None:
    org = await create_org(pool, "acme")
    rows = make_rows(40, spacing=timedelta(minutes=5))
    await write_rows(pool, org, rows)
    result = await aggregates(pool, org, FROM, TO, group_by=["provider", "model"])
    assert {tuple(sorted(r)) for r in result} == {
        tuple(sorted(["provider", "model", *MEASURES, "latency_ms"]))
    }
    mystery = [r for r in result if r["provider"] == "mystery"]
    assert mystery and all(
        r["cost_usd"] is None and r["unpriced_calls"] == r["calls"] for r in mystery
    )
    priced = [r for r in result if r["provider"] == "openai"]
    assert all(isinstance(r["cost_usd"], Decimal) and r["unpriced_calls"] == 0 for r in priced)
    # model is the response model when the span has one, else the request model.
    assert {r["model"] for r in result} >= {"gpt-4o", "gpt-4o-mini-2025"}
    assert set(result[0]["latency_ms"]) == {"p50", "p95", "p99"}


async def test_unaligned_ranges_and_minute_buckets_use_raw_rows(pool: Any) -> None:
    org = await create_org(pool, "acme")
    await write_rows(pool, org, make_rows(50, spacing=timedelta(minutes=1)))
    start = datetime(2025, 3, 10, 12, 10, tzinfo=UTC)
    result = await aggregates(pool, org, start, start + timedelta(minutes=20), granularity="minute")
    assert len(result) == 20 and all(r["calls"] == 1 for r in result)
    assert result[0]["bucket"] == start
    with pytest.raises(ValueError, match="rollup"):
        await aggregates(pool, org, start, TO, source="rollup")


@pytest.mark.parametrize("granularity", [None, "hour", "day"])
async def test_unaligned_ranges_combine_rollup_hours_with_raw_edges_exactly(
    pool: Any, granularity: str | None
) -> None:
    org = await create_org(pool, "acme")
    await write_rows(pool, org, make_rows(900, spacing=timedelta(minutes=7)))
    # Raw partial hours at both ends, hourly rows around whole days, daily rows inside.
    start = datetime(2025, 3, 10, 12, 37, 30, tzinfo=UTC)
    end = datetime(2025, 3, 14, 9, 13, tzinfo=UTC)
    kwargs: dict[str, Any] = {"group_by": ("provider", "service"), "granularity": granularity}
    hybrid = await aggregates(pool, org, start, end, **kwargs)
    raw = await aggregates(pool, org, start, end, source="raw", **kwargs)
    assert_same(hybrid, raw, ("provider", "service", *(("bucket",) if granularity else ())))


async def test_filters_narrow_both_paths_alike(pool: Any) -> None:
    org = await create_org(pool, "acme")
    await write_rows(pool, org, make_rows(200, spacing=timedelta(minutes=9)))
    filters = {"provider": "openai", "service": "search"}
    rollup = await aggregates(
        pool, org, FROM, TO, group_by=["model"], filters=filters, source="rollup"
    )
    raw = await aggregates(pool, org, FROM, TO, group_by=["model"], filters=filters, source="raw")
    assert_same(rollup, raw, ("model",))
    assert {r["model"] for r in rollup} <= {
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4o-2025",
        "gpt-4o-mini-2025",
    }


async def test_bad_arguments_are_rejected_with_the_setting_named(pool: Any) -> None:
    org = await create_org(pool, "acme")
    with pytest.raises(ValueError, match="group by"):
        await aggregates(pool, org, FROM, TO, group_by=["cost"])
    with pytest.raises(ValueError, match="granularity"):
        await aggregates(pool, org, FROM, TO, granularity="year")
    with pytest.raises(ValueError, match="'to'"):
        await aggregates(pool, org, TO, FROM)
    with pytest.raises(ValueError, match="timezone"):
        await aggregates(pool, org, FROM.replace(tzinfo=None), TO)


async def test_a_trace_shows_only_its_organizations_spans_in_order(pool: Any) -> None:
    a = await create_org(pool, "org-a")
    b = await create_org(pool, "org-b")
    rows = make_rows(6)
    await write_rows(pool, a, rows)
    await write_rows(pool, b, make_rows(3, seed=9))
    spans = await trace_spans(pool, a, rows[2].trace_id, since=EVER, until=NEVER)
    assert [s["span_id"] for s in spans] == [rows[2].span_id]
    assert spans[0]["cost_usd"] == rows[2].cost and spans[0]["status"] == rows[2].status
    assert await trace_spans(pool, b, rows[2].trace_id, since=EVER, until=NEVER) == []
    later = rows[2].timestamp + timedelta(seconds=1)
    assert await trace_spans(pool, a, rows[2].trace_id, since=later, until=NEVER) == []


async def test_top_traces_are_ordered_by_cost(pool: Any) -> None:
    org = await create_org(pool, "acme")
    rows = make_rows(30)
    await write_rows(pool, org, rows)
    top = await top_traces(pool, org, FROM, TO, limit=3)
    costs = [t["cost_usd"] for t in top]
    assert costs == sorted(costs, reverse=True) and len(top) == 3
    assert costs[0] == max(r.cost for r in rows if r.cost is not None)


async def test_operators_see_usage_per_organization(pool: Any) -> None:
    a = await create_org(pool, "org-a")
    await create_org(pool, "org-b")
    rows = make_rows(20)
    await write_rows(pool, a, rows)
    usage = {u["slug"]: u for u in await organization_usage(pool, FROM, TO)}
    assert usage["org-a"]["calls"] == 20
    assert usage["org-a"]["cost_usd"] == sum(
        (r.cost for r in rows if r.cost is not None), Decimal(0)
    )
    assert usage["org-b"]["calls"] == 0 and usage["org-b"]["cost_usd"] is None


async def test_an_empty_whole_day_is_no_rows_not_an_error(pool: Any) -> None:
    from aethermind.storage.tenants import create_organization

    org = await create_organization(pool, "Empty", slug="empty")
    day = datetime(2020, 1, 1, tzinfo=UTC)
    for group_by in ((), ("model",)):
        assert await aggregates(pool, org.id, day, day + timedelta(days=1), group_by=group_by) == []
