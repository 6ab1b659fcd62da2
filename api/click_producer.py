"""The api's click producer on librdkafka (confluent-kafka), beside the aiokafka `ClickEmitter`.

Same contract as `api.click_journal.ClickEmitter` (emit, start, stop, depth, degraded; the journal is the
durable record and is written before a click is produced; both subclass `api.click_journal.JournaledEmitter`),
with two differences:

- **Group write per event-loop turn.** With `grouping` on (the front sets it), `emit` only adds
  the click to the turn's group; `commit()` — called by the front at the end of the turn, before
  it writes the turn's responses, or scheduled with `call_soon` for any other caller — appends
  the whole group to the journal in one write and hands each click to librdkafka.
- **librdkafka builds the record batches** in C on its own threads: `produce()` is ~1 µs of the
  api's Python per click where aiokafka's batch builder was ~15 µs (docs/performance.md).
  Delivery reports arrive through `poll(0)` once per turn (and every 50 ms when idle) and
  acknowledge journal segments with the partition offsets the broker gave; with the click
  consumer group (`group=`), a segment is kept until the worker committed past those offsets
  (`api.click_journal.DurabilityWatch`, as for ClickEmitter). Partitions: `murmur2_random`, Kafka's Java default (the worker's
  link-keyed tables rely on it; tested against aiokafka's DefaultPartitioner).

Broker down (all brokers down, or a delivery failed) → degraded: nothing more is produced, queued
messages are purged (every one is in the journal), and once the broker answers metadata again
the journal's segments are replayed in order before live producing resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Producer

from api.click_journal import (
    MAX_BATCH,
    ClickJournal,
    JournaledEmitter,
    click_key,
)
from api.metrics import CLICKS_PRODUCED, CLICKS_REPLAYED, CLICKS_SPOOLED
from engine.clicks.models import RawClick

log = logging.getLogger(__name__)
POLL_INTERVAL = 0.05
LINGER_MS = 20  # bigger batches: tansu 0.10 -> 0.07 cores and fewer broker-thread wake-ups at ~30k clicks/s
MESSAGE_TIMEOUT_MS = 10_000
REPLAY_WAIT_SECONDS = 30.0
REPLAY_SLICE = 200  # replayed clicks produced per event-loop turn (~0.5 ms)


class Emitter(Protocol):
    """What the api needs of a click emitter (ClickEmitter on aiokafka, RdKafkaClickEmitter)."""

    journal: ClickJournal
    degraded: bool

    def emit(self, click: RawClick) -> None: ...
    def emit_line(self, line: bytes, key: bytes) -> None: ...
    async def start(self) -> None: ...
    async def stop(self, within: float = 5.0) -> None: ...
    def depth(self) -> int: ...


class _Acks:
    """Delivery reports of one journal segment (librdkafka calls it once per message): how many
    were acknowledged, the highest offset per partition among them, and the clicks.raw
    incarnation known before they were sent (ClickJournal.ack holds the segment until the worker
    committed past those offsets)."""

    __slots__ = ("failed", "incarnation", "offsets", "ok")

    def __init__(self, incarnation: str) -> None:
        self.ok = 0
        self.failed = 0
        self.offsets: dict[int, int] = {}
        self.incarnation = incarnation

    def __call__(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            self.ok += 1
            partition, offset = msg.partition(), msg.offset()
            if offset > self.offsets.get(partition, -1):
                self.offsets[partition] = offset
        else:
            self.failed += 1


class RdKafkaClickEmitter(JournaledEmitter):
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
        self.grouping = False
        self.producer: Producer | None = None
        self._lines: list[bytes] = []
        self._keys: list[bytes] = []
        self._scheduled = False
        # Set by the front when its end-of-turn flush will call commit(): no call_soon needed.
        self.commit_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._acks: dict[int, _Acks] = {}
        self._brokers_down = False

    # --- the hot path --------------------------------------------------------------------------

    def emit_line(self, line: bytes, key: bytes) -> None:
        """A click already serialized (`RawClick.dumps` or `engine.clicks.models.click_line`),
        keyed by its link id."""
        self._lines.append(line)
        self._keys.append(key)
        if not self.grouping:
            self.commit()
            return
        if not self._scheduled and not self.commit_pending:
            self._scheduled = True
            loop = self._loop or asyncio.get_running_loop()
            loop.call_soon(self.commit)

    def commit(self) -> None:
        """Journal the group in one write, then hand every click of it to librdkafka."""
        self._scheduled = False
        self.commit_pending = False
        lines = self._lines
        if not lines:
            return
        keys = self._keys
        self._lines = []
        self._keys = []
        segment = self.journal.append_many(lines)
        producer = self.producer
        if self.degraded or producer is None:
            CLICKS_SPOOLED.inc(len(lines))
            return
        acks = self._acks.get(segment)
        if acks is None or acks.incarnation != self.journal.incarnation:
            if acks is not None:
                self._settle()
            acks = self._acks[segment] = _Acks(self.journal.incarnation)
        produce = producer.produce
        topic = self.topic
        try:
            for key, line in zip(keys, lines, strict=True):
                produce(topic, line, key, on_delivery=acks)
        except BufferError:
            log.warning("librdkafka queue full, journaling clicks")
            self._degrade()
            return
        producer.poll(0)
        self._settle()

    # --- delivery reports ------------------------------------------------------------------------

    def _settle(self) -> None:
        """Acknowledge delivered clicks in the journal; a failed delivery degrades."""
        failed = False
        for segment, acks in list(self._acks.items()):
            if acks.ok:
                count, acks.ok = acks.ok, 0
                offsets, acks.offsets = acks.offsets, {}
                held = offsets if self.watch is not None else None  # kept until durable downstream
                self.journal.ack(segment, count, offsets=held, incarnation=acks.incarnation)
                CLICKS_PRODUCED.inc(count)
            if acks.failed:
                acks.failed = 0
                failed = True
        if failed or self._brokers_down:
            self._degrade()

    def _on_error(self, err: KafkaError) -> None:
        code = err.code()
        if code == KafkaError._ALL_BROKERS_DOWN:
            self._brokers_down = True
        log.debug("librdkafka error=%s", err)

    def _degrade(self) -> None:
        if self.degraded:
            return
        self.degraded = True
        log.warning("broker unavailable for clicks, journaling")
        producer = self.producer
        if producer is not None:
            # Everything queued is in the journal already; the replay sends it in order.
            with contextlib.suppress(KafkaException, NotImplementedError):
                producer.purge(in_queue=True, in_flight=False, blocking=False)
            producer.poll(0)

    # --- lifecycle ---------------------------------------------------------------------------

    def _make_producer(self) -> Producer:
        return Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "acks": "all",
                "enable.idempotence": self.idempotence,
                "linger.ms": LINGER_MS,
                "partitioner": "murmur2_random",  # Kafka's Java default: the key's murmur2
                "message.timeout.ms": MESSAGE_TIMEOUT_MS,
                "queue.buffering.max.messages": 1_000_000,
                "socket.connection.setup.timeout.ms": 3000,
                "reconnect.backoff.max.ms": 1000,
                "error_cb": self._on_error,
                "logger": log,
            }
        )

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.producer = self._make_producer()
        await self._start_tasks(self._run(), "click-producer")

    async def _run(self) -> None:
        producer = self.producer
        assert producer is not None
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            self.commit()
            producer.poll(0)
            self._settle()
            if self.degraded and not self._stopping:
                try:
                    await self._replay(producer)
                except (KafkaException, OSError) as exc:
                    log.warning("click replay failed error=%s", exc)
                    await asyncio.sleep(0.5)

    async def _broker_up(self, producer: Producer) -> bool:
        try:
            await asyncio.to_thread(producer.list_topics, self.topic, 2.0)
        except KafkaException:
            return False
        return True

    async def _replay(self, producer: Producer) -> None:
        """Send every journaled segment in order, then switch back to live producing."""
        if not await self._broker_up(producer):
            await asyncio.sleep(0.5)
            return
        self._brokers_down = False
        while True:
            self.commit()
            if self.journal.pending_in_current():
                self.journal.rotate()
            pending = self.journal.closed_pending()
            if not pending:
                # No await between this check and the switch: no emit can slip in between.
                self.degraded = False
                log.info("click producer live again")
                return
            for segment in pending:
                lines = await asyncio.to_thread(self.journal.read, segment)  # 8 MB: not on the loop
                acks = _Acks(self.journal.incarnation)  # before sending: see ClickJournal.ack
                for start in range(0, len(lines), MAX_BATCH):
                    chunk = lines[start : start + MAX_BATCH]
                    if not await self._send(producer, chunk, acks):
                        await asyncio.sleep(0.5)
                        return
                held = acks.offsets if self.watch is not None else None
                self.journal.done(segment, offsets=held, incarnation=acks.incarnation)
                self._acks.pop(segment, None)
                CLICKS_REPLAYED.inc(len(lines))
                log.info("replayed journaled clicks segment=%d count=%d", segment, len(lines))

    async def _send(self, producer: Producer, lines: list[bytes], acks: _Acks) -> bool:
        """Produce `lines` and wait for every delivery report; False if any failed."""
        ok_before = acks.ok
        lines_expected = ok_before + len(lines)
        for index, line in enumerate(lines):
            if index % REPLAY_SLICE == REPLAY_SLICE - 1:
                await asyncio.sleep(0)  # live redirects get the loop between slices of a replay
            key = click_key(line)
            while True:
                try:
                    producer.produce(self.topic, line, key, on_delivery=acks)
                    break
                except BufferError:
                    producer.poll(0.01)
                    await asyncio.sleep(0)
        deadline = time.monotonic() + REPLAY_WAIT_SECONDS
        while acks.ok + acks.failed < lines_expected and time.monotonic() < deadline:
            producer.poll(0)
            await asyncio.sleep(0.01)
        return acks.ok == lines_expected and not acks.failed

    async def stop(self, within: float = 5.0, durable_within: float = 5.0) -> None:
        """Try to hand queued clicks to the broker, then (with a consumer group) wait up to
        `durable_within` for the worker to make them durable; whatever is left stays in the
        journal and is sent again by the next start."""
        self._stopping = True
        self.commit()
        producer = self.producer
        if producer is not None and not self.degraded:
            deadline = time.monotonic() + within
            while len(producer) and time.monotonic() < deadline and not self._brokers_down:
                producer.poll(0)
                await asyncio.sleep(0.01)
            producer.poll(0)
            self._settle()
        await self._end_tasks(durable_within)
        if producer is not None:
            with contextlib.suppress(KafkaException, NotImplementedError):
                producer.purge(in_queue=True, in_flight=True, blocking=False)
            producer.poll(0)
            self.producer = None
        self.journal.close()
