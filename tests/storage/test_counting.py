"""The rule of what counts (storage/counting.py), on trace shapes the real stacks produce."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from aethermind.semconv.attributes import CLAUDE_CODE_EVENTS_SCOPE, CLAUDE_CODE_TRACING_SCOPE
from aethermind.storage.counting import (
    MAX_TWINS,
    SpanFacts,
    TwinFacts,
    counted_spans,
    twins_counted,
)


def span(
    span_id: str,
    parent: str | None,
    start: int,
    end: int,
    role: str | None,
    richness: int = 2,
) -> SpanFacts:
    return SpanFacts(span_id, parent, start, end, role, richness)  # type: ignore[arg-type]


def test_an_agent_run_over_two_model_requests_counts_the_requests() -> None:
    spans = [
        span("agent", None, 0, 100, "rollup"),
        span("chat1", "agent", 10, 40, "request"),
        span("tool", "agent", 41, 50, None),
        span("chat2", "agent", 51, 90, "request"),
    ]
    assert counted_spans(spans) == {"chat1", "chat2"}


def test_an_agent_that_only_reports_totals_still_counts() -> None:
    spans = [span("agent", None, 0, 100, "rollup"), span("tool", "agent", 10, 20, None)]
    assert counted_spans(spans) == {"agent"}


def test_a_framework_span_around_the_client_span_counts_once_at_the_wire() -> None:
    spans = [
        span("chain", None, 0, 100, None),
        span("framework-llm", "chain", 5, 95, "request"),
        span("client", "framework-llm", 10, 90, "request"),
    ]
    assert counted_spans(spans) == {"client"}


def test_the_richer_layer_counts_when_the_wire_span_reports_less() -> None:
    spans = [
        span("framework-llm", None, 0, 100, "request", richness=4),
        span("client", "framework-llm", 10, 90, "request", richness=2),
    ]
    assert counted_spans(spans) == {"framework-llm"}


def test_a_layer_over_two_requests_is_not_one_request() -> None:
    spans = [
        span("framework-llm", None, 0, 100, "request", richness=5),
        span("try1", "framework-llm", 10, 40, "request", richness=2),
        span("try2", "framework-llm", 50, 90, "request", richness=2),
    ]
    assert counted_spans(spans) == {"try1", "try2"}


def test_a_dropped_intermediate_span_is_bridged_by_time() -> None:
    """The agent's model call hangs under a span that was not GenAI (dropped): the call's
    start lies inside the agent's interval, so the agent is a roll-up of it."""
    spans = [
        span("agent", None, 0, 100, "rollup"),
        span("chat", "dropped-http-span", 10, 40, "request"),
    ]
    assert counted_spans(spans) == {"chat"}


def test_a_complete_chain_elsewhere_in_the_trace_is_not_bridged() -> None:
    spans = [
        span("root", None, 0, 200, None),
        span("agent", "root", 0, 100, "rollup"),
        span("chat", "root", 10, 40, "request"),  # a sibling, not under the agent
    ]
    assert counted_spans(spans) == {"agent", "chat"}


TREE = [
    span("workflow", None, 0, 1000, "rollup"),
    span("agent-a", "workflow", 10, 500, "rollup"),
    span("a-llm", "agent-a", 20, 200, "request", richness=3),
    span("a-client", "a-llm", 25, 190, "request", richness=3),
    span("a-tool", "agent-a", 210, 300, None),
    span("a-llm2", "agent-a", 310, 490, "request"),
    span("agent-b", "workflow", 510, 990, "rollup"),
    span("b-step", "agent-b", 520, 980, "rollup"),
    span("b-llm", "b-step", 530, 970, "request"),
]
TREE_COUNTED = {"a-client", "a-llm2", "b-llm"}


def test_a_nested_workflow() -> None:
    assert counted_spans(TREE) == TREE_COUNTED


@given(st.permutations(TREE), st.integers(min_value=1, max_value=len(TREE)))
@settings(max_examples=200, deadline=None)
def test_the_answer_never_depends_on_order_or_on_which_spans_have_arrived(
    order: list[SpanFacts], arrived: int
) -> None:
    """Whatever subset has arrived, in whatever order, the decision is a function of the set;
    once all have arrived it is the full answer."""
    subset = order[:arrived]
    shuffled = list(subset)
    random.Random(arrived).shuffle(shuffled)
    assert counted_spans(subset) == counted_spans(shuffled)
    assert counted_spans(order) == TREE_COUNTED


def scoped(span_id: str, start: int, end: int, scope: str, richness: int = 3) -> SpanFacts:
    return SpanFacts(span_id, "chain", start, end, "request", richness, scope)


CHAIN = span("chain", None, 0, 1000, None)


def test_two_instrumentations_side_by_side_count_once_at_the_inner_span() -> None:
    """OpenLLMetry's LangChain span beside OpenInference's OpenAI span, both under the chain."""
    spans = [
        CHAIN,
        scoped("langchain-llm", 10, 900, "opentelemetry.instrumentation.langchain"),
        scoped("openai-client", 20, 890, "openinference.instrumentation.openai"),
    ]
    assert counted_spans(spans) == {"openai-client"}


