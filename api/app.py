"""The aiohttp application: management API, health, metrics and the redirect catch-all."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import asyncpg
import orjson
import redis.asyncio as redis
from aiohttp import web
from aiohttp.typedefs import Handler

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
from api.click_journal import ClickEmitter, open_journal
from api.click_producer import RdKafkaClickEmitter
from api.errors import error_answer, error_middleware, error_response, refuse_nul
from api.metrics import (
    BACKEND_ERRORS,
    BACKEND_LATENCY,
    BACKEND_UP,
    DB_POOL_IN_USE,
    DB_POOL_MAX,
    DB_POOL_SIZE,
    UNMATCHED_ROUTE,
    observe_request,
)
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
from engine.observability import REQUEST_ID, REQUEST_ID_HEADER, accept_request_id, watch_loop_lag

log = logging.getLogger(__name__)
_REDIRECT_HANDLERS = (redirect.redirect, redirect.unlock)
access_log = logging.getLogger("linkrift.access")
PROBE_INTERVAL_SECONDS = 5.0
PROBE_TIMEOUT_SECONDS = 2.0
# How long a stop waits for one background task or the database pool before moving on.
STOP_GRACE_SECONDS = 5.0
# web.RequestKey from aiohttp 3.14 (a plain string key warns there); a string before it.
REQUEST_ID_KEY: Any = (
    web.RequestKey("request_id", str) if hasattr(web, "RequestKey") else "linkrift_request_id"
)


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


async def _probe_backends(app: web.Application) -> None:
    """Every PROBE_INTERVAL_SECONDS: how long PostgreSQL (through the pool, so a saturated pool
    shows), Redis and ClickHouse take to answer a trivial request, or that they failed."""

    async def redis_ping() -> None:
        await cast("Awaitable[bool]", app[REDIS].ping())

    async def clickhouse_ping() -> None:
        await app[ANALYTICS].run("ping", {})

    probes: dict[str, Callable[[], Awaitable[None]]] = {
        "postgres": lambda: _pg_select_one(app),
        "redis": redis_ping,
        "clickhouse": clickhouse_ping,
    }
    while True:
        for backend, probe in probes.items():
            started = time.perf_counter()
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel that
                # arrives as the probe finishes, and this loop then outlived shutdown (a hang).
                async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                    await probe()
            except asyncio.CancelledError:
                raise
            except Exception:
                BACKEND_ERRORS.labels(backend).inc()
                BACKEND_UP.labels(backend).set(0)
            else:
                BACKEND_LATENCY.labels(backend).observe(time.perf_counter() - started)
                BACKEND_UP.labels(backend).set(1)
        await asyncio.sleep(PROBE_INTERVAL_SECONDS)


async def _pg_select_one(app: web.Application) -> None:
    async with app[PG].acquire() as conn:
        await conn.fetchval("SELECT 1")


def _watch_pool(pool: object) -> None:
    size = getattr(pool, "get_size", lambda: 0)
    idle = getattr(pool, "get_idle_size", lambda: 0)
    limit = getattr(pool, "get_max_size", lambda: 0)
    DB_POOL_SIZE.set_function(lambda: float(size()))
    DB_POOL_IN_USE.set_function(lambda: float(size() - idle()))
    DB_POOL_MAX.set_function(lambda: float(limit()))


async def _services(app: web.Application) -> AsyncIterator[None]:
    """Open the api's resources; each one's cleanup is registered as soon as it is open, so a
    start that fails half-way closes what it had opened (aiohttp runs no cleanup for a context
    that failed before its yield), and a normal stop closes them in reverse order."""
    settings = app[SETTINGS]
    async with contextlib.AsyncExitStack() as opened:
        app[PG] = await create_pool(settings.database_url, min_size=1, max_size=20)
        opened.push_async_callback(_close_pool, app[PG])
        app[REDIS] = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        opened.push_async_callback(app[REDIS].aclose)
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
        opened.callback(app[redirect.GEO].close)
        app[ANALYTICS] = create_analytics_client(settings)
        opened.push_async_callback(app[ANALYTICS].close)
        emitter_class = RdKafkaClickEmitter if settings.click_producer == "librdkafka" else ClickEmitter
        emitter = emitter_class(
            settings.kafka_bootstrap,
            app[TOPICS].clicks_raw,
            open_journal(settings.data_dir.resolve() / "journal"),
            idempotence=settings.kafka_idempotence,
            group=app[TOPICS].clicks_group,
        )
        app[EMITTER] = emitter
        opened.push_async_callback(emitter.stop)  # also closes the journal
        await emitter.start()
        _watch_pool(app[PG])
        for job in (_listen_invalidations(app), _probe_backends(app), watch_loop_lag()):
            opened.push_async_callback(_cancel, asyncio.create_task(job))
        yield


async def _cancel(task: asyncio.Task[None]) -> None:
    """Cancel a background task and wait for it, but never let one that does not end (a library
    call that ignores cancellation) hold up the stop: the resources behind it close next."""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=STOP_GRACE_SECONDS)
    if not done:
        log.warning("background task did not stop within %.0fs task=%s", STOP_GRACE_SECONDS, task.get_name())
        return
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()


async def _close_pool(pool: asyncpg.Pool) -> None:
    """asyncpg's close waits for every acquired connection to come back; a handler still holding
    one (a long-lived stream being torn down) would hold up the stop, so past a grace period the
    pool's connections are terminated instead."""
    try:
        async with asyncio.timeout(STOP_GRACE_SECONDS):
            await pool.close()
    except TimeoutError:
        log.warning(
            "database pool did not close within %.0fs; terminating its connections", STOP_GRACE_SECONDS
        )
        pool.terminate()


