"""Deterministic TelemetryRow builders for storage tests."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from aethermind.storage.scope import owner_transaction
from aethermind.storage.span_row import TelemetryRow

BASE_TIME = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)

MODELS: Sequence[tuple[str, str, Decimal | None]] = (
    ("openai", "gpt-4o", Decimal("0.0000025")),
    ("openai", "gpt-4o-mini", Decimal("0.00000015")),
    ("anthropic", "claude-sonnet-4", Decimal("0.000003")),
    ("mystery", "unknown-model", None),
)


def make_rows(
    n: int,
    *,
    start: datetime = BASE_TIME,
    spacing: timedelta = timedelta(minutes=7),
    seed: int = 1,
    trace_prefix: str = "",
) -> list[TelemetryRow]:
    """``n`` realistic spans, ``spacing`` apart, cycling through providers, models,
    services and environments, some errors and some unpriced; most for one of a few dozen
    users (a few spending most), in sessions of a few spans, some under an agent, with the
    tag keys ``team`` and ``feature`` in force (``feature`` mostly without a value)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        provider, model, per_token = MODELS[i % len(MODELS)]
        input_tokens = rng.randint(10, 5000)
        output_tokens = rng.randint(1, 1500)
        cost = (
            None
            if per_token is None
            else (per_token * (input_tokens + 4 * output_tokens)).quantize(Decimal("1e-12"))
        )
        user = min(int(rng.paretovariate(1.2)), 40)
        rows.append(
            TelemetryRow(
                trace_id=f"{trace_prefix}{seed:04x}{i:028x}"[-32:],
                span_id=f"{i:016x}",
                name=f"chat {model}",
                timestamp=start + spacing * i,
                kind="CLIENT",
                duration_ms=round(rng.lognormvariate(6.5, 1.0), 3),
                status="ERROR" if i % 11 == 0 else "OK",
                error_type="RateLimitError" if i % 11 == 0 else None,
                service=("checkout", "search", "support")[i % 3],
                environment=("prod", "staging")[i % 2],
                provider=provider,
                operation="chat",
                request_model=model,
                response_model=f"{model}-2025" if i % 2 else None,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cache_read_tokens=rng.randint(0, input_tokens // 2),
                cache_write_tokens=0,
                reasoning_tokens=rng.randint(0, output_tokens // 3),
                total_tokens=input_tokens + output_tokens,
                cost=cost,
                cost_input=cost,
                cost_output=Decimal(0) if cost is not None else None,
                cost_source="computed" if cost is not None else "unknown",
                price_model_id=model if cost is not None else None,
                # Some calls report their own cost (a gateway's), beside ours.
                provided_cost=Decimal(i % 97) / 1000 if i % 4 == 1 else None,
                service_tier=("batch" if i % 13 == 5 else None),
                attributes={"gen_ai.system": provider, "gen_ai.request.model": model, "i": i},
                resource_attributes={"service.name": ("checkout", "search", "support")[i % 3]},
                user_id=None if i % 7 == 3 else f"user-{user}",
                session_id=f"session-{seed}-{i // 4}",
                agent_name=("planner", "coder", None)[i % 3],
                tags={
                    "team": ("search", "ads")[user % 2],
                    "feature": "chat" if i % 5 == 0 else None,
                },
            )
        )
    return rows


async def create_org(pool: Any, slug: str, *, retention_days: int = 30) -> UUID:
    """An organization row inserted directly (tenants.py has its own tests)."""
    async with owner_transaction(pool) as conn:
        org_id: UUID = await conn.fetchval(
            "INSERT INTO organizations (name, slug, plan, rate_limit_per_min, retention_days) "
            "VALUES ($1, $1, 'FREE', 6000, $2) RETURNING id",
            slug,
            retention_days,
        )
    return org_id


async def owner_fetch(pool: Any, sql: str, *args: Any) -> list[asyncpg.Record]:
    async with owner_transaction(pool) as conn:
        return list(await conn.fetch(sql, *args))
