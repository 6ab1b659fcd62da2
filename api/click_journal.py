"""Hand raw clicks to Kafka without delaying a redirect, and never lose one.

Every click is first appended to a local journal (one `os.write` of one orjson line to an
append-only segment file; no fsync on the hot path, a background fsync every second), then
queued in memory for the producer. A segment file is deleted once every click in it was
acknowledged by the broker *and* the worker has made it durable downstream: the click consumer
group's committed offset is past the offsets the broker gave the segment's clicks, in the same
incarnation (topic id) of clicks.raw (`ClickJournal.release`, fed by `DurabilityWatch`). A broker
that loses its log (memory storage restarted, a topic re-created) therefore loses no click: the
segments acknowledged by the lost incarnation are sent again. So:

- the broker is down → the producer marks itself degraded, drops its in-memory queue (every click
  is already on disk) and, once the broker answers, replays the segments in order;
- the api is killed (even SIGKILL) → the next api process with the same journal directory replays
  what was not acknowledged.

Replays can re-send a click that the broker had in fact taken (an acknowledgement lost in a
crash); every click carries its `event_id` and the worker drops duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner, murmur2

from api.metrics import (
    BACKEND_ERRORS,
    BACKEND_LATENCY,
    CLICKS_PRODUCED,
    CLICKS_REPLAYED,
    CLICKS_SPOOLED,
    SPOOL_DEPTH,
)
from engine.clicks.models import RawClick
from engine.kafka import TopicIds

log = logging.getLogger(__name__)
MAX_BATCH = 2000
SEGMENT_BYTES = 8 * 1024 * 1024
FSYNC_INTERVAL = 1.0
# How long the producer waits to fill a batch. Clicks are produced after the redirect answered,
# so this only delays the worker by a few ms, while each produce request (one per linger at
# most, per broker) costs the api ~100-200 µs of CPU: 2 ms meant hundreds of requests a second.
LINGER_MS = 10
_DEFAULT_PARTITIONER = DefaultPartitioner()
_WAKE = (-1, b"", b"")  # wakes a sender waiting on a queue that _degrade replaced
PRODUCE_LATENCY = BACKEND_LATENCY.labels("kafka_producer")
PRODUCE_ERRORS = BACKEND_ERRORS.labels("kafka_producer")


@functools.lru_cache(maxsize=65536)
def _key_hash(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


def cached_partitioner(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """aiokafka's DefaultPartitioner (Kafka's murmur2 of the key, so clicks land on the partition
    the worker's link-keyed tables expect) with the pure-Python hash cached per key: the key is
    the link id, and hot links repeat."""
    if key is None:
        return int(_DEFAULT_PARTITIONER(key, all_partitions, available))
    return all_partitions[_key_hash(key) % len(all_partitions)]


class JournalInUse(RuntimeError):
    """Another live process owns this journal directory."""


class ClickJournal:
    """Append-only segment files `<n>.jsonl` in one directory, owned by one process (flock)."""

    def __init__(self, directory: Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(directory / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise JournalInUse(f"click journal {directory} is in use by another process") from None
        # Segments left by a previous process: nothing in them is known to be acknowledged.
        self.recovered: list[int] = sorted(int(p.stem) for p in directory.glob("*.jsonl"))
        self._outstanding: dict[int, int] = dict.fromkeys(self.recovered, -1)  # -1: unknown, replay all
        # Lines in each closed segment whose count is unknown (-1), counted once: a large backlog
        # read again on every depth() stalled the event loop for as long as the read took.
        self._line_counts: dict[int, int] = {}
        self._segment = (self.recovered[-1] + 1) if self.recovered else 1
        self._fd = self._open(self._segment)
        self._size = 0
        self._dirty = False
        # Rotated segments' fds, fsynced and closed by sync() (which may run in a thread).
        self._closing: list[int] = []
        self._closing_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        # Per segment, the highest offset per (clicks.raw incarnation, partition) the broker gave
        # its acknowledged clicks: the segment stays until the click consumer group committed past
        # each (`release`). Segments acknowledged without offsets are not held.
        self._held: dict[int, dict[tuple[str, int], int]] = {}
        # The clicks.raw topic id last seen by `release` ("" before, or without topic ids).
        self.incarnation = ""

    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment:012d}.jsonl"

    def _open(self, segment: int) -> int:
        self._outstanding.setdefault(segment, 0)
        return os.open(self._path(segment), os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)

    @property
    def current(self) -> int:
        return self._segment

    def append(self, line: bytes) -> int:
        """Write one click; return its segment. One write call: a crash leaves whole lines."""
        os.write(self._fd, line + b"\n")
        self._size += len(line) + 1
        self._outstanding[self._segment] += 1
        self._dirty = True
        segment = self._segment
        if self._size >= self.segment_bytes:
            self.rotate()
        return segment

    def append_many(self, lines: list[bytes]) -> int:
        """Write several clicks in one write call (the front's group per event-loop turn);
        return their segment."""
        data = b"\n".join(lines) + b"\n"
        os.write(self._fd, data)
        self._size += len(data)
        self._outstanding[self._segment] += len(lines)
        self._dirty = True
        segment = self._segment
        if self._size >= self.segment_bytes:
            self.rotate()
        return segment

    def rotate(self) -> int:
        """Close the current segment and start a new one; return the closed segment. Its file is
        fsynced and closed by the next sync() (off the event loop): closing it here left the
        clicks of its last second without an fsync, and raced the fsync thread for the fd."""
        closed = self._segment
        with self._closing_lock:
            self._closing.append(self._fd)
        self._segment += 1
        self._fd = self._open(self._segment)
        self._size = 0
        self._maybe_delete(closed)
        return closed

    def ack(
        self,
        segment: int,
        count: int,
        *,
        offsets: Mapping[int, int] | None = None,
        incarnation: str | None = None,
    ) -> None:
        """`count` clicks of `segment` were acknowledged by the broker. `offsets`: the highest
        offset per partition among them (or among a batch holding them), `incarnation`: the
        clicks.raw topic id known *before* they were sent; with them, the segment is kept until
        `release` finds those offsets durable downstream."""
        if self._outstanding.get(segment, 0) > 0:
            self._outstanding[segment] -= count
        self._hold(segment, offsets, incarnation)
        self._maybe_delete(segment)

    def done(
        self,
        segment: int,
        *,
        offsets: Mapping[int, int] | None = None,
        incarnation: str | None = None,
    ) -> None:
        """Every click of a (closed) segment was acknowledged, e.g. after a replay."""
        self._outstanding[segment] = 0
        self._hold(segment, offsets, incarnation)
        self._maybe_delete(segment)

    def _hold(self, segment: int, offsets: Mapping[int, int] | None, incarnation: str | None) -> None:
        if not offsets:
            return
        held = self._held.setdefault(segment, {})
        for partition, offset in offsets.items():
            key = (incarnation if incarnation is not None else self.incarnation, partition)
            held[key] = max(offset, held.get(key, -1))

    def release(self, incarnation: str, committed: Mapping[int, int]) -> bool:
        """Forget what the click consumer group made durable: `committed` is its next offset per
        partition of clicks.raw, whose topic id is `incarnation`. Segments acknowledged by another
        incarnation (the topic was re-created, or the broker lost it) are marked to be sent
        again; returns True if there are any."""
        self.incarnation = incarnation
        stale = False
        for segment in list(self._held):
            held = self._held[segment]
            if any(not inc for inc, _ in held):
                # Sent before any topic id was known (the first moments of a process): taken to be
                # in the first incarnation seen.
                for inc, partition in [k for k in held if not k[0]]:
                    offset = held.pop((inc, partition))
                    key = (incarnation, partition)
                    held[key] = max(offset, held.get(key, -1))
            if any(inc != incarnation for inc, _ in held):
                # Nothing says the worker got them: send the whole segment again (the worker
                # drops the copies it has). Closed first: new clicks go to a new segment.
                if segment == self._segment:
                    self.rotate()
                del self._held[segment]
                self._outstanding[segment] = -1
                stale = True
                continue
            for key in [k for k, offset in held.items() if committed.get(k[1], -1) > offset]:
                del held[key]
            if not held:
                del self._held[segment]
                self._maybe_delete(segment)
        if self._size and self._outstanding.get(self._segment) == 0 and self._segment not in self._held:
            self.rotate()  # the current segment is all durable: start a new one, drop this one
        return stale

    def _maybe_delete(self, segment: int) -> None:
        if self._outstanding.get(segment, 0) >= 0:
            self._line_counts.pop(segment, None)
        if segment != self._segment and self._outstanding.get(segment) == 0 and segment not in self._held:
            del self._outstanding[segment]
            with contextlib.suppress(FileNotFoundError):
                self._path(segment).unlink()

    def closed_pending(self) -> list[int]:
        return sorted(s for s, n in self._outstanding.items() if s != self._segment and n != 0)

    def pending_in_current(self) -> int:
        return self._outstanding.get(self._segment, 0)

    def read(self, segment: int) -> list[bytes]:
        try:
            with open(self._path(segment), "rb") as fh:
                return [line.rstrip(b"\n") for line in fh if line.endswith(b"\n") and line.strip()]
        except FileNotFoundError:
            return []

    def depth(self) -> int:
        """Clicks not yet acknowledged (recovered segments counted by their lines, once)."""
        total = 0
        for segment, count in self._outstanding.items():
            if count < 0:
                known = self._line_counts.get(segment)
                count = self._line_counts[segment] = len(self.read(segment)) if known is None else known
            total += count
        return total

    def uncounted(self) -> list[int]:
        """Closed segments of unknown size whose lines depth() has not counted yet."""
        return [s for s, n in self._outstanding.items() if n < 0 and s not in self._line_counts]

    def count_lines(self, segments: list[int]) -> dict[int, int]:
        """Lines per segment, read from the files: safe in a thread (closed segments do not change)."""
        return {segment: len(self.read(segment)) for segment in segments}

    def remember_counts(self, counts: Mapping[int, int]) -> None:
        for segment, count in counts.items():
            if self._outstanding.get(segment, 0) < 0:
                self._line_counts[segment] = count

    def held(self) -> int:
        """Segments acknowledged by the broker but not yet known durable downstream."""
        return len(self._held)

    def sync(self) -> None:
        """fsync what was written (rotated segments first, then closed); called from a thread."""
        with self._sync_lock:
            with self._closing_lock:
                closing, self._closing = self._closing, []
            for fd in closing:
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            if self._dirty:
                self._dirty = False
                os.fsync(self._fd)

    def close(self) -> None:
        self.sync()
        os.close(self._fd)
        self._maybe_delete_current_if_empty()
        os.close(self._lock_fd)

    def _maybe_delete_current_if_empty(self) -> None:
        if self._outstanding.get(self._segment) == 0 and self._segment not in self._held:
            with contextlib.suppress(FileNotFoundError):
                self._path(self._segment).unlink()


def click_key(line: bytes) -> bytes:
    """The Kafka key (link id) of a journaled click line."""
    return str(orjson.loads(line)["link_id"]).encode()


def open_journal(root: Path, slots: int = 64) -> ClickJournal:
    """The first free journal slot under `root`: api processes sharing a data dir (e.g.
    `linkrift api --workers N`) each own one, and a restarted process recovers a dead one's."""
    for slot in range(slots):
        try:
            return ClickJournal(root / f"slot-{slot:02d}")
        except JournalInUse:
            continue
    raise JournalInUse(f"all {slots} click journal slots under {root} are in use")


async def fsync_forever(journal: ClickJournal, depth: Callable[[], int]) -> None:
    """Every FSYNC_INTERVAL: fsync the journal off the loop and report the spool depth (on the
    loop: the journal's bookkeeping is not thread-safe). Both click producers run this."""
    while True:
        await asyncio.sleep(FSYNC_INTERVAL)
        await asyncio.to_thread(journal.sync)
        uncounted = journal.uncounted()
        if uncounted:  # a recovered backlog: its lines are counted off the loop, once
            journal.remember_counts(await asyncio.to_thread(journal.count_lines, uncounted))
        SPOOL_DEPTH.set(depth())


async def start_release(watch: DurabilityWatch | None) -> list[asyncio.Task[None]]:
    """The journal's release task (segments go once the worker committed past them), after a first
    check; none without a consumer group to watch."""
    if watch is None:
        return []
    await watch.first_check()
    return [asyncio.create_task(watch.run(), name="click-journal-release")]


class JournaledEmitter(ABC):
    """What the two click emitters share (`ClickEmitter` on aiokafka, `api.click_producer.
    RdKafkaClickEmitter` on librdkafka): the broker and topic, the journal every click is written
    to first, the release watch on the click consumer group, the degraded flag, and the background
    tasks' start and end. Each emitter has its own hot path (`emit_line`) and its own `_degrade`."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        journal: ClickJournal,
        *,
        idempotence: bool = False,
        group: str | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.journal = journal
        self.idempotence = idempotence
        # The click consumer group: with it, journal segments are kept until it committed past
        # them (DurabilityWatch); without it, until the broker acknowledged them.
        self.watch = DurabilityWatch(bootstrap, topic, group, journal, self._degrade) if group else None
        # Recovered segments must reach the broker before anything new, so start degraded.
        self.degraded = bool(journal.recovered)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def emit(self, click: RawClick) -> None:
        self.emit_line(click.dumps(), click.link_id.encode())

    @abstractmethod
    def emit_line(self, line: bytes, key: bytes) -> None:
        """Journal a click already serialized (`RawClick.dumps` or
        `engine.clicks.models.click_line`), keyed by its link id, and send it on."""

    @abstractmethod
    def _degrade(self) -> None:
        """Stop sending: every click is in the journal, and the replay sends it in order."""

    async def _start_tasks(self, sender: Coroutine[Any, Any, None], name: str) -> None:
        """The sender task, the journal's fsync task and, with a consumer group, the release watch."""
        self._tasks = [
            asyncio.create_task(sender, name=name),
            asyncio.create_task(fsync_forever(self.journal, self.depth), name="click-journal-fsync"),
            *await start_release(self.watch),
        ]

    async def _end_tasks(self, durable_within: float) -> None:
        """At stop, once the sender handed over what it could: wait (with a consumer group) up to
        `durable_within` for the worker to make it durable, then end the background tasks."""
        if self.watch is not None and not self.degraded:
            await self.watch.wait_durable(durable_within)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def depth(self) -> int:
        return self.journal.depth()


class ClickEmitter(JournaledEmitter):
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        journal: ClickJournal,
        *,
        idempotence: bool = False,
        group: str | None = None,
    ) -> None:
        super().__init__(bootstrap, topic, journal, idempotence=idempotence, group=group)
        # (journal segment, key, serialized click): a click is serialized once, on emit.
        self.queue: asyncio.Queue[tuple[int, bytes, bytes]] = asyncio.Queue()
        self.producer: AIOKafkaProducer | None = None
        self._inflight = 0

    def emit_line(self, line: bytes, key: bytes) -> None:
        """A click already serialized, keyed by its link id."""
        segment = self.journal.append(line)
        if self.degraded:
            CLICKS_SPOOLED.inc()
        else:
            self.queue.put_nowait((segment, key, line))

    async def start(self) -> None:
        await self._start_tasks(self._run(), "click-emitter")

    async def _connect(self) -> AIOKafkaProducer:
        while True:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                acks="all",
                enable_idempotence=self.idempotence,
                linger_ms=LINGER_MS,
                partitioner=cached_partitioner,
                request_timeout_ms=5000,
            )
            try:
                await producer.start()
                return producer
            except (KafkaError, OSError) as exc:
                log.warning("broker unavailable for clicks, journaling error=%s", exc)
                await producer.stop()
                self._degrade()
                await asyncio.sleep(1.0)

    def _degrade(self) -> None:
        if not self.degraded:
            self.degraded = True
            # Every queued click is in the journal already; the replay will send it in order.
            dropped = self.queue.qsize()
            old, self.queue = self.queue, asyncio.Queue()
            old.put_nowait(_WAKE)  # the sender may be waiting on the old queue (DurabilityWatch)
            CLICKS_SPOOLED.inc(dropped)

    async def _send(
        self, producer: AIOKafkaProducer, values: list[bytes], keys: list[bytes]
    ) -> dict[int, int]:
        """Produce the clicks in order per partition and wait until the broker has all of them;
        returns the highest offset the broker gave them per partition.

        Built into one record batch per partition (`create_batch`/`send_batch`) instead of one
        `send` per click: aiokafka's per-message path costs the api several µs a click. The
        partition is the one `cached_partitioner` (Kafka's default) picks for the link id."""
        partitions = sorted(await producer.partitions_for(self.topic))
        builders: dict[int, Any] = {}
        futures: list[tuple[int, Any]] = []
        for key, value in zip(keys, values, strict=True):
            partition = partitions[_key_hash(key) % len(partitions)]
            builder = builders.get(partition)
            if builder is None:
                builder = builders[partition] = producer.create_batch()
            if builder.append(key=key, value=value, timestamp=None) is None:  # full: send it
                count = builder.record_count()
                futures.append((count, await producer.send_batch(builder, self.topic, partition=partition)))
                builder = builders[partition] = producer.create_batch()
                builder.append(key=key, value=value, timestamp=None)
        for partition, builder in builders.items():
            count = builder.record_count()
            futures.append((count, await producer.send_batch(builder, self.topic, partition=partition)))
        # In order, not asyncio.gather: once the first is done the rest mostly are, and awaiting a
        # done future costs nothing, while gather puts a callback on every future (~1 µs a click).
        offsets: dict[int, int] = {}
        for count, future in futures:
            meta = await future
            last = meta.offset + count - 1  # a batch's offset is its first record's
            offsets[meta.partition] = max(last, offsets.get(meta.partition, -1))
        return offsets

    async def _replay(self, producer: AIOKafkaProducer) -> None:
        """Send every journaled segment in order, then switch back to the in-memory path."""
        while True:
            if self.journal.pending_in_current():
                self.journal.rotate()
            pending = self.journal.closed_pending()
            if not pending:
                # No await between this check and the switch: no emit can slip in between.
                self.degraded = False
                return
            for segment in pending:
                lines = await asyncio.to_thread(self.journal.read, segment)  # 8 MB: not on the loop
                incarnation = self.journal.incarnation
                offsets: dict[int, int] = {}
                for start in range(0, len(lines), MAX_BATCH):
                    chunk = lines[start : start + MAX_BATCH]
                    keys = [click_key(v) for v in chunk]
                    for partition, offset in (await self._send(producer, chunk, keys)).items():
                        offsets[partition] = max(offset, offsets.get(partition, -1))
                self.journal.done(
                    segment, offsets=offsets if self.watch is not None else None, incarnation=incarnation
                )
                CLICKS_REPLAYED.inc(len(lines))
                log.info("replayed journaled clicks segment=%d count=%d", segment, len(lines))

    async def _run(self) -> None:
        producer = self.producer = await self._connect()
        while True:
            try:
                if self.degraded:
                    await self._replay(producer)
                    continue
                if self.queue.empty():
                    if self._stopping:
                        return
                    item = await self.queue.get()
                    if self.degraded:
                        continue  # woken by _degrade: everything queued is in the journal
                    self.queue.put_nowait(item)
                batch = [self.queue.get_nowait() for _ in range(min(MAX_BATCH, self.queue.qsize()))]
                self._inflight = len(batch)
                incarnation = self.journal.incarnation  # before sending: see ClickJournal.ack
                started = time.perf_counter()
                try:
                    offsets = await self._send(
                        producer, [line for _, _, line in batch], [key for _, key, _ in batch]
                    )
                    PRODUCE_LATENCY.observe(time.perf_counter() - started)
                except (KafkaError, OSError) as exc:
                    PRODUCE_ERRORS.inc()
                    log.warning("click produce failed, journaling count=%d error=%s", len(batch), exc)
                    self._degrade()
                    await asyncio.sleep(0.5)
                    continue
                finally:
                    self._inflight = 0
                held = offsets if self.watch is not None else None  # kept until durable
                acked: dict[int, int] = {}
                for segment, _, _ in batch:
                    acked[segment] = acked.get(segment, 0) + 1
                for segment, count in acked.items():
                    self.journal.ack(segment, count, offsets=held, incarnation=incarnation)
                CLICKS_PRODUCED.inc(len(batch))
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError) as exc:
                log.warning("click emitter error=%s", exc)
                self._degrade()
                await asyncio.sleep(0.5)

    async def stop(self, within: float = 5.0, durable_within: float = 5.0) -> None:
        """Try to hand queued clicks to the broker, then (with a consumer group) wait up to
        `durable_within` for the worker to make them durable; whatever is left stays in the
        journal and is sent again by the next start."""
        self._stopping = True
        deadline = time.monotonic() + within
        # Two conditions owned by the sender task; a short poll during shutdown is simplest.
        while (not self.queue.empty() or self._inflight) and not self.degraded:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)
        await self._end_tasks(durable_within)
        if self.producer is not None:
            await self.producer.stop()
        self.journal.close()


