"""Which cost counts is the organization's choice (``GET/PUT /v1/cost-basis``): ours,
computed from the tokens, or the one a span reported where it reported one. Both stay stored
and show side by side; the choice moves the aggregates' ``cost_usd``, top-N ranking and the
organization's budget, history included. Expected costs by hand from the published prices
(claude-sonnet-4-5: input $3.00, output $15.00 per million tokens, checked 2026-12-02)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aethermind.semconv import UsageRecord, default_price_book
from aethermind.storage.budgets import BudgetScope, month_to_date
from aethermind.storage.span_row import row_from_usage
from aethermind.storage.writer import write_rows
from tests.plugins.receiver import RunningReceiver
from tests.receiver.test_admin import admin_headers
from tests.receiver.test_otlp_logs import aggregates

OURS = Decimal(10_000 * 3 + 1_000 * 15) * Decimal("0.000001")  # $0.045 a call


def call(model: str, **extra: Any) -> dict[str, Any]:
    return {
        "provider": "anthropic", "model": model, "input_tokens": 10_000,
        "output_tokens": 1_000, "timestamp": int(time.time() * 1000) - 60_000, **extra,
    }  # fmt: skip


async def put_basis(receiver: RunningReceiver, basis: str) -> Any:
    response = await receiver.session.put(
        f"{receiver.url}/v1/cost-basis",
        json={"cost_basis": basis},
        headers=await admin_headers(receiver),
    )
    return response.status, await response.json()


async def test_the_organization_chooses_which_cost_counts(receiver: RunningReceiver) -> None:
    response = await receiver.session.post(
        f"{receiver.url}/v1/ingest",
        json={"events": [
            call("claude-sonnet-4-5", cost=0.10),  # a gateway charged more than list
            call("claude-sonnet-4-5"),
            call("claude-haiku-4-5", cost=0.20),
        ]},
        headers=receiver.acme.ingest_headers(),
    )  # fmt: skip
    assert response.status == 200, await response.text()
    haiku = Decimal(10_000 * 1 + 1_000 * 5) * Decimal("0.000001")  # $1.00 / $5.00
    [computed] = await aggregates(receiver)
    assert Decimal(computed["cost_usd"]) == 2 * OURS + haiku
    assert Decimal(computed["provided_cost_usd"]) == Decimal("0.30")
    assert "computed_cost_usd" not in computed
    top = await aggregates(receiver, group_by="model", order_by="cost_usd", limit="1")
    assert [r["model"] for r in top] == ["claude-sonnet-4-5"]

    headers = await admin_headers(receiver)
    shown = await receiver.session.get(f"{receiver.url}/v1/cost-basis", headers=headers)
    assert (shown.status, await shown.json()) == (200, {"cost_basis": "computed"})
    assert await put_basis(receiver, "provided") == (200, {"cost_basis": "provided"})

    [provided] = await aggregates(receiver)
    assert Decimal(provided["cost_usd"]) == OURS + Decimal("0.30")  # reported where present
    assert Decimal(provided["computed_cost_usd"]) == 2 * OURS + haiku
    assert Decimal(provided["provided_cost_usd"]) == Decimal("0.30")
    by_model = {r["model"]: r for r in await aggregates(receiver, group_by="model")}
    assert Decimal(by_model["claude-haiku-4-5"]["cost_usd"]) == Decimal("0.20")
    top = await aggregates(receiver, group_by="model", order_by="cost_usd", limit="1")
    assert [r["model"] for r in top] == ["claude-haiku-4-5"]  # ranked on the chosen basis
    called = datetime.now(UTC) - timedelta(minutes=1)  # when the calls were made
    spent = await month_to_date(receiver.pool, receiver.acme.id, called.date().replace(day=1))
    assert spent.cost_usd == OURS + Decimal("0.30")  # the budget counts the same

    # A user's budget too: the monthly dimension rollup sums the reported costs.
    usage = UsageRecord(provider="anthropic", operation="chat", request_model="claude-sonnet-4-5",
                        input_tokens=10_000, output_tokens=1_000, user="alice",
                        provided_cost=Decimal("0.07"))  # fmt: skip
    price = default_price_book().price(usage, int(called.timestamp()) * 10**9)
    row = row_from_usage(usage, price, trace_id=f"{9:032x}", span_id=f"{9:016x}",
                         name="chat", timestamp=called)  # fmt: skip
    await write_rows(receiver.pool, receiver.acme.id, [row])
    alice = await month_to_date(receiver.pool, receiver.acme.id, called.date().replace(day=1),
                                scope=BudgetScope("user", "alice"))  # fmt: skip
    assert alice.cost_usd == Decimal("0.07")
    await put_basis(receiver, "computed")
    alice = await month_to_date(receiver.pool, receiver.acme.id, called.date().replace(day=1),
                                scope=BudgetScope("user", "alice"))  # fmt: skip
    assert alice.cost_usd == OURS

    assert (await put_basis(receiver, "invoiced"))[0] == 400
    other = await receiver.session.get(
        f"{receiver.url}/v1/cost-basis", headers=await admin_headers(receiver, "globex")
    )
    assert (await other.json()) == {"cost_basis": "computed"}  # per organization
    reader = await receiver.session.put(
        f"{receiver.url}/v1/cost-basis",
        json={"cost_basis": "computed"},
        headers=receiver.acme.read_headers(),
    )
    assert reader.status == 403
