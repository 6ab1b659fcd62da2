"""Counters the api buffers in memory and adds to PostgreSQL in one batched UPDATE per interval.

Used for qr_codes.scan_count and bio_page_links.click_count, so a redirect never waits on a
write. A crash loses at most one interval of increments; the click events themselves go
through Kafka and ClickHouse, which stay the exact record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

import asyncpg
from aiohttp import web

from api.state import PG, SETTINGS

log = logging.getLogger(__name__)
K = TypeVar("K", bound=Hashable)
Flush = Callable[[asyncpg.Connection, dict[Any, int]], Awaitable[None]]


class CounterBuffer(Generic[K]):
    def __init__(self, name: str, flush: Flush) -> None:
        self.name = name
        self._flush = flush
        self._pending: Counter[K] = Counter()

    def add(self, key: K, n: int = 1) -> None:
        self._pending[key] += n

    async def flush(self, pool: asyncpg.Pool) -> None:
        if not self._pending:
            return
        batch, self._pending = dict(self._pending), Counter()
        try:
            async with pool.acquire() as conn:
                await self._flush(conn, batch)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("counter flush failed counter=%s keys=%d error=%s", self.name, len(batch), exc)
            self._pending.update(batch)


def run_periodically(
    key: web.AppKey[CounterBuffer[Any]],
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup_ctx that flushes the app's buffer every counter_flush_seconds and at shutdown."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        buffer = app[key]

        async def loop() -> None:
            while True:
                await asyncio.sleep(app[SETTINGS].counter_flush_seconds)
                await buffer.flush(app[PG])

        task = asyncio.create_task(loop(), name=f"flush-{buffer.name}")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await buffer.flush(app[PG])

    return ctx
