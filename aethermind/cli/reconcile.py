"""``aethermind reconcile``: our cost beside the provider's bill, per UTC day and model.

The bill is read by :mod:`aethermind.cli.bills` (the cost API's JSON or the console's CSV);
here our side is summed the way the bill is laid out, and each row gets its residual.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from aethermind.cli.bills import ALL_MODELS, Billed, model_family, read_bill, spelled
from aethermind.cli.common import CliError, emit, find_organization, open_pool, print_table

__all__ = ["ALL_MODELS", "read_bill", "reconcile_rows"]

PROVIDERS = ("openai", "anthropic")


def as_billed(ours: Billed, theirs: Billed) -> Billed:
    """Our (day, model) costs under the bill's model names: a model the bill names is kept;
    else, where exactly one billed name is of the same family (``claude-sonnet-4-5`` for our
    ``claude-sonnet-4-5-20250929``, ``gpt-4o-2024-08-06`` for our ``gpt-4o``), that name."""
    billed_names = {model for _, model in theirs if model != ALL_MODELS}
    families: dict[str, set[str]] = defaultdict(set)
    for name in billed_names:
        families[model_family(name)].add(name)
    renamed: Billed = defaultdict(Decimal)
    for (day, model), cost in ours.items():
        name = spelled(model)
        family = families.get(model_family(name), set())
        if name not in billed_names and len(family) == 1:
            name = next(iter(family))
        renamed[day, name] += cost
    return dict(renamed)


def reconcile_rows(
    ours: Billed, theirs: Billed, fees: Billed | None = None
) -> list[dict[str, Any]]:
    """One row per day and model either side has; on a day whose provider lines name no
    model at all (costs not grouped by model), ours are summed over the day's models; lines
    without a model beside named ones (Anthropic's web search fees) stand as their own row,
    and our per-call fees of that day (``fees``, the part of ``ours`` that is fees, by day and
    model) move from the models' rows to it, as the bill has them. Our models are named as
    the bill names them (:func:`as_billed`). Residual: ours less theirs."""
    ours, fees = as_billed(ours, theirs), as_billed(fees or {}, theirs)
    named = {day for day, model in theirs if model != ALL_MODELS}
    by_day_only = {day for day, _ in theirs} - named
    fees_apart = {day for day, model in theirs if model == ALL_MODELS} & named
    merged: Billed = defaultdict(Decimal)
    for (day, model), cost in ours.items():
        fee = fees.get((day, model), Decimal(0)) if day in fees_apart else Decimal(0)
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
            key = (row["bucket"].astimezone(UTC).date(), row["model"] or "")
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
        help="the provider's cost report: its cost API's JSON answer (OpenAI "
        "/v1/organization/costs, Anthropic /v1/organizations/cost_report) or a JSON list of "
        "its pages, or the CSV its console exports (OpenAI usage page: Export, Cost data; "
        "Anthropic Console cost page: Export)",
    )  # fmt: skip
    parser.set_defaults(handler=cmd_reconcile)
