"""The redirect front: an `asyncio.Protocol` with httptools on the public port, in front of aiohttp.

A request whose answer is in memory (link and host in the in-process caches, no body, no Redis
admission) is answered synchronously inside `data_received`: no task, no aiohttp request or
response object. Its click joins the emitter's group for this event-loop turn; at the end of the
turn one journal write takes every click of the turn, and only then are the turn's responses
written (a redirect never leaves before its click is on disk).

Only what cannot be answered from memory goes elsewhere:
- a cache miss (link, host or A/B split not cached, or expired) → an async slow path on the same
  connection that fills the cache and answers the same way (pipelined requests wait their turn);
- everything that is not a plain `GET|HEAD /{code}` (the management API, `/`, `/healthz`,
  `/metrics`, `/docs`, `/@slug`, `/qr/…`, a `bio.*` host, a body, `Expect`, `Upgrade`, unusual
  path or query characters) and the link answers that need Redis or a form (unknown codes with
  their rate limit, max_clicks admission, the password POST) → the connection is handed to
  aiohttp's own `RequestHandler`, starting with the bytes of that request. From then on aiohttp
  serves the connection, with the same routes and answers as before the front existed.

HTTP safety in the front itself: httptools (llhttp) parses each request head, fed exactly one
head at a time so the front always knows where a request starts; ambiguous framing (Content-Length
with Transfer-Encoding, duplicate Content-Length) is a parser error → 400 and close. Limits:
request line and each header line ≤ 8190 bytes (aiohttp's), a head ≤ 64 KiB, a complete head
within HEADER_TIMEOUT seconds of its first byte (slowloris), idle keep-alive connections closed
after KEEPALIVE_TIMEOUT, at most `max_connections` connections (front and aiohttp together).
See docs/redirect.md ("The front").
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import re
import signal
import socket
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any, cast

import httptools
from aiohttp import web
from aiohttp.web_runner import AppRunner
from aiohttp.web_server import Server
from multidict import MultiDictProxy
from yarl import URL

from api import pages, redirect
from api.bio import is_bio_host
from api.metrics import HTTP_LATENCY, HTTP_METHODS, HTTP_REQUESTS, LINK_CACHE, REDIRECT_LATENCY, status_class
from api.redirect import _EVENT_IDS
from api.state import EMITTER, RESOLVER, SETTINGS, VISITORS
from engine.clicks.geo import EMPTY_GEO, GeoInfo
from engine.clicks.models import click_line, click_prefix
from engine.clicks.utm import extract_utm
from engine.config import Settings
from engine.links.access_cookies import ACCESS_COOKIE, verify_access
from engine.links.admission import client_ip, host_blocked
from engine.links.cache import DEFAULT_DOMAIN, DomainInfo, ResolvedLink, normalize_host
from engine.links.urls import location_header
from engine.observability import REQUEST_ID_HEADER, accept_request_id
from engine.qr.marker import scan_marker

try:  # aiohttp's own Cookie header parser, so cookies read exactly as `request.cookies` does
    from aiohttp._cookie_helpers import parse_cookie_header
except ImportError:  # pragma: no cover - older aiohttp
    parse_cookie_header = None  # type: ignore[assignment]

log = logging.getLogger(__name__)
access_log = logging.getLogger("linkrift.access")
ROUTE = "/{code}"  # the redirect's route template in the RED metrics, as aiohttp names it

MAX_LINE = 8190  # aiohttp's max_line_size / max_field_size
MAX_HEAD = 64 * 1024
HEADER_TIMEOUT = 10  # seconds from a request's first byte to its complete head
KEEPALIVE_TIMEOUT = 75  # aiohttp's keepalive_timeout
WRITE_TIMEOUT = 30  # a client that does not read its responses
MAX_BUFFER = 256 * 1024  # unprocessed bytes kept per connection before reading pauses
MAX_CONNECTIONS = 10_000
# Paths the front answers itself: one segment of short-code characters, one trailing slash.
# Anything else (percent-escapes, dots, '@', several segments) is aiohttp's, with the same answer.
_CODE_PATH = re.compile(rb"/([A-Za-z0-9_-]{1,50})/?")
# A request with one of these is aiohttp's (a body; Expect; Upgrade), whatever its path.
_NOT_OURS = frozenset((b"content-length", b"transfer-encoding", b"expect", b"upgrade"))
_TRACKED = _NOT_OURS | frozenset(
    (b"host", b"user-agent", b"x-forwarded-for", b"cookie", b"referer", b"accept-language", b"x-request-id")
)
_NO_COOKIES: dict[str, str] = {}
_REASONS = {301: b"Moved Permanently", 302: b"Found", 303: b"See Other", 307: b"Temporary Redirect",
            308: b"Permanent Redirect"}  # fmt: skip

_REQUEST_ID_PREFIX = REQUEST_ID_HEADER.encode() + b": "
_KEEP_ALIVE_10 = b"Connection: keep-alive\r\n"
_CLOSE = b"Connection: close\r\n"
# Front._build: the destination is blocklisted.
_BLOCKED: tuple[str, bytes, dict[tuple[str, str], bytes]] = ("", b"", {})
_NO_UTM: dict[str, str] = {}  # read, never changed
_UNKNOWN_HOST = ("", "")  # Front._hosts: not seen yet (compared by identity)
BUILT_CACHE_SIZE = 50_000  # cache entries (ResolvedLink objects) with pre-built answers
PATH_CACHE_SIZE = 8192  # request paths (without the query) and request hosts remembered
PREFIXES_PER_DESTINATION = 16  # click-line prefixes kept per (link, destination): by Host and method

# A redirect's answer per destination: Location, status line with the fixed headers, and the
# click-line prefixes by (Host, method).
Built = tuple[str, bytes, dict[tuple[str, str], bytes]]

# What a request turns into when the front cannot answer it from memory.
ANSWERED, HANDOFF, SLOW = 0, 1, 2


class Front:
    """Shared state of every front connection of one process: caches, turn buffers, metrics."""

    def __init__(
        self, app: web.Application, server: Server, *, max_connections: int = MAX_CONNECTIONS
    ) -> None:
        self.app = app
        self.server = server  # aiohttp's protocol factory, for handed-off connections
        self.loop = asyncio.get_running_loop()
        self.settings: Settings = app[SETTINGS]
        self.resolver = app[RESOLVER]
        self.visitors = app[VISITORS]
        self.geo = app[redirect.GEO]
        self.max_connections = max_connections
        self.header_timeout = HEADER_TIMEOUT
        self.keepalive_timeout = KEEPALIVE_TIMEOUT
        self.write_timeout = WRITE_TIMEOUT
        self.default_host = normalize_host(self.settings.default_domain)
        self.app_paths, self.app_prefixes = _app_single_segment_paths(app)
        self.connections: set[FrontProtocol] = set()
        self.tick = int(self.loop.time())
        self._dirty: list[FrontProtocol] = []
        self._flush_scheduled = False
        self._date = b""
        self._date_line = b""
        self._update_date()
        # Per-turn metric aggregation: outcome → count, tier → count, (method, status) → count.
        self._outcomes: dict[str, int] = {}
        self._tiers: dict[str, int] = {}
        self.answered = 0  # requests the front answered itself (slow path included)
        self._red: dict[tuple[str, int], int] = {}
        # The turn's redirects (the common outcome) by (tier, method, status), counted in one step.
        self._redirects: dict[tuple[str, str, int], int] = {}
        # Per cache entry (ResolvedLink, by identity): per destination the Location, the response
        # head and the click-line prefixes (by Host and method); and the link id as the Kafka key.
        self._built: dict[int, tuple[ResolvedLink, dict[tuple[str, bytes], Built | None], bytes]] = {}
        # Request path → short code ("" = not a short-link path); Host header → (host, normalized).
        self._paths: dict[bytes, str] = {}
        self._hosts: dict[bytes, tuple[str, str] | None] = {}
        self.trust_proxy_headers = self.settings.trust_proxy_headers
        self._red_children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._request_ids = redirect.EventIds()
        self.access_log_sample = self.settings.access_log_sample
        self._latency: dict[str, Any] = {}
        self._tier_counter: dict[str, Any] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self.turn_started = 0.0
        self._emitter: Any = cast(Any, app[EMITTER])
        self._grouping = hasattr(self._emitter, "grouping")
        if self._grouping:
            self._emitter.grouping = True  # clicks are journaled once per turn, in flush()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="front-sweeper")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        self.flush()
        for conn in list(self.connections):
            conn.close()

    def _update_date(self) -> None:
        self._date = formatdate(usegmt=True).encode()
        self._date_line = b"Date: " + self._date + b"\r\n"

    async def _sweep(self) -> None:
        """Once a second: the Date header, and connections past their deadline."""
        while True:
            await asyncio.sleep(1.0)
            self.tick = int(self.loop.time())
            self._update_date()
            for conn in [c for c in self.connections if c.deadline <= self.tick]:
                conn.timed_out()

    def connection_count(self) -> int:
        return len(self.connections) + len(self.server.connections)

    # --- per-turn output ---------------------------------------------------------------------

    def ensure_flush(self) -> None:
        """One flush at the end of this event-loop turn; it also commits the emitter's group, so
        the emitter need not schedule a commit of its own."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.turn_started = time.perf_counter()
            self.loop.call_soon(self.flush)
            if self._grouping:
                self._emitter.commit_pending = True

    def queue(self, conn: FrontProtocol, data: bytes) -> None:
        if not conn.out:
            self._dirty.append(conn)
        conn.out.append(data)
        if not self._flush_scheduled:
            self.ensure_flush()

    def flush(self) -> None:
        """End of the turn: journal every click of the turn in one write, then the responses."""
        self._flush_scheduled = False
        if self._grouping:
            self._emitter.commit()
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            out = conn.out
            if not out:
                continue
            conn.out = []
            transport = conn.transport
            if transport is None:
                continue
            transport.write(out[0] if len(out) == 1 else b"".join(out))
            if conn.close_after or (conn.eof and not conn.busy):
                transport.close()
        if self._outcomes or self._redirects:
            self._record_metrics(time.perf_counter() - self.turn_started)

    def _record_metrics(self, elapsed: float) -> None:
        """Every answer of the turn took at most `elapsed` (first answer queued → responses written)."""
        outcomes, self._outcomes = self._outcomes, {}
        redirects, self._redirects = self._redirects, {}
        if redirects:
            red, tiers = self._red, self._tiers
            redirected = 0
            for (tier, method, status), count in redirects.items():
                redirected += count
                red[(method, status)] = red.get((method, status), 0) + count
                tiers[tier] = tiers.get(tier, 0) + count
            outcomes["redirect"] = outcomes.get("redirect", 0) + redirected
        for outcome, count in outcomes.items():
            total = count * elapsed
            child = self._latency.get(outcome)
            if child is None:
                child = self._latency[outcome] = REDIRECT_LATENCY.labels(outcome)
            _observe_many(child, int(count), total)
        red, self._red = self._red, {}
        for (method, status), count in red.items():
            children = self._red_children.get((method, status_class(status)))
            if children is None:
                labels = (ROUTE, method if method in HTTP_METHODS else "other", status_class(status))
                children = self._red_children[(method, status_class(status))] = (
                    HTTP_REQUESTS.labels(*labels),
                    HTTP_LATENCY.labels(ROUTE, labels[1]),
                )
                HTTP_REQUESTS.labels(ROUTE, labels[1], "5xx")
            children[0].inc(count)
            _observe_many(children[1], count, count * elapsed)
        tiers, self._tiers = self._tiers, {}
        for tier, count in tiers.items():
            counter = self._tier_counter.get(tier)
            if counter is None:
                counter = self._tier_counter[tier] = LINK_CACHE.labels(tier)
            counter.inc(count)

    def count(self, outcome: str, tier: str | None, conn: FrontProtocol, status: int) -> None:
        self.answered += 1
        self._outcomes[outcome] = self._outcomes.get(outcome, 0) + 1
        key = (conn.method, status)
        self._red[key] = self._red.get(key, 0) + 1
        if self.access_log_sample:
            self._access_log(conn, status)
        if tier is not None:
            self._tiers[tier] = self._tiers.get(tier, 0) + 1

    def _access_log(self, conn: FrontProtocol, status: int) -> None:
        sample = self.access_log_sample
        if sample >= 1.0 or random.random() < sample:  # noqa: S311 - sampling
            access_log.info(
                "access method=%s route=%s path=%s status=%d ms=%.1f host=%s",
                conn.method, ROUTE, conn.url.partition(b"?")[0][:200].decode("latin-1"), status,
                0.0, conn.host[:100],
            )  # fmt: skip

    # --- the redirect --------------------------------------------------------------------------

    def answer(
        self,
        conn: FrontProtocol,
        domain: DomainInfo,
        resolved: ResolvedLink | None,
        tier: str,
        observed: dict[str, dict[str, int]] | bool | None,
    ) -> int:
        """Answer a front request whose link is known; `observed` False: the A/B split is not
        known yet (SLOW). Nothing is counted or written unless the answer is ANSWERED."""
        now = time.time()
        link = resolved.link if resolved is not None else None
        # link_state() inline (the same tests, in the same order): no enum per request.
        if link is None or resolved is None or not link.is_active:
            return HANDOFF  # the per-IP not-found limit needs Redis: aiohttp answers
        if link.expires_at is not None and now >= link.expires_at:
            status = self.page(conn, redirect._domain_fallback(domain, pages.expired(), for_missing=False))
            self.count("expired", tier, conn, status)
            return ANSWERED
        if link.max_clicks is not None:
            return HANDOFF  # exact admission is a Redis script: aiohttp answers
        headers = conn.headers
        ua_bytes = headers.get(b"user-agent")
        ua = ua_bytes.decode("utf-8", "surrogateescape") if ua_bytes is not None else ""
        cookie_header = headers.get(b"cookie")
        cookies = _cookies(cookie_header) if cookie_header is not None else _NO_COOKIES
        if link.password_hash and not verify_access(
            self.settings.secret_key, cookies.get(ACCESS_COOKIE), link.id, link.password_hash, now
        ):
            status = self.page(conn, pages.password_form())
            self.count("password", tier, conn, status)
            return ANSWERED
        settings = self.settings
        if self.trust_proxy_headers:
            xff = headers.get(b"x-forwarded-for")
            ip = client_ip(
                conn.remote,
                xff.decode("latin-1") if xff is not None else None,
                trust_proxy_headers=True,
                trusted_proxies=settings.trusted_proxies,
            )
        else:
            ip = conn.remote
        visitor_id = self.visitors.at(ip, ua, now)
        value = headers.get(b"referer")
        referer = value.decode("utf-8", "surrogateescape") if value is not None else ""
        value = headers.get(b"accept-language")
        language = value.decode("utf-8", "surrogateescape") if value is not None else ""
        rule_id = variant = ""
        target = link.url
        if resolved.rules is not None and resolved.rules.rules:
            if resolved.ab_rule_ids and observed is False:
                found, cached = self.resolver._observed.lookup(link.id)
                if found:
                    observed = cached
                elif not self.resolver.redis_available:
                    observed = None
                else:
                    return SLOW
            target, rule_id, variant = redirect.rule_decision(
                self.geo,
                resolved,
                now=now,
                ip=ip,
                user_agent=ua,
                referer=referer,
                accept_language=language,
                cookies=cookies,
                visitor_id=visitor_id,
                observed=observed if isinstance(observed, dict) else None,
            )
        # The link's answer for this destination, built once per cache entry: blocked or not, the
        # Location, and the status line with the fixed headers.
        entries = self._built
        entry = entries.get(id(resolved))
        if entry is None or entry[0] is not resolved:
            if len(entries) >= BUILT_CACHE_SIZE:
                entries.clear()
            entry = entries[id(resolved)] = (resolved, {}, link.id.encode())
        key = entry[2]  # the click's Kafka key
        if b"?" not in conn.url:
            built = entry[1].get((target, conn.version_bytes))
            if built is None:
                built = self._build(resolved, target, "", conn.version_bytes)
                entry[1][(target, conn.version_bytes)] = built
            query_string, query = "", None
        else:
            query_string, query = conn.query()
            built = self._build(resolved, target, query_string, conn.version_bytes)
        if built is _BLOCKED:
            status = self.page(conn, pages.blocked())
            self.count("blocked", tier, conn, status)
            return ANSWERED
        if built is None:
            return HANDOFF  # non-ASCII or CR/LF in the Location: aiohttp's own rendering
        location, head, prefixes = built
        if not self._flush_scheduled:  # before emit: the emitter then leaves the commit to flush()
            self.ensure_flush()
        event_id = _EVENT_IDS.next()
        request_id = conn.rid or conn.request_id(event_id)
        # The click line, as redirect.make_click builds it for the aiohttp route, except that the
        # fields fixed for this link, host, destination and method are serialized once per cache
        # entry (engine.clicks.models.click_prefix) and the rest inline (no call layer).
        host, method = conn.host, conn.method
        prefix = prefixes.get((host, method))
        if prefix is None:
            if len(prefixes) >= PREFIXES_PER_DESTINATION:
                prefixes.clear()  # Host spellings come from the network: keep a few
            prefix = prefixes[(host, method)] = click_prefix(
                link.id, link.workspace_id, host, link.short_code, location, method
            )
        store_ip = settings.store_ip
        # Without the IP in the click the worker cannot locate it, so the front does it here.
        geo: GeoInfo = EMPTY_GEO if store_ip else self.geo.lookup(ip)
        qr_code_id = scan_marker(query) if query else ""  # a dynamic QR code's `?qr=` marker
        self._emitter.emit_line(
            click_line(
                prefix,
                event_id,
                now,
                rule_id,
                variant,
                "qr" if qr_code_id else "redirect",
                ip if store_ip else "",
                ua,
                referer,
                language,
                visitor_id,
                extract_utm(query) if query else _NO_UTM,
                qr_code_id,
                geo.country_code,
                geo.region,
                geo.city,
                request_id,
            ),
            key,
        )
        cookie = b""
        if rule_id and variant and cookies.get(redirect.AB_COOKIE_PREFIX + rule_id) != variant:
            set_cookie = redirect._ab_cookie_header(rule_id, variant, link.short_code, False)
            cookie = b"Set-Cookie: " + set_cookie.encode("latin-1") + b"\r\n"
        if conn.keep_alive:
            connection = _KEEP_ALIVE_10 if conn.http_10 else b""
        else:
            connection = _CLOSE
        # queue(conn, …) inline; this turn's flush is scheduled already (above).
        out = conn.out
        if not out:
            self._dirty.append(conn)
        out.append(
            b"".join(
                (
                    head,
                    cookie,
                    b"Content-Length: 0\r\n",
                    self._date_line,
                    _REQUEST_ID_PREFIX,
                    request_id.encode("latin-1"),
                    b"\r\n",
                    connection,
                    b"\r\n",
                )
            )
        )
        # count("redirect", …) in one step: the turn's counts by (tier, method, status).
        self.answered += 1
        counted = (tier, method, link.redirect_type)
        redirects = self._redirects
        redirects[counted] = redirects.get(counted, 0) + 1
        if self.access_log_sample:
            self._access_log(conn, link.redirect_type)
        return ANSWERED

    def _build(self, resolved: ResolvedLink, target: str, query_string: str, version: bytes) -> Built | None:
        """(Location, status line + Location + Cache-Control) of a redirect to `target`;
        _BLOCKED for a blocklisted destination; None when the front cannot write the Location."""
        if host_blocked(target, self.settings.blocked_hosts):
            return _BLOCKED
        location = redirect._destination(target, resolved, query_string)
        try:
            location_bytes = location_header(location).encode("ascii")
        except UnicodeEncodeError:
            return None  # aiohttp renders non-ASCII header values its own way
        if b"\r" in location_bytes or b"\n" in location_bytes:
            return None
        status = resolved.link.redirect_type
        head = b"".join(
            (
                version,
                b" %d %s\r\nLocation: " % (status, _REASONS.get(status, b"Found")),
                location_bytes,
                b"\r\nCache-Control: private, no-store\r\n",
            )
        )
        return location, head, {}

    def page(self, conn: FrontProtocol, response: web.Response) -> int:
        """Any small aiohttp Response (a page or a 302) written as bytes; returns its status."""
        body = response.body if isinstance(response.body, bytes) else b""
        lines = [b"%s %d %s\r\n" % (conn.version_bytes, response.status, response.reason.encode("latin-1"))]
        for name, value in response.headers.items():
            if name.lower() not in ("content-length", "date", "connection"):
                lines.append(f"{name}: {value}\r\n".encode())
        lines.append(b"Content-Length: %d\r\n" % len(body))
        lines.append(self._date_line)
        lines.append(conn.request_id_header())
        lines.append(conn.connection_header())
        lines.append(b"\r\n")
        if conn.method != "HEAD":
            lines.append(body)
        self.queue(conn, b"".join(lines))
        return response.status

    def route(self, conn: FrontProtocol) -> int:
        """A parsed GET/HEAD head: answer it, or say why not (HANDOFF, SLOW)."""
        path, _, query = conn.url.partition(b"?")
        code = self._paths.get(path)
        if code is None:
            code = self._path_code(path)
            if len(path) <= 64:  # short-code paths are; anything longer is not worth keeping
                if len(self._paths) >= PATH_CACHE_SIZE:
                    self._paths.clear()
                self._paths[path] = code
        if not code or (query and (b"#" in query or b"%00" in query)):
            return HANDOFF
        headers = conn.headers
        host_bytes = headers.get(b"host")
        if host_bytes is None:
            return HANDOFF
        hosted = self._hosts.get(host_bytes, _UNKNOWN_HOST)
        if hosted is _UNKNOWN_HOST:
            hosted = _host_of(host_bytes)
            if len(host_bytes) <= 255:
                if len(self._hosts) >= PATH_CACHE_SIZE:
                    self._hosts.clear()
                self._hosts[host_bytes] = hosted
        if hosted is None:
            return HANDOFF
        host, normalized = hosted
        conn.host = host
        conn.code = code
        if normalized == self.default_host:
            domain: DomainInfo | None = DEFAULT_DOMAIN
        else:
            found, domain = self.resolver.domains.lookup(normalized)
            if not found or domain is None:
                return SLOW
        assert domain is not None
        conn.domain = domain
        found, resolved = self.resolver.lru.lookup((domain.id, conn.code))
        if not found:
            return SLOW
        return self.answer(conn, domain, resolved, "lru", False)

    def _path_code(self, path: bytes) -> str:
        """The short code a request path names, or "" when the path is not the front's."""
        match = _CODE_PATH.fullmatch(path)
        if match is None or path in self.app_paths:
            return ""
        if path == b"/api" or path == b"/api/":
            return ""  # API paths, not links (the JSON 404)
        if self.app_prefixes and path.startswith(self.app_prefixes):
            return ""
        return match.group(1).decode("ascii")

    async def slow(self, conn: FrontProtocol) -> int:
        """Fill the caches a request needs, then answer it like the fast path would."""
        try:
            domain = conn.domain
            if domain is None:
                default = normalize_host(conn.host) == self.default_host
                domain = conn.domain = DEFAULT_DOMAIN if default else await self.resolver.domain(conn.host)
            resolved, tier = await self.resolver.resolve(conn.code, domain.id)
            observed: dict[str, dict[str, int]] | bool | None = False
            if resolved is not None and resolved.ab_rule_ids:
                observed = await self.resolver.ab_observed(resolved.link.id)
            return self.answer(conn, domain, resolved, tier, observed)
        except Exception as exc:  # storage unavailable and the like: aiohttp's answers (503 page)
            log.debug("front slow path handing off error=%s", exc)
            return HANDOFF


