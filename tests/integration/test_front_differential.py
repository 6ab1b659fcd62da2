"""Differential test: a corpus of requests (every link state, option, rule, password form, cookie,
HEAD, custom domain, unusual and malformed input) answered by the aiohttp route alone and by the
front (api.front) over the same database, Redis and settings → the same status, Location,
cookies and click. The front answers each request twice: the first may take its slow path
(cache miss), the second its synchronous path."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
import pytest_asyncio
from aiohttp.test_utils import get_port_socket
from aiohttp.web_runner import SockSite
from yarl import URL

from api.state import RESOLVER
from engine.auth.passwords import hash_password
from engine.clicks.models import RawClick
from engine.links.access_cookies import sign_access
from engine.qr.marker import qr_marker
from tests.conftest import ApiHarness
from tests.fakes.api import serve_settings
from tests.integration.helpers import add_domain, add_link, record_clicks

pytestmark = pytest.mark.integration

IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
DESKTOP = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36"
PASSWORD = "open sesame"


@dataclass
class Both:
    """One api app listening twice: the front on one port, aiohttp alone (a plain SockSite, the
    routes as they were before the front) on another. One app, so one set of caches, one emitter
    and one analytics client; the front's caches are cleared before it answers a case first."""

    h: ApiHarness
    old_port: int
    new_port: int


@pytest_asyncio.fixture
async def both(make_settings: Any, database_url: str, broker: Any, redis_client: Any) -> AsyncIterator[Both]:
    settings = make_settings(database_url=database_url, kafka_broker=broker.url, blocked_hosts="evil.example")
    async with serve_settings(settings, "front") as h:
        runner = h.client.server.runner
        assert runner is not None
        sock = get_port_socket("127.0.0.1", 0, socket.AF_INET)
        site = SockSite(runner, sock=sock)
        await site.start()
        try:
            yield Both(h, sock.getsockname()[1], h.client.server.port)
        finally:
            await site.stop()


