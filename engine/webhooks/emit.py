"""Webhook events produced by PostgreSQL transactions (`domain.verified`, `member.invited`).

The event is written as its delivery rows in the caller's transaction: they exist exactly when
the change commits, and the worker's retry scan (every second) sends pending rows, so no Kafka
topic sits in between. Link events go through `links.changes` instead (streams/agents/webhooks.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from engine.webhooks import repository
from engine.webhooks.events import EVENT_TYPES, envelope, event_id


async def emit_event(
    conn: asyncpg.Connection,
    workspace_id: str,
    event_type: str,
    *,
    subject_id: str,
    at: datetime,
    data: dict[str, Any],
) -> list[str]:
    """Queue one delivery per active webhook of the workspace subscribed to `event_type`; returns
    the new delivery ids. The event id derives from (type, subject, at): a replay is a no-op."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    hooks = [
        hook_id
        for hook_id, events in await repository.subscribed_webhooks(conn, workspace_id)
        if event_type in events
    ]
    if not hooks:
        return []
    return await repository.enqueue(
        conn,
        hooks,
        event_id(event_type, subject_id, at.isoformat()),
        event_type,
        envelope(event_type, data, at),
    )