def _observe_many(child: Any, count: int, total: float) -> None:
    """`count` observations summing to `total` in one step: each lands in the bucket of their mean
    (the front's synchronous answers all take microseconds, far below the first bucket)."""
    buckets = getattr(child, "_buckets", None)
    upper = getattr(child, "_upper_bounds", None)
    if buckets is None or upper is None or count <= 0:
        for _ in range(count):
            child.observe(total / max(count, 1))
        return
    mean = total / count
    for index, bound in enumerate(upper):
        if mean <= bound:
            buckets[index].inc(count)
            break
    child._sum.inc(total)


def _host_of(host_bytes: bytes) -> tuple[str, str] | None:
    """(Host as sent, normalized) of a Host header the front serves; None: aiohttp's (not ASCII,
    or a `bio.*` host)."""
    try:
        host = host_bytes.decode("ascii")
    except UnicodeDecodeError:
        return None
    if is_bio_host(host):
        return None
    return host, normalize_host(host)


def _cookies(header: bytes) -> dict[str, str]:
    raw = header.decode("utf-8", "surrogateescape")
    if parse_cookie_header is None:  # pragma: no cover
        from http.cookies import SimpleCookie

        jar: SimpleCookie = SimpleCookie()
        jar.load(raw)
        return {k: m.value for k, m in jar.items()}
    return {name: morsel.value for name, morsel in parse_cookie_header(raw)}


