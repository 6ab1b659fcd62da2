"""Fetch a destination's title, description, favicon and og:image without opening an SSRF hole.

Every hop resolves the host itself and refuses it unless *every* address is public (no private,
loopback, link-local, multicast, reserved, shared or cloud-metadata address), then connects to one
of those checked addresses (so a DNS answer cannot change between check and use). Redirects are
followed by hand, each hop checked again, at most MAX_REDIRECTS. The whole fetch has a time limit,
the body a size limit, and only text/html is parsed. `allow_private` skips the address check (tests
against a local server); `off` fetches nothing.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import asyncpg

from engine.outbound import Unresolvable, UnsafeDestination, resolve_public
from engine.outbox import link_change, write_outbox

log = logging.getLogger(__name__)

FetchMode = Literal["off", "production", "allow_private"]
MAX_BYTES = 512 * 1024
MAX_HEADER_BYTES = 32 * 1024
TIMEOUT_SECONDS = 5.0
MAX_REDIRECTS = 3
USER_AGENT = "LinkRiftBot/1.0 (+link preview)"
_FIELD_LIMITS = {"title": 500, "description": 2000, "favicon_url": 500, "og_image_url": 500}


class FetchFailed(Exception):
    """The destination did not give a usable HTML answer in time."""


@dataclass(frozen=True, slots=True)
class PageMetadata:
    title: str | None = None
    description: str | None = None
    favicon_url: str | None = None
    og_image_url: str | None = None

    def as_columns(self) -> dict[str, str | None]:
        return {
            "title": self.title,
            "description": self.description,
            "favicon_url": self.favicon_url,
            "og_image_url": self.og_image_url,
        }


async def resolve_checked(host: str, port: int, mode: FetchMode) -> list[str]:
    """The addresses of `host` to connect to, through the one SSRF guard (engine.outbound)."""
    try:
        return await resolve_public(host, port, allow_private=mode != "production")
    except Unresolvable as exc:
        raise FetchFailed(str(exc)) from None


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    headers: dict[str, str]
    body: bytes


async def _http_get(url: str, mode: FetchMode) -> _Response:
    """One HTTP/1.1 GET to a checked address; the body is read only for 200 text/html."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeDestination(f"only http(s) URLs are fetched, not {url!r}")
    if parts.username or parts.password:
        raise UnsafeDestination("URLs with credentials are not fetched")
    host = parts.hostname
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise UnsafeDestination("invalid port") from None
    addresses = await resolve_checked(host, port, mode)
    tls = ssl.create_default_context() if scheme == "https" else None
    last_error: Exception | None = None
    for address in addresses:
        try:
            reader, writer = await asyncio.open_connection(
                address, port, ssl=tls, server_hostname=host if tls else None, limit=MAX_HEADER_BYTES
            )
        except OSError as exc:
            last_error = exc
            continue
        try:
            return await _exchange(reader, writer, parts, host, port, scheme)
        finally:
            writer.close()
    raise FetchFailed(f"cannot connect to {host!r}: {last_error}")


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, parts: Any, host: str, port: int, scheme: str
) -> _Response:
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default_port = 443 if scheme == "https" else 80
    host_header = (f"[{host}]" if ":" in host else host) + ("" if port == default_port else f":{port}")
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: {USER_AGENT}\r\n"
        "Accept: text/html,application/xhtml+xml;q=0.9\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n"
    )
    writer.write(request.encode("ascii", "strict"))
    await writer.drain()
    try:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        raise FetchFailed(f"bad response head: {exc}") from None
    status_line, _, head = head.partition("\r\n")
    fields = status_line.split(" ", 2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
        raise FetchFailed("not an HTTP response")
    status = int(fields[1])
    headers: dict[str, str] = {}
    for line in head.split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    body = b""
    if status == 200 and headers.get("content-type", "").split(";")[0].strip().lower() == "text/html":
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = await _read_chunked(reader)
        else:
            body = await _read_limited(reader)
    return _Response(status, headers, body)


async def _read_limited(reader: asyncio.StreamReader) -> bytes:
    """Up to MAX_BYTES of the body; a longer page is cut (the <head> comes first)."""
    chunks: list[bytes] = []
    size = 0
    while size < MAX_BYTES:
        chunk = await reader.read(min(65536, MAX_BYTES - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        while size < MAX_BYTES:
            line = await reader.readuntil(b"\r\n")
            length = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if length == 0:
                break
            take = min(length, MAX_BYTES - size)
            chunks.append(await reader.readexactly(take))
            size += take
            if take < length:
                break
            await reader.readexactly(2)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        pass  # keep what arrived: a truncated page still has its <head>
    return b"".join(chunks)


async def fetch_metadata(url: str, mode: FetchMode, *, time_limit: float = TIMEOUT_SECONDS) -> PageMetadata:
    """Fetch and parse `url`; UnsafeDestination or FetchFailed when it cannot or may not be."""
    if mode == "off":
        raise UnsafeDestination("metadata fetching is off")
    try:
        async with asyncio.timeout(time_limit):
            current = url
            for _ in range(MAX_REDIRECTS + 1):
                response = await _http_get(current, mode)
                if response.status in (301, 302, 303, 307, 308):
                    location = response.headers.get("location")
                    if not location:
                        raise FetchFailed("redirect without Location")
                    current = urljoin(current, location)
                    continue
                if response.status != 200:
                    raise FetchFailed(f"status {response.status}")
                if not response.body:
                    raise FetchFailed("not an HTML page")
                return parse_metadata(_decode(response.body, response.headers), current)
    except TimeoutError:
        raise FetchFailed(f"no answer within {time_limit} s") from None
    except (OSError, ssl.SSLError, UnicodeError) as exc:
        raise FetchFailed(str(exc)) from None
    raise FetchFailed(f"more than {MAX_REDIRECTS} redirects")


_CHARSET = re.compile(rb"""<meta[^>]+charset=["']?([A-Za-z0-9_-]+)""", re.IGNORECASE)


def _decode(body: bytes, headers: dict[str, str]) -> str:
    charset = None
    for param in headers.get("content-type", "").split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"')
    if charset is None:
        match = _CHARSET.search(body[:4096])
        charset = match.group(1).decode("ascii") if match else "utf-8"
    try:
        return body.decode(charset, errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


class _HeadParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.meta: dict[str, str] = {}
        self.icon: str | None = None
        self.title_parts: list[str] = []
        self._in_title = False
        self._title_done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "title" and not self._title_done:
            self._in_title = True
        elif tag == "meta":
            key = (a.get("property") or a.get("name") or "").strip().lower()
            if key and "content" in a and key not in self.meta:
                self.meta[key] = a["content"]
        elif tag == "link" and self.icon is None:
            rels = a.get("rel", "").lower().split()
            if "icon" in rels and a.get("href"):
                self.icon = a["href"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._in_title:
            self._in_title = False
            self._title_done = True

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title_parts.append(data)


def parse_metadata(html: str, page_url: str) -> PageMetadata:
    """Title, description, favicon and og:image of an HTML page; URLs made absolute (http(s) only)."""
    parser = _HeadParser()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):
        pass  # malformed markup: keep whatever was parsed before it
    meta = parser.meta
    title = _clean(meta.get("og:title") or "".join(parser.title_parts), "title")
    description = _clean(meta.get("description") or meta.get("og:description"), "description")
    image = _absolute(meta.get("og:image") or meta.get("twitter:image"), page_url, "og_image_url")
    icon = _absolute(parser.icon or "/favicon.ico", page_url, "favicon_url")
    return PageMetadata(title=title, description=description, favicon_url=icon, og_image_url=image)


def _clean(text: str | None, field: str) -> str | None:
    if not text:
        return None
    text = " ".join(text.split())
    return text[: _FIELD_LIMITS[field]] or None


def _absolute(ref: str | None, base: str, field: str) -> str | None:
    if not ref or not ref.strip():
        return None
    url = urljoin(base, ref.strip())
    if urlsplit(url).scheme not in ("http", "https") or len(url) > _FIELD_LIMITS[field]:
        return None
    return url


async def store_metadata(
    conn: asyncpg.Connection, topic: str, link_id: str, url: str, found: PageMetadata
) -> asyncpg.Record | None:
    """Fill the link's empty metadata columns (never overwriting what the user set) if its
    destination is still `url`; writes an `updated` outbox event when anything changed."""
    cols = found.as_columns()
    async with conn.transaction():
        row = await conn.fetchrow(
            """UPDATE links SET title = COALESCE(title, $3), description = COALESCE(description, $4),
                      favicon_url = COALESCE(favicon_url, $5), og_image_url = COALESCE(og_image_url, $6),
                      updated_at = now()
               WHERE id = $1 AND url = $2 AND deleted_at IS NULL
                 AND ((title IS NULL AND $3::text IS NOT NULL) OR (description IS NULL AND $4::text IS NOT NULL)
                   OR (favicon_url IS NULL AND $5::text IS NOT NULL) OR (og_image_url IS NULL AND $6::text IS NOT NULL))
               RETURNING id, workspace_id, short_code, domain_id""",
            link_id,
            url,
            cols["title"],
            cols["description"],
            cols["favicon_url"],
            cols["og_image_url"],
        )
        if row is not None:
            await write_outbox(conn, topic, link_id, link_change("updated", row))
    return row


class MetadataJobs:
    """Background metadata fetches of one process: bounded concurrency, cancelled at shutdown."""

    def __init__(
        self,
        acquire: Callable[[], Any],
        topic: str,
        mode: FetchMode,
        *,
        concurrency: int = 4,
        fetch: Callable[[str, FetchMode], Awaitable[PageMetadata]] = fetch_metadata,
    ) -> None:
        self._acquire = acquire
        self._topic = topic
        self.mode = mode
        self._fetch = fetch
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()

    def schedule(self, link_id: str, url: str) -> None:
        if self.mode == "off":
            return
        task = asyncio.get_running_loop().create_task(self._run(link_id, url))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, link_id: str, url: str) -> None:
        async with self._slots:
            try:
                found = await self._fetch(url, self.mode)
            except (UnsafeDestination, FetchFailed) as exc:
                log.info("metadata not fetched link_id=%s reason=%s", link_id, exc)
                return
            try:
                async with self._acquire() as conn:
                    await store_metadata(conn, self._topic, link_id, url, found)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("metadata not stored link_id=%s error=%s", link_id, exc)

    async def drain(self) -> None:
        """Wait for the scheduled fetches (tests, graceful shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
