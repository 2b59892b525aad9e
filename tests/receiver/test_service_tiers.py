"""Service tiers through the receiver: the tier a call reports is stored, priced by the
packaged rules or the organization's own tier price, and is a dimension
(``group_by=service_tier``, ``service_tier=`` filter). Expected costs by hand from the
published prices (per million tokens, checked 2026-11-30): claude-sonnet-4-5 input $3.00,
output $15.00; Batch API half of that."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from tests.plugins.receiver import RunningReceiver
from tests.receiver.test_admin import admin_headers
from tests.receiver.test_otlp_logs import aggregates

MICRO = Decimal("0.000001")


def event(tier: str | None, **extra: Any) -> dict[str, Any]:
    return {
        "provider": "anthropic", "model": "claude-sonnet-4-5", "input_tokens": 10_000,
        "output_tokens": 1_000, "timestamp": int(time.time() * 1000) - 60_000,
        "service": "batch-jobs", **({"service_tier": tier} if tier else {}), **extra,
    }  # fmt: skip


async def ingest(receiver: RunningReceiver, events: list[dict[str, Any]]) -> None:
    response = await receiver.session.post(
        f"{receiver.url}/v1/ingest", json={"events": events}, headers=receiver.acme.ingest_headers()
    )
    assert response.status == 200, await response.text()


async def test_batch_calls_are_half_price_and_a_dimension(receiver: RunningReceiver) -> None:
    await ingest(receiver, [event(None), event("default"), event("batch"), event("Batch")])
    rows = {r["service_tier"]: r for r in await aggregates(receiver, group_by="service_tier")}
    full = Decimal(10_000 * 3 + 1_000 * 15) * MICRO
    assert set(rows) == {None, "batch"}
    assert (rows[None]["calls"], Decimal(rows[None]["cost_usd"])) == (2, 2 * full)
    assert (rows["batch"]["calls"], Decimal(rows["batch"]["cost_usd"])) == (2, full)
    [batch] = await aggregates(receiver, service_tier="batch")
    assert batch["calls"] == 2


async def test_an_organizations_price_for_a_tier_prices_that_tier_only(
    receiver: RunningReceiver,
) -> None:
    headers = await admin_headers(receiver)
    created = await receiver.session.post(
        f"{receiver.url}/v1/prices",
        json={"model_pattern": "claude-sonnet-4-5*", "service_tier": "Priority",
              "input_per_mtok": "4", "output_per_mtok": "20",
              "valid_from": "2020-01-01T00:00:00Z"},
        headers=headers,
    )  # fmt: skip
    assert created.status == 201, await created.text()
    assert (await created.json())["service_tier"] == "priority"
    await ingest(receiver, [event("priority"), event(None)])
    rows = {r["service_tier"]: r for r in await aggregates(receiver, group_by="service_tier")}
    assert Decimal(rows["priority"]["cost_usd"]) == Decimal(10_000 * 4 + 1_000 * 20) * MICRO
    assert Decimal(rows[None]["cost_usd"]) == Decimal(10_000 * 3 + 1_000 * 15) * MICRO
    bad = await receiver.session.post(
        f"{receiver.url}/v1/prices",
        json={"model_pattern": "x", "service_tier": "no such tier!", "input_per_mtok": "1",
              "output_per_mtok": "1"},
        headers=headers,
    )  # fmt: skip
    assert bad.status == 400
