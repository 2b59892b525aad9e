"""``POST /v1/ingest``: the plain JSON events of clients without OpenTelemetry, each checked
against its declaration (``IngestEvent``) and read straight into a usage record by the
rules spans are normalized by; ``convert.calls_to_rows`` prices and stores them like spans.

An event without ids gets ids derived from its content, so re-sending the same event (a
retry) never stores it twice.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema

from aethermind.ingest.otlp import MAX_TIME_UNIX_NANO, MalformedBodyError
from aethermind.semconv import UsageRecord
from aethermind.semconv import attributes as a
from aethermind.semconv.attributes import UNIT_KEYS
from aethermind.semconv.normalize import reported_usage
from aethermind.semconv.tiers import MAX_TIER_LENGTH, normalize_tier

T = TypeVar("T")

_MAX_TEXT = 1024
MAX_ERRORS_REPORTED = 50
"""Problems listed per request (each event's every problem, until this many in all)."""


class InvalidEvent(ValueError):
    """Every problem of one event, each as (field path, what is wrong)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{path}: {why}" for path, why in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class ReportedCall:
    """One provider call an event reported: its usage, as ``normalize`` would read it from a
    span, and what a stored span needs besides."""

    usage: UsageRecord
    trace_id: str
    span_id: str
    name: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    failed: bool
    attributes: dict[str, Any]
    resource_attributes: dict[str, Any]
    parent_span_id: str | None = None
    """The span the call was reported inside (an agent's event emitted in a span), if any."""
    scope: str | None = None
    """Who reported it, as an instrumentation scope (an agent's events scope)."""


@dataclass(slots=True)
class ParsedEvents:
    calls: list[ReportedCall] = field(default_factory=list)
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    def reject(self, index: int, problems: list[tuple[str, str]]) -> None:
        self.rejected += 1
        for path, why in problems:
            if len(self.errors) >= MAX_ERRORS_REPORTED:
                return
            self.errors.append(f"events[{index}]{'.' + path if path else ''}: {why}")


def parse_events(body: bytes, *, max_events: int) -> ParsedEvents:
    try:
        # Numbers with a fraction parse as Decimal: a cost is money and never a float.
        document = json.loads(body, parse_float=Decimal)
    except (ValueError, RecursionError) as exc:
        raise MalformedBodyError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("events"), list):
        raise MalformedBodyError('body must be a JSON object with an "events" array')
    parsed = ParsedEvents()
    for index, event in enumerate(document["events"]):
        if index >= max_events:
            parsed.reject(index, [("", f"over the limit of {max_events} events per request")])
            continue
        try:
            parsed.calls.append(_event_call(event))
        except InvalidEvent as exc:
            parsed.reject(index, exc.problems)
    return parsed


def _optional(parse: Callable[[Any], T]) -> Callable[[Any], T | None]:
    """``parse`` for a field that may be absent or null (both mean "not said")."""

    def check(value: Any) -> T | None:
        return None if value is None else parse(value)

    return check


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string")
    return storable(value[:_MAX_TEXT])


def _hex(length: int) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not _is_hex(value, length):
            raise ValueError(f"must be {length} hex characters, not all zero")
        return str(value).lower()

    return check


def _attributes(value: Any) -> dict[str, Any]:
    """Extra attributes: scalars kept (text cut, unstorable characters replaced), the rest
    dropped; a fraction arrives as Decimal and is stored as a JSON number (not money)."""
    if not isinstance(value, dict):
        raise ValueError("must be an object")
    kept: dict[str, Any] = {}
    for key, raw in value.items():
        item = float(raw) if isinstance(raw, Decimal) else raw
        if not isinstance(item, (str, int, float, bool)):
            continue
        if isinstance(item, float) and not math.isfinite(item):
            continue
        if isinstance(item, int) and not -(2**63) <= item < 2**63:
            continue
        text = storable(item[:_MAX_TEXT]) if isinstance(item, str) else item
        kept[storable(str(key)[:256])] = text
    return kept


def _is_hex(value: Any, length: int) -> bool:
    if not isinstance(value, str) or len(value) != length:
        return False
    try:
        return int(value, 16) != 0
    except ValueError:
        return False


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` with what PostgreSQL text cannot hold (NUL, unpaired surrogates) replaced by
    U+FFFD, as the OTLP decoders do."""
    return _UNSTORABLE.sub("\ufffd", text)


_NUMBER = (int, float, Decimal)


def _finite(value: Any) -> int | float | Decimal:
    """A JSON number (ints as int, fractions as Decimal, NaN and Infinity as float)."""
    if isinstance(value, bool) or not isinstance(value, _NUMBER):
        raise ValueError("must be a number")
    finite = value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)
    if not finite:
        raise ValueError("must be a finite number")
    return value


def _count(value: Any) -> int:
    number = _finite(value)
    if not isinstance(number, int) and number != int(number):
        raise ValueError("must be a whole number")
    if not 0 <= number <= 10**12:
        raise ValueError("must be between 0 and 10^12")
    return int(number)


def _units(value: Any) -> dict[str, int]:
    """Usage billed at its own rates, by genai-prices usage key (``attributes.UNIT_KEYS``)."""
    if not isinstance(value, dict):
        raise ValueError("must be an object")
    unknown = sorted(k for k in value if k not in UNIT_KEYS)
    if unknown:
        raise ValueError(f"unknown unit {unknown[0]!r} (known: {', '.join(UNIT_KEYS)})")
    units = {key: _count(count) for key, count in value.items()}
    return {key: count for key, count in units.items() if count}


def _number(value: Any) -> float:
    number = float(_finite(value))
    if number < 0 or number > 1e12:
        raise ValueError("must be a finite, non-negative number")
    return number


def _money(value: Any) -> Decimal:
    """A cost in USD, exactly as sent (a float never gets near it)."""
    number = _finite(value)
    amount = number if isinstance(number, Decimal) else Decimal(str(number))
    if amount < 0 or amount > 10**12:
        raise ValueError("must be a non-negative amount of USD")
    return amount


def _timestamp_ns(value: Any) -> int:
    if value is None:
        raise ValueError("is required (ISO 8601 or epoch milliseconds)")
    if isinstance(value, bool):
        raise ValueError("must be ISO 8601 text or epoch milliseconds")
    if isinstance(value, _NUMBER):
        milliseconds = _finite(value)
        if not 0 < milliseconds <= MAX_TIME_UNIX_NANO // 1_000_000:
            raise ValueError("is out of range")
        ns = int(milliseconds * 1_000_000)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("is not ISO 8601") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        ns = int(moment.timestamp() * 1_000_000) * 1000
    else:
        raise ValueError("must be ISO 8601 text or epoch milliseconds")
    if not 0 < ns <= MAX_TIME_UNIX_NANO:
        raise ValueError("is out of range")
    return ns


# --- the event's declaration: our parsers, documented for OpenAPI ---------------------


_TEXT_SCHEMA = {"type": "string", "minLength": 1, "maxLength": _MAX_TEXT}
_COUNT_SCHEMA = {"type": "integer", "minimum": 0, "maximum": 10**12}
_DURATION_SCHEMA = {"type": "number", "minimum": 0, "maximum": 10**12}


def _field(
    parse: Callable[[Any], Any], schema: dict[str, Any], *, nullable: bool = True, **extra: Any
) -> Any:
    """A field parsed by ``parse`` (our rules, our messages) and documented as ``schema``;
    ``nullable``: null is accepted and means "not said"."""
    documented = {"anyOf": [schema, {"type": "null"}], **extra} if nullable else schema | extra
    return (BeforeValidator(_optional(parse)), WithJsonSchema(documented))


Text = Annotated[str | None, *_field(_text, _TEXT_SCHEMA)]
Count = Annotated[int | None, *_field(_count, _COUNT_SCHEMA)]


class IngestEvent(BaseModel):
    """One LLM call. Unknown fields are ignored; text is cut at 1024 characters."""

    model_config = ConfigDict(extra="ignore")

    provider: Text = Field(default=None, examples=["openai"])
    model: Annotated[
        str,
        *_field(
            _text,
            _TEXT_SCHEMA,
            nullable=False,
            description="The requested model.",
            examples=["gpt-4o"],
        ),
    ]
    response_model: Annotated[
        str | None, *_field(_text, _TEXT_SCHEMA, description="The model that answered, if known.")
    ] = None
    operation: Annotated[
        str | None, *_field(_text, _TEXT_SCHEMA, description="Default `chat`.")
    ] = None
    error_type: Annotated[
        str | None,
        *_field(_text, _TEXT_SCHEMA, description="Set for a failed call; marks it failed."),
    ] = None
    input_tokens: Annotated[
        int | None, *_field(_count, _COUNT_SCHEMA, description="All input, cached included.")
    ] = None
    output_tokens: Annotated[
        int | None, *_field(_count, _COUNT_SCHEMA, description="All output, reasoning included.")
    ] = None
    cache_read_tokens: Count = None
    cache_write_tokens: Count = None
    reasoning_tokens: Count = None
    total_tokens: Count = None
    cost: Annotated[
        Decimal | None,
        *_field(
            _money,
            {"type": "number", "minimum": 0, "maximum": 10**12},
            description="The cost the client computed (USD), kept exactly as `provided_cost`.",
        ),
    ] = None
    units: Annotated[
        dict[str, int] | None,
        *_field(
            _units,
            {
                "type": "object",
                "propertyNames": {"enum": list(UNIT_KEYS)},
                "additionalProperties": _COUNT_SCHEMA,
            },
            description="Usage billed at rates of its own, by genai-prices usage key: audio, "
            "image and video tokens (each a part of the token count it names) and server-tool "
            "calls (`web_searches`, ...).",
            examples=[{"input_audio_tokens": 700, "web_searches": 2}],
        ),
    ] = None
    attributes: Annotated[
        dict[str, Any] | None,
        *_field(
            _attributes,
            {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
            description="Extra span attributes (scalars only).",
        ),
    ] = None
    timestamp: Annotated[
        int,
        BeforeValidator(_timestamp_ns),
        WithJsonSchema(
            {
                "description": "Start of the call: ISO 8601 text or epoch milliseconds.",
                "oneOf": [
                    {"type": "string", "format": "date-time"},
                    {
                        "type": "number",
                        "exclusiveMinimum": 0,
                        "maximum": MAX_TIME_UNIX_NANO // 1_000_000,
                    },
                ],
            }
        ),
    ]
    duration_ms: Annotated[float | None, *_field(_number, _DURATION_SCHEMA)] = None
    latency_ms: Annotated[
        float | None, *_field(_number, _DURATION_SCHEMA, description="Alias of `duration_ms`.")
    ] = None
    service: Text = None
    environment: Text = None
    service_tier: Annotated[
        str | None,
        Field(
            default=None,
            max_length=MAX_TIER_LENGTH,
            description="The tier that served the request: `batch`, `flex`, `priority`, ... "
            "(`standard`, `default` or nothing: standard). Priced by the tier's rules.",
        ),
    ] = None
    status: Annotated[
        Any,
        WithJsonSchema(
            {
                "description": "`error` (or `ERROR`) marks a failed call; anything else, "
                "or nothing, a call that succeeded.",
                "examples": ["ok", "error"],
            }
        ),
    ] = None
    trace_id: Annotated[
        str | None,
        *_field(_hex(32), {"type": "string", "pattern": "^[0-9a-fA-F]{32}$"},
                description="Hex, not all zeros."),
    ] = None  # fmt: skip
    span_id: Annotated[
        str | None,
        *_field(_hex(16), {"type": "string", "pattern": "^[0-9a-fA-F]{16}$"},
                description="Hex, not all zeros."),
    ] = None  # fmt: skip
    id: Annotated[
        str | None,
        *_field(_hex(16), {"type": "string", "pattern": "^[0-9a-fA-F]{16}$"},
                description="Alias of `span_id`."),
    ] = None  # fmt: skip


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False):
        path = ".".join(str(part) for part in error["loc"])
        if error["type"] == "missing":
            why = "is required"
            if path == "timestamp":
                why += " (ISO 8601 or epoch milliseconds)"
        elif error["type"] == "value_error":
            why = str(error["ctx"]["error"])
        elif error["type"] == "model_type":
            why = "an event must be a JSON object"
        else:
            why = error["msg"]
        found.append((path, why))
    return found


def _event_call(event: Any) -> ReportedCall:
    try:
        parsed = IngestEvent.model_validate(event)
    except ValidationError as exc:
        raise InvalidEvent(_problems(exc)) from None
    failed = parsed.status in ("error", "ERROR") or parsed.error_type is not None
    operation = parsed.operation or "chat"
    usage = reported_usage(
        provider=parsed.provider,
        operation=operation,
        request_model=parsed.model,
        response_model=parsed.response_model,
        input_tokens=parsed.input_tokens,
        output_tokens=parsed.output_tokens,
        cache_read_tokens=parsed.cache_read_tokens,
        cache_write_tokens=parsed.cache_write_tokens,
        reasoning_tokens=parsed.reasoning_tokens,
        total_tokens=parsed.total_tokens,
        provided_cost=parsed.cost,
        error_type=parsed.error_type,
        failed=failed,
        service=parsed.service,
        environment=parsed.environment,
    )
    usage.service_tier = normalize_tier(parsed.service_tier)
    usage.units = parsed.units or None
    start = parsed.timestamp
    duration_ms = parsed.duration_ms if parsed.duration_ms is not None else parsed.latency_ms
    resource: dict[str, Any] = {}
    if parsed.service is not None:
        resource[a.SERVICE_NAME] = parsed.service
    if parsed.environment is not None:
        resource[a.DEPLOYMENT_ENVIRONMENT_NAME] = parsed.environment
    trace_id, span_id = parsed.trace_id, parsed.span_id or parsed.id
    if trace_id is None or span_id is None:
        digest = hashlib.sha256(
            json.dumps(event, sort_keys=True, separators=(",", ":"), default=str).encode()
        ).hexdigest()
        trace_id = trace_id or digest[:32]
        span_id = span_id or digest[32:48]
    return ReportedCall(
        usage=usage,
        trace_id=trace_id,
        span_id=span_id,
        name=f"{operation} {parsed.model}",
        start_time_unix_nano=start,
        end_time_unix_nano=min(start + int((duration_ms or 0.0) * 1_000_000), MAX_TIME_UNIX_NANO),
        failed=failed,
        attributes=dict(parsed.attributes or {}),
        resource_attributes=resource,
    )
