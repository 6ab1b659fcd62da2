"""Rate limits through the real api and Redis: per IP per endpoint and per API key."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from engine.accounts.repository import create_api_key, create_user, create_workspace

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture
async def client(make_settings: Any, database_url: str, broker: Any, redis_client: Any):
    settings = make_settings(database_url=database_url, kafka_broker=broker.url, rate_limit_auth_per_minute=3)
    c = TestClient(TestServer(create_app(settings), host="127.0.0.1"))
    await c.start_server()
    try:
        yield c
    finally:
        await c.close()


async def test_login_is_limited_per_ip_with_headers(client) -> None:
    body = {"email": "x@example.test", "password": "whatever-123"}
    statuses = []
    for _ in range(4):
        resp = await client.post("/api/v1/auth/login", json=body)
        statuses.append(resp.status)
    assert statuses == [401, 401, 401, 429]
    assert resp.headers["RateLimit-Limit"] == "3" and resp.headers["RateLimit-Remaining"] == "0"
    assert 1 <= int(resp.headers["Retry-After"]) <= 20
    assert (await resp.json())["error"]["code"] == "rate_limited"
    # Another endpoint has its own bucket.
    resp = await client.post("/api/v1/auth/password/forgot", json={"email": "x@example.test"})
    assert resp.status == 202 and resp.headers["RateLimit-Remaining"] == "2"


async def test_api_key_override_limit(client, database_url) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        user = await create_user(conn, "k@example.test", "!unusable", "K")
        ws = await create_workspace(conn, user, "K")
        _, key = await create_api_key(
            conn, user_id=user, workspace_id=ws, name="k", scopes=["links:read"], rate_limit=2
        )
    finally:
        await conn.close()
    headers = {"Authorization": f"Bearer {key.plaintext}"}
    missing = "/api/v1/links/00000000-0000-0000-0000-000000000000"
    first = await client.get(missing, headers=headers)
    assert first.status == 404 and first.headers["RateLimit-Limit"] == "2"
    assert first.headers["RateLimit-Remaining"] == "1"
    assert (await client.get(missing, headers=headers)).status == 404
    resp = await client.get(missing, headers=headers)
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
