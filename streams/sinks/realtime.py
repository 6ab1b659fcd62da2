"""Mirror live counters to Redis and publish enriched clicks to the live stream and workspace feeds.

Counters are written as absolute values taken from the worker's tables (SET, not INCR), so a
replayed batch rewrites the same numbers instead of counting twice. The workspace total is a hash
with one field per source partition (each partition owns its share), summed by readers; the spec's
single `count` value could not be kept exact under replays with more than one worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields

import orjson
import redis.asyncio as redis

from engine.clicks.counting import LinkStats
from engine.clicks.models import EnrichedClick
from engine.naming import CLICK_STREAM_MAXLEN, REALTIME_TTL_SECONDS, RedisKeys


class RealtimeMirror:
    def __init__(self, client: redis.Redis, keys: RedisKeys) -> None:
        self.redis = client
        self.keys = keys

    async def write(
        self,
        link_stats: dict[str, LinkStats],
        workspace_parts: dict[tuple[str, int], int],
        clicks: Iterable[EnrichedClick],
    ) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for link_id, stats in link_stats.items():
            pipe.set(self.keys.realtime_link(link_id), stats.total, ex=REALTIME_TTL_SECONDS)
            pipe.set(self.keys.realtime_unique(link_id), stats.unique, ex=REALTIME_TTL_SECONDS)
            if stats.variants:  # observed A/B split, field `{rule_id}:{variant}`
                pipe.hset(self.keys.ab_observed(link_id), mapping=stats.variants)
                pipe.expire(self.keys.ab_observed(link_id), REALTIME_TTL_SECONDS)
        for (workspace_id, partition), count in workspace_parts.items():
            key = self.keys.realtime_workspace(workspace_id)
            pipe.hset(key, str(partition), count)
            pipe.expire(key, REALTIME_TTL_SECONDS)
        feeds: set[str] = set()
        for click in clicks:
            public = orjson.dumps(_public(click))
            pipe.publish(self.keys.click_stream, public)
            # The capped per-workspace stream is what the api's SSE endpoint reads: XREAD BLOCK for
            # live clicks, and a position to resume from after a reconnect (Last-Event-ID).
            pipe.xadd(
                self.keys.click_feed(click.workspace_id),
                {"event_id": click.event_id, "data": public},
                maxlen=CLICK_STREAM_MAXLEN,
                approximate=True,
            )
            feeds.add(self.keys.click_feed(click.workspace_id))
        for feed in feeds:  # an idle workspace's buffer does not stay in memory forever
            pipe.expire(feed, REALTIME_TTL_SECONDS)
        await pipe.execute()


_PUBLIC_FIELDS = tuple(f.name for f in fields(EnrichedClick) if f.name not in {"ip", "user_agent"})


def _public(click: EnrichedClick) -> dict[str, object]:
    """What live consumers may see: no IP, no raw user agent. (Plain getattr: `asdict` deep-copies
    every value and was the mirror's main cost.)"""
    return {name: getattr(click, name) for name in _PUBLIC_FIELDS}
