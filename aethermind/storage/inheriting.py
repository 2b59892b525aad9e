"""Applying the inheritance rule (``inheritance.py``) inside a write's transaction, when
spans of a trace arrive in pieces: the write's spans that name a parent take the values of
their stored ancestors, and stored spans take the values of the write's spans above them.

``deciding.settle`` calls ``apply_inheritance`` under the counting lock, after reading the
traces back and before it moves the rollups for the write's own spans:

- a span this write inserted gets its values in the table and in the staging table, which
  the rollups are then moved from (it is not in them yet);
- a stored span gets its values in the table, and the dimension rollups move by its old
  values out and its new values in, if it counts (the usage rollups have no such keys).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aethermind.storage.dimension_rollups import dimension_rollup_ctes
from aethermind.storage.dimensions import ATTRIBUTION
from aethermind.storage.inheritance import Values, nearest_values
from aethermind.storage.rollups import ROLLUP_INPUTS
from aethermind.storage.span_row import COLUMNS
from aethermind.storage.tags import TAG_PREFIX

ATTRIBUTION_COLUMNS: tuple[str, ...] = (*ATTRIBUTION.values(), "tags")
"""The stored columns a span's inherited values land in (the ``ATTRIBUTION`` dimensions'
columns, then the tags)."""
_SPAN_ID = COLUMNS.index("span_id")
_TRACE_ID = COLUMNS.index("trace_id")
_PARENT = COLUMNS.index("parent_span_id")
_INHERITABLE = COLUMNS.index("inheritable")
_VALUE_COLUMNS = tuple(COLUMNS.index(c) for c in ATTRIBUTION_COLUMNS)


@dataclass(frozen=True, slots=True)
class Attribution:
    """A span's stored values: user, session, agent and tags (each key in force, None for
    one without a value)."""

    values: tuple[str | None, ...]
    tags: Mapping[str, str | None] | None

    def wanted(self, given: Mapping[str, str] | None) -> list[str]:
        """The dimensions this span does not give itself (those it may inherit)."""
        names = [*ATTRIBUTION, *(TAG_PREFIX + key for key in self.tags or ())]
        return [name for name in names if not given or name not in given]

    def with_values(self, inherited: Values) -> Attribution | None:
        """These values with ``inherited`` applied; None when nothing changes."""
        values = tuple(
            inherited.get(name, value) for name, value in zip(ATTRIBUTION, self.values, strict=True)
        )
        tags = self.tags
        if tags is not None:
            tags = {key: inherited.get(TAG_PREFIX + key, value) for key, value in tags.items()}
        if values == self.values and tags == self.tags:
            return None
        return Attribution(values, tags)


@dataclass(frozen=True, slots=True)
class Inherited:
    """What a write changes: new values of stored spans (start, trace id, span id) and of
    the write's own spans (by ``ord`` in the staging table)."""

    stored: list[tuple[Any, str, str, Attribution]]
    staged: list[tuple[int, Attribution]]


def inherited_values(
    traces: Iterable[str],
    staged: Sequence[tuple[Any, ...]],
    stored: Mapping[str, Sequence[Any]],
    *,
    inserted_ords: set[int],
    ord_index: int,
) -> Inherited:
    """The spans of ``traces`` (the write's ``staged`` rows it inserted; and their
    ``stored`` records) whose values change by the rule: each span that does not give a
    value itself takes its nearest ancestor's, where one gives it."""
    changes = Inherited([], [])
    wanted = set(traces)
    new_spans: dict[str, list[tuple[Any, ...]]] = {}
    for row in staged:
        if row[_TRACE_ID] in wanted and row[ord_index] in inserted_ords:
            new_spans.setdefault(row[_TRACE_ID], []).append(row)
    for trace_id in wanted:
        records = stored.get(trace_id, ())
        rows = new_spans.get(trace_id, [])
        parent_of: dict[str, str | None] = {r["span_id"]: r["parent_span_id"] for r in records}
        given: dict[str, Mapping[str, str] | None] = {
            r["span_id"]: r["inheritable"] for r in records
        }
        for row in rows:
            parent_of[row[_SPAN_ID]] = row[_PARENT]
            given[row[_SPAN_ID]] = row[_INHERITABLE]
        if not any(given.values()):
            continue
        for record in records:
            if record["parent_span_id"] is None:
                continue
            now = Attribution(tuple(record[c] for c in ATTRIBUTION.values()), record["tags"])
            new = _inherit(now, record["inheritable"], record["parent_span_id"], parent_of, given)
            if new is not None:
                changes.stored.append(
                    (record["timestamp"], trace_id, record["span_id"], new)
                )  # fmt: skip
        for row in rows:
            if row[_PARENT] is None:
                continue
            now = Attribution(tuple(row[i] for i in _VALUE_COLUMNS[:-1]), row[_VALUE_COLUMNS[-1]])
            new = _inherit(now, row[_INHERITABLE], row[_PARENT], parent_of, given)
            if new is not None:
                changes.staged.append((row[ord_index], new))
    return changes


