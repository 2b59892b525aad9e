"""``aethermind reconcile``: provider cost reports of the documented shapes (OpenAI's
``/v1/organization/costs``, Anthropic's ``/v1/organizations/cost_report``) beside our cost,
per day and model, with the residual."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aethermind.cli.common import CliError
from aethermind.cli.reconcile import ALL_MODELS, read_bill, reconcile_rows
from tests.test_cli import run_cli

DAY1, DAY2 = date(2026, 11, 2), date(2026, 11, 3)

OPENAI_PAGE = {
    "object": "page",
    "data": [
        {"object": "bucket", "start_time": 1_793_577_600, "end_time": 1_793_664_000,
         "results": [
             {"object": "organization.costs.result", "amount": {"value": 1.25, "currency": "usd"},
              "line_item": "gpt-4o-2024-08-06, input", "project_id": None},
             {"object": "organization.costs.result", "amount": {"value": 2.5, "currency": "usd"},
              "line_item": "gpt-4o-2024-08-06, output", "project_id": None},
         ]},
        {"object": "bucket", "start_time": 1_793_664_000, "end_time": 1_793_750_400,
         "results": [{"object": "organization.costs.result",
                      "amount": {"value": 0.06, "currency": "usd"}, "line_item": None,
                      "project_id": None}]},
    ],
    "has_more": False, "next_page": None,
}  # fmt: skip

ANTHROPIC_PAGE = {
    "data": [
        {"starting_at": "2026-11-02T00:00:00Z", "ending_at": "2026-11-03T00:00:00Z",
         "results": [
             {"currency": "USD", "amount": "123.45", "workspace_id": None,
              "description": "Claude Sonnet 4.5 Usage - Input Tokens", "cost_type": "tokens",
              "context_window": "0-200k", "model": "claude-sonnet-4-5-20250929",
              "service_tier": "standard", "token_type": "uncached_input_tokens"},
             {"currency": "USD", "amount": "10", "workspace_id": None,
              "description": "Web Search", "cost_type": "web_search", "context_window": None,
              "model": None, "service_tier": None, "token_type": None},
         ]},
    ],
    "has_more": False, "next_page": None,
}  # fmt: skip


def saved(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "costs.json"
    path.write_text(json.dumps(document))
    return path


def test_openai_costs_by_line_item_and_by_day(tmp_path: Path) -> None:
    assert datetime.fromtimestamp(1_793_577_600, UTC).date() == DAY1
    billed = read_bill("openai", saved(tmp_path, [OPENAI_PAGE]))
    assert billed == {
        (DAY1, "gpt-4o-2024-08-06"): Decimal("3.75"),
        (DAY2, ALL_MODELS): Decimal("0.06"),
    }


def test_anthropic_amounts_are_cents(tmp_path: Path) -> None:
    billed = read_bill("anthropic", saved(tmp_path, ANTHROPIC_PAGE))
    assert billed == {
        (DAY1, "claude-sonnet-4-5-20250929"): Decimal("1.2345"),
        (DAY1, ALL_MODELS): Decimal("0.10"),
    }


def test_bad_files_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="not a openai cost report"):
        read_bill("openai", saved(tmp_path, {"data": [{"results": []}]}))
    with pytest.raises(CliError, match="cannot read JSON"):
        read_bill("anthropic", tmp_path / "missing.json")
    with pytest.raises(CliError, match="only USD"):
        page = {"data": [{"starting_at": "2026-11-02T00:00:00Z",
                          "results": [{"currency": "EUR", "amount": "1"}]}]}  # fmt: skip
        read_bill("anthropic", saved(tmp_path, page))


def test_rows_pair_days_and_models_and_sum_ours_where_the_bill_names_none() -> None:
    ours = {(DAY1, "gpt-4o"): Decimal("3.50"), (DAY2, "gpt-4o"): Decimal("0.05"),
            (DAY2, "o3"): Decimal("0.02")}  # fmt: skip
    theirs = {(DAY1, "gpt-4o"): Decimal("3.75"), (DAY2, ALL_MODELS): Decimal("0.06")}
    rows = reconcile_rows(ours, theirs)
    assert [(r["day"], r["model"], r["ours_usd"], r["theirs_usd"], r["residual_pct"])
            for r in rows] == [
        (DAY1, "gpt-4o", Decimal("3.50"), Decimal("3.75"), Decimal("-6.67")),
        (DAY2, ALL_MODELS, Decimal("0.07"), Decimal("0.06"), Decimal("16.67")),
    ]  # fmt: skip


def test_our_fees_go_where_the_bill_puts_them() -> None:
    """Anthropic's report has web search on a line of its own (no model): our web search
    fees move from the model's row to it, so each row compares like with like."""
    ours = {(DAY1, "claude-sonnet-4-5"): Decimal("0.48"), (DAY2, "claude-sonnet-4-5"): Decimal("1")}
    fees = {
        (DAY1, "claude-sonnet-4-5"): Decimal("0.03"),
        (DAY2, "claude-sonnet-4-5"): Decimal("0.02"),
    }
    theirs = {(DAY1, "claude-sonnet-4-5"): Decimal("0.45"), (DAY1, ALL_MODELS): Decimal("0.03"),
              (DAY2, "claude-sonnet-4-5"): Decimal("1")}  # fmt: skip
    rows = reconcile_rows(ours, theirs, fees)
    assert [(r["day"], r["model"], r["ours_usd"], r["theirs_usd"]) for r in rows] == [
        (DAY1, ALL_MODELS, Decimal("0.03"), Decimal("0.03")),
        (DAY1, "claude-sonnet-4-5", Decimal("0.45"), Decimal("0.45")),
        (DAY2, "claude-sonnet-4-5", Decimal("1"), Decimal("1")),  # no fee line that day
    ]  # fmt: skip


