"""Attribute names of every LLM tracing convention we read, written down as data.

Each convention spells the same facts differently; the normalizer reads these tables and
nothing else, so supporting a new spelling means adding a name here, not a branch there.
"""

from __future__ import annotations

from typing import Final

# --- OpenTelemetry GenAI semantic conventions (current) ----------------------------------
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: Final = "gen_ai.usage.cache_write.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
GEN_AI_TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"
ERROR_TYPE: Final = "error.type"

# --- OpenTelemetry GenAI semantic conventions (deprecated spellings) ---------------------
GEN_AI_SYSTEM: Final = "gen_ai.system"
GEN_AI_USAGE_PROMPT_TOKENS: Final = "gen_ai.usage.prompt_tokens"
GEN_AI_USAGE_COMPLETION_TOKENS: Final = "gen_ai.usage.completion_tokens"
GEN_AI_PROMPT: Final = "gen_ai.prompt"
GEN_AI_COMPLETION: Final = "gen_ai.completion"

# --- pydantic-ai: an agent run's summed usage, under its own namespace by default ----------
GEN_AI_AGGREGATED_USAGE_INPUT_TOKENS: Final = "gen_ai.aggregated_usage.input_tokens"
GEN_AI_AGGREGATED_USAGE_OUTPUT_TOKENS: Final = "gen_ai.aggregated_usage.output_tokens"
GEN_AI_AGGREGATED_USAGE_CACHE_READ: Final = "gen_ai.aggregated_usage.cache_read.input_tokens"
GEN_AI_AGGREGATED_USAGE_CACHE_WRITE: Final = "gen_ai.aggregated_usage.cache_write.input_tokens"
GEN_AI_AGGREGATED_USAGE_REASONING: Final = "gen_ai.aggregated_usage.details.reasoning_tokens"

# --- OpenLLMetry (Traceloop) extras and legacy names --------------------------------------
GEN_AI_USAGE_TOTAL_TOKENS: Final = "gen_ai.usage.total_tokens"
GEN_AI_USAGE_REASONING_TOKENS: Final = "gen_ai.usage.reasoning_tokens"
LLM_USAGE_TOTAL_TOKENS: Final = "llm.usage.total_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS_LEGACY: Final = "gen_ai.usage.cache_read_input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS_LEGACY: Final = "gen_ai.usage.cache_creation_input_tokens"
LLM_REQUEST_TYPE: Final = "llm.request.type"
GEN_AI_IS_STREAMING: Final = "gen_ai.is_streaming"
LLM_IS_STREAMING: Final = "llm.is_streaming"
GEN_AI_HEADERS: Final = "gen_ai.headers"
LLM_HEADERS: Final = "llm.headers"

# --- OpenInference (Arize) ----------------------------------------------------------------
OPENINFERENCE_SPAN_KIND: Final = "openinference.span.kind"
LLM_MODEL_NAME: Final = "llm.model_name"
LLM_REQUEST_MODEL_NAME: Final = "llm.request.model_name"
LLM_RESPONSE_MODEL_NAME: Final = "llm.response.model_name"
LLM_PROVIDER: Final = "llm.provider"
LLM_SYSTEM: Final = "llm.system"
LLM_INVOCATION_PARAMETERS: Final = "llm.invocation_parameters"
EMBEDDING_MODEL_NAME: Final = "embedding.model_name"
LLM_TOKEN_COUNT_PROMPT: Final = "llm.token_count.prompt"
LLM_TOKEN_COUNT_COMPLETION: Final = "llm.token_count.completion"
LLM_TOKEN_COUNT_TOTAL: Final = "llm.token_count.total"
LLM_TOKEN_COUNT_CACHE_READ: Final = "llm.token_count.prompt_details.cache_read"
LLM_TOKEN_COUNT_CACHE_WRITE: Final = "llm.token_count.prompt_details.cache_write"
LLM_TOKEN_COUNT_REASONING: Final = "llm.token_count.completion_details.reasoning"
LLM_COST_TOTAL: Final = "llm.cost.total"
LLM_COST_PREFIX: Final = "llm.cost."
INPUT_VALUE: Final = "input.value"
OUTPUT_VALUE: Final = "output.value"

