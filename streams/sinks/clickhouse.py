"""Sink enriched clicks into ClickHouse `clicks_analytics`, exactly once.

Each row carries its source partition and offset. One insert is one atomic block, and a batch is
written in offset order, so `max(kafka_offset)` per partition is exactly what is already stored:
after a crash the worker asks once per partition and skips what ClickHouse already holds.
An `insert_deduplication_token` built from the batch's offsets also makes a plain retry of the
same batch a no-op.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import fields
from datetime import UTC, datetime
from operator import attrgetter, itemgetter
from typing import Any

from clickhouse_connect.driver.client import Client

from engine.clicks.models import EnrichedClick
from engine.db.clickhouse import ClickHouseExecutor
from engine.naming import CH_CLICKS

log = logging.getLogger(__name__)

_FIELDS = [f.name for f in fields(EnrichedClick) if f.name != "ts"]
COLUMNS = ["clicked_at", *_FIELDS, "kafka_partition", "kafka_offset"]


_values = attrgetter(*_FIELDS)


def to_row(click: EnrichedClick, partition: int, offset: int) -> list[Any]:
    # Booleans go in as they are: bool is an int, which is what the UInt8 columns take.
    return [datetime.fromtimestamp(click.ts, UTC), *_values(click), partition, offset]


_position = itemgetter(0, 1)


def _max_offset(client: Client, partition: int) -> int:
    result = client.query(
        f"SELECT max(kafka_offset), count() FROM {CH_CLICKS} WHERE kafka_partition = {{p:UInt16}}",
        parameters={"p": partition},
    ).result_rows[0]
    return int(result[0]) if result[1] else -1


def _insert(client: Client, rows: list[list[Any]], token: str) -> None:
    client.insert(CH_CLICKS, rows, column_names=COLUMNS, settings={"insert_deduplication_token": token})


class ClickHouseSink:
    def __init__(self, executor: ClickHouseExecutor) -> None:
        self.executor = executor
        self._stored: dict[int, int] = {}

    def forget_partitions(self) -> None:
        """Called on rebalance: another worker may have written these partitions meanwhile."""
        self._stored.clear()

    async def stored_offset(self, partition: int) -> int:
        if partition not in self._stored:
            self._stored[partition] = await self.executor.run(_max_offset, partition)
        return self._stored[partition]

    async def write(self, batch: list[tuple[int, int, EnrichedClick]]) -> int:
        """Insert (partition, offset, click) rows not yet stored; return how many were written."""
        rows: list[list[Any]] = []
        last: dict[int, int] = {}
        # In offset order per partition whatever order the caller passes (under Faust, a batch
        # after a rebalance held buffered events ahead of re-delivered older ones): "<= last" must
        # not skip older rows ClickHouse does not have yet.
        for partition, offset, click in sorted(batch, key=_position):
            if offset <= await self.stored_offset(partition) or offset <= last.get(partition, -1):
                continue
            rows.append(to_row(click, partition, offset))
            last[partition] = offset
        if not rows:
            return 0
        token = hashlib.sha256(",".join(f"{r[-2]}:{r[-1]}" for r in rows).encode()).hexdigest()
        await self.executor.run(_insert, rows, token)
        self._stored.update(last)
        return len(rows)
