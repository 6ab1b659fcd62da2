"""Connections the worker's agents share, opened once on first use and closed at shutdown."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import redis.asyncio as redis

from engine.clicks.enrich import ClickEnricher
from engine.config import Settings
from engine.db.clickhouse import ClickHouseExecutor, create_clickhouse_client
from engine.db.clickhouse_schema import apply_clickhouse_schema
from engine.db.pool import create_pool
from engine.links.enforcement import LinkLimits
from engine.naming import RedisKeys, Topics
from streams.sinks.clickhouse import ClickHouseSink
from streams.sinks.postgres import PostgresSink
from streams.sinks.realtime import RealtimeMirror

log = logging.getLogger(__name__)


class WorkerResources:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = Topics(settings.namespace)
        self.keys = RedisKeys(settings.namespace)
        self._lock = asyncio.Lock()
        self.started = False
        self.redis: redis.Redis
        self.pg: asyncpg.Pool
        self.clickhouse: ClickHouseExecutor
        self.ch_sink: ClickHouseSink
        self.mirror: RealtimeMirror
        self.pg_sink: PostgresSink
        # Per-link max_clicks knowledge of the click agent; the link-change agent drops entries.
        self.link_limits: dict[str, LinkLimits] = {}
        self.enricher: ClickEnricher

    async def ensure_started(self) -> WorkerResources:
        if self.started:
            return self
        async with self._lock:
            if self.started:
                return self
            self.redis = redis.Redis.from_url(self.settings.redis_url)
            self.pg = await create_pool(self.settings.database_url, min_size=1, max_size=5)
            client = await asyncio.to_thread(create_clickhouse_client, self.settings)
            self.clickhouse = ClickHouseExecutor(client)
            applied = await self.clickhouse.run(apply_clickhouse_schema)
            if applied:
                log.info("clickhouse schema applied versions=%s", applied)
            self.ch_sink = ClickHouseSink(self.clickhouse)
            self.mirror = RealtimeMirror(self.redis, self.keys)
            self.pg_sink = PostgresSink(self.pg)
            self.enricher = ClickEnricher.from_settings(self.settings)
            self.started = True
        return self

    async def close(self) -> None:
        if not self.started:
            return
        self.started = False
        await self.redis.aclose()
        await self.pg.close()
        await asyncio.to_thread(self.clickhouse.close)
