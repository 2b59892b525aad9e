"""What keys with the ``admin`` scope manage, for their own organization only: its keys
(``GET/POST /v1/keys``, ``DELETE /v1/keys/{key_id}``), its price overrides
(``GET/POST /v1/prices``, ``DELETE /v1/prices/{price_id}``) and its tag keys
(``GET/PUT /v1/tags``).

The organization is the admin key's, and row-level security scopes every statement to it,
so an id of another organization is simply not found. Budgets stay with the CLI.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ValidationError

from aethermind.receiver import schemas
from aethermind.receiver.auth import authenticate
from aethermind.receiver.errors import BadRequest, NotFound
from aethermind.receiver.query import answer_json, jsonable, parse_time, reading
from aethermind.receiver.state import CONFIG, KEY_HASHING, POLICIES, POOL
from aethermind.storage import cost_basis, prices, tenants

MAX_BODY_BYTES = 4096


async def list_keys(request: web.Request) -> web.Response:
    verified = await authenticate(request, "admin")
    app = request.app
    async with reading(app):
        records = await tenants.list_keys(
            app[POOL], verified.organization_id, timeout=app[CONFIG].admin_timeout_seconds
        )
    return answer_json(schemas.KeyList(keys=[_key(r) for r in records]))


async def create_key(request: web.Request) -> web.Response:
    verified = await authenticate(request, "admin")
    app = request.app
    new = _parse(schemas.NewKeyRequest, await _json_body(request), _NEW_KEY_SHAPE)
    async with reading(app), app[KEY_HASHING]:
        record, full_key = await tenants.create_key(
            app[POOL], verified.organization_id, new.scopes, new.name,
            timeout=app[CONFIG].admin_timeout_seconds,
        )  # fmt: skip
    # The same document as `aethermind key create --json`; the full key is shown only here.
    created = schemas.CreatedKey(
        id=str(record.id),
        key=full_key,
        scopes=list(record.scopes),  # type: ignore[arg-type]  # storage's scopes are Scope
        organization_id=str(record.organization_id),
        name=record.name,
    )
    return answer_json(created, status=201)


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
    return answer_json(_key(record))


async def list_prices(request: web.Request) -> web.Response:
    verified = await authenticate(request, "admin")
    app = request.app
    async with reading(app):
        stored = await prices.list_prices(
            app[POOL], verified.organization_id, timeout=app[CONFIG].admin_timeout_seconds
        )
    return answer_json(schemas.PriceList(prices=[price_document(p) for p in stored]))


async def create_price(request: web.Request) -> web.Response:
    verified = await authenticate(request, "admin")
    app = request.app
    new = _parse(schemas.NewPriceRequest, await _json_body(request), _NEW_PRICE_SHAPE)
    async with reading(app):
        price = await prices.create_price(
            app[POOL], verified.organization_id, new.model_pattern,
            provider=new.provider,
            service_tier=new.service_tier,
            **{name: _decimal(getattr(new, name)) for name in prices.PRICE_FIELDS},
            valid_from=None if new.valid_from is None else parse_time("valid_from", new.valid_from),
            timeout=app[CONFIG].admin_timeout_seconds,
        )  # fmt: skip
    # This process prices with it from the next request; other replicas within their
    # overrides TTL (30 s by default). `aethermind reprice` applies it to stored spans.
    app[POLICIES].forget(verified.organization_id)
    return answer_json(price_document(price), status=201)


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


async def get_tags(request: web.Request) -> web.Response:
    verified = await authenticate(request, "admin")
    app = request.app
    async with reading(app):
        keys = await tenants.get_tag_keys(
            app[POOL], verified.organization_id, timeout=app[CONFIG].admin_timeout_seconds
        )
    return answer_json(schemas.TagKeys(keys=list(keys)))


async def put_tags(request: web.Request) -> web.Response:
    verified = await authenticate(request, "admin")
    app = request.app
    new = _parse(schemas.TagKeysRequest, await _json_body(request), '{"keys": ["team", ...]}')
    async with reading(app):  # a key named twice is the storage rule's ValueError: a 400
        keys = await tenants.set_tag_keys(
            app[POOL], verified.organization_id, new.keys,
            timeout=app[CONFIG].admin_timeout_seconds,
        )  # fmt: skip
    # This process keeps the new keys' values from the next request; other replicas within
    # their policy TTL (30 s by default). Spans stored before keep what they had.
    app[POLICIES].forget(verified.organization_id)
    return answer_json(schemas.TagKeys(keys=list(keys)))


async def get_cost_basis(request: web.Request) -> web.Response:
    verified = await authenticate(request, "admin")
    app = request.app
    async with reading(app):
        basis = await cost_basis.get_cost_basis(
            app[POOL], verified.organization_id, timeout=app[CONFIG].admin_timeout_seconds
        )
    return answer_json(schemas.CostBasisDocument(cost_basis=basis))


async def put_cost_basis(request: web.Request) -> web.Response:
    verified = await authenticate(request, "admin")
    app = request.app
    new = _parse(schemas.CostBasisRequest, await _json_body(request), '{"cost_basis": "provided"}')
    async with reading(app):
        basis = await cost_basis.set_cost_basis(
            app[POOL], verified.organization_id, new.cost_basis,
            timeout=app[CONFIG].admin_timeout_seconds,
        )  # fmt: skip
    return answer_json(schemas.CostBasisDocument(cost_basis=basis))


def price_document(price: prices.StoredPrice) -> schemas.Price:
    """A price override as the API shows it: money as decimal strings."""
    return schemas.Price(**jsonable(price.as_dict()))


def _key(record: tenants.ApiKey) -> schemas.ApiKey:
    return schemas.ApiKey(**jsonable(record.as_dict()))


_NEW_KEY_SHAPE = '{"scopes": ["read"], "name": "..."}'
_NEW_PRICE_SHAPE = '{"model_pattern": "ft:gpt-4o*", "input_per_mtok": "3.75", ...}'

M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], body: Any, shape: str) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise BadRequest(schemas.problems(exc, shape)) from None


def _decimal(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


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
