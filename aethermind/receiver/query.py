"""Query API: ``GET /v1/aggregates`` and ``GET /v1/traces/{trace_id}`` for keys with the
``read`` scope. The organization is always the key's; no parameter can choose another.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from aethermind.receiver import schemas
from aethermind.receiver.auth import authenticate
from aethermind.receiver.errors import (
    BadRequest,
    InvalidParameter,
    Unavailable,
    is_storage_unavailable,
)
from aethermind.receiver.state import CONFIG, POOL, PRICE_BOOK
from aethermind.semconv.record import MAX_NAME_LENGTH
from aethermind.storage import queries
from aethermind.storage.dimensions import is_dimension
from aethermind.storage.tags import TAG_PREFIX
from aethermind.storage.what_if import UnknownModel, add_what_if_costs

DEFAULT_RANGE = timedelta(days=30)
_TRACE_ID_RE = re.compile(r"^[0-9a-fA-F]{32}$")
_FILTERS = queries.FILTER_KEYS
_KNOWN_PARAMS = frozenset(
    {"from", "to", "group_by", "granularity", "order_by", "limit", "what_if_model", *_FILTERS}
)


# Spans are stored between the epoch and 2262 (int64 nanoseconds); anything outside is a
# mistake, and near Python's own date limits arithmetic on it would overflow.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2262, 4, 11, tzinfo=UTC)


def parse_time(name: str, raw: str) -> datetime:
    try:
        moment = datetime.fromisoformat(raw.strip().replace("Z", "+00:00").replace(" ", "+"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        in_range = EARLIEST <= moment <= LATEST
    except (ValueError, OverflowError):
        # The value is not echoed: whatever was pasted there (a key, say) stays out of answers.
        raise InvalidParameter(name, "must be an ISO 8601 date-time") from None
    if not in_range:
        raise InvalidParameter(name, "must be between 1970 and 2262")
    return moment


def text_param(name: str, raw: str) -> str:
    """A free-text query value: no NUL or unpaired surrogates (PostgreSQL text refuses them)."""
    if "\x00" in raw or len(raw) > 512:
        raise InvalidParameter(name, "is not a valid value")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidParameter(name, "is not valid UTF-8") from None
    return raw


def parse_range(
    params: Mapping[str, str], *, now: datetime | None = None
) -> tuple[datetime, datetime]:
    now = now or datetime.now(UTC)
    to = parse_time("to", params["to"]) if params.get("to") else now
    from_ = parse_time("from", params["from"]) if params.get("from") else to - DEFAULT_RANGE
    if to <= from_:
        raise InvalidParameter("to", "must be after 'from'")
    return max(from_, EARLIEST), to


def parse_filters(params: Mapping[str, str]) -> dict[str, str]:
    """The dimension filters of a query (``user=alice``, ``tag.team=search``): one rule for
    the aggregates and the top traces."""
    filters = {name: text_param(name, params[name]) for name in _FILTERS if params.get(name)}
    for name in params:
        if name.startswith(TAG_PREFIX) and params[name]:
            if not is_dimension(name):
                raise InvalidParameter(name, "names no valid tag key (letters, digits, _.:-)")
            filters[name] = text_param(name, params[name])
    return filters


def parse_aggregate_params(params: Mapping[str, str]) -> dict[str, Any]:
    unknown = sorted(p for p in set(params) - _KNOWN_PARAMS if not p.startswith(TAG_PREFIX))
    if unknown:
        raise BadRequest(f"unknown parameter {unknown[0]!r}")
    from_, to = parse_range(params)
    group_by = [g.strip() for g in params.get("group_by", "").split(",") if g.strip()]
    bad = [g for g in group_by if not is_dimension(g)]
    if bad:
        raise InvalidParameter(
            "group_by", f"has {bad[0]!r}; allowed: {', '.join(queries.GROUP_KEYS)}, tag.<key>"
        )
    if len(set(group_by)) != len(group_by):
        raise InvalidParameter("group_by", "repeats a key")
    granularity = params.get("granularity") or None
    if granularity is not None and granularity not in queries.GRANULARITIES:
        raise InvalidParameter("granularity", f"must be one of {', '.join(queries.GRANULARITIES)}")
    if granularity == "minute" and to - from_ > timedelta(days=7):
        raise InvalidParameter("granularity", "minute allows ranges up to 7 days")
    filters = parse_filters(params)
    order_by = params.get("order_by")
    if order_by is not None and order_by not in queries.ORDER_KEYS:
        raise InvalidParameter("order_by", f"must be one of {', '.join(queries.ORDER_KEYS)}")
    limit = None
    if params.get("limit"):
        raw = params["limit"].strip()
        if not raw.isdigit() or not 1 <= int(raw) <= queries.MAX_LIMIT:
            raise InvalidParameter("limit", f"must be an integer from 1 to {queries.MAX_LIMIT}")
        limit = int(raw)
        if order_by is None and group_by:
            order_by = "cost_usd"  # top N of a breakdown: the costliest, unless told
    what_if = params.get("what_if_model")
    if what_if is not None and not 0 < len(what_if) <= MAX_NAME_LENGTH:
        raise InvalidParameter("what_if_model", f"must be 1 to {MAX_NAME_LENGTH} characters")
    return {
        "from_": from_,
        "to": to,
        "group_by": group_by,
        "granularity": granularity,
        "filters": filters,
        "order_by": order_by,
        "limit": limit,
        "what_if_model": what_if,
    }


def answer_json(
    answer: BaseModel, *, status: int = 200, exclude_unset: bool = False
) -> web.Response:
    """A response built through its declared model (``receiver/schemas.py``)."""
    return web.json_response(
        answer.model_dump(mode="json", by_alias=True, exclude_unset=exclude_unset),
        status=status,
    )


def jsonable(value: Any) -> Any:
    """Money as exact decimal strings without exponent or trailing zeros ("0.01", not
    "0.0100000"), instants as ISO 8601, ids as strings."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value.is_finite() else str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


