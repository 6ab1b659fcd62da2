"""The click agent: raw click → drop re-sent copies → enrich → exact per-link counters (and per
QR code / bio button) → max-clicks enforcement → live mirror in Redis → ClickHouse and PostgreSQL.

Batches come from `take_events`; Faust acks (and so commits) a batch only after this body
returns, and the body first waits for the table changelog writes to be acknowledged, so a
committed offset always means the tables, ClickHouse, PostgreSQL and Redis have the batch.
Replays after a crash are recognised by source offset (engine.clicks.counting and
streams.sinks.clickhouse), so every click is counted once.

Faust's RocksDB tables read the partition of the *current event*; every read and write here sets
it explicitly to the event the key belongs to (a link's clicks all arrive on one partition).
"""

from __future__ import annotations

import logging
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.streams import _current_event
from prometheus_client import Counter, Gauge, Histogram

from engine.clicks.counting import LinkStats, apply_click, is_resent, source_key, variant_key
from engine.clicks.models import EnrichedClick, RawClick
from engine.links.enforcement import LinkLimits, load_limits, mark_exhausted, needs_exhausted_event
from engine.records import uuid_or_none
from streams.agents.common import raw_topic, until_written
from streams.resources import WorkerResources
from streams.source_reader import SourceReader

log = logging.getLogger(__name__)

CLICKS_PROCESSED = Counter("linkrift_clicks_processed_total", "Raw clicks processed by the click agent")
CLICKS_REPLAYED = Counter(
    "linkrift_clicks_replayed_skipped_total", "Replayed clicks recognised and not recounted"
)
CLICKS_MALFORMED = Counter("linkrift_clicks_malformed_total", "Raw clicks dropped as undecodable or invalid")
CLICKS_RESENT = Counter("linkrift_clicks_duplicate_dropped_total", "Re-sent clicks (known event id) dropped")
AGENT_EVENTS = Counter("linkrift_agent_events_total", "Events handled per agent", ["agent"])
SINK_BATCH = Histogram(
    "linkrift_sink_batch_size", "Rows per ClickHouse insert", buckets=(1, 10, 50, 100, 500, 1000, 5000)
)
SINK_LATENCY = Histogram("linkrift_sink_latency_seconds", "ClickHouse insert latency")
FRESHNESS = Histogram(
    "linkrift_click_freshness_seconds",
    "Redirect to live counter delay",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)
DEDUP_SIZE = Gauge("linkrift_click_dedup_entries", "Event ids remembered for duplicate detection")
EXHAUSTED = Counter("linkrift_links_exhausted_total", "exhausted events emitted")
GAP_RECORDS = Counter(
    "linkrift_click_gap_records_total",
    "Raw clicks read back because the consumer was handed an offset past the last one applied",
)

# Event ids are remembered this long; a re-send arrives within seconds (the api's spool replays
# within hours at worst), so a day keeps dropping copies exact.
DEDUP_RETENTION_SECONDS = 24 * 3600
DEDUP_PRUNE_INTERVAL = 60.0
LIMITS_TTL_SECONDS = 30.0


def well_formed(raw: RawClick) -> bool:
    """Whether a decoded click can be stored: ids the sinks write as UUID columns, a numeric time."""
    return (
        isinstance(raw.ts, int | float)
        and isinstance(raw.event_id, str)
        and bool(raw.event_id)
        and uuid_or_none(raw.link_id) == raw.link_id
        and uuid_or_none(raw.workspace_id) == raw.workspace_id
    )


def _at(event: Any) -> None:
    _current_event.set(weakref.ref(event))


@dataclass
class DedupIndex:
    """In-memory index (partition → [(ts, key)]) of the event-id table, to prune it by age.

    Rebuilt from the table after each rebalance; only partitions present in the current batch
    are pruned, because a delete must be written in the context of an event of that partition.
    """

    by_partition: dict[int, list[tuple[float, str]]] = field(default_factory=dict)
    built: bool = False
    last_prune: float = 0.0
    size: int = 0

    def add(self, partition: int, ts: float, key: str) -> None:
        self.by_partition.setdefault(partition, []).append((ts, key))
        self.size += 1

    def reset(self) -> None:
        self.by_partition.clear()
        self.built = False
        self.size = 0