# --- OpenLIT ------------------------------------------------------------------------------
GEN_AI_USAGE_COST: Final = "gen_ai.usage.cost"
GEN_AI_CONTENT_PROMPT: Final = "gen_ai.content.prompt"
GEN_AI_CONTENT_COMPLETION: Final = "gen_ai.content.completion"

# --- Vercel AI SDK (its legacy `ai.*` telemetry: `ai.generateText` over `.doGenerate`) ----
AI_OPERATION_ID: Final = "ai.operationId"
AI_MODEL_ID: Final = "ai.model.id"
AI_MODEL_PROVIDER: Final = "ai.model.provider"
AI_RESPONSE_MODEL: Final = "ai.response.model"
AI_RESPONSE_ID: Final = "ai.response.id"
AI_USAGE_INPUT_TOKENS: Final = "ai.usage.inputTokens"
AI_USAGE_PROMPT_TOKENS: Final = "ai.usage.promptTokens"
AI_USAGE_OUTPUT_TOKENS: Final = "ai.usage.outputTokens"
AI_USAGE_COMPLETION_TOKENS: Final = "ai.usage.completionTokens"
AI_USAGE_TOTAL_TOKENS: Final = "ai.usage.totalTokens"
AI_USAGE_CACHE_READ: Final = "ai.usage.inputTokenDetails.cacheReadTokens"
AI_USAGE_CACHED_INPUT: Final = "ai.usage.cachedInputTokens"
AI_USAGE_CACHE_WRITE: Final = "ai.usage.inputTokenDetails.cacheWriteTokens"
AI_USAGE_REASONING: Final = "ai.usage.outputTokenDetails.reasoningTokens"
AI_USAGE_REASONING_TOKENS: Final = "ai.usage.reasoningTokens"

# --- LiteLLM's OpenTelemetry callback ---------------------------------------------------
# Its own cost, and the provider's usage object as a Python repr string: the only place its
# spans carry cache and reasoning counts.
GEN_AI_COST_TOTAL_COST: Final = "gen_ai.cost.total_cost"
LITELLM_USAGE_OBJECT: Final = "metadata.usage_object"

# --- Anthropic SDK's own spans ------------------------------------------------------------
ANTHROPIC_CACHE_WRITE_5M: Final = "anthropic.usage.cache_creation.ephemeral_5m_input_tokens"
ANTHROPIC_CACHE_WRITE_1H: Final = "anthropic.usage.cache_creation.ephemeral_1h_input_tokens"
CACHE_WRITE_1H_KEYS: Final = (
    ANTHROPIC_CACHE_WRITE_1H,
    "gen_ai.usage.details.ephemeral_1h_input_tokens",  # pydantic-ai's Anthropic usage details
)
"""Cache writes kept for an hour (Anthropic bills them above 5-minute writes): a part of the
cache writes."""
ANTHROPIC_SDK_SCOPE: Final = "com.anthropic.sdk.python"
SELF_TRACING_SDK_SCOPES: Final[dict[str, str]] = {"anthropic": ANTHROPIC_SDK_SCOPE}
"""Client SDKs that trace themselves: the provider (also the client library's name) -> the
scope of the SDK's own spans. Under an instrumentation that does not make its span current,
such an SDK's span of a request starts a trace of its own: the writer matches these
providers' root request spans across traces by response id (``storage/counting.py``), and
``init_aethermind`` ships only its own instrumentation's span."""

# --- Coding agents ------------------------------------------------------------------------
CLAUDE_CODE_EVENTS_SCOPE: Final = "com.anthropic.claude_code.events"
CLAUDE_CODE_TRACING_SCOPE: Final = "com.anthropic.claude_code.tracing"
"""Claude Code's scopes: its usage events (``api_request``) and, with its enhanced telemetry
on, its spans (``claude_code.llm_request``, one per request, under an interaction span)."""
AGENT_REQUEST_SCOPES: Final = frozenset({CLAUDE_CODE_EVENTS_SCOPE, CLAUDE_CODE_TRACING_SCOPE})
"""Scopes whose records of one request carry the provider's request id wherever they sit in
their trace: an agent's usage event and its span of the same request are one request
(``storage/counting.py``), whichever arrives first."""
PREFERRED_REQUEST_SCOPES: Final = (CLAUDE_CODE_EVENTS_SCOPE,)
"""Of two equally rich records of one request, these scopes' count: Claude Code's event
names the model that answered and carries its own cost; its span names the alias asked for."""

