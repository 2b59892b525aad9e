"""Repricing, retention and price overrides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from aethermind.semconv import default_price_book
from aethermind.semconv.record import UNKNOWN_COST, Cost, UsageRecord
from aethermind.storage.prices import create_price, delete_price, list_prices, update_price
from aethermind.storage.queries import aggregates
from aethermind.storage.reprice import reprice
from aethermind.storage.retention import apply_retention
from aethermind.storage.scope import tenant_transaction
from aethermind.storage.span_row import row_from_usage
from aethermind.storage.writer import ensure_partitions, write_rows
from tests.storage.factories import create_org, make_rows, owner_fetch
from tests.storage.test_writer import rollup_mismatches

FROM = datetime(2025, 3, 10, tzinfo=UTC)
TO = datetime(2025, 3, 20, tzinfo=UTC)


def flat_price(record: UsageRecord, when: datetime) -> Cost:
    """A price list where every model but 'gpt-4o-mini' costs 1 µUSD per token."""
    if record.request_model == "gpt-4o-mini":
        return UNKNOWN_COST
    tokens = (record.input_tokens or 0) + (record.output_tokens or 0)
    total = Decimal(tokens) * Decimal("0.000001")
    return Cost(
        source="computed", total=total, input=total, output=Decimal(0), price_model_id="flat"
    )


async def test_repricing_updates_costs_and_keeps_the_rollup_consistent(pool: Any) -> None:
    org = await create_org(pool, "acme")
    other = await create_org(pool, "other")
    rows = make_rows(500, spacing=timedelta(minutes=11))
    await write_rows(pool, org, rows)
    await write_rows(pool, other, rows[:50])
    seen: list[tuple[int, int]] = []
    result = await reprice(
        pool, org, FROM, TO, flat_price, batch_size=64, progress=lambda d, t: seen.append((d, t))
    )
    in_range = [r for r in rows if FROM <= r.timestamp < TO]
    assert result.examined == len(in_range) and seen[-1] == (len(in_range), len(in_range))
    assert result.changed > 0
    assert await rollup_mismatches(pool) == 0
    expected = sum(
        (Decimal(r.input_tokens or 0) + Decimal(r.output_tokens or 0)) * Decimal("0.000001")
        for r in in_range
        if r.request_model != "gpt-4o-mini"
    )
    [summary] = await aggregates(pool, org, FROM, TO, source="rollup")
    assert summary["cost_usd"] == expected
    assert summary["unpriced_calls"] == sum(1 for r in in_range if r.request_model == "gpt-4o-mini")
    # Idempotent: a second pass changes nothing. The other organization is untouched.
    assert (await reprice(pool, org, FROM, TO, flat_price)).changed == 0
    async with tenant_transaction(pool, other) as conn:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM telemetry_events WHERE price_model_id = 'flat'"
            )
            == 0
        )


async def test_repricing_keeps_units_reported_costs_and_their_rollups(pool: Any) -> None:
    """Spans with audio tokens, web searches, a tool's own cost and a reported cost, stored
    as the receiver prices them: repricing at the same prices changes nothing, at other
    prices moves every line and ``cost_of_provided`` with the cost."""
    org = await create_org(pool, "acme")
    book = default_price_book()
    when = FROM + timedelta(hours=3)
    records = [
        UsageRecord(provider="openai", operation="chat", request_model="gpt-audio",
                    input_tokens=1200, output_tokens=300,
                    units={"input_audio_tokens": 700, "output_audio_tokens": 200}),
        UsageRecord(provider="anthropic", operation="chat", request_model="claude-sonnet-4-5",
                    input_tokens=3400, cache_read_tokens=2000, output_tokens=250,
                    units={"web_searches": 3}, provided_cost=Decimal("0.05")),
        UsageRecord(operation="execute_tool", is_llm_call=False, provided_cost=Decimal("0.25")),
    ]  # fmt: skip
    rows = [
        row_from_usage(
            record, book.price(record, int(when.timestamp()) * 10**9),
            trace_id=f"{i:032x}", span_id=f"{i:016x}", name="call", timestamp=when,
        )
        for i, record in enumerate(records, start=1)
    ]  # fmt: skip
    await write_rows(pool, org, rows)
    [before] = await aggregates(pool, org, FROM, TO, source="rollup")
    assert before["cost_breakdown_usd"]["other"] == Decimal("0.25")
    assert before["cost_breakdown_usd"]["modality"] > 0 and before["cost_breakdown_usd"]["fees"]

    def at_list_prices(record: UsageRecord, start: datetime) -> Cost:
        return book.price(record, int(start.timestamp()) * 10**9)

    assert (await reprice(pool, org, FROM, TO, at_list_prices)).changed == 0
    assert (await reprice(pool, org, FROM, TO, flat_price)).changed == 3
    assert await rollup_mismatches(pool) == 0
    [after] = await aggregates(pool, org, FROM, TO, source="rollup")
    assert after["cost_breakdown_usd"]["modality"] == 0
    assert (await reprice(pool, org, FROM, TO, at_list_prices)).changed == 3
    assert await rollup_mismatches(pool) == 0
    [again] = await aggregates(pool, org, FROM, TO, source="rollup")
    assert again == before


async def test_retention_deletes_each_organizations_old_spans_and_drops_old_partitions(
    pool: Any,
) -> None:
    now = datetime(2025, 6, 15, 10, 30, tzinfo=UTC)
    short = await create_org(pool, "short", retention_days=30)
    long = await create_org(pool, "long", retention_days=90)
    # Spans every 12 hours from January to mid June.
    rows = make_rows(330, start=datetime(2025, 1, 1, tzinfo=UTC), spacing=timedelta(hours=12))
    await ensure_partitions(pool, [r.timestamp for r in rows], max_new=12)
    await write_rows(pool, short, rows)
    await write_rows(pool, long, rows)

    result = await apply_retention(pool, now=now)

    # Partitions entirely older than the longest retention (90 days: before 2025-03-17)
    # are dropped: January and February.
    assert sorted(result.dropped_partitions) == [
        "telemetry_events_p202501",
        "telemetry_events_p202502",
    ]
    for org, days in ((short, 30), (long, 90)):
        cutoff = (now - timedelta(days=days)).replace(hour=0, minute=0)
        async with tenant_transaction(pool, org) as conn:
            oldest = await conn.fetchval('SELECT min("timestamp") FROM telemetry_events')
            kept = await conn.fetchval("SELECT count(*) FROM telemetry_events")
            oldest_hour = await conn.fetchval("SELECT min(hour) FROM usage_rollup_hourly")
            oldest_day = await conn.fetchval("SELECT min(day) FROM usage_rollup_daily")
        assert oldest >= cutoff and oldest_hour >= cutoff and oldest_day >= cutoff
        assert kept == sum(1 for r in rows if r.timestamp >= cutoff)
    assert await rollup_mismatches(pool) == 0
    # Running again finds nothing more to do.
    again = await apply_retention(pool, now=now)
    assert again.dropped_partitions == [] and again.deleted_spans == 0


async def test_price_overrides_crud_is_per_organization(pool: Any) -> None:
    org = await create_org(pool, "acme")
    other = await create_org(pool, "other")
    price = await create_price(
        pool, org, "gpt-4o*", provider="openai", input_per_mtok=Decimal("2.50"),
        output_per_mtok=Decimal("10"), valid_from=datetime(2025, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    assert price.input_per_mtok == Decimal("2.50") and price.cache_read_per_mtok is None
    assert await list_prices(pool, org) == [price]
    assert await list_prices(pool, org, at=datetime(2024, 12, 1, tzinfo=UTC)) == []
    assert await list_prices(pool, other) == []
    updated = await update_price(pool, org, price.id, cache_read_per_mtok=Decimal("1.25"))
    assert updated is not None and updated.cache_read_per_mtok == Decimal("1.25")
    assert await update_price(pool, other, price.id, input_per_mtok=Decimal(1)) is None
    with pytest.raises(TypeError, match="Decimal"):
        await create_price(pool, org, "x", input_per_mtok=2.5)  # type: ignore[arg-type]
    assert not await delete_price(pool, other, price.id)
    assert await delete_price(pool, org, price.id)
    assert await owner_fetch(pool, "SELECT * FROM model_prices") == []
