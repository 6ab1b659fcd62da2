"""CPU of the api process per click for each click emitter (aiokafka ClickEmitter, librdkafka
RdKafkaClickEmitter): emit N clicks in turns of 50, wait until the broker acknowledged all, and
read the process CPU time (all threads, librdkafka's included). Starts its own tansu.

    .venv/bin/python bench/click_producers.py [N]
"""

from __future__ import annotations

import asyncio
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.click_journal import ClickEmitter, open_journal
from api.click_producer import RdKafkaClickEmitter
from cli.services import TansuBroker, ensure_topics
from engine.clicks.models import RawClick


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def click(i: int) -> RawClick:
    return RawClick(
        event_id=uuid.uuid4().hex,
        ts=time.time(),
        link_id=str(uuid.UUID(int=i % 50)),
        workspace_id=str(uuid.UUID(int=1)),
        domain="go.test",
        short_code="abc123",
        destination="https://example.com/landing",
        user_agent="Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/124.0",
        visitor_id="0" * 32,
        ip="203.0.113.9",
    )


async def measure(cls: Any, bootstrap: str, topic: str, n: int, grouping: bool) -> tuple[float, int]:
    em = cls(bootstrap, topic, open_journal(Path(tempfile.mkdtemp())))
    await em.start()
    if grouping:
        em.grouping = True
    clicks = [click(i) for i in range(n)]
    await asyncio.sleep(1.0)
    c0, t0 = cpu(), time.monotonic()
    for start in range(0, n, 50):
        for c in clicks[start : start + 50]:
            em.emit(c)
        if hasattr(em, "commit"):
            em.commit()
        await asyncio.sleep(0)
    while em.depth() > 0 and time.monotonic() - t0 < 120:  # noqa: ASYNC110 - polling the journal depth
        await asyncio.sleep(0.01)
    c1 = cpu()
    depth = em.depth()
    await em.stop()
    return (c1 - c0) / n * 1e6, depth


async def main() -> None:
    broker = TansuBroker(Path(tempfile.mkdtemp()))
    await broker.start()
    try:
        topic = f"bench{uuid.uuid4().hex[:6]}.clicks.raw"
        await ensure_topics(broker.bootstrap, {topic: 8})
        n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
        for rnd in range(2):
            for name, cls, grouping in (
                ("aiokafka ClickEmitter", ClickEmitter, False),
                ("librdkafka RdKafkaClickEmitter", RdKafkaClickEmitter, True),
            ):
                us, depth = await measure(cls, broker.bootstrap, topic, n, grouping)
                print(
                    f"round {rnd + 1} {name:<32} {us:6.1f} µs CPU per click (emit+journal+produce+ack), unacked {depth}",
                    flush=True,
                )
    finally:
        await asyncio.to_thread(broker.stop)


asyncio.run(main())
