"""Key management over HTTP with an ``admin`` key: its own organization's keys only."""

from __future__ import annotations

import asyncio

import pytest

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