@pytest.mark.slow
def test_reconcile_command_prints_ours_theirs_and_the_residual(
    database_url: str, tmp_path: Path
) -> None:
    import asyncio

    from aethermind.semconv import PriceBook, UsageRecord
    from aethermind.storage.config import DatabaseConfig
    from aethermind.storage.database import Database
    from aethermind.storage.span_row import row_from_usage
    from aethermind.storage.writer import write_rows

    org = run_cli("org", "create", "Recon", database_url=database_url)["organization"]
    started = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
    usage = UsageRecord(provider="anthropic", request_model="claude-sonnet-4-5",
                        response_model="claude-sonnet-4-5-20250929", input_tokens=100_000,
                        output_tokens=10_000, operation="chat")  # fmt: skip
    cost = PriceBook().price(usage, int(started.timestamp() * 1e9))

    async def store() -> None:
        row = row_from_usage(usage, cost, trace_id=f"{7:032x}", span_id=f"{7:016x}",
                             name="chat", timestamp=started)  # fmt: skip
        async with Database(DatabaseConfig(database_url=database_url)) as pool:
            await write_rows(pool, org["id"], [row])

    asyncio.run(store())
    path = saved(tmp_path, ANTHROPIC_PAGE)
    report = run_cli("reconcile", "--org", "recon", "--provider", "anthropic", "--file",
                     str(path), database_url=database_url)  # fmt: skip
    # ours: 100,000 x $3 + 10,000 x $15 per million = $0.45
    [sonnet] = [r for r in report["rows"] if r["model"] == "claude-sonnet-4-5-20250929"]
    assert (Decimal(sonnet["ours_usd"]), Decimal(sonnet["theirs_usd"])) == (
        Decimal("0.45"), Decimal("1.2345"),
    )  # fmt: skip
    assert Decimal(sonnet["residual_usd"]) == Decimal("0.45") - Decimal("1.2345")
    assert Decimal(report["total"]["theirs_usd"]) == Decimal("1.3345")
