"""Hand raw clicks to Kafka without ever delaying a redirect, and never lose one.

`emit()` only appends to an in-memory queue. A background task batches the queue to the
producer; any click the broker does not acknowledge is appended to a local spool file (one
orjson line per click, flushed and fsynced per batch), and the spool is replayed in order once
the broker answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from api.metrics import CLICKS_PRODUCED, CLICKS_REPLAYED, CLICKS_SPOOLED
from engine.clicks.models import RawClick

log = logging.getLogger(__name__)
MAX_BATCH = 2000


class ClickSpool:
    """Append-only file of clicks the broker did not take yet."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, lines: list[bytes]) -> None:
        with open(self.path, "ab") as fh:
            fh.write(b"".join(line + b"\n" for line in lines))
            fh.flush()
            os.fsync(fh.fileno())

    def depth(self) -> int:
        if not self.path.exists():
            return 0
        with open(self.path, "rb") as fh:
            return sum(1 for _ in fh)

    def take_all(self) -> list[bytes]:
        """Rename the spool aside and return its lines (oldest first)."""
        if not self.path.exists():
            return []
        replay = self.path.with_suffix(".replaying")
        if not replay.exists():
            os.replace(self.path, replay)
        with open(replay, "rb") as fh:
            return [line.rstrip(b"\n") for line in fh if line.strip()]

    def done_replaying(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.with_suffix(".replaying").unlink()


class ClickEmitter:
    def __init__(self, bootstrap: str, topic: str, spool_path: Path, *, idempotence: bool = False) -> None:
        self.bootstrap = bootstrap
        self.idempotence = idempotence
        self.topic = topic
        self.spool = ClickSpool(spool_path)
        self.queue: asyncio.Queue[RawClick] = asyncio.Queue()
        self.producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._inflight: list[RawClick] = []
        self.connected = False

    def emit(self, click: RawClick) -> None:
        self.queue.put_nowait(click)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="click-emitter")

    async def _connect(self) -> AIOKafkaProducer:
        while True:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                acks="all",
                enable_idempotence=self.idempotence,
                linger_ms=2,
                request_timeout_ms=5000,
            )
            try:
                await producer.start()
                self.connected = True
                return producer
            except (KafkaError, OSError) as exc:
                log.warning("broker unavailable for clicks, spooling error=%s", exc)
                await producer.stop()
                await self._drain_to_spool()
                await asyncio.sleep(1.0)

    async def _drain_to_spool(self) -> None:
        batch = self._take_batch()
        if batch:
            self.spool.append([c.dumps() for c in batch])
            CLICKS_SPOOLED.inc(len(batch))

    def _take_batch(self) -> list[RawClick]:
        batch: list[RawClick] = []
        while not self.queue.empty() and len(batch) < MAX_BATCH:
            batch.append(self.queue.get_nowait())
        return batch

    async def _send(self, producer: AIOKafkaProducer, items: list[tuple[bytes, bytes]]) -> None:
        futures = [await producer.send(self.topic, value=value, key=key) for key, value in items]
        await asyncio.gather(*futures)

    async def _replay_spool(self, producer: AIOKafkaProducer) -> None:
        lines = self.spool.take_all()
        if not lines:
            return
        for start in range(0, len(lines), MAX_BATCH):
            chunk = lines[start : start + MAX_BATCH]
            await self._send(producer, [(RawClick.loads(v).link_id.encode(), v) for v in chunk])
        self.spool.done_replaying()
        CLICKS_REPLAYED.inc(len(lines))
        log.info("replayed spooled clicks count=%d", len(lines))

    async def _run(self) -> None:
        producer = await self._connect()
        self.producer = producer
        while True:
            try:
                await self._replay_spool(producer)
                if self.queue.empty():
                    if self._stopping:
                        return
                    first = await self.queue.get()
                    self.queue.put_nowait(first)
                batch = self._inflight = self._take_batch()
                try:
                    await self._send(producer, [(c.link_id.encode(), c.dumps()) for c in batch])
                    self._inflight = []
                    CLICKS_PRODUCED.inc(len(batch))
                except (KafkaError, OSError) as exc:
                    self.connected = False
                    log.warning("click produce failed, spooling count=%d error=%s", len(batch), exc)
                    self.spool.append([c.dumps() for c in batch])
                    self._inflight = []
                    CLICKS_SPOOLED.inc(len(batch))
                    await asyncio.sleep(0.5)
                    self.connected = True
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError) as exc:
                log.warning("click emitter error=%s", exc)
                await asyncio.sleep(0.5)

    async def stop(self, within: float = 5.0) -> None:
        """Flush what is queued (to the broker, else the spool) and stop."""
        self._stopping = True
        if self._task is not None:
            try:
                await asyncio.wait_for(self._flush_queue(), within)
            except TimeoutError:
                pass
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # Anything not acknowledged goes to the spool; at worst a click is sent twice, and the
        # worker drops duplicates by event id.
        if self._inflight:
            self.spool.append([c.dumps() for c in self._inflight])
            self._inflight = []
        await self._drain_to_spool()
        if self.producer is not None:
            await self.producer.stop()

    async def _flush_queue(self) -> None:
        # Two conditions owned by the sender task; a short poll during shutdown is simplest.
        while not self.queue.empty() or self._inflight:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if self.producer is not None:
            await self.producer.flush()
