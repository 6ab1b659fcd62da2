"""A bio page in a real browser: headless Debian Chromium driven by Selenium renders it, we click,
and a real worker counts the click into the button's click_count.

Chromium and chromedriver come from the system (`apt-get install chromium chromium-driver`, done by
`.ci/run`); Selenium Manager is never asked to download anything. A missing browser is a failure,
not a skip. Selenium is blocking, so every driver call runs in a thread: the api under test is
served from this test's own event loop.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from aiohttp import web
from aiokafka import AIOKafkaConsumer
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from engine.clicks.models import RawClick
from engine.naming import Topics
from tests.pipeline_fixtures import Pipeline, wait_until

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=800,900",
)
T = TypeVar("T")


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(fn, *args)


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[webdriver.Chrome]:
    assert CHROMIUM.is_file() and shutil.which("chromium"), (
        "Debian chromium is required: apt-get install -y chromium chromium-driver (.ci/run does it)"
    )
    assert CHROMEDRIVER.is_file(), "chromium-driver is required: apt-get install -y chromium-driver"
    profile = tempfile.mkdtemp(prefix="lr-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager is skipped and downloads nothing.
    service = Service(executable_path=str(CHROMEDRIVER))
    driver = await _in_thread(lambda: webdriver.Chrome(service=service, options=options))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        await _in_thread(driver.quit)
        shutil.rmtree(profile, ignore_errors=True)


@pytest_asyncio.fixture
async def destination() -> AsyncIterator[tuple[str, list[str]]]:
    """A tiny site on 127.0.0.1 the button points to; yields (url, paths it was asked for)."""
    seen: list[str] = []

    async def landing(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        return web.Response(
            text="<!doctype html><title>Landed</title><h1>Landed</h1>", content_type="text/html"
        )

    app = web.Application()
    app.router.add_get("/landing", landing)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/landing?from=bio", seen
    finally:
        await runner.cleanup()


async def _post(api: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = await api.client.post(path, json=body, headers=api.auth)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def _raw_clicks(api: Any, want: int) -> list[RawClick]:
    consumer = AIOKafkaConsumer(
        Topics(api.settings.namespace).clicks_raw, bootstrap_servers=api.settings.kafka_bootstrap,
        auto_offset_reset="earliest",
    )  # fmt: skip
    await consumer.start()
    clicks: list[RawClick] = []
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while len(clicks) < want and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                clicks.extend(RawClick.loads(r.value) for r in records)
    finally:
        await consumer.stop()
    return clicks


async def test_bio_page_renders_and_click_redirects_in_chromium(
    api: Any,
    pipeline: Pipeline,
    browser: webdriver.Chrome,
    destination: tuple[str, list[str]],
    tmp_path: Path,
) -> None:
    landing_url, landing_hits = destination
    page = await _post(
        api, "/api/v1/bio-pages",
        {"slug": "grace", "title": "Grace & Co", "bio": "Compilers <and> COBOL", "is_published": True,
         "meta_description": "Links of Grace & Co", "og_image_url": "https://img.example.com/g.png"},
    )  # fmt: skip
    links = f"/api/v1/bio-pages/{page['id']}/links"
    first = await _post(api, links, {"title": "Blog <new>", "url": landing_url, "icon": "*"})
    second = await _post(api, links, {"title": "Talks", "url": "https://talks.example.com/"})
    await _post(api, links, {"title": "Secret", "url": "https://secret.example.com/", "is_visible": False})
    await _post(
        api, links,
        {"title": "Tomorrow", "url": "https://tomorrow.example.com/", "visible_from": "2999-01-01T00:00:00Z"},
    )  # fmt: skip

    base = str(api.client.make_url("")).rstrip("/")
    page_url = f"{base}/@grace"
    await _in_thread(browser.get, page_url)

    assert browser.current_url == page_url
    assert browser.title == "Grace & Co"

    def meta(attr: str, name: str) -> str | None:
        return browser.find_element(By.CSS_SELECTOR, f'meta[{attr}="{name}"]').get_attribute("content")

    assert meta("property", "og:title") == "Grace & Co"
    assert meta("property", "og:description") == "Links of Grace & Co"
    assert meta("name", "description") == "Links of Grace & Co"
    assert meta("property", "og:image") == "https://img.example.com/g.png"
    assert meta("property", "og:url") == f"{api.settings.public_base_url.rstrip('/')}/@grace"
    assert browser.find_element(By.TAG_NAME, "h1").text == "Grace & Co"
    assert browser.find_element(By.CSS_SELECTOR, "p.bio").text == "Compilers <and> COBOL"

    nav = browser.find_element(By.TAG_NAME, "nav")
    assert nav.accessible_name == "Grace & Co links"
    anchors = browser.find_elements(By.CSS_SELECTOR, "a")
    assert len(anchors) == 2  # the hidden and the not-yet-visible buttons are not rendered at all
    assert [a.get_attribute("href") for a in anchors] == [
        f"{base}/@grace/l/{first['id']}",
        f"{base}/@grace/l/{second['id']}",
    ]
    for anchor, name in zip(anchors, ["Blog <new>", "Talks"], strict=True):
        assert anchor.is_displayed()
        assert anchor.aria_role == "link"
        # The icon is aria-hidden: assistive tech hears the title only. (Chromium keeps the space
        # that follows the icon span, hence strip().)
        assert anchor.accessible_name.strip() == name
        size = anchor.size
        assert size["height"] >= 24 and size["width"] >= 200  # a real, tappable button
    assert anchors[0].text == "* Blog <new>"
    assert "Secret" not in browser.page_source and "Tomorrow" not in browser.page_source

    shot = tmp_path / "bio.png"
    assert await _in_thread(browser.save_screenshot, str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5_000
    with Image.open(shot) as image:
        assert image.size[0] >= 700 and image.size[1] >= 500
        assert len(image.convert("RGB").getcolors(maxcolors=1_000_000) or []) > 10  # not a blank page

    await _in_thread(anchors[0].click)
    for _ in range(100):
        if browser.current_url == landing_url:
            break
        await asyncio.sleep(0.1)
    assert browser.current_url == landing_url
    assert browser.title == "Landed"
    assert landing_hits == ["/landing?from=bio"]

    clicks = await _raw_clicks(api, 1)
    assert len(clicks) == 1
    click = clicks[0]
    assert (click.kind, click.bio_link_id, click.link_id, click.destination, click.workspace_id) == (
        "bio", first["id"], first["id"], landing_url, api.workspace_id
    )  # fmt: skip
    assert click.short_code == "@grace" and click.method == "GET"
    assert "Chrome" in click.user_agent  # sent by the browser, not by a test client
    assert click.referer == page_url  # same-origin navigation keeps the full referrer

    async def counted() -> dict[str, int] | None:  # by the worker's click agent
        rows = await pipeline.pg(
            "SELECT id::text, click_count FROM bio_page_links WHERE bio_page_id = $1", page["id"]
        )
        counts = {r["id"]: r["click_count"] for r in rows}
        return counts if counts[first["id"]] == 1 and sum(counts.values()) == 1 else None

    assert await wait_until(counted, within=60), pipeline.worker.log_tail()
