"""Deciding, inside a write's transaction, which spans count toward totals: the rule is
``counting.py``'s; this is how the writer applies it to spans that arrive in pieces.

The writer inserts a batch's spans with what the batch alone shows (``provisional_flag``):
for a trace of one span, the common case, that is already the answer. Then ``settle``,
under a transaction-scoped advisory lock of the organization:

1. finds the batch's traces that have other stored spans: those with a span naming a parent,
   and those of root spans that ``linked_traces`` lists (spans under the root came first);
2. reads their stored spans back (``TRACE_WINDOW`` around the batch), applies the values
   spans inherit from their ancestors (``inheriting.py``) and decides each such trace as a
   whole;
3. matches root request spans with their twins in other traces (``counting.twins_counted``:
   the batch's, and those stored with the same response id);
4. in one statement, flips the stored spans whose decision changed, moves the hourly and
   daily usage rollups and the dimension rollups by the new counted spans plus exactly
   those changes, and records the batch's linked traces.

A span stores two answers: ``counted`` (it counts toward totals) and ``counted_elsewhere``
(its trace would count it, but a twin in another trace counts instead); what its own trace
decides is the one or the other.

The lock makes two writers holding spans of one trace (workers, replicas) take turns, so the
later one always sees the earlier one's spans; the insert, the heavy part, runs outside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from aethermind.storage.counting import (
    MAX_RECONCILED_SPANS,
    MAX_TWINS,
    SpanFacts,
    TwinFacts,
    counted_spans,
    twins_counted,
)
from aethermind.storage.dimension_rollups import dimension_rollup_ctes
from aethermind.storage.dimensions import ATTRIBUTION
from aethermind.storage.inheriting import (
    ATTRIBUTION_COLUMNS,
    apply_inheritance,
    inherited_values,
)
from aethermind.storage.rollups import (
    DAILY_UPSERT,
    ROLLUP_INPUTS,
    ROLLUP_KEYS,
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
_RESPONSE_ID = COLUMNS.index("response_id")
_USAGE_KINDS = tuple(
    COLUMNS.index(c)
    for c in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
              "reasoning_tokens")
)  # fmt: skip
STAGED_COLUMNS: tuple[str, ...] = (*COLUMNS, *TRACE_DECIDED_COLUMNS, "batch", "ord")
"""A staged row, as the writer COPYs it: the span's columns, its provisional "counted" and
"counted_elsewhere", the group of the grouped write it came in, and its ``ord`` (from 1) in
the write."""
STAGED_BATCH = STAGED_COLUMNS.index("batch")
STAGED_ORD = STAGED_COLUMNS.index("ord")
_PROVISIONAL = STAGED_COLUMNS.index("counted")
_ELSEWHERE = STAGED_COLUMNS.index("counted_elsewhere")
_ORD = STAGED_ORD
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Row = tuple[Any, ...]
Change = tuple[datetime, str, str, bool, bool, int]
"""A stored span whose answers change: start, trace id, span id, the new "counted" and
"counted_elsewhere", and what it moves in the rollups (+1, -1, or 0 for a span this write
inserted, not in them yet)."""
SpanKey = tuple[str, str]
"""(trace id, span id)."""

_RETURNED = (
    '"timestamp"',
    "trace_id",
    "span_id",
    *ROLLUP_KEYS,
    *ROLLUP_INPUTS,
    *ATTRIBUTION.values(),
    "tags",
)
"""What the rollups (usage and dimension) need of a span."""

_RICHNESS_SQL = " + ".join(
    f"({c} IS NOT NULL)::int"
    for c in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
              "reasoning_tokens")
)  # fmt: skip
_NOT_THIS_WRITE = "xmin <> pg_current_xact_id()::xid"
LINKED_PROBE_SQL = (
    "SELECT trace_id FROM linked_traces WHERE organization_id = $1 AND trace_id = ANY($2::text[])"
)
STORED_TRACE_SPANS_SQL = f"""
    SELECT t.trace_id, e.span_id, e.parent_span_id, e."timestamp", e.duration_ms,
           e.usage_role, e.instrumentation_scope, e.counted, e.counted_elsewhere,
           e.response_id, {_RICHNESS_SQL} AS richness,
           {", ".join(f"e.{c}" for c in ATTRIBUTION_COLUMNS)}, e.inheritable
      FROM unnest($2::text[]) AS t(trace_id)
     CROSS JOIN LATERAL (
           SELECT * FROM telemetry_events
            WHERE organization_id = $1 AND trace_id = t.trace_id
              AND "timestamp" >= $3 AND "timestamp" < $4
              AND {_NOT_THIS_WRITE}
            LIMIT {MAX_RECONCILED_SPANS + 1}) e
     LIMIT {MAX_RECONCILED_ROWS_PER_WRITE}"""
"""The stored spans of the given traces in a time range, but those this transaction wrote;
each trace cut at one past ``MAX_RECONCILED_SPANS`` (so an oversized trace shows), the whole
at ``MAX_RECONCILED_ROWS_PER_WRITE``."""
STORED_TWINS_SQL = f"""
    SELECT e.trace_id, e.span_id, e."timestamp", e.duration_ms, e.instrumentation_scope,
           e.counted, e.counted_elsewhere, e.response_id, {_RICHNESS_SQL} AS richness
      FROM unnest($2::text[]) AS k(response_id)
     CROSS JOIN LATERAL (
           SELECT * FROM telemetry_events
            WHERE organization_id = $1 AND response_id = k.response_id
              AND "timestamp" >= $3 AND "timestamp" < $4 AND {_NOT_THIS_WRITE}
            LIMIT {MAX_TWINS + 1}) e"""
"""The stored spans of the given response ids in a time range (twins: only root request
spans store one), but those this transaction wrote; at most one past ``MAX_TWINS`` an id."""
TWIN_PROBE_SQL = f"""
    SELECT k.response_id FROM unnest($4::text[], $5::text[]) AS k(response_id, scope)
     WHERE EXISTS (
           SELECT 1 FROM (SELECT instrumentation_scope FROM telemetry_events
                           WHERE organization_id = $1 AND response_id = k.response_id
                             AND "timestamp" >= $6 AND "timestamp" < $7 AND {_NOT_THIS_WRITE}
                           LIMIT {MAX_TWINS + 1}) e
            WHERE e.instrumentation_scope IS DISTINCT FROM k.scope)"""
"""Which of the given (response id, scope) pairs have a stored span (before this write) of
that id from another scope: a twin candidate. Bounded per id: a provider that repeats ids
(a local server answering ``chatcmpl-123`` every time) costs one short index range each."""


@cache
def count_sql(
    staging_table: str,
    *,
    changes: bool = False,
    linked: bool = False,
    probe: bool = False,
    twins: bool = False,
) -> str:
    """$1 organization; $2 per staged ``ord``, whether that span was inserted by this write
    and counts. With ``changes``, $3-$8 the ``Change`` columns. With ``linked``, the next two
    parameters are the traces with a span naming a parent and their latest start. Moves the
    rollups by the new counted spans plus the changes; answers how many stored spans
    changed. (Variants, so a batch with neither pays for neither.)

    With ``probe`` (alone), $3 are the batch's traces, all of root spans, and with ``twins``
    also $4-$7 the batch's (response id, scope) pairs and the time range to look in: the
    rollups move only if ``linked_traces`` lists none of the traces and no stored span of
    another scope has one of the ids; the answer is those traces and those ids (then nothing
    moved, and the caller decides them with their stored spans first)."""
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
        if twins:
            parts.append(f"twins AS ({TWIN_PROBE_SQL})")
            moved += " AND NOT EXISTS (SELECT 1 FROM twins)"
    if changes:
        parts.append(f"""changed AS (
            UPDATE telemetry_events t
               SET counted = c.counted, counted_elsewhere = c.counted_elsewhere
              FROM unnest($3::timestamptz[], $4::text[], $5::text[], $6::boolean[],
                          $7::boolean[], $8::int[])
                   AS c(ts, trace_id, span_id, counted, counted_elsewhere, weight)
             WHERE t.organization_id = $1 AND t."timestamp" = c.ts
               AND t.trace_id = c.trace_id AND t.span_id = c.span_id
               AND (t.counted, t.counted_elsewhere) <> (c.counted, c.counted_elsewhere)
            RETURNING {", ".join(f"t.{c}" for c in _RETURNED)}, c.weight)""")
        moved += f" UNION ALL SELECT {', '.join(_RETURNED)}, weight FROM changed WHERE weight <> 0"
    parts += [
        f"moved AS ({moved})",
        f"agg AS ({rollup_aggregates_sql('moved', weight='weight')})",
        f"up AS ({rollup_upsert_sql('agg')})",
        f"agg_daily AS ({rollup_regroup_sql('agg', 'day')})",
        f"up_daily AS ({DAILY_UPSERT})",
        *dimension_rollup_ctes("moved"),
    ]
    if linked:
        first = 9 if changes else 3
        parts.append(f"""linked AS (
            INSERT INTO linked_traces AS l (organization_id, trace_id, last_start)
            SELECT $1::uuid, trace_id, last_start
              FROM unnest(${first}::text[], ${first + 1}::timestamptz[]) AS n(trace_id, last_start)
             ORDER BY trace_id
            ON CONFLICT (organization_id, trace_id) DO UPDATE SET last_start = excluded.last_start
             WHERE l.last_start < excluded.last_start)""")
    if changes:
        answer = "SELECT count(*) FROM changed"
    elif probe:
        ids = "array(SELECT response_id FROM twins)" if twins else "'{}'::text[]"
        answer = f"SELECT array(SELECT trace_id FROM probe), {ids}"
    else:
        answer = "SELECT 0"
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
    response_ids: list[str]
    """The response ids of the batch's root request spans (``span_row.twin_key``), each with
    the scope of a span that gave it (one entry per distinct pair)..."""
    response_scopes: list[str | None]
    """... that scope."""
    elsewhere: set[SpanKey]
    """Spans their trace counts whose twin in the batch counts instead."""


def batch_of(groups: Sequence[Sequence[Row]]) -> Batch:
    by_trace: dict[str, list[Row]] = {}
    linked: dict[str, None] = {}
    several: set[str] = set()
    keyed: list[Row] = []
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
            elif row[_RESPONSE_ID] is not None:
                keyed.append(row)
    decided = {t: _decide_trace(t, by_trace[t], [], False, {}) for t in several}
    elsewhere: set[SpanKey] = set()
    pairs = dict.fromkeys((row[_RESPONSE_ID], row[_SCOPE]) for row in keyed)
    if len({response_id for response_id, _ in pairs}) < len(keyed):
        # Two spans of the batch share a response id: twins, or one span sent twice.
        counts = [r for r in keyed if _counts_in_trace(r, decided)]
        winners = twins_counted(_twin_facts(r) for r in counts)
        elsewhere = {(r[_TRACE_ID], r[_SPAN_ID]) for r in counts} - winners
    return Batch(
        by_trace,
        list(linked),
        decided,
        [response_id for response_id, _ in pairs],
        [scope for _, scope in pairs],
        elsewhere,
    )


def _counts_in_trace(row: Row, decided: dict[str, set[str]]) -> bool:
    """Whether ``row``'s trace counts it, by what its batch alone shows."""
    spans = decided.get(row[_TRACE_ID])
    if spans is not None:
        return row[_SPAN_ID] in spans
    return row[_ROLE] is not None


