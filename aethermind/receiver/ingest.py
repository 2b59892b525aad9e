"""Ingest handlers: ``POST /v1/traces``, ``POST /v1/logs`` and ``POST /v1/metrics``
(OTLP/HTTP) and ``POST /v1/ingest`` (plain JSON).

Order of checks, cheapest first, so bad or excess traffic costs little: saturation (503 at
once), content type (415), key (401/403/429 throttle), body within limits (413/400), rate
limit (429), then convert and commit. A 200 is only sent after the rows are committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

from aiohttp import web

from aethermind.ingest import agent_events, logs, metrics, otlp, usage_metrics
from aethermind.ingest.convert import Conversion, calls_to_rows, spans_to_rows
from aethermind.ingest.events import MAX_ERRORS_REPORTED, ReportedCall, parse_events
from aethermind.ingest.policy import TenantPolicy
from aethermind.ingest.window import TimeWindow
from aethermind.receiver import schemas
from aethermind.receiver.auth import authenticate
from aethermind.receiver.errors import (
    BadRequest,
    HttpError,
    TooManyRequests,
    Unavailable,
    is_bad_data,
    is_storage_unavailable,
)
from aethermind.receiver.query import answer_json
from aethermind.receiver.state import (
    ADMISSION,
    CONFIG,
    LIMITER,
    METRICS,
    POLICIES,
    POOL,
    PRICE_BOOK,
    WRITER,
)
from aethermind.storage.metric_usage import write_metric_usage
from aethermind.storage.tenants import VerifiedKey

logger = logging.getLogger(__name__)

T = TypeVar("T")


@asynccontextmanager
async def admitted(app: web.Application) -> AsyncIterator[None]:
    """Bounded work in flight: past the bound, refuse at once rather than queue."""
    admission, config, metrics = app[ADMISSION], app[CONFIG], app[METRICS]
    if admission.draining or admission.inflight >= config.max_inflight_requests:
        metrics.saturated.inc()
        raise Unavailable(
            "server saturated, retry later",
            headers={"Retry-After": str(config.retry_after_seconds)},
        )
    admission.inflight += 1
    metrics.inflight.set(admission.inflight)
    try:
        yield
    finally:
        admission.inflight -= 1
        metrics.inflight.set(admission.inflight)


async def otlp_traces(request: web.Request) -> web.Response:
    return await _otlp_http(request, accept_traces)


async def otlp_logs(request: web.Request) -> web.Response:
    """``POST /v1/logs``: OTLP/HTTP logs, checked like traces; the records that report an LLM
    call (``ingest/logs.py``) are stored like spans, the others counted and dropped."""
    return await _otlp_http(request, accept_logs)


async def otlp_metrics(request: web.Request) -> web.Response:
    """``POST /v1/metrics``: OTLP/HTTP metrics, checked like traces; the data points that
    report LLM usage (``ingest/usage_metrics.py``) are stored as metric usage, the others
    counted and dropped."""
    return await _otlp_http(request, accept_metrics)


OtlpAcceptor = Callable[
    [web.Application, VerifiedKey, bytes, otlp.OtlpFormat], Awaitable[tuple[bytes, str]]
]
"""Takes one authenticated OTLP export body: decodes, rate-limits, converts and commits it;
returns the encoded ``Export*ServiceResponse`` and its content type. Shared by OTLP/HTTP and
OTLP/gRPC, so both transports give the same answers."""


async def _otlp_http(request: web.Request, accept: OtlpAcceptor) -> web.Response:
    app = request.app
    content_type = request.headers.get("Content-Type")
    try:
        async with admitted(app):
            fmt = otlp.parse_content_type(content_type)
            verified = await authenticate(request, "ingest")
            body = await otlp.read_request_body(request, max_size=app[CONFIG].max_body_bytes)
            payload, ctype = await accept(app, verified, body, fmt)
    except (otlp.OtlpRequestError, HttpError) as exc:
        return _otlp_refusal(exc, content_type)
    return web.Response(status=200, body=payload, content_type=ctype)


async def accept_traces(
    app: web.Application, verified: VerifiedKey, body: bytes, fmt: otlp.OtlpFormat
) -> tuple[bytes, str]:
    """An ``ExportTraceServiceRequest``'s spans stored (see ``OtlpAcceptor``)."""
    decoded = await _decode(app, body, fmt)
    del body
    _count_decoded(app, decoded)
    await _rate_limit(app, verified, len(decoded.spans))
    _, conversion = await _store(
        app,
        verified,
        decoded.spans,
        lambda spans, policy, window: _spans_to_rows(app, spans, policy, window),
    )
    return otlp.encode_decoded_response(
        decoded,
        later_rejected=conversion.out_of_window,
        later_reason=conversion.rejection_message,
    )


