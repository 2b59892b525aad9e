"""Which OTLP metrics report LLM usage, and the ``metric_usage`` rows their points become.
Pure apart from pricing through the given ``PriceBook``.

One reader per metric, from each source's own docs and telemetry (what arrives is checked
against the real Claude Code CLI in the tests):

- **Claude Code**: ``claude_code.token.usage`` (a counter split by ``type``: ``input``, the
  uncached input only, ``output``, ``cacheRead``, ``cacheCreation``; ``model`` is the alias
  asked for) and ``claude_code.cost.usage`` (its own USD estimate, kept as provided cost).
  It has no request counter: metric-only Claude Code usage shows tokens and cost, 0 calls.
- **Gemini CLI**: ``gemini_cli.token.usage`` (``type``: ``input`` with the cache inside,
  ``output``, ``thought``, ``cache``, ``tool``) and ``gemini_cli.api.request.count``
  (``status_code``, ``error_type``).
- **GenAI semantic conventions**: ``gen_ai.client.token.usage`` (a histogram per
  ``gen_ai.token.type``; its sum is the tokens) and ``gen_ai.client.operation.duration``
  (its count is the calls, failed ones with ``error.type``). An agent above also records
  these for the same requests (Gemini CLI does): from a service one of the agents names,
  they are dropped, the agent's own metrics being the richer.
- Codex CLI's metrics count requests and tool calls but no tokens: its usage comes from its
  events (``agent_events.py``).

What the rows then count toward, and when (spans win per service and UTC day), is
``storage/metric_usage.py``'s rule.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aethermind.ingest.metrics import MetricPoint
from aethermind.ingest.policy import TenantPolicy
from aethermind.ingest.window import TimeWindow
from aethermind.semconv import PriceBook, UsageRecord
from aethermind.semconv import attributes as a
from aethermind.semconv.normalize import reported_usage
from aethermind.storage.metric_usage import MEASURES, MetricUsageRow
from aethermind.storage.rollups import TOKEN_COLUMNS

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_DIMENSION = 256

MeasureOf = Callable[[Mapping[str, Any]], str | None]


@dataclass(frozen=True, slots=True)
class MetricReader:
    """How one metric's points read."""

    metric: str
    kinds: tuple[str, ...]
    measure: MeasureOf
    """The point's measure (``MEASURES``) from its attributes; None: no usage."""
    quantity: str
    """``value`` (a number point's value, a histogram's sum) or ``count`` (a histogram's)."""
    agent: str | None = None
    """The agent whose metric this is: its service name when the resource names none."""
    provider: str | None = None
    """The provider, when the metric is one provider's; else read from ``provider_keys``."""
    provider_keys: tuple[str, ...] = ()
    model_keys: tuple[str, ...] = ("model",)


def _by_type(key: str, measures: Mapping[str, str]) -> MeasureOf:
    def measure(attributes: Mapping[str, Any]) -> str | None:
        kind = attributes.get(key)
        return measures.get(kind) if isinstance(kind, str) else None

    return measure


def _call_outcome(*error_keys: str, status_key: str | None = None) -> MeasureOf:
    def measure(attributes: Mapping[str, Any]) -> str | None:
        failed = any(attributes.get(k) not in (None, "") for k in error_keys)
        if status_key is not None:
            status = attributes.get(status_key)
            if isinstance(status, str) and status.isdigit():
                status = int(status)
            failed = failed or (type(status) is int and status >= 400)
        return "failed_calls" if failed else "calls"

    return measure


_CLAUDE_CODE_TOKEN_TYPES = {
    "input": "input_tokens",
    "output": "output_tokens",
    "cacheRead": "cache_read_tokens",
    "cacheCreation": "cache_write_tokens",
}
_GEMINI_CLI_TOKEN_TYPES = {
    "input": "input_tokens",
    "output": "output_tokens",
    "thought": "reasoning_tokens",
    "cache": "cache_read_of_input",
    "tool": "input_tokens",
}
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"
"""The GenAI metrics' split of ``gen_ai.client.token.usage`` (``input``, ``output``)."""
_GENAI_PROVIDER_KEYS = (a.GEN_AI_PROVIDER_NAME, a.GEN_AI_SYSTEM)
_GENAI_MODEL_KEYS = (a.GEN_AI_RESPONSE_MODEL, a.GEN_AI_REQUEST_MODEL)

READERS: tuple[MetricReader, ...] = (
    MetricReader(
        metric="claude_code.token.usage",
        kinds=("sum",),
        measure=_by_type("type", _CLAUDE_CODE_TOKEN_TYPES),
        quantity="value",
        agent="claude-code",
        provider="anthropic",
    ),
    MetricReader(
        metric="claude_code.cost.usage",
        kinds=("sum",),
        measure=lambda _: "provided_cost",
        quantity="value",
        agent="claude-code",
        provider="anthropic",
    ),
    MetricReader(
        metric="gemini_cli.token.usage",
        kinds=("sum",),
        measure=_by_type("type", _GEMINI_CLI_TOKEN_TYPES),
        quantity="value",
        agent="gemini-cli",
        provider="google",
    ),
    MetricReader(
        metric="gemini_cli.api.request.count",
        kinds=("sum",),
        measure=_call_outcome("error_type", status_key="status_code"),
        quantity="value",
        agent="gemini-cli",
        provider="google",
    ),
    MetricReader(
        metric="gen_ai.client.token.usage",
        kinds=("histogram", "exponential_histogram"),
        measure=_by_type(GEN_AI_TOKEN_TYPE, {"input": "input_tokens", "output": "output_tokens"}),
        quantity="value",
        provider_keys=_GENAI_PROVIDER_KEYS,
        model_keys=_GENAI_MODEL_KEYS,
    ),
    MetricReader(
        metric="gen_ai.client.operation.duration",
        kinds=("histogram", "exponential_histogram"),
        measure=_call_outcome(a.ERROR_TYPE),
        quantity="count",
        provider_keys=_GENAI_PROVIDER_KEYS,
        model_keys=_GENAI_MODEL_KEYS,
    ),
)
"""The one list of metrics read as usage; the README's table follows it."""

