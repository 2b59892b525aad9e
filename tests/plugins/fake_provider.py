"""A local fake of the OpenAI and Anthropic HTTP APIs: tests drive the real SDKs offline.

The server is an aiohttp app on 127.0.0.1, on a free port, in a background thread with its
own event loop: the sync `openai` and `anthropic` clients call it from test code over real
HTTP. Every response has fixed usage numbers, all distinct from each other, so a test can
tell which count ended up in which attribute. Tests import the `*_USAGE` constants rather
than repeating the numbers.

Models that genai-prices knows (checked with `genai_prices.calc_price`): `gpt-4o` (answered as
`gpt-4o-2024-08-06`), `o3-mini` (answered as `o3-mini-2025-01-31`), `text-embedding-3-small`, and
`claude-sonnet-4-5` (answered as `claude-sonnet-4-5-20250929`).

A request whose model is one of `ERROR_MODELS` gets that HTTP status with the provider's error body.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from aiohttp import web

from aethermind.storage.rollups import TOKEN_COLUMNS

# OpenAI usage: `prompt_tokens` INCLUDES `cached_tokens`, and
# `completion_tokens` INCLUDES `reasoning_tokens`.

OPENAI_CHAT_USAGE: dict[str, Any] = {
    "prompt_tokens": 1200,
    "completion_tokens": 300,
    "total_tokens": 1500,
    "prompt_tokens_details": {"cached_tokens": 400, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
"""Non-streamed chat completion of a non-reasoning model (`gpt-4o`)."""

OPENAI_STREAM_USAGE: dict[str, Any] = {
    "prompt_tokens": 1700,
    "completion_tokens": 350,
    "total_tokens": 2050,
    "prompt_tokens_details": {"cached_tokens": 600, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
"""Streamed chat completion, in the final chunk when `stream_options={"include_usage": True}`."""

OPENAI_REASONING_USAGE: dict[str, Any] = {
    "prompt_tokens": 800,
    "completion_tokens": 1900,
    "total_tokens": 2700,
    "prompt_tokens_details": {"cached_tokens": 100, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 1600,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
"""Chat completion of a reasoning model (`o3-mini`): 1600 of its 1900 completion tokens are
reasoning."""

OPENAI_RESPONSES_USAGE: dict[str, Any] = {
    "input_tokens": 1500,
    "input_tokens_details": {"cached_tokens": 500},
    "output_tokens": 320,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 1820,
}
"""A Responses API answer (`/v1/responses`): input includes cached, as in chat completions."""

OPENAI_EMBEDDINGS_USAGE: dict[str, Any] = {"prompt_tokens": 64, "total_tokens": 64}
"""Embeddings. The API always has `total_tokens == prompt_tokens` here; 64 is used nowhere else."""

OPENAI_AUDIO_USAGE: dict[str, Any] = {
    "prompt_tokens": 1200,
    "completion_tokens": 300,
    "total_tokens": 1500,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 700},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 200,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
"""Chat completion asked for audio (`modalities=["text", "audio"]`): 700 of the prompt tokens
and 200 of the completion tokens are audio."""

# --- Anthropic usage. `input_tokens` EXCLUDES cache reads and cache writes. ---

ANTHROPIC_MESSAGES_USAGE: dict[str, Any] = {
    "input_tokens": 900,
    "cache_creation_input_tokens": 500,
    "cache_read_input_tokens": 2000,
    "cache_creation": {
        "ephemeral_5m_input_tokens": 320,
        "ephemeral_1h_input_tokens": 180,
    },
    "output_tokens": 250,
    "service_tier": "standard",
}
"""Non-streamed message. All input, cache included: 900 + 2000 + 500 = 3400."""

ANTHROPIC_STREAM_USAGE: dict[str, Any] = {
    "input_tokens": 1300,
    "cache_creation_input_tokens": 700,
    "cache_read_input_tokens": 2400,
    "cache_creation": {
        "ephemeral_5m_input_tokens": 420,
        "ephemeral_1h_input_tokens": 280,
    },
    "output_tokens": 275,
    "service_tier": "standard",
}
"""Streamed message. `message_start` carries the input side, with `output_tokens` set to
`ANTHROPIC_STREAM_START_OUTPUT`; `message_delta` carries only the final `output_tokens` (275).
All input, cache included: 1300 + 2400 + 700 = 4400."""

ANTHROPIC_WEB_SEARCHES = 2
"""Server-side web searches a message reports (`usage.server_tool_use.web_search_requests`)
when the request offers the web search tool."""

ANTHROPIC_STREAM_START_OUTPUT = 3
"""The placeholder `output_tokens` of `message_start`: the real API sends a small number there."""

DELTA_USAGE_HEADER = "x-fake-delta-usage"
"""Request header: `cumulative` makes a streamed message's `message_delta` carry every count."""

