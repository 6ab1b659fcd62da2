"""The redirect front end: GET|HEAD|POST /{code} on any host → 30x, with the click handed to Kafka.

Walk of a click: the Host names the domain and the path the code (engine.links.cache resolves
both) → the link's state (engine.links.admission) → its password (engine.links.access_cookies) → its
rules (engine.rules) → the blocklist and max_clicks admission → answer → emit the click line
(api.click_journal) → the worker (streams.agents.click_consumer). See docs/redirect.md.

Also the front end's other pages: `/` (a custom domain's default_redirect_url, else a small
landing page) and, through `not_found_middleware`, the branded 404 for every other unknown path
outside `/api/` (e.g. `/a/b`), with the same per-IP limit and custom-domain fallback as unknown codes.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from prometheus_client import Counter, Histogram
from redis.exceptions import RedisError

from api import pages
from api.metrics import BACKEND_FALLBACK, LINK_CACHE, NOT_FOUND, RATE_LIMITED, REDIRECT_LATENCY
from api.ratelimit import LIMITER
from api.state import EMITTER, KEYS, REDIS, RESOLVER, SETTINGS, VISITORS
from engine.auth.passwords import MAX_PASSWORD_LENGTH, verify_password
from engine.clicks.geo import EMPTY_GEO, GeoInfo, GeoResolver
from engine.clicks.models import click_line, click_prefix
from engine.clicks.useragent import parse_user_agent
from engine.clicks.utm import extract_utm
from engine.errors import ServiceUnavailable
from engine.links.access_cookies import ACCESS_COOKIE, ACCESS_TTL_SECONDS, sign_access, verify_access
from engine.links.admission import LinkState, admit, client_ip, host_blocked, link_state
from engine.links.cache import DEFAULT_DOMAIN, DomainInfo, ResolvedLink, normalize_host
from engine.links.models import CachedLink
from engine.links.urls import location_header
from engine.observability import REQUEST_ID
from engine.qr.marker import scan_marker
from engine.rules.evaluator import evaluate
from engine.rules.models import RequestContext

routes = web.RouteTableDef()
GEO = web.AppKey("geo", GeoResolver)
PATH = "/{code:[^/]+/?}"  # one trailing slash is tolerated
MAX_CODE_LENGTH = 50  # links.short_code is VARCHAR(50)
AB_COOKIE_PREFIX = "lr_ab_"
AB_COOKIE_MAX_AGE = 30 * 86400
# A page's answer and its outcome label for REDIRECT_LATENCY.
Answer = Callable[[web.Request], Awaitable[tuple[web.StreamResponse, str]]]
# Labelled metric children, bound on first use: `labels()` per redirect costs a lock and a lookup.
_LATENCY: dict[str, Histogram] = {}
_CACHE_TIER: dict[str, Counter] = {}
_NO_COOKIES: Mapping[str, str] = {}


@dataclass(slots=True)
class Visit:
    """What one request knows about its visitor, computed once."""

    request: web.Request
    now: float
    ip: str
    user_agent: str
    visitor_id: str
    cookies: Mapping[str, str] = field(default_factory=dict)

    @property
    def app(self) -> web.Application:
        return self.request.app


@routes.get(PATH)  # GET also answers HEAD (a preview; the worker classifies it)
async def redirect(request: web.Request) -> web.StreamResponse:
    return await _timed(request, _answer)


@routes.post(PATH)  # the password form posts back to the link's own URL
async def unlock(request: web.Request) -> web.StreamResponse:
    return await _timed(request, _answer)


@routes.get("/")
async def home(request: web.Request) -> web.StreamResponse:
    return await _timed(request, _home)


@web.middleware
async def not_found_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unknown paths outside /api/ (several segments, say) get the branded 404, not aiohttp's text."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        if request.path.startswith("/api/"):
            raise  # the JSON error shape (api.errors)
        return await _timed(request, _unknown_path)


async def unknown_path(request: web.Request) -> web.StreamResponse:
    """What `not_found_middleware` answers for an unknown path outside /api/."""
    return await _timed(request, _unknown_path)


async def _timed(request: web.Request, answer: Answer) -> web.StreamResponse:
    started = time.perf_counter()
    outcome = "error"
    try:
        response, outcome = await answer(request)
        return response
    except ServiceUnavailable:
        return pages.unavailable()
    finally:
        latency = _LATENCY.get(outcome)
        if latency is None:
            latency = _LATENCY[outcome] = REDIRECT_LATENCY.labels(outcome)
        latency.observe(time.perf_counter() - started)


def short_code(path_code: str) -> str | None:
    """The code of a decoded path segment: `abc/` and `abc ` (a pasted %20) mean `abc`."""
    code = path_code.rstrip("/").strip()
    if not code or len(code) > MAX_CODE_LENGTH:
        return None
    try:
        code.encode("utf-8")  # lone surrogates from undecodable percent-escapes
    except UnicodeEncodeError:
        return None
    return code


def _visitor_ip(request: web.Request) -> str:
    settings = request.app[SETTINGS]
    return client_ip(
        request.remote,
        request.headers.get("X-Forwarded-For"),
        trust_proxy_headers=settings.trust_proxy_headers,
        trusted_proxies=settings.trusted_proxies,
    )


async def _request_domain(request: web.Request) -> DomainInfo:
    """The verified custom domain the Host names, else the default domain (ServiceUnavailable)."""
    host = request.host or ""
    if normalize_host(host) == normalize_host(request.app[SETTINGS].default_domain):
        return DEFAULT_DOMAIN
    return await request.app[RESOLVER].domain(host)


async def _home(request: web.Request) -> tuple[web.StreamResponse, str]:
    domain = await _request_domain(request)
    if domain.default_redirect_url:
        return _domain_fallback(domain, pages.landing(), for_missing=False), "home"
    return pages.landing(), "home"


async def _unknown_path(request: web.Request) -> tuple[web.StreamResponse, str]:
    return await _unavailable_link(
        request, _visitor_ip(request), await _request_domain(request), LinkState.NOT_FOUND
    )


async def _answer(request: web.Request) -> tuple[web.StreamResponse, str]:
    app = request.app
    settings = app[SETTINGS]
    resolver = app[RESOLVER]
    now = time.time()
    ip = _visitor_ip(request)
    domain = await _request_domain(request)
    code = short_code(request.match_info["code"])
    resolved: ResolvedLink | None = None
    if code is not None:
        resolved, tier = await resolver.resolve(code, domain.id)
        counter = _CACHE_TIER.get(tier)
        if counter is None:
            counter = _CACHE_TIER[tier] = LINK_CACHE.labels(tier)
        counter.inc()
    state = link_state(resolved.link if resolved else None, now)
    if resolved is None or state is not LinkState.OK:
        return await _unavailable_link(request, ip, domain, state)
    link = resolved.link
    ua = request.headers.get("User-Agent", "")
    # Parsing an absent Cookie header still builds a mapping: skip it for cookieless clients.
    cookies = request.cookies if hdrs.COOKIE in request.headers else _NO_COOKIES
    visit = Visit(request, now, ip, ua, app[VISITORS].at(ip, ua, now), cookies)

    unlocked_by_post = False
    if link.password_hash:
        gate = await _password_gate(visit, resolved)
        if gate is not None:
            return gate, "password"
        unlocked_by_post = request.method == "POST"

    target, rule_id, variant = await _decide(visit, resolved)
    if host_blocked(target, settings.blocked_hosts):
        return pages.blocked(), "blocked"
    try:
        if not await admit(app[REDIS], app[KEYS], link):
            return _domain_fallback(domain, pages.exhausted(), for_missing=False), "exhausted"
    except RedisError as exc:
        # Exactness over availability: a capped link is not served while its counter is unknown.
        resolver.redis_failed(exc)
        return pages.unavailable(), "error"

    location = _destination(target, resolved, request.query_string)
    _emit_click(visit, resolved, location, rule_id, variant)
    # After a POST the browser must GET the destination: 303, never a 307/308 that re-posts.
    status = 303 if request.method == "POST" else link.redirect_type
    response = web.Response(
        status=status, headers={hdrs.LOCATION: location_header(location), hdrs.CACHE_CONTROL: pages.NO_STORE}
    )
    ab_cookie = bool(rule_id and variant and visit.cookies.get(AB_COOKIE_PREFIX + rule_id) != variant)
    if ab_cookie and not unlocked_by_post:
        # The common case: one A/B cookie whose header text depends only on these four values.
        response.headers.add(
            hdrs.SET_COOKIE, _ab_cookie_header(rule_id, variant, link.short_code, request.secure)
        )
        return response, "redirect"
    if unlocked_by_post and link.password_hash:
        response.set_cookie(
            ACCESS_COOKIE,
            sign_access(settings.secret_key, link.id, link.password_hash, now),
            max_age=ACCESS_TTL_SECONDS,
            path=_cookie_path(link.short_code),
            httponly=True,
            samesite="Lax",
            secure=request.secure,
        )
    if ab_cookie:
        _set_ab_cookie(response, rule_id, variant, link.short_code, request.secure)
    return response, "redirect"


def _set_ab_cookie(response: web.StreamResponse, rule_id: str, variant: str, code: str, secure: bool) -> None:
    response.set_cookie(
        AB_COOKIE_PREFIX + rule_id,
        variant,
        max_age=AB_COOKIE_MAX_AGE,
        path=_cookie_path(code),
        httponly=True,
        samesite="Lax",
        secure=secure,
    )


@functools.lru_cache(maxsize=4096)
def _ab_cookie_header(rule_id: str, variant: str, code: str, secure: bool) -> str:
    """The Set-Cookie value aiohttp would write for `_set_ab_cookie`, rendered once per input."""
    probe = web.Response()
    _set_ab_cookie(probe, rule_id, variant, code, secure)
    return probe.cookies[AB_COOKIE_PREFIX + rule_id].output(header="")[1:]


async def _unavailable_link(
    request: web.Request, ip: str, domain: DomainInfo, state: LinkState
) -> tuple[web.StreamResponse, str]:
    if state is LinkState.EXPIRED:
        return _domain_fallback(domain, pages.expired(), for_missing=False), "expired"
    NOT_FOUND.inc()
    app = request.app
    refused = await _rate_limited(request, ip, "not_found", app[SETTINGS].not_found_rate_limit)
    if refused is not None:
        return refused, "rate_limited"
    return _domain_fallback(domain, pages.not_found(), for_missing=True), "not_found"


async def _rate_limited(request: web.Request, ip: str, endpoint: str, limit: int) -> web.Response | None:
    """The 429 page once `ip` went over `limit` per minute on `endpoint`; fails open without Redis."""
    resolver = request.app[RESOLVER]
    if not resolver.redis_available:
        return None
    try:
        decision = await request.app[LIMITER].hit(request.app[KEYS].rate_ip(ip, endpoint), limit)
    except RedisError as exc:
        resolver.redis_failed(exc)
        return None
    if decision.allowed:
        return None
    RATE_LIMITED.labels(endpoint).inc()
    return pages.rate_limited(max(1, math.ceil(decision.retry_after)))


def _domain_fallback(domain: DomainInfo, page: web.Response, *, for_missing: bool) -> web.Response:
    """A custom domain's own pages: custom_404_url for missing links, default_redirect_url otherwise."""
    url = domain.default_redirect_url
    if for_missing:
        url = domain.custom_404_url or domain.default_redirect_url
    if not url:
        return page
    return web.Response(
        status=302, headers={"Location": location_header(url), "Cache-Control": pages.NO_STORE}
    )


