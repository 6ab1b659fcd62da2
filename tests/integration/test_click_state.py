"""The click agent's changelog-backed RocksDB state (streams/click_state.py) on a real broker."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaError

from cli.procs import free_port
from engine.kafka import ensure_topics
from streams.click_state import ClickState, PartitionState


async def test_flushed_writes_survive_a_rebuild_from_the_changelog(broker: Any, tmp_path: Path) -> None:
    topic = f"state-{uuid.uuid4().hex[:8]}"
    await ensure_topics(broker.bootstrap, {topic: 3}, configs={topic: {"cleanup.policy": "compact"}})
    first = ClickState(broker.bootstrap, topic, tmp_path / "a")
    try:
        await first.recover([0, 1, 2])
        first.set(0, "s:link", {"total": 3})
        first.set(1, "v:link:x", 7)
        first.set(1, "e:link:1", [7, 1.5])
        first.set(1, "e:link:2", [8, 1.6])
        assert first.get(1, "v:link:x") == 7  # pending writes read through
        assert await first.flush() == 4
        first.set(0, "s:link", {"total": 4})  # overwritten by a later batch
        first.delete(1, "e:link:1")  # pruned
        await first.flush()
        first.set(2, "p", 99)  # never flushed: a crash before the changelog ack
        assert sorted(k for k, _ in first.scan(1, "e:")) == ["e:link:2"]
    finally:
        await first.close()

    second = ClickState(broker.bootstrap, topic, tmp_path / "b")
    try:
        assert await second.recover([0, 1, 2]) == 6  # every record, the tombstone included
        assert second.get(0, "s:link") == {"total": 4}
        assert second.get(1, "v:link:x") == 7
        assert second.get(1, "e:link:1") is None
        assert list(second.scan(1, "e:")) == [("e:link:2", [8, 1.6])]
        assert second.get(2, "p") is None
        assert second.get(0, "v:link:x") is None  # each key lives in its own partition's changelog
        # A released partition's local store is gone; recovering it again rebuilds it.
        second.release([1])
        assert 1 not in second.partitions
        await second.recover([1])
        assert second.get(1, "v:link:x") == 7
    finally:
        await second.close()


async def test_a_failed_flush_keeps_the_writes_for_the_retry(broker: Any, tmp_path: Path) -> None:
    """Nothing reaches RocksDB before the changelog has it, and a failed flush loses nothing."""
    topic = f"state-{uuid.uuid4().hex[:8]}"
    await ensure_topics(broker.bootstrap, {topic: 1})
    down = ClickState(f"127.0.0.1:{free_port()}", topic, tmp_path / "down")  # nothing listens there
    down.partitions[0] = PartitionState(tmp_path / "down" / "p0")
    down.set(0, "s:a", 1)
    with pytest.raises(KafkaError):
        await down.flush()
    assert down.partitions[0].db.get(b"s:a") is None
    assert down.get(0, "s:a") == 1  # still pending for the retry
    up = ClickState(broker.bootstrap, topic, tmp_path / "up")  # the broker is back
    up.partitions = down.partitions
    try:
        assert await up.flush() == 1
        assert up.partitions[0].db.get(b"s:a") == b"1"
    finally:
        await up.close()
