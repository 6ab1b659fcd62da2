"""Worker housekeeping: `clicks` partitions, link expiry events, custom-domain DNS re-checks,
consumer-lag metrics of Faust's topics, outbox/webhook backlog gauges and the event-loop probe."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import asyncpg
import faust
from prometheus_client import Counter

from engine.db.partitions import drop_old_click_partitions, ensure_click_partitions
from engine.domains.service import recheck_domains
from engine.domains.verification import TxtVerifier
from engine.links.enforcement import emit_expired
from engine.observability import watch_loop_lag
from streams.agents.common import CONSUMER_LAG, task, timer
from streams.metrics import OUTBOX_BACKLOG, OUTBOX_OLDEST_SECONDS, WEBHOOK_BACKLOG
from streams.resources import WorkerResources

log = logging.getLogger(__name__)

PARTITION_INTERVAL_SECONDS = 3600.0
EXPIRY_INTERVAL_SECONDS = 1.0
LAG_INTERVAL_SECONDS = 2.0
BACKLOG_INTERVAL_SECONDS = 10.0
MONTHS_AHEAD = 2

EXPIRED = Counter("linkrift_links_expired_total", "expired events emitted by this worker")
_PG_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def maintain_partitions(res: WorkerResources) -> tuple[list[str], list[str]]:
    async with res.pg.acquire() as conn:
        created = await ensure_click_partitions(conn, MONTHS_AHEAD)
        dropped = await drop_old_click_partitions(conn, res.settings.pg_clicks_retention_days)
    if created or dropped:
        log.info("click_partitions created=%s dropped=%s", created, dropped)
    return created, dropped


async def recheck_custom_domains(
    pool: asyncpg.Pool, verifier: TxtVerifier, interval: timedelta, batch: int = 100
) -> int:
    """Re-check the DNS TXT record of every domain not checked for `interval`, batch by batch
    (each check moves last_dns_check_at, so a domain is never taken twice); returns how many."""
    checked = 0
    while True:
        results = await recheck_domains(pool, verifier, interval=interval, limit=batch)
        checked += len(results)
        if len(results) < batch:
            return checked


async def measure_backlogs(pool: asyncpg.Pool) -> None:
    """Outbox rows not yet published (and the oldest one's age) and webhook deliveries waiting
    for an attempt; both queries use the partial indexes their relays use."""
    async with pool.acquire() as conn:
        outbox = await conn.fetchrow(
            """SELECT count(*) AS n, coalesce(extract(epoch FROM now() - min(created_at)), 0) AS age
               FROM outbox WHERE published_at IS NULL"""
        )
        webhooks = await conn.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE status IN ('pending', 'failed')"
        )
    assert outbox is not None
    OUTBOX_BACKLOG.set(outbox["n"])
    OUTBOX_OLDEST_SECONDS.set(float(outbox["age"]))
    WEBHOOK_BACKLOG.set(webhooks or 0)


def register(app: faust.App, res: WorkerResources) -> None:
    settings = res.settings
    verifier = TxtVerifier(settings.dns_nameserver, settings.dns_timeout)
    recheck_every = float(settings.domain_recheck_seconds)

    @task(app)
    async def click_partitions() -> None:
        """On start, then hourly: partitions two months ahead, past retention dropped."""
        await res.ensure_started()
        while True:
            try:
                await maintain_partitions(res)
            except _PG_ERRORS as exc:
                log.warning("click partition maintenance failed error=%s", exc)
            await asyncio.sleep(PARTITION_INTERVAL_SECONDS)

    @timer(app, EXPIRY_INTERVAL_SECONDS, "link_expiry")
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

    @timer(app, recheck_every, "domain_recheck")
    async def domain_recheck() -> None:
        """Pending domains get verified once their record appears (and announce domain.verified);
        verified ones record failures without losing verification (engine.domains.service)."""
        await res.ensure_started()
        try:
            checked = await recheck_custom_domains(res.pg, verifier, timedelta(seconds=recheck_every))
        except _PG_ERRORS as exc:
            log.warning("domain re-check failed error=%s", exc)
            return
        if checked:
            log.info("domains_rechecked count=%d", checked)

    @task(app)
    async def event_loop_lag() -> None:
        await watch_loop_lag()

    @timer(app, BACKLOG_INTERVAL_SECONDS, "backlogs")
    async def backlogs() -> None:
        await res.ensure_started()
        try:
            await measure_backlogs(res.pg)
        except _PG_ERRORS as exc:
            log.warning("backlog measurement failed error=%s", exc)

    @timer(app, LAG_INTERVAL_SECONDS, "consumer_lag")
    async def consumer_lag() -> None:
        consumer = app.consumer
        for tp in consumer.assignment():
            try:
                highwater = consumer.highwater(tp)
            except (AssertionError, KeyError, RuntimeError):
                continue
            if highwater is None:
                continue
            committed = getattr(consumer, "_committed_offset", {}).get(tp)
            CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, highwater - (committed or 0)))
