"""The redirect front end's non-link pages: `/` (landing page or a custom domain's
default_redirect_url) and the branded HTML 404 for unknown multi-segment paths outside /api/."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(params=["aiohttp", "front"])
def server_kind(request: pytest.FixtureRequest) -> str:
    """Every test here runs against the aiohttp route and against the front (api.front)."""
    return str(request.param)


async def _domain(api, name: str, **columns: Any) -> None:
    values = {"workspace_id": api.workspace_id, "domain": name, "is_verified": True, **columns}
    names = ", ".join(values)
    params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    conn = await asyncpg.connect(api.settings.database_url)
    try:
        await conn.execute(f"INSERT INTO domains ({names}) VALUES ({params})", *values.values())
    finally:
        await conn.close()


async def _get(api, path: str, host: str | None = None) -> Any:
    headers = {"Host": host} if host else {}
    return await api.client.get(path, allow_redirects=False, headers=headers)


async def _assert_branded_404(resp: Any) -> None:
    assert resp.status == 404
    assert resp.headers["Content-Type"].startswith("text/html")
    assert resp.headers["Cache-Control"] == "private, no-store"
    text = await resp.text()
    assert "<title>Link not found · LinkRift</title>" in text


async def test_unknown_multi_segment_paths_get_the_branded_404(api) -> None:
    for path in ("/a/b", "/a/b/c", "/abc/def/", "/healthz/x", "/%FF/x"):
        await _assert_branded_404(await _get(api, path))
    await _assert_branded_404(await api.client.post("/a/b"))
    head = await api.client.head("/a/b")
    assert head.status == 404 and head.headers["Content-Type"].startswith("text/html")
    # /api/ keeps its JSON errors, including the router's 404 and 405.
    resp = await _get(api, "/api/v1/nothing/here")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    resp = await api.client.put("/api/v1/links", headers=api.auth)
    assert resp.status == 405 and (await resp.json())["error"]["code"] == "method_not_allowed"
    # Real routes are untouched.
    resp = await _get(api, "/healthz")
    assert resp.status != 404 and resp.headers["Content-Type"] == "application/json"


async def test_unknown_paths_on_a_custom_domain_use_its_404_url(api) -> None:
    await _domain(api, "go.acme.test", custom_404_url="https://acme.test/missing")
    resp = await _get(api, "/a/b", host="go.acme.test")
    assert resp.status == 302 and resp.headers["Location"] == "https://acme.test/missing"


async def test_unknown_paths_are_rate_limited_like_unknown_codes(
    make_settings, database_url, broker, redis_client, server_kind
) -> None:
    from tests.fakes.api import serve_api

    async with serve_api(make_settings, database_url, broker, server_kind, not_found_rate_limit=3) as api:
        statuses = [(await _get(api, f"/scan/{i}")).status for i in range(5)]
    assert statuses[:3] == [404] * 3 and statuses[-1] == 429


async def test_root_is_a_landing_page_or_the_domains_default_redirect(api) -> None:
    resp = await _get(api, "/")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/html")
    text = await resp.text()
    assert "<title>LinkRift</title>" in text and "LinkRift · LinkRift" not in text
    assert resp.headers["Cache-Control"] == "private, no-store"

    await _domain(api, "go.acme.test", default_redirect_url="https://acme.test/")
    resp = await _get(api, "/", host="go.acme.test")
    assert resp.status == 302 and resp.headers["Location"] == "https://acme.test/"

    await _domain(api, "plain.acme.test")
    resp = await _get(api, "/", host="plain.acme.test")
    assert resp.status == 200 and "LinkRift" in await resp.text()
    assert (await api.client.head("/")).status == 200
