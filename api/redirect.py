"""The redirect front end: GET|HEAD /{code} on any host → 30x, with the click handed to Kafka.

Walk of a click: resolve the link (engine.links.cache) → check its state → evaluate its rules
(engine.rules) → answer → emit a RawClick (api.clicks) → the worker (streams.agents.clicks).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aiohttp import web
from redis.exceptions import RedisError

from api.metrics import BACKEND_FALLBACK, LINK_CACHE, NOT_FOUND, REDIRECT_LATENCY
from api.state import DOMAINS, EMITTER, KEYS, PG, REDIS, RESOLVER, SETTINGS, VISITORS
from engine.clicks.geo import GeoResolver
from engine.clicks.models import RawClick
from engine.clicks.useragent import parse_user_agent
from engine.clicks.utm import extract_utm
from engine.links.cache import TTLCache
from engine.links.models import CachedLink
from engine.rules.evaluator import CompiledRules, compile_rules, evaluate, needs_device, needs_geo
from engine.rules.models import RequestContext, Rule

routes = web.RouteTableDef()
NO_STORE = "private, no-store"
_compiled: TTLCache[str, tuple[int, CompiledRules]] = TTLCache(50_000, 300.0)
GEO = web.AppKey("geo", GeoResolver)


def _page(status: int, title: str, message: str) -> web.Response:
    body = (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{escape(title)} · LinkRift</title>"
        "<body style='font:16px system-ui;margin:15vh auto;max-width:32em;padding:0 1em;color:#222'>"
        f"<h1>{escape(title)}</h1><p>{escape(message)}</p></body></html>"
    )
    return web.Response(status=status, text=body, content_type="text/html", headers={"Cache-Control": NO_STORE})


async def _domain_id(request: web.Request) -> str:
    """The custom domain this Host header names, or "" for the default domain."""
    host = (request.host or "").lower()
    host = host.rsplit(":", 1)[0] if not host.startswith("[") else host
    cache = request.app[DOMAINS]
    found, cached = cache.lookup(host)
    if found:
        return str(cached or "")
    try:
        async with request.app[PG].acquire() as conn:
            row = await conn.fetchval(
                "SELECT id FROM domains WHERE domain = $1 AND deleted_at IS NULL AND is_verified", host
            )
    except OSError:
        BACKEND_FALLBACK.labels("postgres").inc()
        return ""
    domain_id = str(row) if row else ""
    cache.set(host, domain_id)
    return domain_id


def _compiled_rules(link: CachedLink) -> CompiledRules | None:
    if not link.rules:
        return None
    found, entry = _compiled.lookup(link.id)
    if found and entry is not None and entry[0] == id(link.rules):
        return entry[1]
    compiled = compile_rules(
        Rule(
            id=str(r["id"]), rule_type=r["rule_type"], priority=int(r.get("priority") or 0),
            conditions=r.get("conditions") or {}, destination_url=r.get("destination_url") or "",
            weight=r.get("weight"),
        )
        for r in link.rules
    )
    _compiled.set(link.id, (id(link.rules), compiled))
    return compiled


def _destination(url: str, link: CachedLink, query: str) -> str:
    """Append the link's UTM parameters and, when enabled, the visitor's query string."""
    extra: list[tuple[str, str]] = list(link.utm.items())
    if link.forward_query and query:
        extra.extend(parse_qsl(query, keep_blank_values=True))
    if not extra:
        return url
    parts = urlsplit(url)
    existing = parse_qsl(parts.query, keep_blank_values=True)
    present = {k for k, _ in existing}
    merged = existing + [(k, v) for k, v in extra if k not in present]
    return urlunsplit(parts._replace(query=urlencode(merged)))


def _client_ip(request: web.Request) -> str:
    return request.remote or ""


async def _admit(request: web.Request, link: CachedLink) -> bool:
    """Exact max_clicks admission: one atomic Redis INCR, only for capped links."""
    if link.max_clicks is None:
        return True
    try:
        admitted = await request.app[REDIS].incr(request.app[KEYS].link_admitted(link.id))
    except RedisError:
        BACKEND_FALLBACK.labels("redis").inc()
        return False
    return int(admitted) <= link.max_clicks


@routes.get("/{code:[^/]+/?}")  # GET also answers HEAD; one trailing slash is tolerated
async def redirect(request: web.Request) -> web.StreamResponse:
    started = time.perf_counter()
    outcome = "redirect"
    try:
        response, outcome = await _redirect(request)
        return response
    finally:
        REDIRECT_LATENCY.labels(outcome).observe(time.perf_counter() - started)


async def _redirect(request: web.Request) -> tuple[web.StreamResponse, str]:
    app = request.app
    code = request.match_info["code"].rstrip("/")
    domain_id = await _domain_id(request)
    try:
        link, tier = await app[RESOLVER].resolve(code, domain_id)
    except OSError:
        BACKEND_FALLBACK.labels("postgres").inc()
        return _page(503, "Temporarily unavailable", "Please try again in a moment."), "error"
    LINK_CACHE.labels(tier).inc()
    now = time.time()
    if link is None or not link.is_active:
        NOT_FOUND.inc()
        return _page(404, "Link not found", "This short link does not exist."), "not_found"
    if link.expires_at is not None and now >= link.expires_at:
        return _page(410, "Link expired", "This short link has expired."), "expired"
    if not await _admit(request, link):
        return _page(410, "Link unavailable", "This short link has reached its click limit."), "exhausted"
    ua = request.headers.get("User-Agent", "")
    ip = _client_ip(request)
    visitor = app[VISITORS].at(ip, ua, now)
    target, rule_id, variant = link.url, "", ""
    compiled = _compiled_rules(link)
    if compiled is not None:
        ctx_fields: dict[str, Any] = {}
        if needs_device(compiled):
            info = parse_user_agent(ua)
            ctx_fields.update(device_type=info.device_type, os=info.os, browser=info.browser)
        if needs_geo(compiled):
            geo = app[GEO].lookup(ip)
            ctx_fields.update(country=geo.country_code, region=geo.region, city=geo.city)
        decision = evaluate(
            compiled, link.url,
            RequestContext(
                now=datetime.fromtimestamp(now, UTC), visitor_id=visitor,
                referer=request.headers.get("Referer", ""),
                accept_language=request.headers.get("Accept-Language", ""), **ctx_fields,
            ),
        )
        target, rule_id, variant = decision.destination, decision.rule_id, decision.variant
    location = _destination(target, link, request.query_string)
    app[EMITTER].emit(
        RawClick(
            event_id=uuid.uuid4().hex, ts=now, link_id=link.id, workspace_id=link.workspace_id,
            domain=request.host or "", short_code=link.short_code, destination=location,
            rule_id=rule_id, variant=variant, method=request.method, ip=ip, user_agent=ua,
            referer=request.headers.get("Referer", ""),
            accept_language=request.headers.get("Accept-Language", ""), visitor_id=visitor,
            utm=extract_utm(request.query),
        )
    )
    response = web.Response(status=link.redirect_type, headers={"Location": location, "Cache-Control": NO_STORE})
    return response, "redirect"
