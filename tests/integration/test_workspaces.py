"""Workspaces, members, invitations, transfer, API keys (with batched usage) and the audit log."""

from __future__ import annotations

import asyncpg
import pytest

from api.ratelimit import USAGE
from tests.integration.helpers import bearer, join_workspace, outbox_tokens, signup

# The free plan allows no custom domain and no second member; quotas: test_quotas.py.
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("business_plan")]


async def test_workspace_create_update_delete(api) -> None:
    owner = await signup(api)
    h = bearer(owner["access_token"])
    resp = await api.client.post("/api/v1/workspaces", json={"name": "Team", "slug": "team-x"}, headers=h)
    assert resp.status == 201 and (await resp.json())["role"] == "owner"
    ws = (await resp.json())["id"]
    resp = await api.client.post("/api/v1/workspaces", json={"name": "T2", "slug": "team-x"}, headers=h)
    assert resp.status == 409 and (await resp.json())["error"]["field"] == "slug"
    resp = await api.client.post("/api/v1/workspaces", json={"name": "T2", "slug": "Bad Slug"}, headers=h)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "slug"
    items = (await (await api.client.get("/api/v1/workspaces", headers=h)).json())["data"]
    assert [i["id"] for i in items] == [owner["workspace_id"], ws]
    body = {"name": "Renamed", "settings": {"default_domain": "go.example", "x": 1}}
    resp = await api.client.patch(f"/api/v1/workspaces/{ws}", json=body, headers=h)
    assert resp.status == 200 and (await resp.json())["settings"] == {"default_domain": "go.example", "x": 1}
    resp = await api.client.patch(f"/api/v1/workspaces/{ws}", json={"settings": {"x": None}}, headers=h)
    assert (await resp.json())["settings"] == {"default_domain": "go.example"}
    resp = await api.client.patch(f"/api/v1/workspaces/{ws}", json={"name": None}, headers=h)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "name"
    assert (await api.client.delete(f"/api/v1/workspaces/{ws}", headers=h)).status == 204
    assert (await api.client.get(f"/api/v1/workspaces/{ws}", headers=h)).status == 404


async def test_invitations_roles_transfer_and_last_owner(api) -> None:
    owner = await signup(api)
    ws = owner["workspace_id"]
    oh = bearer(owner["access_token"])
    member = await join_workspace(api, owner, "member")
    mh = bearer(member["access_token"], ws)
    members = (await (await api.client.get(f"/api/v1/workspaces/{ws}/members", headers=mh)).json())["data"]
    assert {m["role"] for m in members} == {"owner", "member"}
    # A member may not invite or change roles; invitations cannot grant ownership.
    resp = await api.client.post(
        f"/api/v1/workspaces/{ws}/invitations", json={"email": "z@example.test"}, headers=mh
    )
    assert resp.status == 403
    resp = await api.client.post(
        f"/api/v1/workspaces/{ws}/invitations", json={"email": "z@example.test", "role": "owner"}, headers=oh
    )
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "role"
    mid = member["user"]["id"]
    assert (
        await api.client.patch(f"/api/v1/workspaces/{ws}/members/{mid}", json={"role": "owner"}, headers=oh)
    ).status == 403
    assert (
        await api.client.patch(f"/api/v1/workspaces/{ws}/members/{mid}", json={"role": "admin"}, headers=oh)
    ).status == 204
    # The owner cannot leave; ownership moves by transfer, and then they can.
    oid = owner["user"]["id"]
    assert (await api.client.delete(f"/api/v1/workspaces/{ws}/members/{oid}", headers=oh)).status == 409
    assert (
        await api.client.post(f"/api/v1/workspaces/{ws}/transfer", json={"user_id": mid}, headers=mh)
    ).status == 403
    assert (
        await api.client.post(f"/api/v1/workspaces/{ws}/transfer", json={"user_id": mid}, headers=oh)
    ).status == 204
    members = {
        m["user_id"]: m["role"]
        for m in (await (await api.client.get(f"/api/v1/workspaces/{ws}/members", headers=mh)).json())["data"]
    }
    assert members == {oid: "admin", mid: "owner"}
    assert (await api.client.delete(f"/api/v1/workspaces/{ws}/members/{oid}", headers=oh)).status == 204
    assert (await api.client.get(f"/api/v1/workspaces/{ws}", headers=oh)).status == 404
    # An invitation token works once and only for the invited email.
    resp = await api.client.post(
        f"/api/v1/workspaces/{ws}/invitations", json={"email": "later@example.test"}, headers=mh
    )
    token = outbox_tokens(api, "later@example.test")[-1]
    stranger = await signup(api)
    resp = await api.client.post(
        "/api/v1/invitations/accept", json={"token": token}, headers=bearer(stranger["access_token"])
    )
    assert resp.status == 404 and (await resp.json())["error"]["field"] == "token"


