"""The click agent: raw click → enrich → exact per-link counters → ClickHouse → live mirror.

Batches come from `take_events`; Faust acks (and so commits) a batch only after this body
returns, i.e. after ClickHouse and Redis have it. Replays after a crash are recognised by source
offset (see engine.clicks.counting and streams.sinks.clickhouse), so every click is counted once.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import Any

import faust
from faust.streams import _current_event
from prometheus_client import Counter, Histogram

from engine.clicks.counting import LinkStats, apply_click
from engine.clicks.models import EnrichedClick, RawClick
from streams.resources import WorkerResources

log = logging.getLogger(__name__)

CLICKS_PROCESSED = Counter("linkrift_clicks_processed_total", "Raw clicks processed by the click agent")
CLICKS_REPLAYED = Counter("linkrift_clicks_replayed_skipped_total", "Replayed clicks recognised and not recounted")
SINK_BATCH = Histogram(
    "linkrift_sink_batch_size", "Rows per ClickHouse insert", buckets=(1, 10, 50, 100, 500, 1000, 5000)
)
SINK_LATENCY = Histogram("linkrift_sink_latency_seconds", "ClickHouse insert latency")
FRESHNESS = Histogram(
    "linkrift_click_freshness_seconds", "Redirect to live counter delay",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)


def register(app: faust.App, res: WorkerResources) -> dict[str, Any]:
    settings = res.settings
    partitions = settings.topic_partitions
    clicks_topic = app.topic(
        res.topics.clicks_raw,
        key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
        partitions=partitions,
    )
    link_stats = app.Table("link_stats", partitions=partitions)
    visitors = app.Table("link_visitors", partitions=partitions)
    workspace_parts = app.Table("workspace_partition_totals", partitions=partitions)

    @app.agent(clicks_topic, name="clicks")
    async def process_clicks(stream: faust.StreamT[bytes]) -> None:
        await res.ensure_started()
        async for events in stream.take_events(settings.sink_batch_size, within=settings.sink_batch_seconds):
            await handle_batch(events)

    async def handle_batch(events: Any) -> None:
        touched: dict[str, LinkStats] = {}
        ws_counts: dict[tuple[str, int], dict[str, int]] = {}
        dirty: dict[str, Any] = {}  # table key -> the last event that changed it
        rows: list[tuple[int, int, EnrichedClick]] = []
        fresh: list[EnrichedClick] = []
        for event in events:
            partition, offset = event.message.partition, event.message.offset
            try:
                raw = RawClick.loads(event.value)
            except (ValueError, TypeError):
                log.warning("dropping malformed click partition=%s offset=%s", partition, offset)
                continue
            visitor_key = f"{raw.link_id}:{raw.visitor_id}"
            first_seen = visitors.get(visitor_key)
            stats = touched.get(raw.link_id) or LinkStats.from_dict(link_stats.get(raw.link_id))
            click = res.enricher.enrich(raw, is_unique=first_seen is None or first_seen == offset)
            result = apply_click(
                stats, offset, first_seen_offset=first_seen,
                is_bot=click.is_bot, is_preview=click.is_preview, variant=click.variant,
            )
            touched[raw.link_id] = result.stats
            rows.append((partition, offset, click))
            if not result.applied:
                CLICKS_REPLAYED.inc()
                continue
            if first_seen is None:
                _write(visitors, visitor_key, offset, event)
            dirty[raw.link_id] = event
            ws_key = (raw.workspace_id, partition)
            ws = ws_counts.get(ws_key) or workspace_parts.get(f"{raw.workspace_id}:{partition}") or {
                "count": 0, "offset": -1}
            if offset > ws["offset"]:
                ws_counts[ws_key] = {"count": ws["count"] + 1, "offset": offset}
            fresh.append(click)
        # One table write per link and per workspace share for the whole batch. Each write carries
        # the offset it covers, so a crash before it simply replays the batch.
        for link_id, event in dirty.items():
            _write(link_stats, link_id, touched[link_id].to_dict(), event)
        for (workspace_id, partition), ws in ws_counts.items():
            _write(workspace_parts, f"{workspace_id}:{partition}", ws, dirty_event_for(events, partition))
        _current_event.set(None)
        if rows:
            started = time.perf_counter()
            written = await res.ch_sink.write(rows)
            SINK_LATENCY.observe(time.perf_counter() - started)
            SINK_BATCH.observe(written)
        await res.mirror.write(
            {k: touched[k] for k in dirty}, {k: v["count"] for k, v in ws_counts.items()}, fresh
        )
        now = time.time()
        for click in fresh:
            FRESHNESS.observe(max(0.0, now - click.ts))
        CLICKS_PROCESSED.inc(len(rows))

    return {
        "topic": clicks_topic, "agent": process_clicks, "link_stats": link_stats,
        "visitors": visitors, "workspace_parts": workspace_parts,
    }


def _write(table: Any, key: str, value: Any, event: Any) -> None:
    """Set a table key with `event` as the current event, so its changelog goes to that
    event's partition (Faust's co-partitioning rule) even though we write after the batch."""
    _current_event.set(weakref.ref(event))
    table[key] = value


def dirty_event_for(events: Any, partition: int) -> Any:
    return next(e for e in reversed(events) if e.message.partition == partition)
