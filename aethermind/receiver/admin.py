"""Key management for keys with the ``admin`` scope: list, create and revoke the keys of the
key's own organization (``GET/POST /v1/keys``, ``DELETE /v1/keys/{key_id}``).

The organization is the admin key's, and row-level security scopes every statement to it,
so a key id of another organization is simply not found. Prices and budgets stay with the
CLI (operator work).
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from aiohttp import web

from aethermind.receiver.errors import BadRequest, NotFound
from aethermind.receiver.query import jsonable, reading
from aethermind.receiver.security import authenticate
from aethermind.receiver.state import SERVICES
from aethermind.storage import keys, tenants

MAX_KEY_NAME_LENGTH = 200
MAX_BODY_BYTES = 4096


async def list_keys(request: web.Request) -> web.Response:
    verified = await authenticate(request, "admin")
    services = request.app[SERVICES]
    async with reading(services):
        records = await tenants.list_keys(
            services.pool, verified.organization_id, timeout=services.config.write_timeout_seconds
        )
    return web.json_response({"keys": [jsonable(r.as_dict()) for r in records]})


async def create_key(request: web.Request) -> web.Response:
    verified = await authenticate(request, "admin")
    services = request.app[SERVICES]
    scopes, name = _parse_new_key(await _json_body(request))
    async with reading(services), services.key_hashing:
        record, full_key = await tenants.create_key(
            services.pool, verified.organization_id, scopes, name,
            timeout=services.config.write_timeout_seconds,
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
    services = request.app[SERVICES]
    raw_id = request.match_info["key_id"]
    try:
        key_id = UUID(raw_id)
    except ValueError:
        raise BadRequest("path parameter 'key_id' must be a key id (a UUID)") from None
    async with reading(services):
        record = await tenants.revoke_key(
            services.pool, key_id, organization_id=verified.organization_id,
            timeout=services.config.write_timeout_seconds,
        )  # fmt: skip
    if record is None:
        raise NotFound(f"no key {key_id} in this organization")
    return web.json_response(jsonable(record.as_dict()))


async def _json_body(request: web.Request) -> Any:
    if request.content_type != "application/json":
        raise BadRequest("send the new key's description as application/json")
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
    if isinstance(name, str):
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest("'name' is not valid UTF-8") from None
    return scopes, name
