"""Live clicks as Server-Sent Events, read from the workspace's capped Redis Stream.

The worker XADDs every enriched click (without IP and user agent) to `RedisKeys.click_feed`,
capped at about CLICK_STREAM_MAXLEN entries. Each SSE connection XREADs that stream (BLOCK), so
the stream is both the live feed and the replay buffer: a client that reconnects with
`Last-Event-ID` (a click's event_id) gets every click it missed that is still in the buffer.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
import redis.asyncio as redis
from aiohttp import web
from aiohttp_sse import sse_response

from api.auth import principal
from api.http import parse_uuid
from api.state import KEYS, PG, REDIS, SETTINGS
from engine.accounts.repository import Principal
from engine.auth.permissions import Action
from engine.errors import ValidationFailed
from engine.links import repository

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

_PARAMS = frozenset({"link_id", "last_event_id"})
_SCAN_PAGE = 1000
# Below the api Redis client's 2 s socket timeout, so a quiet stream is not a timeout error.
_BLOCK_MS = 1000
_BEGINNING = "0-0"


@routes.get("/api/v1/stream/clicks")
async def click_stream(request: web.Request) -> web.StreamResponse:
    return await stream_clicks(request, await principal(request, Action.ANALYTICS_READ))


async def stream_clicks(request: web.Request, who: Principal) -> web.StreamResponse:
    """The SSE response for `who` (already allowed to read analytics): the web app's live view
    serves the same stream to a signed-in browser session."""
    for name in request.query:
        if name not in _PARAMS:
            raise ValidationFailed(f"unknown parameter {name!r}", field=name)
    link_id = None
    if request.query.get("link_id"):
        link_id = parse_uuid(request.query["link_id"], "link_id")
        async with request.app[PG].acquire() as conn:
            await repository.get_link(conn, who.workspace_id, link_id)  # 404 unless the caller's
    # Browsers resend the header on reconnect; the query parameter serves clients that cannot set it.
    last_event_id = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    if last_event_id is not None and (len(last_event_id) > 64 or not last_event_id.isprintable()):
        raise ValidationFailed("Last-Event-ID must be a click event id", field="Last-Event-ID")
    client = request.app[REDIS]
    feed = request.app[KEYS].click_feed(who.workspace_id)
    # The position is fixed before the headers go out: a client that has its response sees every
    # click added after that moment.
    cursor = await (_position_after(client, feed, last_event_id) if last_event_id else _tail(client, feed))
    async with sse_response(
        request,
        ping_interval=request.app[SETTINGS].sse_heartbeat_seconds,
        headers={"X-Accel-Buffering": "no"},
    ) as sse:
        while sse.is_connected():
            try:
                batches = await client.xread({feed: cursor}, count=500, block=_BLOCK_MS)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                # Keep the client: heartbeats continue and reading resumes at the same position.
                log.warning("click_stream_redis_error workspace_id=%s error=%s", who.workspace_id, exc)
                await asyncio.sleep(1.0)
                continue
            for _key, entries in batches:
                for entry_id, fields in entries:
                    cursor = entry_id
                    click = orjson.loads(fields[b"data"])
                    if click.get("workspace_id") != who.workspace_id:
                        continue
                    if link_id is not None and click.get("link_id") != link_id:
                        continue
                    try:
                        await sse.send(fields[b"data"].decode(), id=str(click["event_id"]), event="click")
                    except ConnectionResetError:
                        return sse
    return sse


async def _tail(client: redis.Redis, feed: str) -> bytes | str:
    """The id of the newest entry (read strictly after it), or the beginning of an empty stream."""
    newest = await client.xrevrange(feed, count=1)
    return newest[0][0] if newest else _BEGINNING


async def _position_after(client: redis.Redis, feed: str, event_id: str) -> bytes | str:
    """The stream id of the click `event_id`, scanning newest first.

    When the click has left the buffer (or never was in it) the client missed more than the buffer
    holds, so it gets the whole buffer: the best this bounded replay can do.
    """
    wanted = event_id.encode()
    upper = "+"
    while True:
        entries = await client.xrevrange(feed, max=upper, min="-", count=_SCAN_PAGE)
        for entry_id, fields in entries:
            if fields.get(b"event_id") == wanted:
                found: bytes = entry_id
                return found
        if len(entries) < _SCAN_PAGE:
            return _BEGINNING
        upper = "(" + entries[-1][0].decode()