# --- Resource attributes ------------------------------------------------------------------
SERVICE_NAME: Final = "service.name"
DEPLOYMENT_ENVIRONMENT_NAME: Final = "deployment.environment.name"
DEPLOYMENT_ENVIRONMENT: Final = "deployment.environment"

# --- Aethermind's own namespace: what the SDK adds to LLM spans --------------------------
AETHERMIND_PREFIX: Final = "aethermind."
# USD cost of the call (double), how it was found (computed|provided|unknown), and the
# genai-prices model id (or "override:<pattern>") it was priced as.
AETHERMIND_COST_USD: Final = "aethermind.cost.usd"
AETHERMIND_COST_SOURCE: Final = "aethermind.cost.source"
AETHERMIND_PRICE_MODEL: Final = "aethermind.cost.price_model"

# --- Precedence tables: for each fact, the names that carry it, first present wins --------
PROVIDER_KEYS: Final = (
    GEN_AI_PROVIDER_NAME,
    GEN_AI_SYSTEM,
    LLM_PROVIDER,
    LLM_SYSTEM,
    AI_MODEL_PROVIDER,
)
OPERATION_KEYS: Final = (GEN_AI_OPERATION_NAME, LLM_REQUEST_TYPE, AI_OPERATION_ID)
REQUEST_MODEL_KEYS: Final = (GEN_AI_REQUEST_MODEL, LLM_REQUEST_MODEL_NAME, AI_MODEL_ID)
RESPONSE_MODEL_KEYS: Final = (
    GEN_AI_RESPONSE_MODEL,
    LLM_RESPONSE_MODEL_NAME,
    LLM_MODEL_NAME,
    EMBEDDING_MODEL_NAME,
    AI_RESPONSE_MODEL,
)
# A roll-up span's summed usage is read as its usage (shown in the trace, never added to
# totals: storage/counting.py), after every per-request spelling.
INPUT_TOKEN_KEYS: Final = (
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_PROMPT_TOKENS,
    LLM_TOKEN_COUNT_PROMPT,
    GEN_AI_AGGREGATED_USAGE_INPUT_TOKENS,
    AI_USAGE_INPUT_TOKENS,
    AI_USAGE_PROMPT_TOKENS,
)
OUTPUT_TOKEN_KEYS: Final = (
    GEN_AI_USAGE_OUTPUT_TOKENS,
    GEN_AI_USAGE_COMPLETION_TOKENS,
    LLM_TOKEN_COUNT_COMPLETION,
    GEN_AI_AGGREGATED_USAGE_OUTPUT_TOKENS,
    AI_USAGE_OUTPUT_TOKENS,
    AI_USAGE_COMPLETION_TOKENS,
)
TOTAL_TOKEN_KEYS: Final = (
    GEN_AI_USAGE_TOTAL_TOKENS,
    LLM_USAGE_TOTAL_TOKENS,
    LLM_TOKEN_COUNT_TOTAL,
    AI_USAGE_TOTAL_TOKENS,
)
CACHE_READ_KEYS: Final = (
    GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS_LEGACY,
    LLM_TOKEN_COUNT_CACHE_READ,
    GEN_AI_AGGREGATED_USAGE_CACHE_READ,
    AI_USAGE_CACHE_READ,
    AI_USAGE_CACHED_INPUT,
)
CACHE_WRITE_KEYS: Final = (
    GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS,
    GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
    GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS_LEGACY,
    LLM_TOKEN_COUNT_CACHE_WRITE,
    GEN_AI_AGGREGATED_USAGE_CACHE_WRITE,
    AI_USAGE_CACHE_WRITE,
)
REASONING_KEYS: Final = (
    GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
    GEN_AI_USAGE_REASONING_TOKENS,
    LLM_TOKEN_COUNT_REASONING,
    GEN_AI_AGGREGATED_USAGE_REASONING,
    AI_USAGE_REASONING,
    AI_USAGE_REASONING_TOKENS,
)
# Who and what spent it (first present wins; a span's own, else its resource's).
USER_ID: Final = "user.id"  # OTel registry; OpenInference
ENDUSER_ID: Final = "enduser.id"  # OTel (deprecated for user.id, still widely sent)
LANGFUSE_USER_ID: Final = "langfuse.user.id"
LLM_USER: Final = "llm.user"  # OpenLLMetry, LiteLLM: OpenAI's request `user`
TRACELOOP_USER_ID: Final = "traceloop.association.properties.user_id"
SESSION_ID: Final = "session.id"  # OTel registry; OpenInference
LANGFUSE_SESSION_ID: Final = "langfuse.session.id"
TRACELOOP_SESSION_ID: Final = "traceloop.association.properties.session_id"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
AGENT_NAME: Final = "agent.name"  # OpenInference
USER_KEYS: Final = (USER_ID, ENDUSER_ID, LANGFUSE_USER_ID, LLM_USER, TRACELOOP_USER_ID)
SESSION_KEYS: Final = (
    SESSION_ID,
    GEN_AI_CONVERSATION_ID,
    LANGFUSE_SESSION_ID,
    TRACELOOP_SESSION_ID,
)
AGENT_KEYS: Final = (GEN_AI_AGENT_NAME, AGENT_NAME)
ATTRIBUTION_KEYS: Final = frozenset((*USER_KEYS, *SESSION_KEYS, *AGENT_KEYS))
"""Every key that names who or what a span is for."""

