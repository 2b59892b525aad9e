"""``POST /v1/ingest``: the plain JSON events of clients without OpenTelemetry, turned into
the same spans OTLP yields, so one pipeline normalizes, prices and stores both.

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
from typing import Any, TypeVar

from aethermind.ingest.otlp import MAX_TIME_UNIX_NANO, DecodedSpan, MalformedBodyError
from aethermind.semconv import attributes as a

T = TypeVar("T")

# Event field -> the semconv attribute it becomes; the normalizer does the rest.
_TEXT_FIELDS = {
    "provider": a.GEN_AI_PROVIDER_NAME,
    "model": a.GEN_AI_REQUEST_MODEL,
    "response_model": a.GEN_AI_RESPONSE_MODEL,
    "operation": a.GEN_AI_OPERATION_NAME,
    "error_type": a.ERROR_TYPE,
}
_COUNT_FIELDS = {
    "input_tokens": a.GEN_AI_USAGE_INPUT_TOKENS,
    "output_tokens": a.GEN_AI_USAGE_OUTPUT_TOKENS,
    "cache_read_tokens": a.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    "cache_write_tokens": a.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS,
    "reasoning_tokens": a.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
    "total_tokens": a.GEN_AI_USAGE_TOTAL_TOKENS,
}
_MAX_TEXT = 1024
MAX_ERRORS_REPORTED = 50
"""Problems listed per request (each event's every problem, until this many in all)."""


class InvalidEvent(ValueError):
    """Every problem of one event, each as (field path, what is wrong)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{path}: {why}" for path, why in problems))
        self.problems = problems


@dataclass(slots=True)
class ParsedEvents:
    spans: list[DecodedSpan] = field(default_factory=list)
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    def reject(self, index: int, problems: list[tuple[str, str]]) -> None:
        self.rejected += 1
        for path, why in problems:
            if len(self.errors) >= MAX_ERRORS_REPORTED:
                return
            self.errors.append(f"events[{index}]{'.' + path if path else ''}: {why}")


def events_to_spans(body: bytes, *, max_events: int) -> ParsedEvents:
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
            parsed.spans.append(_event_span(event))
        except InvalidEvent as exc:
            parsed.reject(index, exc.problems)
    return parsed


class _Problems:
    """Collects what is wrong with one event's fields instead of stopping at the first."""

    def __init__(self) -> None:
        self.found: list[tuple[str, str]] = []

    def check(self, name: str, parse: Callable[[Any], T], value: Any) -> T | None:
        try:
            return parse(value)
        except ValueError as exc:
            self.found.append((name, str(exc)))
            return None


def _event_span(event: Any) -> DecodedSpan:
    if not isinstance(event, dict):
        raise InvalidEvent([("", "an event must be a JSON object")])
    problems = _Problems()
    attributes: dict[str, Any] = {}
    for name, attribute in _TEXT_FIELDS.items():
        value = event.get(name)
        if value is not None and (text := problems.check(name, _text, value)) is not None:
            attributes[attribute] = text
    if event.get("model") is None:
        problems.found.append(("model", "is required"))
    attributes.setdefault(a.GEN_AI_OPERATION_NAME, "chat")
    for name, attribute in _COUNT_FIELDS.items():
        value = event.get(name)
        if value is not None and (count := problems.check(name, _count, value)) is not None:
            attributes[attribute] = count
    cost = event.get("cost")
    if cost is not None and (amount := problems.check("cost", _money, cost)) is not None:
        # As exact decimal text: the normalizer reads it into provided_cost unchanged.
        attributes[a.GEN_AI_USAGE_COST] = format(amount, "f")
    extra = event.get("attributes")
    if extra is not None and not isinstance(extra, dict):
        problems.found.append(("attributes", "must be an object"))
    elif extra is not None:
        for key, raw in extra.items():
            # A fraction arrives as Decimal; stored as a JSON number (it is not money).
            value = float(raw) if isinstance(raw, Decimal) else raw
            if isinstance(value, (str, int, float, bool)) and key not in attributes:
                if isinstance(value, float) and not math.isfinite(value):
                    continue
                if isinstance(value, int) and not -(2**63) <= value < 2**63:
                    continue
                attributes[storable(str(key)[:256])] = (
                    storable(value[:_MAX_TEXT]) if isinstance(value, str) else value
                )
    start = problems.check("timestamp", _timestamp_ns, event.get("timestamp"))
    duration_name = "duration_ms" if "duration_ms" in event else "latency_ms"
    duration = event.get(duration_name)
    duration_ms = 0.0 if duration is None else problems.check(duration_name, _number, duration)
    resource: dict[str, Any] = {}
    for name, key in (("service", a.SERVICE_NAME), ("environment", a.DEPLOYMENT_ENVIRONMENT_NAME)):
        if event.get(name) is not None and (text := problems.check(name, _text, event[name])):
            resource[key] = text
    ids = _ids(event, problems)
    if problems.found or start is None or duration_ms is None or ids is None:
        raise InvalidEvent(problems.found)
    end = min(start + int(duration_ms * 1_000_000), MAX_TIME_UNIX_NANO)
    failed = event.get("status") in ("error", "ERROR") or a.ERROR_TYPE in attributes
    trace_id, span_id = ids
    return DecodedSpan(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=None,
        name=f"{attributes[a.GEN_AI_OPERATION_NAME]} {attributes[a.GEN_AI_REQUEST_MODEL]}",
        kind=3,  # CLIENT: an outgoing call to the provider
        start_time_unix_nano=start,
        end_time_unix_nano=end,
        status_code=2 if failed else 0,
        status_message="",
        attributes=attributes,
        resource_attributes=resource,
        scope_name="aethermind.ingest",
        scope_version="",
        event_count=0,
    )


def _ids(event: dict[str, Any], problems: _Problems) -> tuple[str, str] | None:
    trace_id = event.get("trace_id")
    span_field = "span_id" if event.get("span_id") else "id"
    span_id = event.get(span_field)
    bad = False
    if trace_id is not None and not _is_hex(trace_id, 32):
        problems.found.append(("trace_id", "must be 32 hex characters, not all zero"))
        bad = True
    if span_id is not None and not _is_hex(span_id, 16):
        problems.found.append((span_field, "must be 16 hex characters, not all zero"))
        bad = True
    if bad:
        return None
    if trace_id is None or span_id is None:
        digest = hashlib.sha256(
            json.dumps(event, sort_keys=True, separators=(",", ":"), default=str).encode()
        ).hexdigest()
        trace_id = trace_id or digest[:32]
        span_id = span_id or digest[32:48]
    return str(trace_id).lower(), str(span_id).lower()


def _is_hex(value: Any, length: int) -> bool:
    if not isinstance(value, str) or len(value) != length:
        return False
    try:
        return int(value, 16) != 0
    except ValueError:
        return False


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string")
    return storable(value[:_MAX_TEXT])


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
