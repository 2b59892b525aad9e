"""Key management over HTTP with an ``admin`` key: its own organization's keys only."""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal

import pytest

from aethermind.receiver.openapi import build_document
from aethermind.storage.tenants import create_key
from tests.plugins.receiver import RunningReceiver
from tests.receiver.helpers import PROTOBUF, llm_spans, protobuf_body


async def admin_headers(receiver: RunningReceiver, tenant: str = "acme") -> dict[str, str]:
    org = getattr(receiver, tenant)
    _, key = await create_key(receiver.pool, org.id, ["admin"], name="admin")
    return {"Authorization": f"Bearer {key}"}


async def test_an_admin_key_creates_lists_and_revokes_its_organizations_keys(
    receiver: RunningReceiver,
) -> None:
    headers = await admin_headers(receiver)
    created = await receiver.session.post(
        f"{receiver.url}/v1/keys", json={"scopes": ["ingest"], "name": "ci"}, headers=headers
    )
    assert created.status == 201
    document = await created.json()
    assert document["scopes"] == ["ingest"] and document["name"] == "ci"
    assert document["organization_id"] == str(receiver.acme.id)
    new_key = document["key"]

    # The new key works at once...
    ingest = {"Authorization": f"Bearer {new_key}", "Content-Type": PROTOBUF}
    response = await receiver.session.post(
        receiver.traces_url, data=protobuf_body(llm_spans(1)), headers=ingest
    )
    assert response.status == 200

    listed = await (await receiver.session.get(f"{receiver.url}/v1/keys", headers=headers)).json()
    by_id = {k["id"]: k for k in listed["keys"]}
    assert document["id"] in by_id
    assert {k["organization_id"] for k in listed["keys"]} == {str(receiver.acme.id)}
    assert all("key" not in k and "key_hash" not in k for k in listed["keys"])
    assert new_key not in str(listed)

    # ...and stops once revoked (the revocation reaches this server's key cache).
    revoked = await receiver.session.delete(
        f"{receiver.url}/v1/keys/{document['id']}", headers=headers
    )
    assert revoked.status == 200
    assert (await revoked.json())["revoked_at"] is not None
    for _ in range(50):
        response = await receiver.session.post(
            receiver.traces_url, data=protobuf_body(llm_spans(1)), headers=ingest
        )
        if response.status == 403:
            break
        await asyncio.sleep(0.1)
    assert response.status == 403


async def test_an_admin_key_never_sees_or_revokes_another_organizations_keys(
    receiver: RunningReceiver,
) -> None:
    acme_admin = await admin_headers(receiver, "acme")
    globex_key, _ = await create_key(receiver.pool, receiver.globex.id, ["read"], name="victim")
    listed = await (
        await receiver.session.get(f"{receiver.url}/v1/keys", headers=acme_admin)
    ).json()
    assert str(globex_key.id) not in {k["id"] for k in listed["keys"]}
    response = await receiver.session.delete(
        f"{receiver.url}/v1/keys/{globex_key.id}", headers=acme_admin
    )
    assert response.status == 404
    globex_admin = await admin_headers(receiver, "globex")
    theirs = await (
        await receiver.session.get(f"{receiver.url}/v1/keys", headers=globex_admin)
    ).json()
    [victim] = [k for k in theirs["keys"] if k["id"] == str(globex_key.id)]
    assert victim["revoked_at"] is None


async def test_other_scopes_may_not_manage_keys(receiver: RunningReceiver) -> None:
    for key in (receiver.acme.ingest_key, receiver.acme.read_key):
        headers = {"Authorization": f"Bearer {key}"}
        listed = await receiver.session.get(f"{receiver.url}/v1/keys", headers=headers)
        created = await receiver.session.post(
            f"{receiver.url}/v1/keys", json={"scopes": ["admin"]}, headers=headers
        )
        assert listed.status == 403 and created.status == 403
    anonymous = await receiver.session.get(f"{receiver.url}/v1/keys")
    assert anonymous.status == 401


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"scopes": []}, "at least one scope"),
        ({"scopes": ["root"]}, "unknown scopes"),
        ({"scopes": "read"}, "'scopes' must be a list"),
        ({"scopes": ["read"], "name": 7}, "'name' must be a string"),
        ({"scopes": ["read"], "organization_id": "x"}, "unknown field 'organization_id'"),
        ([1, 2], "must be an object"),
    ],
)
async def test_bad_key_requests_get_a_clear_400(
    receiver: RunningReceiver, body: object, message: str
) -> None:
    headers = await admin_headers(receiver)
    response = await receiver.session.post(f"{receiver.url}/v1/keys", json=body, headers=headers)
    assert response.status == 400
    assert message in (await response.json())["error"]["message"]


