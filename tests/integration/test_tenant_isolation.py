"""Tenant isolation: a user and an API key of workspace A, aimed at every resource of workspace B,
get 404 or 403 every time, and B's data is unchanged afterwards."""

from __future__ import annotations

import asyncpg
import pytest

from tests.integration.helpers import bearer, outbox_tokens, signup

# The free plan allows no custom domain and no second member; quotas: test_quotas.py.
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("business_plan")]


async def test_workspace_a_cannot_reach_workspace_b(api) -> None:
    a, b = await signup(api), await signup(api)
    ah, bh = bearer(a["access_token"]), bearer(b["access_token"])
    ws_a, ws_b = a["workspace_id"], b["workspace_id"]
    # Resources of B: a link, an API key, an invitation, a member, a session.
    link = await (
        await api.client.post("/api/v1/links", json={"url": "https://b.example"}, headers=bh)
    ).json()
    key_b = await (
        await api.client.post(
            f"/api/v1/workspaces/{ws_b}/api-keys", json={"name": "b", "scopes": ["links:read"]}, headers=bh
        )
    ).json()
    inv = await (
        await api.client.post(
            f"/api/v1/workspaces/{ws_b}/invitations", json={"email": "inv@example.test"}, headers=bh
        )
    ).json()
    inv_token = outbox_tokens(api, "inv@example.test")[-1]
    # A's all-scopes key.
    key_a = await (
        await api.client.post(
            f"/api/v1/workspaces/{ws_a}/api-keys",
            json={"name": "a", "scopes": ["workspace:admin", "billing:admin"]},
            headers=ah,
        )
    ).json()
    kh = bearer(key_a["key"])
    uid_b = b["user"]["id"]
    wsb = f"/api/v1/workspaces/{ws_b}"
    wsa = f"/api/v1/workspaces/{ws_a}"
    calls = [
        ("GET", f"/api/v1/links/{link['id']}", None),
        ("GET", f"/api/v1/links/{link['id']}/analytics", None),
        ("GET", wsb, None),
        ("PATCH", wsb, {"name": "pwned"}),
        ("DELETE", wsb, None),
        ("POST", f"{wsb}/transfer", {"user_id": a["user"]["id"]}),
        ("GET", f"{wsb}/members", None),
        ("PATCH", f"{wsb}/members/{uid_b}", {"role": "viewer"}),
        ("DELETE", f"{wsb}/members/{uid_b}", None),
        ("GET", f"{wsb}/invitations", None),
        ("POST", f"{wsb}/invitations", {"email": "x@example.test"}),
        ("DELETE", f"{wsb}/invitations/{inv['id']}", None),
        ("GET", f"{wsb}/api-keys", None),
        ("POST", f"{wsb}/api-keys", {"name": "x", "scopes": ["links:read"]}),
        ("GET", f"{wsb}/api-keys/{key_b['id']}", None),
        ("PATCH", f"{wsb}/api-keys/{key_b['id']}", {"name": "x"}),
        ("DELETE", f"{wsb}/api-keys/{key_b['id']}", None),
        # B's ids through A's own workspace paths.
        ("GET", f"{wsa}/api-keys/{key_b['id']}", None),
        ("PATCH", f"{wsa}/api-keys/{key_b['id']}", {"name": "x"}),
        ("DELETE", f"{wsa}/api-keys/{key_b['id']}", None),
        ("DELETE", f"{wsa}/invitations/{inv['id']}", None),
        ("PATCH", f"{wsa}/members/{uid_b}", {"role": "viewer"}),
        ("DELETE", f"{wsa}/members/{uid_b}", None),
        ("POST", f"{wsa}/transfer", {"user_id": uid_b}),
        # Account-level: B's session, and B's invitation token (addressed to another email).
        ("DELETE", f"/api/v1/sessions/{b['session_id']}", None),
        ("POST", "/api/v1/invitations/accept", {"token": inv_token}),
    ]
    for who, headers in (("user", ah), ("key", kh)):
        for method, path, body in calls:
            resp = await api.client.request(method, path, json=body, headers=headers)
            assert resp.status in (403, 404), f"{who} {method} {path} -> {resp.status}"
            if who == "user" and path.startswith(wsb):
                assert resp.status == 404, f"{method} {path} must not confirm B exists"
    # With X-Workspace-Id pointing at B, a user's token reaches nothing of B either.
    for path in ("/api/v1/audit-logs", f"/api/v1/links/{link['id']}"):
        assert (await api.client.get(path, headers=bearer(a["access_token"], ws_b))).status == 404
    assert (await api.client.get("/api/v1/audit-logs", headers=kh)).status == 200
    # A's own audit log holds nothing of B.
    entries = (await (await api.client.get("/api/v1/audit-logs", headers=ah)).json())["data"]
    assert all(e["resource_id"] not in (key_b["id"], inv["id"], ws_b) for e in entries)
    # B is untouched.
    conn = await asyncpg.connect(api.settings.database_url)
    try:
        ws = await conn.fetchrow("SELECT name, owner_id, deleted_at FROM workspaces WHERE id = $1", ws_b)
        key = await conn.fetchrow("SELECT name, revoked_at FROM api_keys WHERE id = $1", key_b["id"])
        members = await conn.fetch(
            "SELECT user_id, role FROM workspace_members WHERE workspace_id = $1", ws_b
        )
        invitations = await conn.fetchval(
            "SELECT count(*) FROM workspace_invitations WHERE workspace_id = $1", ws_b
        )
        session_live = await conn.fetchval(
            "SELECT NOT is_revoked FROM sessions WHERE id = $1", b["session_id"]
        )
    finally:
        await conn.close()
    assert ws["deleted_at"] is None and ws["name"] != "pwned" and str(ws["owner_id"]) == uid_b
    assert key["name"] == "b" and key["revoked_at"] is None
    assert [(str(m["user_id"]), m["role"]) for m in members] == [(uid_b, "owner")]
    assert invitations == 1 and session_live
