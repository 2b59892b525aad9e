"""How the provider names instrumentations write map to the providers genai-prices knows.

Kept as data: semconv well-known values, OpenLLMetry's and OpenInference's spellings, and the
prefixes some clients put in front of model names (``anthropic/claude-...``).
"""

from __future__ import annotations

from typing import Final

# Lower-cased provider name as found on a span -> genai-prices provider id.
PRICES_PROVIDER_BY_NAME: Final[dict[str, str]] = {
    # OTel GenAI well-known `gen_ai.provider.name` values
    "openai": "openai",
    "anthropic": "anthropic",
    "aws.bedrock": "aws",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "cohere": "cohere",
    "deepseek": "deepseek",
    "groq": "groq",
    "mistral_ai": "mistral",
    "perplexity": "perplexity",
    "x_ai": "x-ai",
    # Deprecated `gen_ai.system` values and other instrumentations' spellings
    "az.ai.inference": "azure",
    "az.ai.openai": "azure",
    "azure": "azure",
    "azure_openai": "azure",
    "bedrock": "aws",
    "aws": "aws",
    "amazon": "aws",
    "vertex_ai": "google",
    "vertexai": "google",
    "vertex": "google",
    "gemini": "google",
    "google": "google",
    "google_genai": "google",
    # pydantic-ai's Google provider names (`google-cloud`; before its v2, `google-gla` for the
    # Gemini API and `google-vertex`)
    "google-cloud": "google",
    "google-gla": "google",
    "google-vertex": "google",
    "mistralai": "mistral",
    "mistral": "mistral",
    "xai": "x-ai",
    "x-ai": "x-ai",
    "together": "together",
    "together_ai": "together",
    "fireworks": "fireworks",
    "openrouter": "openrouter",
    "cerebras": "cerebras",
    # The Vercel AI SDK's provider ids (`ai.model.provider`, and `gen_ai.system` in its
    # legacy telemetry): provider, then the API
    "openai.chat": "openai",
    "openai.responses": "openai",
    "openai.completion": "openai",
    "openai.embedding": "openai",
    "anthropic.messages": "anthropic",
    "google.generative-ai": "google",
    "google.vertex.chat": "google",
    "mistral.chat": "mistral",
    "groq.chat": "groq",
    "xai.chat": "x-ai",
    "deepseek.chat": "deepseek",
}

# Model-name prefixes that name the provider (LiteLLM, OpenRouter, Vercel AI SDK style).
MODEL_PREFIX_SEPARATORS: Final = ("/", ":")


def prices_provider_id(provider: str | None) -> str | None:
    """The genai-prices provider id for a span's provider name, or None when unknown."""
    if not provider:
        return None
    return PRICES_PROVIDER_BY_NAME.get(provider.strip().lower())


def same_provider(named: str, reported: str | None) -> bool:
    """Whether a span's ``reported`` provider is the one an override ``named``: the same
    name, case-blind, or two names genai-prices knows as one provider (``azure.ai.openai``
    and ``azure``, say)."""
    if not reported:
        return False
    if named.strip().lower() == reported.strip().lower():
        return True
    named_id = prices_provider_id(named)
    return named_id is not None and named_id == prices_provider_id(reported)


def split_model_prefix(model: str) -> tuple[str | None, str]:
    """``"anthropic/claude-x"`` -> ``("anthropic", "claude-x")``; unprefixed names unchanged.

    Only a prefix we recognise as a provider is split off, so model ids that legitimately
    contain a slash (fine-tune ids, Bedrock ARNs) are left alone.
    """
    for sep in MODEL_PREFIX_SEPARATORS:
        head, found, tail = model.partition(sep)
        if found and tail:
            provider_id = prices_provider_id(head)
            if provider_id is not None:
                return provider_id, tail
    return None, model
