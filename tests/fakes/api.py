"""Serve the api in-process with extra settings (the conftest `api` fixture uses the defaults)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import ApiHarness, _make_principal


@contextlib.asynccontextmanager
async def serve_settings(settings: Any) -> AsyncIterator[ApiHarness]:
    """The api for exactly these settings, with a fresh principal (user, workspace, API key)."""
    from api.app import create_app

    who = await _make_principal(settings.database_url)
    client = TestClient(TestServer(create_app(settings), host="127.0.0.1"))
    await client.start_server()
    try:
        yield ApiHarness(client, settings, who["api_key"], who["user_id"], who["workspace_id"])
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def serve_api(
    make_settings: Any, database_url: str, broker: Any, **overrides: Any
) -> AsyncIterator[ApiHarness]:
    settings = make_settings(database_url=database_url, kafka_broker=broker.url, **overrides)
    async with serve_settings(settings) as harness:
        yield harness