OPENAI_MODEL_SNAPSHOTS: dict[str, str] = {
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "o3-mini": "o3-mini-2025-01-31",
}
"""Alias asked -> dated snapshot answered, as the real API does. Other models are echoed."""

ANTHROPIC_MODEL_SNAPSHOTS: dict[str, str] = {
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
}

REASONING_MODEL_PREFIXES = ("o1", "o3", "o4", "gpt-5")
"""Chat models answered with `OPENAI_REASONING_USAGE`."""

ERROR_MODELS: dict[str, int] = {
    "error-model": 400,
    "error-model-429": 429,
    "error-model-500": 500,
}
"""Model name -> HTTP status of the error response. Use `max_retries=0`: 429 and 500 are retried."""

OPENAI_CHAT_TEXT = "Hello from the fake provider."
OPENAI_STREAM_PIECES = ("Hello", " from", " the", " fake", " stream.")
ANTHROPIC_TEXT = "Bonjour from the fake provider."
ANTHROPIC_STREAM_PIECES = ("Bonjour", " from", " the", " fake", " stream.")
EMBEDDING_DIMENSIONS = 8

_OPENAI_ERRORS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", "model_not_found"),
    429: ("rate_limit_exceeded", "rate_limit_exceeded"),
    500: ("server_error", None),
}
_ANTHROPIC_ERRORS: dict[int, str] = {
    400: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request that the fake server received, for tests to check what the SDK actually sent."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any

    @property
    def model(self) -> str | None:
        return self.body.get("model") if isinstance(self.body, dict) else None


@dataclass(frozen=True)
class Served:
    """One response the fake provider gave: the ledger entry tests compare totals with.

    `usage` is the provider's own usage object as served (OpenAI: prompt tokens include cached
    ones; Anthropic: input tokens exclude cache reads and writes); `counts()` gives it in the
    GenAI conventions' terms."""

    vendor: Vendor
    model: str
    """The model that answered (the dated snapshot), or the one asked for on an error."""
    status: int
    usage: dict[str, Any] = field(default_factory=dict)
    service_tier: str = "default"
    """The tier it answered at (OpenAI chat: `flex` or `priority` when the request asked)."""

    def units(self) -> dict[str, int]:
        """What was billed at rates of its own: audio tokens and web searches, by genai-prices
        usage key (none: empty)."""
        u = self.usage
        prompt = u.get("prompt_tokens_details") or {}
        completion = u.get("completion_tokens_details") or {}
        found = {
            "input_audio_tokens": prompt.get("audio_tokens") or 0,
            "output_audio_tokens": completion.get("audio_tokens") or 0,
            "web_searches": (u.get("server_tool_use") or {}).get("web_search_requests") or 0,
        }
        return {k: v for k, v in found.items() if v}

    def counts(self) -> dict[str, int]:
        """input (all of it, cache included), output (reasoning included), cache_read,
        cache_write, reasoning, total: as Aethermind stores them."""
        u = self.usage
        if not u:
            return dict.fromkeys(TOKEN_KINDS, 0)
        if self.vendor == "anthropic":
            read = u.get("cache_read_input_tokens") or 0
            write = u.get("cache_creation_input_tokens") or 0
            inp = u["input_tokens"] + read + write
            out = u["output_tokens"]
            reasoning = 0
        else:
            inp = u.get("prompt_tokens", u.get("input_tokens", 0))
            out = u.get("completion_tokens", u.get("output_tokens", 0))
            read = (u.get("prompt_tokens_details") or u.get("input_tokens_details") or {}).get(
                "cached_tokens", 0
            )
            write = 0
            details = u.get("completion_tokens_details") or u.get("output_tokens_details") or {}
            reasoning = details.get("reasoning_tokens", 0)
        return {
            "input_tokens": inp,
            "output_tokens": out,
            "cache_read_tokens": read,
            "cache_write_tokens": write,
            "reasoning_tokens": reasoning,
            "total_tokens": inp + out,
        }


TOKEN_KINDS = TOKEN_COLUMNS
"""The token counts a ledger entry gives, named and ordered as the stored columns."""


def ledger_totals(served: list[Served]) -> dict[str, dict[str, int]]:
    """Per model: calls, errors and every token kind, summed over what was served."""
    totals: dict[str, dict[str, int]] = {}
    for entry in served:
        row = totals.setdefault(
            entry.model, {"calls": 0, "errors": 0, **dict.fromkeys(TOKEN_KINDS, 0)}
        )
        row["calls"] += 1
        row["errors"] += entry.status >= 400
        for kind, count in entry.counts().items():
            row[kind] += count
    return totals


@dataclass
class FakeProvider:
    """A running fake server. `base_url` has no path; `openai_base_url` adds the `/v1` that the
    OpenAI SDK expects (the Anthropic SDK adds it itself). `served` is its ledger: one entry
    per response, in order."""

    base_url: str
    requests: list[RecordedRequest] = field(default_factory=list)
    served: list[Served] = field(default_factory=list)

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.base_url

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [request for request in list(self.requests) if request.path == path]

    def clear(self) -> None:
        self.requests.clear()
        self.served.clear()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Vendor = Literal["openai", "anthropic"]
LEDGER = web.AppKey("ledger", list)

_ids = itertools.count(1)


def _next_id(prefix: str) -> str:
    return f"{prefix}{next(_ids):06d}"


def _record(
    request: web.Request,
    vendor: Vendor,
    model: str,
    status: int,
    usage: dict[str, Any] | None,
    *,
    service_tier: str = "default",
) -> None:
    request.app[LEDGER].append(Served(vendor, model, status, dict(usage or {}), service_tier))


def _served_tier(body: dict[str, Any]) -> str:
    """The tier OpenAI answers: `flex` or `priority` when asked for, else `default`."""
    asked = body.get("service_tier")
    return asked if asked in ("flex", "priority") else "default"


def _refused(request: web.Request, vendor: Vendor, model: str) -> web.Response | None:
    """The provider's error response (recorded in the ledger) for one of `ERROR_MODELS`."""
    status = ERROR_MODELS.get(model)
    if status is None:
        return None
    _record(request, vendor, model, status, None)
    return _openai_error(status, model) if vendor == "openai" else _anthropic_error(status, model)


def _tool_call_wanted(body: dict[str, Any]) -> dict[str, Any] | None:
    """The first tool the request offers, when no tool has answered yet in its conversation:
    the fake then calls it (once), so agents loop as they do against the real API."""
    tools = [t for t in body.get("tools") or [] if not _is_server_tool(t)]
    messages = body.get("messages") or []
    answered = any(
        m.get("role") == "tool"
        or (isinstance(m.get("content"), list) and any(
            isinstance(c, dict) and c.get("type") == "tool_result" for c in m["content"]))
        for m in messages if isinstance(m, dict)
    )  # fmt: skip
    return tools[0] if tools and not answered else None


def _is_server_tool(tool: Any) -> bool:
    """A tool the provider runs itself (Anthropic's `web_search_20250305`), billed per call."""
    return isinstance(tool, dict) and str(tool.get("type", "")).startswith("web_search")


def _arguments_for(schema: dict[str, Any]) -> dict[str, Any]:
    """Arguments that satisfy a tool's JSON schema's required properties."""
    samples = {"string": "fake", "integer": 1, "number": 1, "boolean": True}
    properties = schema.get("properties") or {}
    return {
        name: samples.get(str((properties.get(name) or {}).get("type")), "fake")
        for name in schema.get("required") or []
    }


def _openai_error(status: int, model: str) -> web.Response:
    error_type, code = _OPENAI_ERRORS[status]
    body = {
        "error": {
            "message": f"The fake provider fails every request to the model `{model}`.",
            "type": error_type,
            "param": "model" if status == 400 else None,
            "code": code,
        }
    }
    return web.json_response(body, status=status, headers={"x-request-id": _next_id("req_")})


def _anthropic_error(status: int, model: str) -> web.Response:
    request_id = _next_id("req_")
    body = {
        "type": "error",
        "error": {
            "type": _ANTHROPIC_ERRORS[status],
            "message": f"The fake provider fails every request to the model `{model}`.",
        },
        "request_id": request_id,
    }
    return web.json_response(body, status=status, headers={"request-id": request_id})


def _sse(data: object, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


async def _send_sse(
    request: web.Request, frames: Iterator[bytes], headers: dict[str, str]
) -> web.StreamResponse:
    response = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            **headers,
        },
    )
    await response.prepare(request)
    for frame in frames:
        await response.write(frame)
    await response.write_eof()
    return response


