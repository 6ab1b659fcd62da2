"""Run named analytics queries: directly on ClickHouse, or through the worker that owns chDB."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import aiohttp
import orjson

from engine.analytics.queries import run_named
from engine.config import Settings
from engine.db.clickhouse import ClickHouseExecutor, create_clickhouse_client
from engine.errors import LinkRiftError, ServiceUnavailable, ValidationFailed
from engine.naming import INTERNAL_TOKEN_HEADER


class AnalyticsClient(Protocol):
    async def run(self, query: str, params: dict[str, Any]) -> dict[str, Any]: ...
    async def close(self) -> None: ...


class DirectAnalytics:
    """Production: the api queries ClickHouse over HTTP itself."""

    def __init__(self, settings: Settings) -> None:
        self.executor = ClickHouseExecutor(create_clickhouse_client(settings))

    async def run(self, query: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self.executor.run(run_named, query, params)
        except LinkRiftError:
            raise
        except Exception as exc:
            raise ServiceUnavailable(f"clickhouse: {type(exc).__name__}") from exc

    async def close(self) -> None:
        await asyncio.to_thread(self.executor.close)


class WorkerAnalytics:
    """Embedded chDB: only the worker may open it, so the api asks the worker by query name."""

    def __init__(self, settings: Settings) -> None:
        self.url = settings.internal_worker_url.rstrip("/") + "/internal/analytics"
        self.token = settings.internal_token
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=30), json_serialize=lambda o: orjson.dumps(o).decode()
        )

    async def run(self, query: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            async with self.session.post(
                self.url, json={"query": query, "params": params}, headers={INTERNAL_TOKEN_HEADER: self.token}
            ) as resp:
                body = await resp.read()
                data: dict[str, Any] = orjson.loads(body) if body else {}
                if resp.status == 200:
                    return data
                error = data.get("error")
                if not isinstance(error, dict):
                    error = {}
                if resp.status in (400, 422):
                    raise ValidationFailed(str(error.get("message", "bad query")), field=error.get("field"))
                raise ServiceUnavailable(f"clickhouse (via worker): HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            raise ServiceUnavailable(f"clickhouse (via worker): {type(exc).__name__}") from exc

    async def close(self) -> None:
        await self.session.close()


def create_analytics_client(settings: Settings) -> AnalyticsClient:
    if settings.clickhouse_embedded and settings.analytics_via_worker:
        return WorkerAnalytics(settings)
    return DirectAnalytics(settings)
