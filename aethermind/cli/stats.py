"""``aethermind stats``: the rows of ``GET /v1/aggregates``, as JSON or a table for people."""

from __future__ import annotations

import argparse

from aethermind.cli.common import CliError, emit, find_organization, open_pool, print_table


async def cmd_stats(args: argparse.Namespace) -> None:
    from aethermind.receiver.errors import BadRequest
    from aethermind.receiver.query import parse_aggregate_params
    from aethermind.storage.queries import aggregates

    params = {
        k: v
        for k, v in (
            ("from", args.from_),
            ("to", args.to),
            ("group_by", args.group_by),
            ("granularity", args.granularity),
            ("provider", args.provider),
            ("model", args.model),
            ("service", args.service),
        )
        if v
    }
    try:
        parsed = parse_aggregate_params(params)
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
        )
    document = {
        "from": parsed["from_"],
        "to": parsed["to"],
        "group_by": parsed["group_by"],
        "granularity": parsed["granularity"],
        "rows": rows,
    }

    def human() -> None:
        columns = [*parsed["group_by"], *(["bucket"] if parsed["granularity"] else [])]
        flat = [
            {
                **row,
                "p50_ms": row["latency_ms"]["p50"],
                "p95_ms": row["latency_ms"]["p95"],
            }
            for row in rows
        ]
        print_table(
            flat,
            [*columns, "calls", "errors", "input_tokens", "output_tokens", "total_tokens",
             "cost_usd", "unpriced_calls", "p50_ms", "p95_ms"],
            title=f"{org.slug}: {parsed['from_']:%Y-%m-%d %H:%M} to {parsed['to']:%H:%M %Y-%m-%d}",
        )  # fmt: skip

    emit(args, document, human)
