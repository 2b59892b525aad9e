"""Writer throughput against its baseline, measured in the same run on the same server:

* baseline: raw ``COPY`` (asyncpg ``copy_records_to_table``) of the same rows into a plain
  table with the same columns and no index, one transaction per 512-row batch;
* ``write_rows`` (COPY into a temp staging table, INSERT ... SELECT ... ON CONFLICT DO
  NOTHING RETURNING -> rollup upsert; partitioned table, primary key + trace index + BRIN,
  RLS; one transaction per batch);
* the alternative bulk path: ``INSERT ... SELECT FROM unnest($2::text[], ...)`` with one
  array parameter per column, same rollup, kept here to show why ``write_rows`` uses COPY.

``TelemetryRow`` objects are built before timing; every path turns them into what it sends
inside the timed loop. Target: write_rows >= 50% of the baseline's rows/s.

Shapes (``--shape``): ``agent`` (default), 4 spans a trace under parents not stored (an
agent's model calls under spans that were not GenAI): every batch reads its traces back;
``root``, one root request span a trace with the provider's response id (a plain client):
the one-statement path, plus the twin probe, measured beside the same rows without
response ids (no probe, no index entry) to show what matching twins costs.

``--users N``: every span names one of N users and a session of theirs (the dimension
rollups then move a row per user and session a batch).

    python benchmarks/bench_writer.py [--batches 120] [--shape root] [--users N]
                                      [--database-url URL]

Without a URL (or env ``DATABASE_URL``) it starts the embedded PostgreSQL in a temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from operator import attrgetter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from aethermind.storage.database import create_pool
from aethermind.storage.embedded import EmbeddedPostgres
from aethermind.storage.migrate import migrate
from aethermind.storage.rollups import (
    ROLLUP_KEYS,
    TOKEN_COLUMNS,
    rollup_aggregates_sql,
    rollup_upsert_sql,
)
from aethermind.storage.scope import owner_transaction, tenant_transaction
from aethermind.storage.span_row import COLUMNS, PG_TYPES, TelemetryRow
from aethermind.storage.writer import PartitionCache, ensure_partitions, write_rows

BATCH = 512
MODELS = [
    ("openai", "gpt-4o", "gpt-4o-2024-08-06", Decimal("2.5"), Decimal("10")),
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", Decimal("0.15"), Decimal("0.6")),
    (
        "anthropic",
        "claude-sonnet-4-20250514",
        "claude-sonnet-4-20250514",
        Decimal("3"),
        Decimal("15"),
    ),
    ("anthropic", "claude-3-5-haiku-20241022", None, Decimal("0.8"), Decimal("4")),
    ("google", "gemini-2.0-flash", "gemini-2.0-flash", Decimal("0.1"), Decimal("0.4")),
]
SERVICES = ["checkout-api", "search", "support-bot", "summarizer"]
MILLION = Decimal(1_000_000)


def build_rows(
    count: int, seed: int = 7, shape: str = "agent", users: int = 0
) -> list[TelemetryRow]:
    """Realistic spans: recent start times in arrival order, a few models, token counts,
    computed costs, OTel-like attributes; traces as ``shape`` says (see the docstring).
    With ``users``, each span is for one of that many users, in a session of theirs."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(hours=2)
    rows = []
    trace_id = uuid.uuid4().hex
    for i in range(count):
        if i % 4 == 0 or shape == "root":
            trace_id = f"{rng.getrandbits(128):032x}"
        provider, model, response_model, in_price, out_price = MODELS[rng.randrange(len(MODELS))]
        input_tokens = int(rng.lognormvariate(6.5, 1.2)) + 1
        output_tokens = int(rng.lognormvariate(5, 1.0)) + 1
        cache_read = rng.choice([0, 0, input_tokens // 2])
        input_cost = Decimal(input_tokens - cache_read) * in_price / MILLION
        cache_cost = Decimal(cache_read) * in_price / 10 / MILLION
        output_cost = Decimal(output_tokens) * out_price / MILLION
        service = SERVICES[rng.randrange(len(SERVICES))]
        rows.append(
            TelemetryRow(
                trace_id=trace_id,
                span_id=f"{rng.getrandbits(64):016x}",
                parent_span_id=None if shape == "root" else f"{rng.getrandbits(64):016x}",
                name=f"chat {model}",
                kind="CLIENT",
                timestamp=start + timedelta(milliseconds=i * 50),
                duration_ms=round(rng.lognormvariate(6.8, 0.9), 3),
                status="ERROR" if rng.random() < 0.02 else "UNSET",
                error_type="RateLimitError" if rng.random() < 0.02 else None,
                service=service,
                environment="production",
                provider=provider,
                operation="chat",
                request_model=model,
                response_model=response_model,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cache_read_tokens=cache_read,
                cache_write_tokens=0,
                reasoning_tokens=0,
                total_tokens=input_tokens + output_tokens,
                cost=input_cost + cache_cost + output_cost,
                cost_input=input_cost,
                cost_cache_read=cache_cost,
                cost_cache_write=Decimal(0),
                cost_output=output_cost,
                cost_source="computed",
                price_model_id=model,
                attributes={
                    "gen_ai.system": provider,
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": model,
                    "gen_ai.response.model": response_model or model,
                    "gen_ai.usage.input_tokens": input_tokens,
                    "gen_ai.usage.output_tokens": output_tokens,
                    "gen_ai.response.finish_reasons": ["stop"],
                    "server.address": f"api.{provider}.com",
                },
                resource_attributes={
                    "service.name": service,
                    "deployment.environment": "production",
                    "telemetry.sdk.language": "python",
                    "telemetry.sdk.version": "1.39.0",
                },
                instrumentation_scope="opentelemetry.instrumentation.openai",
                response_id=f"chatcmpl-{seed}-{i}" if shape == "root" else None,
            )
        )
        if users:
            user = rng.randrange(users)
            rows[-1] = replace(
                rows[-1], user_id=f"user-{user}", session_id=f"session-{user}-{rng.randrange(20)}"
            )
    return rows


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def _unnest_sql() -> str:
    quoted = ", ".join(f'"{c}"' for c in COLUMNS)
    arrays = ", ".join(f"${i + 2}::{PG_TYPES[c]}[]" for i, c in enumerate(COLUMNS))
    returning = ", ".join(
        (
            '"timestamp"',
            *ROLLUP_KEYS,
            "status",
            "error_type",
            "duration_ms",
            *TOKEN_COLUMNS,
            "cost",
            "cost_source",
        )
    )
    return f"""
        WITH ins AS (
            INSERT INTO telemetry_events (organization_id, {quoted})
            SELECT $1::uuid, u.* FROM unnest({arrays}) AS u
            ON CONFLICT DO NOTHING
            RETURNING {returning}
        ), agg AS ({rollup_aggregates_sql("ins")}
        ), up AS ({rollup_upsert_sql("agg")}
        )
        SELECT count(*) FROM ins"""


UNNEST_SQL = _unnest_sql()
PARTITIONS = PartitionCache()  # as the receiver's writer keeps one
GETTERS = [attrgetter(c) for c in COLUMNS]


async def write_rows_via_unnest(pool: Any, org: uuid.UUID, rows: Sequence[TelemetryRow]) -> int:
    """The alternative bulk path: one array parameter per column, unnest server-side."""
    await ensure_partitions(pool, [r.timestamp for r in rows], partitions=PARTITIONS)
    columns = [[get(r) for r in rows] for get in GETTERS]
    async with tenant_transaction(pool, org) as conn:
        inserted: int = await conn.fetchval(UNNEST_SQL, org, *columns)
    return inserted


async def timed(
    label: str, batches: list[list[Any]], call: Callable[[list[Any]], Awaitable[Any]]
) -> float:
    started = time.perf_counter()
    for batch in batches:
        await call(batch)
    elapsed = time.perf_counter() - started
    rate = sum(len(b) for b in batches) / elapsed
    print(f"  {label:<44} {rate:>10,.0f} rows/s  ({elapsed:.2f} s)")
    return rate


async def run(admin_url: str, batch_count: int, rounds: int, shape: str, users: int) -> None:
    name = f"aethermind_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = with_database(admin_url, name)
    try:
        pool = await create_pool(url, min_size=1, max_size=2)
        await migrate(pool)
        async with owner_transaction(pool) as conn:
            org = await conn.fetchval(
                "INSERT INTO organizations (name, slug, plan, rate_limit_per_min, retention_days)"
                " VALUES ('bench', 'bench', 'PRO', 60000, 90) RETURNING id"
            )
            await conn.execute(
                "CREATE TABLE bench_raw (organization_id uuid, "
                + ", ".join(f'"{c}" {PG_TYPES[c]}' for c in COLUMNS)
                + ")"
            )
            await conn.execute("GRANT INSERT ON bench_raw TO aethermind_app")
        paths = 4 if shape == "root" else 3
        print(f"building {rounds * paths} x {batch_count} batches of {BATCH} {shape} rows...")
        # Distinct rows per run and per round, so every measured write inserts new spans.
        sets = [build_rows(batch_count * BATCH, s, shape, users) for s in range(rounds * paths)]
        if shape == "root":
            for r in range(rounds):
                sets[paths * r + 3] = [replace(x, response_id=None) for x in sets[paths * r + 3]]
        chunk = lambda xs: [xs[i : i + BATCH] for i in range(0, len(xs), BATCH)]  # noqa: E731
        record = attrgetter(*COLUMNS)

        async def raw_copy(batch: list[TelemetryRow]) -> None:
            records = [(org, *record(r)) for r in batch]
            async with pool.acquire() as conn, conn.transaction():
                await conn.copy_records_to_table(
                    "bench_raw", records=records, columns=["organization_id", *COLUMNS]
                )

        async def writer(batch: list[TelemetryRow]) -> None:
            await write_rows(pool, org, batch, partitions=PARTITIONS)

        async def unnest(batch: list[TelemetryRow]) -> None:
            await write_rows_via_unnest(pool, org, batch)

        # Warm up: partitions, prepared statements, caches.
        await write_rows(pool, org, build_rows(BATCH, 999, shape), partitions=PARTITIONS)
        await write_rows_via_unnest(pool, org, build_rows(BATCH, seed=998))
        await raw_copy(build_rows(BATCH, seed=997))

        results: dict[str, list[float]] = {"copy": [], "writer": [], "unnest": [], "bare": []}
        for r in range(rounds):
            print(f"round {r + 1}:")
            results["copy"].append(
                await timed("raw COPY into plain unindexed table", chunk(sets[paths * r]), raw_copy)
            )
            results["writer"].append(
                await timed(
                    "write_rows (COPY staging + rollup)", chunk(sets[paths * r + 1]), writer
                )
            )
            results["unnest"].append(
                await timed(
                    "alternative: unnest INSERT + rollup", chunk(sets[paths * r + 2]), unnest
                )
            )
            if shape == "root":
                results["bare"].append(
                    await timed(
                        "write_rows, no response ids (no twins)", chunk(sets[paths * r + 3]), writer
                    )
                )
        copy_rate = statistics.median(results["copy"])
        writer_rate = statistics.median(results["writer"])
        unnest_rate = statistics.median(results["unnest"])
        print()
        print(f"median raw COPY baseline        : {copy_rate:>10,.0f} rows/s")
        shown = [("write_rows (COPY staging)", writer_rate), ("unnest alternative", unnest_rate)]
        if results["bare"]:
            shown.append(("write_rows, no response ids", statistics.median(results["bare"])))
        for label, rate in shown:
            print(f"median {label:<25}: {rate:>10,.0f} rows/s  ratio {rate / copy_rate:.2f}")
        # Other processes on a small machine disturb single rounds; the per-round ratio (both
        # figures measured back to back) is the steadier number.
        per_round = statistics.median(
            w / c for w, c in zip(results["writer"], results["copy"], strict=True)
        )
        print(f"median per-round ratio write_rows / baseline: {per_round:.2f}")
        verdict = "MET" if min(per_round, writer_rate / copy_rate) >= 0.5 else "NOT MET"
        print(f"target: write_rows >= 0.50 x baseline -> {verdict}")
        await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--batches", type=int, default=60, help="batches of 512 rows per measurement"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shape", choices=("agent", "root"), default="agent")
    parser.add_argument(
        "--users", type=int, default=0, help="each span for one of this many users (0: none)"
    )
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    args = parser.parse_args()
    if args.database_url:
        await run(args.database_url, args.batches, args.rounds, args.shape, args.users)
        return
    with tempfile.TemporaryDirectory(prefix="aethermind-bench-") as tmp:
        Path(tmp).chmod(0o711)  # as root, the server's own OS user must enter it
        server = EmbeddedPostgres(Path(tmp) / "data")
        url = await server.start(timeout=120)
        print(f"embedded PostgreSQL at {url}")
        try:
            await run(url, args.batches, args.rounds, args.shape, args.users)
        finally:
            await server.stop()


if __name__ == "__main__":
    asyncio.run(main())