# How often the api asks the broker what the click consumer group has committed.
RELEASE_INTERVAL = 0.5


class DurabilityWatch:
    """Tells the journal what the worker made durable: every RELEASE_INTERVAL, the click consumer
    group's committed offsets and the topic id of clicks.raw (`ClickJournal.release`). Segments
    acknowledged by another incarnation of the topic are sent again (`on_stale`)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        journal: ClickJournal,
        on_stale: Callable[[], None],
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = group
        self.journal = journal
        self.on_stale = on_stale
        # Whether the click consumer group was seen committing: without a worker (a test api, a
        # platform whose worker never started) a stop has nothing to wait for.
        self.worker_seen = False

    async def wait_durable(self, within: float) -> None:
        """At a clean stop: wait up to `within` for the worker to make the held clicks durable, if
        a worker is known to consume them; what is still held is sent again by the next start."""
        if not self.worker_seen:
            return
        deadline = time.monotonic() + within
        while self.journal.held() and time.monotonic() < deadline:  # noqa: ASYNC110 - run() releases
            await asyncio.sleep(0.05)
        if self.journal.held():
            log.warning(
                "click journal: %d segments not yet durable downstream at stop; the next start "
                "sends them again", self.journal.held(),
            )  # fmt: skip

    async def first_check(self, within: float = 3.0) -> None:
        """Learn the topic id before the first click is sent (best effort: the broker may be down)."""
        ids = TopicIds(self.bootstrap)
        try:
            await asyncio.wait_for(self.check(ids), within)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.info("click journal: topic id not known at start error=%r", exc)
        finally:
            await ids.close()

    async def run(self) -> None:
        ids = TopicIds(self.bootstrap)
        try:
            while True:
                try:
                    await asyncio.wait_for(self.check(ids), 10.0)
                except Exception as exc:  # the watch must outlive any broker answer
                    log.warning("click journal release check failed error=%r", exc)
                    await ids.close()
                await asyncio.sleep(RELEASE_INTERVAL)
        finally:
            await ids.close()

    async def check(self, ids: TopicIds) -> None:
        topic_id = (await ids.get([self.topic])).get(self.topic, "")
        if not self.journal.held() or not topic_id:
            # Nothing waits for the worker, or the topic is missing right now (being created
            # again?): keep the incarnation current for the next acks, release nothing.
            self.journal.incarnation = topic_id
            return
        offsets = await ids.committed(self.group, self.topic, ids.partitions.get(self.topic, 0))
        # Only offsets committed for this incarnation: the worker puts the topic id in the commit's
        # metadata. A broker that keeps no metadata (tansu answers "") must drop a deleted topic's
        # group offsets, as Apache Kafka and tansu do (checked for tansu 0.6).
        committed = {p: offset for p, (offset, metadata) in offsets.items() if metadata in (topic_id, "")}
        self.worker_seen = self.worker_seen or bool(committed)
        if self.journal.release(topic_id, committed):
            log.warning(
                "clicks.raw %s is another incarnation (id %s): journaled clicks it acknowledged "
                "are sent again", self.topic, topic_id or "?",
            )  # fmt: skip
            self.on_stale()