async def test_bad_key_ids_and_bodies_are_400_not_500(receiver: RunningReceiver) -> None:
    headers = await admin_headers(receiver)
    response = await receiver.session.delete(f"{receiver.url}/v1/keys/not-a-uuid", headers=headers)
    assert response.status == 400
    response = await receiver.session.post(
        f"{receiver.url}/v1/keys",
        data=b"{not json",
        headers={**headers, "Content-Type": "application/json"},
    )
    assert response.status == 400
    response = await receiver.session.post(
        f"{receiver.url}/v1/keys", data=b"scopes=read", headers=headers
    )
    assert response.status == 400


async def test_an_admin_key_sets_a_price_that_prices_the_next_spans(
    receiver: RunningReceiver,
) -> None:
    headers = await admin_headers(receiver)
    created = await receiver.session.post(
        f"{receiver.url}/v1/prices",
        json={
            "model_pattern": "acme-private-*",
            "input_per_mtok": "2.00",
            "output_per_mtok": "8.00",
            "valid_from": "2020-01-01T00:00:00Z",
        },
        headers=headers,
    )
    assert created.status == 201
    price = await created.json()
    assert price["input_per_mtok"] == "2" and price["cache_read_per_mtok"] is None

    # 1,000 input and 1,000 output tokens of a model genai-prices does not know.
    spans = llm_spans(1, model="acme-private-7b", input_tokens=1000)
    response = await receiver.session.post(
        receiver.traces_url,
        data=protobuf_body(spans),
        headers=receiver.acme.ingest_headers(**{"Content-Type": PROTOBUF}),
    )
    assert response.status == 200
    [row] = [r for r in await receiver.rows(receiver.acme) if r["model"] == "acme-private-7b"]
    output_tokens = row["output_tokens"]
    assert row["cost"] == (Decimal(1000) * 2 + Decimal(output_tokens) * 8) / 1_000_000

    listed = await (await receiver.session.get(f"{receiver.url}/v1/prices", headers=headers)).json()
    assert [p["id"] for p in listed["prices"]] == [price["id"]]
    deleted = await receiver.session.delete(
        f"{receiver.url}/v1/prices/{price['id']}", headers=headers
    )
    assert deleted.status == 204
    again = await receiver.session.delete(
        f"{receiver.url}/v1/prices/{price['id']}", headers=headers
    )
    assert again.status == 404
    # Another organization's admin never sees it.
    globex = await admin_headers(receiver, "globex")
    theirs = await (await receiver.session.get(f"{receiver.url}/v1/prices", headers=globex)).json()
    assert theirs == {"prices": []}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"input_per_mtok": "1", "output_per_mtok": "1"}, "'model_pattern'"),
        ({"model_pattern": "m", "output_per_mtok": "1"}, "'input_per_mtok' is required"),
        ({"model_pattern": "m", "input_per_mtok": 1.5, "output_per_mtok": "1"}, "decimal string"),
        ({"model_pattern": "m", "input_per_mtok": "-1", "output_per_mtok": "1"}, "decimal"),
        ({"model_pattern": "m", "input_per_mtok": "1e3", "output_per_mtok": "1"}, "decimal"),
        ({"model_pattern": "m", "input_per_mtok": "NaN", "output_per_mtok": "1"}, "decimal"),
        (
            {
                "model_pattern": "m",
                "input_per_mtok": "1",
                "output_per_mtok": "1",
                "valid_from": "x",
            },
            "RFC 3339",
        ),
        ({"model_pattern": "m", "input_per_mtok": "1", "output_per_mtok": "1", "x": 1}, "'x'"),
    ],
)
async def test_bad_price_requests_get_a_clear_400(
    receiver: RunningReceiver, body: object, message: str
) -> None:
    headers = await admin_headers(receiver)
    response = await receiver.session.post(f"{receiver.url}/v1/prices", json=body, headers=headers)
    assert response.status == 400
    assert message in (await response.json())["error"]["message"]


async def test_the_documented_price_bound_is_the_one_the_server_applies(
    receiver: RunningReceiver,
) -> None:
    document = build_document()
    field = document["components"]["schemas"]["NewPriceRequest"]["properties"]["input_per_mtok"]
    assert "under 10000000" in field["description"]
    headers = await admin_headers(receiver)
    for amount, status in (("9999999.5", 201), ("10000000", 400)):
        response = await receiver.session.post(
            f"{receiver.url}/v1/prices",
            json={"model_pattern": "m", "input_per_mtok": amount, "output_per_mtok": "1"},
            headers=headers,
        )
        assert response.status == status, await response.text()
        assert (re.fullmatch(field["pattern"], amount) is not None) == (status == 201)
