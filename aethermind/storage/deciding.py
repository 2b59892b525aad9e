"""Deciding, inside a write's transaction, which spans count toward totals: the rule is
``counting.py``'s; this is how the writer applies it to spans that arrive in pieces.

The writer inserts a batch's spans with what the batch alone shows (``provisional_flag``):
for a trace of one span, the common case, that is already the answer. Then ``settle``,
under a transaction-scoped advisory lock of the organization:

1. finds the batch's traces that have other stored spans: those with a span naming a parent,
   and those of root spans that ``linked_traces`` lists (spans under the root came first);
2. reads their stored spans back (``TRACE_WINDOW`` around the batch) and decides each such
   trace as a whole;
3. in one statement, flips the stored spans whose decision changed, moves the hourly and
   daily rollups by the new counted spans plus exactly those changes, and records the
   batch's linked traces.

The lock makes two writers holding spans of one trace (workers, replicas) take turns, so the
later one always sees the earlier one's spans; the insert, the heavy part, runs outside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from aethermind.storage.counting import MAX_RECONCILED_SPANS, SpanFacts, counted_spans
from aethermind.storage.rollups import (
    DAILY_UPSERT,
    ROLLUP_KEYS,
    TOKEN_COLUMNS,
    rollup_aggregates_sql,
    rollup_regroup_sql,
    rollup_upsert_sql,
)
from aethermind.storage.span_row import COLUMNS, MONEY_COLUMNS, TRACE_DECIDED_COLUMNS

TRACE_WINDOW = timedelta(hours=24)
"""Spans of one trace are decided together when their start times lie within this of each
other: a batch reads back the stored spans of its traces that start up to this long before
its earliest span and after its latest."""
MAX_RECONCILED_ROWS_PER_WRITE = 50_000
"""Stored spans one write reads back at most; past it, the batch's traces are decided like
oversized ones (``counting.MAX_RECONCILED_SPANS``)."""


def counting_lock_sql(org_sql: str) -> str:
    """The statement that serializes the organization's decisions of what counts (held to
    the end of the transaction); ``org_sql`` is an SQL expression of its id (a parameter,
    or a literal of a validated id). Keyed by organization: tenants never wait on each
    other here."""
    return (
        "SELECT pg_advisory_xact_lock("
        f"hashtextextended('aethermind.counting:' || ({org_sql})::text, 0))"
    )


_TRACE_ID = COLUMNS.index("trace_id")
_SPAN_ID = COLUMNS.index("span_id")
_PARENT = COLUMNS.index("parent_span_id")
_TIMESTAMP = COLUMNS.index("timestamp")
_DURATION = COLUMNS.index("duration_ms")
_ROLE = COLUMNS.index("usage_role")
_SCOPE = COLUMNS.index("instrumentation_scope")
_USAGE_KINDS = tuple(
    COLUMNS.index(c)
    for c in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
              "reasoning_tokens")
)  # fmt: skip
STAGED_COLUMNS: tuple[str, ...] = (*COLUMNS, *TRACE_DECIDED_COLUMNS, "batch", "ord")
"""A staged row, as the writer COPYs it: the span's columns, its provisional "counted", the
group of the grouped write it came in, and its ``ord`` (from 1) in the write."""
STAGED_PROVISIONAL = STAGED_COLUMNS.index(TRACE_DECIDED_COLUMNS[0])
STAGED_BATCH = STAGED_COLUMNS.index("batch")
STAGED_ORD = STAGED_COLUMNS.index("ord")
_PROVISIONAL = STAGED_PROVISIONAL
_ORD = STAGED_ORD
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Row = tuple[Any, ...]
Change = tuple[datetime, str, str, bool, int]
"""A stored span whose "counted" changes: start, trace id, span id, the new value, and what
it moves in the rollups (+1, -1, or 0 for a span this write inserted, not in them yet)."""

_RETURNED = (
    '"timestamp"',
    "trace_id",
    "span_id",
    *ROLLUP_KEYS,
    "status",
    "error_type",
    "duration_ms",
    *TOKEN_COLUMNS,
    "cost",
    "cost_source",
)
"""What the rollups need of a span."""

_RICHNESS_SQL = " + ".join(
    f"({c} IS NOT NULL)::int"
    for c in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
              "reasoning_tokens")
)  # fmt: skip
LINKED_PROBE_SQL = (
    "SELECT trace_id FROM linked_traces WHERE organization_id = $1 AND trace_id = ANY($2::text[])"
)
STORED_TRACE_SPANS_SQL = f"""
    SELECT t.trace_id, e.span_id, e.parent_span_id, e."timestamp", e.duration_ms,
           e.usage_role, e.instrumentation_scope, e.counted, {_RICHNESS_SQL} AS richness
      FROM unnest($2::text[]) AS t(trace_id)
     CROSS JOIN LATERAL (
           SELECT * FROM telemetry_events
            WHERE organization_id = $1 AND trace_id = t.trace_id
              AND "timestamp" >= $3 AND "timestamp" < $4
              AND xmin <> pg_current_xact_id()::xid
            LIMIT {MAX_RECONCILED_SPANS + 1}) e
     LIMIT {MAX_RECONCILED_ROWS_PER_WRITE}"""
"""The stored spans of the given traces in a time range, but those this transaction wrote;
each trace cut at one past ``MAX_RECONCILED_SPANS`` (so an oversized trace shows), the whole
at ``MAX_RECONCILED_ROWS_PER_WRITE``."""


@cache
def count_sql(
    staging_table: str, *, changes: bool = False, linked: bool = False, probe: bool = False
) -> str:
    """$1 organization; $2 per staged ``ord``, whether that span was inserted by this write
    and counts. With ``changes``, $3-$7 the ``Change`` columns. With ``linked``, the next two
    parameters are the traces with a span naming a parent and their latest start. Moves the
    rollups by the new counted spans plus the changes; answers how many stored spans
    changed. (Variants, so a batch with neither pays for neither.)

    With ``probe`` (alone), $3 are the batch's traces, all of root spans: the rollups move
    only if ``linked_traces`` lists none of them, and the answer is those it lists (then
    nothing moved, and the caller decides them with their stored spans first)."""
    staged = ", ".join(
        "coalesce(response_model, request_model) AS model"
        if c == "model"
        else (f"{c}::numeric AS {c}" if c.strip('"') in MONEY_COLUMNS else c)
        for c in _RETURNED
    )
    parts = []
    moved = f"SELECT {staged}, 1 AS weight FROM {staging_table} WHERE ($2::boolean[])[ord]"
    if probe:
        parts.append(f"probe AS ({LINKED_PROBE_SQL.replace('$2', '$3')})")
        moved += " AND NOT EXISTS (SELECT 1 FROM probe)"
    if changes:
        parts.append(f"""changed AS (
            UPDATE telemetry_events t SET counted = c.counted
              FROM unnest($3::timestamptz[], $4::text[], $5::text[], $6::boolean[], $7::int[])
                   AS c(ts, trace_id, span_id, counted, weight)
             WHERE t.organization_id = $1 AND t."timestamp" = c.ts
               AND t.trace_id = c.trace_id AND t.span_id = c.span_id
               AND t.counted <> c.counted
            RETURNING {", ".join(f"t.{c}" for c in _RETURNED)}, c.weight)""")
        moved += f" UNION ALL SELECT {', '.join(_RETURNED)}, weight FROM changed WHERE weight <> 0"
    parts += [
        f"moved AS ({moved})",
        f"agg AS ({rollup_aggregates_sql('moved', weight='weight')})",
        f"up AS ({rollup_upsert_sql('agg')})",
        f"agg_daily AS ({rollup_regroup_sql('agg', 'day')})",
        f"up_daily AS ({DAILY_UPSERT})",
    ]
    if linked:
        first = 8 if changes else 3
        parts.append(f"""linked AS (
            INSERT INTO linked_traces AS l (organization_id, trace_id, last_start)
            SELECT $1::uuid, trace_id, last_start
              FROM unnest(${first}::text[], ${first + 1}::timestamptz[]) AS n(trace_id, last_start)
             ORDER BY trace_id
            ON CONFLICT (organization_id, trace_id) DO UPDATE SET last_start = excluded.last_start
             WHERE l.last_start < excluded.last_start)""")
    answer = (
        "SELECT count(*) FROM changed"
        if changes
        else "SELECT array(SELECT trace_id FROM probe)"
        if probe
        else "SELECT 0"
    )
    return f"WITH {', '.join(parts)} {answer}"


@dataclass(slots=True)
class Batch:
    """A write's spans by trace, with what the deciding needs to know of it in one pass."""

    by_trace: dict[str, list[Row]]
    linked: list[str]
    """Traces with a span naming a parent, in batch order."""
    several: dict[str, set[str]]
    """Traces with several spans in the batch, and their counted span ids from the batch
    alone. A trace of one span is not listed: it counts if it carries usage."""