def _app_single_segment_paths(app: web.Application) -> tuple[frozenset[bytes], tuple[bytes, ...]]:
    """One-segment paths the aiohttp app routes itself (`/healthz`, `/metrics`, `/docs`, `/@{slug}`):
    never short codes, so the front hands them over."""
    plain: set[bytes] = set()
    prefixes: set[bytes] = set()
    for resource in app.router.resources():
        info = resource.get_info()
        if "path" in info:
            path = str(info["path"])
            if path.count("/") == 1 and path != "/":
                plain.add(path.encode())
        elif "formatter" in info:
            formatter = str(info["formatter"])
            head = formatter.split("{", 1)[0]
            if head != "/" and head.count("/") == 1:
                prefixes.add(head.encode())
    return frozenset(plain), tuple(sorted(prefixes))


class FrontProtocol(asyncio.Protocol):
    """One client connection while the front serves it."""

    def __init__(self, front: Front) -> None:
        self.front = front
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.remote = ""
        self.buf = b""
        self.out: list[bytes] = []
        self.close_after = False
        self.busy = False  # a slow-path answer is pending: later requests wait
        self.eof = False
        self.paused_writing = False
        self.paused_reading = False
        self.deadline = front.tick + front.keepalive_timeout
        self.head_started: int | None = None
        # The request being handled.
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.head_bytes = 0
        self.headers_done = False
        self.body = False  # Content-Length, Transfer-Encoding, Expect or Upgrade: not the front's
        self.long_head = False  # the head being parsed is longer than MAX_LINE
        self.keep_alive = True
        self.http_10 = False
        self.version_bytes = b"HTTP/1.1"
        self.method = "GET"
        self.host = ""
        self.code = ""
        self.domain: DomainInfo | None = None
        self.request_start = 0  # offset of the current request in `buf`
        self.error: tuple[int, bytes] | None = None
        self.rid = ""

    # --- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is an asyncio.Transport in behaviour, not by subclass.
        self.transport = cast(asyncio.Transport, transport)
        front = self.front
        if front.connection_count() >= front.max_connections:
            self.transport.abort()
            self.transport = None
            return
        peer = transport.get_extra_info("peername")
        self.remote = str(peer[0]) if isinstance(peer, tuple) else ""
        front.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.front.connections.discard(self)
        self.transport = None

    def pause_writing(self) -> None:
        self.paused_writing = True
        self.deadline = self.front.tick + self.front.write_timeout
        self._pause_reading()

    def resume_writing(self) -> None:
        self.paused_writing = False
        self._resume_reading()
        self.process()

    def eof_received(self) -> bool:
        # A half-closed client still gets the answers to what it sent, then the connection closes.
        self.eof = True
        return bool(self.busy or self.out)

    def data_received(self, data: bytes) -> None:
        self.buf = self.buf + data if self.buf else data
        if self.busy or self.paused_writing:
            if len(self.buf) > MAX_BUFFER:
                self._pause_reading()
            return
        self.process()

    # --- httptools callbacks ---------------------------------------------------------------------

    # Only these two: the request line (method, target, version) is read from the validated head
    # in process(), and a body is known from its headers (one Python call less per request each).

    def on_header(self, name: bytes, value: bytes) -> None:
        # A head no longer than MAX_LINE cannot hold a longer line: only longer ones are checked.
        if self.long_head and len(name) + len(value) > MAX_LINE:
            self.error = (431, b"Request Header Fields Too Large")
        lower = name.lower()
        if lower in _TRACKED:
            if lower in _NOT_OURS:
                self.body = True
            else:
                self.headers.setdefault(lower, value)  # the first one counts

    def on_headers_complete(self) -> None:
        self.headers_done = True
        # Read here: llhttp resets its flags once the message is complete.
        self.keep_alive = self.parser.should_keep_alive()

    # --- request loop ----------------------------------------------------------------------------

    def process(self) -> None:
        """Handle every complete request head in the buffer, in order."""
        buf = self.buf
        pos = 0
        front = self.front
        while (
            not self.busy and not self.paused_writing and self.transport is not None and not self.close_after
        ):
            end = buf.find(b"\r\n\r\n", pos) if pos else buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head_end = end + 4
            self.request_start = pos
            self.error = None
            # What on_message_begin would reset: the front feeds llhttp one head at a time.
            self.rid = ""
            self.headers = {}
            self.headers_done = False
            self.body = False
            self.long_head = head_end - pos > MAX_LINE
            try:
                # The whole buffer when it is exactly one head (the usual case): no copy.
                self.parser.feed_data(buf if pos == 0 and head_end == len(buf) else buf[pos:head_end])
            except httptools.HttpParserUpgrade:
                self._handoff(buf[pos:])
                return
            except httptools.HttpParserError:
                self._reject(400, b"Bad Request")
                return
            if self.error is not None:
                self._reject(*self.error)
                return
            if not self.headers_done:
                pos = head_end  # blank lines between requests
                continue
            # The request line as llhttp accepted it: METHOD SP target SP version CRLF, where
            # neither the method nor the target can hold a space (after CRLFs llhttp skipped).
            # (partition, not find with bounds: a third of the cost in CPython 3.11.)
            start = pos
            while buf[start] == 13:  # b"\r"
                start += 2
            line = (buf if start == 0 else buf[start:head_end]).partition(b"\r\n")[0]
            method, _, rest = line.partition(b" ")
            url, _, version = rest.rpartition(b" ")
            if len(url) > MAX_LINE:
                self._reject(414, b"URI Too Long")
                return
            if self.body or (method != b"GET" and method != b"HEAD"):
                self._handoff(buf[pos:])  # a body, Expect, Upgrade, another method: aiohttp's
                return
            self.url = url
            self.method = "GET" if method == b"GET" else "HEAD"
            self.http_10 = version == b"HTTP/1.0"
            self.version_bytes = b"HTTP/1.0" if self.http_10 else b"HTTP/1.1"
            self.domain = None
            outcome = front.route(self)
            if outcome == HANDOFF:
                self._handoff(buf[pos:])
                return
            pos = head_end
            if outcome == SLOW:
                self.busy = True
                self.buf = buf[pos:]
                self.deadline = 1 << 62  # the slow path has its own backend timeouts
                task = asyncio.ensure_future(self._slow(buf[self.request_start : head_end]))
                del task
                return
            if not self.keep_alive:
                self.close_after = True
            if pos == len(buf):
                break  # the usual case: the buffer was one request head
        self.buf = buf[pos:] if pos else buf
        if self.close_after:
            self.buf = b""
            return
        if self.buf:
            if len(self.buf) > MAX_HEAD and self.buf.find(b"\r\n\r\n") < 0:
                self._reject(431, b"Request Header Fields Too Large")
                return
            if self.head_started is None:
                self.head_started = front.tick
                self.deadline = front.tick + front.header_timeout
        else:
            self.head_started = None
            self.deadline = front.tick + front.keepalive_timeout

    async def _slow(self, head: bytes) -> None:
        outcome = await self.front.slow(self)
        self.busy = False
        if self.transport is None:
            return
        if outcome == HANDOFF:
            self._handoff(head + self.buf)
            return
        if not self.keep_alive:
            self.close_after = True
            self.buf = b""
            return
        self._resume_reading()
        self.head_started = None
        self.deadline = self.front.tick + self.front.keepalive_timeout
        if self.buf and not self.paused_writing:
            self.process()

    def request_id(self, fresh: str = "") -> str:
        """The caller's X-Request-ID when acceptable, else `fresh` (a redirect passes its click's
        event id) or a new one; decided once per request."""
        rid = self.rid
        if not rid:
            given = self.headers.get(b"x-request-id")
            if given is not None:
                rid = accept_request_id(given.decode("latin-1"))
            else:
                rid = fresh or self.front._request_ids.next()
            self.rid = rid
        return rid

    def request_id_header(self) -> bytes:
        return _REQUEST_ID_PREFIX + self.request_id().encode("latin-1") + b"\r\n"

    def connection_header(self) -> bytes:
        if not self.keep_alive:
            return b"Connection: close\r\n"
        if self.version_bytes == b"HTTP/1.0":
            return b"Connection: keep-alive\r\n"
        return b""

    def query(self) -> tuple[str, MultiDictProxy[str] | None]:
        """The query string and parameters exactly as aiohttp decodes them (yarl)."""
        _, sep, raw = self.url.partition(b"?")
        if not sep or not raw:
            return "", None
        url = URL.build(query_string=raw.decode("ascii", "surrogateescape"), encoded=True)
        return url.query_string, url.query

    # --- leaving the front -----------------------------------------------------------------------

    def _reject(self, status: int, reason: bytes) -> None:
        """A malformed or oversized request: answer and close (what follows cannot be framed)."""
        self.keep_alive = False
        self.version_bytes = b"HTTP/1.1"
        self.front.queue(
            self,
            b"HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % (status, reason),
        )
        self.close_after = True
        self.buf = b""

    def timed_out(self) -> None:
        if self.transport is None:
            return
        if self.head_started is not None and not self.busy:
            self._reject(408, b"Request Timeout")
        else:
            self.transport.abort() if self.paused_writing else self.transport.close()
            self.front.connections.discard(self)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _handoff(self, data: bytes) -> None:
        """From this request on, aiohttp serves the connection (same routes, same answers)."""
        transport = self.transport
        front = self.front
        front.connections.discard(self)
        self.buf = b""
        if transport is None:
            return
        if self.out:  # earlier answers of this turn go first, after their clicks are journaled
            front.flush()
        self.transport = None
        handler = front.server()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self.paused_reading:
            self.paused_reading = False
            transport.resume_reading()
        if data:
            handler.data_received(data)
        if self.eof:
            handler.close()  # the client sent all it will: close once these are answered

    def _pause_reading(self) -> None:
        if not self.paused_reading and self.transport is not None:
            self.paused_reading = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.paused_reading and self.transport is not None:
            self.paused_reading = False
            self.transport.resume_reading()