def provisional_flags(row: Row, batch: Batch) -> tuple[bool, bool]:
    """``row``'s "counted" and "counted_elsewhere" by what its batch alone shows."""
    counts = _counts_in_trace(row, batch.several) if batch.several else row[_ROLE] is not None
    if counts and batch.elsewhere and (row[_TRACE_ID], row[_SPAN_ID]) in batch.elsewhere:
        return False, True
    return counts, False


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
    starts = [row[_TIMESTAMP] for row in staged]
    window = (min(starts) - TRACE_WINDOW, max(starts) + TRACE_WINDOW)
    if not linked:
        # Root spans alone (the common case): the rollups move with the batch's own answers
        # in this one statement, unless spans under some of them were stored first, or
        # twins of some of them.
        flags = _batch_flags(staged, inserted_ords, once=not batch.several)
        arguments: list[Any] = [flags, list(by_trace)]
        if batch.response_ids:
            arguments += [batch.response_ids, batch.response_scopes, *window]
        sql = count_sql(staging_table, probe=True, twins=bool(batch.response_ids))
        wanted, twinned = await conn.fetchrow(sql, org, *arguments, timeout=timeout)
        if not wanted and not twinned:
            return 0
    else:
        linked_set = set(linked)
        roots = [t for t in by_trace if t not in linked_set]
        wanted = list(linked)
        if roots:
            wanted += [r["trace_id"] for r in await conn.fetch(LINKED_PROBE_SQL, org, roots)]
    stored = await _read_back(conn, org, wanted, window, timeout=timeout) if wanted else []
    stored_by_trace: dict[str, list[Any]] = {}
    for record in stored:
        stored_by_trace.setdefault(record["trace_id"], []).append(record)
    # Read back to the cap: which trace was cut is unknown, so none read is trusted.
    unread = set(wanted) if len(stored) >= MAX_RECONCILED_ROWS_PER_WRITE else set()
    inherited = inherited_values(
        [t for t in wanted if t not in unread], staged, stored_by_trace,
        inserted_ords=inserted_ords, ord_index=_ORD,
    )  # fmt: skip
    if inherited.stored or inherited.staged:
        await apply_inheritance(conn, org, staging_table, inherited, timeout=timeout)

    in_trace: dict[SpanKey, tuple[Any, bool]] = {}
    final: dict[str, set[str]] = {
        trace_id: _decide_trace(
            trace_id, by_trace[trace_id], stored_by_trace.get(trace_id, []), trace_id in unread,
            in_trace,
        )
        for trace_id in wanted
        if trace_id in stored_by_trace or trace_id in unread
    }  # fmt: skip
    changed: list[Change] = []
    new_counted = _new_answers(staged, inserted_ords, final)
    winners = await _match_twins(
        conn, org, staged, new_counted, in_trace, window=window, timeout=timeout
    )
    stored_answers = _stored_answers(in_trace, winners)
    for (trace_id, span_id), (record, counts, elsewhere) in stored_answers.items():
        if (counts, elsewhere) != (record["counted"], record["counted_elsewhere"]):
            weight = int(counts) - int(record["counted"])
            changed.append((record["timestamp"], trace_id, span_id, counts, elsewhere, weight))
    for row in staged:
        ord_ = row[_ORD]
        answer = new_counted.get(ord_)
        if answer is not None and answer != (row[_PROVISIONAL], row[_ELSEWHERE]):
            changed.append((row[_TIMESTAMP], row[_TRACE_ID], row[_SPAN_ID], *answer, 0))
    arguments = [_flags(new_counted, len(staged))]
    if changed:
        arguments += [list(column) for column in zip(*changed, strict=True)]
    if linked:
        arguments += [linked, [max(r[_TIMESTAMP] for r in by_trace[t]) for t in linked]]
    sql = count_sql(staging_table, changes=bool(changed), linked=bool(linked))
    moved: int = await conn.fetchval(sql, org, *arguments, timeout=timeout)
    return moved