@contextlib.asynccontextmanager
async def reading(app: web.Application) -> AsyncIterator[None]:
    """One bounded read: too slow or storage down is a 503 with Retry-After, a request the
    query module refuses (its ``ValueError``) is a 400."""
    try:
        async with asyncio.timeout(app[CONFIG].read_timeout_seconds):
            yield
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    except Exception as exc:
        if is_storage_unavailable(exc):
            retry = str(app[CONFIG].retry_after_seconds)
            raise Unavailable("storage unavailable", headers={"Retry-After": retry}) from exc
        raise


async def aggregates(request: web.Request) -> web.Response:
    verified = await authenticate(request, "read")
    app = request.app
    params = parse_aggregate_params(request.query)
    async with reading(app):
        rows = await queries.aggregates(
            app[POOL],
            verified.organization_id,
            params["from_"],
            params["to"],
            group_by=params["group_by"],
            granularity=params["granularity"],
            filters=params["filters"],
            order_by=params["order_by"],
            limit=params["limit"],
            timeout=app[CONFIG].read_timeout_seconds,
        )
    if params["what_if_model"] is not None:
        try:
            add_what_if_costs(rows, params["what_if_model"], app[PRICE_BOOK])
        except UnknownModel as exc:
            raise InvalidParameter("what_if_model", str(exc)) from exc
    answer = schemas.AggregatesResponse.model_validate(
        jsonable(
            {
                "from": params["from_"],
                "to": params["to"],
                "group_by": params["group_by"],
                "granularity": params["granularity"],
                "rows": rows,
            }
        )
    )
    # Unset, not null: a row carries the group keys it was grouped by, and a bucket only
    # with a granularity.
    return answer_json(answer, exclude_unset=True)


async def trace(request: web.Request) -> web.Response:
    verified = await authenticate(request, "read")
    app = request.app
    trace_id = request.match_info["trace_id"]
    if not _TRACE_ID_RE.match(trace_id):
        raise BadRequest("path parameter 'trace_id' must be 32 hex characters")
    since, until = app[CONFIG].span_window(verified.retention_days).stored_range()
    async with reading(app):
        spans = await queries.trace_spans(
            app[POOL], verified.organization_id, trace_id, since=since, until=until,
            timeout=app[CONFIG].read_timeout_seconds,
        )  # fmt: skip
    if not spans:
        return web.json_response(
            {"error": {"status": 404, "message": f"no spans of trace {trace_id.lower()}"}},
            status=404,
        )
    return answer_json(
        schemas.TraceResponse.model_validate(
            jsonable({"trace_id": trace_id.lower(), "spans": spans})
        )
    )


async def top_traces(request: web.Request) -> web.Response:
    verified = await authenticate(request, "read")
    app = request.app
    unknown = sorted(
        p
        for p in set(request.query) - {"from", "to", "limit", *_FILTERS}
        if not p.startswith(TAG_PREFIX)
    )
    if unknown:
        raise BadRequest(f"unknown parameter {unknown[0]!r}")
    from_, to = parse_range(request.query)
    filters = parse_filters(request.query)
    raw_limit = request.query.get("limit", "10")
    if not raw_limit.isdigit():
        raise BadRequest("parameter 'limit' must be an integer")
    limit = int(raw_limit)
    if not 0 < limit <= 100:
        raise BadRequest("parameter 'limit' must be within 1..100")
    async with reading(app):
        rows = await queries.top_traces(
            app[POOL], verified.organization_id, from_, to, limit=limit, filters=filters,
            timeout=app[CONFIG].read_timeout_seconds,
        )  # fmt: skip
    answer = jsonable({"from": from_, "to": to, "traces": rows})
    return answer_json(schemas.TopTracesResponse.model_validate(answer))
