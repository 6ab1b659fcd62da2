"""`link.clicked` webhooks in batches, read from each workspace's capped click feed (a Redis Stream).

The click agent already appends every enriched click to `click_feed(workspace)`; this batcher
keeps a cursor per workspace and turns the entries after it into one delivery per webhook holding
up to `batch_size` clicks. Feed entry ids are millisecond timestamps, so a workspace without a
cursor starts at its oldest subscribed webhook's creation time. Event ids derive from the entry
range, so redoing a batch after a crash (before the cursor moved) creates no second delivery.
"""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as redis

from engine.naming import RedisKeys
from engine.webhooks.delivery import WebhookDispatcher
from engine.webhooks.events import CLICKED

_SUBSCRIBED = """SELECT workspace_id, min(created_at) AS since FROM webhooks
                 WHERE is_active AND $1 = ANY(events) GROUP BY workspace_id"""


async def batch_clicks(
    dispatcher: WebhookDispatcher, client: redis.Redis, keys: RedisKeys, batch_size: int
) -> int:
    """One pass over every subscribed workspace; returns how many clicks went into deliveries."""
    async with dispatcher.pool.acquire() as conn:
        workspaces = await conn.fetch(_SUBSCRIBED, CLICKED)
    total = 0
    for ws in workspaces:
        workspace_id = str(ws["workspace_id"])
        cursor_key = keys.webhook_click_cursor(workspace_id)
        raw_cursor = await client.get(cursor_key)
        cursor = raw_cursor.decode() if raw_cursor else f"{int(ws['since'].timestamp() * 1000)}-0"
        entries = await client.xrange(keys.click_feed(workspace_id), min=f"({cursor}", count=batch_size)
        if not entries:
            continue
        clicks: list[dict[str, Any]] = [orjson.loads(fields[b"data"]) for _, fields in entries]
        first, last = entries[0][0].decode(), entries[-1][0].decode()
        event_id = f"evt_clicks_{workspace_id}_{first}_{last}"
        await dispatcher.publish(
            workspace_id, event_id, CLICKED, {"workspace_id": workspace_id, "clicks": clicks}
        )
        await client.set(cursor_key, last)
        total += len(clicks)
    return total