def batch_of(groups: Sequence[Sequence[Row]]) -> Batch:
    by_trace: dict[str, list[Row]] = {}
    linked: dict[str, None] = {}
    several: set[str] = set()
    for group in groups:
        for row in group:
            trace_id = row[_TRACE_ID]
            spans = by_trace.get(trace_id)
            if spans is None:
                by_trace[trace_id] = [row]
            else:
                spans.append(row)
                several.add(trace_id)
            if row[_PARENT] is not None:
                linked[trace_id] = None
    return Batch(
        by_trace,
        list(linked),
        {t: _decide_trace(t, by_trace[t], [], False, []) for t in several},
    )


def provisional_flag(row: Row, batch: Batch) -> bool:
    """Whether ``row`` counts by what its batch alone shows."""
    if batch.several:
        decided = batch.several.get(row[_TRACE_ID])
        if decided is not None:
            return row[_SPAN_ID] in decided
    return row[_ROLE] is not None


async def settle(
    conn: Any,
    org: str,
    staging_table: str,
    batch: Batch,
    staged: Sequence[Row],
    *,
    inserted_ords: set[int],
    timeout: float | None,
) -> int:
    """Decide the batch's traces with their stored spans and move the rollups (see the
    module docstring); the caller holds the counting lock (``counting_lock_sql``). Returns
    how many stored spans changed whether they count."""
    by_trace, linked = batch.by_trace, batch.linked
    if not linked:
        # Root spans alone (the common case): the rollups move with the batch's own answers
        # in this one statement, unless spans under some of them were stored first.
        flags = _new_counted(staged, inserted_ords, {}, [], once=not batch.several)
        sql = count_sql(staging_table, probe=True)
        wanted: list[str] = await conn.fetchval(sql, org, flags, list(by_trace), timeout=timeout)
        if not wanted:
            return 0
    else:
        linked_set = set(linked)
        roots = [t for t in by_trace if t not in linked_set]
        wanted = list(linked)
        if roots:
            wanted += [r["trace_id"] for r in await conn.fetch(LINKED_PROBE_SQL, org, roots)]
    stored = await _read_back(conn, org, wanted, staged, timeout=timeout) if wanted else []
    stored_by_trace: dict[str, list[Any]] = {}
    for record in stored:
        stored_by_trace.setdefault(record["trace_id"], []).append(record)
    # Read back to the cap: which trace was cut is unknown, so none read is trusted.
    unread = set(wanted) if len(stored) >= MAX_RECONCILED_ROWS_PER_WRITE else set()

    changed: list[Change] = []
    final: dict[str, set[str]] = {
        trace_id: _decide_trace(
            trace_id, by_trace[trace_id], stored_by_trace.get(trace_id, []), trace_id in unread,
            changed,
        )
        for trace_id in wanted
        if trace_id in stored_by_trace or trace_id in unread
    }  # fmt: skip
    new_counted = _new_counted(staged, inserted_ords, final, changed)
    arguments: list[Any] = [new_counted]
    if changed:
        arguments += [list(column) for column in zip(*changed, strict=True)]
    if linked:
        arguments += [linked, [max(r[_TIMESTAMP] for r in by_trace[t]) for t in linked]]
    sql = count_sql(staging_table, changes=bool(changed), linked=bool(linked))
    moved: int = await conn.fetchval(sql, org, *arguments, timeout=timeout)
    return moved