def route_template(request: web.Request) -> str:
    """The matched route's template (`/api/v1/links/{link_id}`), never the path itself."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id (the caller's X-Request-ID when acceptable, else a new one; echoed by
    `_echo_request_id`, visible to log lines and carried into the click), RED metrics per route
    template and status class, and the sampled access log."""
    request_id = accept_request_id(request.headers.get(REQUEST_ID_HEADER))
    request[REQUEST_ID_KEY] = request_id
    token = REQUEST_ID.set(request_id)
    started = time.perf_counter()
    status = 500
    try:
        response = await front_middleware(request, handler)
        status = response.status
        return response
    except web.HTTPException as exc:  # redirects and other answers raised as exceptions
        status = exc.status
        raise
    except asyncio.CancelledError:  # the client went away: not a server error (nginx's 499)
        status = 499
        raise
    finally:
        elapsed = time.perf_counter() - started
        route = route_template(request)
        observe_request(route, request.method, status, elapsed)
        sample = request.app[SETTINGS].access_log_sample
        if sample and (sample >= 1.0 or random.random() < sample):  # noqa: S311 - sampling, not security
            access_log.info(
                "access method=%s route=%s path=%s status=%d ms=%.1f host=%s",
                request.method, route, request.path[:200], status,
                elapsed * 1000, (request.host or "")[:100],
            )  # fmt: skip
        REQUEST_ID.reset(token)


async def _echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    request_id = request.get(REQUEST_ID_KEY)
    if request_id:
        response.headers[REQUEST_ID_HEADER] = request_id


async def front_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """`error_middleware` → `ratelimit_middleware` → `bio.bio_host_middleware` →
    `redirect.not_found_middleware`, in that order.

    aiohttp runs every middleware as a coroutine of its own on every request. For paths outside
    /api/ on a host other than `bio.*` (every redirect) the middle two only pass the request on,
    so they are skipped and the outer and inner ones run inline in this one frame; everything
    else goes through the four middlewares themselves."""
    api_path = request.path.startswith("/api/") or request.path == "/api"
    if api_path or bio.is_bio_host(request.host):
        if api_path and request.match_info.handler in _REDIRECT_HANDLERS:
            # `/api` and `/api/` fit the short-code pattern: they are API paths, not links.
            return error_response(404, "not_found", "no such API endpoint")
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


def create_app(
    settings: Settings, *, pages: Callable[[web.Application], None] | None = None
) -> web.Application:
    """The api application. `pages` mounts the browser app (cli passes `web.setup`: /app and its
    email-link aliases), before the redirect catch-all; api itself never imports web."""
    app = web.Application(
        middlewares=[observe_middleware],
        client_max_size=2 * 1024 * 1024,
    )
    app[SETTINGS] = settings
    app.on_response_prepare.append(_echo_request_id)
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
    if pages is not None:
        pages(app)
    # The redirect catch-all goes last so /api, /healthz and /metrics win.
    app.add_routes(redirect.routes)
    return app
