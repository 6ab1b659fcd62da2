"""The click agent's changelog-backed RocksDB state (streams/click_state.py) on a real broker."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaError

from cli.procs import free_port
from engine.clicks.counting import LinkStats
from engine.kafka import ensure_topics
from streams.agents.click_consumer import EXPIRY, ClickProcessor, expiry_key
from streams.click_batch import BatchOverlay
from streams.click_state import ClickState, PartitionState

pytestmark = pytest.mark.integration


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


async def test_event_ids_expire_through_the_rocksdb_index_and_changelog_tombstones(
    broker: Any, tmp_path: Path
) -> None:
    """Event ids older than the retention are forgotten without any index in Python memory: the
    expiry index lives in RocksDB (rebuilt from the changelogged ids on recovery), the ids go
    with changelog tombstones, so a rebuilt store has only the recent ones."""
    topic = f"state-{uuid.uuid4().hex[:8]}"
    await ensure_topics(broker.bootstrap, {topic: 1}, configs={topic: {"cleanup.policy": "compact"}})
    state = ClickState(broker.bootstrap, topic, tmp_path / "a")
    processor = ClickProcessor(SimpleNamespace(), state)  # type: ignore[arg-type]
    now = time.time()
    try:
        await state.recover([0])
        for key, ts in (
            ("e:l:old1", now - 2 * 86400),
            ("e:l:old2", now - 86400 - 120),
            ("e:l:new", now - 60),
        ):
            state.set(0, key, [1, ts])
        await state.flush()
        processor.index_partition(0)  # as after a recovery: the index comes from the ids
        assert processor.dedup_entries[0] == 3
        assert len(state.keys_before(0, EXPIRY, expiry_key(now, ""))) == 3
        processor.prune_event_ids([0])
        await state.flush()
        assert [k for k, _ in state.scan(0, "e:")] == ["e:l:new"]
        assert state.keys_before(0, EXPIRY, expiry_key(now, "")) == [expiry_key(now - 60, "e:l:new")]
        assert processor.dedup_entries[0] == 1
    finally:
        await state.close()
    rebuilt = ClickState(broker.bootstrap, topic, tmp_path / "b")
    try:
        await rebuilt.recover([0])
        assert [k for k, _ in rebuilt.scan(0, "e:")] == ["e:l:new"]
        assert rebuilt.keys_before(0, EXPIRY, "x:~") == []  # the index is never changelogged
    finally:
        await rebuilt.close()


def test_expiry_keys_sort_by_time() -> None:
    keys = [expiry_key(ts, "e:k") for ts in (-5.0, 0.0, 59.0, 60.0, 1.7e9, 1.8e9, 1e15)]
    assert keys == sorted(keys)
    assert expiry_key(120.5, "e:a:b") == "x:0000000002:e:a:b"


def test_the_batch_overlay_reads_its_own_writes_first_and_writes_the_state_once(tmp_path: Path) -> None:
    """A batch counts against the overlay: its reads see the batch's earlier writes, then the
    state; nothing reaches ClickState before `commit`, and then one write per key (the counters
    only of links that changed)."""
    state = ClickState("127.0.0.1:1", "unused", tmp_path)  # no flush here: no broker needed
    state.partitions[0] = PartitionState(tmp_path / "p0")
    state.set(0, "v:a:x", 3)
    state.set(0, "s:a", LinkStats(total=3, offset=3).to_dict())
    state.set(0, "s:b", LinkStats(total=1, offset=2).to_dict())
    overlay = BatchOverlay(state)
    assert overlay.get(0, "v:a:x") == 3  # from the state
    assert overlay.get(0, "v:a:y") is None
    overlay.set(0, "v:a:y", 5)
    overlay.set(0, "v:a:y", 6)
    assert overlay.get(0, "v:a:y") == 6  # the batch's own write first
    assert state.get(0, "v:a:y") is None  # not in the state before commit
    assert overlay.remember(0, "v:a:x", 9) == 3  # known: kept as it is
    assert overlay.remember(0, "v:a:z", 7) is None  # new: remembered
    assert overlay.remember(0, "v:a:z", 8) == 7
    stats = overlay.link_stats(0, "a")
    stats.total += 1
    assert overlay.link_stats(0, "a") is stats  # loaded once, counted in place
    overlay.link_stats(0, "b")  # read, unchanged: not written
    overlay.stats_changed("a")
    share = overlay.workspace_share(0, "w")
    assert share == {"count": 0, "offset": -1}
    overlay.set_workspace_share(0, "w", {"count": 1, "offset": 4})
    assert overlay.workspace_share(0, "w") == {"count": 1, "offset": 4}
    overlay.set_local(0, "x:0000000001:e:a:1", b"")
    before = dict(state.partitions[0].pending)
    assert overlay.commit() == 4  # v:a:y, v:a:z, w:w, s:a
    assert state.get(0, "v:a:y") == 6
    assert (state.get(0, "v:a:x"), state.get(0, "v:a:z")) == (3, 7)
    assert state.get(0, "w:w") == {"count": 1, "offset": 4}
    assert state.get(0, "s:a")["total"] == 4
    assert state.partitions[0].pending[b"s:b"] == before[b"s:b"]
    assert state.partitions[0].local == {b"x:0000000001:e:a:1": b""}
    # Every counter the batch read stays available to the mirror and the sinks.
    assert set(overlay.stats) == {"a", "b"} and overlay.shares == {("w", 0): {"count": 1, "offset": 4}}
    state.partitions[0].close(remove=True)
