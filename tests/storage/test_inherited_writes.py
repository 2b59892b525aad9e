"""Spans that do not say who they are for inherit it from their nearest ancestor, whatever
order the trace arrives in: the stored values, the dimension rollups and the breakdowns by
user, session, agent and tag end up as if the whole trace had arrived at once."""

from __future__ import annotations

import itertools
from dataclasses import replace
from decimal import Decimal
from typing import Any
from uuid import UUID

from hypothesis import given

from aethermind.storage import queries
from aethermind.storage.span_row import TelemetryRow
from aethermind.storage.tenants import set_tag_keys
from aethermind.storage.writer import write_rows
from tests.storage.factories import create_org, owner_fetch
from tests.storage.test_counted_writes import ANY_ARRIVAL, START, arrivals, tree_rows
from tests.storage.test_counting import TREE_COUNTED
from tests.storage.test_writer import rollup_mismatches

OWN: dict[str, dict[str, str]] = {
    "workflow": {"user": "alice", "tag.team": "search"},
    "agent-a": {"agent": "planner", "session": "s-1"},
    "a-llm2": {"user": "bob"},
    "agent-b": {"agent": "coder", "tag.team": "ads"},
    "b-step": {"session": "s-2"},
}
"""What each span's own attributes name (the rest name nothing)."""
RESOURCE = {"user": "service-account", "tag.team": "platform"}
"""What every span's resource names: a span's value until an ancestor gives one."""
_COLUMN = {"user": "user_id", "session": "session_id", "agent": "agent_name"}
_orgs = itertools.count()


def attributed_rows() -> dict[str, TelemetryRow]:
    """``tree_rows`` as the receiver stores them: each span with its own values, else its
    resource's, and what it passes on."""
    rows = {}
    for name, row in tree_rows().items():
        own = OWN.get(name, {})
        values = {**RESOURCE, **own}
        rows[name] = replace(
            row,
            user_id=values.get("user"),
            session_id=values.get("session"),
            agent_name=values.get("agent"),
            tags={"team": values.get("tag.team")},
            inheritable=own or None,
        )
    return rows


ROWS = attributed_rows()


def expected(name: str) -> dict[str, str | None]:
    """A span's values by the rule, from the whole trace: own, nearest ancestor's, resource."""
    by_id = {row.span_id: key for key, row in ROWS.items()}
    found: dict[str, str | None] = {}
    for dimension in ("user", "session", "agent", "tag.team"):
        node: str | None = name
        while node is not None and dimension not in OWN.get(node, {}):
            parent = ROWS[node].parent_span_id
            node = by_id[parent] if parent else None
        found[dimension] = OWN[node][dimension] if node else RESOURCE.get(dimension)
    return found


async def stored_values(pool: Any, org: UUID) -> dict[str, dict[str, str | None]]:
    rows = await owner_fetch(
        pool,
        "SELECT name, user_id, session_id, agent_name, tags->>'team' AS team"
        " FROM telemetry_events WHERE organization_id = $1",
        org,
    )
    return {
        r["name"]: {"user": r["user_id"], "session": r["session_id"], "agent": r["agent_name"],
                    "tag.team": r["team"]}
        for r in rows
    }  # fmt: skip


def test_the_rule_on_the_whole_trace() -> None:
    assert expected("a-client") == {
        "user": "alice", "session": "s-1", "agent": "planner", "tag.team": "search"
    }  # fmt: skip
    assert expected("a-llm2")["user"] == "bob"
    assert expected("b-llm") == {
        "user": "alice", "session": "s-2", "agent": "coder", "tag.team": "ads"
    }  # fmt: skip


@given(batches=arrivals(ROWS))
@ANY_ARRIVAL
async def test_any_order_any_batches_any_resends_give_the_whole_traces_values(
    pool: Any, batches: list[list[TelemetryRow]]
) -> None:
    org = await create_org(pool, f"inherit-{next(_orgs)}")
    await set_tag_keys(pool, org, ["team"])
    for batch in batches:
        await write_rows(pool, org, batch)
    assert await stored_values(pool, org) == {name: expected(name) for name in ROWS}
    assert await rollup_mismatches(pool) == 0
    hour = START.replace(minute=0)
    for dimension in ("user", "session", "agent", "tag.team"):
        rows = await queries.aggregates(
            pool, org, hour, hour + queries.timedelta(hours=1), group_by=[dimension]
        )
        want: dict[str | None, Decimal] = {}
        for name in TREE_COUNTED:
            value = expected(name)[dimension]
            want[value] = want.get(value, Decimal(0)) + (ROWS[name].cost or Decimal(0))
        assert {r[dimension]: r["cost_usd"] for r in rows} == want
