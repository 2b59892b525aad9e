"""What keys with the ``admin`` scope manage, for their own organization only: its keys
(``GET/POST /v1/keys``, ``DELETE /v1/keys/{key_id}``) and its price overrides
(``GET/POST /v1/prices``, ``DELETE /v1/prices/{price_id}``).

The organization is the admin key's, and row-level security scopes every statement to it,
so an id of another organization is simply not found. Budgets stay with the CLI.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any
from uuid import UUID

from aiohttp import web

from aethermind.receiver.auth import authenticate
from aethermind.receiver.errors import BadRequest, NotFound
from aethermind.receiver.query import jsonable, parse_time, reading
from aethermind.receiver.state import CONFIG, KEY_HASHING, POLICIES, POOL
from aethermind.storage import keys, prices, tenants

MAX_KEY_NAME_LENGTH = 200
MAX_BODY_BYTES = 4096


async def list_keys(request: web.Request) -> web.Response:
    verified = await authenticate(request, "admin")
    app = request.app
    async with reading(app):
        records = await tenants.list_keys(
            app[POOL], verified.organization_id, timeout=app[CONFIG].admin_timeout_seconds
        )
    return web.json_response({"keys": [jsonable(r.as_dict()) for r in records]})


async def create_key(request: web.Request) -> web.Response:
    verified = await authenticate(request, "admin")
    app = request.app
    scopes, name = _parse_new_key(await _json_body(request))
    async with reading(app), app[KEY_HASHING]:
        record, full_key = await tenants.create_key(
            app[POOL], verified.organization_id, scopes, name,
            timeout=app[CONFIG].admin_timeout_seconds,
        )  # fmt: skip
    # The same document as `aethermind key create --json`; the full key is shown only here.
    return web.json_response(
        {
            "id": str(record.id),
            "key": full_key,
            "scopes": list(record.scopes),
            "organization_id": str(record.organization_id),
            "name": record.name,
        },
        status=201,
    )


async def revoke_key(request: web.Request) -> web.Response:
    verified = await authenticate(request, "admin")
    app = request.app
    key_id = _uuid_param(request, "key_id", "a key id (a UUID)")
    async with reading(app):
        record = await tenants.revoke_key(
            app[POOL], key_id, organization_id=verified.organization_id,
            timeout=app[CONFIG].admin_timeout_seconds,
        )  # fmt: skip
    if record is None:
        raise NotFound(f"no key {key_id} in this organization")
    return web.json_response(jsonable(record.as_dict()))


# The same shapes the OpenAPI document gives, so the schema and the server agree exactly.
_MONEY = re.compile(r"^[0-9]{1,7}(\.[0-9]{1,12})?$")
_DATE_TIME = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
MAX_PATTERN_LENGTH = 200


async def list_prices(request: web.Request) -> web.Response:
    verified = await authenticate(request, "admin")
    app = request.app
    async with reading(app):
        stored = await prices.list_prices(
            app[POOL], verified.organization_id, timeout=app[CONFIG].admin_timeout_seconds
        )
    return web.json_response({"prices": [price_document(p) for p in stored]})


async def create_price(request: web.Request) -> web.Response:
    verified = await authenticate(request, "admin")
    app = request.app
    fields = _parse_new_price(await _json_body(request))
    async with reading(app):
        price = await prices.create_price(
            app[POOL], verified.organization_id,
            timeout=app[CONFIG].admin_timeout_seconds, **fields,
        )  # fmt: skip
    # This process prices with it from the next request; other replicas within their
    # overrides TTL (30 s by default). `aethermind reprice` applies it to stored spans.
    app[POLICIES].forget(verified.organization_id)
    return web.json_response(price_document(price), status=201)


async def delete_price(request: web.Request) -> web.Response:
    verified = await authenticate(request, "admin")
    app = request.app
    price_id = _uuid_param(request, "price_id", "a price id (a UUID)")
    async with reading(app):
        deleted = await prices.delete_price(
            app[POOL], verified.organization_id, price_id,
            timeout=app[CONFIG].admin_timeout_seconds,
        )  # fmt: skip
    if not deleted:
        raise NotFound(f"no price {price_id} in this organization")
    app[POLICIES].forget(verified.organization_id)
    return web.Response(status=204)


def price_document(price: prices.StoredPrice) -> dict[str, Any]:
    """A price override as the API shows it: money as decimal strings."""
    document: dict[str, Any] = jsonable(price.as_dict())
    return document


def _parse_new_price(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest('the body must be an object: {"model_pattern": ..., ...}')
    unknown = sorted(set(body) - {"model_pattern", "provider", "valid_from", *prices.PRICE_FIELDS})
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}")
    fields: dict[str, Any] = {"model_pattern": _text(body, "model_pattern")}
    if "provider" in body:
        fields["provider"] = _text(body, "provider")
    for name in prices.PRICE_FIELDS:
        required = name in ("input_per_mtok", "output_per_mtok")
        fields[name] = _money(body, name, required=required)
    if "valid_from" in body:
        raw_from = body["valid_from"]
        if not isinstance(raw_from, str) or not _DATE_TIME.fullmatch(raw_from):
            raise BadRequest(
                "'valid_from' must be an RFC 3339 date-time, e.g. 2026-11-01T00:00:00Z"
            )
        fields["valid_from"] = parse_time("valid_from", raw_from)
    return fields


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_PATTERN_LENGTH or "\x00" in value:
        raise BadRequest(f"'{name}' must be a non-empty string of at most {MAX_PATTERN_LENGTH}")
    return _utf8(value, name)


def _utf8(value: str, name: str) -> str:
    """``value`` if PostgreSQL text can hold it (no unpaired surrogates from JSON escapes)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"'{name}' is not valid UTF-8") from None
    return value


