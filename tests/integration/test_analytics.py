"""Analytics API against real PostgreSQL, Redis and chDB, with clicks of known ground truth.

The api owns chDB here (analytics_via_worker=false, no worker): the test inserts rows in the
sink's own row format through the api's ClickHouse executor, then reads them over HTTP.
"""

from __future__ import annotations

import csv
import io
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

import api.analytics
from api.analytics_client import DirectAnalytics
from api.state import ANALYTICS
from engine.analytics.queries import DIMENSIONS
from engine.clicks.models import EnrichedClick
from engine.db.clickhouse_schema import apply_clickhouse_schema
from engine.naming import RedisKeys
from streams.sinks.clickhouse import COLUMNS, to_row
from tests.conftest import ApiHarness
from tests.integration._api_server import serve_api
from tests.integration.helpers import enriched_click

pytestmark = pytest.mark.integration

# Relative dates: clicks_analytics has a 2-year TTL, fixed dates would expire one day.
D = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=10)
DAY0, DAY1, DAY2 = (D + timedelta(days=i) for i in range(3))
WINDOW = {"from": D.isoformat().replace("+00:00", "Z"), "to": DAY2.isoformat().replace("+00:00", "Z")}
EVIL = '=HYPERLINK("http://evil.example")'


def _h(hours: float) -> timedelta:
    return timedelta(hours=hours)


def _link_a1_clicks(link: str, ws: str) -> list[EnrichedClick]:
    chrome_ios = {"device_type": "mobile", "browser": "Chrome", "os": "iOS", "referer_domain": "google.com"}
    utm = {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "spring"}
    firefox = {
        "country_code": "DE",
        "region": "BE",
        "city": "Berlin",
        "device_type": "desktop",
        "browser": "Firefox",
    }
    return [
        # alice comes on both days: one visitor in the two-day window.
        enriched_click(
            link, ws, "alice", DAY0 + _h(10), country_code="US", city="New York", **chrome_ios, **utm
        ),
        enriched_click(
            link, ws, "alice", DAY1 + _h(10), country_code="US", city="New York", **chrome_ios, **utm
        ),
        enriched_click(link, ws, "bob", DAY0 + _h(14), os="Windows", **firefox),
        enriched_click(link, ws, "bob", DAY0 + _h(14.5), os="Windows", utm_source=EVIL, **firefox),
        # 23:30 UTC is already the next day in Tokyo; 15:30 UTC on day 1 is day 2 in Tokyo.
        enriched_click(
            link, ws, "carol", DAY0 + _h(23.5), country_code="FR", device_type="tablet", referer_domain="t.co"
        ),
        enriched_click(
            link, ws, "dave", DAY1 + _h(15.5), country_code="JP", device_type="mobile", referer_domain="t.co"
        ),
        enriched_click(
            link, ws, "crawler", DAY0 + _h(12), country_code="US", is_bot=True, browser="Googlebot"
        ),
        enriched_click(link, ws, "slackbot", DAY1 + _h(1), country_code="US", is_bot=True, is_preview=True),
        # No visitor id (cookie-less client): a click, not a visitor.
        enriched_click(link, ws, "", DAY1 + _h(5), device_type="desktop", browser="Chrome", os="Linux"),
        # Outside [from, to): just before, and exactly at `to`.
        enriched_click(link, ws, "alice", DAY0 - _h(1), country_code="US"),
        enriched_click(link, ws, "erin", DAY2, country_code="US"),
    ]


async def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _new_link(harness: ApiHarness, headers: dict[str, str]) -> str:
    resp = await harness.client.post("/api/v1/links", json={"url": "https://example.com/x"}, headers=headers)
    assert resp.status == 201
    return str((await resp.json())["id"])


