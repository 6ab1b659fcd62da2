"""The ClickHouse sink on real chDB: exactly once per (partition, offset), whatever order a batch
arrives in."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import clickhouse_connect
import pytest

from engine.db.clickhouse import ClickHouseExecutor
from engine.db.clickhouse_schema import apply_clickhouse_schema
from engine.naming import CH_CLICKS
from streams.sinks.clickhouse import ClickHouseSink
from tests.integration.helpers import enriched_click

pytestmark = pytest.mark.integration


async def test_rows_out_of_offset_order_are_all_written_once(tmp_path: Path) -> None:
    """After a rebalance a batch can hold buffered newer events ahead of older re-delivered ones
    (and the same offsets twice): every offset ClickHouse lacks is written, none twice."""
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'chdb'}")
    executor = ClickHouseExecutor(client)
    try:
        await executor.run(apply_clickhouse_schema)
        link, ws = str(uuid.uuid4()), str(uuid.uuid4())
        now = datetime.now(UTC)
        clicks = {offset: enriched_click(link, ws, f"v{offset}", now) for offset in range(10)}
        sink = ClickHouseSink(executor)
        assert await sink.write([(0, o, clicks[o]) for o in (0, 1, 2)]) == 3
        batch = [(0, o, clicks[o]) for o in (6, 7, 3, 4, 5, 6, 7, 1)]
        assert await sink.write(batch) == 5  # 3..7; 1 was stored, 6 and 7 come twice
        # A new process (fresh offset cache) replaying the same batch writes nothing.
        assert await ClickHouseSink(executor).write(batch) == 0

        def stored(c: object) -> list[tuple[int, str]]:
            return client.query(
                f"SELECT kafka_offset, event_id FROM {CH_CLICKS} ORDER BY kafka_offset"
            ).result_rows

        rows = await executor.run(stored)
        assert rows == [(o, clicks[o].event_id) for o in range(8)]
    finally:
        await asyncio.to_thread(executor.close)


async def test_uncertain_copies_go_in_only_where_their_event_id_is_missing(tmp_path: Path) -> None:
    """Copies of clicks counted in a lost incarnation of clicks.raw (sent again by the api's
    journal, at new positions): written once if ClickHouse lacks their event id, never twice."""
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'chdb'}")
    executor = ClickHouseExecutor(client)
    try:
        await executor.run(apply_clickhouse_schema)
        link, ws = str(uuid.uuid4()), str(uuid.uuid4())
        now = datetime.now(UTC)
        clicks = [enriched_click(link, ws, f"v{i}", now) for i in range(4)]
        sink = ClickHouseSink(executor)
        assert await sink.write([(0, 0, clicks[0]), (0, 1, clicks[1])]) == 2  # 2 and 3 were lost
        epoch = 1 << 44  # positions of the new incarnation
        copies = [(0, epoch + i, c) for i, c in enumerate([clicks[1], clicks[2], clicks[3], clicks[2]])]
        fresh = enriched_click(link, ws, "v-new", now)
        assert await sink.write([(0, epoch + 4, fresh)], copies) == 3  # clicks 2 and 3, and the new one
        assert await ClickHouseSink(executor).write([], copies) == 0  # all there now

        def stored(c: object) -> list[str]:
            return [r[0] for r in client.query(f"SELECT event_id FROM {CH_CLICKS}").result_rows]

        ids = await executor.run(stored)
        assert sorted(ids) == sorted([c.event_id for c in clicks] + [fresh.event_id])
    finally:
        await asyncio.to_thread(executor.close)