async def corpus(h: ApiHarness, pg: asyncpg.Connection, redis_client: Any) -> list[dict[str, Any]]:
    past = datetime.now(UTC) - timedelta(minutes=1)
    ids: dict[str, str] = {}
    ids["plain"] = await add_link(pg, h, "plain")
    for status in (301, 307, 308):
        await add_link(pg, h, f"r{status}", redirect_type=status)
    await add_link(pg, h, "utm", "https://dest.example/p?a=1", utm_source="news", utm_campaign="spring")
    await add_link(pg, h, "fwd", "https://dest.example/p?a=1", forward_query=True, utm_medium="mail")
    await add_link(pg, h, "expired", expires_at=past)
    await add_link(pg, h, "inactive", is_active=False)
    await add_link(pg, h, "deleted", deleted_at=past)
    await add_link(pg, h, "future", expires_at=past + timedelta(hours=2))
    await add_link(pg, h, "capped", max_clicks=1000)
    await add_link(pg, h, "blocked", "https://www.evil.example/x")
    await add_link(pg, h, "Mixed_Case-1", "https://dest.example/mixed")
    await add_link(pg, h, "café", "https://dest.example/utf8")
    secret_hash = hash_password(PASSWORD)
    ids["locked"] = await add_link(pg, h, "locked", password_hash=secret_hash)
    ids["rules"] = await add_link(pg, h, "rules")
    await pg.execute(
        "INSERT INTO link_rules (link_id, rule_type, priority, conditions, destination_url)"
        " VALUES ($1, 'device', 20, $2, 'https://m.example/x')",
        ids["rules"],
        orjson.dumps({"device_types": ["mobile"]}).decode(),
    )
    variants = [
        {"id": "a", "url": "https://dest.example/a", "weight": 50},
        {"id": "b", "url": "https://dest.example/b", "weight": 50},
    ]
    ab = str(
        await pg.fetchval(
            "INSERT INTO link_rules (link_id, rule_type, priority, conditions, destination_url)"
            " VALUES ($1, 'ab_test', 10, $2, '') RETURNING id",
            ids["rules"],
            orjson.dumps({"variants": variants}).decode(),
        )
    )
    ids["ab"] = await add_link(pg, h, "ab")
    ab_only = str(
        await pg.fetchval(
            "INSERT INTO link_rules (link_id, rule_type, conditions, destination_url)"
            " VALUES ($1, 'ab_test', $2, '') RETURNING id",
            ids["ab"],
            orjson.dumps({"variants": variants}).decode(),
        )
    )
    brand = await add_domain(
        pg, h, "go.brand.example", custom_404_url="https://brand.example/404",
        default_redirect_url="https://brand.example/",
    )  # fmt: skip
    await add_link(pg, h, "promo", "https://brand.example/promo", domain_id=brand)
    await add_link(pg, h, "old", domain_id=brand, expires_at=past)
    qr = qr_marker(str(uuid.uuid4()))
    token = sign_access(h.settings.secret_key, ids["locked"], secret_hash, time.time())
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    cases: list[dict[str, Any]] = [
        {"path": "/plain"},
        {"path": "/plain/"},
        {"path": "/plain", "method": "HEAD"},
        {"path": "/plain", "headers": {"Referer": "https://ref.example/x", "Accept-Language": "de-DE"}},
        {"path": "/plain", "headers": {"X-Forwarded-For": "203.0.113.9"}},
        {"path": "/plain?utm_source=mail&utm_medium=x&other=1"},
        {"path": f"/plain?qr={qr}"},
        {"path": "/plain?x=%00"},
        {"path": "/plain%20"},
        {"path": "/r301"},
        {"path": "/r307"},
        {"path": "/r308"},
        {"path": "/utm"},
        {"path": "/utm?utm_source=evil&q=a+b%26c"},
        {"path": "/fwd?x=2&a=9&utm_source=evil"},
        {"path": "/fwd?q=%E2%9C%93+ok&z&x=%2526"},
        {"path": "/fwd?"},
        {"path": "/expired"},
        {"path": "/expired", "method": "HEAD"},
        {"path": "/inactive"},
        {"path": "/deleted"},
        {"path": "/future"},
        {"path": "/capped"},
        {"path": "/blocked"},
        {"path": "/Mixed_Case-1"},
        {"path": "/mixed_case-1"},
        {"path": "/caf%C3%A9"},
        {"path": "/%FF%FE"},
        {"path": "/" + "x" * 80},
        {"path": "/nope"},
        {"path": "/a/b"},
        {"path": "/"},
        {"path": "/healthz/x"},
        {"path": "/locked"},
        {"path": "/locked", "method": "HEAD"},
        {"path": "/locked", "headers": {"Cookie": f"lr_pw={token}"}},
        {"path": "/locked", "headers": {"Cookie": f"lr_pw={token}x"}},
        {"path": "/locked", "headers": {"Cookie": f'other=1; lr_pw="{token}"'}},
        {"path": "/locked", "method": "POST", "data": "password=nope", "headers": form},
        {"path": "/locked?x=1", "method": "POST", "data": "password=open+sesame", "headers": form},
        {"path": "/rules", "headers": {"User-Agent": IPHONE}},
        {"path": "/rules", "headers": {"User-Agent": DESKTOP}},
        {"path": "/rules", "headers": {"User-Agent": DESKTOP, "Cookie": f"lr_ab_{ab}=b"}},
        {"path": "/rules", "headers": {"User-Agent": DESKTOP, "Cookie": f"lr_ab_{ab}=zz"}},
        {"path": "/ab", "headers": {"User-Agent": "visitor-1"}},
        {"path": "/ab", "headers": {"User-Agent": "visitor-2", "Cookie": f"lr_ab_{ab_only}=a"}},
        {"path": "/promo", "headers": {"Host": "Go.Brand.Example:443"}},
        {"path": "/nope", "headers": {"Host": "go.brand.example"}},
        {"path": "/old", "headers": {"Host": "go.brand.example"}},
        {"path": "/plain", "headers": {"Host": "bio.brand.example"}},
        {"path": "/plain", "headers": {"Host": "unknown.example"}},
        {"path": "/plain", "method": "DELETE"},
        {"path": "/plain", "method": "GET", "data": "body", "headers": {"Content-Type": "text/plain"}},
        {"path": "/plain", "headers": {"Expect": "100-continue"}},
        {"path": "/plain", "headers": {"Upgrade": "h2c"}},  # no `Connection: upgrade`: aiohttp's
        {"path": "/plain", "headers": {"Content-Length": "0"}},
    ]
    # The worker's observed A/B split: variant a far ahead, so new visitors are steered to b.
    keys = h.client.server.app
    from api.state import KEYS

    for link_id, rule_id in ((ids["rules"], ab), (ids["ab"], ab_only)):
        await redis_client.hset(
            keys[KEYS].ab_observed(link_id), mapping={f"{rule_id}:a": 1000, f"{rule_id}:b": 0}
        )
    return cases


