"""ClickHouse client factory: chDB in-process for chdb:// URLs, HTTP otherwise, same code after."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from engine.config import Settings

T = TypeVar("T")


def create_clickhouse_client(settings: Settings) -> Client:
    if settings.clickhouse_embedded:
        path = settings.chdb_path
        path.mkdir(parents=True, exist_ok=True)
        return clickhouse_connect.get_client(dsn=f"chdb://{path}")
    parts = urlsplit(settings.clickhouse_url)
    database = parts.path.strip("/") or "default"
    return clickhouse_connect.get_client(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or (8443 if parts.scheme == "https" else 8123),
        username=parts.username or "default",
        password=parts.password or "",
        database=database,
        secure=parts.scheme == "https",
    )


class ClickHouseExecutor:
    """Runs blocking ClickHouse calls on one dedicated thread so the event loop never blocks.

    One thread also serialises access to chDB, whose embedded engine is not meant for
    concurrent use from many threads of one process.
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(self.client, *args, **kwargs))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.client.close()
