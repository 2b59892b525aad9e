"""Query latency on 10M spans of one organization over 90 days, rollup path next to the same
query on raw rows, measured in the same run:

* 30-day summary grouped by provider, model   (target: p95 <= 50 ms from the rollup)
* 30-day daily series                         (target: p95 <= 100 ms from the rollup)
* top 100 users by cost over 30 days          (target: p95 <= 200 ms; baseline: GROUP BY
                                               over the raw rows)

and, for the record, other top-N and breakdowns by who spent it. The spans name 1M distinct
users (half the spans from a heavy-tailed few, half spread evenly), 100k sessions, 50 agents
and three tags of 10, 1,000 and 10,000 values.

The data is generated server-side with generate_series (the trace index is built after the
load, which is much faster than maintaining it row by row) and the rollup is built with one
INSERT ... SELECT, the same aggregation the writer runs per batch.

    python benchmarks/bench_queries.py [--rows 10000000] [--database-url URL] [--keep]

Without a URL (or env ``DATABASE_URL``) it starts the embedded PostgreSQL in a temp dir.
``--keep`` keeps the database ``aethermind_bench_queries`` (and reuses it when it exists)
so repeated runs skip the load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from aethermind.storage.database import create_pool
from aethermind.storage.dimension_rollups import (
    DAILY_TABLE,
    DIMENSION_KEYS,
    HOURLY_TABLE,
    MONTHLY_SUMS,
    MONTHLY_TABLE,
    dimension_values_sql,
)
from aethermind.storage.embedded import EmbeddedPostgres
from aethermind.storage.migrate import migrate
from aethermind.storage.queries import aggregates
from aethermind.storage.rollups import rollup_aggregates_sql, rollup_regroup_sql, rollup_upsert_sql
from aethermind.storage.scope import owner_transaction
from aethermind.storage.tenants import set_tag_keys
from aethermind.storage.writer import ensure_partitions

DB_NAME = "aethermind_bench_queries"
SLOW = {"top_sessions", "top_customers"}
"""Top N over values spread evenly (no value stands out): the candidate search cannot prove
a bound and groups every value; measured fewer times."""
END = datetime(2025, 6, 1, tzinfo=UTC)
DAYS = 90

LOAD_SQL = """
INSERT INTO telemetry_events (
    organization_id, trace_id, span_id, parent_span_id, name, kind, "timestamp", duration_ms,
    status, error_type, service, environment, provider, operation, request_model,
    response_model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
    reasoning_tokens, total_tokens, cost, cost_input, cost_cache_read, cost_cache_write,
    cost_output, cost_source, price_model_id, attributes, resource_attributes, counted,
    user_id, session_id, agent_name, tags)
