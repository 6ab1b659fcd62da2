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
from tests.integration.test_analytics import _click

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
        clicks = {offset: _click(link, ws, f"v{offset}", now) for offset in range(10)}
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
