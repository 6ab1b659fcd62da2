"""The click agent: raw click → drop re-sent copies → enrich → exact per-link counters (and per
QR code / bio button) → max-clicks enforcement → live mirror in Redis → ClickHouse and PostgreSQL.

It runs inside the Faust worker but reads `clicks.raw` with its own aiokafka consumer (group
`{namespace}-clicks`) in batches, and keeps its tables in streams.click_state (RocksDB per
partition, changelog-backed, co-partitioned with the source): Faust's per-event path (consumer
drain, conductor, stream, one changelog send per table write) capped a do-nothing agent at ~10k
events/s on the reference machine, below the 10k clicks/s a worker must sustain with the work
(docs/pipeline.md has the measurements). Every other agent stays a Faust agent.

A batch is committed to the group only after the changelog writes are acknowledged and the
mirror, ClickHouse and PostgreSQL have it. The tables decide where processing resumes: each
partition's store holds the last source offset applied, and on assignment the consumer starts at
that offset + 1, or earlier when the committed offset is behind it (a crash after the tables but
before the sinks, or an operator rewinding the group): such replays are recognised by source
offset (engine.clicks.counting and streams.sinks.clickhouse), so every click is counted once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import Counter, Gauge, Histogram

from engine.clicks.counting import LinkStats, count_click, is_resent, source_key, variant_key
from engine.clicks.models import EnrichedClick, RawClick
from engine.kafka import TopicIds, ensure_topics
from engine.links.enforcement import LinkLimits, load_limits, mark_exhausted, needs_exhausted_event

# Key prefixes of the per-partition click state (streams/click_state.py): engine/naming.py.
from engine.naming import STATE_EVENT as EVENT
from engine.naming import STATE_EXPIRY as EXPIRY
from engine.naming import STATE_INCARNATION as INCARNATION
from engine.naming import STATE_PROGRESS as PROGRESS
from engine.naming import STATE_SUNK as SUNK
from engine.naming import STATE_VISITOR as VISITOR
from engine.records import uuid_or_none
from streams.agents.common import (
    CONSUMER_LAG,
    FETCH_MAX_WAIT_MS,
    HEARTBEAT_INTERVAL_SECONDS,
    REBALANCE_TIMEOUT_SECONDS,
    SESSION_TIMEOUT_SECONDS,
    on_shutdown,
    task,
    until_written,
)
from streams.click_batch import BatchOverlay
from streams.click_state import ClickState
from streams.metrics import CLICK_LAG_TOTAL, CLICKHOUSE_LAST_WRITE, WORKER_READY
from streams.resources import WorkerResources

log = logging.getLogger(__name__)

CLICKS_PROCESSED = Counter("linkrift_clicks_processed_total", "Raw clicks processed by the click agent")
CLICKS_REPLAYED = Counter(
    "linkrift_clicks_replayed_skipped_total", "Replayed clicks recognised and not recounted"
)
CLICKS_MALFORMED = Counter("linkrift_clicks_malformed_total", "Raw clicks dropped as undecodable or invalid")
CLICKS_RESENT = Counter("linkrift_clicks_duplicate_dropped_total", "Re-sent clicks (known event id) dropped")
AGENT_EVENTS = Counter("linkrift_agent_events_total", "Events handled per agent", ["agent"])
SINK_BATCH = Histogram(
    "linkrift_sink_batch_size", "Rows per ClickHouse insert", buckets=(1, 10, 50, 100, 500, 1000, 5000, 20000)
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
    "Raw clicks re-read because the group's committed offset was past the last one sunk",
)
INCARNATIONS = Counter(
    "linkrift_broker_incarnations_total",
    "Topics found to be another incarnation (deleted and created again, or a broker that lost them) "
    "than the one the worker's state knew",
    ["topic"],
)
CLICKS_UNCERTAIN = Counter(
    "linkrift_clicks_resent_uncertain_total",
    "Re-sent copies of clicks whose first copy was counted but may not have reached the sinks "
    "before its topic incarnation was lost: written to the sinks that lack their event id",
)

# Event ids are remembered this long; a re-send arrives within seconds (the api's spool replays
# within hours at worst), so a day keeps dropping copies exact.
DEDUP_RETENTION_SECONDS = 24 * 3600
DEDUP_PRUNE_INTERVAL = 60.0
LIMITS_TTL_SECONDS = 30.0
# After the first records of a batch arrive, keep collecting while more come within this long.
FOLLOW_UP_MS = 20
COMMIT_TIMEOUT_SECONDS = 2.0
# After the broker did not answer a lag measurement's ListOffsets, the next asks this much later.
LAG_OFFSETS_BACKOFF_SECONDS = 10.0
DRAIN_TIMEOUT_SECONDS = 20.0
# How often the topics' incarnation is checked when no batch asks for it.
IDLE_CHECK_SECONDS = 1.0


# Positions: offsets in clicks.raw made monotonic across incarnations of the topic. The position
# of a record is `epoch << EPOCH_SHIFT | offset`, epoch counting the incarnations this partition's
# state has seen (0 for the first, so positions are offsets until a topic is re-created). Every
# watermark (the tables' replay guards, ClickHouse's kafka_offset, the feed offsets) holds
# positions, so a new incarnation's offsets 0, 1, ... come after everything before.
EPOCH_SHIFT = 44


class IncarnationChanged(RuntimeError):
    """clicks.raw is not the topic the consumer's positions refer to any more."""


