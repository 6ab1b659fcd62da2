"""Sink enriched clicks into the PostgreSQL `clicks` partitions and flush link counters.

Both writes happen inside the click consumer's batch, before it commits the batch's offsets, so a
committed offset means PostgreSQL has the batch: clicks idempotent on (event_id, clicked_at), and counters as the
absolute values of the batch's links in one UPDATE per table (links; qr_codes.scan_count and
bio_page_links.click_count for the QR scans and bio button clicks among them). A batch closes
every `sink_batch_seconds` or `sink_batch_size` clicks, so that is about one UPDATE per table per
0.5 s under load, never one per click.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import asyncpg
from prometheus_client import Histogram

from engine.clicks.counting import LinkStats
from engine.clicks.models import EnrichedClick
from engine.clicks.pg_sink import flush_link_counters, flush_source_counters, insert_clicks

log = logging.getLogger(__name__)

PG_BATCH = Histogram(
    "linkrift_pg_sink_batch_size",
    "Rows per PostgreSQL clicks insert",
    buckets=(1, 10, 50, 100, 500, 1000, 5000),
)
PG_LATENCY = Histogram("linkrift_pg_sink_latency_seconds", "PostgreSQL clicks insert latency")


class PostgresSink:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def write(self, clicks: Sequence[EnrichedClick]) -> int:
        if not clicks:
            return 0
        started = time.perf_counter()
        async with self.pool.acquire() as conn:
            inserted = await insert_clicks(conn, clicks)
        PG_LATENCY.observe(time.perf_counter() - started)
        PG_BATCH.observe(len(clicks))
        return inserted

    async def write_counters(self, stats: dict[str, LinkStats]) -> int:
        """Absolute counters of every link the batch touched (replays included): links rows, then
        the QR codes' and bio buttons' counts. Returns the rows changed."""
        if not stats:
            return 0
        async with self.pool.acquire() as conn:
            links = await flush_link_counters(conn, {k: (s.total, s.unique) for k, s in stats.items()})
            return links + await flush_source_counters(conn, stats)
