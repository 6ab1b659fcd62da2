"""Relay the PostgreSQL transactional outbox to Kafka, in order, at least once.

Whoever changes a link writes an outbox row in the same transaction (engine/outbox.py); this
timer publishes unpublished rows and marks them. `FOR UPDATE SKIP LOCKED` lets several workers share the work.
Consumers are idempotent on (event, link_id, at), so a re-sent row after a crash is harmless.
"""

from __future__ import annotations

import logging

import asyncpg
import faust
import orjson
from aiokafka.errors import KafkaError

from engine.outbox import claim_unpublished, mark_published
from streams.agents.common import timer
from streams.resources import WorkerResources

log = logging.getLogger(__name__)
BATCH = 500


def register(app: faust.App, res: WorkerResources) -> None:
    @timer(app, 0.2, "outbox_relay")
    async def relay_outbox() -> None:
        await res.ensure_started()
        try:
            await _relay_once()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, KafkaError) as exc:
            # Rows stay unpublished and are retried on the next tick; nothing is lost.
            log.warning("outbox relay failed error=%s", exc)

    async def _relay_once() -> None:
        async with res.pg.acquire() as conn, conn.transaction():
            rows = await claim_unpublished(conn, BATCH)
            if not rows:
                return
            futures = [
                await app.producer.send(
                    row.topic,
                    (row.key or "").encode() or None,
                    orjson.dumps(row.payload),
                    partition=None,
                    timestamp=None,
                    headers=None,
                )
                for row in rows
            ]
            await app.producer.flush()
            for fut in futures:
                await fut
            await mark_published(conn, [row.id for row in rows])