SELECT $1::uuid,
       md5(g::text),
       substr(md5((g * 31)::text), 1, 16),
       CASE WHEN g % 4 = 0 THEN NULL ELSE substr(md5((g - g % 4)::text), 1, 16) END,
       'chat ' || m.model, 'CLIENT',
       $2::timestamptz + make_interval(secs => g::double precision * $4 / $3),
       round((exp(6.3 + random() * 1.6))::numeric, 3)::double precision,
       CASE WHEN g % 53 = 0 THEN 'ERROR' ELSE 'UNSET' END,
       CASE WHEN g % 53 = 0 THEN 'RateLimitError' END,
       (ARRAY['checkout-api', 'search', 'support-bot', 'summarizer'])[1 + (g / 7) % 4],
       CASE WHEN g % 10 = 0 THEN 'staging' ELSE 'production' END,
       m.provider, m.operation, m.model, m.response_model,
       t.input_tokens, t.output_tokens, t.input_tokens / 4, 0, 0, t.input_tokens + t.output_tokens,
       CASE WHEN m.priced
            THEN (t.input_tokens * m.in_price + t.output_tokens * m.out_price) / 1e6 END,
       CASE WHEN m.priced THEN t.input_tokens * m.in_price / 1e6 END,
       CASE WHEN m.priced THEN 0 END, CASE WHEN m.priced THEN 0 END,
       CASE WHEN m.priced THEN t.output_tokens * m.out_price / 1e6 END,
       CASE WHEN m.priced THEN 'computed' ELSE 'unknown' END,
       CASE WHEN m.priced THEN m.model END,
       jsonb_build_object('gen_ai.system', m.provider, 'gen_ai.request.model', m.model,
                          'gen_ai.usage.input_tokens', t.input_tokens),
       jsonb_build_object('service.name', 'svc'),
       true,
       -- Users: half the spans from a heavy-tailed few (log-uniform over the ids, as real
       -- spend is: a few users spend most), half spread evenly over all 1M ids.
       'user-' || CASE WHEN g % 2 = 0
                       THEN (g / 2) % 1000000
                       ELSE floor(exp(ln(1000000) * ((g * 7919) % 1000003) / 1000003.0))::bigint
                  END,
       'session-' || (g / 100) % 100000,
       CASE WHEN g % 5 <> 0 THEN 'agent-' || (g * 13) % 50 END,
       jsonb_build_object('team', 'team-' || (g * 7) % 10, 'feature', 'feature-' || (g * 31) % 1000,
                          'customer', 'customer-' || (g * 17) % 10000)
  FROM generate_series($5::bigint, $6::bigint - 1) AS g
 CROSS JOIN LATERAL (
       SELECT (ARRAY['openai', 'openai', 'anthropic', 'anthropic', 'google', 'openai',
                     'mistral'])[k] AS provider,
              (ARRAY['gpt-4o', 'gpt-4o-mini', 'claude-sonnet-4', 'claude-3-5-haiku',
                     'gemini-2.0-flash',
                     'text-embedding-3-small', 'mistral-large'])[k] AS model,
              (ARRAY['gpt-4o-2024-08-06', 'gpt-4o-mini-2024-07-18',
                     'claude-sonnet-4-20250514', NULL,
                     'gemini-2.0-flash', NULL, NULL])[k] AS response_model,
              CASE WHEN k = 6 THEN 'embeddings' ELSE 'chat' END AS operation,
              (ARRAY[2.5, 0.15, 3, 0.8, 0.1, 0.02, 2])[k]::numeric AS in_price,
              (ARRAY[10, 0.6, 15, 4, 0.4, 0, 6])[k]::numeric AS out_price,
              k <> 7 AS priced
         FROM (SELECT 1 + (g * 2654435761 % 7)::int AS k) pick
 ) m
 CROSS JOIN LATERAL (
       SELECT (50 + g * 7919 % 4000)::bigint AS input_tokens,
              (1 + g * 104729 % 800)::bigint AS output_tokens
 ) t
