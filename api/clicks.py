"""Hand raw clicks to Kafka without delaying a redirect, and never lose one.

Every click is first appended to a local journal (one `os.write` of one orjson line to an
append-only segment file; no fsync on the hot path, a background fsync every second), then
queued in memory for the producer. A segment file is deleted once every click in it was
acknowledged by the broker. So:

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
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner, murmur2

from api.metrics import CLICKS_PRODUCED, CLICKS_REPLAYED, CLICKS_SPOOLED, SPOOL_DEPTH
from engine.clicks.models import RawClick

log = logging.getLogger(__name__)
MAX_BATCH = 2000
SEGMENT_BYTES = 8 * 1024 * 1024
FSYNC_INTERVAL = 1.0
# How long the producer waits to fill a batch. Clicks are produced after the redirect answered,
# so this only delays the worker by a few ms, while each produce request (one per linger at
# most, per broker) costs the api ~100-200 µs of CPU: 2 ms meant hundreds of requests a second.
LINGER_MS = 10
_DEFAULT_PARTITIONER = DefaultPartitioner()


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
        self._segment = (self.recovered[-1] + 1) if self.recovered else 1
        self._fd = self._open(self._segment)
        self._size = 0
        self._dirty = False

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

    def rotate(self) -> int:
        """Close the current segment and start a new one; return the closed segment."""
        closed = self._segment
        os.close(self._fd)
        self._segment += 1
        self._fd = self._open(self._segment)
        self._size = 0
        self._maybe_delete(closed)
        return closed

    def ack(self, segment: int, count: int) -> None:
        if self._outstanding.get(segment, 0) > 0:
            self._outstanding[segment] -= count
        self._maybe_delete(segment)

    def done(self, segment: int) -> None:
        """Every click of a (closed) segment was acknowledged, e.g. after a replay."""
        self._outstanding[segment] = 0
        self._maybe_delete(segment)

    def _maybe_delete(self, segment: int) -> None:
        if segment != self._segment and self._outstanding.get(segment) == 0:
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
        """Clicks not yet acknowledged (recovered segments counted by their lines)."""
        return sum(n if n >= 0 else len(self.read(s)) for s, n in self._outstanding.items())

    def sync(self) -> None:
        if self._dirty:
            self._dirty = False
            os.fsync(self._fd)

    def close(self) -> None:
        self.sync()
        os.close(self._fd)
        self._maybe_delete_current_if_empty()
        os.close(self._lock_fd)

    def _maybe_delete_current_if_empty(self) -> None:
        if self._outstanding.get(self._segment) == 0:
            with contextlib.suppress(FileNotFoundError):
                self._path(self._segment).unlink()


def open_journal(root: Path, slots: int = 64) -> ClickJournal:
    """The first free journal slot under `root`: api processes sharing a data dir (e.g.
    `linkrift api --workers N`) each own one, and a restarted process recovers a dead one's."""
    for slot in range(slots):
        try:
            return ClickJournal(root / f"slot-{slot:02d}")
        except JournalInUse:
            continue
    raise JournalInUse(f"all {slots} click journal slots under {root} are in use")


class ClickEmitter:
    def __init__(
        self, bootstrap: str, topic: str, journal: ClickJournal, *, idempotence: bool = False
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.journal = journal
        self.idempotence = idempotence
        # (journal segment, key, serialized click): a click is serialized once, on emit.
        self.queue: asyncio.Queue[tuple[int, bytes, bytes]] = asyncio.Queue()
        self.producer: AIOKafkaProducer | None = None
        # Recovered segments must reach the broker before anything new, so start degraded.
        self.degraded = bool(self.journal.recovered)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._inflight = 0

    def emit(self, click: RawClick) -> None:
        line = click.dumps()
        segment = self.journal.append(line)
        if self.degraded:
            CLICKS_SPOOLED.inc()
        else:
            self.queue.put_nowait((segment, click.link_id.encode(), line))

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name="click-emitter"),
            asyncio.create_task(self._fsync_loop(), name="click-journal-fsync"),
        ]

    async def _fsync_loop(self) -> None:
        while True:
            await asyncio.sleep(FSYNC_INTERVAL)
            await asyncio.to_thread(self.journal.sync)
            SPOOL_DEPTH.set(self.depth())  # on the loop: the journal's bookkeeping is not thread-safe

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
            self.queue = asyncio.Queue()
            CLICKS_SPOOLED.inc(dropped)

    async def _send(self, producer: AIOKafkaProducer, values: list[bytes], keys: list[bytes]) -> None:
        """Produce the clicks in order per partition and wait until the broker has all of them.

        Built into one record batch per partition (`create_batch`/`send_batch`) instead of one
        `send` per click: aiokafka's per-message path costs the api several µs a click. The
        partition is the one `cached_partitioner` (Kafka's default) picks for the link id."""
        partitions = sorted(await producer.partitions_for(self.topic))
        builders: dict[int, Any] = {}
        futures = []
        for key, value in zip(keys, values, strict=True):
            partition = partitions[_key_hash(key) % len(partitions)]
            builder = builders.get(partition)
            if builder is None:
                builder = builders[partition] = producer.create_batch()
            if builder.append(key=key, value=value, timestamp=None) is None:  # full: send it
                futures.append(await producer.send_batch(builder, self.topic, partition=partition))
                builder = builders[partition] = producer.create_batch()
                builder.append(key=key, value=value, timestamp=None)
        for partition, builder in builders.items():
            futures.append(await producer.send_batch(builder, self.topic, partition=partition))
        # In order, not asyncio.gather: once the first is done the rest mostly are, and awaiting a
        # done future costs nothing, while gather puts a callback on every future (~1 µs a click).
        for future in futures:
            await future

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
                lines = self.journal.read(segment)
                for start in range(0, len(lines), MAX_BATCH):
                    chunk = lines[start : start + MAX_BATCH]
                    keys = [RawClick.loads(v).link_id.encode() for v in chunk]
                    await self._send(producer, chunk, keys)
                self.journal.done(segment)
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
                    self.queue.put_nowait(item)
                batch = [self.queue.get_nowait() for _ in range(min(MAX_BATCH, self.queue.qsize()))]
                self._inflight = len(batch)
                try:
                    await self._send(producer, [line for _, _, line in batch], [key for _, key, _ in batch])
                except (KafkaError, OSError) as exc:
                    log.warning("click produce failed, journaling count=%d error=%s", len(batch), exc)
                    self._degrade()
                    await asyncio.sleep(0.5)
                    continue
                finally:
                    self._inflight = 0
                acked: dict[int, int] = {}
                for segment, _, _ in batch:
                    acked[segment] = acked.get(segment, 0) + 1
                for segment, count in acked.items():
                    self.journal.ack(segment, count)
                CLICKS_PRODUCED.inc(len(batch))
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError) as exc:
                log.warning("click emitter error=%s", exc)
                self._degrade()
                await asyncio.sleep(0.5)

    async def stop(self, within: float = 5.0) -> None:
        """Try to hand queued clicks to the broker; whatever is left stays in the journal."""
        self._stopping = True
        deadline = time.monotonic() + within
        # Two conditions owned by the sender task; a short poll during shutdown is simplest.
        while (not self.queue.empty() or self._inflight) and not self.degraded:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.producer is not None:
            await self.producer.stop()
        self.journal.close()

    def depth(self) -> int:
        return self.journal.depth()
