"""``aethermind reconcile``: provider cost reports of the documented shapes (OpenAI's
``/v1/organization/costs``, Anthropic's ``/v1/organizations/cost_report``, and the CSV each
console exports) beside our cost, per day and model, with the residual."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aethermind.cli.common import CliError
from aethermind.cli.reconcile import ALL_MODELS, as_billed, read_bill, reconcile_rows
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


OPENAI_CSV = (
    "\ufeffstart_time,end_time,start_time_iso,end_time_iso,amount_value,amount_currency,"
    "quantity,quantity_unit,line_item,user_id,api_key_id,project_id,organization_id,"
    "project_name,organization_name,user_email,api_source\n"
    "1793491200,1793577600,2026-11-01T00:00:00+00:00,2026-11-02T00:00:00+00:00,,,,,,,,,,,,,\n"
    "1793577600,1793664000,2026-11-02T00:00:00+00:00,2026-11-03T00:00:00+00:00,1.25,usd,,,"
    '"gpt-4o-2024-08-06, input",,,proj_1,org-1,Default,Acme,,\n'
    "1793577600,1793664000,2026-11-02T00:00:00+00:00,2026-11-03T00:00:00+00:00,2.5,usd,,,"
    '"gpt-4o-2024-08-06, output",,,proj_1,org-1,Default,Acme,,\n'
    "1793664000,1793750400,2026-11-03T00:00:00+00:00,2026-11-04T00:00:00+00:00,0.06,usd,,,,"
    ",,proj_1,org-1,Default,Acme,,\n"
)
"""The usage page's Export, Cost data, CSV, one day a row: the cost API's fields flattened
(a day without costs is listed with empty amounts)."""

ANTHROPIC_CSV = (
    "usage_date_utc,model,workspace,api_key,usage_type,context_window,token_type,cost_usd,"
    "list_price_usd,cost_type,inference_geo,speed,api_key_id,api_key_status\n"
    "2026-11-02,Claude Sonnet 4.5,Default,prod,message,\u2264 200k,input_no_cache,1.0345,"
    "1.0345,token,not_available,,apikey_01A,active\n"
    "2026-11-02,Claude Sonnet 4.5,Default,prod,message,\u2264 200k,output,0.20,0.20,token,"
    "not_available,,apikey_01A,active\n"
    "\n"
    "2026-11-02,,Default,prod,message,,,0.10,0.10,web_search,not_available,,apikey_01A,active\n"
)
"""The Console's cost page, Export: dollars, one row per day, model (its display name) and
token type; the web search line names no model."""


def saved(tmp_path: Path, document: Any, name: str = "costs.json") -> Path:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
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
    with pytest.raises(CliError, match="not an openai cost report"):
        read_bill("openai", saved(tmp_path, {"data": [{"results": []}]}))
    with pytest.raises(CliError, match="cannot read it"):
        read_bill("anthropic", tmp_path / "missing.json")
    with pytest.raises(CliError, match="cannot read JSON"):
        read_bill("anthropic", saved(tmp_path, '{"data": ['))
    with pytest.raises(CliError, match="only USD"):
        page = {"data": [{"starting_at": "2026-11-02T00:00:00Z",
                          "results": [{"currency": "EUR", "amount": "1"}]}]}  # fmt: skip
        read_bill("anthropic", saved(tmp_path, page))


def test_openai_cost_export_csv_reads_as_its_api(tmp_path: Path) -> None:
    assert read_bill("openai", saved(tmp_path, OPENAI_CSV, "costs.csv")) == read_bill(
        "openai", saved(tmp_path, [OPENAI_PAGE])
    )


def test_anthropic_console_csv_is_dollars_with_display_names(tmp_path: Path) -> None:
    billed = read_bill("anthropic", saved(tmp_path, ANTHROPIC_CSV, "costs.csv"))
    assert billed == {
        (DAY1, "claude-sonnet-4-5"): Decimal("1.2345"),
        (DAY1, ALL_MODELS): Decimal("0.10"),
    }
    # the same day as the cost API has it, model for model once the names are paired
    ours = as_billed(read_bill("anthropic", saved(tmp_path, ANTHROPIC_PAGE)), billed)
    assert ours == billed


def test_bad_csv_files_name_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(CliError, match=r"usage_date_utc, cost_usd.*its header has foo, bar"):
        read_bill("anthropic", saved(tmp_path, "foo,bar\n1,2\n", "x.csv"))
    with pytest.raises(CliError, match="line 3: cost_usd 'ten' is not a number"):
        read_bill("anthropic", saved(tmp_path, "usage_date_utc,cost_usd\n2026-11-02,1\n"
                                     "2026-11-02,ten\n", "x.csv"))  # fmt: skip
    with pytest.raises(CliError, match="line 2: usage_date_utc 'November' is not a date"):
        read_bill("anthropic", saved(tmp_path, "usage_date_utc,cost_usd\nNovember,1\n", "x.csv"))
    with pytest.raises(CliError, match="only USD"):
        read_bill("openai", saved(tmp_path, "start_time,amount_value,amount_currency\n"
                                  "1793577600,1,eur\n", "x.csv"))  # fmt: skip
    with pytest.raises(CliError, match="line 2"):
        read_bill("openai", saved(tmp_path, "start_time,amount_value\n99999999999999999,1\n",
                                  "x.csv"))  # fmt: skip


def test_our_models_take_the_bills_names() -> None:
    """A dated snapshot we recorded meets the bill's undated name (and back) when it is the
    only one of its family on the bill; where the bill lists two snapshots, ours stays."""
    theirs = {(DAY1, "claude-sonnet-4-5"): Decimal(1), (DAY1, "gpt-4o-2024-08-06"): Decimal(1),
              (DAY1, "o3-2025-04-16"): Decimal(1), (DAY1, "o3-2024-12-01"): Decimal(1)}  # fmt: skip
    ours = {(DAY1, "claude-sonnet-4-5-20250929"): Decimal(2), (DAY1, "gpt-4o"): Decimal(3),
            (DAY1, "GPT-4o-2024-08-06"): Decimal(4), (DAY1, "o3"): Decimal(5)}  # fmt: skip
    assert as_billed(ours, theirs) == {
        (DAY1, "claude-sonnet-4-5"): Decimal(2),
        (DAY1, "gpt-4o-2024-08-06"): Decimal(7),
        (DAY1, "o3"): Decimal(5),
    }


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
@pytest.mark.parametrize(
    ("report", "billed_model"),
    [(ANTHROPIC_PAGE, "claude-sonnet-4-5-20250929"), (ANTHROPIC_CSV, "claude-sonnet-4-5")],
    ids=["cost-api-json", "console-csv"],
)
def test_reconcile_command_prints_ours_theirs_and_the_residual(
    database_url: str, tmp_path: Path, report: Any, billed_model: str
) -> None:
    import asyncio

    from aethermind.semconv import PriceBook, UsageRecord
    from aethermind.storage.config import DatabaseConfig
    from aethermind.storage.database import Database
    from aethermind.storage.span_row import row_from_usage
    from aethermind.storage.writer import write_rows

    slug = f"recon-{billed_model.count('-')}"
    org = run_cli("org", "create", slug, database_url=database_url)["organization"]
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
    path = saved(tmp_path, report, "costs.json" if isinstance(report, dict) else "costs.csv")
    report = run_cli("reconcile", "--org", org["slug"], "--provider", "anthropic", "--file",
                     str(path), database_url=database_url)  # fmt: skip
    # ours: 100,000 x $3 + 10,000 x $15 per million = $0.45
    [sonnet] = [r for r in report["rows"] if r["model"] == billed_model]
    assert (Decimal(sonnet["ours_usd"]), Decimal(sonnet["theirs_usd"])) == (
        Decimal("0.45"), Decimal("1.2345"),
    )  # fmt: skip
    assert Decimal(sonnet["residual_usd"]) == Decimal("0.45") - Decimal("1.2345")
    assert Decimal(report["total"]["theirs_usd"]) == Decimal("1.3345")