async def _read_back(
    conn: Any,
    org: str,
    traces: list[str],
    window: tuple[datetime, datetime],
    *,
    timeout: float | None,
) -> list[Any]:
    # Planned for this call's arrays: a plan cached for "some array" was seen to turn each
    # trace's lookup into a scan of the range (80 ms a batch instead of 1).
    await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan", timeout=timeout)
    stored: list[Any] = await conn.fetch(
        STORED_TRACE_SPANS_SQL, org, traces, *window, timeout=timeout
    )
    await conn.execute("SET LOCAL plan_cache_mode = auto", timeout=timeout)
    return stored


InTrace = dict[SpanKey, tuple[Any, bool]]
"""Stored spans whose own trace's answer is (re)decided by this write: the stored record and
whether the trace counts it (before twins are matched)."""
NewAnswers = dict[int, tuple[bool, bool]]
"""Per ``ord`` of a span this write inserted (once): its "counted" and "counted_elsewhere"."""


def _batch_flags(staged: Sequence[Row], inserted_ords: set[int], *, once: bool) -> list[bool]:
    """Per ``ord``, whether the span was inserted by this write (once, if it came twice) and
    counts by its batch's answer. ``once``: no trace has two spans in the batch, so no span
    came twice."""
    if once and len(inserted_ords) == len(staged):
        return [row[_PROVISIONAL] for row in staged]  # all new, once: the batch's answers
    return _flags(_new_answers(staged, inserted_ords, {}), len(staged))


