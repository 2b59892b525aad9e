"""What-if: the stored tokens of each aggregates row at another model's list prices today,
beside the actual cost, and the actual cost broken down. Expected by hand from the
published prices (per million tokens, checked 2026-11-30): gpt-4o input $2.50, cached
input $1.25, output $10.00."""

from __future__ import annotations

import time
from decimal import Decimal

from tests.plugins.receiver import RunningReceiver
from tests.receiver.test_otlp_logs import aggregates

MICRO = Decimal("0.000001")


async def test_rows_carry_what_the_same_tokens_would_cost_on_another_model(
    receiver: RunningReceiver,
) -> None:
    now = int(time.time() * 1000) - 60_000
    events = [
        {"provider": "anthropic", "model": "claude-sonnet-4-5", "input_tokens": 10_000,
         "cache_read_tokens": 4_000, "output_tokens": 1_000, "timestamp": now},
        {"provider": "acme", "model": "acme-private-7b", "input_tokens": 2_000,
         "output_tokens": 500, "timestamp": now},  # unpriced here, its tokens still count
    ]  # fmt: skip
    response = await receiver.session.post(
        f"{receiver.url}/v1/ingest", json={"events": events}, headers=receiver.acme.ingest_headers()
    )
    assert response.status == 200
    rows = {r["model"]: r for r in await aggregates(receiver, group_by="model",
                                                     what_if_model="gpt-4o")}  # fmt: skip
    sonnet, private = rows["claude-sonnet-4-5"], rows["acme-private-7b"]
    # 6,000 x 2.50 + 4,000 x 1.25 + 1,000 x 10
    assert Decimal(sonnet["what_if_cost_usd"]) == Decimal(30_000) * MICRO
    assert Decimal(private["what_if_cost_usd"]) == Decimal(2_000 * 2.5 + 500 * 10) * MICRO
    assert private["cost_usd"] is None and private["unpriced_calls"] == 1
    assert private["cost_breakdown_usd"] is None
    # The actual cost, split as the bill has it (claude-sonnet-4-5: input $3.00, cache read
    # $0.30, output $15.00): 6,000 x 3, 4,000 x 0.30, 1,000 x 15.
    parts = {k: Decimal(v) for k, v in sonnet["cost_breakdown_usd"].items()}
    assert parts == {"input": Decimal(18_000) * MICRO, "cache_read": Decimal(1_200) * MICRO,
                     "cache_write": Decimal(0), "output": Decimal(15_000) * MICRO,
                     "modality": Decimal(0), "fees": Decimal(0), "other": Decimal(0)}  # fmt: skip
    assert sum(parts.values()) == Decimal(sonnet["cost_usd"])
    # Saved by caching: 4,000 cached tokens at $3.00 uncached, less the $0.30 they cost.
    assert Decimal(sonnet["saved_by_caching_usd"]) == Decimal(4_000 * 270) * Decimal("0.01") * MICRO
    assert private["saved_by_caching_usd"] is None
    [total] = await aggregates(receiver, what_if_model="gpt-4o")
    assert Decimal(total["what_if_cost_usd"]) == Decimal(40_000) * MICRO
    assert "what_if_cost_usd" not in (await aggregates(receiver))[0]
    response = await receiver.session.get(
        f"{receiver.url}/v1/aggregates",
        params={"what_if_model": "no-such-model-x"},
        headers=receiver.acme.read_headers(),
    )
    assert response.status == 400
    assert "what_if_model" in (await response.json())["error"]["message"]
