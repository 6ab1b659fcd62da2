"""Plan quotas wired into the api: monthly links (single, bulk, import), custom domains and
members/invitations give 402 naming the plan resource; a higher plan (workspaces.plan) allows more."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.integration.helpers import bearer, outbox_tokens, signup

pytestmark = pytest.mark.integration


async def _set_plan(api, workspace_id: str, plan: str) -> None:
    conn = await asyncpg.connect(api.settings.database_url)
    try:
        await conn.execute("UPDATE workspaces SET plan = $2 WHERE id = $1", workspace_id, plan)
    finally:
        await conn.close()


async def _existing_links(api, count: int) -> None:
    """`count` links created this month in the api principal's workspace (bypassing the api)."""
    conn = await asyncpg.connect(api.settings.database_url)
    try:
        await conn.execute(
            """INSERT INTO links (user_id, workspace_id, url, short_code)
               SELECT $1, $2, 'https://e.example/' || g, 'pre-' || g FROM generate_series(1, $3) g""",
            api.user_id,
            api.workspace_id,
            count,
        )
    finally:
        await conn.close()


async def _link_count(api) -> int:
    conn = await asyncpg.connect(api.settings.database_url)
    try:
        return int(
            await conn.fetchval("SELECT count(*) FROM links WHERE workspace_id = $1", api.workspace_id)
        )
    finally:
        await conn.close()


def _quota_error(body: dict, field: str) -> None:
    assert body["error"]["code"] == "quota_exceeded" and body["error"]["field"] == field, body


async def test_single_create_stops_at_the_free_limit_and_pro_allows_more(api) -> None:
    await _existing_links(api, 49)
    resp = await api.client.post("/api/v1/links", json={"url": "https://e.example/50"}, headers=api.auth)
    assert resp.status == 201, await resp.text()
    resp = await api.client.post("/api/v1/links", json={"url": "https://e.example/51"}, headers=api.auth)
    assert resp.status == 402
    _quota_error(await resp.json(), "links_per_month")
    # Deleting does not give the quota back: creating is what the plan counts.
    link_id = (await (await api.client.get("/api/v1/links?limit=1", headers=api.auth)).json())["data"][0][
        "id"
    ]
    assert (await api.client.delete(f"/api/v1/links/{link_id}", headers=api.auth)).status == 204
    resp = await api.client.post("/api/v1/links", json={"url": "https://e.example/51"}, headers=api.auth)
    assert resp.status == 402
    await _set_plan(api, api.workspace_id, "pro")
    resp = await api.client.post("/api/v1/links", json={"url": "https://e.example/51"}, headers=api.auth)
    assert resp.status == 201
    assert await _link_count(api) == 51


async def test_concurrent_creates_never_exceed_the_limit(api) -> None:
    await _existing_links(api, 45)

    async def create(i: int) -> int:
        resp = await api.client.post(
            "/api/v1/links", json={"url": f"https://e.example/c{i}"}, headers=api.auth
        )
        return resp.status

    statuses = await asyncio.gather(*(create(i) for i in range(10)))
    assert sorted(statuses) == [201] * 5 + [402] * 5
    assert await _link_count(api) == 50


async def test_bulk_reports_quota_per_item(api) -> None:
    await _existing_links(api, 48)
    items = [{"url": f"https://e.example/b{i}"} for i in range(4)]
    resp = await api.client.post("/api/v1/links/bulk", json={"links": items}, headers=api.auth)
    assert resp.status == 200
    body = await resp.json()
    assert (body["created"], body["failed"]) == (2, 2)
    assert [r["status"] for r in body["results"]] == [201, 201, 402, 402]
    for result in body["results"][2:]:
        _quota_error(result, "links_per_month")
    await _set_plan(api, api.workspace_id, "business")
    resp = await api.client.post("/api/v1/links/bulk", json={"links": items}, headers=api.auth)
    assert (await resp.json())["created"] == 4


async def test_import_must_fit_the_remaining_quota(api) -> None:
    await _existing_links(api, 48)
    headers = {**api.auth, "Content-Type": "text/csv"}
    three = "url\nhttps://i.example/1\nhttps://i.example/2\nhttps://i.example/3\n"
    resp = await api.client.post("/api/v1/links/import", data=three.encode(), headers=headers)
    assert resp.status == 402
    _quota_error(await resp.json(), "links_per_month")
    assert await _link_count(api) == 48  # nothing written
    two = "url\nhttps://i.example/1\nhttps://i.example/2\n"
    resp = await api.client.post("/api/v1/links/import", data=two.encode(), headers=headers)
    assert resp.status == 200 and (await resp.json())["imported"] == 2
    await _set_plan(api, api.workspace_id, "pro")
    resp = await api.client.post("/api/v1/links/import", data=three.encode(), headers=headers)
    assert resp.status == 200 and (await resp.json())["imported"] == 3


async def test_custom_domains_per_plan(api) -> None:
    async def add(name: str) -> tuple[int, dict]:
        resp = await api.client.post("/api/v1/domains", json={"domain": name}, headers=api.auth)
        return resp.status, await resp.json()

    status, body = await add("go.acme-corp.com")
    assert status == 402
    _quota_error(body, "custom_domains")
    await _set_plan(api, api.workspace_id, "pro")  # 3 domains
    ids = []
    for i in range(3):
        status, body = await add(f"l{i}.acme-corp.com")
        assert status == 201, body
        ids.append(body["id"])
    status, body = await add("l3.acme-corp.com")
    assert status == 402
    _quota_error(body, "custom_domains")
    # A deleted domain frees its slot.
    assert (await api.client.delete(f"/api/v1/domains/{ids[0]}", headers=api.auth)).status == 204
    assert (await add("l3.acme-corp.com"))[0] == 201


async def test_members_and_invitations_per_plan(api) -> None:
    owner = await signup(api)
    ws, headers = owner["workspace_id"], bearer(owner["access_token"])

    async def invite(email: str) -> tuple[int, dict]:
        resp = await api.client.post(
            f"/api/v1/workspaces/{ws}/invitations", json={"email": email, "role": "member"}, headers=headers
        )
        return resp.status, await resp.json()

    status, body = await invite("first@example.test")
    assert status == 402  # free: the owner is the only member
    _quota_error(body, "members")
    await _set_plan(api, ws, "pro")  # 5 members: the owner plus four seats, pending invitations count
    invitee = await signup(api)
    assert (await invite(invitee["email"]))[0] == 201
    for i in range(3):
        assert (await invite(f"m{i}@example.test"))[0] == 201
    status, body = await invite("m3@example.test")
    assert status == 402
    _quota_error(body, "members")
    # Joining counts members: after a downgrade the pending invitation cannot be accepted.
    await _set_plan(api, ws, "free")
    token = outbox_tokens(api, invitee["email"])[-1]
    accept = {"token": token}
    resp = await api.client.post(
        "/api/v1/invitations/accept", json=accept, headers=bearer(invitee["access_token"])
    )
    assert resp.status == 402
    _quota_error(await resp.json(), "members")
    await _set_plan(api, ws, "pro")
    resp = await api.client.post(
        "/api/v1/invitations/accept", json=accept, headers=bearer(invitee["access_token"])
    )
    assert resp.status == 200 and (await resp.json())["workspace_id"] == ws
