"""The writer keeps totals exact whatever order a trace's spans arrive in, in however many
batches, re-sent or written concurrently: the rollups always equal the sum of the counted
spans, and the counted spans are those storage/counting.py picks from the whole trace."""

from __future__ import annotations

import asyncio
import itertools
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aethermind.semconv.record import UNKNOWN_COST, Cost, UsageRecord
from aethermind.storage import queries
from aethermind.storage.reprice import reprice
from aethermind.storage.span_row import TelemetryRow
from aethermind.storage.writer import write_rows
from tests.storage.factories import create_org, owner_fetch
from tests.storage.test_counting import TREE, TREE_COUNTED
from tests.storage.test_writer import rollup_mismatches

START = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
_orgs = itertools.count()


def tree_rows() -> dict[str, TelemetryRow]:
    """The rows of ``test_counting.TREE``: every carrier with its own distinct usage."""
    rows = {}
    for i, facts in enumerate(TREE):
        request = facts.role == "request"
        carries = facts.role is not None
        rows[facts.span_id] = TelemetryRow(
            trace_id="7" * 32,
            span_id=f"{i + 1:016x}",
            parent_span_id=(
                None
                if facts.parent_span_id is None
                else f"{[f.span_id for f in TREE].index(facts.parent_span_id) + 1:016x}"
            ),
            name=facts.span_id,
            timestamp=START + timedelta(milliseconds=facts.start_us),
            duration_ms=float(facts.end_us - facts.start_us),
            provider="openai" if carries else None,
            operation="chat" if request else ("invoke_agent" if carries else "execute_tool"),
            request_model="gpt-4o" if carries else None,
            input_tokens=1000 * (i + 1) if carries else None,
            output_tokens=10 * (i + 1) if carries else None,
            cache_read_tokens=100 * (i + 1) if facts.richness >= 3 and carries else None,
            total_tokens=1010 * (i + 1) if carries else None,
            cost=Decimal(i + 1) if request else None,
            cost_source="computed" if request else None,
            usage_role=facts.role,
        )
    return rows


ROWS = tree_rows()
EXPECTED_INPUT = sum(r.input_tokens or 0 for k, r in ROWS.items() if k in TREE_COUNTED)
EXPECTED_COST = sum((r.cost or Decimal(0)) for k, r in ROWS.items() if k in TREE_COUNTED)


async def totals(pool: Any, org: UUID) -> tuple[int, int, Decimal | None]:
    """(calls, input tokens, cost) as the API answers them, from the rollups."""
    hour = START.replace(minute=0)
    [row] = await queries.aggregates(
        pool, org, hour - timedelta(hours=1), hour + timedelta(hours=2), source="rollup"
    )
    return row["calls"], row["input_tokens"], row["cost_usd"]


async def counted_names(pool: Any, org: UUID) -> set[str]:
    rows = await owner_fetch(
        pool, "SELECT name FROM telemetry_events WHERE organization_id = $1 AND counted", org
    )
    return {r["name"] for r in rows}


def arrivals(rows: dict[str, TelemetryRow]) -> Any:
    """Hypothesis: ``rows`` in any order, cut into up to five batches, some batches re-sent
    later."""
    return st.tuples(
        st.permutations(list(rows)),
        st.lists(st.integers(min_value=1, max_value=len(rows) - 1), max_size=4, unique=True),
        st.lists(st.integers(min_value=0, max_value=4), max_size=3),
    ).map(lambda drawn: _batches(rows, *drawn))


def _batches(
    rows: dict[str, TelemetryRow], order: list[str], cuts: list[int], resend: list[int]
) -> list[list[TelemetryRow]]:
    bounds = [0, *sorted(cuts), len(order)]
    batches = [[rows[k] for k in order[a:b]] for a, b in itertools.pairwise(bounds)]
    for index in resend:  # a re-sent batch arrives again later
        batches.append(batches[index % len(batches)])
    return batches


ANY_ARRIVAL = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@given(batches=arrivals(ROWS))
@ANY_ARRIVAL
async def test_any_order_any_batches_any_resends_give_the_same_exact_totals(
    pool: Any, batches: list[list[TelemetryRow]]
) -> None:
    org = await create_org(pool, f"order-{next(_orgs)}")
    for batch in batches:
        await write_rows(pool, org, batch)
    assert await counted_names(pool, org) == TREE_COUNTED
    assert await totals(pool, org) == (len(TREE_COUNTED), EXPECTED_INPUT, EXPECTED_COST)
    assert await rollup_mismatches(pool) == 0