class World:
    def __init__(self, harness: ApiHarness, other: dict[str, str], links: dict[str, str]) -> None:
        self.api = harness
        self.other = {"Authorization": f"Bearer {other['api_key']}"}
        self.other_workspace = other["workspace_id"]
        self.links = links

    async def get(self, path: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
        return await self.api.client.get(path, params=params, headers=headers or self.api.auth)


@pytest_asyncio.fixture
async def world(
    make_settings: Any, database_url: str, broker: Any, redis_client: Any
) -> AsyncIterator[World]:
    settings = make_settings(database_url=database_url, kafka_broker=broker.url, analytics_via_worker=False)
    async with serve_api(settings) as harness:
        other = await harness.create_principal()
        other_auth = {"Authorization": f"Bearer {other['api_key']}"}
        links = {
            "a1": await _new_link(harness, harness.auth),
            "a2": await _new_link(harness, harness.auth),
            "b1": await _new_link(harness, other_auth),
        }
        ws_a, ws_b = harness.workspace_id, other["workspace_id"]
        clicks = _link_a1_clicks(links["a1"], ws_a)
        clicks += [
            enriched_click(links["a2"], ws_a, "zed", DAY0 + _h(h), country_code="GB") for h in (11, 12)
        ]
        clicks += [
            enriched_click(links["b1"], ws_b, f"x{i}", DAY0 + _h(13), country_code="IT") for i in range(3)
        ]
        analytics = harness.client.server.app[ANALYTICS]
        assert isinstance(analytics, DirectAnalytics)
        rows = [to_row(c, 0, offset) for offset, c in enumerate(clicks)]
        await analytics.executor.run(apply_clickhouse_schema)
        await analytics.executor.run(
            lambda client: client.insert("clicks_analytics", rows, column_names=COLUMNS)
        )
        yield World(harness, other, links)


async def test_link_report_exact_totals_series_breakdowns(world: World, redis_client: Any) -> None:
    a1 = world.links["a1"]
    resp = await world.get(f"/api/v1/links/{a1}/analytics", **WINDOW)
    assert resp.status == 200
    body = await resp.json()
    assert body["source"] == "clickhouse"
    assert (body["clicks"], body["unique_visitors"], body["human_clicks"], body["human_unique_visitors"]) == (
        9,
        6,
        7,
        4,
    )
    assert (body["bot_clicks"], body["preview_clicks"]) == (2, 1)
    # Daily uniques add up to 7; alice is one visitor over the window.
    assert body["clicks_by_day"] == [
        {"t": DAY0.date().isoformat(), "clicks": 5, "unique_visitors": 4},
        {"t": DAY1.date().isoformat(), "clicks": 4, "unique_visitors": 3},
    ]
    b = body["breakdowns"]
    assert b["country"] == [
        {"value": "DE", "clicks": 2, "unique_visitors": 1},
        {"value": "US", "clicks": 2, "unique_visitors": 1},
        {"value": "", "clicks": 1, "unique_visitors": 0},
        {"value": "FR", "clicks": 1, "unique_visitors": 1},
        {"value": "JP", "clicks": 1, "unique_visitors": 1},
    ]
    assert [(e["value"], e["clicks"], e["unique_visitors"]) for e in b["device_type"]] == [
        ("desktop", 3, 1), ("mobile", 3, 2), ("tablet", 1, 1),
    ]  # fmt: skip
    assert b["traffic"] == [
        {"value": "human", "clicks": 7, "unique_visitors": 4},
        {"value": "bot", "clicks": 1, "unique_visitors": 1},
        {"value": "preview", "clicks": 1, "unique_visitors": 1},
    ]
    assert b["referer_domain"][:2] == [
        {"value": "", "clicks": 3, "unique_visitors": 1},
        {"value": "google.com", "clicks": 2, "unique_visitors": 1},
    ]
    assert b["utm_campaign"][1] == {"value": "spring", "clicks": 2, "unique_visitors": 1}
    assert {e["value"] for e in b["city"]} == {"", "Berlin", "New York"}
    assert set(b) == {*DIMENSIONS, "traffic"}

    # Live counters: links.total_clicks (0) until the worker's Redis mirror exists, then the mirror.
    assert (body["total_clicks"], body["unique_clicks"]) == (0, 0)
    keys = RedisKeys(world.api.settings.namespace)
    await redis_client.set(keys.realtime_link(a1), 42)
    await redis_client.set(keys.realtime_unique(a1), 17)
    body = await (await world.get(f"/api/v1/links/{a1}/analytics", **WINDOW, limit="2")).json()
    assert (body["total_clicks"], body["unique_clicks"]) == (42, 17)
    assert [e["value"] for e in body["breakdowns"]["country"]] == ["DE", "US"]


async def test_buckets_follow_the_requested_time_zone(world: World) -> None:
    a1 = world.links["a1"]
    body = await (await world.get(f"/api/v1/links/{a1}/analytics", **WINDOW, tz="Asia/Tokyo")).json()
    assert body["clicks_by_day"] == [
        {"t": DAY0.date().isoformat(), "clicks": 4, "unique_visitors": 3},
        {"t": DAY1.date().isoformat(), "clicks": 4, "unique_visitors": 3},
        {"t": DAY2.date().isoformat(), "clicks": 1, "unique_visitors": 1},
    ]
    assert body["clicks"] == 9  # the zone moves buckets, not the window
    window = {"from": (DAY0 + _h(14)).isoformat(), "to": (DAY0 + _h(15)).isoformat()}
    resp = await world.get(f"/api/v1/links/{a1}/analytics", **window, interval="hour", tz="Asia/Kolkata")
    day = DAY0.date().isoformat()
    assert (await resp.json())["clicks_by_hour"] == [
        {"t": f"{day}T19:00:00+05:30", "clicks": 1, "unique_visitors": 1},
        {"t": f"{day}T20:00:00+05:30", "clicks": 1, "unique_visitors": 1},
    ]
    # A naive `from`/`to` is a wall time in tz: Tokyo's day 1 alone.
    local = {"from": DAY1.date().isoformat(), "to": DAY2.date().isoformat(), "tz": "Asia/Tokyo"}
    body = await (await world.get(f"/api/v1/links/{a1}/analytics", **local)).json()
    assert body["clicks_by_day"] == [{"t": DAY1.date().isoformat(), "clicks": 4, "unique_visitors": 3}]


async def test_workspace_report_and_tenant_isolation(world: World) -> None:
    body = await (await world.get("/api/v1/analytics", **WINDOW)).json()
    assert (body["clicks"], body["unique_visitors"]) == (11, 7)
    assert body["workspace_id"] == world.api.workspace_id
    assert {"value": "GB", "clicks": 2, "unique_visitors": 1} in body["breakdowns"]["country"]
    body = await (await world.get("/api/v1/analytics", **WINDOW, link_id=world.links["a2"])).json()
    assert (body["clicks"], body["unique_visitors"]) == (2, 1)

    # Workspace B sees its own 3 clicks (default window: the last 30 days) and nothing of A's.
    body = await (await world.get("/api/v1/analytics", headers=world.other)).json()
    assert body["clicks"] == 3 and [e["value"] for e in body["breakdowns"]["country"]] == ["IT"]
    a1 = world.links["a1"]
    for path in (
        f"/api/v1/links/{a1}/analytics",
        f"/api/v1/links/{a1}/analytics.csv",
        f"/api/v1/links/{a1}/clicks.csv",
    ):
        resp = await world.get(path, headers=world.other)
        assert resp.status == 404, path
    assert (await world.get("/api/v1/analytics", headers=world.other, link_id=a1)).status == 404
    assert (await world.api.client.get(f"/api/v1/links/{a1}/analytics")).status == 401
    readonly = await world.api.create_principal(scopes=["links:read"])
    resp = await world.get("/api/v1/analytics", headers={"Authorization": f"Bearer {readonly['api_key']}"})
    assert resp.status == 403


BAD_PARAMETERS = [
    ({"interval": "week"}, "interval"),
    ({"tz": "Nowhere/City"}, "tz"),
    ({"from": "last tuesday"}, "from"),
    ({"to": "2026-02-30"}, "to"),
    ({"limit": "0"}, "limit"),
    ({"limit": "101"}, "limit"),
    ({"format": "xml"}, "format"),
    ({"bogus": "1"}, "bogus"),
    ({"from": "2026-01-02", "to": "2026-01-01"}, "from"),
]


async def test_bad_parameters_are_422_naming_the_field(world: World) -> None:
    # One world for all cases: the setup costs more than the requests.
    for params, field in BAD_PARAMETERS:
        for path in (f"/api/v1/links/{world.links['a1']}/analytics", "/api/v1/analytics"):
            resp = await world.get(path, **params)
            assert resp.status == 422, (path, params)
            assert (await resp.json())["error"]["field"] == field, (path, params)


async def test_bad_ids_and_export_params_are_422(world: World) -> None:
    assert (await (await world.get("/api/v1/links/not-a-uuid/analytics")).json())["error"][
        "field"
    ] == "link_id"
    assert (await (await world.get("/api/v1/analytics", link_id="nope")).json())["error"][
        "field"
    ] == "link_id"
    for value in ("0", "1000001", "many"):
        resp = await world.get(f"/api/v1/links/{world.links['a1']}/clicks.csv", max_rows=value)
        assert resp.status == 422 and (await resp.json())["error"]["field"] == "max_rows"


def _csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


async def test_report_csv(world: World) -> None:
    a1 = world.links["a1"]
    resp = await world.get(f"/api/v1/links/{a1}/analytics.csv", **WINDOW, limit="3")
    assert resp.status == 200 and resp.content_type == "text/csv"
    text = await resp.text()
    assert (
        text
        == await (await world.get(f"/api/v1/links/{a1}/analytics", **WINDOW, limit="3", format="csv")).text()
    )
    rows = _csv(text)
    assert rows[0] == ["section", "dimension", "value", "clicks", "unique_visitors"]
    assert rows[1] == ["total", "", "", "9", "6"]
    assert rows[2:4] == [
        ["series", "day", DAY0.date().isoformat(), "5", "4"],
        ["series", "day", DAY1.date().isoformat(), "4", "3"],
    ]
    country = [r[2:] for r in rows if r[:2] == ["breakdown", "country"]]
    assert country == [["DE", "2", "1"], ["US", "2", "1"], ["", "1", "0"]]
    utm = [r[2:] for r in rows if r[:2] == ["breakdown", "utm_source"]]
    # The formula-looking utm_source is neutralised for spreadsheets.
    assert utm == [["", "4", "3"], ["newsletter", "2", "1"], ["'" + EVIL, "1", "1"]]
    traffic = [r[2:] for r in rows if r[:2] == ["breakdown", "traffic"]]
    assert traffic == [["human", "7", "4"], ["bot", "1", "1"], ["preview", "1", "1"]]


async def test_raw_clicks_csv_streams_in_pages_and_is_bounded(world: World, monkeypatch: Any) -> None:
    a1 = world.links["a1"]
    monkeypatch.setattr(api.analytics, "MAX_PAGE_ROWS", 2)  # 9 rows over 5 pages
    resp = await world.get(f"/api/v1/links/{a1}/clicks.csv", **WINDOW)
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/csv")
    text = await resp.text()
    assert "203.0.113.9" not in text and "UA/1.0" not in text and "alice" not in text
    rows = _csv(text)
    assert rows[0] == [
        "clicked_at", "country", "region", "city", "device", "browser", "os", "referer_domain",
        "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "is_bot", "is_preview",
    ]  # fmt: skip
    body = rows[1:]
    assert len(body) == 9
    stamps = [r[0] for r in body]
    assert stamps == sorted(stamps) and stamps[0] == (DAY0 + _h(10)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert body[0][1:11] == [
        "US",
        "",
        "New York",
        "mobile",
        "Chrome",
        "iOS",
        "google.com",
        "newsletter",
        "email",
        "spring",
    ]
    assert body[0][13:] == ["false", "false"]
    assert ["true", "true"] in [r[13:] for r in body]  # slackbot: bot and preview
    assert any(r[8] == "'" + EVIL for r in body)

    resp = await world.get(f"/api/v1/links/{a1}/clicks.csv", **WINDOW, max_rows="3")
    limited = _csv(await resp.text())[1:]
    assert [r[0] for r in limited] == stamps[:3]


async def test_postgres_summary_when_clickhouse_is_down(
    make_settings: Any, database_url: str, broker: Any, redis_client: Any
) -> None:
    # Embedded chDB behind a worker that is not running: every ClickHouse query is a 503.
    settings = make_settings(
        database_url=database_url, kafka_broker=broker.url, worker_port=await _free_port()
    )
    async with serve_api(settings) as harness:
        link = await _new_link(harness, harness.auth)
        conn = await asyncpg.connect(database_url)
        try:
            rows = [
                ("v1", "US", "mobile", False), ("v1", "US", "mobile", False), ("v1", "US", "mobile", False),
                ("v2", "US", "desktop", False), ("v3", None, "desktop", False), ("bot", "US", None, True),
            ]  # fmt: skip
            for i, (visitor, country, device, bot) in enumerate(rows):
                await conn.execute(
                    "INSERT INTO clicks (link_id, workspace_id, clicked_at, visitor_id, country_code, device_type,"
                    " is_bot, event_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    uuid.UUID(link),
                    uuid.UUID(harness.workspace_id),
                    DAY0 + _h(i),
                    visitor,
                    country,
                    device,
                    bot,
                    uuid.uuid4().hex,
                )
            # Outside the window (to is exclusive), and another workspace's click on a random link.
            await conn.execute(
                "INSERT INTO clicks (link_id, workspace_id, clicked_at, visitor_id) VALUES ($1, $2, $3, 'late')",
                uuid.UUID(link), uuid.UUID(harness.workspace_id), DAY2,
            )  # fmt: skip
        finally:
            await conn.close()
        resp = await harness.client.get(
            f"/api/v1/links/{link}/analytics", params=WINDOW, headers=harness.auth
        )
        assert resp.status == 200
        body = await resp.json()
        assert body["source"] == "postgres" and body["degraded"] is True
        assert (body["clicks"], body["unique_visitors"], body["human_clicks"], body["bot_clicks"]) == (
            6,
            4,
            5,
            1,
        )
        assert (body["mobile_clicks"], body["desktop_clicks"]) == (3, 2)
        # The spec's query would fail on the NULL country and report US as one visitor group's count.
        assert body["clicks_by_country"] == {"US": 4, "": 1}
        body = await (
            await harness.client.get("/api/v1/analytics", params=WINDOW, headers=harness.auth)
        ).json()
        assert body["source"] == "postgres" and body["clicks"] == 6
        resp = await harness.client.get(
            f"/api/v1/links/{link}/analytics.csv", params=WINDOW, headers=harness.auth
        )
        assert resp.status == 503
        resp = await harness.client.get(
            f"/api/v1/links/{link}/clicks.csv", params=WINDOW, headers=harness.auth
        )
        assert resp.status == 503


async def test_overview_is_the_report_without_per_value_visitors(world: World) -> None:
    """The web app's lighter named query: same totals and series, the same clicks per traffic class
    and per breakdown value, ties included (limit 2 cuts between equal counts); no unique counts
    the page does not show."""
    analytics = world.api.client.server.app[ANALYTICS]
    for link_id, limit in ((world.links["a1"], 2), (world.links["a1"], 10), (None, 3)):
        params = {**WINDOW, "workspace_id": world.api.workspace_id, "link_id": link_id, "limit": limit}
        full = await analytics.run("analytics_report", params)
        light = await analytics.run("analytics_overview", params)
        assert {k: v for k, v in light.items() if k != "breakdowns"} == {
            k: v for k, v in full.items() if k not in ("breakdowns", "human_unique_visitors")
        }
        traffic = [{"value": e["value"], "clicks": e["clicks"]} for e in full["breakdowns"]["traffic"]]
        assert light["breakdowns"]["traffic"] == traffic
        for name in DIMENSIONS:
            expected = [{"value": e["value"], "clicks": e["clicks"]} for e in full["breakdowns"][name]]
            assert light["breakdowns"][name] == expected, name