async def _password_gate(visit: Visit, resolved: ResolvedLink) -> web.Response | None:
    """None when the visitor may pass; otherwise the form, the form with an error, or a 429."""
    link = resolved.link
    assert link.password_hash is not None
    app = visit.app
    secret = app[SETTINGS].secret_key
    if verify_access(secret, visit.cookies.get(ACCESS_COOKIE), link.id, link.password_hash, visit.now):
        return None
    if visit.request.method != "POST":
        return pages.password_form()
    # Counted before argon2 runs, so the limit also caps the CPU a guesser can burn.
    refused = await _rate_limited(visit.request, visit.ip, "password", app[SETTINGS].password_rate_limit)
    if refused is not None:
        return refused
    form = await visit.request.post()
    password = form.get("password")
    if not isinstance(password, str) or not password or len(password) > MAX_PASSWORD_LENGTH:
        return pages.password_form(error=True)
    # argon2 takes tens of milliseconds of CPU: keep it off the event loop.
    if not await asyncio.to_thread(verify_password, link.password_hash, password):
        return pages.password_form(error=True)
    return None


async def _decide(visit: Visit, resolved: ResolvedLink) -> tuple[str, str, str]:
    """(destination, rule id, variant) from the link's rules, or its own URL."""
    compiled = resolved.rules
    if compiled is None or not compiled.rules:
        return resolved.link.url, "", ""
    observed = await visit.app[RESOLVER].ab_observed(resolved.link.id) if resolved.ab_rule_ids else None
    headers = visit.request.headers
    return rule_decision(
        visit.app[GEO],
        resolved,
        now=visit.now,
        ip=visit.ip,
        user_agent=visit.user_agent,
        referer=headers.get("Referer", ""),
        accept_language=headers.get("Accept-Language", ""),
        cookies=visit.cookies,
        visitor_id=visit.visitor_id,
        observed=observed,
    )


