"""Analytics pages in a real browser with a real worker: the live view (a click opened from a phone
in a second browser context shows in the feed and moves the counters and the chart within 2 s),
the server-rendered report (totals, breakdowns, A/B leader, the link's UTM values), CSV download,
axe-core, tenancy and escaping. Screenshots go to docs/screenshots/."""

from __future__ import annotations

import csv
import io
import random
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Browser, Page, expect

from engine.accounts.repository import create_api_key
from engine.auth.api_key_tokens import SCOPES
from engine.clicks.models import RawClick
from tests.pipeline_fixtures import Pipeline, pipeline, wait_until  # noqa: F401 - fixture
from tests.web.axe import assert_accessible
from tests.web.conftest import PHONE_UA, WebServer, free_port, sign_up

pytestmark = pytest.mark.e2e

DESKTOP_UAS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    PHONE_UA,
)
BOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
PREVIEW_UA = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"
IPS = ("8.8.8.8", "81.2.69.142", "89.160.20.112", "5.9.0.1", "1.128.0.1", "200.147.67.142",
       "151.101.1.1", "91.198.174.192", "133.242.0.1", "216.160.83.56")  # fmt: skip
REFERERS = ("https://www.google.com/", "https://t.co/x", "", "https://news.ycombinator.com/", "")
TITLE = 'Spring <sale> & "friends"'
HISTORY_HOURS = 46