def _inherit(
    now: Attribution,
    own: Mapping[str, str] | None,
    parent: str,
    parent_of: Mapping[str, str | None],
    given: Mapping[str, Mapping[str, str] | None],
) -> Attribution | None:
    wanted = now.wanted(own)
    if not wanted:
        return None
    inherited = nearest_values(wanted, parent, parent_of, given)
    return now.with_values(inherited) if inherited else None


_SPAN_MEASURES = ROLLUP_INPUTS
_COLUMNS = ", ".join(ATTRIBUTION_COLUMNS)


def _arrays(first: int) -> str:
    """The new values' array parameters, from ``$first``, one per ``ATTRIBUTION_COLUMNS``."""
    return ", ".join(
        f"${first + i}::{'jsonb' if c == 'tags' else 'text'}[]"
        for i, c in enumerate(ATTRIBUTION_COLUMNS)
    )


_NEW = _arrays(5)
STORED_SQL = f"""
    WITH c AS (
        SELECT * FROM unnest($2::timestamptz[], $3::text[], $4::text[], {_NEW})
               AS c(ts, trace_id, span_id, {_COLUMNS})
    ), old AS (
        SELECT e."timestamp", e.trace_id, e.span_id, e.counted,
               {", ".join(f"e.{c}" for c in (*_SPAN_MEASURES, *ATTRIBUTION_COLUMNS))}
          FROM c JOIN telemetry_events e
            ON e.organization_id = $1 AND e."timestamp" = c.ts
           AND e.trace_id = c.trace_id AND e.span_id = c.span_id
    ), updated AS (
        UPDATE telemetry_events t SET {", ".join(f"{c} = c.{c}" for c in ATTRIBUTION_COLUMNS)}
          FROM c
         WHERE t.organization_id = $1 AND t."timestamp" = c.ts
           AND t.trace_id = c.trace_id AND t.span_id = c.span_id
    ), moved AS (
        SELECT "timestamp", {", ".join(_SPAN_MEASURES)}, {_COLUMNS}, -1 AS weight
          FROM old WHERE counted
        UNION ALL
        SELECT o."timestamp", {", ".join(f"o.{c}" for c in _SPAN_MEASURES)},
               {", ".join(f"c.{c}" for c in ATTRIBUTION_COLUMNS)}, 1
          FROM old o JOIN c ON c.ts = o."timestamp" AND c.trace_id = o.trace_id
                           AND c.span_id = o.span_id
         WHERE o.counted
    ), {", ".join(dimension_rollup_ctes("moved"))}
    SELECT count(*) FROM old"""
"""$1 organization; $2-$4 stored spans' keys, then their new values (``ATTRIBUTION_COLUMNS``):
sets them and moves the dimension rollups for those that count."""


def staged_sql(staging_table: str) -> str:
    """$1 organization; $2 ``ord``s of spans this write inserted, then their new values:
    sets them in the table and in the staging table (the rollups move from it later)."""
    new = _arrays(3)
    sets = ", ".join(f"{c} = c.{c}" for c in ATTRIBUTION_COLUMNS)
    return f"""
        WITH c AS (
            SELECT * FROM unnest($2::int[], {new}) AS c(ord, {_COLUMNS})
        ), staged AS (
            UPDATE {staging_table} s SET {sets} FROM c WHERE s.ord = c.ord
            RETURNING s."timestamp", s.trace_id, s.span_id, c.ord
        )
        UPDATE telemetry_events t SET {sets}
          FROM staged JOIN c ON c.ord = staged.ord
         WHERE t.organization_id = $1 AND t."timestamp" = staged."timestamp"
           AND t.trace_id = staged.trace_id AND t.span_id = staged.span_id"""


async def apply_inheritance(
    conn: Any, org: str, staging_table: str, changes: Inherited, *, timeout: float | None
) -> None:
    """Writes ``changes`` (see the module docstring)."""
    if changes.staged:
        ords = [ord_ for ord_, _ in changes.staged]
        await conn.execute(
            staged_sql(staging_table),
            org,
            ords,
            *_columns([a for _, a in changes.staged]),
            timeout=timeout,
        )
    if changes.stored:
        keys = list(zip(*((ts, t, s) for ts, t, s, _ in changes.stored), strict=True))
        await conn.execute(
            STORED_SQL,
            org,
            *(list(k) for k in keys),
            *_columns([a for *_, a in changes.stored]),
            timeout=timeout,
        )


def _columns(attributions: list[Attribution]) -> list[list[Any]]:
    """The new values as one array per column of ``ATTRIBUTION_COLUMNS``."""
    columns: list[list[Any]] = [
        [a.values[i] for a in attributions] for i in range(len(ATTRIBUTION))
    ]
    columns.append([a.tags for a in attributions])
    return columns
