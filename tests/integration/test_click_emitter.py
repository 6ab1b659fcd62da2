"""No click lost: broker outages and api crashes are replayed from the journal."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client import REGISTRY

from api.click_journal import ClickEmitter, open_journal
from api.click_producer import RdKafkaClickEmitter
from cli.procs import free_port
from engine.clicks.models import RawClick
from tests.integration.helpers import consume_clicks

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["aiokafka", "librdkafka"])
def emitter_class(request: pytest.FixtureRequest) -> Any:
    """Every test runs against both producers: ClickEmitter (aiokafka) and RdKafkaClickEmitter."""
    return ClickEmitter if request.param == "aiokafka" else RdKafkaClickEmitter


def _click(i: int) -> RawClick:
    return RawClick(
        event_id=uuid.uuid4().hex,
        ts=1_700_000_000 + i,
        link_id=str(uuid.UUID(int=i % 7)),
        workspace_id=str(uuid.UUID(int=1)),
        domain="t",
        short_code="c",
        destination="https://x.example",
    )


async def test_broker_down_then_up_replays_every_click(
    tmp_path: Path, broker, namespace: str, emitter_class: Any
) -> None:
    topic = f"{namespace}.clicks.raw"
    dead = f"127.0.0.1:{free_port()}"
    down = emitter_class(dead, topic, open_journal(tmp_path))
    await down.start()
    clicks = [_click(i) for i in range(50)]
    for c in clicks:
        down.emit(c)
    await asyncio.sleep(1.5)
    assert down.degraded
    assert down.depth() == 50
    assert REGISTRY.get_sample_value("linkrift_click_spool_depth") == 50  # the /metrics gauge
    await down.stop(within=0.5)

    up = emitter_class(broker.bootstrap, topic, open_journal(tmp_path))
    assert up.degraded  # recovered segments go first
    await up.start()
    later = [_click(100 + i) for i in range(10)]
    for c in later:
        up.emit(c)
    got = await consume_clicks(broker.bootstrap, topic, 60)
    await up.stop()
    ids = [c.event_id for c in got]
    assert sorted(ids) == sorted(c.event_id for c in clicks + later)
    # The outage's clicks arrive before the later ones, in their original order per link.
    per_link = [c.event_id for c in got if c.link_id == clicks[0].link_id]
    assert per_link == [c.event_id for c in clicks + later if c.link_id == clicks[0].link_id]
    assert list(tmp_path.glob("slot-*/*.jsonl")) == []  # every segment acknowledged and deleted


async def test_sigkilled_api_loses_nothing(
    tmp_path: Path, broker, namespace: str, emitter_class: Any
) -> None:
    """A process that journaled clicks and died by SIGKILL before producing them: the next
    process with the same data dir sends them."""
    topic = f"{namespace}.clicks.raw"
    script = f"""
import asyncio, os, signal, sys, uuid
sys.path.insert(0, {str(REPO)!r})
from pathlib import Path
from api.click_journal import open_journal
from {emitter_class.__module__} import {emitter_class.__name__} as Emitter
from engine.clicks.models import RawClick
async def main():
    e = Emitter({broker.bootstrap!r}, {topic!r}, open_journal(Path({str(tmp_path)!r})))
    for i in range(300):
        e.emit(RawClick(event_id=f"kill-{{i}}", ts=1.0, link_id=str(uuid.UUID(int=i % 5)), workspace_id="w",
                        domain="d", short_code="c", destination="https://x.example"))
    os.kill(os.getpid(), signal.SIGKILL)  # before the producer task ever ran
asyncio.run(main())
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    emitter = emitter_class(broker.bootstrap, topic, open_journal(tmp_path))
    await emitter.start()
    got = await consume_clicks(broker.bootstrap, topic, 300)
    await emitter.stop()
    assert {c.event_id for c in got} == {f"kill-{i}" for i in range(300)}
    assert len(got) == 300
    assert os.listdir(tmp_path)  # the slot dir remains, its segments are gone
    assert list(tmp_path.glob("slot-*/*.jsonl")) == []


async def test_clicks_land_on_kafkas_default_partition_for_their_link(
    tmp_path: Path, broker, namespace: str, emitter_class: Any
) -> None:
    """The emitter builds its own record batches per partition: each click must still land where
    Kafka's default partitioner puts its key (the link id), which the worker's tables rely on."""
    from aiokafka.partitioner import DefaultPartitioner

    from cli.services import ensure_topics

    topic = f"{namespace}.clicks.raw"
    await ensure_topics(broker.bootstrap, {topic: 4})
    emitter = emitter_class(broker.bootstrap, topic, open_journal(tmp_path))
    await emitter.start()
    clicks = [_click(i) for i in range(300)]
    for c in clicks:
        emitter.emit(c)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    records = []
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while len(records) < 300 and asyncio.get_running_loop().time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
        await emitter.stop()
    assert len(records) == 300
    default = DefaultPartitioner()
    for record in records:
        click = RawClick.loads(record.value)
        assert record.key == click.link_id.encode()
        assert record.partition == default(record.key, [0, 1, 2, 3], [0, 1, 2, 3])
    assert len({r.partition for r in records}) > 1
    # Per link, the original order.
    for link in {c.link_id for c in clicks}:
        got = [
            RawClick.loads(r.value).event_id
            for r in sorted(records, key=lambda r: r.offset)
            if RawClick.loads(r.value).link_id == link
        ]
        assert got == [c.event_id for c in clicks if c.link_id == link]
