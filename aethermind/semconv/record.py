"""The normalized shapes every part of Aethermind agrees on: one usage record per LLM span
and the cost computed for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

CostSource = Literal["computed", "provided", "unknown"]

MAX_NAME_LENGTH = 256
"""Characters kept of a provider or model name. Real names stay far below it (a Bedrock
inference-profile ARN is ~110); longer ones are cut, stored cut, and priced by the cut name,
so what keys the pricing caches stays small whatever a span says."""

MAX_RESPONSE_ID_LENGTH = 128
"""Characters of a provider's response id (``msg_...``, ``chatcmpl-...``, ~40 in practice).
A longer one is not kept: an id cut short could make two responses look like one."""


# Not frozen: a frozen dataclass __init__ costs about a microsecond on the hot path (it goes
# through object.__setattr__ per field). Treat instances as immutable all the same.
@dataclass(slots=True)
class UsageRecord:
    """What one LLM (or GenAI agent/tool) span tells us, whatever convention it was written in.

    Token counts follow the GenAI semantic conventions: ``input_tokens`` is all input, cached
    included; ``output_tokens`` is all output, reasoning included. ``None`` means the span did
    not say, which is different from zero.
    """

    provider: str | None = None
    operation: str | None = None
    request_model: str | None = None
    response_model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    cache_write_5m_tokens: int | None = None
    cache_write_1h_tokens: int | None = None
    reasoning_tokens: int | None = None
    total_tokens: int | None = None
    provided_cost: Decimal | None = None
    error_type: str | None = None
    service: str | None = None
    environment: str | None = None
    is_llm_call: bool = True
    """False for GenAI agent/tool spans: they are stored but never priced as a model call."""
    response_id: str | None = None
    """The provider's id of the response (``gen_ai.response.id``), when the span recorded one
    of at most ``MAX_RESPONSE_ID_LENGTH`` characters: one request seen by two instrumentations
    carries the same id in both spans."""
    user: str | None = None
    """Who the call was for (``user.id``, ``enduser.id``, ...: ``attributes.USER_KEYS``), from
    the span, else its resource; cut to ``MAX_NAME_LENGTH``."""
    session: str | None = None
    """The conversation or session (``attributes.SESSION_KEYS``), likewise."""
    agent: str | None = None
    """The agent that made the call or is the span (``attributes.AGENT_KEYS``), likewise."""
    cut: bool = False
    """Whether a user, session or agent value was longer than ``MAX_NAME_LENGTH`` and cut."""
    service_tier: str | None = None
    """The tier that served the request (``batch``, ``flex``, ``priority``, ...), None for
    standard: ``tiers.normalize_tier``."""
    units: dict[str, int] | None = None
    """Usage billed at rates of its own (``attributes.UNIT_KEYS``: audio, image and video
    tokens, each a part of the token count it names; web searches and other server-tool
    calls), by genai-prices usage key; None when the span reported none."""

    @property
    def model(self) -> str | None:
        """The model that actually answered when the span says so, else the one asked for."""
        return self.response_model or self.request_model


@dataclass(slots=True)
class Cost:
    """A span's price in USD, split the way a bill is, with where the figure came from.

    ``total`` is None when ``source`` is ``unknown``: an unpriced call never costs $0.
    ``input`` is the uncached input only; cache reads and writes are their own lines. The
    lines sum to ``total`` when it was computed here.
    """

    source: CostSource
    total: Decimal | None = None
    input: Decimal | None = None
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    output: Decimal | None = None
    price_model_id: str | None = None
    provider_id: str | None = None
    modality: Decimal | None = None
    """Audio, image and video tokens at their own rates (the text lines exclude them)."""
    fees: Decimal | None = None
    """Per-call fees: server tools (web searches, code execution) and per-request prices."""
    other: Decimal | None = None
    """A cost that is not tokens, reported by a span that is not a model call."""
    saved_by_cache: Decimal | None = None
    """What the cache reads saved: their tokens at the uncached input rate, less what they
    cost. Not part of ``total``."""


UNKNOWN_COST = Cost(source="unknown")
