"""The link-change agent: keeps every cache tier in step with `links.changes`."""

from __future__ import annotations

import logging

import faust
import orjson

from streams.agents.clicks import AGENT_EVENTS
from streams.resources import WorkerResources

log = logging.getLogger(__name__)


def register(app: faust.App, res: WorkerResources) -> None:
    topic = app.topic(
        res.topics.links_changes,
        key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
        partitions=res.settings.topic_partitions,
    )

    @app.agent(topic, name="link_changes")
    async def link_changes(stream: faust.StreamT[bytes]) -> None:
        await res.ensure_started()
        async for value in stream:
            try:
                change = orjson.loads(value)
            except orjson.JSONDecodeError:
                log.warning("dropping malformed link change")
                continue
            AGENT_EVENTS.labels("link_changes").inc()
            res.link_limits.pop(str(change.get("link_id") or ""), None)
            code = change.get("short_code") or ""
            domain = change.get("domain_id") or ""
            pipe = res.redis.pipeline(transaction=False)
            pipe.delete(res.keys.link(code, domain), res.keys.link_rules(code, domain))
            pipe.publish(res.keys.link_invalidations, orjson.dumps({"short_code": code, "domain_id": domain}))
            await pipe.execute()
