"""/docs in a real browser (Debian chromium via Playwright): the vendored Swagger UI renders every
operation of /openapi.json under the page's strict CSP, offline, with no console error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, Request

pytestmark = pytest.mark.e2e


async def test_docs_render_the_reference_offline_without_console_errors(
    web_server: Any, page: Page, screenshots: Path
) -> None:
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    foreign: list[str] = []

    def note(request: Request) -> None:
        if not request.url.startswith(web_server.url) and not request.url.startswith("data:"):
            foreign.append(request.url)

    page.on("request", note)

    # Swagger UI resolves the whole OpenAPI 3.1 document before drawing and keeps the page busy
    # while it lays out ~110 operations: seconds on a loaded 2-core machine, so no 10 s default.
    page.set_default_timeout(120_000)
    await page.goto(web_server.url + "/docs")
    await page.wait_for_selector(".opblock-summary-path")
    spec = await (await page.request.get(web_server.url + "/openapi.json")).json()
    operations = sum(len(methods) for methods in spec["paths"].values())
    shown = await page.locator(".opblock").count()
    assert shown == operations, (shown, operations)
    title = await page.locator(".info .title").inner_text()
    assert spec["info"]["title"] in title

    # Markdown in descriptions is rendered, not shown as raw backticks.
    described = await page.locator(".info .description").inner_text()
    assert "`" not in described

    # Open one operation: its parameters and responses render.
    link_get = page.locator(".opblock-get", has_text="/api/v1/links/{link_id}").first
    await link_get.locator(".opblock-summary").click()
    await link_get.locator(".parameters").first.wait_for()
    assert await link_get.locator(".response").count() >= 1

    await page.screenshot(path=str(screenshots / "api-docs.png"), full_page=False)
    assert problems == []
    assert foreign == []  # nothing fetched from another host: works offline
