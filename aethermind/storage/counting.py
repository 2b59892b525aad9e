"""Which spans of a trace count toward totals: each provider request exactly once.

Agent frameworks and stacked instrumentations describe one provider request with several
spans, and sum the usage of many requests on an outer span. Totals must add each request
once, so every span that carries usage gets one of three states:

- counted: a provider request as close to the wire as the trace shows it;
- ``rollup``: a span that is not a provider request (an agent run, a workflow, a chain, an
  SDK's outer ``generate`` span) and has usage-carrying spans under it: its usage is the sum
  of theirs;
- ``duplicate``: a provider-request span with another provider-request span under it (a
  framework's LLM span around the client instrumentation's span, or an SDK tracing itself
  under an instrumentor), or beside it: two instrumentations whose spans of one request are
  siblings (OpenLLMetry's LangChain span next to OpenInference's OpenAI span) are told
  apart by their instrumentation scopes, the one's interval holding the other's.

The rule, in one sentence: the usage-carrying spans with no usage-carrying span under them
count; in a chain of request spans over a single such span (one request seen by several
layers), the one with the richest usage counts instead, ties going to the one closest to
the wire. Two counted request spans with the same parent, from different instrumentation
scopes, one's interval holding the other's, are one request seen by two instrumentations
side by side: the richer counts, ties going to the inner one (nearer the wire); a span
holding several such siblings wraps several requests, and they count instead.

Twins: two instrumentations may each start a trace of their own for one request (neither had
a span to join: the Anthropic SDK's own span beside OpenLLMetry's, both roots). Nothing in
either trace tells them apart from two requests, but both record the provider's response id.
Of the spans their own traces count, two root request spans with one response id, from
different instrumentation scopes, whose intervals overlap, are one request: the richer
counts, ties going to the shorter (nearer the wire). ``twins_counted`` applies it.

One request, two records in a trace: an agent that reports each request both as a usage
event and as a span (Claude Code, with its enhanced telemetry) emits the event inside its
interaction span, beside the request's span; both record the provider's request id. Of the
request spans a trace counts, those of different scopes with one request id are one
request: the richest counts, ties going to the agent's event (it names the model that
answered and carries the agent's own cost).

"Under" follows parent links; where a chain of parent links is broken (an intermediate span
was not GenAI and was dropped, or has not arrived), the topmost span of the broken chain is
under every roll-up span whose time interval holds its start. Never
under a request span by time alone: requests made in parallel overlap all the time, and
stacked request layers link to each other directly.

Pure: the writer feeds it the spans of a trace (stored and arriving) and stores its answer.
The answer depends only on the set of spans, never on their arrival order.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, NamedTuple

from aethermind.semconv.attributes import PREFERRED_REQUEST_SCOPES

UsageRole = Literal["request", "rollup"]
COUNTED_REASONS: dict[str, str] = {"request": "duplicate", "rollup": "rollup"}
"""Why a span of each role that does not count does not: the API's ``counted`` value."""

MAX_RECONCILED_SPANS = 5000
"""Spans of one trace the writer reads back to decide what counts. A trace with more is not
reconciled any further: its new spans count by what their own batch shows (see the README)."""


class SpanFacts(NamedTuple):
    """What the decision needs of one span. ``role`` is None for spans without usage (tool
    spans, spans kept for context): they only link others. ``richness`` is the number of
    usage kinds the span reported (input, output, cached, cache writes, reasoning)."""

    span_id: str
    parent_span_id: str | None
    start_us: int
    end_us: int
    role: UsageRole | None
    richness: int = 0
    scope: str | None = None
    response_id: str | None = None
    """The provider's request id, where the span's scope records it (``span_row.twin_key``)."""