async def accept_logs(
    app: web.Application, verified: VerifiedKey, body: bytes, fmt: otlp.OtlpFormat
) -> tuple[bytes, str]:
    """An ``ExportLogsServiceRequest``'s LLM calls stored (see ``OtlpAcceptor``)."""
    decoded = logs.decode_logs(body, fmt, app[CONFIG].decode_limits)
    del body
    metrics = app[METRICS]
    metrics.log_records_received.inc(len(decoded.records))
    await _rate_limit(app, verified, len(decoded.records))
    found = agent_events.calls_from_logs(decoded.records)
    if found.no_usage:
        metrics.log_records_dropped.labels("no_usage").inc(found.no_usage)
    if found.repeated:
        metrics.log_records_dropped.labels("repeated").inc(found.repeated)
    _, conversion = await _store(
        app,
        verified,
        found.calls,
        lambda calls, policy, window: _calls_to_rows(app, calls, policy, window),
    )
    rejected = decoded.rejections.count + found.rejected + conversion.out_of_window
    reasons = [decoded.rejections.message, *found.reasons, conversion.rejection_message]
    return logs.encode_logs_response(
        fmt, rejected=rejected, message="; ".join(r for r in reasons if r)
    )


async def accept_metrics(
    app: web.Application, verified: VerifiedKey, body: bytes, fmt: otlp.OtlpFormat
) -> tuple[bytes, str]:
    """An ``ExportMetricsServiceRequest``'s usage points stored (see ``OtlpAcceptor``)."""
    decoded = metrics.decode_metrics(
        body, fmt, app[CONFIG].decode_limits, wanted=usage_metrics.wanted
    )
    del body
    counters = app[METRICS]
    counters.metric_points_received.inc(decoded.total)
    await _rate_limit(app, verified, decoded.total)
    policy = await _policy(app, verified)
    window = app[CONFIG].span_window(verified.retention_days)
    found = usage_metrics.usage_rows(
        decoded.points, policy=policy, price_book=app[PRICE_BOOK], window=window
    )
    no_usage = decoded.unread + found.no_usage
    if no_usage:
        counters.metric_points_dropped.labels("no_usage").inc(no_usage)
    if found.out_of_window:
        counters.spans_rejected.labels("out_of_window").inc(found.out_of_window)
    stored = await _write(
        app,
        verified,
        len(found.rows),
        lambda timeout: write_metric_usage(
            app[POOL], verified.organization_id, found.rows, timeout=timeout
        ),
    )
    counters.metric_points_stored.inc(stored)
    if stored < len(found.rows):
        counters.metric_points_dropped.labels("duplicate").inc(len(found.rows) - stored)
    rejected = decoded.rejections.count + found.out_of_window
    reasons = [decoded.rejections.message]
    if found.out_of_window:
        reasons.append(window.reason(found.out_of_window, what="data point(s) fall"))
    return metrics.encode_metrics_response(
        fmt, rejected=rejected, message="; ".join(r for r in reasons if r)
    )


async def json_ingest(request: web.Request) -> web.Response:
    app = request.app
    try:
        async with admitted(app):
            fmt = otlp.parse_content_type(request.headers.get("Content-Type"))
            if fmt is not otlp.OtlpFormat.JSON:
                raise otlp.UnsupportedContentTypeError("/v1/ingest takes application/json")
            verified = await authenticate(request, "ingest")
            body = await otlp.read_request_body(request, max_size=app[CONFIG].max_body_bytes)
            parsed = parse_events(body, max_events=app[CONFIG].decode_limits.max_spans_per_request)
            app[METRICS].spans_received.inc(len(parsed.calls))
            if parsed.rejected:
                app[METRICS].spans_rejected.labels("invalid_event").inc(parsed.rejected)
            await _rate_limit(app, verified, len(parsed.calls))
            stored, conversion = await _store(
                app,
                verified,
                parsed.calls,
                lambda calls, policy, window: _calls_to_rows(app, calls, policy, window),
            )
    except otlp.OtlpRequestError as exc:
        return _json_error(exc.status, exc.message)
    except HttpError as exc:
        return _json_error(exc.status, exc.message, exc.headers)
    errors = parsed.errors
    if conversion.rejection_message and len(errors) < MAX_ERRORS_REPORTED:
        errors = [*errors, conversion.rejection_message]
    answer = schemas.IngestResponse(
        accepted=len(parsed.calls) - conversion.out_of_window,
        stored=stored,
        duplicates=len(conversion.rows) - stored,
        rejected=parsed.rejected + conversion.out_of_window,
        errors=errors,
    )
    return answer_json(answer)


