"""The api's click journal keeps a click until the worker made it durable downstream (the click
consumer group committed past it, for the same incarnation of clicks.raw), not only until the
broker acknowledged it; clicks a lost incarnation acknowledged are sent again."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from api.click_journal import ClickEmitter, open_journal
from api.click_producer import RdKafkaClickEmitter
from engine.clicks.models import RawClick
from engine.kafka import TopicIds, ensure_topics
from tests.pipeline_fixtures import wait_until

pytestmark = pytest.mark.integration
PARTITIONS = 2


@pytest.fixture(params=["aiokafka", "librdkafka"])
def emitter_class(request: pytest.FixtureRequest) -> Any:
    """Both producers: ClickEmitter (aiokafka) and RdKafkaClickEmitter (the api's default)."""
    return ClickEmitter if request.param == "aiokafka" else RdKafkaClickEmitter


def _sent(emitter: Any) -> bool:
    """Nothing of the emitter's waits to be handed to the broker or acknowledged by it."""
    if isinstance(emitter, ClickEmitter):
        return emitter.queue.empty()
    return not emitter._lines and emitter.producer is not None and len(emitter.producer) == 0


def _click(i: int) -> RawClick:
    return RawClick(
        event_id=uuid.uuid4().hex,
        ts=1_700_000_000 + i,
        link_id=str(uuid.UUID(int=i % 5 + 1)),
        workspace_id=str(uuid.UUID(int=1)),
        domain="t",
        short_code="c",
        destination="https://x.example",
    )


async def _commit_all(bootstrap: str, topic: str, group: str, metadata: str) -> None:
    """Commit past every record of `topic` for `group`, as the worker does after its sinks. (Read,
    not end_offsets: tansu's high watermark is the last record batch's base offset + 1.)"""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = dict.fromkeys(tps, 0)
        for _ in range(4):
            for tp, records in (await consumer.getmany(timeout_ms=300)).items():
                ends[tp] = max(ends[tp], records[-1].offset + 1)
        await consumer.commit({tp: OffsetAndMetadata(ends[tp], metadata) for tp in tps})
    finally:
        await consumer.stop()


async def _event_ids(bootstrap: str, topic: str) -> list[str]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    got: list[str] = []
    try:
        for _ in range(6):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got.extend(RawClick.loads(r.value).event_id for r in records)
    finally:
        await consumer.stop()
    return got


async def test_journal_keeps_clicks_until_the_group_committed_them(
    tmp_path: Path, broker: Any, namespace: str, emitter_class: Any
) -> None:
    topic, group = f"{namespace}.clicks.raw", f"{namespace}-clicks"
    await ensure_topics(broker.bootstrap, {topic: PARTITIONS})
    ids = TopicIds(broker.bootstrap)
    emitter = emitter_class(broker.bootstrap, topic, open_journal(tmp_path / "journal"), group=group)
    await emitter.start()
    try:
        first = [_click(i) for i in range(20)]
        for click in first:
            emitter.emit(click)

        async def acknowledged() -> bool:
            return _sent(emitter) and emitter.journal.held() > 0

        assert await wait_until(acknowledged, within=10)
        await asyncio.sleep(1.5)  # several release checks: nothing committed, nothing released
        assert emitter.journal.held() > 0 and list(tmp_path.glob("journal/slot-*/*.jsonl"))

        topic_id = (await ids.get([topic]))[topic]
        await _commit_all(broker.bootstrap, topic, group, topic_id)

        async def released() -> bool:
            files = tmp_path.glob("journal/slot-*/*.jsonl")
            return emitter.journal.held() == 0 and all(f.stat().st_size == 0 for f in files)

        assert await wait_until(released, within=10)

        # Acknowledged, not yet committed, and then the topic is lost: those clicks are sent
        # again to the new incarnation.
        second = [_click(100 + i) for i in range(15)]
        for click in second:
            emitter.emit(click)
        assert await wait_until(acknowledged, within=10)
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()
        await asyncio.sleep(0.5)
        await ensure_topics(broker.bootstrap, {topic: PARTITIONS})

        async def resent() -> bool:
            return sorted(await _event_ids(broker.bootstrap, topic)) == sorted(c.event_id for c in second)

        assert await wait_until(resent, within=20, interval=0.5)
        new_id = (await ids.get([topic]))[topic]
        assert new_id != topic_id
        await _commit_all(broker.bootstrap, topic, group, new_id)
        assert await wait_until(released, within=10)
    finally:
        await ids.close()
        await emitter.stop(durable_within=0.5)
