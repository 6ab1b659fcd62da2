"""The click consumer's per-partition state: RocksDB (rocksdict) backed by a compacted changelog.

One store per `clicks.raw` partition the worker owns, holding the click consumer's state under one
key space (the STATE_* prefixes of engine/naming.py): link counters, the visitor index, the event-id index,
workspace shares and the last applied source offset. Writes are buffered per batch and made
durable by `flush`: every changed key is produced to the changelog partition of the same number
(one record batch per partition, acks=all) and only then written to RocksDB. After any crash the
changelog is the truth: on assignment a partition's local store is wiped and rebuilt from it, so
RocksDB never holds a write the changelog lacks (which is what the batch logic relies on: any
subset of a batch's writes may have reached the changelog, and each key recognises a replay by
itself).

The local stores are kept across restarts (under `<data_dir>/click_state`), and each remembers
the id of the changelog topic it mirrors (a local-only key). On assignment: the same changelog →
rebuilt from it as above (another worker may have owned the partition meanwhile); a changelog that
is not the one the store mirrors (the topic was deleted and created again, or a broker with memory
storage restarted) → the local store is the only copy left, and every key of it is written to the
new changelog ("re-seeded"), see docs/pipeline.md ("Broker and topic incarnations").

This is the Faust table design (changelog-backed RocksDB, co-partitioned with its source) without
Faust's per-event path, which alone limits an agent to ~10k events/s here (bench/pipeline.py,
docs/pipeline.md).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import Counter, Gauge
from rocksdict import Options, Rdict, WriteBatch

log = logging.getLogger(__name__)

CHANGELOG_RECORDS = Counter(
    "linkrift_click_state_changelog_records_total", "Click state changes written to the changelog"
)
RECOVERED_RECORDS = Counter(
    "linkrift_click_state_recovered_records_total", "Changelog records replayed into local state"
)
STATE_KEYS = Gauge("linkrift_click_state_partitions", "Click state partitions held by this worker")
RESEEDED = Counter(
    "linkrift_click_state_reseeded_total",
    "Click state partitions written from the local store into a changelog that was not the one it mirrored",
)

_MISSING = object()
# Written to a changelog partition at the start of its recovery; read back, it ends the recovery.
# One fixed key, so compaction keeps only the latest.
MARKER = b"\x00recovery-marker"
# Local-only key: the id of the changelog topic this store mirrors (never changelogged).
CHANGELOG_ID = b"\x00changelog-id"


class PartitionState:
    """One partition's RocksDB plus the batch's not yet durable writes (read through)."""

    def __init__(self, path: Path, *, keep: bool = False) -> None:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = Rdict(str(path), options=Options(raw_mode=True))
        self.pending: dict[bytes, bytes | None] = {}
        # Writes to RocksDB only (an index derived from changelogged keys, rebuilt on recovery).
        self.local: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        value = self.pending.get(key, _MISSING)
        if value is not _MISSING:
            return value  # type: ignore[return-value]
        return self.db.get(key)

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Durable (key, value) pairs whose key starts with `prefix`."""
        it = self.db.iter()
        it.seek(prefix)
        while it.valid():
            key = it.key()
            if not key.startswith(prefix):
                return
            yield key, it.value()
            it.next()

    def local_changelog(self) -> str | None:
        value = self.db.get(CHANGELOG_ID)
        return None if value is None else bytes(value).decode()

    def holds_data(self) -> bool:
        it = self.db.iter()
        it.seek_to_first()
        while it.valid():
            if it.key() != CHANGELOG_ID:
                return True
            it.next()
        return False

    def close(self, *, remove: bool) -> None:
        self.db.close()
        if remove:
            shutil.rmtree(self.path, ignore_errors=True)


