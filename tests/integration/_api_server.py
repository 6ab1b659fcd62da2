"""Serve the api in-process with chosen settings (for tests that need settings the `api` fixture lacks)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from engine.config import Settings
from tests.conftest import ApiHarness, _make_principal


@contextlib.asynccontextmanager
async def serve_api(settings: Settings) -> AsyncIterator[ApiHarness]:
    who = await _make_principal(settings.database_url)
    client = TestClient(TestServer(create_app(settings), host="127.0.0.1"))
    await client.start_server()
    try:
        yield ApiHarness(client, settings, who["api_key"], who["user_id"], who["workspace_id"])
    finally:
        await client.close()
