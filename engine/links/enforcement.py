"""Link lifecycle events the worker owes: `exhausted` (max_clicks reached) and `expired`.

The redirect already refuses clicks past max_clicks (an atomic admission counter) and past
expires_at, so these events do not gate traffic; they tell caches, webhooks and the dashboard.
The worker does not flip links.is_active: an exhausted link stays active so that raising its
max_clicks brings it back without a second switch. Each event is emitted exactly once per link
(per expires_at value for expiry): a marker column and the outbox row change in one transaction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import asyncpg

from engine.outbox import link_change, write_outbox, write_outbox_many

EXPIRY_BATCH = 500


@dataclass(frozen=True, slots=True)
class LinkLimits:
    """What the click agent needs to know about a link to enforce its limits."""

    link_id: str
    workspace_id: str
    short_code: str
    domain_id: str
    max_clicks: int | None
    exhausted: bool
    loaded_at: float


def needs_exhausted_event(limits: LinkLimits | None, total: int) -> bool:
    return (
        limits is not None
        and limits.max_clicks is not None
        and not limits.exhausted
        and total >= limits.max_clicks
    )


async def load_limits(conn: asyncpg.Connection, link_ids: list[str]) -> dict[str, LinkLimits]:
    rows = await conn.fetch(
        """SELECT id, workspace_id, short_code, domain_id, max_clicks, exhausted_at
           FROM links WHERE id = ANY($1::uuid[])""",
        link_ids,
    )
    now = time.monotonic()
    return {
        str(r["id"]): LinkLimits(
            link_id=str(r["id"]),
            workspace_id=str(r["workspace_id"]),
            short_code=r["short_code"],
            domain_id=str(r["domain_id"]) if r["domain_id"] else "",
            max_clicks=r["max_clicks"],
            exhausted=r["exhausted_at"] is not None,
            loaded_at=now,
        )
        for r in rows
    }


async def mark_exhausted(conn: asyncpg.Connection, topic: str, link_id: str) -> bool:
    """Set links.exhausted_at and write the `exhausted` outbox event, once; True if it was now."""
    async with conn.transaction():
        row = await conn.fetchrow(
            """UPDATE links SET exhausted_at = now()
               WHERE id = $1 AND exhausted_at IS NULL AND max_clicks IS NOT NULL
               RETURNING id, workspace_id, short_code, domain_id""",
            link_id,
        )
        if row is None:
            return False
        await write_outbox(conn, topic, link_id, link_change("exhausted", row))
    return True


async def emit_expired(conn: asyncpg.Connection, topic: str, limit: int = EXPIRY_BATCH) -> list[str]:
    """Write one `expired` outbox event per link whose expires_at has passed and was not yet
    announced; return their ids. SKIP LOCKED lets several workers run this at once."""
    async with conn.transaction():
        rows = await conn.fetch(
            """SELECT id, workspace_id, short_code, domain_id, expires_at FROM links
               WHERE expires_at IS NOT NULL AND deleted_at IS NULL
                 AND expired_notified_for IS DISTINCT FROM expires_at AND expires_at <= now()
               ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED""",
            limit,
        )
        if not rows:
            return []
        await conn.execute(
            """UPDATE links l SET expired_notified_for = l.expires_at
               WHERE l.id = ANY($1::uuid[])""",
            [r["id"] for r in rows],
        )
        await write_outbox_many(conn, [(topic, str(r["id"]), link_change("expired", r)) for r in rows])
    return [str(r["id"]) for r in rows]