def _is_reasoning(model: str) -> bool:
    return model.startswith(REASONING_MODEL_PREFIXES)


def _openai_chat_frames(
    model: str, completion_id: str, created: int, include_usage: bool
) -> Iterator[bytes]:
    """The chunks of a streamed chat completion, as OpenAI sends them: when usage was asked
    for, `usage: null` on every chunk, then a last chunk with no choices and the usage."""

    def chunk(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": "fp_fake0001",
            "choices": [
                {
                    "index": 0,
                    "delta": delta,
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
        }
        if include_usage:
            data["usage"] = None
        return data

    yield _sse(chunk({"role": "assistant", "content": "", "refusal": None}, None))
    for piece in OPENAI_STREAM_PIECES:
        yield _sse(chunk({"content": piece}, None))
    yield _sse(chunk({}, "stop"))
    if include_usage:
        yield _sse(
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": "fp_fake0001",
                "choices": [],
                "usage": OPENAI_STREAM_USAGE,
            }
        )
    yield b"data: [DONE]\n\n"


async def _openai_chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    asked = str(body.get("model", ""))
    if (refused := _refused(request, "openai", asked)) is not None:
        return refused
    model = OPENAI_MODEL_SNAPSHOTS.get(asked, asked)
    completion_id = _next_id("chatcmpl-fake")
    created = int(time.time())
    headers = {"x-request-id": _next_id("req_"), "openai-processing-ms": "42"}
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        _record(request, "openai", model, 200, OPENAI_STREAM_USAGE if include_usage else None)
        return await _send_sse(
            request,
            _openai_chat_frames(model, completion_id, created, include_usage),
            headers,
        )
    usage = OPENAI_REASONING_USAGE if _is_reasoning(asked) else OPENAI_CHAT_USAGE
    message: dict[str, Any] = {
        "role": "assistant",
        "content": OPENAI_CHAT_TEXT,
        "refusal": None,
        "annotations": [],
    }
    if "audio" in (body.get("modalities") or []):
        usage = OPENAI_AUDIO_USAGE
        message["content"] = None
        message["audio"] = {
            "id": _next_id("audio_fake"),
            "data": base64.b64encode(b"RIFF fake wav").decode(),
            "expires_at": created + 3600,
            "transcript": OPENAI_CHAT_TEXT,
        }
    finish_reason = "stop"
    tool = _tool_call_wanted(body)
    if tool is not None:
        function = tool.get("function") or {}
        message["content"] = None
        message["tool_calls"] = [
            {
                "id": _next_id("call_fake"),
                "type": "function",
                "function": {
                    "name": function.get("name", "tool"),
                    "arguments": json.dumps(_arguments_for(function.get("parameters") or {})),
                },
            }
        ]
        finish_reason = "tool_calls"
    tier = _served_tier(body)
    _record(request, "openai", model, 200, usage, service_tier=tier)
    response = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        ],
        "usage": usage,
        "service_tier": tier,
        "system_fingerprint": "fp_fake0001",
    }
    return web.json_response(response, headers=headers)


