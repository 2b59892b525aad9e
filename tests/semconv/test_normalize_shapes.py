"""Attribute fixtures for conventions we cannot drive live (deprecated or heavy packages).

The live instrumentations are covered in test_instrumentations.py; these pin the shapes of
the upstream `opentelemetry-instrumentation-openai-v2` (semconv 1.30), OpenLIT and the
agent/tool spans.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from aethermind.semconv import normalize

RESOURCE = {"service.name": "checkout", "deployment.environment.name": "prod"}


def test_openai_v2_semconv_1_30_shape() -> None:
    # What opentelemetry-instrumentation-openai-v2 wrote: gen_ai.system, input/output only.
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.response.id": "chatcmpl-abc",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 52,
        "gen_ai.usage.output_tokens": 17,
        "server.address": "api.openai.com",
    }
    record = normalize(attrs, RESOURCE)
    assert record is not None
    assert (record.provider, record.operation) == ("openai", "chat")
    assert (record.request_model, record.response_model, record.model) == (
        "gpt-4o-mini",
        "gpt-4o-mini-2024-07-18",
        "gpt-4o-mini-2024-07-18",
    )
    assert (record.input_tokens, record.output_tokens, record.total_tokens) == (52, 17, 69)
    assert (record.cache_read_tokens, record.reasoning_tokens) == (None, None)
    assert (record.service, record.environment) == ("checkout", "prod")
    assert record.error_type is None


def test_current_semconv_names_and_deprecated_token_names() -> None:
    attrs = {
        "gen_ai.provider.name": "anthropic",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.usage.prompt_tokens": 3400,
        "gen_ai.usage.completion_tokens": 250,
        "gen_ai.usage.cache_read.input_tokens": 2000,
        "gen_ai.usage.cache_creation.input_tokens": 500,
        "gen_ai.usage.reasoning.output_tokens": 40,
    }
    record = normalize(attrs, {"deployment.environment": "staging"})
    assert record is not None
    assert record.provider == "anthropic"
    assert (record.input_tokens, record.cache_read_tokens, record.cache_write_tokens) == (
        3400,
        2000,
        500,
    )
    assert (record.output_tokens, record.reasoning_tokens, record.total_tokens) == (250, 40, 3650)
    assert record.environment == "staging"


def test_cache_counts_larger_than_input_prove_input_excluded_them() -> None:
    attrs = {
        "gen_ai.system": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.usage.input_tokens": 900,
        "gen_ai.usage.cache_read.input_tokens": 2000,
        "gen_ai.usage.cache_write.input_tokens": 500,
        "gen_ai.usage.output_tokens": 250,
    }
    record = normalize(attrs)
    assert record is not None
    assert record.input_tokens == 3400


def test_openlit_provided_cost_is_kept() -> None:
    attrs = {
        "gen_ai.system": "openai",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.output_tokens": 5,
        "gen_ai.usage.cost": 0.000075,
    }
    record = normalize(attrs)
    assert record is not None
    assert record.provided_cost == Decimal("0.000075")


def test_openinference_llm_span_with_model_only_in_invocation_parameters() -> None:
    attrs = {
        "openinference.span.kind": "LLM",
        "llm.system": "openai",
        "llm.invocation_parameters": '{"model": "gpt-4o", "temperature": 0}',
        "llm.token_count.prompt": 100,
        "llm.token_count.completion": 20,
        "llm.token_count.total": 120,
        "llm.token_count.prompt_details.cache_read": 60,
        "llm.cost.total": 0.0004,
    }
    record = normalize(attrs)
    assert record is not None
    assert (record.operation, record.request_model, record.provider) == ("chat", "gpt-4o", "openai")
    assert (record.input_tokens, record.output_tokens, record.cache_read_tokens) == (100, 20, 60)
    assert record.provided_cost == Decimal("0.0004")


def test_openinference_embedding_span() -> None:
    attrs = {
        "openinference.span.kind": "EMBEDDING",
        "embedding.model_name": "text-embedding-3-small",
        "llm.token_count.prompt": 8,
        "llm.token_count.total": 8,
    }
    record = normalize(attrs)
    assert record is not None
    assert (record.operation, record.model, record.input_tokens) == (
        "embeddings",
        "text-embedding-3-small",
        8,
    )


def test_agent_and_tool_spans_are_records_but_not_model_calls() -> None:
    agent = normalize({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"})
    tool = normalize({"openinference.span.kind": "TOOL", "tool.name": "search"})
    assert agent is not None and not agent.is_llm_call
    assert agent.operation == "invoke_agent"
    assert tool is not None and not tool.is_llm_call
    assert tool.operation == "execute_tool"


def test_chain_and_plain_spans_are_not_llm_spans() -> None:
    assert normalize({"openinference.span.kind": "CHAIN", "input.value": "x"}) is None
    assert normalize({"http.request.method": "GET", "url.full": "https://x"}) is None
    assert normalize({}) is None
    assert normalize({"gen_ai.system": "openai"}) is None


def test_failed_call_without_error_type_counts_as_error() -> None:
    attrs = {"gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o"}
    failed = normalize(attrs, status_error=True)
    typed = normalize({**attrs, "error.type": "RateLimitError"}, status_error=True)
    assert failed is not None and failed.error_type == "_OTHER"
    assert typed is not None and typed.error_type == "RateLimitError"
    ok = normalize(attrs | {"gen_ai.usage.input_tokens": 1})
    assert ok is not None and ok.error_type is None


def test_garbage_counts_are_ignored_not_trusted() -> None:
    attrs = {
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": -5,
        "gen_ai.usage.prompt_tokens": "120",
        "gen_ai.usage.output_tokens": float("nan"),
        "gen_ai.usage.completion_tokens": True,
        "gen_ai.usage.cache_read.input_tokens": 10**15,
    }
    record = normalize(attrs)
    assert record is not None
    assert record.input_tokens == 120  # the invalid preferred alias falls back to the next
    assert record.output_tokens is None
    assert record.cache_read_tokens is None


LITELLM_OPENAI_USAGE = (
    "{'completion_tokens': 300, 'prompt_tokens': 1200, 'total_tokens': 1500, "
    "'completion_tokens_details': {'reasoning_tokens': 20}, "
    "'prompt_tokens_details': {'audio_tokens': 0, 'cached_tokens': 400}}"
)


def test_litellm_cost_and_the_cache_counts_only_its_printed_usage_object_has() -> None:
    attrs = {
        "gen_ai.system": "openai",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 1200,
        "gen_ai.usage.output_tokens": 300,
        "gen_ai.cost.total_cost": 0.0055,
        "metadata.usage_object": LITELLM_OPENAI_USAGE,
    }
    record = normalize(attrs, scope="litellm")
    assert record is not None
    assert (record.input_tokens, record.cache_read_tokens, record.reasoning_tokens) == (
        1200,
        400,
        20,
    )
    assert record.provided_cost == Decimal("0.0055")


def test_litellm_anthropic_usage_object_gives_cache_reads_and_writes() -> None:
    usage = "{'prompt_tokens': 3400, 'completion_tokens': 250, 'cache_read_input_tokens': 2000, 'cache_creation_input_tokens': 500}"  # noqa: E501
    attrs = {
        "gen_ai.system": "anthropic",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.usage.input_tokens": 3400,
        "gen_ai.usage.output_tokens": 250,
        "metadata.usage_object": usage,
    }
    record = normalize(attrs, scope="litellm")
    assert record is not None
    assert (record.input_tokens, record.cache_read_tokens, record.cache_write_tokens) == (
        3400,
        2000,
        500,
    )


@pytest.mark.parametrize(
    "usage_object",
    ["x" * 10_000, "[1, 2]", "{'cached_tokens': __import__('os')}", "(" * 500, 42, "{'a': 1"],
)
def test_a_usage_object_that_is_not_one_is_ignored(usage_object: object) -> None:
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 10,
        "metadata.usage_object": usage_object,
    }
    record = normalize(attrs)
    assert record is not None
    assert (record.input_tokens, record.cache_read_tokens) == (10, None)


def test_pydantic_ai_aggregated_usage_is_the_agent_span_usage() -> None:
    attrs = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "forecaster",
        "gen_ai.aggregated_usage.input_tokens": 2400,
        "gen_ai.aggregated_usage.output_tokens": 600,
        "gen_ai.aggregated_usage.cache_read.input_tokens": 800,
    }
    record = normalize(attrs)
    assert record is not None
    assert not record.is_llm_call
    assert (record.input_tokens, record.output_tokens, record.cache_read_tokens) == (
        2400,
        600,
        800,
    )