LARGE_BODY_BYTES = 2 * 1024 * 1024


async def _decode(app: web.Application, body: bytes, fmt: otlp.OtlpFormat) -> otlp.DecodedRequest:
    limits = app[CONFIG].decode_limits
    if len(body) < LARGE_BODY_BYTES:
        return otlp.decode_body(body, fmt, limits=limits)
    async with app[ADMISSION].large_decodes:
        return await asyncio.to_thread(otlp.decode_body, body, fmt, limits=limits)


def _otlp_refusal(exc: otlp.OtlpRequestError | HttpError, content_type: str | None) -> web.Response:
    """An OTLP route's 4xx/5xx: a ``google.rpc.Status`` in the request's encoding."""
    if isinstance(exc, otlp.OtlpRequestError):
        payload, ctype = otlp.encode_error(exc, content_type=content_type)
        return web.Response(status=exc.status, body=payload, content_type=ctype)
    payload, ctype = otlp.encode_status(exc.status, exc.message, content_type=content_type)
    return web.Response(status=exc.status, body=payload, headers=exc.headers, content_type=ctype)


def _json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        {"error": {"status": status, "message": message}}, status=status, headers=headers
    )


def _count_decoded(app: web.Application, decoded: otlp.DecodedRequest) -> None:
    metrics = app[METRICS]
    metrics.spans_received.inc(len(decoded.spans))
    if decoded.rejected_spans:
        metrics.spans_rejected.labels("invalid_span").inc(decoded.rejected_spans)
    if decoded.truncated_values:
        metrics.values_truncated.inc(decoded.truncated_values)
    if decoded.dropped_attributes:
        metrics.attributes_dropped.inc(decoded.dropped_attributes)


async def _rate_limit(app: web.Application, verified: VerifiedKey, spans: int) -> None:
    if spans == 0:
        return
    decision = await app[LIMITER].take(
        str(verified.organization_id), verified.rate_limit_per_min, spans
    )
    app[METRICS].rate_limit_fallback.set(1 if app[LIMITER].using_fallback else 0)
    if not decision.allowed:
        app[METRICS].rate_limited.inc()
        raise TooManyRequests(
            f"organization over its rate limit of {verified.rate_limit_per_min} spans per minute",
            headers=decision.headers(),
        )


def _spans_to_rows(
    app: web.Application,
    spans: Sequence[otlp.DecodedSpan],
    policy: TenantPolicy,
    window: TimeWindow,
) -> Conversion:
    return spans_to_rows(
        spans,
        policy=policy,
        price_book=app[PRICE_BOOK],
        window=window,
        keep_all_spans=app[CONFIG].keep_all_spans,
    )


def _calls_to_rows(
    app: web.Application,
    calls: Sequence[ReportedCall],
    policy: TenantPolicy,
    window: TimeWindow,
) -> Conversion:
    return calls_to_rows(calls, policy=policy, price_book=app[PRICE_BOOK], window=window)


CONVERT_SLICE = 64
"""Spans converted between two returns to the event loop. Converting costs ~5 µs a span, but
up to ~170 µs for a model name never seen (a genai-prices lookup): 64 such spans hold the
loop ~11 ms, so one tenant's costly request never stalls everyone else's for long."""


