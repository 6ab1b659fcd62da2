"""The link-change agent: keeps every cache tier in step with `links.changes`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial
from typing import Any

import faust
import orjson
import redis.asyncio as redis

from engine.naming import RedisKeys
from streams.agents.click_consumer import AGENT_EVENTS
from streams.agents.common import json_values, raw_topic, until_written
from streams.resources import WorkerResources

log = logging.getLogger(__name__)


def invalidation_targets(change: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(short_code, domain_id) of every cache entry a change makes stale: the link's current one
    and, when its code or domain moved, the old one (which must stop resolving at once)."""
    targets = [(str(change.get("short_code") or ""), str(change.get("domain_id") or ""))]
    if "old_short_code" in change or "old_domain_id" in change:
        old = (
            str(change.get("old_short_code") or targets[0][0]),
            str(change.get("old_domain_id") or ""),
        )
        if old not in targets:
            targets.append(old)
    return [(code, domain) for code, domain in targets if code]


async def invalidate_link_caches(client: redis.Redis, keys: RedisKeys, change: Mapping[str, Any]) -> None:
    """Delete the Redis entries of the change's codes and announce them to every api replica's LRU."""
    targets = invalidation_targets(change)
    if not targets:
        return
    pipe = client.pipeline(transaction=False)
    for code, domain in targets:
        pipe.delete(keys.link(code, domain), keys.link_rules(code, domain))
        pipe.publish(keys.link_invalidations, orjson.dumps({"short_code": code, "domain_id": domain}))
    await pipe.execute()


def register(app: faust.App, res: WorkerResources) -> None:
    topic = raw_topic(app, res.topics.links_changes, res.settings.topic_partitions)

    @app.agent(topic, name="link_changes")
    async def link_changes(stream: faust.StreamT[bytes]) -> None:
        await res.ensure_started()
        async for change in json_values(stream, "link change", log):
            AGENT_EVENTS.labels("link_changes").inc()
            res.link_limits.pop(str(change.get("link_id") or ""), None)
            await until_written("link_caches", partial(invalidate_link_caches, res.redis, res.keys, change))