RESPONSE_ID_KEYS: Final = (GEN_AI_RESPONSE_ID, AI_RESPONSE_ID)
"""The provider's id of its response: two instrumentations that record one request record the
same id (see ``storage/counting.py``, twins)."""
SERVICE_TIER_KEYS: Final = (
    "openai.response.service_tier",  # OpenLLMetry
    "gen_ai.openai.response.service_tier",  # GenAI conventions before 1.37
    "anthropic.response.service_tier",  # the Anthropic SDK's own spans
    "aethermind.service_tier",  # set by hand (batch jobs, which no instrumentation traces)
    "gen_ai.openai.request.service_tier",
    "openai.request.service_tier",
)
"""The tier that served the request, the response's answer before the request's ask
(``semconv/tiers.py``). OpenInference records the request's in its invocation parameters."""
PROVIDED_COST_KEYS: Final = (GEN_AI_USAGE_COST, LLM_COST_TOTAL, GEN_AI_COST_TOTAL_COST)
"""A cost the span reported (USD). On a model call it is kept beside ours (``provided_cost``);
on any other span it is that span's own cost."""
OTHER_COST_KEYS: Final = (AETHERMIND_COST_USD, *PROVIDED_COST_KEYS)
"""A span that is not a model call (a tool calling a paid API, a GPU job) and reports a cost:
its cost in the ``other`` category, ours first. On model calls ``aethermind.cost.usd`` is our
SDK's own estimate of the tokens' price and is not read (the receiver prices the tokens)."""

GEN_AI_USAGE_DETAILS_PREFIX: Final = "gen_ai.usage.details."
"""pydantic-ai's usage details (``RequestUsage.details``, audio counts, web search requests)."""
AETHERMIND_USAGE_PREFIX: Final = "aethermind.usage."
"""Any genai-prices usage unit of ``UNIT_KEYS`` by its own name, set by hand or by an app."""
UNIT_KEYS: Final[dict[str, tuple[str, ...]]] = {
    # genai-prices usage key: the attributes that carry it, first present wins.
    "input_audio_tokens": (
        "aethermind.usage.input_audio_tokens",
        "gen_ai.usage.details.input_audio_tokens",
        "llm.token_count.prompt_details.audio",  # OpenInference (OpenAI prompt_tokens_details)
    ),
    "cache_audio_read_tokens": (
        "aethermind.usage.cache_audio_read_tokens",
        "gen_ai.usage.details.cache_audio_read_tokens",
    ),
    "output_audio_tokens": (
        "aethermind.usage.output_audio_tokens",
        "gen_ai.usage.details.output_audio_tokens",
        "llm.token_count.completion_details.audio",  # OpenInference
    ),
    "input_image_tokens": (
        "aethermind.usage.input_image_tokens",
        "gen_ai.usage.details.input_image_tokens",
    ),
    "cache_image_read_tokens": (
        "aethermind.usage.cache_image_read_tokens",
        "gen_ai.usage.details.cache_image_read_tokens",
    ),
    "output_image_tokens": (
        "aethermind.usage.output_image_tokens",
        "gen_ai.usage.details.output_image_tokens",
    ),
    "input_video_tokens": (
        "aethermind.usage.input_video_tokens",
        "gen_ai.usage.details.input_video_tokens",
    ),
    "output_video_tokens": (
        "aethermind.usage.output_video_tokens",
        "gen_ai.usage.details.output_video_tokens",
    ),
    "web_searches": (
        "aethermind.usage.web_searches",
        # pydantic-ai: Anthropic's usage.server_tool_use.web_search_requests, OpenAI's web
        # search calls
        "gen_ai.usage.details.web_search_requests",
    ),
    "code_executions": ("aethermind.usage.code_executions",),
    "storage_searches": ("aethermind.usage.storage_searches",),
}
"""Usage beyond text tokens that bills at its own rate: modality tokens (a subset of the
input, cache-read or output tokens they name) and per-call fees (server tools). Keys are
genai-prices' usage keys, so its rates apply as they are."""
MODALITY_UNITS: Final = frozenset(k for k in UNIT_KEYS if k.endswith("_tokens"))
FEE_UNITS: Final = frozenset(k for k in UNIT_KEYS if not k.endswith("_tokens"))
STREAMING_KEYS: Final = (GEN_AI_IS_STREAMING, LLM_IS_STREAMING)
ENVIRONMENT_KEYS: Final = (DEPLOYMENT_ENVIRONMENT_NAME, DEPLOYMENT_ENVIRONMENT)

