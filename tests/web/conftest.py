"""Browser fixtures for the web app: the api served on a real port, Debian's chromium driven by
Playwright (async API, in the test's own event loop), and helpers to sign up, log in and read mail.

Playwright never downloads a browser here: `executable_path=/usr/bin/chromium`. A missing
chromium is a failure, not a skip (`.ci/run` installs it with apt).
"""

from __future__ import annotations

import email
import re
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
PASSWORD = "correct horse battery staple"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class WebServer:
    url: str
    settings: Any
    app: web.Application

    def outbox(self) -> list[Message]:
        folder = Path(self.settings.data_dir) / "outbox"
        return [email.message_from_bytes(p.read_bytes()) for p in sorted(folder.glob("*.eml"))]

    def mail_link(self, to: str, path: str) -> str:
        """The last link to `path` (e.g. /app/verify-email) mailed to `to`, as a path with its query."""
        for msg in reversed(self.outbox()):
            if msg["To"] == to:
                body = msg.get_payload(decode=True)
                assert isinstance(body, bytes)
                found = re.search(re.escape(path) + r"\?token=[\w-]+", body.decode())
                if found:
                    return found.group(0)
        raise AssertionError(f"no mail to {to} with a {path} link")


@pytest_asyncio.fixture
async def web_server(
    make_settings: Any, database_url: str, broker: Any, redis_client: Any
) -> AsyncIterator[WebServer]:
    """The whole api (with /app) on a real loopback port; emails link to that port."""
    import web as web_app
    from api.app import create_app

    port = free_port()
    settings = make_settings(
        database_url=database_url,
        kafka_broker=broker.url,
        base_url=f"http://127.0.0.1:{port}",
        default_domain=f"127.0.0.1:{port}",
        webhook_allow_private=True,  # the webhook pages' test posts to a receiver on 127.0.0.1
    )
    app = create_app(settings, pages=web_app.setup)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield WebServer(f"http://127.0.0.1:{port}", settings, app)
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    assert CHROMIUM.is_file(), "Debian chromium is required: apt-get install -y chromium (.ci/run does it)"
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


@pytest_asyncio.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    ctx.set_default_timeout(10_000)
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest_asyncio.fixture
async def page(context: BrowserContext) -> Page:
    return await context.new_page()


def unique_email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:8]}@example.test"


async def sign_up(
    page: Page, server: WebServer, *, name: str = "Ada Lovelace", email_addr: str | None = None
) -> str:
    """Sign up through the form; returns the email. Lands on /app/links."""
    addr = email_addr or unique_email()
    await page.goto(server.url + "/app/signup")
    await page.fill("input[name=name]", name)
    await page.fill("input[name=email]", addr)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(re.compile(r".*/app/links.*"))
    return addr


async def log_in(page: Page, server: WebServer, addr: str, password: str = PASSWORD) -> None:
    await page.goto(server.url + "/app/login")
    await page.fill("input[name=email]", addr)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    await page.wait_for_url(re.compile(r".*/app/links.*"))


async def verify_email(page: Page, server: WebServer, addr: str) -> None:
    await page.goto(server.url + server.mail_link(addr, "/app/verify-email"))
    await page.click("text=Confirm my email address")
    await page.wait_for_selector("text=Email confirmed")


@pytest.fixture
def screenshots() -> Path:
    folder = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def create_link(page: Page, server: WebServer, url: str, **fields: str) -> str:
    """Create a link through the form; returns its detail page URL."""
    await page.goto(server.url + "/app/links/new")
    await page.fill("#f-url", url)
    for name, value in fields.items():
        await page.fill(f"#f-{name}", value)
    await page.click("text=Create link")
    await page.wait_for_url(re.compile(r".*/app/links/[0-9a-f-]{36}\?created=1"))
    return page.url.split("?")[0]