@functools.lru_cache(maxsize=65_536)
def _canonical_uuid(value: object) -> bool:
    return uuid_or_none(value) == value


def well_formed(raw: RawClick) -> bool:
    """Whether a decoded click can be stored: ids the sinks write as UUID columns, a numeric time.
    (Link and workspace ids repeat across clicks: their check is cached.)"""
    return (
        isinstance(raw.ts, int | float)
        and isinstance(raw.event_id, str)
        and bool(raw.event_id)
        and isinstance(raw.link_id, str)
        and isinstance(raw.workspace_id, str)
        and _canonical_uuid(raw.link_id)
        and _canonical_uuid(raw.workspace_id)
    )


def resume_offset(applied: int | None, sunk: int | None, committed: int | None) -> int | None:
    """Where a partition's consumption starts, from its tables' own record: after the last offset
    the sinks are known to have (the tables may be ahead: that stretch is replayed, idempotently),
    or earlier at the committed offset (an operator rewinding the group to force a replay).
    A committed offset ahead of that is not trusted. None: from the beginning (no state, or no
    batch known to be sunk: everything is replayed; counts are rebuilt from the log)."""
    if applied is None or sunk is None:
        return None
    start = min(sunk, applied) + 1
    return start if committed is None else min(committed, start)


def expiry_key(ts: float, event_key: str) -> str:
    """The local index entry that expires `event_key` (an `e:` key): `x:{minute}:{event_key}`,
    minute zero-padded so RocksDB's key order is time order."""
    minute = min(max(int(ts // 60), 0), 9_999_999_999)
    return f"{EXPIRY}{minute:010d}:{event_key}"


def in_ranges(position: int, ranges: list[list[int]]) -> bool:
    return any(lo < position <= hi for lo, hi in ranges)


@dataclass
class SinkJob:
    rows: list[tuple[int, int, EnrichedClick]]
    touched: dict[str, LinkStats]
    # Highest source position per partition in the batch (the tables' new `p`): recorded as sunk
    # and committed once the sinks have it.
    offsets: dict[int, int]
    # Re-sent copies whose first copy may not have reached the sinks (its incarnation was lost):
    # written where their event id is missing.
    uncertain: list[tuple[int, int, EnrichedClick]] = field(default_factory=list)
    first_request_id: str = ""

    def describe(self) -> str:
        """The batch's clicks for a log line: count, offsets and the first event / request ids."""
        if not self.rows:
            return "clicks=0"
        head = self.rows[0][2]
        return (
            f"clicks={len(self.rows)} offsets={ {p: o for p, o in sorted(self.offsets.items())} } "
            f"first_event_id={head.event_id} first_request_id={self.first_request_id or '-'}"
        )


@dataclass
class CountedBatch:
    """A batch after dedup and counting, before its table writes (held by `tables`)."""

    tables: BatchOverlay
    # Every well-formed first copy, replays included: (partition, position, click).
    rows: list[tuple[int, int, EnrichedClick]] = field(default_factory=list)
    # Re-sent copies from a lost incarnation (SinkJob.uncertain).
    uncertain: list[tuple[int, int, EnrichedClick]] = field(default_factory=list)
    # The clicks counted for the first time (the freshness histogram).
    fresh: list[EnrichedClick] = field(default_factory=list)
    # Last position per partition in the batch, malformed records included.
    applied_upto: dict[int, int] = field(default_factory=dict)
    # Event ids remembered for the first time, per partition.
    new_event_ids: dict[int, int] = field(default_factory=dict)
    first_request_id: str = ""


def _ids(raw: RawClick | None) -> tuple[str, str]:
    """(event_id, request_id) of a click for log lines, "-" where unknown."""
    if raw is None:
        return "-", "-"
    return str(raw.event_id or "-")[:64], str(raw.request_id or "-")[:128]


class ClickProcessor:
    """One batch of raw clicks through dedup, counting, limits and the sinks."""

    def __init__(self, res: WorkerResources, state: ClickState) -> None:
        self.res = res
        self.state = state
        # Event ids remembered per partition (the gauge), and when they were last pruned.
        self.dedup_entries: dict[int, int] = {}
        self.last_prune = 0.0
        self.limits: dict[str, LinkLimits] = {}
        res.link_limits = self.limits
        # Highest position per partition the sinks finished, not yet written to the tables.
        self.sunk: dict[int, int] = {}
        # Per partition, the uncertain position ranges of its incarnation record.
        self.uncertain: dict[int, list[list[int]]] = {}

    def index_partition(self, partition: int) -> None:
        """Rebuild a recovered partition's expiry index (RocksDB only: the changelog holds the
        event ids themselves, not the index) instead of keeping one in Python memory, which at
        10k clicks/s would hold ~860M entries for the 24 h window."""
        entries = (
            (expiry_key(float(value[1]), key), b"") for key, value in self.state.scan(partition, EVENT)
        )
        self.dedup_entries[partition] = self.state.write_local(partition, entries)

    async def handle(self, records: list[tuple[int, int, bytes | None]]) -> SinkJob:
        """Tables, limits and the live mirror for one batch of (partition, offset, value) records
        in offset order per partition; returns what is left for the sinks."""
        res, state = self.res, self.state
        # What the sink stage finished since the last batch becomes durable with this one.
        for partition, offset in self.sunk.items():
            if partition in state.partitions:
                state.set(partition, SUNK, offset)
        self.sunk.clear()
        batch = self.count(records)
        tables = batch.tables
        changed = await until_written("postgres_limits", lambda: self.enforce_limits(tables.stats))
        for link_id in changed:
            tables.stats_changed(link_id)
        self.write_tables(batch)
        await until_written("changelog", state.flush)
        # The live mirror comes first, so the live path does not wait for the sinks. It needs
        # nothing from them: its counters are absolute values of the tables just made durable, for
        # every link and workspace share the batch touched, replays included (a replay rewrites
        # the same numbers), and the live stream and feeds get every click once: the mirror
        # publishes the rows past its own per-partition offset, so a replay after a crash before
        # this point publishes what the crash kept from them, and nothing twice.
        ws_counts = {k: v["count"] for k, v in tables.shares.items()}
        await until_written(
            "redis", lambda: res.mirror.write(tables.stats, ws_counts, batch.rows, batch.uncertain)
        )
        now = time.time()
        for click in batch.fresh:
            FRESHNESS.observe(max(0.0, now - click.ts))
        AGENT_EVENTS.labels("clicks").inc(len(records))
        DEDUP_SIZE.set(sum(self.dedup_entries.values()))
        return SinkJob(batch.rows, tables.stats, batch.applied_upto, batch.uncertain, batch.first_request_id)

    def count(self, records: list[tuple[int, int, bytes | None]]) -> CountedBatch:
        """Dedup and count a batch against an overlay of the tables (nothing is written to them
        yet): malformed records are skipped, re-sent copies dropped (or, from a lost incarnation,
        handed to the sinks only), every other click enriched and counted once."""
        batch = CountedBatch(BatchOverlay(self.state))
        first_copy, count_click_ = self._first_copy, self._count_click  # per click: no lookups
        for partition, offset, payload in records:
            batch.applied_upto[partition] = offset
            try:
                raw = RawClick.loads(payload)  # type: ignore[arg-type]
            except (ValueError, TypeError, AttributeError):
                raw = None
            if raw is None or not well_formed(raw):
                # One bad record must not fail its batch forever (a poison pill): count and skip.
                CLICKS_MALFORMED.inc()
                log.warning(
                    "dropping malformed click partition=%s offset=%s event_id=%s request_id=%s",
                    partition, offset, *_ids(raw),
                )  # fmt: skip
                continue
            if first_copy(batch, partition, offset, raw):
                count_click_(batch, partition, offset, raw)
        return batch

    def _first_copy(self, batch: CountedBatch, partition: int, offset: int, raw: RawClick) -> bool:
        """Whether the click is the first copy of its event id (or that copy read again); a new
        event id is remembered. A re-sent copy is dropped, unless its first copy was counted in
        an incarnation that is gone, maybe before the sinks had it: then the sinks decide by
        event id (the tables stay as they are)."""
        tables = batch.tables
        event_key = f"{EVENT}{raw.link_id}:{raw.event_id}"
        seen = tables.remember(partition, event_key, [offset, raw.ts])
        if seen is None:
            tables.set_local(partition, expiry_key(raw.ts, event_key), b"")
            batch.new_event_ids[partition] = batch.new_event_ids.get(partition, 0) + 1
            return True
        if not is_resent(seen[0], offset):
            return True
        if in_ranges(seen[0], self.uncertain.get(partition, [])):
            first = tables.get(partition, f"{VISITOR}{raw.link_id}:{raw.visitor_id}")
            batch.uncertain.append(
                (partition, offset, self.res.enricher.enrich(raw, is_unique=first == seen[0]))
            )
            CLICKS_UNCERTAIN.inc()
            log.info(
                "re-sent click from a lost incarnation, to the sinks that lack it "
                "partition=%s position=%s event_id=%s request_id=%s",
                partition, offset, *_ids(raw),
            )  # fmt: skip
            return False
        CLICKS_RESENT.inc()
        log.info(
            "dropping re-sent click partition=%s offset=%s event_id=%s request_id=%s",
            partition, offset, *_ids(raw),
        )  # fmt: skip
        return False

    def _count_click(self, batch: CountedBatch, partition: int, offset: int, raw: RawClick) -> None:
        """Count a click into its link's counters and its workspace's share. Each of them, and
        the visitor index, recognises a replay (a position it already has) by itself, not through
        the others: after a crash any subset of a batch's changelog writes may be durable."""
        tables = batch.tables
        link_id = raw.link_id
        first_seen = tables.remember(partition, f"{VISITOR}{link_id}:{raw.visitor_id}", offset)
        is_unique = first_seen is None or first_seen == offset
        click = self.res.enricher.enrich(raw, is_unique=is_unique)
        applied = count_click(
            tables.link_stats(partition, link_id),
            offset,
            is_unique=is_unique,
            is_bot=click.is_bot,
            is_preview=click.is_preview,
            variant=variant_key(raw.rule_id, raw.variant),
            source=source_key(raw.kind, raw.qr_code_id, raw.bio_link_id),
        )
        if not batch.rows:
            batch.first_request_id = raw.request_id
        batch.rows.append((partition, offset, click))
        share = tables.workspace_share(partition, raw.workspace_id)
        if offset > share["offset"]:
            tables.set_workspace_share(
                partition, raw.workspace_id, {"count": share["count"] + 1, "offset": offset}
            )
        if not applied:
            CLICKS_REPLAYED.inc()
            return
        tables.stats_changed(link_id)
        batch.fresh.append(click)

    def write_tables(self, batch: CountedBatch) -> None:
        """The batch's writes into the click state, one per key (made durable by its flush; a
        crash before that replays the batch), with each partition's last applied position, and
        the event ids past their retention forgotten."""
        batch.tables.commit()
        for partition, count in batch.new_event_ids.items():
            self.dedup_entries[partition] = self.dedup_entries.get(partition, 0) + count
        for partition, offset in batch.applied_upto.items():
            self.state.set(partition, PROGRESS, offset)
        self.prune_event_ids(list(batch.applied_upto))

    async def sink(self, job: SinkJob) -> None:
        """The batch into ClickHouse and PostgreSQL. The sinks recognise replays by their own
        contents (ClickHouse: offsets up to its stored maximum per partition; PostgreSQL: ON
        CONFLICT, GREATEST counters), never by Redis, and `rows` holds replayed clicks too: a crash
        after the mirror still gets every row into both when the batch is replayed. Each store is
        retried until it has the batch: its offsets are committed only after this returns."""
        res, rows, touched, uncertain = self.res, job.rows, job.touched, job.uncertain
        if rows or uncertain:
            started = time.perf_counter()
            written = await until_written(
                "clickhouse", lambda: res.ch_sink.write(rows, uncertain), job.describe
            )
            SINK_LATENCY.observe(time.perf_counter() - started)
            CLICKHOUSE_LAST_WRITE.set(time.time())
            SINK_BATCH.observe(written)
            # PostgreSQL's clicks are idempotent by event id: an uncertain copy goes in as it is.
            clicks = [click for _, _, click in (*rows, *uncertain)]
            await until_written("postgres", lambda: res.pg_sink.write(clicks), job.describe)
        await until_written("postgres_counters", lambda: res.pg_sink.write_counters(touched))
        CLICKS_PROCESSED.inc(len(rows))
        for partition, offset in job.offsets.items():
            self.sunk[partition] = max(offset, self.sunk.get(partition, -1))

    async def enforce_limits(self, touched: dict[str, LinkStats]) -> set[str]:
        """Emit `exhausted` once for links whose total reached max_clicks (PostgreSQL decides
        "once": the marker column and the outbox row change in one transaction). Returns the
        links whose stats changed (exhausted_emitted set)."""
        res, limits = self.res, self.limits
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

    def prune_event_ids(self, partitions: list[int]) -> None:
        """Forget event ids older than the retention, at most once a minute: the changelog gets
        a tombstone for each, the local expiry index loses its entry."""
        now = time.time()
        if now - self.last_prune < DEDUP_PRUNE_INTERVAL:
            return
        self.last_prune = now
        cutoff = expiry_key(now - DEDUP_RETENTION_SECONDS, "")
        for partition in partitions:
            expired = self.state.keys_before(partition, EXPIRY, cutoff)
            for index_key in expired:
                self.state.delete(partition, index_key[len(cutoff) :])
                self.state.set_local(partition, index_key, None)
            self.dedup_entries[partition] = self.dedup_entries.get(partition, 0) - len(expired)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: ClickConsumer) -> None:
        self.owner = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.owner.revoked()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        try:
            await self.owner.assigned(assigned)
        except Exception as exc:
            # aiokafka would log this and carry on with the partitions unowned here (fetched but
            # never processed): stop the consumer instead; `until_stopped` starts a new one.
            log.exception("click partition assignment failed; restarting the click consumer")
            self.owner.failed = exc


class ClickConsumer:
    """Reads `clicks.raw` in batches for the partitions the group gives this worker."""

    def __init__(self, res: WorkerResources, datadir: Path) -> None:
        settings = res.settings
        self.res = res
        self.topic = res.topics.clicks_raw
        self.group = res.topics.clicks_group
        self.batch_size = settings.sink_batch_size
        self.batch_seconds = settings.sink_batch_seconds
        self.changelog = res.topics.clicks_state
        self.state = ClickState(settings.kafka_bootstrap, self.changelog, datadir)
        self.processor = ClickProcessor(res, self.state)
        self.topic_ids = TopicIds(settings.kafka_bootstrap)
        # The ids of clicks.raw and of the changelog the consumer's positions and stores refer to.
        self.source_id: str | None = None
        self.changelog_id: str | None = None
        # Per owned partition, its epoch << EPOCH_SHIFT: position = base + offset.
        self.base: dict[int, int] = {}
        self.consumer: AIOKafkaConsumer | None = None
        # Held while a batch is processed; a rebalance waits for it.
        self.lock = asyncio.Lock()
        self.owned: set[int] = set()
        self.generation = 0  # assignments seen; a batch collected across one is dropped
        self.failed: BaseException | None = None  # set when an assignment could not be set up
        self.draining = False  # a clean stop is under way: no new batch is started
        self.checked_at = 0.0  # loop time of the last incarnation check
        # Per owned partition, the next position the tables expect (None: from the beginning).
        self.next_offsets: dict[int, int | None] = {}
        self.sink_queue: asyncio.Queue[SinkJob] = asyncio.Queue(maxsize=1)
        # Highest offset per partition the sinks finished, not yet committed to the group.
        self.to_commit: dict[int, int] = {}
        # Lag (see `_measure_lag`): per owned partition the next offset the sinks do not have
        # yet (None: from the beginning), the highest offset + 1 fetched, and the last log end.
        self.sunk_next: dict[int, int | None] = {}
        self.fetched_end: dict[int, int] = {}
        self.log_end: dict[int, int] = {}
        self.lag_interval = settings.consumer_lag_interval_seconds
        self.stall_seconds = settings.worker_stall_seconds
        self.last_progress = time.monotonic()
        self.lag_total = 0
        self.running = False
        self.offsets_retry_at = 0.0

    async def run(self) -> None:
        await self.res.ensure_started()
        partitions = self.res.settings.topic_partitions
        await ensure_topics(
            self.res.settings.kafka_bootstrap,
            {self.topic: partitions, self.res.topics.clicks_state: partitions},
            configs={self.res.topics.clicks_state: {"cleanup.policy": "compact"}},
        )
        consumer = self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.res.settings.kafka_bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            session_timeout_ms=int(SESSION_TIMEOUT_SECONDS * 1000),
            heartbeat_interval_ms=int(HEARTBEAT_INTERVAL_SECONDS * 1000),
            rebalance_timeout_ms=int(REBALANCE_TIMEOUT_SECONDS * 1000),
        )
        consumer.subscribe([self.topic], listener=_Rebalance(self))
        await consumer.start()
        # Two stages: while the sinks write one batch, the next goes through the tables and the
        # mirror (ClickHouse inserts run on their own thread). Batches reach the sinks, and their
        # offsets the group, in order.
        sinks = asyncio.create_task(self._sink_stage(consumer))
        loop = asyncio.get_running_loop()
        lag = asyncio.create_task(self._poll_lag(consumer))
        self.running = True
        try:
            while True:
                # Not under the lock: aiokafka's getmany waits for a rebalance in progress to end,
                # and the rebalance waits for the lock (our revoke callback). Records collected
                # across a reassignment are dropped: the partitions were sought to their resume
                # offsets, and they are read again from there in order.
                generation = self.generation
                records = await self._collect(consumer)
                if self.failed is not None:
                    failed, self.failed = self.failed, None
                    raise RuntimeError("click partition assignment failed") from failed
                async with self.lock:
                    if self.draining:
                        records = []  # stopping: read again by the next start
                    idle = loop.time() - self.checked_at > IDLE_CHECK_SECONDS
                    if (records or idle) and generation == self.generation:
                        # Also while nothing arrives: a re-created topic shorter than the
                        # positions the consumer fetches from delivers nothing at all.
                        try:
                            await self._check_incarnation()
                            self.checked_at = loop.time()
                        except (KafkaError, OSError, TimeoutError) as exc:
                            # No answer (a broker outage): the batch is not processed unchecked,
                            # it is fetched again.
                            log.warning("topic ids not available, batch dropped error=%r", exc)
                            await self.topic_ids.close()
                            if records:
                                records = []
                                await self._rewind(consumer)
                            await asyncio.sleep(0.5)
                    if generation != self.generation:
                        await self._rewind(consumer)
                    elif records:
                        job = await self.processor.handle(records)
                        await self.sink_queue.put(job)
                        for partition, offset in job.offsets.items():
                            self.next_offsets[partition] = offset + 1
                if sinks.done():
                    await sinks  # raises what stopped it
                # Outside the lock: a commit can wait on a rebalance, which waits for the lock.
                await self._commit(consumer)
        finally:
            self.running = False
            WORKER_READY.set(0)
            sinks.cancel()
            lag.cancel()
            await asyncio.gather(sinks, lag, return_exceptions=True)
            self.sink_queue = asyncio.Queue(maxsize=1)
            self.consumer = None
            await consumer.stop()
            await self.state.close()
            await self.topic_ids.close()

    async def _check_incarnation(self) -> None:
        """Before a batch is processed: are clicks.raw and the changelog still the topics the
        positions and stores refer to? (The batch was fetched before this question, so if the
        answer is yes, it came from them.) A new clicks.raw stops the consumer; the next assignment
        gives its partitions a new epoch. A new changelog is re-seeded from the local stores."""
        ids = await self.topic_ids.get([self.topic, self.changelog])
        if self.topic_ids.supported and ids.get(self.topic) is None:
            # Missing right now (a broker still loading its topics, a topic being re-created):
            # not an answer; asked again.
            raise KafkaConnectionError(f"no topic id for {self.topic} yet")
        if ids.get(self.topic) != self.source_id:
            raise IncarnationChanged(
                f"{self.topic} is another incarnation (id {ids.get(self.topic)}, "
                f"was {self.source_id}); starting over from the tables"
            )
        changelog_id = ids.get(self.changelog)
        if changelog_id != self.changelog_id and changelog_id is not None:
            INCARNATIONS.labels(self.changelog).inc()
            await until_written("changelog", self.state.flush)  # pending writes first, then all keys
            for partition in sorted(self.state.partitions):
                await self.state.reseed(partition, changelog_id, (EXPIRY.encode(),))
            self.changelog_id = changelog_id

    async def _rewind(self, consumer: AIOKafkaConsumer) -> None:
        """Position every owned partition at the next position its tables expect (what an
        assignment sought to, as nothing was processed since), dropping what was fetched."""
        for partition in self.owned:
            await self._seek(consumer, partition, self.next_offsets.get(partition))

    async def _seek(self, consumer: AIOKafkaConsumer, partition: int, position: int | None) -> None:
        tp = TopicPartition(self.topic, partition)
        base = self.base.get(partition, 0)
        if position is None or position <= base:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, position - base)

    async def _sink_stage(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            job = await self.sink_queue.get()
            try:
                await self.processor.sink(job)
                for partition, position in job.offsets.items():
                    self.to_commit[partition] = max(position, self.to_commit.get(partition, -1))
                    next_offset = position + 1 - self.base.get(partition, 0)  # lag is in offsets
                    if next_offset > 0:
                        self.sunk_next[partition] = max(next_offset, self.sunk_next.get(partition) or 0)
                self.last_progress = time.monotonic()
            finally:
                self.sink_queue.task_done()

    async def _collect(self, consumer: AIOKafkaConsumer) -> list[tuple[int, int, bytes | None]]:
        """Up to batch_size records: waits up to 1 s for the first, then takes what keeps arriving
        within FOLLOW_UP_MS, for at most batch_seconds."""
        loop = asyncio.get_running_loop()
        records: list[tuple[int, int, bytes | None]] = []
        fetched = await consumer.getmany(timeout_ms=1000, max_records=self.batch_size)
        deadline = loop.time() + self.batch_seconds
        while fetched:
            owned, bases = self.owned, self.base
            for tp, messages in fetched.items():
                if tp.partition in owned:
                    base = bases[tp.partition]
                    records.extend((tp.partition, base + m.offset, m.value) for m in messages)
                    if messages:
                        end = messages[-1].offset + 1
                        self.fetched_end[tp.partition] = max(end, self.fetched_end.get(tp.partition, 0))
            room = self.batch_size - len(records)
            if room <= 0 or loop.time() >= deadline:
                break
            fetched = await consumer.getmany(timeout_ms=FOLLOW_UP_MS, max_records=room)
        # Offset order per partition (getmany keeps it; this makes it a checked property).
        records.sort(key=itemgetter(0, 1))
        return records

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        """Commit what the sinks finished. The group offset is only a hint here (resume_offset
        goes by the tables' own record) and what operators see as lag, so a commit that fails or
        hangs in a rebalance is given up after COMMIT_TIMEOUT_SECONDS."""
        if not self.to_commit:
            return
        # The metadata names the incarnation the offsets are in: the api's journal trusts a
        # committed offset only for the topic id it was committed for (a broker may keep a deleted
        # topic's group offsets).
        offsets = {
            TopicPartition(self.topic, p): OffsetAndMetadata(
                position + 1 - self.base.get(p, 0), self.source_id or ""
            )
            for p, position in self.to_commit.items()
            if position >= self.base.get(p, 0)
        }
        self.to_commit = {}
        if not offsets:
            return
        try:
            await asyncio.wait_for(consumer.commit(offsets), COMMIT_TIMEOUT_SECONDS)
        except (KafkaError, TimeoutError) as exc:
            log.warning("click offsets not committed error=%r", exc)

    async def _poll_lag(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            await self._measure_lag(consumer)
            await asyncio.sleep(self.lag_interval)

    async def _measure_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Per owned partition: log end - next offset the sinks do not have, independent of
        commits (a stalled sink shows as growing lag). The log end is the largest of the
        broker's ListOffsets answer, the consumer's fetched highwater and the last offset
        fetched + 1: tansu answers ListOffsets with the base offset of the last record batch + 1,
        which is short of the end by that batch's other records (docs/pipeline.md). When the
        broker does not answer, the last known end stands. Also decides readiness: ready while
        running and either nothing waits or the sinks made progress within `stall_seconds`."""
        owned = sorted(self.owned)
        tps = [TopicPartition(self.topic, p) for p in owned]
        ends: dict[TopicPartition, int] = {}
        if tps and time.monotonic() >= self.offsets_retry_at:
            try:
                ends = await asyncio.wait_for(consumer.end_offsets(tps), self.lag_interval + 1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker away, rebalance in progress: keep the last ends
                # and leave the broker alone for a while (aiokafka retries metadata meanwhile).
                self.offsets_retry_at = time.monotonic() + LAG_OFFSETS_BACKOFF_SECONDS
                log.debug("consumer lag: no log end offsets error=%r", exc)
        # A partition read from the beginning starts at the log's first offset, not 0 (retention).
        unstarted = [tp for tp in tps if self.sunk_next.get(tp.partition) is None]
        if unstarted and ends:
            try:
                firsts = await asyncio.wait_for(
                    consumer.beginning_offsets(unstarted), self.lag_interval + 1.0
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("consumer lag: no log start offsets error=%r", exc)
            else:
                for tp, first in firsts.items():
                    if self.sunk_next.get(tp.partition) is None and tp.partition in self.owned:
                        self.sunk_next[tp.partition] = first
        total = 0
        for tp in tps:
            p = tp.partition
            try:
                highwater = consumer.highwater(tp) or 0
            except (AssertionError, KeyError, ValueError):
                highwater = 0
            end = max(ends.get(tp, 0), highwater, self.fetched_end.get(p, 0), self.log_end.get(p, 0))
            self.log_end[p] = end
            lag = max(0, end - (self.sunk_next.get(p) or 0))
            CONSUMER_LAG.labels(self.topic, str(p)).set(lag)
            total += lag
        self.lag_total = total
        CLICK_LAG_TOTAL.set(total)
        now = time.monotonic()
        if total == 0:
            self.last_progress = now
        WORKER_READY.set(1 if self.ready else 0)

    @property
    def ready(self) -> bool:
        return self.running and time.monotonic() - self.last_progress < self.stall_seconds

    def _forget_lag(self, partitions: set[int]) -> None:
        for p in partitions:
            self.sunk_next.pop(p, None)
            self.fetched_end.pop(p, None)
            self.log_end.pop(p, None)
            try:
                CONSUMER_LAG.remove(self.topic, str(p))
            except KeyError:
                pass

    async def drain(self) -> None:
        """Clean stop: the batch in flight and the sinks finish, what they finished is written to
        the tables (`k`) and committed. Nothing is left for the next start to replay."""
        consumer = self.consumer
        if consumer is None:
            return
        self.draining = True
        async with self.lock:
            await self.sink_queue.join()
            for partition, position in self.processor.sunk.items():
                if partition in self.state.partitions:
                    self.state.set(partition, SUNK, position)
            self.processor.sunk.clear()
            await self.state.flush()
        await self._commit(consumer)
        log.info("click consumer drained partitions=%s", sorted(self.owned))

    async def revoked(self) -> None:
        async with self.lock:  # the batch in flight finishes first, then the sinks catch up
            await self.sink_queue.join()
            self.to_commit = {}
            self.state.discard_pending()
            self.res.ch_sink.forget_partitions()
            self._forget_lag(self.owned)
            self.owned = set()
            self.generation += 1

    async def assigned(self, assigned: list[TopicPartition]) -> None:
        consumer = self.consumer
        if consumer is None:  # stopping: the consumer is leaving the group
            return
        partitions = sorted(tp.partition for tp in assigned if tp.topic == self.topic)
        async with self.lock:
            ids = await self.topic_ids.get([self.topic, self.changelog])
            if self.topic_ids.supported and self.topic not in ids:
                # Not an incarnation to start counting in: the assignment fails and the consumer
                # starts again (a broker still loading its topics after a restart).
                raise KafkaConnectionError(f"no topic id for {self.topic} yet")
            self.source_id, self.changelog_id = ids.get(self.topic), ids.get(self.changelog)
            # The stores are rebuilt from the changelog at every assignment (another worker may
            # have owned a partition meanwhile), unless the changelog is not the one a local store
            # mirrors: then the local store is the only copy left, and it re-seeds the changelog.
            self.state.release([p for p in list(self.state.partitions) if p not in partitions])
            self.processor.dedup_entries = {}
            await self.state.recover(partitions, self.changelog_id, (EXPIRY.encode(),))
            if self.state.reseeded:
                INCARNATIONS.labels(self.changelog).inc()
            for partition in partitions:
                self.processor.index_partition(partition)
            tps = [TopicPartition(self.topic, p) for p in partitions]
            committed = {tp: await consumer.committed(tp) for tp in tps}
            self.processor.sunk.clear()
            self.next_offsets = {}
            self.base = {}
            for tp in tps:
                same = self._incarnation(tp.partition)
                base = self.base[tp.partition]
                applied = self.state.get(tp.partition, PROGRESS)
                sunk = self.state.get(tp.partition, SUNK)
                # A committed offset is only meaningful in the incarnation it was committed in.
                done = committed[tp] if same else None
                start = resume_offset(applied, sunk, None if done is None else base + done)
                behind = 0 if done is None or start is None else base + done - start
                if behind > 0:
                    GAP_RECORDS.inc(behind)
                    log.warning(
                        "committed offset of %s[%s] is %s but the sinks have up to %s (tables: %s); "
                        "re-reading %s records",
                        self.topic, tp.partition, done, sunk, applied, behind,
                    )  # fmt: skip
                self.next_offsets[tp.partition] = start
                offset_next = None if start is None else start - base
                self.sunk_next[tp.partition] = offset_next if offset_next and offset_next > 0 else None
                self.fetched_end.pop(tp.partition, None)
                await self._seek(consumer, tp.partition, start)
            await until_written("changelog", self.state.flush)
            self.owned = set(partitions)
            self.last_progress = time.monotonic()
            self.generation += 1
            DEDUP_SIZE.set(sum(self.processor.dedup_entries.values()))

    def _incarnation(self, partition: int) -> bool:
        """Set the partition's base from its incarnation record; True if clicks.raw is the topic
        the record names. A new incarnation gets the next epoch, and the positions its tables
        applied but the sinks may not have got are remembered as uncertain (written with the next
        flush)."""
        record = self.state.get(partition, INCARNATION)
        applied = self.state.get(partition, PROGRESS)
        same = True
        if record is None:
            # First start, or state from before incarnations were recorded: the topic is the one
            # its offsets refer to (positions equal offsets in epoch 0).
            record = {"topic": self.source_id, "epoch": 0, "uncertain": []}
        elif record["topic"] != self.source_id:
            same = False
            sunk = self.state.get(partition, SUNK)
            uncertain = list(record.get("uncertain", []))
            if applied is not None and (sunk is None or sunk < applied):
                uncertain.append([-1 if sunk is None else sunk, applied])
            epoch = max(int(record["epoch"]) + 1, ((applied or 0) >> EPOCH_SHIFT) + 1)
            INCARNATIONS.labels(self.topic).inc()
            log.warning(
                "%s[%s] is a new incarnation of the topic (id %s, the tables knew %s): its offsets "
                "start over; counting continues from the tables as epoch %d%s",
                self.topic, partition, self.source_id, record["topic"], epoch,
                f", positions {uncertain[-1]} maybe not sunk" if uncertain else "",
            )  # fmt: skip
            record = {"topic": self.source_id, "epoch": epoch, "uncertain": uncertain[-16:]}
        self.state.set(partition, INCARNATION, record)
        self.base[partition] = int(record["epoch"]) << EPOCH_SHIFT
        self.processor.uncertain[partition] = record.get("uncertain", [])
        return same


def register(app: faust.App, res: WorkerResources) -> dict[str, Any]:
    # Not under Faust's datadir (wiped at every start): the click state is kept across restarts.
    datadir = res.settings.data_dir.resolve() / "click_state"
    clicks = ClickConsumer(res, datadir)

    running: list[asyncio.Task[None]] = []

    @task(app)
    async def click_consumer() -> None:
        task = asyncio.current_task()
        assert task is not None
        running.append(task)
        await until_stopped(clicks.run)

    @on_shutdown(app)
    async def _stop_click_consumer() -> None:
        # Finish what was fetched (the sinks included) and record it, then leave the group before
        # exiting (the consumer's `finally`), so the next worker is given the partitions at once
        # instead of after the session timeout.
        try:
            await asyncio.wait_for(clicks.drain(), DRAIN_TIMEOUT_SECONDS)
        except Exception:
            log.exception("click consumer did not drain before stopping; the next start replays")
        for job in running:
            job.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    return {"consumer": clicks, "state": clicks.state, "processor": clicks.processor}


async def until_stopped(run: Callable[[], Any]) -> None:
    """Run the consumer; an unexpected error restarts it after a pause (its state is rebuilt on
    assignment, so a restart loses nothing) instead of leaving the worker up but idle."""
    while True:
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except IncarnationChanged as exc:
            log.warning("%s", exc)
        except Exception:
            log.exception("click consumer failed; restarting in 1 s")
            await asyncio.sleep(1.0)