def _money(body: dict[str, Any], name: str, *, required: bool) -> Decimal | None:
    """USD per million tokens, as a decimal string (money is never a JSON number here)."""
    if name not in body:
        if required:
            raise BadRequest(f"'{name}' is required (USD per million tokens, e.g. \"2.50\")")
        return None
    value = body[name]
    if not isinstance(value, str) or not _MONEY.fullmatch(value):
        raise BadRequest(f"'{name}' must be a decimal string under 10000000 such as \"2.50\"")
    return Decimal(value)


def _uuid_param(request: web.Request, name: str, what: str) -> UUID:
    try:
        return UUID(request.match_info[name])
    except ValueError:
        raise BadRequest(f"path parameter '{name}' must be {what}") from None


async def _json_body(request: web.Request) -> Any:
    if request.content_type != "application/json":
        raise BadRequest("send the body as application/json")
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest(f"the body is over {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not valid JSON") from None


def _parse_new_key(body: Any) -> tuple[tuple[str, ...], str | None]:
    if not isinstance(body, dict):
        raise BadRequest('the body must be an object: {"scopes": [...], "name": "..."}')
    unknown = sorted(set(body) - {"scopes", "name"})
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}")
    raw_scopes = body.get("scopes")
    if not isinstance(raw_scopes, list) or not all(isinstance(s, str) for s in raw_scopes):
        raise BadRequest(f"'scopes' must be a list of {', '.join(sorted(keys.SCOPES))}")
    if len(set(raw_scopes)) != len(raw_scopes):
        raise BadRequest("'scopes' repeats a scope")
    try:
        scopes = keys.normalize_scopes(raw_scopes)
    except ValueError as exc:
        raise BadRequest(f"'scopes': {exc}") from None
    name = body.get("name")
    if name is not None and (
        not isinstance(name, str) or len(name) > MAX_KEY_NAME_LENGTH or "\x00" in name
    ):
        raise BadRequest(f"'name' must be a string of at most {MAX_KEY_NAME_LENGTH} characters")
    return scopes, None if name is None else _utf8(name, "name")
