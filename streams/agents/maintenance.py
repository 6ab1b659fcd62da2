"""Worker housekeeping: `clicks` partitions, link expiry events and consumer-lag metrics."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import faust
from prometheus_client import Counter, Gauge

from engine.db.partitions import drop_old_click_partitions, ensure_click_partitions
from engine.links.enforcement import emit_expired
from streams.resources import WorkerResources

log = logging.getLogger(__name__)

PARTITION_INTERVAL_SECONDS = 3600.0
EXPIRY_INTERVAL_SECONDS = 1.0
LAG_INTERVAL_SECONDS = 2.0
MONTHS_AHEAD = 2

CONSUMER_LAG = Gauge(
    "linkrift_consumer_lag", "Messages not yet committed per partition", ["topic", "partition"]
)
EXPIRED = Counter("linkrift_links_expired_total", "expired events emitted by this worker")
_PG_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def maintain_partitions(res: WorkerResources) -> tuple[list[str], list[str]]:
    async with res.pg.acquire() as conn:
        created = await ensure_click_partitions(conn, MONTHS_AHEAD)
        dropped = await drop_old_click_partitions(conn, res.settings.pg_clicks_retention_days)
    if created or dropped:
        log.info("click_partitions created=%s dropped=%s", created, dropped)
    return created, dropped


def register(app: faust.App, res: WorkerResources) -> None:
    @app.task
    async def click_partitions() -> None:
        """On start, then hourly: partitions two months ahead, past retention dropped."""
        await res.ensure_started()
        while True:
            try:
                await maintain_partitions(res)
            except _PG_ERRORS as exc:
                log.warning("click partition maintenance failed error=%s", exc)
            await asyncio.sleep(PARTITION_INTERVAL_SECONDS)

    @app.timer(EXPIRY_INTERVAL_SECONDS, name="link_expiry")
    async def link_expiry() -> None:
        await res.ensure_started()
        try:
            async with res.pg.acquire() as conn:
                expired = await emit_expired(conn, res.topics.links_changes)
        except _PG_ERRORS as exc:
            log.warning("link expiry failed error=%s", exc)
            return
        if expired:
            EXPIRED.inc(len(expired))
            log.info("links_expired count=%d", len(expired))

    @app.timer(LAG_INTERVAL_SECONDS, name="consumer_lag")
    async def consumer_lag() -> None:
        consumer = app.consumer
        for tp in consumer.assignment():
            try:
                highwater = consumer.highwater(tp)
            except (AssertionError, KeyError, RuntimeError):
                continue
            if highwater is None:
                continue
            committed = consumer._committed_offset.get(tp)
            CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, highwater - (committed or 0)))
