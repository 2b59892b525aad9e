"""The fake provider answers the real SDKs, and every instrumentation records its calls.

These guard the test infrastructure itself: if an SDK or instrumentation upgrade changes the
wire format or breaks (un)instrumenting, they fail here rather than as confusing attribute
mismatches elsewhere.
"""

from __future__ import annotations

import warnings

import anthropic
import openai
import pytest
from opentelemetry.trace import StatusCode

from tests.plugins.fake_provider import (
    ANTHROPIC_MESSAGES_USAGE,
    ANTHROPIC_STREAM_START_OUTPUT,
    ANTHROPIC_STREAM_USAGE,
    OPENAI_CHAT_USAGE,
    OPENAI_EMBEDDINGS_USAGE,
    OPENAI_REASONING_USAGE,
    OPENAI_STREAM_USAGE,
    FakeProvider,
)
from tests.plugins.instrumented import (
    ANTHROPIC_API_KEY,
    ANTHROPIC_SDK_SCOPE,
    EXTRA_HEADERS,
    INSTRUMENTATIONS,
    OPENAI_API_KEY,
    SCENARIOS,
    leftover_wrappers,
    pairs,
    run_scenario,
)


def test_fake_provider_usage_numbers_reach_the_sdks(
    fake_provider: FakeProvider,
) -> None:
    client = openai.OpenAI(
        base_url=fake_provider.openai_base_url, api_key=OPENAI_API_KEY, max_retries=0
    )
    chat = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    assert chat.model == "gpt-4o-2024-08-06"
    assert chat.usage is not None
    assert chat.usage.model_dump(exclude_none=True) == OPENAI_CHAT_USAGE

    reasoning = client.chat.completions.create(
        model="o3-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert reasoning.usage is not None
    assert reasoning.usage.model_dump(exclude_none=True) == OPENAI_REASONING_USAGE

    chunks = list(
        client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.model_dump(exclude_none=True) == OPENAI_STREAM_USAGE

    embeddings = client.embeddings.create(model="text-embedding-3-small", input="x")
    assert embeddings.usage.model_dump() == OPENAI_EMBEDDINGS_USAGE
    assert len(embeddings.data[0].embedding) > 0

    claude = anthropic.Anthropic(
        base_url=fake_provider.anthropic_base_url,
        api_key=ANTHROPIC_API_KEY,
        max_retries=0,
        open_telemetry=False,
    )
    # Some releases of the SDK warn that this model name is deprecated, others do not:
    # either way the usage must come through.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        message = claude.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=64,
            messages=[{"role": "user", "content": "hi"}],
        )
        with claude.messages.stream(
            model="claude-sonnet-4-5",
            max_tokens=64,
            messages=[{"role": "user", "content": "hi"}],
        ) as stream:
            final = stream.get_final_message()
    assert message.model == "claude-sonnet-4-5-20250929"
    assert message.usage.model_dump(exclude_none=True) == ANTHROPIC_MESSAGES_USAGE
    assert final.usage.model_dump(exclude_none=True) == ANTHROPIC_STREAM_USAGE

    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="error-model", messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(anthropic.RateLimitError):
        claude.messages.create(
            model="error-model-429",
            max_tokens=64,
            messages=[{"role": "user", "content": "hi"}],
        )


def test_every_count_is_distinct() -> None:
    """So that a test can tell which usage field landed in which attribute."""
    counts: list[int] = []

    def collect(usage: dict[str, object]) -> None:
        for value in usage.values():
            if isinstance(value, dict):
                collect(value)
            elif isinstance(value, int) and value != 0:
                counts.append(value)

    for usage in (
        OPENAI_CHAT_USAGE,
        OPENAI_STREAM_USAGE,
        OPENAI_REASONING_USAGE,
        ANTHROPIC_MESSAGES_USAGE,
        ANTHROPIC_STREAM_USAGE,
    ):
        collect(usage)
    assert len(counts) == len(set(counts)), sorted(counts)


@pytest.mark.parametrize(("instrumentation", "scenario"), pairs())
def test_instrumentation_records_scenario(
    fake_provider: FakeProvider, instrumentation: str, scenario: str
) -> None:
    run = run_scenario(instrumentation, scenario, fake_provider)
    scen = SCENARIOS[scenario]

    assert [request.path for request in run.requests] == [scen.path]
    own = run.spans_from(INSTRUMENTATIONS[instrumentation].scope)
    assert len(own) == 1, run.scoped_spans
    assert run.llm_spans == own
    assert own[0].resource.attributes["service.name"] == "aethermind-harness"
    if scen.expect_error:
        assert run.error is not None
        assert own[0].status.status_code is StatusCode.ERROR
    else:
        assert run.error is None
        assert own[0].status.status_code is not StatusCode.ERROR
    assert leftover_wrappers() == []
    for span in run.spans:
        for value in (span.attributes or {}).values():
            assert OPENAI_API_KEY not in str(value)
            assert ANTHROPIC_API_KEY not in str(value)


def test_reinstrumenting_sends_spans_only_to_the_new_provider(
    fake_provider: FakeProvider,
) -> None:
    """The instrumentors are singletons; each run must see its own call only."""
    for _ in range(2):
        for instrumentation in ("openllmetry_openai", "openinference_openai"):
            run = run_scenario(instrumentation, "openai_chat", fake_provider)
            assert len(run.spans) == 1


def test_anthropic_sdk_spans_are_off_unless_asked(fake_provider: FakeProvider) -> None:
    quiet = run_scenario("openllmetry_anthropic", "anthropic_messages", fake_provider)
    assert quiet.spans_from(ANTHROPIC_SDK_SCOPE) == []


@pytest.mark.parametrize(
    ("instrumentation", "nested"),
    [("openllmetry_anthropic", False), ("openinference_anthropic", True)],
)
def test_anthropic_sdk_spans_double_up_with_an_instrumentation(
    fake_provider: FakeProvider, instrumentation: str, nested: bool
) -> None:
    """One call, two spans with usage. OpenInference makes its span current, so the
    SDK's span is its child; OpenLLMetry does not, so the SDK's span is the root of a
    trace of its own and only `gen_ai.response.id` ties the two together."""
    run = run_scenario(
        instrumentation, "anthropic_messages", fake_provider, anthropic_sdk_tracing=True
    )
    (sdk_span,) = run.spans_from(ANTHROPIC_SDK_SCOPE)
    (outer,) = run.spans_from(INSTRUMENTATIONS[instrumentation].scope)
    if nested:
        assert sdk_span.parent is not None
        assert sdk_span.parent.span_id == outer.context.span_id
    else:
        assert sdk_span.parent is None
        assert sdk_span.context.trace_id != outer.context.trace_id
        assert sdk_span.attributes is not None and outer.attributes is not None
        response_id = sdk_span.attributes["gen_ai.response.id"]
        assert outer.attributes["gen_ai.response.id"] == response_id


def _all_input(usage: dict[str, int]) -> int:
    return (
        usage["input_tokens"]
        + usage["cache_read_input_tokens"]
        + usage["cache_creation_input_tokens"]
    )


USAGE_SHAPES: list[tuple[str, str, str, int]] = [
    # OpenAI's prompt_tokens already includes cached tokens; everyone passes it through.
    ("openllmetry_openai", "openai_chat", "gen_ai.usage.input_tokens", 1200),
    ("openllmetry_openai", "openai_chat", "gen_ai.usage.cache_read.input_tokens", 400),
    ("openllmetry_openai", "openai_reasoning", "gen_ai.usage.output_tokens", 1900),
    ("openllmetry_openai", "openai_reasoning", "gen_ai.usage.reasoning_tokens", 1600),
    ("openinference_openai", "openai_chat", "llm.token_count.prompt", 1200),
    ("openinference_openai", "openai_reasoning", "llm.token_count.completion", 1900),
    # Anthropic's input_tokens excludes cache; all three add cache reads and writes back in.
    (
        "openllmetry_anthropic",
        "anthropic_messages",
        "gen_ai.usage.input_tokens",
        _all_input(ANTHROPIC_MESSAGES_USAGE),
    ),
    (
        "openinference_anthropic",
        "anthropic_messages",
        "llm.token_count.prompt",
        _all_input(ANTHROPIC_MESSAGES_USAGE),
    ),
    (
        "anthropic_sdk",
        "anthropic_messages",
        "gen_ai.usage.input_tokens",
        _all_input(ANTHROPIC_MESSAGES_USAGE),
    ),
    # OpenLLMetry adds message_start's placeholder output_tokens to message_delta's total.
    (
        "openllmetry_anthropic",
        "anthropic_stream",
        "gen_ai.usage.output_tokens",
        ANTHROPIC_STREAM_USAGE["output_tokens"] + ANTHROPIC_STREAM_START_OUTPUT,
    ),
    (
        "openinference_anthropic",
        "anthropic_stream",
        "llm.token_count.completion",
        ANTHROPIC_STREAM_USAGE["output_tokens"],
    ),
    (
        "anthropic_sdk",
        "anthropic_stream",
        "gen_ai.usage.output_tokens",
        ANTHROPIC_STREAM_USAGE["output_tokens"],
    ),
]


@pytest.mark.parametrize(("instrumentation", "scenario", "attribute", "expected"), USAGE_SHAPES)
def test_usage_shapes(
    fake_provider: FakeProvider,
    instrumentation: str,
    scenario: str,
    attribute: str,
    expected: int,
) -> None:
    """Pins the token-count semantics the cost pipeline relies on, so an upgrade that changes
    them fails here first."""
    run = run_scenario(instrumentation, scenario, fake_provider)
    (span,) = run.spans
    assert span.attributes is not None
    assert span.attributes[attribute] == expected


@pytest.mark.parametrize(
    ("instrumentation", "scenario", "attribute"),
    [
        ("openllmetry_openai", "openai_chat_extra_headers", "gen_ai.headers"),
        ("openinference_anthropic", "anthropic_extra_headers", "input.value"),
    ],
)
def test_per_request_headers_leak_into_attributes(
    fake_provider: FakeProvider, instrumentation: str, scenario: str, attribute: str
) -> None:
    """Where a secret passed as `extra_headers` ends up, for the scrubber to remove."""
    run = run_scenario(instrumentation, scenario, fake_provider)
    (span,) = run.spans
    assert span.attributes is not None
    assert EXTRA_HEADERS["X-Upstream-Api-Key"] in str(span.attributes[attribute])
