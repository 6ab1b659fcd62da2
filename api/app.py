"""The aiohttp application: management API, health, metrics and the redirect catch-all."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator

import orjson
import redis.asyncio as redis
from aiohttp import web

from api import (
    accounts,
    analytics,
    audit,
    billing,
    bio,
    domains,
    health,
    links,
    openapi,
    qr,
    redirect,
    rules,
    stream,
    tags,
    webhooks,
    workspaces,
)
from api.analytics_client import create_analytics_client
from api.clicks import ClickEmitter, open_journal
from api.errors import error_answer, error_middleware, refuse_nul
from api.ratelimit import ratelimit_ctx, ratelimit_middleware
from api.state import (
    ANALYTICS,
    DOMAINS,
    EMITTER,
    KEYS,
    PG,
    REDIS,
    RESOLVER,
    SETTINGS,
    TOPICS,
    VISITORS,
)
from engine.clicks.geo import GeoResolver
from engine.clicks.visitor import VisitorIdFactory
from engine.config import Settings
from engine.db.pool import create_pool
from engine.links.cache import LinkResolver
from engine.naming import RedisKeys, Topics

log = logging.getLogger(__name__)


async def _listen_invalidations(app: web.Application) -> None:
    """Drop LRU entries as soon as any process announces a link change (all replicas)."""
    # A dedicated connection without the request socket timeout: pub/sub sits idle for long.
    client = redis.Redis.from_url(app[SETTINGS].redis_url, socket_connect_timeout=2, health_check_interval=15)
    try:
        while True:
            try:
                pubsub = client.pubsub()
                await pubsub.subscribe(app[KEYS].link_invalidations)
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    data = orjson.loads(message["data"])
                    app[RESOLVER].invalidate(data.get("short_code", ""), data.get("domain_id", ""))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Redis went away: the LRU's short TTL bounds staleness until we resubscribe.
                log.warning("invalidation listener error=%s", exc)
                app[RESOLVER].clear()
                await asyncio.sleep(1.0)
    finally:
        await client.aclose()


async def _services(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[PG] = await create_pool(settings.database_url, min_size=1, max_size=20)
    app[REDIS] = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
    app[KEYS] = RedisKeys(settings.namespace)
    app[TOPICS] = Topics(settings.namespace)
    app[RESOLVER] = LinkResolver(
        app[PG],
        app[REDIS],
        app[KEYS],
        redis_ttl=settings.link_cache_ttl,
        lru_ttl=settings.lru_ttl_seconds,
        on_fallback=redirect.count_fallback,
    )
    app[DOMAINS] = app[RESOLVER].domains
    app[VISITORS] = VisitorIdFactory(settings.secret_key)
    app[redirect.GEO] = GeoResolver.from_settings(settings)
    app[ANALYTICS] = create_analytics_client(settings)
    emitter = ClickEmitter(
        settings.kafka_bootstrap,
        app[TOPICS].clicks_raw,
        open_journal(settings.data_dir.resolve() / "journal"),
        idempotence=settings.kafka_idempotence,
    )
    app[EMITTER] = emitter
    await emitter.start()
    listener = asyncio.create_task(_listen_invalidations(app))
    yield
    listener.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await listener
    await emitter.stop()
    await app[ANALYTICS].close()
    await app[REDIS].aclose()
    await app[PG].close()


@web.middleware
async def front_middleware(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    """`error_middleware` → `ratelimit_middleware` → `bio.bio_host_middleware` →
    `redirect.not_found_middleware`, in that order.

    aiohttp runs every middleware as a coroutine of its own on every request. For paths outside
    /api/ on a host other than `bio.*` (every redirect) the middle two only pass the request on,
    so they are skipped and the outer and inner ones run inline in this one frame; everything
    else goes through the four middlewares themselves."""
    if request.path.startswith("/api/") or bio.is_bio_host(request.host):
        inner = functools.partial(redirect.not_found_middleware, handler=handler)
        inner = functools.partial(bio.bio_host_middleware, handler=inner)
        inner = functools.partial(ratelimit_middleware, handler=inner)
        return await error_middleware(request, inner)
    try:
        refuse_nul(request)
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return await redirect.unknown_path(request)  # not /api/: the branded 404
    except Exception as exc:
        return error_answer(request, exc)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[front_middleware],
        client_max_size=2 * 1024 * 1024,
    )
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_services)
    app.cleanup_ctx.extend([accounts.accounts_ctx, ratelimit_ctx, links.metadata_ctx])
    app.add_routes(health.routes)
    app.add_routes(links.routes)
    for module in (accounts, workspaces, audit, analytics, stream, tags, rules):
        app.add_routes(module.routes)
    for feature in (domains, qr, bio):  # their public /qr/… and /@slug routes precede /{code}
        feature.setup(app)
    for module in (webhooks, billing):
        app.add_routes(module.routes)
    openapi.setup(app)  # /openapi.json and /docs, before the catch-all
    # The redirect catch-all goes last so /api, /healthz and /metrics win.
    app.add_routes(redirect.routes)
    return app
