"""Link management through the api: create, bulk, read, PATCH, delete/restore, the outbox and audit."""

from __future__ import annotations

import asyncpg
import pytest

from engine.auth.passwords import verify_password

pytestmark = pytest.mark.integration


async def _outbox(api) -> list[dict]:
    conn = await asyncpg.connect(api.settings.database_url)
    try:
        rows = await conn.fetch("SELECT key, payload FROM outbox ORDER BY id")
    finally:
        await conn.close()
    import orjson

    return [orjson.loads(r["payload"]) | {"key": r["key"]} for r in rows]


async def _fetchval(api, sql: str, *args):
    conn = await asyncpg.connect(api.settings.database_url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def _create(api, **body) -> dict:
    resp = await api.client.post(
        "/api/v1/links", json={"url": "https://example.test/x", **body}, headers=api.auth
    )
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def test_create_with_all_fields(api) -> None:
    link = await _create(
        api,
        short_code="full-1",
        title="Full",
        description="Every field",
        max_clicks=10,
        expires_at="2999-01-01T00:00:00Z",
        password="s3cret-pass",
        redirect_type=301,
        forward_query=True,
        is_active=False,
        utm_source="news",
        utm_campaign="spring",
        tags=["alpha", "beta", "alpha"],
    )
    assert link["short_code"] == "full-1" and link["has_password"] is True and link["is_active"] is False
    assert link["utm_source"] == "news" and link["utm_medium"] is None and link["redirect_type"] == 301
    assert sorted(t["name"] for t in link["tags"]) == ["alpha", "beta"]
    assert "password_hash" not in link
    stored = await _fetchval(api, "SELECT password_hash FROM links WHERE id = $1", link["id"])
    assert stored.startswith("$argon2id$") and verify_password(stored, "s3cret-pass")
    events = await _outbox(api)
    assert (
        events[-1]["event"] == "created"
        and events[-1]["short_code"] == "full-1"
        and events[-1]["domain_id"] == ""
    )
    assert await _fetchval(api, "SELECT count(*) FROM audit_logs WHERE action = 'link.created'") == 1


async def test_generated_codes_use_the_unambiguous_alphabet(api) -> None:
    codes = {(await _create(api))["short_code"] for _ in range(5)}
    assert len(codes) == 5
    assert all(len(c) >= 7 and not set(c) & set("0O1lI") for c in codes)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "https://x.example", "password": "short"}, "password"),
        ({"url": "https://x.example", "tags": ["ok", ""]}, "tags[1]"),
        ({"url": "https://x.example", "utm_source": "x" * 256}, "utm_source"),
        ({"url": "https://x.example", "domain_id": "not-a-uuid"}, "domain_id"),
        ({"url": "https://x.example", "domain_id": "7d0c6f7e-2a3c-4a8e-9a55-0c9d4d8f1b11"}, "domain_id"),
        ({"url": "https://x.example", "description": 5}, "description"),
        ({"url": "https://x.example", "is_active": "maybe"}, "is_active"),
    ],
)
async def test_create_validation_names_the_field(api, body, field) -> None:
    resp = await api.client.post("/api/v1/links", json=body, headers=api.auth)
    assert resp.status == 422, await resp.text()
    assert (await resp.json())["error"]["field"] == field


async def test_patch_fields_password_and_code_change(api) -> None:
    link = await _create(api, short_code="old-code", password="first-pass")
    url = f"/api/v1/links/{link['id']}"
    resp = await api.client.patch(
        url,
        json={
            "url": "https://example.test/new",
            "title": "T",
            "max_clicks": 5,
            "redirect_type": 307,
            "forward_query": True,
            "utm_medium": "email",
            "short_code": "new-code",
            "tags": ["x"],
        },
        headers=api.auth,
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert (body["url"], body["title"], body["max_clicks"], body["redirect_type"], body["short_code"]) == (
        "https://example.test/new",
        "T",
        5,
        307,
        "new-code",
    )
    assert body["utm_medium"] == "email" and [t["name"] for t in body["tags"]] == ["x"]
    event = (await _outbox(api))[-1]
    assert event["event"] == "updated" and event["short_code"] == "new-code"
    assert event["old_short_code"] == "old-code" and event["old_domain_id"] == ""
    # Nullable fields clear with null; password null removes the password.
    resp = await api.client.patch(
        url, json={"title": None, "max_clicks": None, "password": None}, headers=api.auth
    )
    body = await resp.json()
    assert body["title"] is None and body["max_clicks"] is None and body["has_password"] is False
    assert await _fetchval(api, "SELECT password_hash FROM links WHERE id = $1", link["id"]) is None
    resp = await api.client.patch(url, json={"password": "another-pass"}, headers=api.auth)
    assert (await resp.json())["has_password"] is True
    assert "old_short_code" not in (await _outbox(api))[-1]
    # The old code no longer redirects; the new one does.
    assert (await api.client.get("/old-code", allow_redirects=False)).status == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": None}, "url"),
        ({"url": "ftp://x"}, "url"),
        ({"short_code": "a b"}, "short_code"),
        ({"redirect_type": 303}, "redirect_type"),
        ({"expires_at": "2000-01-01T00:00:00Z"}, "expires_at"),
        ({"max_clicks": 0}, "max_clicks"),
        ({"password": "short"}, "password"),
        ({"unknown": 1}, "unknown"),
        ({}, "body"),
    ],
)
async def test_patch_validation_names_the_field(api, body, field) -> None:
    link = await _create(api)
    resp = await api.client.patch(f"/api/v1/links/{link['id']}", json=body, headers=api.auth)
    assert resp.status == 422, await resp.text()
    assert (await resp.json())["error"]["field"] == field