def rule_decision(
    geo_resolver: GeoResolver,
    resolved: ResolvedLink,
    *,
    now: float,
    ip: str,
    user_agent: str,
    referer: str,
    accept_language: str,
    cookies: Mapping[str, str],
    visitor_id: str,
    observed: dict[str, dict[str, int]] | None,
) -> tuple[str, str, str]:
    """The rules' (destination, rule id, variant) once the A/B split is known (no I/O: the front's
    synchronous path and the aiohttp route share it)."""
    link, compiled = resolved.link, resolved.rules
    if compiled is None or not compiled.rules:
        return link.url, "", ""
    device_type = os_family = browser = country = region = city = ""
    if compiled.uses_device:  # needs_device()
        info = parse_user_agent(user_agent)
        device_type, os_family, browser = info.device_type, info.os, info.browser
    if compiled.uses_geo:  # needs_geo()
        geo = geo_resolver.lookup(ip)
        country, region, city = geo.country_code, geo.region, geo.city
    assigned: dict[str, str] = {}
    if cookies:
        for rule_id in resolved.ab_rule_ids:
            chosen = cookies.get(AB_COOKIE_PREFIX + rule_id)
            if chosen:
                assigned[rule_id] = chosen
    decision = evaluate(
        compiled,
        link.url,
        # Positional, in RequestContext's field order (now, visitor_id, device_type, os, browser,
        # country, region, city, referer, accept_language, ab_assigned): 0.35 µs, 0.84 by keyword.
        RequestContext(
            datetime.fromtimestamp(now, UTC),
            visitor_id,
            device_type,
            os_family,
            browser,
            country,
            region,
            city,
            referer,
            accept_language,
            assigned,
        ),
        observed if resolved.ab_rule_ids else None,
    )
    return decision.destination, decision.rule_id, decision.variant


