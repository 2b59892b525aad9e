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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aethermind.receiver.otlp import MAX_TIME_UNIX_NANO, DecodedSpan, MalformedBodyError
from aethermind.semconv import attributes as a

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
_MAX_ERRORS_REPORTED = 20


@dataclass(slots=True)
class ParsedEvents:
    spans: list[DecodedSpan] = field(default_factory=list)
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    def reject(self, index: int, why: str) -> None:
        self.rejected += 1
        if len(self.errors) < _MAX_ERRORS_REPORTED:
            self.errors.append(f"events[{index}]: {why}")


def events_to_spans(body: bytes, *, max_events: int) -> ParsedEvents:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise MalformedBodyError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("events"), list):
        raise MalformedBodyError('body must be a JSON object with an "events" array')
    parsed = ParsedEvents()
    for index, event in enumerate(document["events"]):
        if index >= max_events:
            parsed.reject(index, f"over the limit of {max_events} events per request")
            continue
        try:
            parsed.spans.append(_event_span(event))
        except ValueError as exc:
            parsed.reject(index, str(exc))
    return parsed


def _event_span(event: Any) -> DecodedSpan:
    if not isinstance(event, dict):
        raise ValueError("an event must be a JSON object")
    attributes: dict[str, Any] = {}
    for name, attribute in _TEXT_FIELDS.items():
        value = event.get(name)
        if value is not None:
            attributes[attribute] = _text(name, value)
    if a.GEN_AI_REQUEST_MODEL not in attributes:
        raise ValueError('"model" is required')
    attributes.setdefault(a.GEN_AI_OPERATION_NAME, "chat")
    for name, attribute in _COUNT_FIELDS.items():
        value = event.get(name)
        if value is not None:
            attributes[attribute] = _count(name, value)
    cost = event.get("cost")
    if cost is not None:
        attributes[a.GEN_AI_USAGE_COST] = _number("cost", cost)
    extra = event.get("attributes")
    if extra is not None:
        if not isinstance(extra, dict):
            raise ValueError('"attributes" must be an object')
        for key, value in extra.items():
            if isinstance(value, (str, int, float, bool)) and key not in attributes:
                if isinstance(value, float) and not math.isfinite(value):
                    continue
                if isinstance(value, int) and not -(2**63) <= value < 2**63:
                    continue
                attributes[storable(str(key)[:256])] = (
                    storable(value[:_MAX_TEXT]) if isinstance(value, str) else value
                )
    start = _timestamp_ns(event.get("timestamp"))
    duration = event.get("duration_ms", event.get("latency_ms"))
    duration_ns = 0 if duration is None else int(_number("duration_ms", duration) * 1_000_000)
    end = min(start + duration_ns, MAX_TIME_UNIX_NANO)
    failed = event.get("status") in ("error", "ERROR") or a.ERROR_TYPE in attributes
    resource = {
        key: _text(key, event[name])
        for name, key in (
            ("service", a.SERVICE_NAME),
            ("environment", a.DEPLOYMENT_ENVIRONMENT_NAME),
        )
        if event.get(name) is not None
    }
    trace_id, span_id = _ids(event)
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


def _ids(event: dict[str, Any]) -> tuple[str, str]:
    trace_id = event.get("trace_id")
    span_id = event.get("span_id") or event.get("id")
    if trace_id is not None and not _is_hex(trace_id, 32):
        raise ValueError('"trace_id" must be 32 hex characters')
    if span_id is not None and not _is_hex(span_id, 16):
        raise ValueError('"span_id" (or "id") must be 16 hex characters')
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


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f'"{name}" must be a non-empty string')
    return storable(value[:_MAX_TEXT])


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` with what PostgreSQL text cannot hold (NUL, unpaired surrogates) replaced by
    U+FFFD, as the OTLP decoders do."""
    return _UNSTORABLE.sub("\ufffd", text)


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f'"{name}" must be a number')
    if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
        raise ValueError(f'"{name}" must be a whole number')
    if not 0 <= value <= 10**12:
        raise ValueError(f'"{name}" must be between 0 and 10^12')
    return int(value)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f'"{name}" must be a number')
    number = float(value)
    if not math.isfinite(number) or number < 0 or number > 1e12:
        raise ValueError(f'"{name}" must be a finite, non-negative number')
    return number


def _timestamp_ns(value: Any) -> int:
    if value is None:
        raise ValueError('"timestamp" is required (ISO 8601 or epoch milliseconds)')
    if isinstance(value, bool):
        raise ValueError('"timestamp" must be ISO 8601 text or epoch milliseconds')
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or not 0 < value <= MAX_TIME_UNIX_NANO // 1_000_000:
            raise ValueError('"timestamp" is out of range')
        ns = int(value * 1_000_000)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError('"timestamp" is not ISO 8601') from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        ns = int(moment.timestamp() * 1_000_000) * 1000
    else:
        raise ValueError('"timestamp" must be ISO 8601 text or epoch milliseconds')
    if not 0 < ns <= MAX_TIME_UNIX_NANO:
        raise ValueError('"timestamp" is out of range')
    return ns
