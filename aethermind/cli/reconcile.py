"""``aethermind reconcile``: our cost beside the provider's bill, per UTC day and model.

Reads the JSON a provider's admin cost API answers (saved to a file: no network here):
- OpenAI ``GET /v1/organization/costs`` (a page of daily buckets; with
  ``group_by=line_item`` each result's ``line_item`` is ``"<model>, <token kind>"``, whose
  model is matched; without it, one total per day), ``amount.value`` in USD;
- Anthropic ``GET /v1/organizations/cost_report`` (daily buckets; with
  ``group_by[]=description`` each result names its ``model``), ``amount`` a decimal string
  in cents. Anthropic's report leaves Priority Tier costs out.
Several pages may be given as a JSON list of pages.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from aethermind.cli.common import CliError, emit, find_organization, open_pool, print_table

ALL_MODELS = "*"
"""The model of a provider line that names none (costs not grouped by model)."""
PROVIDERS = ("openai", "anthropic")


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _OpenAIAmount(_Loose):
    value: Decimal
    currency: str = "usd"


class _OpenAIResult(_Loose):
    amount: _OpenAIAmount | None = None
    line_item: str | None = None


class _OpenAIBucket(_Loose):
    start_time: int
    results: list[_OpenAIResult]


class _OpenAIPage(_Loose):
    data: list[_OpenAIBucket]


class _AnthropicResult(_Loose):
    amount: Decimal
    currency: str = "USD"
    model: str | None = None


class _AnthropicBucket(_Loose):
    starting_at: datetime
    results: list[_AnthropicResult]


class _AnthropicPage(_Loose):
    data: list[_AnthropicBucket]


Billed = dict[tuple[date, str], Decimal]


def read_bill(provider: str, path: Path) -> Billed:
    """The provider's cost per (UTC day, model) from a saved cost-API answer."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CliError(f"--file {path}: cannot read JSON: {exc}") from exc
    pages = document if isinstance(document, list) else [document]
    billed: Billed = defaultdict(Decimal)
    try:
        for page in pages:
            if provider == "openai":
                _add_openai(_OpenAIPage.model_validate(page), billed)
            else:
                _add_anthropic(_AnthropicPage.model_validate(page), billed)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise CliError(
            f"--file {path}: not a {provider} cost report: {where}: {problem['msg']}"
        ) from exc
    return dict(billed)


def _add_openai(page: _OpenAIPage, billed: Billed) -> None:
    for bucket in page.data:
        day = datetime.fromtimestamp(bucket.start_time, UTC).date()
        for result in bucket.results:
            if result.amount is None:
                continue
            _check_usd(result.amount.currency)
            model = (result.line_item or "").split(",")[0].strip().lower() or ALL_MODELS
            billed[day, model] += result.amount.value


def _add_anthropic(page: _AnthropicPage, billed: Billed) -> None:
    for bucket in page.data:
        day = bucket.starting_at.astimezone(UTC).date()
        for result in bucket.results:
            _check_usd(result.currency)
            model = (result.model or "").strip().lower() or ALL_MODELS
            billed[day, model] += result.amount / 100  # cents


def _check_usd(currency: str) -> None:
    if currency.lower() != "usd":
        raise CliError(f"only USD cost reports are reconciled, got {currency!r}")


def reconcile_rows(
    ours: Billed, theirs: Billed, fees: Billed | None = None
) -> list[dict[str, Any]]:
    """One row per day and model either side has; on a day whose provider lines name no
    model at all (costs not grouped by model), ours are summed over the day's models; lines
    without a model beside named ones (Anthropic's web search fees) stand as their own row,
    and our per-call fees of that day (``fees``, the part of ``ours`` that is fees, by day and
    model) move from the models' rows to it, as the bill has them. Residual: ours less
    theirs."""
    named = {day for day, model in theirs if model != ALL_MODELS}
    by_day_only = {day for day, _ in theirs} - named
    fees_apart = {day for day, model in theirs if model == ALL_MODELS} & named
    merged: Billed = defaultdict(Decimal)
    for (day, model), cost in ours.items():
        fee = (fees or {}).get((day, model), Decimal(0)) if day in fees_apart else Decimal(0)
        merged[day, ALL_MODELS if day in by_day_only else model] += cost - fee
        if fee:
            merged[day, ALL_MODELS] += fee
    keys = sorted(set(merged) | set(theirs))
    rows = []
    for day, model in keys:
        mine, billed = merged.get((day, model), Decimal(0)), theirs.get((day, model), Decimal(0))
        residual = mine - billed
        rows.append({
            "day": day, "model": model, "ours_usd": mine, "theirs_usd": billed,
            "residual_usd": residual,
            "residual_pct": None if not billed else (residual / billed * 100).quantize(
                Decimal("0.01")),
        })  # fmt: skip
    return rows


async def cmd_reconcile(args: argparse.Namespace) -> None:
    from aethermind.storage.queries import aggregates

    theirs = read_bill(args.provider, Path(args.file))
    if not theirs:
        raise CliError(f"--file {args.file}: the report holds no costs")
    first = min(day for day, _ in theirs)
    last = max(day for day, _ in theirs)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    async with open_pool(args) as pool:
        org = await find_organization(pool, args.org)
        rows = await aggregates(
            pool, org.id, start, end, group_by=["model"], granularity="day",
            filters={"provider": args.provider},
        )  # fmt: skip
    ours: Billed = defaultdict(Decimal)
    fees: Billed = defaultdict(Decimal)
    for row in rows:
        if row["cost_usd"] is not None:
            key = (row["bucket"].astimezone(UTC).date(), (row["model"] or "").lower())
            ours[key] += row["cost_usd"]
            fees[key] += (row["cost_breakdown_usd"] or {}).get("fees", Decimal(0))
    result = reconcile_rows(dict(ours), theirs, dict(fees))
    total_ours = sum((r["ours_usd"] for r in result), Decimal(0))
    total_theirs = sum((r["theirs_usd"] for r in result), Decimal(0))
    document = {
        "organization": org.slug,
        "provider": args.provider,
        "from": start,
        "to": end,
        "rows": result,
        "total": {
            "ours_usd": total_ours,
            "theirs_usd": total_theirs,
            "residual_usd": total_ours - total_theirs,
            "residual_pct": None if not total_theirs
            else ((total_ours - total_theirs) / total_theirs * 100).quantize(Decimal("0.01")),
        },
    }  # fmt: skip

    def human() -> None:
        columns = ["day", "model", "ours_usd", "theirs_usd", "residual_usd", "residual_pct"]
        print_table(result, columns, title=f"{org.slug}: ours vs {args.provider}")
        total = document["total"]
        print(
            f"total: ours ${total['ours_usd']}, theirs ${total['theirs_usd']}, residual"
            f" ${total['residual_usd']} ({total['residual_pct']}%)"
        )

    emit(args, document, human)


def add_parser(sub: Any, add_common_flags: Any, org_help: str) -> None:
    parser = sub.add_parser(
        "reconcile", help="our cost beside the provider's cost report, per day and model"
    )
    add_common_flags(parser)
    parser.add_argument("--org", required=True, help=org_help)
    parser.add_argument(
        "--provider",
        required=True,
        choices=PROVIDERS,
        help="whose cost report the file holds: openai or anthropic",
    )
    parser.add_argument(
        "--file", required=True, metavar="PATH",
        help="the provider cost API's JSON answer (OpenAI /v1/organization/costs, "
        "Anthropic /v1/organizations/cost_report), or a JSON list of its pages",
    )  # fmt: skip
    parser.set_defaults(handler=cmd_reconcile)
