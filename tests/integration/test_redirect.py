"""The redirect front end through the real api: states, options, passwords, rules, domains,
max_clicks exactness, abuse limits, cache invalidation and backend outages."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import orjson
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

from api.app import create_app
from api.metrics import BACKEND_FALLBACK
from api.state import KEYS, RESOLVER
from engine.auth.passwords import hash_password
from engine.clicks.visitor import VisitorIdFactory
from tests.conftest import PG_SERVER, ApiHarness, _make_principal
from tests.fakes.front import make_test_server
from tests.integration.helpers import DEST, add_domain, add_link, record_clicks

pytestmark = pytest.mark.integration


@pytest.fixture(params=["aiohttp", "front"])
def server_kind(request: pytest.FixtureRequest) -> str:
    """Every test here runs against the aiohttp route and against the front (api.front)."""
    return str(request.param)


@pytest_asyncio.fixture
async def start_api(
    make_settings: Any, database_url: str, broker: Any, redis_client: Any, server_kind: str
) -> AsyncIterator[Any]:
    """Start an in-process api with settings overrides (the `api` fixture cannot take any)."""
    clients: list[TestClient] = []

    async def start(**overrides: Any) -> ApiHarness:
        settings = make_settings(database_url=database_url, kafka_broker=broker.url, **overrides)
        who = await _make_principal(database_url)
        client = TestClient(make_test_server(create_app(settings), server_kind))
        await client.start_server()
        clients.append(client)
        return ApiHarness(client, settings, who["api_key"], who["user_id"], who["workspace_id"])

    yield start
    for client in clients:
        await client.close()


@pytest_asyncio.fixture
async def pg(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


async def get(h: ApiHarness, path: str, **kwargs: Any) -> Any:
    # Each request is a fresh browser: cookies are only those the test passes explicitly.
    h.client.session.cookie_jar.clear()
    return await h.client.get(path, allow_redirects=False, **kwargs)


async def post(h: ApiHarness, path: str, **kwargs: Any) -> Any:
    h.client.session.cookie_jar.clear()
    return await h.client.post(path, allow_redirects=False, **kwargs)


def fallback_count(backend: str) -> float:
    return BACKEND_FALLBACK.labels(backend)._value.get()


# --- paths, options -------------------------------------------------------------------------------


async def test_codes_are_case_sensitive_and_paths_normalised(api: ApiHarness, pg: asyncpg.Connection) -> None:
    await add_link(pg, api, "AbC12", "https://dest.example/upper")
    await add_link(pg, api, "abc12", "https://dest.example/lower")
    await add_link(pg, api, "café", "https://dest.example/utf8")
    assert (await get(api, "/AbC12")).headers["Location"] == "https://dest.example/upper"
    assert (await get(api, "/abc12")).headers["Location"] == "https://dest.example/lower"
    assert (await get(api, "/AbC12/")).headers["Location"] == "https://dest.example/upper"
    assert (await get(api, "/AbC12%20")).headers["Location"] == "https://dest.example/upper"
    assert (await get(api, "/caf%C3%A9")).headers["Location"] == "https://dest.example/utf8"
    assert (await get(api, "/ABC12")).status == 404
    for path in ("/%FF%FE", "/" + "x" * 80, "/%20"):
        resp = await get(api, path)
        assert resp.status == 404, path
        assert "text/html" in resp.headers["Content-Type"], path
    assert (await get(api, "/AbC12/x")).status == 404


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_redirect_type(api: ApiHarness, pg: asyncpg.Connection, status: int) -> None:
    await add_link(pg, api, "typed", redirect_type=status)
    resp = await get(api, "/typed")
    assert resp.status == status and resp.headers["Location"] == DEST
    assert resp.headers["Cache-Control"] == "private, no-store"


async def test_query_forwarding_and_utm(api: ApiHarness, pg: asyncpg.Connection) -> None:
    await add_link(
        pg,
        api,
        "fwd",
        "https://dest.example/p?a=1",
        forward_query=True,
        utm_source="news",
        utm_campaign="spring",
    )
    await add_link(pg, api, "nofwd", "https://dest.example/p", utm_medium="email")
    query = parse_qs(urlsplit((await get(api, "/fwd?x=2&a=9&utm_source=evil")).headers["Location"]).query)
    # The destination's own parameters win, then the link's UTM, then the visitor's query.
    assert query == {"a": ["1"], "utm_source": ["news"], "utm_campaign": ["spring"], "x": ["2"]}
    location = (await get(api, "/nofwd?x=2")).headers["Location"]
    assert location == "https://dest.example/p?utm_medium=email"


async def test_clicks_carry_method_utm_and_visitor(api: ApiHarness, pg: asyncpg.Connection) -> None:
    link_id = await add_link(pg, api, "clicked")
    clicks = record_clicks(api)
    ua = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"}
    assert (await get(api, "/clicked?utm_source=mail&utm_medium=x", headers=ua)).status == 302
    assert (await api.client.head("/clicked", headers=ua, allow_redirects=False)).status == 302
    assert [c.method for c in clicks] == ["GET", "HEAD"]
    first = clicks[0]
    assert first.link_id == link_id and first.utm == {"utm_source": "mail", "utm_medium": "x"}
    assert first.ip == "127.0.0.1"
    assert first.visitor_id == VisitorIdFactory(api.settings.secret_key).at(
        "127.0.0.1", ua["User-Agent"], first.ts
    )
    # Without trust_proxy_headers X-Forwarded-For is the visitor's word and ignored.
    await get(api, "/clicked", headers={"X-Forwarded-For": "203.0.113.9"})
    assert clicks[-1].ip == "127.0.0.1"


async def test_store_ip_false_and_trusted_forwarded_for(start_api: Any, pg: asyncpg.Connection) -> None:
    # The test client connects from 127.0.0.1: that is "our proxy" here, along with 10/8.
    h = await start_api(store_ip=False, trust_proxy_headers=True, trusted_proxies="10.0.0.0/8,127.0.0.0/8")
    await add_link(pg, h, "private")
    clicks = record_clicks(h)
    headers = {"User-Agent": "agent/1", "X-Forwarded-For": "198.51.100.1, 203.0.113.7, 10.1.2.3"}
    assert (await get(h, "/private", headers=headers)).status == 302
    (click,) = clicks
    assert click.ip == "" and "203.0.113.7" not in click.dumps().decode()
    # The rightmost hop that is not our proxy is the client; the visitor id still uses it.
    assert click.visitor_id == VisitorIdFactory(h.settings.secret_key).at("203.0.113.7", "agent/1", click.ts)


async def test_forwarded_for_from_a_peer_that_is_not_a_trusted_proxy_is_ignored(
    start_api: Any, pg: asyncpg.Connection
) -> None:
    h = await start_api(store_ip=True, trust_proxy_headers=True, trusted_proxies="10.0.0.0/8")
    await add_link(pg, h, "direct")
    clicks = record_clicks(h)
    headers = {"User-Agent": "agent/1", "X-Forwarded-For": "203.0.113.7"}
    assert (await get(h, "/direct", headers=headers)).status == 302
    (click,) = clicks
    assert click.ip == "127.0.0.1"  # the socket peer: a direct client cannot pick its address


# --- link states and domains ---------------------------------------------------------------------


async def test_link_states(api: ApiHarness, pg: asyncpg.Connection) -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    await add_link(pg, api, "inactive", is_active=False)
    await add_link(pg, api, "deleted", deleted_at=past)
    await add_link(pg, api, "expired", expires_at=past)
    await add_link(pg, api, "future", expires_at=past + timedelta(hours=1))
    await add_link(pg, api, "once", max_clicks=1)
    clicks = record_clicks(api)
    for code, status in [("inactive", 404), ("deleted", 404), ("expired", 410), ("future", 302)]:
        resp = await get(api, f"/{code}")
        assert resp.status == status, code
    assert "expired" in await (await get(api, "/expired")).text()
    assert (await get(api, "/once")).status == 302
    resp = await get(api, "/once")
    assert resp.status == 410 and "click limit" in await resp.text()
    assert [c.short_code for c in clicks] == ["future", "once"]


async def test_custom_domain_routing_and_fallback_urls(api: ApiHarness, pg: asyncpg.Connection) -> None:
    domain_id = await add_domain(
        pg,
        api,
        "go.brand.example",
        custom_404_url="https://brand.example/404",
        default_redirect_url="https://brand.example/",
    )
    plain_domain = await add_domain(pg, api, "plain.example")
    await add_domain(pg, api, "unverified.example", is_verified=False)
    await add_link(pg, api, "promo", "https://brand.example/promo", domain_id=domain_id)
    await add_link(pg, api, "promo", "https://default.example/promo")
    await add_link(pg, api, "old", domain_id=domain_id, expires_at=datetime.now(UTC) - timedelta(days=1))
    await add_link(pg, api, "gone", domain_id=plain_domain, expires_at=datetime.now(UTC) - timedelta(days=1))

    brand = {"Host": "Go.Brand.Example:443"}
    assert (await get(api, "/promo", headers=brand)).headers["Location"] == "https://brand.example/promo"
    assert (await get(api, "/promo")).headers["Location"] == "https://default.example/promo"
    unverified = await get(api, "/promo", headers={"Host": "unverified.example"})
    assert unverified.headers["Location"] == "https://default.example/promo"
    # A custom domain's own pages replace the branded ones.
    missing = await get(api, "/nope", headers=brand)
    assert missing.status == 302 and missing.headers["Location"] == "https://brand.example/404"
    expired = await get(api, "/old", headers=brand)
    assert expired.status == 302 and expired.headers["Location"] == "https://brand.example/"
    assert (await get(api, "/gone", headers={"Host": "plain.example"})).status == 410
    assert (await get(api, "/nope", headers={"Host": "plain.example"})).status == 404


async def test_max_clicks_is_exact_under_concurrency(api: ApiHarness, pg: asyncpg.Connection) -> None:
    await add_link(pg, api, "capped", max_clicks=100)
    clicks = record_clicks(api)

    async def hit() -> int:
        resp = await get(api, "/capped")
        await resp.release()
        return resp.status

    statuses = await asyncio.gather(*(hit() for _ in range(200)))
    assert statuses.count(302) == 100 and statuses.count(410) == 100
    assert len(clicks) == 100


# --- password ----------------------------------------------------------------------------------


def _cookie(resp: Any, name: str) -> str:
    header = next(h for h in resp.headers.getall("Set-Cookie") if h.startswith(name + "="))
    return header


async def test_password_flow(api: ApiHarness, pg: asyncpg.Connection) -> None:
    secret_hash = hash_password("open sesame")
    await add_link(pg, api, "secret", password_hash=secret_hash)
    await add_link(pg, api, "other", "https://dest.example/other", password_hash=secret_hash)
    clicks = record_clicks(api)

    form = await get(api, "/secret")
    assert form.status == 200 and "<form method=post" in await form.text()
    wrong = await post(api, "/secret", data={"password": "nope"})
    assert wrong.status == 401 and "Wrong password" in await wrong.text()
    empty = await post(api, "/secret", data={})
    assert empty.status == 401
    assert clicks == []

    right = await post(api, "/secret?x=1", data={"password": "open sesame"})
    assert right.status == 303 and right.headers["Location"] == DEST
    header = _cookie(right, "lr_pw")
    assert "Path=/secret" in header and "HttpOnly" in header and "SameSite=Lax" in header
    token = header.split(";", 1)[0].split("=", 1)[1]

    again = await get(api, "/secret", headers={"Cookie": f"lr_pw={token}"})
    assert again.status == 302 and again.headers["Location"] == DEST
    assert len(clicks) == 2
    # The cookie is bound to its link: another protected link still asks.
    assert (await get(api, "/other", headers={"Cookie": f"lr_pw={token}"})).status == 200
    assert (await get(api, "/secret", headers={"Cookie": f"lr_pw={token}x"})).status == 200


async def test_password_attempts_are_rate_limited(start_api: Any, pg: asyncpg.Connection) -> None:
    h = await start_api(password_rate_limit=3)
    await add_link(pg, h, "locked", password_hash=hash_password("open sesame"))
    statuses = []
    for _ in range(4):
        resp = await post(h, "/locked", data={"password": "guess"})
        statuses.append(resp.status)
    assert statuses == [401, 401, 401, 429]
    right = await post(h, "/locked", data={"password": "open sesame"})
    assert right.status == 429 and right.headers["Retry-After"]


# --- abuse ----------------------------------------------------------------------------------------


async def test_unknown_codes_are_rate_limited(start_api: Any, pg: asyncpg.Connection) -> None:
    h = await start_api(not_found_rate_limit=5)
    await add_link(pg, h, "real")
    statuses = [(await get(h, f"/scan{i}")).status for i in range(6)]
    assert statuses == [404] * 5 + [429]
    assert (await get(h, "/real")).status == 302  # real links still work for that IP


async def test_blocked_hosts(start_api: Any, pg: asyncpg.Connection) -> None:
    h = await start_api(blocked_hosts="evil.example, bad.example")
    await add_link(pg, h, "before", "https://www.evil.example/x")
    resp = await get(h, "/before")
    assert resp.status == 410 and "blocked" in await resp.text()
    created = await h.client.post("/api/v1/links", json={"url": "https://bad.example/y"}, headers=h.auth)
    assert created.status == 422 and (await created.json())["error"]["field"] == "url"


# --- rules ----------------------------------------------------------------------------------------


async def test_ab_rule_balancing_and_sticky_cookie(
    api: ApiHarness, pg: asyncpg.Connection, redis_client: Any
) -> None:
    link_id = await add_link(pg, api, "split")
    variants = [
        {"id": "a", "url": "https://dest.example/a", "weight": 50},
        {"id": "b", "url": "https://dest.example/b", "weight": 50},
    ]
    rule_id = str(
        await pg.fetchval(
            "INSERT INTO link_rules (link_id, rule_type, conditions, destination_url)"
            " VALUES ($1, 'ab_test', $2, '') RETURNING id",
            link_id,
            orjson.dumps({"variants": variants}).decode(),
        )
    )
    # The worker saw variant a far ahead, so every new visitor is steered to b.
    keys = api.client.server.app[KEYS]
    await redis_client.hset(keys.ab_observed(link_id), mapping={f"{rule_id}:a": 1000, f"{rule_id}:b": 0})
    clicks = record_clicks(api)
    for i in range(12):
        resp = await get(api, "/split", headers={"User-Agent": f"visitor-{i}"})
        assert resp.headers["Location"] == "https://dest.example/b"
        assert f"lr_ab_{rule_id}=b" in _cookie(resp, f"lr_ab_{rule_id}")
    assert {(c.rule_id, c.variant) for c in clicks} == {(rule_id, "b")}
    # A visitor already assigned by cookie keeps the variant and gets no new cookie.
    sticky = await get(api, "/split", headers={"Cookie": f"lr_ab_{rule_id}=a"})
    assert sticky.headers["Location"] == "https://dest.example/a"
    assert "Set-Cookie" not in sticky.headers


async def test_device_rule(api: ApiHarness, pg: asyncpg.Connection) -> None:
    link_id = await add_link(pg, api, "dev")
    await pg.execute(
        "INSERT INTO link_rules (link_id, rule_type, conditions, destination_url) VALUES ($1, 'device', $2, $3)",
        link_id,
        '{"os": ["iOS"]}',
        "https://apps.example/ios",
    )
    iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
    assert (await get(api, "/dev", headers={"User-Agent": iphone})).headers[
        "Location"
    ] == "https://apps.example/ios"
    assert (await get(api, "/dev", headers={"User-Agent": "Mozilla/5.0 (X11; Linux)"})).headers[
        "Location"
    ] == DEST


# --- caches and outages ---------------------------------------------------------------------------


async def test_change_is_visible_within_one_second(
    api: ApiHarness, pg: asyncpg.Connection, redis_client: Any
) -> None:
    await add_link(pg, api, "moving", "https://dest.example/v1")
    assert (await get(api, "/moving")).headers["Location"] == "https://dest.example/v1"
    await pg.execute("UPDATE links SET url = 'https://dest.example/v2' WHERE short_code = 'moving'")
    # Without an announcement the LRU (5 s) still answers the old version: the test can fail.
    assert (await get(api, "/moving")).headers["Location"] == "https://dest.example/v1"
    keys = api.client.server.app[KEYS]
    # What the worker's link-change agent does on a links.changes event.
    await redis_client.delete(keys.link("moving"))
    await redis_client.publish(
        keys.link_invalidations, orjson.dumps({"short_code": "moving", "domain_id": ""})
    )
    started = time.monotonic()
    while (await get(api, "/moving")).headers["Location"] != "https://dest.example/v2":
        assert time.monotonic() - started < 1.0, "change not visible within 1 s"
        await asyncio.sleep(0.02)


async def test_redis_down_serves_from_postgres(start_api: Any, pg: asyncpg.Connection) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    h = await start_api(redis_url=f"redis://127.0.0.1:{dead_port}/0")
    await add_link(pg, h, "alive")
    await add_link(pg, h, "capped", max_clicks=5)
    before = fallback_count("redis")
    resp = await get(h, "/alive")
    assert resp.status == 302 and resp.headers["Location"] == DEST
    assert (await get(h, "/unknown")).status == 404
    # A capped link cannot be counted exactly without Redis: unavailable, not a 500 or a free pass.
    assert (await get(h, "/capped")).status == 503
    assert fallback_count("redis") > before


async def test_postgres_down_serves_cached_links(
    start_api: Any, pg: asyncpg.Connection, database_url: str, redis_client: Any
) -> None:
    h = await start_api(lru_ttl_seconds=0.2)
    await add_link(pg, h, "warm")
    await add_link(pg, h, "cold")
    assert (await get(h, "/warm")).status == 302
    name = database_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(f"{PG_SERVER}/postgres")
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> $2",
            name,
            pg.get_server_pid(),
        )
        # Redis still holds the link; then the LRU's expired entry is all that is left.
        before = fallback_count("postgres")
        assert (await get(h, "/warm")).status == 302
        await redis_client.delete(h.client.server.app[KEYS].link("warm"))
        await asyncio.sleep(0.3)
        resp = await get(h, "/warm")
        assert resp.status == 302 and resp.headers["Location"] == DEST
        unknown = await get(h, "/cold")
        assert unknown.status == 503 and "text/html" in unknown.headers["Content-Type"]
        assert fallback_count("postgres") >= before + 2
        assert h.client.server.app[RESOLVER].lru.lookup(("", "cold")) == (False, None)
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
