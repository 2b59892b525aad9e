"""The deployment guide's monitoring queries (section 6) run unchanged on our schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aethermind.storage.scope import owner_transaction
from aethermind.storage.writer import write_rows
from tests.storage.factories import create_org, make_rows

CHECK_RECENT_EVENTS = """
-- Check recent events
SELECT
  organization_id,
  COUNT(*) as event_count,
  SUM(cost) as total_cost,
  MAX(timestamp) as last_event
FROM telemetry_events
WHERE timestamp > NOW() - INTERVAL '1 day'
GROUP BY organization_id;
"""

CHECK_RATE_LIMITS = """
-- Check rate limits
SELECT
  o.name,
  o.plan,
  COUNT(t.id) as events_last_hour
FROM organizations o
LEFT JOIN telemetry_events t
  ON t.organization_id = o.id
  AND t.timestamp > NOW() - INTERVAL '1 hour'
GROUP BY o.id, o.name, o.plan;
"""


async def test_the_deployment_guides_monitoring_queries_run_verbatim(pool: Any) -> None:
    busy = await create_org(pool, "busy")
    await create_org(pool, "idle")
    now = datetime.now(UTC)
    rows = make_rows(12, start=now - timedelta(minutes=110), spacing=timedelta(minutes=10))
    await write_rows(pool, busy, rows)
    async with owner_transaction(pool) as conn:
        recent = await conn.fetch(CHECK_RECENT_EVENTS)
        limits = await conn.fetch(CHECK_RATE_LIMITS)
    assert len(recent) == 1
    assert recent[0]["organization_id"] == busy
    assert recent[0]["event_count"] == 12
    assert recent[0]["total_cost"] == sum((r.cost for r in rows if r.cost is not None), Decimal(0))
    assert recent[0]["last_event"] == rows[-1].timestamp
    by_name = {r["name"]: (r["plan"], r["events_last_hour"]) for r in limits}
    in_last_hour = sum(1 for r in rows if r.timestamp > now - timedelta(hours=1))
    assert by_name["idle"] == ("FREE", 0)
    assert by_name["busy"][0] == "FREE"
    assert abs(by_name["busy"][1] - in_last_hour) <= 1  # a row may cross the hour boundary