def _destination(url: str, resolved: ResolvedLink, query: str) -> str:
    """Append the link's UTM parameters and, when enabled, the visitor's query string.

    Parameters already in the destination win over the link's UTM, and both win over the
    visitor's query, so a visitor cannot re-target a link; repeated visitor keys are kept."""
    link = resolved.link
    visitor = parse_qsl(query, keep_blank_values=True) if link.forward_query and query else []
    if not link.utm and not visitor:
        return url
    parts = urlsplit(url)
    merged = parse_qsl(parts.query, keep_blank_values=True)
    taken = {k for k, _ in merged}
    merged += [(k, v) for k, v in link.utm.items() if k not in taken]
    taken |= link.utm.keys()
    merged += [(k, v) for k, v in visitor if k not in taken]
    return urlunsplit(parts._replace(query=urlencode(merged)))


def _cookie_path(code: str) -> str:
    return "/" + quote(code, safe="")


def _emit_click(visit: Visit, resolved: ResolvedLink, location: str, rule_id: str, variant: str) -> None:
    app, request = visit.app, visit.request
    headers = request.headers
    app[EMITTER].emit_line(
        make_click(
            app[GEO],
            store_ip=app[SETTINGS].store_ip,
            now=visit.now,
            ip=visit.ip,
            user_agent=visit.user_agent,
            visitor_id=visit.visitor_id,
            host=request.host or "",
            method=request.method,
            # Most redirects carry no query string: skip building request.query for them.
            query=request.query if request.query_string else None,
            referer=headers.get(hdrs.REFERER, ""),
            accept_language=headers.get(hdrs.ACCEPT_LANGUAGE, ""),
            link=resolved.link,
            location=location,
            rule_id=rule_id,
            variant=variant,
            request_id=REQUEST_ID.get(),
        ),
        resolved.link.id.encode(),
    )


