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


def _present(client: Client, link_ids: list[str], event_ids: list[str]) -> set[str]:
    result = client.query(
        f"SELECT DISTINCT event_id FROM {CH_CLICKS} "
        "WHERE toString(link_id) IN {links:Array(String)} AND event_id IN {ids:Array(String)}",
        parameters={"links": link_ids, "ids": event_ids},
    ).result_rows
    return {str(row[0]) for row in result}


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

    async def write(
        self,
        batch: list[tuple[int, int, EnrichedClick]],
        uncertain: list[tuple[int, int, EnrichedClick]] | None = None,
    ) -> int:
        """Insert (partition, position, click) rows not yet stored; return how many were written.

        `uncertain` rows (re-sent copies of clicks counted in a lost incarnation of clicks.raw,
        which may or may not have reached ClickHouse) go in only if their event id is not there
        yet; they are rare (what a crash of the broker caught between the tables and the sinks),
        so they are looked up by event id."""
        if uncertain:
            batch = [*batch, *await self._missing(uncertain)]
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

    async def _missing(
        self, uncertain: list[tuple[int, int, EnrichedClick]]
    ) -> list[tuple[int, int, EnrichedClick]]:
        first: dict[str, tuple[int, int, EnrichedClick]] = {}
        for row in uncertain:
            first.setdefault(row[2].event_id, row)
        links = sorted({row[2].link_id for row in first.values()})
        present = await self.executor.run(_present, links, list(first))
        return [row for event_id, row in first.items() if event_id not in present]