async def _read_back(
    conn: Any, org: str, traces: list[str], staged: Sequence[Row], *, timeout: float | None
) -> list[Any]:
    starts = [row[_TIMESTAMP] for row in staged]
    # Planned for this call's arrays: a plan cached for "some array" was seen to turn each
    # trace's lookup into a scan of the range (80 ms a batch instead of 1).
    await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan", timeout=timeout)
    stored: list[Any] = await conn.fetch(
        STORED_TRACE_SPANS_SQL,
        org,
        traces,
        min(starts) - TRACE_WINDOW,
        max(starts) + TRACE_WINDOW,
        timeout=timeout,
    )
    await conn.execute("SET LOCAL plan_cache_mode = auto", timeout=timeout)
    return stored


def _new_counted(
    staged: Sequence[Row],
    inserted_ords: set[int],
    final: dict[str, set[str]],
    changed: list[Change],
    *,
    once: bool = False,
) -> list[bool]:
    """Per ``ord``, whether the span was inserted by this write (once, if it came twice)
    and counts; a span whose final answer differs from its provisional one is appended to
    ``changed`` with weight 0 (it is not in the rollups yet). ``once``: no trace has two
    spans in the batch, so no span came twice."""
    if not final and once and len(inserted_ords) == len(staged):
        return [row[_PROVISIONAL] for row in staged]  # all new, once: the batch's answers
    flags = [False] * len(staged)
    seen: set[tuple[datetime, str, str]] = set()
    for row in staged:
        key = (row[_TIMESTAMP], row[_TRACE_ID], row[_SPAN_ID])
        if row[_ORD] not in inserted_ords or key in seen:
            continue  # stored before (a re-send, or twice in this write): in the rollups once
        seen.add(key)
        decided = final.get(row[_TRACE_ID])
        now = row[_PROVISIONAL] if decided is None else row[_SPAN_ID] in decided
        flags[row[_ORD] - 1] = now
        if now != row[_PROVISIONAL]:
            changed.append((row[_TIMESTAMP], row[_TRACE_ID], row[_SPAN_ID], now, 0))
    return flags


