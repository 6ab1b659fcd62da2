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
from typing import Any, Protocol, runtime_checkable

import asyncpg

_INSERT = "INSERT INTO outbox (topic, key, payload) VALUES ($1, $2, $3)"


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One unpublished event: the Kafka topic, its key (may be empty) and the JSON payload."""

    id: int
    topic: str
    key: str | None
    payload: Any


@runtime_checkable
class LinkKeys(Protocol):
    """What a `links.changes` event names of a link (engine.links.models.StoredLink has these)."""

    @property
    def id(self) -> str: ...
    @property
    def workspace_id(self) -> str: ...
    @property
    def short_code(self) -> str: ...
    @property
    def domain_id(self) -> str | None: ...


def _keys(link: Mapping[str, Any] | LinkKeys) -> tuple[str, str, str, str]:
    """(id, workspace_id, short_code, domain_id or "") of a link row or model."""
    if isinstance(link, LinkKeys):
        values = (link.id, link.workspace_id, link.short_code, link.domain_id)
    else:  # a mapping or an asyncpg.Record
        values = (link["id"], link["workspace_id"], link["short_code"], link["domain_id"])
    link_id, workspace_id, short_code, domain_id = values
    return str(link_id), str(workspace_id), short_code, str(domain_id) if domain_id else ""


def link_change(
    event: str, row: Mapping[str, Any] | LinkKeys, old: Mapping[str, Any] | LinkKeys | None = None
) -> dict[str, Any]:
    """A `links.changes` event for the link `row` (a row with id, workspace_id, short_code and
    domain_id, or a StoredLink). When the code or domain changed (`old`), the old ones ride along
    so that caches keyed by the old code are invalidated too."""
    link_id, workspace_id, short_code, domain_id = _keys(row)
    payload = {
        "event": event,
        "link_id": link_id,
        "workspace_id": workspace_id,
        "short_code": short_code,
        "domain_id": domain_id,
        "at": datetime.now(UTC).isoformat(),
    }
    if old is not None:
        _, _, old_code, old_domain = _keys(old)
        if (old_code, old_domain) != (short_code, domain_id):
            payload["old_short_code"] = old_code
            payload["old_domain_id"] = old_domain
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
