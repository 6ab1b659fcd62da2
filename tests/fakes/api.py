"""Serve the api in-process with extra settings (the conftest `api` fixture uses the defaults)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import ApiHarness, _make_principal


@contextlib.asynccontextmanager
async def serve_settings(settings: Any, server_kind: str = "front") -> AsyncIterator[ApiHarness]:
    """The api for exactly these settings, with a fresh principal (user, workspace, API key);
    `server_kind` as in the conftest fixture of that name."""
    from api.app import create_app
    from tests.fakes.front import make_test_server

    who = await _make_principal(settings.database_url)
    client = TestClient(make_test_server(create_app(settings), server_kind))
    await client.start_server()
    try:
        yield ApiHarness(client, settings, who["api_key"], who["user_id"], who["workspace_id"])
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def serve_api(
    make_settings: Any, database_url: str, broker: Any, server_kind: str = "front", **overrides: Any
) -> AsyncIterator[ApiHarness]:
    settings = make_settings(database_url=database_url, kafka_broker=broker.url, **overrides)
    async with serve_settings(settings, server_kind) as harness:
        yield harness