def _decide_trace(
    trace_id: str,
    new_spans: list[Row],
    known: list[Any],
    unread: bool,
    changed: list[Change],
) -> set[str]:
    """The counted span ids of one trace from its stored (``known``) and arriving spans;
    stored spans whose decision changes are appended to ``changed``."""
    oversized = unread or len(known) > MAX_RECONCILED_SPANS
    if oversized:
        known = []
    ids = {row[_SPAN_ID] for row in new_spans}
    ids.update(record["span_id"] for record in known)
    scopes = {row[_SCOPE] for row in new_spans if row[_ROLE] is not None}
    scopes.update(r["instrumentation_scope"] for r in known if r["usage_role"] is not None)
    if (
        len(scopes) < 2
        and not any(row[_PARENT] in ids or row[_ROLE] == "rollup" for row in new_spans)
        and not any(
            record["parent_span_id"] in ids or record["usage_role"] == "rollup" for record in known
        )
    ):
        # No span of the trace is under another, none sums others, and one instrumentation
        # wrote them all (say, an app's requests under spans that were not GenAI): each
        # request counts.
        decided = {row[_SPAN_ID] for row in new_spans if row[_ROLE] is not None}
        decided.update(r["span_id"] for r in known if r["usage_role"] is not None)
    else:
        decided = _decide_from_facts(new_spans, known)
    if oversized:
        # Decided from this batch alone: requests count, roll-ups never do (their requests
        # may be among the spans not read back).
        return decided & {row[_SPAN_ID] for row in new_spans if row[_ROLE] == "request"}
    for record in known:
        now = record["span_id"] in decided
        if now != record["counted"]:
            weight = 1 if now else -1
            changed.append((record["timestamp"], trace_id, record["span_id"], now, weight))
    return decided


def _decide_from_facts(new_spans: list[Row], known: list[Any]) -> set[str]:
    """``counting.counted_spans`` over the stored and arriving spans of one trace."""
    facts: dict[str, SpanFacts] = {}
    for record in known:
        facts[record["span_id"]] = _facts(
            record["span_id"],
            record["parent_span_id"],
            record["timestamp"],
            record["duration_ms"],
            record["usage_role"],
            record["richness"],
            record["instrumentation_scope"],
        )
    for row in new_spans:
        if row[_SPAN_ID] not in facts:
            facts[row[_SPAN_ID]] = _facts(
                row[_SPAN_ID],
                row[_PARENT],
                row[_TIMESTAMP],
                row[_DURATION],
                row[_ROLE],
                sum(row[i] is not None for i in _USAGE_KINDS),
                row[_SCOPE],
            )
    return counted_spans(facts.values())


def _facts(  # noqa: PLR0917 - one call per span, in column order
    span_id: str,
    parent: str | None,
    start: datetime,
    duration_ms: float | None,
    role: str | None,
    richness: int,
    scope: str | None,
) -> SpanFacts:
    start_us = (start - _EPOCH) // timedelta(microseconds=1)
    end_us = max(start_us, start_us + int((duration_ms or 0.0) * 1000))
    return SpanFacts(span_id, parent, start_us, end_us, role, richness, scope)  # type: ignore[arg-type]