async def test_api_key_crud_usage_and_revocation(api) -> None:
    owner = await signup(api)
    ws = owner["workspace_id"]
    h = bearer(owner["access_token"])
    resp = await api.client.post(
        f"/api/v1/workspaces/{ws}/api-keys", json={"name": "ci", "scopes": ["links:write", "nope"]}, headers=h
    )
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "scopes"
    resp = await api.client.post(
        f"/api/v1/workspaces/{ws}/api-keys",
        json={"name": "ci", "scopes": ["links:read"], "rate_limit": 0},
        headers=h,
    )
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "rate_limit"
    resp = await api.client.post(
        f"/api/v1/workspaces/{ws}/api-keys", json={"name": "ci", "scopes": ["links:write"]}, headers=h
    )
    assert resp.status == 201
    created = await resp.json()
    plaintext, key_id = created["key"], created["id"]
    assert plaintext.startswith(created["prefix"])
    listed = (await (await api.client.get(f"/api/v1/workspaces/{ws}/api-keys", headers=h)).json())["data"]
    assert [k["id"] for k in listed] == [key_id] and "key" not in listed[0]
    kh = bearer(plaintext)
    for _ in range(3):
        assert (
            await api.client.post("/api/v1/links", json={"url": "https://k.example"}, headers=kh)
        ).status == 201
    # A key cannot manage keys (session-only action) even with scopes.
    assert (await api.client.get(f"/api/v1/workspaces/{ws}/api-keys", headers=kh)).status == 403
    # Usage is counted in memory and written by the periodic flush, not per request.
    conn = await asyncpg.connect(api.settings.database_url)
    try:
        assert await conn.fetchval("SELECT request_count FROM api_keys WHERE id = $1", key_id) == 0
        await api.client.server.app[USAGE].flush()
        row = await conn.fetchrow("SELECT request_count, last_used_at FROM api_keys WHERE id = $1", key_id)
    finally:
        await conn.close()
    assert row["request_count"] == 4 and row["last_used_at"] is not None
    resp = await api.client.patch(
        f"/api/v1/workspaces/{ws}/api-keys/{key_id}", json={"scopes": ["links:read"]}, headers=h
    )
    assert resp.status == 200 and (await resp.json())["scopes"] == ["links:read"]
    assert (
        await api.client.post("/api/v1/links", json={"url": "https://k.example"}, headers=kh)
    ).status == 403
    assert (await api.client.delete(f"/api/v1/workspaces/{ws}/api-keys/{key_id}", headers=h)).status == 204
    assert (
        await api.client.post("/api/v1/links", json={"url": "https://k.example"}, headers=kh)
    ).status == 401
    assert (await api.client.delete(f"/api/v1/workspaces/{ws}/api-keys/{key_id}", headers=h)).status == 404


async def test_members_see_only_their_own_keys(api) -> None:
    owner = await signup(api)
    ws = owner["workspace_id"]
    viewer = await join_workspace(api, owner, "viewer")
    vh = bearer(viewer["access_token"], ws)
    oh = bearer(owner["access_token"])
    own = await (
        await api.client.post(
            f"/api/v1/workspaces/{ws}/api-keys", json={"name": "o", "scopes": ["links:read"]}, headers=oh
        )
    ).json()
    mine = await (
        await api.client.post(
            f"/api/v1/workspaces/{ws}/api-keys", json={"name": "v", "scopes": ["links:read"]}, headers=vh
        )
    ).json()
    listed = (await (await api.client.get(f"/api/v1/workspaces/{ws}/api-keys", headers=vh)).json())["data"]
    assert [k["id"] for k in listed] == [mine["id"]]
    assert (
        await api.client.delete(f"/api/v1/workspaces/{ws}/api-keys/{own['id']}", headers=vh)
    ).status == 404
    # Admins (and the owner) can revoke anyone's key, e.g. a leaked one.
    assert (
        await api.client.delete(f"/api/v1/workspaces/{ws}/api-keys/{mine['id']}", headers=oh)
    ).status == 204


async def test_audit_log_records_mutations_and_paginates(api) -> None:
    owner = await signup(api)
    ws = owner["workspace_id"]
    h = bearer(owner["access_token"])
    for i in range(3):
        await api.client.patch(
            f"/api/v1/workspaces/{ws}", json={"name": f"n{i}"}, headers={**h, "User-Agent": "audit-test"}
        )
    viewer = await join_workspace(api, owner, "viewer")
    assert (
        await api.client.get("/api/v1/audit-logs", headers=bearer(viewer["access_token"], ws))
    ).status == 403
    page = await (
        await api.client.get("/api/v1/audit-logs?limit=2&action=workspace.updated", headers=h)
    ).json()
    assert [e["new_values"]["name"] for e in page["data"]] == ["n2", "n1"]
    assert page["data"][0]["user_agent"] == "audit-test" and page["data"][0]["ip_address"] == "127.0.0.1"
    assert page["data"][0]["old_values"]["name"] == "n1"
    rest = await (
        await api.client.get(
            f"/api/v1/audit-logs?limit=2&action=workspace.updated&cursor={page['next_cursor']}", headers=h
        )
    ).json()
    assert [e["new_values"]["name"] for e in rest["data"]] == ["n0"] and rest["next_cursor"] is None
    actions = {
        e["action"] for e in (await (await api.client.get("/api/v1/audit-logs", headers=h)).json())["data"]
    }
    assert {"member.invited", "member.joined", "workspace.updated"} <= actions
    resp = await api.client.get("/api/v1/audit-logs?cursor=garbage", headers=h)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "cursor"
    resp = await api.client.get("/api/v1/audit-logs?limit=1000", headers=h)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "limit"
