"""Coding agents' spans whose usage is not spelled the GenAI way, rewritten into it before
``normalize`` reads them. Pure: no I/O.

Claude Code's ``claude_code.llm_request`` span (scope ``CLAUDE_CODE_TRACING_SCOPE``, its
enhanced telemetry) carries its counts as bare ``input_tokens`` (the uncached input only),
``output_tokens``, ``cache_read_tokens`` and ``cache_creation_tokens``, the provider's
``request_id`` and, in some versions, ``gen_ai.usage.input_tokens`` with the cache inside.
Read from the GenAI attribute when present, else from the bare counts, so that span and
event count the same tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aethermind.semconv import attributes as a

SpanAdapter = Callable[[Mapping[str, Any]], Mapping[str, Any]]


def _count(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None


def _claude_code_request(attrs: Mapping[str, Any]) -> Mapping[str, Any]:
    out = dict(attrs)
    uncached = _count(attrs.get("input_tokens"))
    read = _count(attrs.get("cache_read_tokens"))
    write = _count(attrs.get("cache_creation_tokens"))
    if a.GEN_AI_USAGE_INPUT_TOKENS not in attrs and uncached is not None:
        out[a.GEN_AI_USAGE_INPUT_TOKENS] = uncached + (read or 0) + (write or 0)
    if a.GEN_AI_USAGE_OUTPUT_TOKENS not in attrs and _count(attrs.get("output_tokens")) is not None:
        out[a.GEN_AI_USAGE_OUTPUT_TOKENS] = attrs["output_tokens"]
    if read is not None:
        out.setdefault(a.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, read)
    if write is not None:
        out.setdefault(a.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, write)
    request_id = attrs.get("request_id")
    if isinstance(request_id, str) and request_id:
        out.setdefault(a.GEN_AI_RESPONSE_ID, request_id)
    return out


ADAPTERS: dict[str, SpanAdapter] = {a.CLAUDE_CODE_TRACING_SCOPE: _claude_code_request}
"""Instrumentation scope -> the rewrite of its spans' attributes."""