def register(app: faust.App, res: WorkerResources) -> dict[str, Any]:
    settings = res.settings
    partitions = settings.topic_partitions
    clicks_topic = raw_topic(app, res.topics.clicks_raw, partitions)
    link_stats = app.Table("link_stats", partitions=partitions)
    visitors = app.Table("link_visitors", partitions=partitions)
    workspace_parts = app.Table("workspace_partition_totals", partitions=partitions)
    # `{link_id}:{event_id}` -> [offset, ts, partition] of the first copy of each click.
    event_ids = app.Table("click_event_ids", partitions=partitions)
    # str(partition) -> last clicks.raw offset applied; written with the batch's other table
    # writes, so after any crash it says exactly where the tables stand (see source_reader).
    progress = app.Table("click_progress", partitions=partitions)
    reader = SourceReader(settings.kafka_bootstrap, res.topics.clicks_raw)
    dedup = DedupIndex()
    limits: dict[str, LinkLimits] = {}
    res.link_limits = limits

    @app.agent(clicks_topic, name="clicks")
    async def process_clicks(stream: faust.StreamT[bytes]) -> None:
        await res.ensure_started()
        async for events in stream.take_events(settings.sink_batch_size, within=settings.sink_batch_seconds):
            await handle_batch(events)

    async def handle_batch(events: Any) -> None:
        touched: dict[str, LinkStats] = {}
        link_event: dict[str, Any] = {}  # link -> an event of its partition (for reads/writes)
        dirty: set[str] = set()
        ws_state: dict[tuple[str, int], dict[str, int]] = {}
        ws_dirty: dict[tuple[str, int], Any] = {}
        new_visitors: dict[str, tuple[int, Any]] = {}
        new_ids: dict[str, tuple[list[Any], Any]] = {}
        rows: list[tuple[int, int, EnrichedClick]] = []
        fresh: list[EnrichedClick] = []
        records, applied_upto, last_event = await with_gaps_filled(events)
        for partition, offset, payload, event in records:
            try:
                raw = RawClick.loads(payload)
            except (ValueError, TypeError, AttributeError):
                raw = None
            if raw is None or not well_formed(raw):
                # One bad record must not fail its batch forever (a poison pill): count and skip.
                CLICKS_MALFORMED.inc()
                log.warning("dropping malformed click partition=%s offset=%s", partition, offset)
                continue
            _at(event)
            id_key = f"{raw.link_id}:{raw.event_id}"
            seen = new_ids[id_key][0] if id_key in new_ids else event_ids.get(id_key)
            if is_resent(seen[0] if seen else None, offset):
                CLICKS_RESENT.inc()
                continue
            if seen is None:
                new_ids[id_key] = ([offset, raw.ts, partition], event)
            visitor_key = f"{raw.link_id}:{raw.visitor_id}"
            first_seen = (
                new_visitors[visitor_key][0] if visitor_key in new_visitors else visitors.get(visitor_key)
            )
            stats = touched.get(raw.link_id) or LinkStats.from_dict(link_stats.get(raw.link_id))
            click = res.enricher.enrich(raw, is_unique=first_seen is None or first_seen == offset)
            result = apply_click(
                stats,
                offset,
                first_seen_offset=first_seen,
                is_bot=click.is_bot,
                is_preview=click.is_preview,
                variant=variant_key(raw.rule_id, raw.variant),
                source=source_key(raw.kind, raw.qr_code_id, raw.bio_link_id),
            )
            touched[raw.link_id] = result.stats
            link_event[raw.link_id] = event
            rows.append((partition, offset, click))
            ws_key = (raw.workspace_id, partition)
            if ws_key not in ws_state:
                ws_state[ws_key] = dict(
                    workspace_parts.get(f"{raw.workspace_id}:{partition}") or {"count": 0, "offset": -1}
                )
            # The visitor index and the workspace share are checked on their own, not through the
            # link's "applied" flag: after a crash any subset of the batch's changelog writes may
            # be durable, so each table must recognise a replay by itself.
            if first_seen is None:
                new_visitors[visitor_key] = (offset, event)
            ws = ws_state[ws_key]
            if offset > ws["offset"]:
                ws_state[ws_key] = {"count": ws["count"] + 1, "offset": offset}
                ws_dirty[ws_key] = event
            if not result.applied:
                CLICKS_REPLAYED.inc()
                continue
            dirty.add(raw.link_id)
            fresh.append(click)
        dirty |= await until_written("postgres_limits", lambda: enforce_limits(touched))
        # One table write per key for the whole batch, each in the context of an event of its
        # partition; a crash before they are durable simply replays the batch.
        for id_key, (value, event) in new_ids.items():
            _at(event)
            event_ids[id_key] = value
            dedup.add(value[2], value[1], id_key)
        for visitor_key, (offset, event) in new_visitors.items():
            _at(event)
            visitors[visitor_key] = offset
        for link_id in dirty:
            _at(link_event[link_id])
            link_stats[link_id] = touched[link_id].to_dict()
        for (workspace_id, partition), event in ws_dirty.items():
            _at(event)
            workspace_parts[f"{workspace_id}:{partition}"] = ws_state[(workspace_id, partition)]
        for partition, offset in applied_upto.items():
            _at(last_event[partition])
            progress[str(partition)] = offset
        prune_event_ids(events)
        _current_event.set(None)
        # Faust does not tie changelog writes to the source offset it commits: wait for them.
        await app.producer.flush()
        # The live mirror comes first, so the live path does not wait for the sinks. It needs
        # nothing from them: its counters are absolute values of the tables just made durable, for
        # every link and workspace share the batch touched, replays included (a replay rewrites
        # the same numbers), and the live stream and feeds get every click once: the mirror
        # publishes the rows past its own per-partition offset, so a replay after a crash before
        # this point publishes what the crash kept from them, and nothing twice.
        ws_counts = {k: v["count"] for k, v in ws_state.items()}
        await until_written("redis", lambda: res.mirror.write(touched, ws_counts, rows))
        now = time.time()
        for click in fresh:
            FRESHNESS.observe(max(0.0, now - click.ts))
        # The sinks recognise replays by their own contents (ClickHouse: offsets up to its stored
        # maximum per partition; PostgreSQL: ON CONFLICT, GREATEST counters), never by Redis, and
        # `rows` holds replayed clicks too: a crash after the mirror still gets every row into
        # both when the batch is replayed.
        # Each store is retried until it has the batch: Faust acks a batch when this body ends,
        # whether it returned or raised, so giving up here would lose the rows for that store.
        if rows:
            started = time.perf_counter()
            written = await until_written("clickhouse", lambda: res.ch_sink.write(rows))
            SINK_LATENCY.observe(time.perf_counter() - started)
            SINK_BATCH.observe(written)
            clicks = [click for _, _, click in rows]
            await until_written("postgres", lambda: res.pg_sink.write(clicks))
        await until_written("postgres_counters", lambda: res.pg_sink.write_counters(touched))
        CLICKS_PROCESSED.inc(len(rows))
        AGENT_EVENTS.labels("clicks").inc(len(events))
        DEDUP_SIZE.set(dedup.size)

    async def with_gaps_filled(
        events: Any,
    ) -> tuple[list[tuple[int, int, bytes, Any]], dict[int, int], dict[int, Any]]:
        """The batch as (partition, offset, value, context event) records, with any offsets the
        consumer skipped since the last applied one read back from the topic and put first.
        Also returns the highest offset per partition and an event of each partition."""
        records: list[tuple[int, int, bytes, Any]] = []
        upto: dict[int, int] = {}
        last_event: dict[int, Any] = {}
        for event in events:
            partition, offset = event.message.partition, event.message.offset
            if partition not in upto:
                _at(event)
                applied = progress.get(str(partition))
                upto[partition] = -1 if applied is None else int(applied)
            expected = upto[partition] + 1
            if offset > expected:
                missing = await reader.read(partition, expected, offset)
                if missing:
                    GAP_RECORDS.inc(len(missing))
                    log.warning(
                        "consumer skipped %s[%s] offsets %s..%s; applying %s records read back",
                        res.topics.clicks_raw,
                        partition,
                        expected,
                        offset - 1,
                        len(missing),
                    )
                records.extend((partition, o, v, event) for o, v in missing)
            records.append((partition, offset, event.value, event))
            upto[partition] = max(upto[partition], offset)
            last_event[partition] = event
        return records, upto, last_event

    async def enforce_limits(touched: dict[str, LinkStats]) -> set[str]:
        """Emit `exhausted` once for links whose total reached max_clicks (PostgreSQL decides
        "once": the marker column and the outbox row change in one transaction). Returns the
        links whose stats changed (exhausted_emitted set)."""
        changed: set[str] = set()
        now = time.monotonic()
        stale = [k for k in touched if k not in limits or now - limits[k].loaded_at > LIMITS_TTL_SECONDS]
        if stale:
            async with res.pg.acquire() as conn:
                limits.update(await load_limits(conn, stale))
        for link_id, stats in touched.items():
            if not needs_exhausted_event(limits.get(link_id), stats.total):
                continue
            async with res.pg.acquire() as conn:
                if await mark_exhausted(conn, res.topics.links_changes, link_id):
                    EXHAUSTED.inc()
            limits.pop(link_id, None)
            if not stats.exhausted_emitted:
                stats.exhausted_emitted = True
                changed.add(link_id)
        return changed

    def prune_event_ids(events: Any) -> None:
        now = time.time()
        _current_event.set(None)
        if not dedup.built:
            for key, value in event_ids.items():
                dedup.add(int(value[2]), float(value[1]), key)
            dedup.built = True
        if now - dedup.last_prune < DEDUP_PRUNE_INTERVAL:
            return
        dedup.last_prune = now
        cutoff = now - DEDUP_RETENTION_SECONDS
        batch_events = {e.message.partition: e for e in events}
        for partition, event in batch_events.items():
            entries = dedup.by_partition.get(partition, [])
            entries.sort()
            expired = 0
            _at(event)
            for ts, key in entries:
                if ts >= cutoff:
                    break
                del event_ids[key]
                expired += 1
            dedup.by_partition[partition] = entries[expired:]
            dedup.size -= expired

    @app.on_before_shutdown.connect
    async def _close_reader(sender: object, **kwargs: object) -> None:
        await reader.close()

    @app.on_partitions_revoked.connect
    async def _forget_dedup_index(sender: object, *args: object, **kwargs: object) -> None:
        dedup.reset()

    return {
        "topic": clicks_topic,
        "agent": process_clicks,
        "link_stats": link_stats,
        "visitors": visitors,
        "workspace_parts": workspace_parts,
        "event_ids": event_ids,
        "progress": progress,
        "reader": reader,
    }
