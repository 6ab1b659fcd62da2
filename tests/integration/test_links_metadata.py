"""Link previews through the api: filled from a local HTML page in allow_private mode, refused
(the link stays untitled and the server is never contacted) in production mode."""

from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from api.links import METADATA
from tests.conftest import ApiHarness, _make_principal

pytestmark = pytest.mark.integration

PAGE = """<!doctype html><html><head><title>Local page</title>
<meta name="description" content="Served on loopback">
<meta property="og:image" content="/card.png"><link rel="icon" href="/fav.png"></head></html>"""


@pytest_asyncio.fixture
async def site():
    hits: list[str] = []

    async def page(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text=PAGE, content_type="text/html")

    async def hop(request: web.Request) -> web.Response:
        hits.append(request.path)
        raise web.HTTPFound("/page")

    app = web.Application()
    app.router.add_get("/page", page)
    app.router.add_get("/hop", hop)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}", hits
    await server.close()


async def _harness(make_settings, database_url, broker, mode: str):
    settings = make_settings(database_url=database_url, kafka_broker=broker.url, metadata_fetch=mode)
    who = await _make_principal(database_url)
    client = TestClient(TestServer(create_app(settings), host="127.0.0.1"))
    await client.start_server()
    return ApiHarness(client, settings, who["api_key"], who["user_id"], who["workspace_id"])


@pytest.mark.parametrize("mode", ["allow_private", "production"])
async def test_metadata_from_local_page(
    make_settings, database_url, broker, redis_client, site, mode
) -> None:
    base, hits = site
    api = await _harness(make_settings, database_url, broker, mode)
    try:
        resp = await api.client.post("/api/v1/links", json={"url": f"{base}/hop"}, headers=api.auth)
        link = await resp.json()
        await asyncio.wait_for(api.client.app[METADATA].drain(), 10)
        got = await (await api.client.get(f"/api/v1/links/{link['id']}", headers=api.auth)).json()
    finally:
        await api.client.close()
    if mode == "allow_private":
        assert hits == ["/hop", "/page"]
        assert got["title"] == "Local page" and got["description"] == "Served on loopback"
        assert got["og_image_url"] == f"{base}/card.png" and got["favicon_url"] == f"{base}/fav.png"
    else:
        assert hits == []
        assert got["title"] is None and got["favicon_url"] is None


async def test_metadata_never_overwrites_user_title(
    make_settings, database_url, broker, redis_client, site
) -> None:
    base, _ = site
    api = await _harness(make_settings, database_url, broker, "allow_private")
    try:
        resp = await api.client.post(
            "/api/v1/links", json={"url": f"{base}/page", "title": "Mine"}, headers=api.auth
        )
        link = await resp.json()
        await asyncio.wait_for(api.client.app[METADATA].drain(), 10)
        got = await (await api.client.get(f"/api/v1/links/{link['id']}", headers=api.auth)).json()
    finally:
        await api.client.close()
    assert got["title"] == "Mine" and got["description"] == "Served on loopback"