def test_the_richer_side_by_side_span_counts() -> None:
    spans = [
        CHAIN,
        scoped("langchain-llm", 10, 900, "opentelemetry.instrumentation.langchain", richness=5),
        scoped("openai-client", 20, 890, "openinference.instrumentation.openai", richness=2),
    ]
    assert counted_spans(spans) == {"langchain-llm"}


def test_parallel_requests_of_one_instrumentation_both_count() -> None:
    spans = [
        CHAIN,
        scoped("call-1", 10, 900, "openinference.instrumentation.openai"),
        scoped("call-2", 20, 400, "openinference.instrumentation.openai"),
    ]
    assert counted_spans(spans) == {"call-1", "call-2"}


def test_a_side_by_side_span_around_two_requests_wraps_them() -> None:
    spans = [
        CHAIN,
        scoped("framework-llm", 10, 900, "opentelemetry.instrumentation.langchain", richness=5),
        scoped("try-1", 20, 400, "openinference.instrumentation.openai"),
        scoped("try-2", 450, 890, "openinference.instrumentation.openai"),
    ]
    assert counted_spans(spans) == {"try-1", "try-2"}


def test_a_hostile_chain_thousands_deep_is_decided_with_bounded_work() -> None:
    """5,000 request spans each under the previous: followed 64 levels up at most, so the
    decision takes a bounded number of steps (it used to walk every chain to the root)."""
    chain = [span("s0", None, 0, 10_000, "request")]
    chain += [span(f"s{i}", f"s{i - 1}", i, 10_000 - i, "request") for i in range(1, 5000)]
    counted = counted_spans(chain)
    assert "s4999" in counted  # the deepest, nearest the wire
    assert len(counted) < 5000 // 64 + 2


SDK, INSTRUMENTATION = "com.anthropic.sdk.python", "opentelemetry.instrumentation.anthropic"


def twin(trace: str, scope: str | None, start: int, end: int, richness: int = 4,
         response_id: str = "msg_1") -> TwinFacts:  # fmt: skip
    return TwinFacts(trace, "s" + trace, response_id, scope, start, end, richness)


def test_twins_count_once_at_the_shorter_span_on_a_tie() -> None:
    spans = [twin("a", INSTRUMENTATION, 0, 100), twin("b", SDK, 5, 95)]
    assert twins_counted(spans) == {("b", "sb")}
    assert twins_counted(spans[::-1]) == {("b", "sb")}


def test_the_richer_twin_counts() -> None:
    spans = [twin("a", INSTRUMENTATION, 0, 100, richness=4), twin("b", SDK, 5, 95, richness=3)]
    assert twins_counted(spans) == {("a", "sa")}


def test_spans_of_one_scope_or_far_apart_in_time_are_not_twins() -> None:
    one_scope = [twin("a", SDK, 0, 100), twin("b", SDK, 5, 95)]
    assert twins_counted(one_scope) == {("a", "sa"), ("b", "sb")}
    apart = [twin("a", INSTRUMENTATION, 0, 100), twin("b", SDK, 200, 300)]
    assert twins_counted(apart) == {("a", "sa"), ("b", "sb")}
    unknown = [twin("a", None, 0, 100), twin("b", None, 5, 95)]
    assert twins_counted(unknown) == {("a", "sa"), ("b", "sb")}


def test_a_response_id_on_too_many_spans_matches_none() -> None:
    many = [twin(str(i), f"scope-{i}", 0, 100) for i in range(MAX_TWINS + 1)]
    assert len(twins_counted(many)) == MAX_TWINS + 1


def agent_record(span_id: str, scope: str, request_id: str, start: int, end: int) -> SpanFacts:
    """A Claude Code record of one request under its interaction span (not stored)."""
    return SpanFacts(span_id, "interaction", start, end, "request", 4, scope, request_id)


def test_an_agents_event_and_span_of_one_request_count_once_as_the_event() -> None:
    events, spans = CLAUDE_CODE_EVENTS_SCOPE, CLAUDE_CODE_TRACING_SCOPE
    records = [
        agent_record("span-1", spans, "req_1", 100, 900),
        agent_record("event-1", events, "req_1", 120, 905),  # not within the span's interval
        agent_record("span-2", spans, "req_2", 1000, 1800),
        agent_record("event-2", events, "req_2", 1000, 1790),  # within the span's
        agent_record("span-3", spans, "req_3", 2000, 2500),
        agent_record("event-3", events, "req_3", 1990, 2510),  # holding the span's
    ]
    for order in (records, records[::-1], records[1::2] + records[::2]):
        assert counted_spans(order) == {"event-1", "event-2", "event-3"}
    # Alone, each record counts: the other signal may never arrive.
    assert counted_spans(records[::2]) == {"span-1", "span-2", "span-3"}
    # One scope's two records of one id are not one request's twins.
    same_scope = [
        agent_record("a", events, "req_1", 0, 10),
        agent_record("b", events, "req_1", 20, 30),
    ]
    assert counted_spans(same_scope) == {"a", "b"}