def _responses_tool_wanted(body: dict[str, Any]) -> dict[str, Any] | None:
    """The Responses API's function tool to call: the first one, until an output answers."""
    tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
    items = body.get("input") if isinstance(body.get("input"), list) else []
    answered = any(isinstance(i, dict) and i.get("type") == "function_call_output" for i in items)
    return tools[0] if tools and not answered else None


async def _openai_responses(request: web.Request) -> web.StreamResponse:
    """`POST /v1/responses`, non-streamed: a function call when a tool is offered and not yet
    answered, else a text message."""
    body = await request.json()
    asked = str(body.get("model", ""))
    if (refused := _refused(request, "openai", asked)) is not None:
        return refused
    model = OPENAI_MODEL_SNAPSHOTS.get(asked, asked)
    tool = _responses_tool_wanted(body)
    if tool is not None:
        output: list[dict[str, Any]] = [
            {
                "type": "function_call",
                "id": _next_id("fc_fake"),
                "call_id": _next_id("call_fake"),
                "name": tool.get("name", "tool"),
                "arguments": json.dumps(_arguments_for(tool.get("parameters") or {})),
                "status": "completed",
            }
        ]
    else:
        output = [
            {
                "type": "message",
                "id": _next_id("msg_fake"),
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": OPENAI_CHAT_TEXT, "annotations": []}],
            }
        ]
    _record(request, "openai", model, 200, OPENAI_RESPONSES_USAGE)
    response = {
        "id": _next_id("resp_fake"),
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": model,
        "output": output,
        "usage": OPENAI_RESPONSES_USAGE,
        "parallel_tool_calls": True,
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "temperature": 1.0,
        "top_p": 1.0,
        "text": {"format": {"type": "text"}},
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "metadata": {},
        "service_tier": "default",
        "store": False,
        "truncation": "disabled",
        "reasoning": {"effort": None, "summary": None},
        "max_output_tokens": None,
        "previous_response_id": None,
    }
    return web.json_response(response, headers={"x-request-id": _next_id("req_")})