_COUNTER_MASK = (1 << 64) - 1
_COUNTER_PAD = 1 << 64


class EventIds:
    """Click event ids: 32 hex characters, a random 64-bit prefix per process (drawn again in a
    forked child) and a counter. Unique like uuid4().hex without a getrandom() call per click."""

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count(int.from_bytes(os.urandom(4), "big"))

    def next(self) -> str:
        # hex() of the counter with a 65th bit set, less "0x1": 16 digits, zero-padded, at a
        # third of an f-string's `:016x` cost.
        return self._prefix + hex(next(self._counter) & _COUNTER_MASK | _COUNTER_PAD)[3:]


_EVENT_IDS = EventIds()


def make_click(
    geo_resolver: GeoResolver,
    *,
    store_ip: bool,
    now: float,
    ip: str,
    user_agent: str,
    visitor_id: str,
    host: str,
    method: str,
    query: Mapping[str, str] | None,
    referer: str,
    accept_language: str,
    link: CachedLink,
    location: str,
    rule_id: str,
    variant: str,
    request_id: str,
) -> bytes:
    """The click line of one redirect answered by the aiohttp route. The front builds the same
    line with the same builder (engine.clicks.models.click_prefix/click_line), keeping the prefix
    per cache entry; tests/integration/test_front_differential.py compares the two servers' clicks."""
    # Without the IP in the click the worker cannot locate it, so the api does it here.
    geo: GeoInfo = EMPTY_GEO if store_ip else geo_resolver.lookup(ip)
    # A dynamic QR code's `?qr=` marker: a scan, counted into scan_count by the worker.
    qr_code_id = scan_marker(query) if query else ""
    return click_line(
        click_prefix(link.id, link.workspace_id, host, link.short_code, location, method),
        _EVENT_IDS.next(),
        now,
        rule_id,
        variant,
        "qr" if qr_code_id else "redirect",
        ip if store_ip else "",
        user_agent,
        referer,
        accept_language,
        visitor_id,
        extract_utm(query) if query else {},
        qr_code_id,
        geo.country_code,
        geo.region,
        geo.city,
        request_id,
    )


def count_fallback(backend: str) -> None:
    BACKEND_FALLBACK.labels(backend).inc()