# Any of these on a span makes it a GenAI span worth looking at; checked before anything else
# so that the common case (an HTTP or DB span) costs a handful of dict lookups.
GENAI_MARKER_KEYS: Final = (
    GEN_AI_OPERATION_NAME,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_SYSTEM,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL,
    OPENINFERENCE_SPAN_KIND,
    LLM_REQUEST_TYPE,
    LLM_MODEL_NAME,
    GEN_AI_USAGE_INPUT_TOKENS,
    LLM_TOKEN_COUNT_PROMPT,
    AI_OPERATION_ID,
    AETHERMIND_COST_USD,
    GEN_AI_USAGE_COST,
)

# OpenInference span kinds that are model calls; AGENT/TOOL/CHAIN/RETRIEVER are not priced.
OPENINFERENCE_MODEL_KINDS: Final = frozenset({"LLM", "EMBEDDING"})
# GenAI operations that are model calls (the rest: invoke_agent, execute_tool, ...).
MODEL_CALL_OPERATIONS: Final = frozenset(
    {
        "chat",
        "completion",
        "text_completion",
        "generate_content",
        "embeddings",
        "embedding",
        "rerank",
        "image_generation",
    }
)

# --- Attributes that are never shipped or stored ------------------------------------------
# Prompt and completion content: dropped unless the team opted into content capture.
CONTENT_KEY_PREFIXES: Final = (
    GEN_AI_PROMPT + ".",
    GEN_AI_COMPLETION + ".",
    "llm.input_messages.",
    "llm.output_messages.",
    "llm.prompts.",
    "llm.prompt_template.",
    "embedding.embeddings.",
    "gen_ai.tool.call.",
    "traceloop.entity.input",
    "traceloop.entity.output",
)
CONTENT_KEYS: Final = frozenset(
    {
        GEN_AI_PROMPT,
        GEN_AI_COMPLETION,
        GEN_AI_INPUT_MESSAGES,
        GEN_AI_OUTPUT_MESSAGES,
        GEN_AI_SYSTEM_INSTRUCTIONS,
        GEN_AI_TOOL_CALL_ARGUMENTS,
        GEN_AI_TOOL_CALL_RESULT,
        GEN_AI_CONTENT_PROMPT,
        GEN_AI_CONTENT_COMPLETION,
        INPUT_VALUE,
        OUTPUT_VALUE,
        "input.mime_type",
        "output.mime_type",
        "llm.prompts",
        "traceloop.entity.input",
        "traceloop.entity.output",
    }
)
# Attributes that can carry credentials: always dropped, whatever the content setting.
CREDENTIAL_KEYS: Final = frozenset({GEN_AI_HEADERS, LLM_HEADERS})
CREDENTIAL_KEY_FRAGMENTS: Final = (
    "api_key",
    "apikey",
    "api-key",
    "authorization",
    "password",
    "secret",
    "x-api-key",
)