class ClickState:
    """Per-partition stores for the partitions this worker owns."""

    def __init__(self, bootstrap: str, topic: str, datadir: Path, *, recovery_timeout: float = 300.0) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.datadir = datadir
        self.recovery_timeout = recovery_timeout
        self.partitions: dict[int, PartitionState] = {}
        self.reseeded: list[int] = []  # by the last `recover`
        self.producer: AIOKafkaProducer | None = None

    # -- reads and buffered writes -------------------------------------------------------------

    def get(self, partition: int, key: str) -> Any:
        raw = self.partitions[partition].get(key.encode())
        return None if raw is None else orjson.loads(raw)

    def set(self, partition: int, key: str, value: Any) -> None:
        self.partitions[partition].pending[key.encode()] = orjson.dumps(value)

    def delete(self, partition: int, key: str) -> None:
        self.partitions[partition].pending[key.encode()] = None

    def set_local(self, partition: int, key: str, value: bytes | None) -> None:
        """A RocksDB-only write (None deletes), made with the next flush but never changelogged:
        for indexes the owner derives from changelogged keys (and rebuilds after recovery)."""
        self.partitions[partition].local[key.encode()] = value

    def write_local(self, partition: int, entries: Iterator[tuple[str, bytes]]) -> int:
        """RocksDB-only writes made at once (rebuilding a derived index); returns how many."""
        batch = WriteBatch(raw_mode=True)
        n = 0
        for key, value in entries:
            batch.put(key.encode(), value)
            n += 1
        self.partitions[partition].db.write(batch)
        return n

    def keys_before(self, partition: int, prefix: str, end: str) -> list[str]:
        """Durable keys starting with `prefix` that sort before `end` (RocksDB keys are ordered)."""
        out: list[str] = []
        stop = end.encode()
        for key, _ in self.partitions[partition].scan(prefix.encode()):
            if key >= stop:
                break
            out.append(key.decode())
        return out

    def scan(self, partition: int, prefix: str) -> Iterator[tuple[str, Any]]:
        for key, value in self.partitions[partition].scan(prefix.encode()):
            yield key.decode(), orjson.loads(value)

    def discard_pending(self) -> None:
        for state in self.partitions.values():
            state.pending.clear()
            state.local.clear()

    async def flush(self) -> int:
        """Make every buffered write durable: changelog first (acknowledged by the broker), then
        RocksDB. Safe to call again after a failure: the writes stay buffered until both are done,
        and re-sending a key's final value is harmless. Returns how many keys were written."""
        dirty = {p: s for p, s in self.partitions.items() if s.pending or s.local}
        if not dirty:
            return 0
        producer = await self._producer()
        futures = []
        for partition, state in dirty.items():
            if not state.pending:
                continue
            builder = producer.create_batch()
            for key, value in state.pending.items():
                if builder.append(key=key, value=value, timestamp=None) is None:
                    futures.append(await producer.send_batch(builder, self.topic, partition=partition))
                    builder = producer.create_batch()
                    builder.append(key=key, value=value, timestamp=None)
            futures.append(await producer.send_batch(builder, self.topic, partition=partition))
        for future in futures:
            await future
        written = 0
        for state in dirty.values():
            batch = WriteBatch(raw_mode=True)
            for key, value in (*state.pending.items(), *state.local.items()):
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)
            state.db.write(batch)
            written += len(state.pending)
            state.pending.clear()
            state.local.clear()
        CHANGELOG_RECORDS.inc(written)
        return written

    # -- ownership -------------------------------------------------------------------------------

    async def recover(
        self, partitions: list[int], changelog_id: str | None = None, local_only: tuple[bytes, ...] = ()
    ) -> int:
        """Set up the local stores of `partitions`: rebuilt from their changelog partitions, or,
        for a local store that mirrors another changelog than `changelog_id` (the topic's id now),
        kept and written into this changelog (keys starting with a `local_only` prefix are not;
        `self.reseeded` lists those partitions). Returns how many changelog records were replayed."""
        self.reseeded = []
        if not partitions:
            return 0
        rebuild: list[int] = []
        reseed: list[int] = []
        for partition in partitions:
            old = self.partitions.pop(partition, None)
            if old is not None:
                old.close(remove=False)
            state = PartitionState(self.datadir / f"p{partition}", keep=True)
            mirrored = state.local_changelog()
            if changelog_id is not None and mirrored not in (None, changelog_id) and state.holds_data():
                self.partitions[partition] = state
                reseed.append(partition)
            else:
                state.close(remove=True)
                self.partitions[partition] = PartitionState(self.datadir / f"p{partition}")
                rebuild.append(partition)
        replayed = await self._rebuild(rebuild)
        self.reseeded = reseed
        for partition in reseed:
            await self.reseed(partition, changelog_id, local_only)  # type: ignore[arg-type]
        if changelog_id is not None:
            for partition in partitions:
                self.partitions[partition].db[CHANGELOG_ID] = changelog_id.encode()
        STATE_KEYS.set(len(self.partitions))
        return replayed

    async def reseed(self, partition: int, changelog_id: str, local_only: tuple[bytes, ...] = ()) -> int:
        """Write every durable key of a partition's local store to its changelog partition (the
        changelog is not the one the store mirrored: its records are gone); returns how many."""
        state = self.partitions[partition]
        producer = await self._producer()
        futures = []
        builder = producer.create_batch()
        written = 0
        for key, value in state.scan(b""):
            if key == CHANGELOG_ID or key.startswith(local_only):
                continue
            if builder.append(key=key, value=value, timestamp=None) is None:
                futures.append(await producer.send_batch(builder, self.topic, partition=partition))
                builder = producer.create_batch()
                builder.append(key=key, value=value, timestamp=None)
            written += 1
        futures.append(await producer.send_batch(builder, self.topic, partition=partition))
        for future in futures:
            await future
        state.db[CHANGELOG_ID] = changelog_id.encode()
        RESEEDED.inc()
        CHANGELOG_RECORDS.inc(written)
        log.warning(
            "click state partition %s re-seeded into changelog %s (id %s) from the local store: %d keys",
            partition, self.topic, changelog_id, written,
        )  # fmt: skip
        return written

    async def _rebuild(self, partitions: list[int]) -> int:
        """Rebuild the (emptied) local stores of `partitions` from their changelog partitions;
        returns how many records were replayed."""
        if not partitions:
            return 0
        # Read up to a marker written now, not up to ListOffsets' high watermark: tansu answers the
        # base offset of the last record batch + 1 there (a partition holding batches of 100 and
        # 50 records reported 101, measured), which would stop recovery early.
        producer = await self._producer()
        sent = [await producer.send(self.topic, key=MARKER, value=b"", partition=p) for p in partitions]
        markers = {
            TopicPartition(self.topic, p): (await future).offset
            for p, future in zip(partitions, sent, strict=True)
        }
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await consumer.start()
        replayed = 0
        started = time.monotonic()
        try:
            consumer.assign(list(markers))
            await consumer.seek_to_beginning(*markers)
            remaining = set(markers)
            while remaining:
                if time.monotonic() - started > self.recovery_timeout:
                    raise TimeoutError(f"click state recovery of {sorted(partitions)} did not finish")
                fetched = await consumer.getmany(*remaining, timeout_ms=500, max_records=50_000)
                for tp, messages in fetched.items():
                    batch = WriteBatch(raw_mode=True)
                    for message in messages:
                        if message.offset >= markers[tp]:
                            remaining.discard(tp)
                            break
                        if message.key is None or message.key == MARKER:
                            continue
                        if message.value is None:
                            batch.delete(message.key)
                        else:
                            batch.put(message.key, message.value)
                        replayed += 1
                    self.partitions[tp.partition].db.write(batch)
        finally:
            await consumer.stop()
        RECOVERED_RECORDS.inc(replayed)
        STATE_KEYS.set(len(self.partitions))
        log.info(
            "click state recovered partitions=%s records=%d seconds=%.2f",
            sorted(partitions), replayed, time.monotonic() - started,
        )  # fmt: skip
        return replayed

    def release(self, partitions: list[int]) -> None:
        """Drop the local stores of partitions another worker now owns (their changelog stays)."""
        for partition in partitions:
            state = self.partitions.pop(partition, None)
            if state is not None:
                state.close(remove=True)
        STATE_KEYS.set(len(self.partitions))

    async def _producer(self) -> AIOKafkaProducer:
        if self.producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                acks="all",
                linger_ms=0,
                max_batch_size=1024 * 1024,
                max_request_size=8 * 1024 * 1024,
            )
            await producer.start()
            self.producer = producer
        return self.producer

    async def close(self) -> None:
        if self.producer is not None:
            producer, self.producer = self.producer, None
            await producer.stop()
        for state in self.partitions.values():
            state.close(remove=False)
        self.partitions.clear()
