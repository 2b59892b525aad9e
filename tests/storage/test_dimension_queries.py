"""Aggregates by user, session, agent and tag from the dimension rollups (what "auto" reads
for a range with whole hours) equal the same aggregates over the stored spans: every
value's, one value's, and the top N (the threshold search, its growing candidate sets, and
its fallback)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aethermind.storage import dimension_queries
from aethermind.storage.queries import aggregates
from aethermind.storage.tenants import set_tag_keys
from aethermind.storage.writer import write_rows
from tests.storage.factories import create_org, make_rows
from tests.storage.test_queries import MEASURES, assert_same

DIMENSIONS = ("user", "session", "agent", "tag.team", "tag.feature")
START = datetime(2025, 3, 27, 5, 17, tzinfo=UTC)  # the spans run into April
RANGES = (
    (datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 5, 1, tzinfo=UTC)),
    (datetime(2025, 3, 27, 9, 41, tzinfo=UTC), datetime(2025, 4, 4, 13, 5, tzinfo=UTC)),
    (datetime(2025, 3, 29, 14, tzinfo=UTC), datetime(2025, 4, 2, 1, tzinfo=UTC)),
)


@pytest.fixture
async def org(pool: Any) -> Any:
    organization = await create_org(pool, "acme")
    await set_tag_keys(pool, organization, ["team", "feature"])
    await write_rows(pool, organization, make_rows(600, start=START, spacing=timedelta(minutes=23)))
    # And spans that name nobody, stored before the tag keys were named: in every null group
    # of user, session and agent, in no tag's.
    unnamed = make_rows(150, start=START, spacing=timedelta(minutes=71), seed=2)
    await write_rows(
        pool,
        organization,
        [
            replace(row, user_id=None, session_id=None, agent_name=None, tags=None)
            for row in unnamed
        ],
    )
    return organization


@pytest.mark.parametrize("dimension", DIMENSIONS)
@pytest.mark.parametrize("granularity", [None, "day"])
async def test_every_value_and_one_value_equal_the_stored_spans(
    pool: Any, org: Any, dimension: str, granularity: str | None
) -> None:
    for from_, to in RANGES:
        shape: dict[str, Any] = {"group_by": [dimension], "granularity": granularity}
        rollup = await aggregates(pool, org, from_, to, **shape, source="auto")
        raw = await aggregates(pool, org, from_, to, **shape, source="raw")
        assert_same(rollup, raw, (dimension,))
        some = next(r[dimension] for r in raw if r[dimension] is not None)
        one: dict[str, Any] = {"filters": {dimension: some}, "granularity": granularity}
        assert_same(
            await aggregates(pool, org, from_, to, **one, source="auto"),
            await aggregates(pool, org, from_, to, **one, source="raw"),
            (),
        )


@pytest.mark.parametrize("order_by", ["cost_usd", "calls", "total_tokens"])
@pytest.mark.parametrize("dimension", ["user", "session", "tag.team"])
async def test_top_n_equals_the_stored_spans_top_n(
    pool: Any, org: Any, order_by: str, dimension: str
) -> None:
    for from_, to in RANGES:
        for limit in (1, 3, 10):
            asked: dict[str, Any] = {"group_by": [dimension], "order_by": order_by, "limit": limit}
            top = await aggregates(pool, org, from_, to, **asked, source="auto")
            everything = await aggregates(
                pool, org, from_, to, group_by=[dimension], order_by=order_by, source="raw"
            )
            _assert_same_top(top, everything, order_by, limit, dimension)


async def test_top_n_grows_its_candidates_and_falls_back_to_every_value(
    pool: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The months' leaders spent outside the range: the first candidates are not the
    range's leaders, and their exact totals cannot prove the bound."""
    organization = await create_org(pool, "acme")
    day = timedelta(days=1)
    from_, to = datetime(2025, 3, 20, tzinfo=UTC), datetime(2025, 4, 10, tzinfo=UTC)
    spend = [("early", from_ - 15 * day, 10), ("late", to + 10 * day, 10)]
    spend += [("inside", from_ + 5 * day, 3), ("also-inside", to - day, 2)]
    spend += [(f"small-{i}", from_ + i * day, 1) for i in range(6)]
    rows = []
    for user, when, calls in spend:
        made = make_rows(calls, start=when, spacing=timedelta(minutes=5), trace_prefix=user)
        rows += [replace(row, user_id=user) for row in made]
    await write_rows(pool, organization, rows)
    everything = await aggregates(
        pool, organization, from_, to, group_by=["user"], order_by="calls", source="raw"
    )
    assert [r["user"] for r in everything[:2]] == ["inside", "also-inside"]
    # One candidate a month: "early" and "late", nothing in the range; the search grows.
    monkeypatch.setattr(dimension_queries, "FIRST_CANDIDATES", 1)
    for limit in (1, 2):
        asked: dict[str, Any] = {"group_by": ["user"], "order_by": "calls", "limit": limit}
        top = await aggregates(pool, organization, from_, to, **asked)
        _assert_same_top(top, everything, "calls", limit, "user")
    # Past the cap, every value of the range is grouped.
    monkeypatch.setattr(dimension_queries, "MAX_CANDIDATES", 0)
    top = await aggregates(pool, organization, from_, to, **asked)
    _assert_same_top(top, everything, "calls", 2, "user")


def _assert_same_top(
    top: list[dict[str, Any]],
    everything: list[dict[str, Any]],
    order_by: str,
    limit: int,
    dimension: str,
) -> None:
    """The top ``limit`` rows by ``order_by``: the same measures in the same order, and the
    same values wherever the measure is not tied with a value outside the top."""
    expected = everything[:limit]
    assert [r[order_by] for r in top] == [r[order_by] for r in expected]
    outside = {r[order_by] for r in everything[limit:]}
    for row in top:
        if row[order_by] not in outside:
            match = next(r for r in everything if r[dimension] == row[dimension])
            for measure in MEASURES:
                assert row[measure] == match[measure], (measure, row, match)