@pytest_asyncio.fixture
async def landing() -> AsyncIterator[str]:
    """Where the link and its variants send visitors: a page on 127.0.0.1."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(
            text="<!doctype html><title>Landed</title><h1>Landed</h1>", content_type="text/html"
        )

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture
async def live_server(
    make_settings: Any,
    database_url: str,
    broker: Any,
    redis_client: Any,
    pipeline: Pipeline,  # noqa: F811
) -> AsyncIterator[WebServer]:
    """The api with /app on a real port, running its analytics through the test's real worker."""
    import web as web_app
    from api.app import create_app

    port = free_port()
    settings = make_settings(
        database_url=database_url,
        kafka_broker=broker.url,
        base_url=f"http://127.0.0.1:{port}",
        default_domain=f"127.0.0.1:{port}",
        worker_url=pipeline.worker.url,
        internal_token=pipeline.token,
    )
    app = create_app(settings, pages=web_app.setup)
    # Open event streams would otherwise hold the shutdown for aiohttp's default 60 s.
    runner = web.AppRunner(app, shutdown_timeout=2.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield WebServer(f"http://127.0.0.1:{port}", settings, app)
    finally:
        await runner.cleanup()


async def _api_key(database_url: str, email: str) -> tuple[str, str]:
    """An API key for the workspace the signed-up user owns: (key, workspace_id)."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            """SELECT u.id::text AS user_id, m.workspace_id::text AS workspace_id FROM users u
               JOIN workspace_members m ON m.user_id = u.id WHERE u.email = $1""",
            email,
        )
        assert row is not None
        _, key = await create_api_key(
            conn, user_id=row["user_id"], workspace_id=row["workspace_id"], name="test", scopes=sorted(SCOPES)
        )
    finally:
        await conn.close()
    return key.plaintext, row["workspace_id"]


async def _post(http: aiohttp.ClientSession, url: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
    async with http.post(url, json=body, headers={"Authorization": f"Bearer {key}"}) as resp:
        assert resp.status == 201, await resp.text()
        data: dict[str, Any] = await resp.json()
        return data


def _history(link: dict[str, Any], workspace_id: str, rule_id: str, landing: str) -> list[RawClick]:
    """Two days of varied clicks: countries, devices, referrers, bots and previews, and an A/B test
    where a third of variant b's visitors come back against a tenth of variant a's."""
    rng = random.Random(14)
    now = time.time()
    visits: list[tuple[int, str]] = []
    for n in range(240):
        visits.append((n, rng.choice(DESKTOP_UAS)))
        if (n // 2) % (3 if n % 2 else 10) == 0:
            visits.append((n, rng.choice(DESKTOP_UAS)))
    visits += [(1000 + n, BOT_UA) for n in range(9)] + [(2000 + n, PREVIEW_UA) for n in range(6)]
    clicks = []
    for visitor, ua in visits:
        variant = "b" if visitor % 2 else "a"
        clicks.append(
            RawClick(
                event_id=uuid.uuid4().hex, ts=now - rng.uniform(600, HISTORY_HOURS * 3600),
                link_id=link["id"], workspace_id=workspace_id, domain="", short_code=link["short_code"],
                destination=f"{landing}/{variant}", rule_id=rule_id, variant=variant,
                ip=IPS[visitor % len(IPS)], user_agent=ua, referer=rng.choice(REFERERS),
                visitor_id=f"{visitor:032x}", utm={"utm_source": rng.choice(["newsletter", "twitter", "newsletter"])},
            )
        )  # fmt: skip
    return clicks


async def _counter(page: Page, name: str) -> int:
    return int(re.sub(r"\D", "", await page.locator(f"[data-counter={name}]").first.inner_text()) or 0)


async def test_live_view_reports_ab_and_accessibility(
    browser: Browser,
    live_server: WebServer,
    pipeline: Pipeline,  # noqa: F811
    landing: str,
    screenshots: Path,
) -> None:
    server = live_server
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(15_000)
    page = await context.new_page()
    try:
        email = await sign_up(page, server, name="Grace Hopper")
        key, workspace_id = await _api_key(server.settings.database_url, email)
        async with aiohttp.ClientSession() as http:
            link = await _post(
                http, f"{server.url}/api/v1/links", key,
                {"url": f"{landing}/spring", "short_code": "spring", "title": TITLE,
                 "utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "spring-sale"},
            )  # fmt: skip
            rule = await _post(
                http, f"{server.url}/api/v1/links/{link['id']}/rules", key,
                {"rule_type": "ab_test", "conditions": {"variants": [
                    {"id": "a", "url": f"{landing}/a", "weight": 50}, {"id": "b", "url": f"{landing}/b", "weight": 50}]}},
            )  # fmt: skip
        history = _history(link, workspace_id, rule["id"], landing)
        await pipeline.send(history)
        # The worker has joined its group and counted everything (Redis first, then ClickHouse).
        assert await wait_until(lambda: _settled(pipeline, link["id"], len(history)), within=40)

        since = (datetime.now(UTC) - timedelta(hours=HISTORY_HOURS + 1)).strftime("%Y-%m-%dT%H:00")
        path = f"/app/links/{link['id']}/analytics?from={since}&interval=hour&tz=UTC"
        await page.goto(server.url + path)
        await expect(page.locator("h1")).to_contain_text("spring")
        # User-supplied strings are text, never markup.
        await expect(page.locator(".dest-line a")).to_have_text(TITLE)
        assert await _counter(page, "clicks") == len(history)
        bots = sum(1 for c in history if c.user_agent == BOT_UA)
        previews = sum(1 for c in history if c.user_agent == PREVIEW_UA)
        assert (await _counter(page, "bot"), await _counter(page, "preview")) == (bots, previews)
        assert await _counter(page, "human") == len(history) - bots - previews
        await expect(page.locator("#chart canvas")).to_have_count(1)
        await expect(page.locator("[data-live-status]")).to_have_class(re.compile(r"\bon\b"))
        # The link's own UTM values and the A/B verdict.
        await expect(page.locator("dl.utm")).to_contain_text("spring-sale")
        await expect(page.locator(".ab-verdict")).to_contain_text("Variant b leads")
        await expect(page.locator("tr.ab-leader th")).to_contain_text("b")
        await expect(page.locator("#bd-country")).to_be_visible()
        await expect(page.locator("section.breakdown", has_text="Countries")).to_contain_text("US")
        await assert_accessible(page)

        # The live view: a phone opens the short link in another browser context.
        before = {name: await _counter(page, name) for name in ("clicks", "human", "unique_visitors")}
        phone = await browser.new_context(user_agent=PHONE_UA, viewport={"width": 390, "height": 844})
        try:
            visit = await phone.new_page()
            await visit.goto(f"{server.url}/spring")
            await expect(visit.locator("h1")).to_have_text("Landed")
            # Within 2 s of opening the short link: in the feed, in the counters.
            item = page.locator("#feed li[data-event-id]")
            await expect(item).to_have_count(1, timeout=2_000)
            await expect(page.locator("[data-counter=clicks]")).to_have_text(
                f"{before['clicks'] + 1:,}", timeout=2_000
            )
        finally:
            await phone.close()
        await expect(item).to_contain_text("/spring")
        await expect(item).to_contain_text("mobile")
        assert await _counter(page, "human") == before["human"] + 1
        assert await _counter(page, "unique_visitors") == before["unique_visitors"] + 1
        assert await page.evaluate("() => document.querySelectorAll('#chart canvas').length") == 1
        await page.screenshot(path=str(screenshots / "analytics-link.png"), full_page=True)

        # CSV download of the same window.
        async with page.expect_download() as info:
            await page.click("text=Download CSV")
        download = await info.value
        rows = list(csv.reader(io.StringIO(Path(await download.path()).read_text())))
        assert rows[0] == ["section", "dimension", "value", "clicks", "unique_visitors"]
        assert rows[1][0] == "total" and int(rows[1][3]) >= len(history)

        # The workspace page: the same clicks (and the live one once ClickHouse has it).
        await page.goto(f"{server.url}/app/analytics?from={since}&interval=hour&tz=UTC")
        assert await _counter(page, "clicks") in (len(history), len(history) + 1)
        await expect(page.locator("#chart canvas")).to_have_count(1)
        await expect(page.locator("section.breakdown", has_text="Referrers")).to_contain_text("google.com")
        await assert_accessible(page)
        await page.screenshot(path=str(screenshots / "analytics-workspace.png"), full_page=True)

        # A phone-sized view of the link page.
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.goto(server.url + path)
        await assert_accessible(page)
        top = await page.locator(".crumbs").bounding_box()
        assert top is not None
        clip = {"x": 0, "y": top["y"] - 8, "width": 390, "height": 1100}
        await page.screenshot(path=str(screenshots / "analytics-link-phone.png"), full_page=True, clip=clip)

        # Another workspace's (or no) link: the same 404 page.
        resp = await page.goto(f"{server.url}/app/links/{uuid.uuid4()}/analytics")
        assert resp is not None and resp.status == 404
        # A bad period is an error beside the form, not a crash.
        resp = await page.goto(f"{server.url}/app/links/{link['id']}/analytics?tz=Mars/Olympus")
        assert resp is not None and resp.status == 200
        await expect(page.locator("#report-error")).to_contain_text("time zone")
    finally:
        await context.close()


async def _settled(p: Pipeline, link_id: str, total: int) -> bool:
    return (await p.redis_counts(link_id))[0] == total and (await p.ch_count(link_id))["rows"] == total
