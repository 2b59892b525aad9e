"""Who a span is for when it does not say: its user, session, agent and tags are its own
attributes' values, else its nearest ancestor's in the same trace, else its resource's.

A model call made inside an agent run belongs to that agent; a span under a request handler
that set ``user.id`` belongs to that user. The trace arrives in pieces, so this is applied in
two places with one rule (``nearest_values``):

- the receiver, over the spans of one request, ancestors that are not GenAI spans included
  (they are not stored): ``ingest/convert.py``;
- the writer, over a trace's stored spans and the write's, when spans naming a parent
  arrive (``deciding.settle``): a late ancestor's values reach the spans stored under it,
  and a late child finds its stored ancestors'. Each stored span keeps what it passes on
  (``inheritable``: its own values, else those inherited within its request).

A value a span inherited from a stored ancestor is replaced when a nearer ancestor with a
value arrives; a span keeps its resource's value only while no ancestor has one. Like the
counting rule, this looks ``deciding.TRACE_WINDOW`` around a write, and at most
``MAX_DEPTH`` levels up.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Any

from aethermind.semconv.normalize import own_attribution
from aethermind.storage.dimensions import ATTRIBUTION
from aethermind.storage.tags import TAG_PREFIX, tag_values

Values = dict[str, str]
"""Values by dimension name: ``user``, ``session``, ``agent``, ``tag.<key>``."""
MAX_DEPTH = 64
"""Ancestors looked through at most (a parent chain longer than this, or a cycle, stops)."""


def dimensions_of(tag_keys: tuple[str, ...]) -> tuple[str, ...]:
    """The dimensions a span can inherit, for an organization's tag keys."""
    return (*ATTRIBUTION, *(TAG_PREFIX + key for key in tag_keys))


def own_values(attributes: Mapping[str, Any], tag_keys: tuple[str, ...]) -> Values | None:
    """The values a span's own attributes name (not its resource's); None when none."""
    values: Values = {}
    for name, value in zip(ATTRIBUTION, own_attribution(attributes), strict=True):
        if value is not None:
            values[name] = value
    if tag_keys:
        tags, _ = tag_values(tag_keys, attributes, None)
        for key, tag in (tags or {}).items():
            if tag is not None:
                values[TAG_PREFIX + key] = tag
    return values or None


def nearest_values(
    missing: Iterable[str],
    parent: Hashable | None,
    parent_of: Mapping[Any, Any],
    given: Mapping[Any, Mapping[str, str] | None],
) -> Values:
    """For each of the ``missing`` dimensions, the value of the nearest ancestor that gives
    one, walking up from ``parent`` through ``parent_of`` (span -> its parent) and reading
    what each passes on in ``given``; dimensions no ancestor gives are left out."""
    wanted = set(missing)
    found: Values = {}
    node, depth = parent, 0
    while node is not None and wanted and depth < MAX_DEPTH:
        values = given.get(node)
        if values:
            for dimension in [d for d in wanted if d in values]:
                found[dimension] = values[dimension]
                wanted.discard(dimension)
        node = parent_of.get(node)
        depth += 1
    return found