async def test_concurrent_writers_of_one_trace_decide_as_one(pool: Any) -> None:
    """Each span in its own write, all at once, on separate connections: the counting lock
    makes each writer see the spans the others committed."""
    org = await create_org(pool, "concurrent")
    rows = list(ROWS.values())
    for seed in range(3):
        random.Random(seed).shuffle(rows)
        await asyncio.gather(*(write_rows(pool, org, [row]) for row in rows))
        assert await counted_names(pool, org) == TREE_COUNTED
        assert await totals(pool, org) == (len(TREE_COUNTED), EXPECTED_INPUT, EXPECTED_COST)
    assert await rollup_mismatches(pool) == 0


async def test_the_raw_path_and_the_trace_view_agree_with_the_rollups(pool: Any) -> None:
    org = await create_org(pool, "views")
    await write_rows(pool, org, list(ROWS.values())[::-1])
    [raw] = await queries.aggregates(
        pool, org, START - timedelta(minutes=5), START + timedelta(minutes=5), source="raw"
    )
    assert (raw["calls"], raw["input_tokens"], raw["cost_usd"]) == await totals(pool, org)
    spans = await queries.trace_spans(
        pool, org, "7" * 32, since=START - timedelta(days=1), until=START + timedelta(days=1)
    )
    shown = {s["name"]: s["counted"] for s in spans}
    assert shown == {
        "workflow": "rollup",
        "agent-a": "rollup",
        "a-llm": "duplicate",
        "a-client": True,
        "a-tool": False,
        "a-llm2": True,
        "agent-b": "rollup",
        "b-step": "rollup",
        "b-llm": True,
    }
    [top] = await queries.top_traces(
        pool, org, START - timedelta(minutes=5), START + timedelta(minutes=5)
    )
    assert top["cost_usd"] == EXPECTED_COST
    assert top["spans"] == len(ROWS)


async def test_repricing_moves_the_rollups_for_counted_spans_only(pool: Any) -> None:
    """The duplicate layer (a-llm) and the counted spans all get new costs; only the counted
    ones' change reaches the totals."""
    org = await create_org(pool, "reprice")
    await write_rows(pool, org, list(ROWS.values()))

    def per_token(record: UsageRecord, when: datetime) -> Cost:
        if not record.is_llm_call:
            return UNKNOWN_COST  # as the price book does: roll-ups and tools are not priced
        total = Decimal(record.input_tokens or 0) * Decimal("0.000001")
        return Cost(source="computed", total=total, input=total, price_model_id="per-token")

    hour = START.replace(minute=0)
    result = await reprice(pool, org, hour, hour + timedelta(hours=1), per_token)
    requests = {k for k, r in ROWS.items() if r.usage_role == "request"}
    assert result.changed == len(requests)
    assert await rollup_mismatches(pool) == 0
    want = sum(Decimal(ROWS[k].input_tokens or 0) for k in TREE_COUNTED) * Decimal("0.000001")
    assert (await totals(pool, org))[2] == want