async def _convert(
    items: Sequence[T],
    convert_slice: Callable[[Sequence[T], TenantPolicy, TimeWindow], Conversion],
    policy: TenantPolicy,
    window: TimeWindow,
) -> Conversion:
    """``convert_slice`` over ``items`` a slice at a time, yielding to the loop in between."""
    conversion = convert_slice(items[:CONVERT_SLICE], policy, window)
    for start in range(CONVERT_SLICE, len(items), CONVERT_SLICE):
        await asyncio.sleep(0)
        conversion.add(convert_slice(items[start : start + CONVERT_SLICE], policy, window))
    return conversion


async def _policy(app: web.Application, verified: VerifiedKey) -> TenantPolicy:
    """The organization's policy; storage trouble loading it is a 503."""
    try:
        async with asyncio.timeout(app[CONFIG].auth_timeout_seconds):
            return await app[POLICIES].policy(
                verified.organization_id, capture_content=verified.capture_content
            )
    except Exception as exc:
        if is_storage_unavailable(exc):
            app[METRICS].storage_unavailable.inc()
            raise Unavailable("storage unavailable", headers=_retry_later(app)) from exc
        raise


def _retry_later(app: web.Application) -> dict[str, str]:
    return {"Retry-After": str(app[CONFIG].retry_after_seconds)}


async def _write(
    app: web.Application,
    verified: VerifiedKey,
    count: int,
    write: Callable[[float], Awaitable[int]],
) -> int:
    """``write(timeout)`` of ``count`` rows, committed before this returns: how many were
    new. A value the database refuses is a 400; anything else on the write path a 503."""
    if not count:
        return 0
    metrics = app[METRICS]
    org = str(verified.organization_id)
    started = time.perf_counter()
    try:
        # Bounded: a write queued behind a slow one is abandoned with a 503 (the client
        # retries, the idempotent writer makes that harmless) rather than held open.
        timeout = app[CONFIG].write_timeout_seconds
        async with asyncio.timeout(timeout * 2):
            inserted = await write(timeout)
    except Exception as exc:
        if is_bad_data(exc):
            logger.warning(
                "database refused a value", extra={"organization_id": org, "error": str(exc)[:200]}
            )
            raise BadRequest(f"a record holds a value the database cannot store: {exc}") from exc
        # Anything else on the write path is answered "retry later", never 500: exporters
        # give up on a 500 and the data would be lost; on a 503 they retry, and the
        # idempotent writers make the retry harmless.
        metrics.storage_unavailable.inc()
        if is_storage_unavailable(exc):
            logger.warning(
                "write failed, answering 503",
                extra={"organization_id": org, "error": type(exc).__name__},
            )
        else:
            logger.exception(
                "unexpected write failure, answering 503", extra={"organization_id": org}
            )
        raise Unavailable("storage unavailable, retry later", headers=_retry_later(app)) from exc
    metrics.write_seconds.observe(time.perf_counter() - started)
    return inserted


async def _store(
    app: web.Application,
    verified: VerifiedKey,
    items: Sequence[T],
    convert_slice: Callable[[Sequence[T], TenantPolicy, TimeWindow], Conversion],
) -> tuple[int, Conversion]:
    """Convert ``items`` (once the organization's policy is known) and write, committed
    before this returns; storage trouble is a 503, a value the database refuses a 400."""
    metrics = app[METRICS]
    policy = await _policy(app, verified)
    window = app[CONFIG].span_window(verified.retention_days)
    refused_before = policy.lookups.refused if policy.lookups is not None else 0
    conversion = await _convert(items, convert_slice, policy, window)
    if policy.lookups is not None and policy.lookups.refused > refused_before:
        metrics.price_lookups_refused.inc(policy.lookups.refused - refused_before)
    if conversion.out_of_window:
        metrics.spans_rejected.labels("out_of_window").inc(conversion.out_of_window)
    if conversion.dropped_not_genai:
        metrics.spans_dropped.labels("not_genai").inc(conversion.dropped_not_genai)
    if conversion.dimensions_cut:
        metrics.dimension_values_cut.inc(conversion.dimensions_cut)
    if conversion.carriers:
        metrics.attribution_carriers.inc(conversion.carriers)
    inserted = await _write(
        app,
        verified,
        len(conversion.rows),
        lambda _timeout: app[WRITER].write(verified.organization_id, conversion.rows),
    )
    metrics.spans_stored.inc(inserted)
    if inserted < len(conversion.rows):
        metrics.spans_duplicate.inc(len(conversion.rows) - inserted)
    return inserted, conversion