def counted_spans(spans: Iterable[SpanFacts]) -> set[str]:
    """The ids of the spans that count, among ``spans`` (one trace, each span once)."""
    by_id = {s.span_id: s for s in spans}
    carriers = [s for s in by_id.values() if s.role is not None]
    if len(carriers) <= 1:
        return {c.span_id for c in carriers}
    rollups = [c for c in carriers if c.role == "rollup"]
    holders = _Holders(by_id, rollups) if rollups else None
    ancestors = {s.span_id: _carrier_ancestors(s, by_id, holders) for s in carriers}
    below: dict[str, int] = dict.fromkeys(by_id, 0)
    for above in ancestors.values():
        for ancestor in above:
            below[ancestor] += 1
    counted = {
        _richest_layer(leaf, ancestors, below, by_id).span_id
        for leaf in carriers
        if not below[leaf.span_id]
    }
    # Request ids first: they say for certain what intervals only suggest.
    return _without_side_by_side_layers(_one_per_request_id(counted, by_id), by_id)


def _one_per_request_id(counted: set[str], by_id: dict[str, SpanFacts]) -> set[str]:
    """``counted`` less all but one of the request spans of different scopes that record the
    same provider request id (an agent's usage event and its span of that request): the
    richest stays, ties going to ``PREFERRED_REQUEST_SCOPES``, then the lower span id."""
    by_request: dict[str, list[SpanFacts]] = {}
    for span_id in counted:
        span = by_id[span_id]
        if span.role == "request" and span.response_id is not None and span.scope is not None:
            by_request.setdefault(span.response_id, []).append(span)
    for records in by_request.values():
        if len(records) < 2 or len({r.scope for r in records}) < 2 or len(records) > MAX_TWINS:
            continue
        keep = min(
            records,
            key=lambda r: (-r.richness, r.scope not in PREFERRED_REQUEST_SCOPES, r.span_id),
        )
        counted.difference_update(r.span_id for r in records if r is not keep)
    return counted


def _without_side_by_side_layers(counted: set[str], by_id: dict[str, SpanFacts]) -> set[str]:
    """``counted`` less one of each pair of sibling request spans that two instrumentations
    wrote for one request (see the module docstring)."""
    by_parent: dict[str | None, list[SpanFacts]] = {}
    for span_id in counted:
        span = by_id[span_id]
        if span.role == "request" and span.scope is not None:
            by_parent.setdefault(span.parent_span_id, []).append(span)
    for siblings in by_parent.values():
        if len(siblings) < 2 or len({s.scope for s in siblings}) < 2:
            continue
        for outer in siblings:
            if outer.span_id not in counted:
                continue
            inner = [
                s
                for s in siblings
                if s.span_id in counted
                and s.scope != outer.scope
                and outer.start_us <= s.start_us
                and s.end_us <= outer.end_us
            ]
            if len(inner) == 1 and outer.richness > inner[0].richness:
                counted.discard(inner[0].span_id)
            elif inner:
                counted.discard(outer.span_id)
    return counted


MAX_DEPTH = 64
"""Parent links followed up from a span. Frameworks nest a few levels; a deeper chain is
taken as broken there (bounds the work of a hostile trace shaped as one long chain)."""

MAX_BROKEN_CHAINS = 64
"""Broken parent chains per trace placed by time; past it, a broken chain is taken as a root
(bounds the work a trace of unrelated fragments can cause)."""


class _Holders:
    """The roll-up spans whose interval holds the start of a broken chain's top, per top."""

    def __init__(self, by_id: dict[str, SpanFacts], rollups: list[SpanFacts]) -> None:
        self._by_id = by_id
        self._carriers = sorted(rollups, key=lambda c: c.start_us)
        self._found: dict[str, list[str]] = {}

    def of(self, top: SpanFacts) -> list[str]:
        found = self._found.get(top.span_id)
        if found is not None:
            return found
        if len(self._found) >= MAX_BROKEN_CHAINS:
            return []
        candidates = []
        for carrier in self._carriers:
            if carrier.start_us > top.start_us:
                break
            if (
                carrier.end_us >= top.start_us
                and carrier is not top
                and not _under(carrier, top.span_id, self._by_id)
            ):
                candidates.append(carrier)
        # Nearest first: the latest start, then the earliest end (the innermost interval).
        candidates.sort(key=lambda c: (-c.start_us, c.end_us, c.span_id))
        found = [c.span_id for c in candidates]
        self._found[top.span_id] = found
        return found