def twin_rows() -> dict[str, TelemetryRow]:
    """Root request spans of one request in different traces (each instrumentation started a
    trace of its own), matched by response id:

    - R (an instrumentation's span) and S (the SDK's own, inside R's interval) share msg_1;
      R reported more usage kinds, so R counts, until C arrives: a request span under R, as
      rich and nearer the wire. R's own trace then counts C, not R, and S counts for msg_1.
    - U and V share msg_2 with equal usage: V, the shorter (nearer the wire), counts.
    - W and X share msg_3 but come from one scope: two requests (a provider repeating ids),
      both count.
    """
    sdk, instrumentation = "com.anthropic.sdk.python", "opentelemetry.instrumentation.anthropic"
    spans = {  # name: (trace, parent, scope, response id, start ms, duration ms, usage kinds)
        "R": ("1", None, instrumentation, "msg_1", 0, 30, 4),
        "C": ("1", "R", "client", None, 5, 20, 4),
        "S": ("2", None, sdk, "msg_1", 2, 26, 3),
        "U": ("3", None, instrumentation, "msg_2", 100, 40, 4),
        "V": ("4", None, sdk, "msg_2", 105, 30, 4),
        "W": ("5", None, instrumentation, "msg_3", 200, 10, 4),
        "X": ("6", None, instrumentation, "msg_3", 200, 10, 4),
    }
    ids = {name: f"{i + 1:016x}" for i, name in enumerate(spans)}
    rows = {}
    for i, (name, (trace, parent, scope, response_id, start, duration, kinds)) in enumerate(
        spans.items()
    ):
        rows[name] = TelemetryRow(
            trace_id=trace * 32,
            span_id=ids[name],
            parent_span_id=None if parent is None else ids[parent],
            name=name,
            timestamp=START + timedelta(milliseconds=start),
            duration_ms=float(duration),
            provider="anthropic",
            operation="chat",
            request_model="claude-sonnet-4-5",
            input_tokens=1000 * (i + 1),
            output_tokens=10 * (i + 1),
            cache_read_tokens=100 if kinds >= 3 else None,
            cache_write_tokens=50 if kinds >= 4 else None,
            total_tokens=1010 * (i + 1),
            cost=Decimal(i + 1),
            cost_source="computed",
            usage_role="request",
            instrumentation_scope=scope,
            response_id=response_id,
        )
    return rows


TWINS = twin_rows()
TWINS_COUNTED = {"C", "S", "V", "W", "X"}


@given(batches=arrivals(TWINS))
@ANY_ARRIVAL
async def test_twins_in_different_traces_count_once_in_any_order(
    pool: Any, batches: list[list[TelemetryRow]]
) -> None:
    org = await create_org(pool, f"twins-{next(_orgs)}")
    for batch in batches:
        await write_rows(pool, org, batch)
    assert await counted_names(pool, org) == TWINS_COUNTED
    want_input = sum(r.input_tokens or 0 for k, r in TWINS.items() if k in TWINS_COUNTED)
    want_cost = sum(r.cost or Decimal(0) for k, r in TWINS.items() if k in TWINS_COUNTED)
    assert await totals(pool, org) == (len(TWINS_COUNTED), want_input, want_cost)
    assert await rollup_mismatches(pool) == 0


async def test_a_twin_hands_the_count_back_when_its_trace_stops_counting_it(pool: Any) -> None:
    """R counts over S until C arrives under R; then S counts. The trace view says why each
    does not."""
    org = await create_org(pool, "twins-handback")
    await write_rows(pool, org, [TWINS["R"]])
    await write_rows(pool, org, [TWINS["S"]])
    assert await counted_names(pool, org) == {"R"}
    await write_rows(pool, org, [TWINS["C"]])
    assert await counted_names(pool, org) == {"C", "S"}
    assert await rollup_mismatches(pool) == 0
    window = {"since": START - timedelta(days=1), "until": START + timedelta(days=1)}
    [s] = await queries.trace_spans(pool, org, "2" * 32, **window)
    assert (s["counted"], s["response_id"]) == (True, "msg_1")
    await write_rows(pool, org, [TWINS["U"], TWINS["V"]])
    [u] = await queries.trace_spans(pool, org, "3" * 32, **window)
    assert u["counted"] == "duplicate"


async def test_concurrent_twins_count_once(pool: Any) -> None:
    org = await create_org(pool, "twins-concurrent")
    rows = list(TWINS.values())
    for seed in range(3):
        random.Random(seed).shuffle(rows)
        await asyncio.gather(*(write_rows(pool, org, [row]) for row in rows))
        assert await counted_names(pool, org) == TWINS_COUNTED
    assert await rollup_mismatches(pool) == 0


async def test_a_twin_arriving_with_a_resent_span_is_matched_with_the_stored_one(
    pool: Any,
) -> None:
    """R is stored; then S arrives in one batch with R sent again, in either order."""
    for name, batch in (("sr", ["S", "R"]), ("rs", ["R", "S"])):
        org = await create_org(pool, f"twins-resent-{name}")
        await write_rows(pool, org, [TWINS["R"]])
        await write_rows(pool, org, [TWINS[k] for k in batch])
        assert await counted_names(pool, org) == {"R"}
        elsewhere = await owner_fetch(
            pool,
            "SELECT name FROM telemetry_events WHERE organization_id = $1 AND counted_elsewhere",
            org,
        )
        assert [r["name"] for r in elsewhere] == ["S"]
    assert await rollup_mismatches(pool) == 0
