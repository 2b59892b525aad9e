"""``aethermind stats``: the rows of ``GET /v1/aggregates``, as JSON (exact) or as a table
for people (rounded, fitted to the terminal's width, with a totals row)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from aethermind.cli.common import CliError, emit, find_organization, open_pool, tag_pair
from aethermind.storage.dimensions import QUERY_DIMENSIONS

FILTER_FLAGS = QUERY_DIMENSIONS
"""The ``GET /v1/aggregates`` filters the command takes as flags of the same name."""


async def cmd_stats(args: argparse.Namespace) -> None:
    from aethermind.receiver.errors import BadRequest, InvalidParameter
    from aethermind.receiver.query import parse_aggregate_params
    from aethermind.semconv.pricing import default_price_book
    from aethermind.storage.queries import aggregates
    from aethermind.storage.what_if import UnknownModel, add_what_if_costs

    params = {
        "from": args.from_,
        "to": args.to,
        "group_by": args.group_by,
        "granularity": args.granularity,
        "order_by": args.order_by,
        "limit": None if args.top is None else str(args.top),
        "what_if_model": args.what_if,
        **{name: getattr(args, name) for name in FILTER_FLAGS},
        **_tag_filters(args.tag or []),
    }
    try:
        parsed = parse_aggregate_params({k: v for k, v in params.items() if v})
    except InvalidParameter as exc:
        raise CliError(f"--{exc.parameter.replace('_', '-')} {exc.problem}") from exc
    except BadRequest as exc:
        raise CliError(exc.message) from exc
    async with open_pool(args) as pool:
        org = await find_organization(pool, args.org)
        rows = await aggregates(
            pool,
            org.id,
            parsed["from_"],
            parsed["to"],
            group_by=parsed["group_by"],
            granularity=parsed["granularity"],
            filters=parsed["filters"],
            order_by=parsed["order_by"],
            limit=parsed["limit"],
        )
    if parsed["what_if_model"] is not None:
        try:
            add_what_if_costs(rows, parsed["what_if_model"], default_price_book())
        except UnknownModel as exc:
            raise CliError(f"--what-if: {exc}") from exc
    document = {
        "from": parsed["from_"],
        "to": parsed["to"],
        "group_by": parsed["group_by"],
        "granularity": parsed["granularity"],
        "rows": rows,
    }

    def human() -> None:
        from rich.console import Console

        console = Console()
        title = f"{org.slug}: {parsed['from_']:%Y-%m-%d %H:%M} to {parsed['to']:%Y-%m-%d %H:%M} UTC"
        if not rows:
            console.print(f"{title}: no calls")
            return
        keys = [*parsed["group_by"], *(["bucket"] if parsed["granularity"] else [])]
        console.print(stats_table(rows, keys, parsed["granularity"], console.width, title))

    emit(args, document, human)


def _tag_filters(pairs: Sequence[str]) -> dict[str, str]:
    """``--tag team=search`` as the API's ``tag.team=search``."""
    return dict(tag_pair(pair) for pair in pairs)


# --- the table for people -----------------------------------------------------------------


def human_cost(cost: Decimal | None) -> str:
    """Cents from $100 up, else four significant digits: $1,234.57, $12.35, $0.009."""
    if cost is None:
        return "-"
    if cost == 0:
        return "$0"
    if cost >= 100:
        return f"${cost:,.2f}"
    rounded = cost.quantize(Decimal(1).scaleb(cost.adjusted() - 3))
    return "$" + format(rounded.normalize(), "f")


def human_count(count: int) -> str:
    """Exact below ten thousand, then 3 significant digits: 9,999, 12.3k, 4.56M."""
    if count < 10_000:
        return f"{count:,}"
    for divisor, suffix in ((10**9, "B"), (10**6, "M"), (10**3, "k")):
        if count >= divisor:
            value = count / divisor
            return f"{value:.3g}{suffix}" if value < 1000 else f"{value:,.0f}{suffix}"
    return str(count)  # pragma: no cover - every count >= 10,000 matched above


def human_ms(milliseconds: float | None) -> str:
    if milliseconds is None:
        return "-"
    if milliseconds < 10:
        return f"{milliseconds:.1f} ms"
    if milliseconds < 1000:
        return f"{milliseconds:.0f} ms"
    return f"{milliseconds / 1000:.2f} s"


_BUCKET_FORMATS = {
    "minute": "%Y-%m-%d %H:%M",
    "hour": "%Y-%m-%d %H:00",
    "day": "%Y-%m-%d",
    "week": "%Y-%m-%d",
    "month": "%Y-%m",
}
_KEY_HEADERS = {"bucket": "Time", "environment": "Env", "operation": "Operation"}


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    cell: Callable[[dict[str, Any]], str]
    total: Callable[[Sequence[dict[str, Any]]], str]
    drop_rank: int
    """Columns are dropped highest rank first until the table fits; 0 is never dropped.
    Errors go first when there are none, latency p95 before p50, tokens before latency."""


