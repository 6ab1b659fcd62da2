"""Direct reads of a source topic's offset range, outside the consumer group.

The click agent keeps, in its own changelog-backed table, the last `clicks.raw` offset it applied
per partition. When Faust hands it an event further ahead than that (the committed group offset
ran past events whose effects never reached the tables: seen on tansu after repeated SIGKILLs,
20-250 of 20,000 clicks), the agent reads the missing range here and applies it first, so the
tables, not the group offset, decide where processing resumes.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition


class SourceGapError(RuntimeError):
    """A missing offset range could not be read back within the time allowed."""


class SourceReader:
    def __init__(self, bootstrap: str, topic: str, *, timeout: float = 30.0) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.timeout = timeout
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def _client(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def read(self, partition: int, start: int, end: int) -> list[tuple[int, bytes]]:
        """Records with start <= offset < end, in offset order. Offsets the log no longer holds
        (retention) or never held are skipped; the read ends when the position reaches `end`."""
        if end <= start:
            return []
        async with self._lock:
            consumer = await self._client()
            tp = TopicPartition(self.topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, start)
            out: list[tuple[int, bytes]] = []
            deadline = time.monotonic() + self.timeout
            while True:
                batch = await consumer.getmany(tp, timeout_ms=500, max_records=5000)
                for msg in batch.get(tp, []):
                    if msg.offset >= end:
                        return out
                    if msg.offset >= start and msg.value is not None:
                        out.append((msg.offset, msg.value))
                if await consumer.position(tp) >= end:
                    return out
                if time.monotonic() > deadline:
                    raise SourceGapError(
                        f"{self.topic}[{partition}] offsets {start}..{end - 1}: "
                        f"read {len(out)} records before timing out"
                    )

    async def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()