def _flags(answers: NewAnswers, staged: int) -> list[bool]:
    """Per ``ord`` (of ``staged`` rows), whether the span was inserted and counts."""
    flags = [False] * staged
    for ord_, (counts, _) in answers.items():
        flags[ord_ - 1] = counts
    return flags


def _new_answers(
    staged: Sequence[Row], inserted_ords: set[int], final: dict[str, set[str]]
) -> NewAnswers:
    """The spans this write inserted (once, if one came twice), by ``ord``: their answers by
    their traces, the decided ones (``final``) or the batch's own; before twins are matched
    (``_match_twins`` completes them)."""
    answers: NewAnswers = {}
    seen: set[tuple[datetime, str, str]] = set()
    for row in staged:
        key = (row[_TIMESTAMP], row[_TRACE_ID], row[_SPAN_ID])
        if row[_ORD] not in inserted_ords or key in seen:
            continue  # stored before (a re-send, or twice in this write): in the rollups once
        seen.add(key)
        decided = final.get(row[_TRACE_ID])
        if decided is None:
            answers[row[_ORD]] = (row[_PROVISIONAL], row[_ELSEWHERE])
        else:
            answers[row[_ORD]] = (row[_SPAN_ID] in decided, False)
    return answers


async def _match_twins(
    conn: Any,
    org: str,
    staged: Sequence[Row],
    answers: NewAnswers,
    in_trace: InTrace,
    *,
    window: tuple[datetime, datetime],
    timeout: float | None,
) -> set[SpanKey] | None:
    """The twins' winners (``counting.twins_counted``) among the inserted root request
    spans, the stored spans whose trace's answer changed, and the stored spans that share a
    response id with either; None when none of them has a response id. Completes
    ``answers`` (inserted spans) and adds the stored twins to ``in_trace``."""
    inserted = [
        row for row in staged if row[_ORD] in answers and row[_RESPONSE_ID] is not None
    ]  # fmt: skip
    response_ids = {row[_RESPONSE_ID] for row in inserted}
    response_ids.update(r["response_id"] for r, _ in in_trace.values() if r["response_id"])
    if not response_ids:
        return None
    twins = await conn.fetch(STORED_TWINS_SQL, org, sorted(response_ids), *window, timeout=timeout)
    for record in twins:
        key = (record["trace_id"], record["span_id"])
        if key not in in_trace:
            in_trace[key] = (record, record["counted"] or record["counted_elsewhere"])
    candidates = [
        _twin(key, r["response_id"], r["instrumentation_scope"], r["timestamp"],
              r["duration_ms"], r["richness"])
        for key, (r, counts) in in_trace.items()
        if counts and r["response_id"] is not None
    ]  # fmt: skip
    candidates += [_twin_facts(row) for row in inserted if any(answers[row[_ORD]])]
    winners = twins_counted(candidates)
    for row in inserted:
        if any(answers[row[_ORD]]):
            wins = (row[_TRACE_ID], row[_SPAN_ID]) in winners
            answers[row[_ORD]] = (wins, not wins)
    return winners