"""


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


async def load(pool: Any, org: Any, rows: int) -> None:
    start = END - timedelta(days=DAYS)
    months = [start + timedelta(days=d) for d in range(0, DAYS + 1, 10)]
    await ensure_partitions(pool, months, max_new=len(months) + 1)
    seconds = DAYS * 86400
    chunk = 1_000_000
    async with owner_transaction(pool) as conn:
        await conn.execute("DROP INDEX IF EXISTS telemetry_events_trace_idx")
    started = time.perf_counter()
    for first in range(0, rows, chunk):
        async with owner_transaction(pool) as conn:
            await conn.execute(
                LOAD_SQL, org, start, rows, seconds, first, min(first + chunk, rows), timeout=None
            )
        print(
            f"  loaded {min(first + chunk, rows):>10,} rows"
            f" ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    async with owner_transaction(pool) as conn:
        await conn.execute(
            "CREATE INDEX telemetry_events_trace_idx"
            " ON telemetry_events (organization_id, trace_id)",
            timeout=None,
        )
        print(f"  trace index built ({time.perf_counter() - started:.0f} s)", flush=True)
        await conn.execute(
            f"WITH agg AS ({rollup_aggregates_sql('telemetry_events WHERE organization_id = $1')})"
            f" {rollup_upsert_sql('agg')}",
            org,
            timeout=None,
        )
        await conn.execute(
            f"WITH d AS ({rollup_regroup_sql('usage_rollup_hourly WHERE organization_id = $1', 'day')})"
            f" {rollup_upsert_sql('d', table='usage_rollup_daily', time_column='day')}",
            org,
            timeout=None,
        )
        print(f"  rollups built ({time.perf_counter() - started:.0f} s)", flush=True)
        # The dimension rollups, month by month (the writer's aggregation, unweighted).
        for month in months_of(END - timedelta(days=DAYS), END):
            spans = (
                "(SELECT * FROM telemetry_events WHERE organization_id = $1"
                f" AND \"timestamp\" >= '{month.isoformat()}'"
                f" AND \"timestamp\" < '{next_month(month).isoformat()}')"
            )
            await conn.execute(
                f"WITH s AS ({dimension_values_sql(spans)}),"
                f" agg AS ({rollup_aggregates_sql('s', keys=DIMENSION_KEYS)})"
                f" {rollup_upsert_sql('agg', table=HOURLY_TABLE, keys=DIMENSION_KEYS, time_first=False)}",
                org,
                timeout=None,
            )
        hours = f"{HOURLY_TABLE} WHERE organization_id = $1"
        await conn.execute(
            f"WITH d AS ({rollup_regroup_sql(hours, 'day', keys=DIMENSION_KEYS)})"
            f" {rollup_upsert_sql('d', table=DAILY_TABLE, time_column='day', keys=DIMENSION_KEYS, time_first=False)}",
            org,
            timeout=None,
        )
        monthly = dict(keys=DIMENSION_KEYS, sums=MONTHLY_SUMS, latency_bounds=False)
        await conn.execute(
            f"WITH m AS ({rollup_regroup_sql(f'{HOURLY_TABLE} WHERE organization_id = $1', 'month', **monthly)})"
            f" {rollup_upsert_sql('m', table=MONTHLY_TABLE, time_column='month', time_first=False, **monthly)}",
            org,
            timeout=None,
        )
        print(f"  dimension rollups built ({time.perf_counter() - started:.0f} s)", flush=True)


def months_of(from_: datetime, to: datetime) -> list[datetime]:
    month = from_.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    months = []
    while month < to:
        months.append(month)
        month = next_month(month)
    return months


def next_month(month: datetime) -> datetime:
    return month.replace(year=month.year + month.month // 12, month=month.month % 12 + 1)


async def measure(label: str, runs: int, call: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    await call()  # warm: plans and buffers
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    p50 = statistics.median(timings)
    p95 = timings[min(len(timings) - 1, round(0.95 * (len(timings) - 1)))]
    print(f"  {label:<40} p50 {p50:>9.1f} ms   p95 {p95:>9.1f} ms   ({runs} runs)")
    return p50, p95


async def run(admin_url: str, rows: int, keep: bool) -> None:
    admin = await asyncpg.connect(admin_url)
    exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DB_NAME)
    if exists and not keep:
        await admin.execute(f'DROP DATABASE "{DB_NAME}" WITH (FORCE)')
        exists = None
    if not exists:
        await admin.execute(f'CREATE DATABASE "{DB_NAME}"')
    url = with_database(admin_url, DB_NAME)
    try:
        pool = await create_pool(url, min_size=1, max_size=2, command_timeout=None)
        await migrate(pool)
        async with owner_transaction(pool) as conn:
            org = await conn.fetchval("SELECT id FROM organizations WHERE slug = 'bench'")
            loaded = org is not None and await conn.fetchval(
                "SELECT count(*) FROM telemetry_events WHERE organization_id = $1", org
            )
        if loaded != rows:
            async with owner_transaction(pool) as conn:
                await conn.execute(
                    "TRUNCATE telemetry_events, usage_rollup_hourly, usage_rollup_daily,"
                    f" {HOURLY_TABLE}, {DAILY_TABLE}, {MONTHLY_TABLE}, organizations CASCADE"
                )
                org = await conn.fetchval(
                    "INSERT INTO organizations"
                    " (name, slug, plan, rate_limit_per_min, retention_days)"
                    " VALUES ('bench', 'bench', 'ENTERPRISE', 600000, 365) RETURNING id"
                )
            await set_tag_keys(pool, org, ["team", "feature", "customer"])
            print(f"loading {rows:,} spans over {DAYS} days...")
            await load(pool, org, rows)
            async with pool.acquire() as conn:
                await conn.execute("RESET ROLE")
                await conn.execute("VACUUM ANALYZE", timeout=None)
        async with owner_transaction(pool) as conn:
            hourly = await conn.fetchval("SELECT count(*) FROM usage_rollup_hourly")
            daily = await conn.fetchval("SELECT count(*) FROM usage_rollup_daily")
        print(f"{rows:,} spans, {hourly:,} hourly and {daily:,} daily rollup rows")

        to = END
        from_ = END - timedelta(days=30)
        results = {}
        print("30-day summary grouped by provider, model:")
        results["summary_rollup"] = await measure(
            "rollup", 40, lambda: aggregates(pool, org, from_, to, group_by=["provider", "model"])
        )
        results["summary_raw"] = await measure(
            "raw rows",
            3,
            lambda: aggregates(pool, org, from_, to, group_by=["provider", "model"], source="raw"),
        )
        print("30-day daily series:")
        results["daily_rollup"] = await measure(
            "rollup", 40, lambda: aggregates(pool, org, from_, to, granularity="day")
        )
        results["daily_raw"] = await measure(
            "raw rows", 3, lambda: aggregates(pool, org, from_, to, granularity="day", source="raw")
        )
        # What the API's default range looks like: the last 30 days up to now, not aligned.
        ragged_from, ragged_to = (
            from_ + timedelta(minutes=17, seconds=23),
            to - timedelta(minutes=13),
        )
        print("30-day summary, unaligned ends (daily + hourly rows + raw partial hours):")
        results["summary_ragged"] = await measure(
            "rollups + raw edges",
            40,
            lambda: aggregates(pool, org, ragged_from, ragged_to, group_by=["provider", "model"]),
        )
        top_users = {"group_by": ["user"], "order_by": "cost_usd", "limit": 100}
        print("Top 100 users by cost over 30 days (dimension rollups: monthly candidates):")
        results["top_users_rollup"] = await measure(
            "dimension rollups", 40, lambda: aggregates(pool, org, from_, to, **top_users)
        )
        results["top_users_raw"] = await measure(
            "raw rows (GROUP BY)",
            3,
            lambda: aggregates(pool, org, from_, to, **top_users, source="raw"),
        )
        middle_from, middle_to = END - timedelta(days=47, minutes=11), END - timedelta(days=17)
        for label, key, shape in (
            ("Top 100 users, 30 days across two months, unaligned:", "top_users_split",
             top_users),
            ("Top 100 sessions by calls, same range:", "top_sessions",
             {"group_by": ["session"], "order_by": "calls", "limit": 100}),
            ("Top 20 customers (tag, 10k values, spread evenly) by cost:", "top_customers",
             {"group_by": ["tag.customer"], "order_by": "cost_usd", "limit": 20}),
            ("Every team (tag, 10 values):", "teams", {"group_by": ["tag.team"]}),
            ("One user's usage by day:", "one_user",
             {"filters": {"user": "user-7"}, "granularity": "day"}),
        ):  # fmt: skip
            print(label)
            results[key] = await measure(
                "dimension rollups",
                5 if key in SLOW else 20,
                lambda shape=shape: aggregates(pool, org, middle_from, middle_to, **shape),
            )
            results[f"{key}_raw"] = await measure(
                "raw rows",
                3,
                lambda shape=shape: aggregates(
                    pool, org, middle_from, middle_to, **shape, source="raw"
                ),
            )
        print()
        p95, raw = results["top_users_rollup"][1], results["top_users_raw"][1]
        verdict = "MET" if p95 <= 200 else "NOT MET"
        print(
            f"top 100 users: p95 {p95:7.1f} ms (target 200 ms: {verdict});"
            f" raw GROUP BY p95 {raw:8.1f} ms; {raw / p95:,.0f}x"
        )
        for name, target, key in (("summary", 50, "summary"), ("daily series", 100, "daily")):
            p95 = results[f"{key}_rollup"][1]
            raw = results[f"{key}_raw"][1]
            verdict = "MET" if p95 <= target else "NOT MET"
            print(
                f"{name:<13}: rollup p95 {p95:7.1f} ms (target {target} ms: {verdict});"
                f" raw p95 {raw:8.1f} ms; {raw / p95:,.0f}x"
            )
        await pool.close()
    finally:
        if not keep:
            await admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        await admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument(
        "--keep", action="store_true", help=f"keep (and reuse) the database {DB_NAME}"
    )
    args = parser.parse_args()
    if args.database_url:
        await run(args.database_url, args.rows, args.keep)
        return
    with tempfile.TemporaryDirectory(prefix="aethermind-bench-") as tmp:
        Path(tmp).chmod(0o711)  # as root, the server's own OS user must enter it
        server = EmbeddedPostgres(Path(tmp) / "data")
        url = await server.start(timeout=120)
        print(f"embedded PostgreSQL at {url}")
        try:
            await run(url, args.rows, keep=False)
        finally:
            await server.stop()


if __name__ == "__main__":
    asyncio.run(main())