# --- serving ------------------------------------------------------------------------------------


async def start_front(
    runner: AppRunner, sock: socket.socket, *, max_connections: int = MAX_CONNECTIONS
) -> tuple[Front, asyncio.AbstractServer]:
    """Serve `runner`'s (set up) app behind the front on a bound socket."""
    server = runner.server
    assert server is not None, "runner.setup() first"
    front = Front(runner.app, server, max_connections=max_connections)
    front.start()
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: FrontProtocol(front), sock=sock, backlog=1024)
    return front, listener


def bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


async def serve(
    app: web.Application, host: str, port: int, *, reuse_port: bool = False, shutdown_timeout: float = 5.0
) -> None:
    """`linkrift api`: the front on host:port until SIGINT/SIGTERM, then a graceful stop."""
    runner = AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    sock = bind(host, port, reuse_port=reuse_port)
    front, listener = await start_front(runner, sock, max_connections=app[SETTINGS].max_connections)
    # Everything built at start-up (modules, routes, the app) lives as long as the process: out of
    # the collector's sight, a full collection no longer walks it, which was a pause of several ms
    # on the loop thread (a p99 spike) every few thousand requests.
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    log.info("api listening host=%s port=%d", host, port)
    try:
        await stop.wait()
    finally:
        listener.close()
        await front.stop()
        await runner.cleanup()


def run(
    app_factory: Callable[[], web.Application], host: str, port: int, *, reuse_port: bool = False
) -> None:
    import uvloop

    uvloop.run(serve(app_factory(), host, port, reuse_port=reuse_port))
