"""The running receiver checks budgets on its own: spans ingested over HTTP turn into one
webhook message, and the loop can be switched off."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aethermind.storage import budgets
from tests.alerts.conftest import Webhook


async def ingest_one_call(receiver: Any) -> None:
    """One gpt-4o call costing $0.0055 (1200 input tokens, 400 of them cached, 300 output)."""
    event = {
        "provider": "openai",
        "model": "gpt-4o",
        "input_tokens": 1200,
        "output_tokens": 300,
        "cache_read_tokens": 400,
        "timestamp": datetime.now(UTC).isoformat(),
    }
    response = await receiver.session.post(
        f"{receiver.url}/v1/ingest",
        json={"events": [event]},
        headers=receiver.acme.ingest_headers(),
    )
    assert response.status == 200


async def test_the_receiver_announces_a_crossed_threshold_once(
    receiver_factory: Any, webhook: Webhook
) -> None:
    receiver = await receiver_factory(alert_check_seconds=0.05)
    await budgets.set_budget(
        receiver.pool,
        receiver.acme.id,
        monthly_limit_usd=Decimal("0.01"),
        webhook_url=webhook.url(),
    )
    await ingest_one_call(receiver)

    for _ in range(100):
        if webhook.calls:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # several more checks

    assert webhook.texts == [
        "Aethermind: organization acme has used 55% ($0.00) of its $0.01 monthly LLM budget"
        " (threshold 50%)"
    ]
    assert Decimal(webhook.calls[0].body["month_to_date_usd"]) == Decimal("0.0055")
    metrics = await (await receiver.session.get(f"{receiver.url}/metrics")).text()
    assert 'aethermind_budget_alerts_total{outcome="delivered"} 1.0' in metrics
    assert 'aethermind_budget_checks_total{outcome="ok"}' in metrics


async def test_alert_check_seconds_zero_turns_the_loop_off(
    receiver_factory: Any, webhook: Webhook
) -> None:
    receiver = await receiver_factory(alert_check_seconds=0)
    await budgets.set_budget(
        receiver.pool,
        receiver.acme.id,
        monthly_limit_usd=Decimal("0.001"),
        webhook_url=webhook.url(),
    )
    await ingest_one_call(receiver)
    await asyncio.sleep(0.3)
    assert webhook.calls == []