def _sum(field: str) -> Callable[[Sequence[dict[str, Any]]], str]:
    return lambda rows: human_count(sum(row[field] for row in rows))


def _total_cost(rows: Sequence[dict[str, Any]]) -> str:
    costs = [row["cost_usd"] for row in rows if row["cost_usd"] is not None]
    return human_cost(sum(costs, Decimal(0)) if costs else None)


def _metric_columns(rows: Sequence[dict[str, Any]]) -> list[Column]:
    any_errors = any(row["errors"] for row in rows)
    columns = [
        Column("Calls", lambda r: human_count(r["calls"]), _sum("calls"), 0),
        Column(
            "Errors", lambda r: human_count(r["errors"]), _sum("errors"), 2 if any_errors else 9
        ),
        Column("In tok", lambda r: human_count(r["input_tokens"]), _sum("input_tokens"), 5),
        Column("Out tok", lambda r: human_count(r["output_tokens"]), _sum("output_tokens"), 4),
        Column("Cost", lambda r: human_cost(r["cost_usd"]), _total_cost, 0),
    ]
    if any("what_if_cost_usd" in row for row in rows):
        columns.append(
            Column(
                "What-if",
                lambda r: human_cost(r["what_if_cost_usd"]),
                lambda rs: human_cost(
                    sum(
                        (r["what_if_cost_usd"] for r in rs if r["what_if_cost_usd"] is not None),
                        Decimal(0),
                    )
                ),
                0,
            )
        )
    if any(row["unpriced_calls"] for row in rows):
        columns.append(
            Column(
                "Unpriced", lambda r: human_count(r["unpriced_calls"]), _sum("unpriced_calls"), 1
            )
        )
    columns += [
        Column("p50", lambda r: human_ms(r["latency_ms"]["p50"]), lambda _: "", 3),
        Column("p95", lambda r: human_ms(r["latency_ms"]["p95"]), lambda _: "", 6),
    ]
    return columns


def _key_cell(key: str, granularity: str | None) -> Callable[[dict[str, Any]], str]:
    def cell(row: dict[str, Any]) -> str:
        value = row.get(key)
        if value is None:
            return "-"
        if isinstance(value, datetime) and granularity:
            return value.strftime(_BUCKET_FORMATS[granularity])
        return str(value)

    return cell


_COLUMN_GAP = 3  # what rich's SIMPLE_HEAD box puts between two columns: pad, rule, pad
_MIN_KEY_WIDTH = 10


def stats_table(
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str],
    granularity: str | None,
    width: int,
    title: str,
) -> Any:
    """A rich table that fits in ``width`` characters: the least needed metric columns are
    left out first, then the widest group keys are shortened with an ellipsis."""
    from rich import box
    from rich.table import Table

    key_columns = [
        Column(_KEY_HEADERS.get(k, k.capitalize()), _key_cell(k, granularity), lambda _: "", 0)
        for k in keys
    ]
    metrics = _metric_columns(rows)
    cells = {id(c): [c.cell(r) for r in rows] for c in [*key_columns, *metrics]}
    totals = {id(c): c.total(rows) for c in metrics}
    if key_columns:
        totals[id(key_columns[0])] = "Total"

    def natural(column: Column) -> int:
        texts = [column.header, *cells[id(column)], totals.get(id(column), "")]
        return max(len(t) for t in texts)

    def table_width(columns: Sequence[Column], widths: dict[int, int]) -> int:
        return sum(widths[id(c)] for c in columns) + _COLUMN_GAP * (len(columns) - 1)

    widths = {id(c): natural(c) for c in [*key_columns, *metrics]}
    floor = {id(c): min(widths[id(c)], _MIN_KEY_WIDTH) for c in key_columns}
    chosen = list(metrics)

    def smallest(columns: Sequence[Column]) -> int:
        return table_width(columns, {**widths, **floor})

    while smallest([*key_columns, *chosen]) > width and any(c.drop_rank for c in chosen):
        chosen.remove(max(chosen, key=lambda c: c.drop_rank))
    excess = table_width([*key_columns, *chosen], widths) - width
    while excess > 0:  # shorten the widest key that can still give a character
        widest = max(key_columns, key=lambda c: widths[id(c)] - floor[id(c)], default=None)
        if widest is None or widths[id(widest)] <= floor[id(widest)]:
            break
        widths[id(widest)] -= 1
        excess -= 1

    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for column in key_columns:
        table.add_column(column.header, overflow="ellipsis", no_wrap=True, width=widths[id(column)])
    for column in chosen:
        table.add_column(column.header, justify="right", no_wrap=True, width=widths[id(column)])
    shown = [*key_columns, *chosen]
    for index in range(len(rows)):
        table.add_row(*(cells[id(c)][index] for c in shown))
    if len(rows) > 1:
        table.add_section()
        table.add_row(*(totals.get(id(c), "") for c in shown), style="bold")
    return table