def _embedding_vector(index: int, encoding_format: str) -> list[float] | str:
    values = [round(0.125 * (index + 1) + 0.01 * i, 6) for i in range(EMBEDDING_DIMENSIONS)]
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")
    return values


async def _openai_embeddings(request: web.Request) -> web.Response:
    body = await request.json()
    model = str(body.get("model", ""))
    if (refused := _refused(request, "openai", model)) is not None:
        return refused
    _record(request, "openai", model, 200, OPENAI_EMBEDDINGS_USAGE)
    inputs = body.get("input")
    count = (
        len(inputs)
        if isinstance(inputs, list) and not all(isinstance(item, int) for item in inputs)
        else 1
    )
    encoding_format = str(body.get("encoding_format") or "float")
    response = {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": index,
                "embedding": _embedding_vector(index, encoding_format),
            }
            for index in range(count)
        ],
        "model": model,
        "usage": OPENAI_EMBEDDINGS_USAGE,
    }
    return web.json_response(response, headers={"x-request-id": _next_id("req_")})


def _anthropic_message(
    message_id: str, model: str, content: list[dict[str, Any]], usage: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "end_turn" if content else None,
        "stop_sequence": None,
        "usage": usage,
    }


def _anthropic_stream_frames(
    message_id: str, model: str, cumulative: bool, extra_usage: dict[str, Any]
) -> Iterator[bytes]:
    """The events of a streamed message in Anthropic's wire format: an `event:` line names
    each (the SDK skips events without one), and its `data:` repeats the name in `type`.

    `cumulative` makes `message_delta` repeat the input-side counts next to `output_tokens`, as
    the API's cumulative delta usage does; otherwise it has `output_tokens` alone.
    `extra_usage` (server-tool use) goes in `message_delta`, where the API reports it."""
    delta_usage: dict[str, Any] = {
        "output_tokens": ANTHROPIC_STREAM_USAGE["output_tokens"],
        **extra_usage,
    }
    if cumulative:
        delta_usage = {
            **{
                key: ANTHROPIC_STREAM_USAGE[key]
                for key in (
                    "input_tokens",
                    "cache_creation_input_tokens",
                    "cache_read_input_tokens",
                    "output_tokens",
                )
            },
            **extra_usage,
        }
    start_usage = {
        **ANTHROPIC_STREAM_USAGE,
        "output_tokens": ANTHROPIC_STREAM_START_OUTPUT,
    }
    yield _sse(
        {
            "type": "message_start",
            "message": _anthropic_message(message_id, model, [], start_usage),
        },
        "message_start",
    )
    yield _sse(
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        },
        "content_block_start",
    )
    yield _sse({"type": "ping"}, "ping")
    for piece in ANTHROPIC_STREAM_PIECES:
        yield _sse(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            },
            "content_block_delta",
        )
    yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
    yield _sse(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": delta_usage,
        },
        "message_delta",
    )
    yield _sse({"type": "message_stop"}, "message_stop")