async def test_patch_to_taken_code_conflicts(api) -> None:
    await _create(api, short_code="taken-1")
    link = await _create(api)
    resp = await api.client.patch(
        f"/api/v1/links/{link['id']}", json={"short_code": "taken-1"}, headers=api.auth
    )
    assert resp.status == 409 and (await resp.json())["error"]["field"] == "short_code"


async def test_soft_delete_and_restore(api) -> None:
    link = await _create(api, short_code="trash-me")
    url = f"/api/v1/links/{link['id']}"
    assert (await api.client.delete(url, headers=api.auth)).status == 204
    assert (await api.client.get(url, headers=api.auth)).status == 404
    assert (await api.client.delete(url, headers=api.auth)).status == 404
    trash = await (await api.client.get("/api/v1/links?deleted=true", headers=api.auth)).json()
    assert [x["id"] for x in trash["data"]] == [link["id"]]
    resp = await api.client.post(f"{url}/restore", headers=api.auth)
    assert resp.status == 200 and (await resp.json())["deleted_at"] is None
    assert (await api.client.get(url, headers=api.auth)).status == 200
    assert [e["event"] for e in await _outbox(api)] == ["created", "deleted", "restored"]
    # Restoring a live link is a 404 (nothing in the trash); a code reused meanwhile is a conflict.
    assert (await api.client.post(f"{url}/restore", headers=api.auth)).status == 404
    await api.client.delete(url, headers=api.auth)
    await _create(api, short_code="trash-me")
    resp = await api.client.post(f"{url}/restore", headers=api.auth)
    assert resp.status == 409 and (await resp.json())["error"]["field"] == "short_code"


async def test_bulk_create_is_per_item(api) -> None:
    await _create(api, short_code="bulk-taken")
    items = [
        {"url": "https://example.test/1", "short_code": "bulk-1", "tags": ["b"]},
        {"url": "javascript:alert(1)"},
        {"url": "https://example.test/3", "short_code": "bulk-taken"},
        {"url": "https://example.test/4"},
        {"url": "https://example.test/5", "bogus": True},
    ]
    resp = await api.client.post("/api/v1/links/bulk", json={"links": items}, headers=api.auth)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert (body["created"], body["failed"]) == (2, 3)
    statuses = [(r["index"], r["status"], (r.get("error") or {}).get("field")) for r in body["results"]]
    assert statuses == [
        (0, 201, None),
        (1, 422, "links[1].url"),
        (2, 409, "links[2].short_code"),
        (3, 201, None),
        (4, 422, "links[4].bogus"),
    ]
    assert body["results"][0]["link"]["tags"][0]["name"] == "b"


async def test_bulk_limits(api) -> None:
    resp = await api.client.post(
        "/api/v1/links/bulk", json={"links": [{"url": "https://e.test"}] * 101}, headers=api.auth
    )
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "links"
    resp = await api.client.post("/api/v1/links/bulk", json={"links": []}, headers=api.auth)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "links"


async def test_tenant_isolation_for_link_mutations(api) -> None:
    link = await _create(api)
    other = await api.create_principal()
    headers = {"Authorization": f"Bearer {other['api_key']}"}
    url = f"/api/v1/links/{link['id']}"
    assert (await api.client.get(url, headers=headers)).status == 404
    assert (await api.client.patch(url, json={"title": "x"}, headers=headers)).status == 404
    assert (await api.client.delete(url, headers=headers)).status == 404
    await api.client.delete(url, headers=api.auth)
    assert (await api.client.post(f"{url}/restore", headers=headers)).status == 404
    listing = await (await api.client.get("/api/v1/links?deleted=true", headers=headers)).json()
    assert listing["data"] == []


async def test_read_only_key_cannot_write(api) -> None:
    reader = await api.create_principal(scopes=["links:read"])
    headers = {"Authorization": f"Bearer {reader['api_key']}"}
    assert (
        await api.client.post("/api/v1/links", json={"url": "https://e.test"}, headers=headers)
    ).status == 403
    assert (await api.client.get("/api/v1/links", headers=headers)).status == 200
