"""The transactional outbox: events written in the same PostgreSQL transaction as the change they
announce, and relayed to Kafka by the worker (streams/agents/outbox.py), in order, at least once.

Every outbox row is written here (`write_outbox`, `write_outbox_many`), every payload of the
`links.changes` topic is built here (`link_change`), and the relay's SQL lives here too
(`claim_unpublished`, `mark_published`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

_INSERT = "INSERT INTO outbox (topic, key, payload) VALUES ($1, $2, $3)"


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One unpublished event: the Kafka topic, its key (may be empty) and the JSON payload."""

    id: int
    topic: str
    key: str | None
    payload: Any


def link_change(event: str, row: Mapping[str, Any], old: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A `links.changes` event for the link `row` (id, workspace_id, short_code, domain_id). When
    the code or domain changed (`old`), the old ones ride along so that caches keyed by the old
    code are invalidated too."""
    payload = {
        "event": event,
        "link_id": str(row["id"]),
        "workspace_id": str(row["workspace_id"]),
        "short_code": row["short_code"],
        "domain_id": str(row["domain_id"]) if row["domain_id"] else "",
        "at": datetime.now(UTC).isoformat(),
    }
    if old is not None and (old["short_code"], old["domain_id"]) != (row["short_code"], row["domain_id"]):
        payload["old_short_code"] = old["short_code"]
        payload["old_domain_id"] = str(old["domain_id"]) if old["domain_id"] else ""
    return payload


async def write_outbox(conn: asyncpg.Connection, topic: str, key: str, payload: Mapping[str, Any]) -> None:
    """One event, in the caller's transaction."""
    await conn.execute(_INSERT, topic, key, payload)


async def write_outbox_many(
    conn: asyncpg.Connection, events: Iterable[tuple[str, str, Mapping[str, Any]]]
) -> None:
    """Several (topic, key, payload) events, in the caller's transaction."""
    await conn.executemany(_INSERT, list(events))


async def claim_unpublished(conn: asyncpg.Connection, limit: int) -> list[OutboxRow]:
    """The oldest unpublished rows, locked for this transaction; rows another relay holds are
    skipped (`SKIP LOCKED`), so several workers share the work."""
    rows = await conn.fetch(
        """SELECT id, topic, key, payload FROM outbox WHERE published_at IS NULL
           ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED""",
        limit,
    )
    return [OutboxRow(r["id"], r["topic"], r["key"], r["payload"]) for r in rows]


async def mark_published(conn: asyncpg.Connection, ids: list[int]) -> None:
    await conn.execute("UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])", ids)