def cookies_of(resp: aiohttp.ClientResponse) -> list[tuple[str, str, tuple[tuple[str, str], ...]]]:
    """(name, value, attributes) of every Set-Cookie; the password cookie's value carries its
    expiry second, so only its shape is compared."""
    found = []
    for header in resp.headers.getall("Set-Cookie", []):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        for name, morsel in jar.items():
            value = morsel.value if name != "lr_pw" else morsel.value.split(".")[0]
            attrs = tuple(sorted((k, str(v)) for k, v in morsel.items() if v and k != "expires"))
            found.append((name, value, attrs))
    return found


def click_view(click: RawClick) -> dict[str, Any]:
    view = {k: getattr(click, k) for k in click.__slots__}  # type: ignore[attr-defined]
    view.pop("event_id")
    view.pop("ts")
    assert view.pop("request_id")  # a fresh id per request on either server
    view["domain"] = view["domain"].split(":")[0]  # the two servers listen on different ports
    return view


async def test_front_answers_like_the_aiohttp_route(both: Both, database_url: str, redis_client: Any) -> None:
    h = both.h
    pg = await asyncpg.connect(database_url)
    try:
        cases = await corpus(h, pg, redis_client)
    finally:
        await pg.close()
    clicks = record_clicks(h)
    resolver = h.client.server.app[RESOLVER]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False) as session:

        async def ask(port: int, case: dict[str, Any]) -> tuple[Any, ...]:
            url = URL(f"http://127.0.0.1:{port}{case['path']}", encoded=True)
            headers = {"User-Agent": DESKTOP, **case.get("headers", {})}
            async with session.request(
                case.get("method", "GET"),
                url,
                headers=headers,
                data=case.get("data"),
                allow_redirects=False,
            ) as resp:
                body = await resp.read()
                return (
                    resp.status,
                    resp.headers.get("Location"),
                    cookies_of(resp),
                    resp.headers.get("Content-Type"),
                    resp.headers.get("Cache-Control"),
                    body,
                )

        for case in cases:
            mark = len(clicks)
            expected = await ask(both.old_port, case)
            old_made = [click_view(c) for c in clicks[mark:]]
            resolver.clear()  # the front's first answer then starts from empty caches (slow path)
            resolver._observed.clear()
            for attempt in ("first", "again"):
                mark = len(clicks)
                got = await ask(both.new_port, case)
                assert got == expected, (case, attempt)
                assert [click_view(c) for c in clicks[mark:]] == old_made, (case, attempt)
    # The front answered the cached redirects itself (it does not hand everything to aiohttp).
    front = h.client.server.front
    assert front is not None and front.answered > 0
    # Malformed requests: the same 400 from both (then the connection is closed).
    for raw in MALFORMED:
        statuses = []
        for port in (both.old_port, both.new_port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(raw)
            line = await asyncio.wait_for(reader.readline(), 10)
            statuses.append(int(line.split()[1]) if line else None)
            writer.close()
        assert statuses[0] == statuses[1] == 400, (raw, statuses)


MALFORMED = [
    b"GET /plain HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET /plain HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    b"GET /pl\x00ain HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /plain HTTP/9.1\r\nHost: a\r\n\r\n",
    b"G@T /plain HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /plain HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n",
    b"GET /plain HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n",
]
