"""What both wire decoders share: the span checks, string clean-up, and the account of
rejected spans and cut values that becomes ``partial_success``.
"""

from __future__ import annotations

import math
import re

from aethermind.ingest.otlp.limits import MAX_TIME_UNIX_NANO, DecodeLimits
from aethermind.ingest.otlp.media import OtlpFormat
from aethermind.ingest.otlp.model import DecodedRequest, DecodedSpan

# Rejection reasons, read by the client in partial_success.error_message as
# "<count> <reason>, first at <where>".
BAD_TRACE_ID = "with an invalid trace id (must be 16 bytes, not all zero)"
BAD_SPAN_ID = "with an invalid span id (must be 8 bytes, not all zero)"
BAD_PARENT_SPAN_ID = "with an invalid parent span id (must be empty or 8 bytes)"
BAD_START_TIME = "with an invalid start time (must be set, after 1970 and before 2262)"
BAD_END_TIME = "with an end time after 2262"
END_BEFORE_START = "with an end time before the start time (or no end time)"
OVER_SPAN_LIMIT = "over the limit of {limit} spans per request"

_MAX_EXAMPLES_SHOWN = 8
_NAME_SHOWN = 60

_SURROGATES = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def time_problem(start: int, end: int) -> str | None:
    """Why a span's times are unusable, or None; the ints may come from untrusted JSON."""
    if start <= 0 or start > MAX_TIME_UNIX_NANO:
        return BAD_START_TIME
    if end < start:
        return END_BEFORE_START
    if end > MAX_TIME_UNIX_NANO:
        return BAD_END_TIME
    return None


def clean_text(text: str) -> str:
    """``text`` safe for PostgreSQL text and jsonb: no NUL, no lone surrogate (from JSON
    ``\\ud800`` escapes), each replaced by U+FFFD. Cheap when there is nothing to replace."""
    if "\x00" in text:
        text = text.replace("\x00", REPLACEMENT)
    if not text.isascii():
        text = _SURROGATES.sub(REPLACEMENT, text)
    return text


def non_finite_name(value: float) -> str:
    """The proto3 JSON spelling of NaN and the infinities, which JSON numbers cannot carry."""
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


class Batch:
    """Accumulates a request's decoded spans and its account of rejections and cuts.

    The decoders bump ``truncated`` and ``dropped`` directly: they are hot-loop counters.
    """

    __slots__ = ("_format", "_reasons", "_rejected", "dropped", "limits", "spans", "truncated")

    def __init__(self, fmt: OtlpFormat, limits: DecodeLimits) -> None:
        self.spans: list[DecodedSpan] = []
        self.truncated = 0
        self.dropped = 0
        self.limits = limits
        self._format = fmt
        self._rejected = 0
        # reason -> [count, where the first such span was]; dicts keep first-seen order.
        self._reasons: dict[str, list[int | str]] = {}

    def reject(self, reason: str, where: str, name: object = None, count: int = 1) -> None:
        self._rejected += count
        entry = self._reasons.get(reason)
        if entry is None:
            if isinstance(name, str) and name:
                shown = name if len(name) <= _NAME_SHOWN else name[:_NAME_SHOWN] + "..."
                where = f"{where} {clean_text(shown)!r}"
            self._reasons[reason] = [count, where]
        else:
            entry[0] = int(entry[0]) + count

    def reject_over_limit(self, count: int, where: str) -> None:
        """Reject the ``count`` spans from ``where`` on, past ``max_spans_per_request``."""
        limit = self.limits.max_spans_per_request
        self.reject(OVER_SPAN_LIMIT.format(limit=limit), where, count=count)

    def result(self) -> DecodedRequest:
        return DecodedRequest(
            format=self._format,
            spans=self.spans,
            rejected_spans=self._rejected,
            error_message=self._message(),
            truncated_values=self.truncated,
            dropped_attributes=self.dropped,
        )

    def _message(self) -> str:
        if not self._rejected:
            return ""
        total = self._rejected + len(self.spans)
        parts = []
        for reason, (count, where) in list(self._reasons.items())[:_MAX_EXAMPLES_SHOWN]:
            parts.append(f"{count} {reason}, first at {where}")
        more = len(self._reasons) - _MAX_EXAMPLES_SHOWN
        if more > 0:
            parts.append(f"and {more} other reasons")
        return f"rejected {self._rejected} of {total} spans: " + "; ".join(parts)