async def _anthropic_messages(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    asked = str(body.get("model", ""))
    if (refused := _refused(request, "anthropic", asked)) is not None:
        return refused
    model = ANTHROPIC_MODEL_SNAPSHOTS.get(asked, asked)
    message_id = _next_id("msg_fake")
    headers = {"request-id": _next_id("req_")}
    extra_usage: dict[str, Any] = {}
    if any(_is_server_tool(t) for t in body.get("tools") or []):
        extra_usage = {"server_tool_use": {"web_search_requests": ANTHROPIC_WEB_SEARCHES}}
    if body.get("stream"):
        cumulative = request.headers.get(DELTA_USAGE_HEADER, "") == "cumulative"
        frames = _anthropic_stream_frames(message_id, model, cumulative, extra_usage)
        _record(request, "anthropic", model, 200, {**ANTHROPIC_STREAM_USAGE, **extra_usage})
        return await _send_sse(request, frames, headers)
    content: list[dict[str, Any]] = [{"type": "text", "text": ANTHROPIC_TEXT}]
    tool = _tool_call_wanted(body)
    if tool is not None:
        content = [
            {
                "type": "tool_use",
                "id": _next_id("toolu_fake"),
                "name": tool.get("name", "tool"),
                "input": _arguments_for(tool.get("input_schema") or {}),
            }
        ]
    usage = {**ANTHROPIC_MESSAGES_USAGE, **extra_usage}
    message = _anthropic_message(message_id, model, content, usage)
    if tool is not None:
        message["stop_reason"] = "tool_use"
    _record(request, "anthropic", model, 200, usage)
    return web.json_response(message, headers=headers)


def _make_app(provider: FakeProvider) -> web.Application:
    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        provider.requests.append(
            RecordedRequest(request.method, request.path, dict(request.headers), body)
        )
        return await handler(request)

    app = web.Application(middlewares=[record])
    app[LEDGER] = provider.served
    app.router.add_post("/v1/chat/completions", _openai_chat)
    app.router.add_post("/v1/embeddings", _openai_embeddings)
    app.router.add_post("/v1/responses", _openai_responses)
    app.router.add_post("/v1/messages", _anthropic_messages)
    return app


class FakeProviderServer:
    """Runs the app in a daemon thread with its own event loop, so sync clients can block on it."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fake-provider", daemon=True
        )
        self._runner: web.AppRunner | None = None
        self.provider: FakeProvider | None = None

    def start(self) -> FakeProvider:
        self._thread.start()
        self.provider = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(
            timeout=10
        )
        return self.provider

    async def _start(self) -> FakeProvider:
        provider = FakeProvider(base_url="")
        self._runner = web.AppRunner(_make_app(provider), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        provider.base_url = f"http://{host}:{port}"
        return provider

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def fake_provider() -> Iterator[FakeProvider]:
    """The fake provider, shared by the session: one server, one port. Tests that count
    requests `.clear()` first or filter `.requests` by what they sent."""
    with FakeProviderServer() as provider:
        yield provider
