"""Rate-limit middleware (per IP per endpoint) and the per-API-key limit, with RateLimit-* headers.

The IP limit runs here, before the handler; the key limit runs in `api.auth.principal` once the key
is known (its plan and `rate_limit` override decide the limit). Both use `engine.ratelimit`'s GCRA
script: one Redis round trip each. If Redis does not answer, requests are let through (logged):
a limiter outage must not become an API outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import redis.asyncio as redis
from aiohttp import web
from aiohttp.typedefs import Handler

from api.errors import json_response
from api.state import KEYS, PG, REDIS, SETTINGS
from engine.accounts.api_keys import UsageRecorder
from engine.accounts.repository import Principal
from engine.errors import LinkRiftError, RateLimited
from engine.ratelimit import Decision, RateLimiter, key_limit

log = logging.getLogger(__name__)

LIMITER = web.AppKey("rate_limiter", RateLimiter)
USAGE = web.AppKey("api_key_usage", UsageRecorder)
_DECISION = web.RequestKey("ratelimit_decision", Decision)


async def ratelimit_ctx(app: web.Application) -> AsyncIterator[None]:
    """The limiter and the API-key usage recorder, flushed every few seconds and at shutdown."""
    app[LIMITER] = RateLimiter(app[REDIS])
    usage = UsageRecorder(app[PG])
    app[USAGE] = usage
    flusher = asyncio.create_task(usage.run(app[SETTINGS].api_key_usage_flush_seconds))
    yield
    flusher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await flusher
    await usage.flush()


async def _hit(request: web.Request, key: str, limit: int) -> Decision | None:
    try:
        decision = await request.app[LIMITER].hit(key, limit)
    except (redis.RedisError, OSError) as exc:
        log.warning("rate limiter unavailable error=%s", exc)
        return None
    previous: Decision | None = request.get(_DECISION)
    # Report the tightest limit that applied to this request.
    if previous is None or decision.remaining < previous.remaining or not decision.allowed:
        request[_DECISION] = decision
    if not decision.allowed:
        raise RateLimited("too many requests", retry_after=decision.retry_after)
    return decision


async def enforce_key_limit(request: web.Request, who: Principal) -> None:
    """Count one request against an API key (plan default or the key's override) and its usage."""
    if who.api_key_id is None or who.key_prefix is None:
        return
    await _hit(request, request.app[KEYS].rate_api(who.key_prefix), key_limit(who.plan, who.rate_limit))
    request.app[USAGE].record(who.api_key_id)


def _ip_limit(request: web.Request) -> int:
    settings = request.app[SETTINGS]
    if request.path.startswith("/api/v1/auth/"):
        return settings.rate_limit_auth_per_minute
    return settings.rate_limit_ip_per_minute


@web.middleware
async def ratelimit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        limit = _ip_limit(request)
        if limit > 0:
            resource = request.match_info.route.resource
            endpoint = f"{request.method}:{resource.canonical if resource else request.path}"
            await _hit(request, request.app[KEYS].rate_ip(request.remote or "unknown", endpoint), limit)
        response = await handler(request)
    except LinkRiftError as exc:
        # Rendered here (as error_middleware would) so refusals and errors carry RateLimit-* too.
        response = json_response(exc.to_dict(), exc.status)
    decision: Decision | None = request.get(_DECISION)
    if decision is not None and not response.prepared:
        response.headers.update(decision.headers())
    return response


async def limit_ip(request: web.Request, endpoint: str, limit: int) -> None:
    """Count one request from this IP against `endpoint` (RateLimited past `limit` per minute);
    the web app's sign-in forms share the API's auth limit this way."""
    if limit > 0:
        await _hit(request, request.app[KEYS].rate_ip(request.remote or "unknown", endpoint), limit)