_BY_METRIC: dict[str, MetricReader] = {reader.metric: reader for reader in READERS}
AGENT_SERVICES: frozenset[str] = frozenset(r.agent for r in READERS if r.agent)
"""Services whose GenAI-convention metrics restate their agent metrics (dropped)."""

USER_KEYS: tuple[str, ...] = ("user.email", "user.account_uuid", "user.id", *a.USER_KEYS)
SESSION_KEYS: tuple[str, ...] = ("session.id", *a.SESSION_KEYS)


def wanted(metric: str) -> bool:
    """Whether a metric's points are read (``metrics.decode_metrics``' filter)."""
    return metric in _BY_METRIC


@dataclass(slots=True)
class MetricRows:
    rows: list[MetricUsageRow] = field(default_factory=list)
    no_usage: int = 0
    """Points read that carry no usage (another token type, an agent's GenAI restatement)."""
    out_of_window: int = 0


def usage_rows(
    points: list[MetricPoint],
    *,
    policy: TenantPolicy,
    price_book: PriceBook,
    window: TimeWindow,
) -> MetricRows:
    """The ``metric_usage`` rows of the points that report usage, priced per unit at each
    point's time with the organization's overrides."""
    result = MetricRows()
    for point in points:
        reader = _BY_METRIC.get(point.metric)
        if reader is None or point.kind not in reader.kinds:
            result.no_usage += 1
            continue
        service = _text(point.resource_attributes, (a.SERVICE_NAME,)) or reader.agent or ""
        measure = reader.measure(point.attributes)
        quantity = point.count if reader.quantity == "count" else point.value
        if measure is None or quantity is None or (not reader.agent and service in AGENT_SERVICES):
            result.no_usage += 1
            continue
        if not window.admits(point.time_unix_nano):
            result.out_of_window += 1
            continue
        merged = {**point.resource_attributes, **point.attributes}
        usage = reported_usage(
            provider=reader.provider or _text(merged, reader.provider_keys),
            operation="chat",
            request_model=_text(merged, reader.model_keys),
            response_model=None,
            input_tokens=None,
            output_tokens=None,
            cache_read_tokens=None,
            cache_write_tokens=None,
            reasoning_tokens=None,
            total_tokens=None,
            provided_cost=None,
            error_type=None,
            failed=False,
            service=service,
            environment=None,
        )
        result.rows.append(
            MetricUsageRow(
                series=_series(point),
                start_time=_moment(point.start_time_unix_nano),
                time=_moment(point.time_unix_nano),
                cumulative=point.cumulative,
                measure=measure,
                value=float(quantity),
                unit_price=_unit_price(price_book, usage, measure, point.time_unix_nano, policy),
                service=service[:_MAX_DIMENSION],
                provider=(usage.provider or "")[:_MAX_DIMENSION],
                model=(usage.model or "")[:_MAX_DIMENSION],
                user_id=_text(merged, USER_KEYS),
                session_id=_text(merged, SESSION_KEYS),
            )
        )
    return result


_PRICED_TOKENS = tuple(c for c in TOKEN_COLUMNS if c != "total_tokens")


def _unit_price(
    book: PriceBook, usage: UsageRecord, measure: str, time_ns: int, policy: TenantPolicy
) -> Decimal | None:
    """USD per unit of ``measure``: what one more such token adds to a call's price. A
    cache count already inside another series' input (``cache_read_of_input``) is priced
    as the difference from input; likewise reasoning inside output. None for measures that
    are not tokens, or when the model has no price."""
    tokens = {c: n for c, n in MEASURES[measure].items() if c in _PRICED_TOKENS}
    if not tokens:
        return None
    implied: dict[str, int] = {}
    if "input_tokens" not in tokens and set(tokens) & {"cache_read_tokens", "cache_write_tokens"}:
        implied["input_tokens"] = 1
    if "output_tokens" not in tokens and "reasoning_tokens" in tokens:
        implied["output_tokens"] = 1
    priced = _cost(book, usage, {**implied, **tokens}, time_ns, policy)
    if priced is None or not implied:
        return priced
    base = _cost(book, usage, implied, time_ns, policy)
    return None if base is None else priced - base


def _cost(
    book: PriceBook,
    usage: UsageRecord,
    tokens: dict[str, int],
    time_ns: int,
    policy: TenantPolicy,
) -> Decimal | None:
    record = dataclasses.replace(
        usage,
        input_tokens=tokens.get("input_tokens"),
        output_tokens=tokens.get("output_tokens"),
        cache_read_tokens=tokens.get("cache_read_tokens"),
        cache_write_tokens=tokens.get("cache_write_tokens"),
        reasoning_tokens=tokens.get("reasoning_tokens"),
    )
    cost = book.price(record, time_ns, overrides=policy.overrides, lookups=policy.lookups)
    return cost.total


def _series(point: MetricPoint) -> str:
    identity = [point.metric, sorted(point.resource_attributes.items()),
                sorted(point.attributes.items())]  # fmt: skip
    encoded = json.dumps(identity, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:32]


def _moment(unix_nano: int) -> datetime:
    return _EPOCH + timedelta(microseconds=unix_nano // 1000)


def _text(attributes: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = attributes.get(key)
        if isinstance(value, str) and value:
            return value[:_MAX_DIMENSION]
    return None
