"""Shared fixtures: real PostgreSQL, Redis, tansu and chDB, isolated per test.

Each test gets its own PostgreSQL database (cloned from a migrated template, so it costs a
`CREATE DATABASE ... TEMPLATE`), its own namespace (Redis key prefix, Kafka topic names and Faust
app id) and its own chDB directory. One tansu broker serves the whole session.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from engine.config import Settings, load_settings
from tests.fakes.webhook_receiver import WebhookReceiver, serve_receiver

PG_SERVER = os.environ.get("LINKRIFT_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("LINKRIFT_TEST_REDIS", "redis://127.0.0.1:6379/0")
_TEMPLATE = f"lr_tmpl_{uuid.uuid4().hex[:10]}"


def pg_url(database: str) -> str:
    return f"{PG_SERVER}/{database}"


async def _admin() -> asyncpg.Connection:
    return await asyncpg.connect(pg_url("postgres"))


@pytest.fixture(scope="session")
def template_db() -> Iterator[str]:
    """A migrated database that every test database is cloned from."""
    from engine.db.migrate import Migrator

    async def create() -> None:
        conn = await _admin()
        try:
            await conn.execute(f'CREATE DATABASE "{_TEMPLATE}"')
        finally:
            await conn.close()
        await Migrator(pg_url(_TEMPLATE)).up()

    async def drop() -> None:
        conn = await _admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{_TEMPLATE}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(create())
    yield _TEMPLATE
    asyncio.run(drop())


@pytest.fixture
def database_url(template_db: str) -> Iterator[str]:
    name = f"lr_t_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        conn = await _admin()
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await _admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(create())
    yield pg_url(name)
    asyncio.run(drop())


@pytest_asyncio.fixture
async def business_plan(database_url: str) -> None:
    """Workspaces created in this test's database start on the business plan: the default free
    plan allows no custom domain and no second member. Quota tests set workspaces.plan themselves."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("ALTER TABLE workspaces ALTER COLUMN plan SET DEFAULT 'business'")
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One tansu broker on a free loopback port for the session, stopped by PID at the end."""
    from cli.services import TansuBroker

    tansu = TansuBroker(tmp_path_factory.mktemp("tansu"))
    asyncio.run(tansu.start())
    yield tansu
    tansu.stop()


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_settings(tmp_path: Path, namespace: str) -> Any:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "redis_url": REDIS_URL,
            "clickhouse_url": f"chdb://{tmp_path / 'clickhouse'}",
            "data_dir": tmp_path / "data",
            "namespace": namespace,
            "env": "test",
            "topic_partitions": 4,
            "secret_key": "test-secret-key-" + namespace,
            "internal_token": "internal-" + namespace,
        }
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest_asyncio.fixture
async def redis_client(namespace: str) -> AsyncIterator[Any]:
    """A Redis client; every key this test's namespace wrote is deleted afterwards."""
    import redis.asyncio as redis

    client = redis.Redis.from_url(REDIS_URL)
    yield client
    keys = [k async for k in client.scan_iter(match=f"{namespace}:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


class ApiHarness:
    """An in-process api on 127.0.0.1 with a workspace owner and an all-scopes API key."""

    def __init__(
        self, client: Any, settings: Settings, api_key: str, user_id: str, workspace_id: str
    ) -> None:
        self.client = client
        self.settings = settings
        self.api_key = api_key
        self.user_id = user_id
        self.workspace_id = workspace_id

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    async def create_principal(
        self, *, email: str | None = None, scopes: list[str] | None = None
    ) -> dict[str, str]:
        """Another user with their own workspace and key (for tenant-isolation tests)."""
        return await _make_principal(self.settings.database_url, email=email, scopes=scopes)


async def _make_principal(
    dsn: str, *, email: str | None = None, scopes: list[str] | None = None
) -> dict[str, str]:
    from engine.accounts.repository import create_api_key, create_user, create_workspace
    from engine.auth.api_key_tokens import SCOPES

    conn = await asyncpg.connect(dsn)
    try:
        user_id = await create_user(
            conn, email or f"{uuid.uuid4().hex[:8]}@example.test", "!unusable", "Test User"
        )
        workspace_id = await create_workspace(conn, user_id, "Test workspace")
        _, key = await create_api_key(
            conn, user_id=user_id, workspace_id=workspace_id, name="test", scopes=sorted(scopes or SCOPES)
        )
    finally:
        await conn.close()
    return {"api_key": key.plaintext, "user_id": user_id, "workspace_id": workspace_id}


@pytest.fixture
def server_kind() -> str:
    """How the in-process api is served: "front" (api.front on the port, aiohttp behind it, as
    `linkrift api` does). Redirect test modules parametrize it to also run against "aiohttp"."""
    return "front"


@pytest_asyncio.fixture
async def api(
    make_settings: Any, database_url: str, broker: Any, redis_client: Any, server_kind: str
) -> AsyncIterator[ApiHarness]:
    """The api app served in-process; uses this test's database, namespace and the session broker."""
    from aiohttp.test_utils import TestClient

    import web as web_app
    from api.app import create_app
    from tests.fakes.front import make_test_server

    settings = make_settings(database_url=database_url, kafka_broker=broker.url)
    who = await _make_principal(database_url)
    server = make_test_server(create_app(settings, pages=web_app.setup), server_kind)
    client = TestClient(server)
    await client.start_server()
    try:
        yield ApiHarness(client, settings, who["api_key"], who["user_id"], who["workspace_id"])
    finally:
        await client.close()


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    """A webhook endpoint on 127.0.0.1 (tests.fakes.webhook_receiver.WebhookReceiver)."""
    async with serve_receiver() as rec:
        yield rec