def _carrier_ancestors(
    span: SpanFacts, by_id: dict[str, SpanFacts], holders: _Holders | None
) -> list[str]:
    """The usage-carrying spans ``span`` is under, nearest first: its parent chain, and where
    that chain breaks, every roll-up whose interval holds the start of the chain's top."""
    found: list[str] = []
    chain = {span.span_id}
    top = span
    while top.parent_span_id is not None:
        parent = by_id.get(top.parent_span_id)
        if parent is None or parent.span_id in chain or len(chain) > MAX_DEPTH:
            break
        chain.add(parent.span_id)
        if parent.role is not None:
            found.append(parent.span_id)
        top = parent
    else:
        return found  # the chain reached a root: nothing is missing
    if holders is not None:
        found.extend(holders.of(top))
    return found


def _under(span: SpanFacts, ancestor_id: str, by_id: dict[str, SpanFacts]) -> bool:
    """Whether ``ancestor_id`` is on ``span``'s parent chain."""
    seen = {span.span_id}
    current = span
    while current.parent_span_id is not None:
        if current.parent_span_id == ancestor_id:
            return True
        parent = by_id.get(current.parent_span_id)
        if parent is None or parent.span_id in seen or len(seen) > MAX_DEPTH:
            return False
        seen.add(parent.span_id)
        current = parent
    return False


def _richest_layer(
    leaf: SpanFacts,
    ancestors: dict[str, list[str]],
    below: dict[str, int],
    by_id: dict[str, SpanFacts],
) -> SpanFacts:
    """The span that counts for ``leaf``'s request: ``leaf``, or a request span above it that
    wraps only this one request and reported richer usage (ties: the one nearer the wire)."""
    if leaf.role != "request":
        return leaf
    best = leaf
    for ancestor_id in ancestors[leaf.span_id]:
        ancestor = by_id[ancestor_id]
        if ancestor.role != "request" or below[ancestor_id] != _layers_between(
            leaf, ancestor_id, ancestors
        ):
            break
        if ancestor.richness > best.richness:
            best = ancestor
    return best


def _layers_between(leaf: SpanFacts, ancestor_id: str, ancestors: dict[str, list[str]]) -> int:
    """How many carriers lie under ``ancestor_id`` on ``leaf``'s own chain (``leaf`` and the
    request layers between): an ancestor with exactly these under it wraps one request."""
    chain = ancestors[leaf.span_id]
    return chain.index(ancestor_id) + 1


class TwinFacts(NamedTuple):
    """A span its own trace counts, with the response id it is matched on."""

    trace_id: str
    span_id: str
    response_id: str
    scope: str | None
    start_us: int
    end_us: int
    richness: int


MAX_TWINS = 16
"""Spans of one response id that are matched as twins. One request is seen by two or three
instrumentations; an id on more spans than this is not one request's (a provider that
repeats ids, or a hostile client), and its spans all count as their traces decide."""


def twins_counted(spans: Iterable[TwinFacts]) -> set[tuple[str, str]]:
    """The (trace id, span id) of ``spans`` (each counted by its own trace) that still count
    once twins are one request (see the module docstring). Depends only on the set."""
    by_response: dict[str, dict[tuple[str, str], TwinFacts]] = {}
    for span in spans:
        by_response.setdefault(span.response_id, {})[span.trace_id, span.span_id] = span
    counted: set[tuple[str, str]] = set()
    for group in by_response.values():
        if len(group) == 1 or len(group) > MAX_TWINS:
            counted.update(group)
            continue
        winners: list[TwinFacts] = []
        ranked = sorted(
            group.values(),
            key=lambda s: (-s.richness, s.end_us - s.start_us, s.trace_id, s.span_id),
        )
        for span in ranked:
            if not any(_twins(span, winner) for winner in winners):
                winners.append(span)
        counted.update((w.trace_id, w.span_id) for w in winners)
    return counted


def _twins(one: TwinFacts, other: TwinFacts) -> bool:
    return (
        one.scope is not None
        and other.scope is not None
        and one.scope != other.scope
        and one.start_us <= other.end_us
        and other.start_us <= one.end_us
    )


def reason_not_counted(role: str | None, *, counted_elsewhere: bool = False) -> str | bool:
    """The API's ``counted`` value for a span that does not count."""
    if counted_elsewhere:
        return "duplicate"
    return COUNTED_REASONS.get(role or "", False)
