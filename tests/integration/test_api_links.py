"""The links slice through the real api: validation, auth, tenant isolation."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


async def test_create_and_read_link(api) -> None:
    resp = await api.client.post("/api/v1/links", json={"url": "https://example.com/a"}, headers=api.auth)
    assert resp.status == 201
    link = await resp.json()
    assert len(link["short_code"]) >= 7 and link["url"] == "https://example.com/a"
    resp = await api.client.get(f"/api/v1/links/{link['id']}", headers=api.auth)
    assert resp.status == 200 and (await resp.json())["short_code"] == link["short_code"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "javascript:alert(1)"}, "url"),
        ({"url": "https://"}, "url"),
        ({}, "url"),
        ({"url": "https://x.example", "short_code": "a b"}, "short_code"),
        ({"url": "https://x.example", "short_code": "api"}, "short_code"),
        ({"url": "https://x.example", "max_clicks": 0}, "max_clicks"),
        ({"url": "https://x.example", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"url": "https://x.example", "redirect_type": 303}, "redirect_type"),
        ({"url": "https://x.example", "bogus": 1}, "bogus"),
    ],
)
async def test_invalid_link_input_names_the_field(api, body, field) -> None:
    resp = await api.client.post("/api/v1/links", json=body, headers=api.auth)
    assert resp.status == 422
    assert (await resp.json())["error"]["field"] == field


async def test_malformed_json_and_missing_auth(api) -> None:
    resp = await api.client.post("/api/v1/links", data=b"{not json", headers=api.auth)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "body"
    resp = await api.client.post("/api/v1/links", json={"url": "https://x.example"})
    assert resp.status == 401
    resp = await api.client.post(
        "/api/v1/links", json={"url": "https://x.example"}, headers={"Authorization": "Bearer lr_garbage"}
    )
    assert resp.status == 401


async def test_taken_custom_code_conflicts(api) -> None:
    body = {"url": "https://x.example", "short_code": "promo-2026"}
    assert (await api.client.post("/api/v1/links", json=body, headers=api.auth)).status == 201
    resp = await api.client.post("/api/v1/links", json=body, headers=api.auth)
    assert resp.status == 409 and (await resp.json())["error"]["field"] == "short_code"


async def test_other_workspace_cannot_read_link(api) -> None:
    link = await (
        await api.client.post("/api/v1/links", json={"url": "https://x.example"}, headers=api.auth)
    ).json()
    other = await api.create_principal()
    headers = {"Authorization": f"Bearer {other['api_key']}"}
    assert (await api.client.get(f"/api/v1/links/{link['id']}", headers=headers)).status == 404
    assert (await api.client.get(f"/api/v1/links/{link['id']}/analytics", headers=headers)).status == 404


async def test_redirect_and_unknown_code(api) -> None:
    link = await (
        await api.client.post("/api/v1/links", json={"url": "https://x.example/p"}, headers=api.auth)
    ).json()
    resp = await api.client.get(f"/{link['short_code']}", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "https://x.example/p"
    assert resp.headers["Cache-Control"] == "private, no-store"
    resp = await api.client.get("/doesnotexist", allow_redirects=False)
    assert resp.status == 404 and "text/html" in resp.headers["Content-Type"]
