"""Mirror live counters to Redis and publish enriched clicks to the live stream and workspace feeds.

Counters are written as absolute values taken from the worker's tables (SET, not INCR), so a
replayed batch rewrites the same numbers instead of counting twice. The workspace total is a hash
with one field per source partition (each partition owns its share), summed by readers; the spec's
single `count` value could not be kept exact under replays with more than one worker.

The live stream and the per-workspace feeds (which the SSE endpoint and the click webhooks read)
get each click exactly once: the mirror remembers, per source partition, the last offset it
published (`clicks:feed_offsets`), updated in the same MULTI/EXEC as the entries. A replayed batch
publishes exactly the clicks a crash kept from the feed, and nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
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
        rows: Sequence[tuple[int, int, EnrichedClick]],
    ) -> int:
        """Counters for the batch, and its (partition, offset, click) rows not yet published;
        returns how many clicks were published."""
        partitions = sorted({partition for partition, _, _ in rows})
        published: dict[int, int] = {}
        if partitions:
            stored = await self.redis.hmget(self.keys.feed_offsets, [str(p) for p in partitions])
            published = {p: -1 if v is None else int(v) for p, v in zip(partitions, stored, strict=True)}
        pipe = self.redis.pipeline(transaction=True)
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
        newest: dict[int, int] = {}
        count = 0
        # Offset order per partition, as for the ClickHouse sink (a batch may hold buffered events
        # ahead of older re-delivered ones): "<= newest" must not skip unpublished older clicks.
        for partition, offset, click in sorted(rows, key=lambda row: (row[0], row[1])):
            if offset <= published[partition] or offset <= newest.get(partition, -1):
                continue
            newest[partition] = offset
            count += 1
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
        if newest:
            pipe.hset(self.keys.feed_offsets, mapping={str(p): o for p, o in newest.items()})
        await pipe.execute()
        return count


_PUBLIC_FIELDS = tuple(f.name for f in fields(EnrichedClick) if f.name not in {"ip", "user_agent"})


def _public(click: EnrichedClick) -> dict[str, object]:
    """What live consumers may see: no IP, no raw user agent. (Plain getattr: `asdict` deep-copies
    every value and was the mirror's main cost.)"""
    return {name: getattr(click, name) for name in _PUBLIC_FIELDS}