def _stored_answers(
    in_trace: InTrace, winners: set[SpanKey] | None
) -> dict[SpanKey, tuple[Any, bool, bool]]:
    """Each stored span of ``in_trace`` with its new "counted" and "counted_elsewhere"."""
    answers = {}
    for key, (record, counts) in in_trace.items():
        if counts and winners is not None and record["response_id"] is not None:
            wins = key in winners
            answers[key] = (record, wins, not wins)
        else:
            answers[key] = (record, counts, False)
    return answers


def _twin_facts(row: Row) -> TwinFacts:
    return _twin(
        (row[_TRACE_ID], row[_SPAN_ID]),
        row[_RESPONSE_ID],
        row[_SCOPE],
        row[_TIMESTAMP],
        row[_DURATION],
        sum(row[i] is not None for i in _USAGE_KINDS),
    )


def _twin(  # noqa: PLR0917 - one call per span, in column order
    key: SpanKey,
    response_id: str,
    scope: str | None,
    start: datetime,
    duration_ms: float | None,
    richness: int,
) -> TwinFacts:
    start_us, end_us = _interval(start, duration_ms)
    return TwinFacts(key[0], key[1], response_id, scope, start_us, end_us, richness)


def _decide_trace(
    trace_id: str,
    new_spans: list[Row],
    known: list[Any],
    unread: bool,
    in_trace: InTrace,
) -> set[str]:
    """The span ids one trace counts, from its stored (``known``) and arriving spans; the
    stored spans whose answer changes are added to ``in_trace``."""
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
        if now != (record["counted"] or record["counted_elsewhere"]):
            in_trace[trace_id, record["span_id"]] = (record, now)
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
            record["response_id"],
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
                row[_RESPONSE_ID],
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
    response_id: str | None,
) -> SpanFacts:
    start_us, end_us = _interval(start, duration_ms)
    return SpanFacts(span_id, parent, start_us, end_us, role, richness, scope, response_id)  # type: ignore[arg-type]


def _interval(start: datetime, duration_ms: float | None) -> tuple[int, int]:
    """A span's start and end in microseconds since the epoch."""
    start_us = (start - _EPOCH) // timedelta(microseconds=1)
    return start_us, max(start_us, start_us + int((duration_ms or 0.0) * 1000))
