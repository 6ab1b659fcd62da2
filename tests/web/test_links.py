"""Links in a real browser: create with options, rules (device and A/B, with the API's field
error beside the field), the short link working from a phone, QR download, bulk delete, export."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Page, expect

from tests.web.conftest import WebServer, create_link, sign_up

pytestmark = pytest.mark.e2e


async def test_search_filter_bulk_delete_and_export(page: Page, web_server: WebServer) -> None:
    await sign_up(page, web_server)
    for code in ("alpha-one", "alpha-two", "beta-one"):
        await create_link(
            page,
            web_server,
            f"https://example.com/{code}",
            short_code=code,
            tags="alpha" if code.startswith("alpha") else "beta",
        )
    await page.goto(web_server.url + "/app/links")
    await page.fill("#q", "alpha")
    await expect(page.locator("#link-rows tbody tr")).to_have_count(2)
    assert "q=alpha" in page.url
    await page.goto(web_server.url + "/app/links?tag=beta")
    assert await page.locator("#link-rows tbody tr").count() == 1
    await page.goto(web_server.url + "/app/links")
    await page.check("#select-all")
    await page.uncheck("input[aria-label='Select beta-one']")
    page.once("dialog", lambda d: d.accept())
    await page.click("#bulk button[value=delete]")
    await expect(page.locator("#link-rows tbody tr")).to_have_count(1)
    await page.goto(web_server.url + "/app/links?state=deleted")
    assert await page.locator("#link-rows tbody tr").count() == 2
    async with page.expect_download() as info:
        await page.goto(web_server.url + "/app/links")
        await page.click("text=Export CSV")
    path = await (await info.value).path()
    assert path is not None
    text = open(path).read()
    assert "beta-one" in text and "alpha-one" not in text


async def test_rendering_escapes_user_strings(page: Page, web_server: WebServer) -> None:
    await sign_up(page, web_server, name='<img src=x onerror="window.pwned=1">')
    evil = '<script>window.pwned=1</script>"><b>x</b>'
    await create_link(page, web_server, "https://example.com/x", title=evil, tags="<i>t</i>")
    detail = page.url.split("?")[0]
    for url in (detail, web_server.url + "/app/links"):
        await page.goto(url)
        assert await page.evaluate("window.pwned") is None
        assert await page.locator("b", has_text="x").count() == 0
        assert await page.locator("main img").count() == 0
    assert evil in await page.locator("#link-rows").inner_text()
    assert "<i>t</i>" in await page.locator("#link-rows").inner_text()
    await page.goto(detail)
    assert await page.locator("#f-title").input_value() == evil


async def test_unknown_link_is_a_friendly_404(page: Page, web_server: WebServer) -> None:
    await sign_up(page, web_server)
    resp = await page.goto(web_server.url + "/app/links/00000000-0000-0000-0000-000000000000")
    assert resp is not None and resp.status == 404
    assert "couldn't find" in (await page.locator("main").inner_text())
    async with aiohttp.ClientSession() as s, s.get(web_server.url + "/app/links/not-a-uuid") as r:
        assert r.status in (303, 200)  # signed out: the login page


async def test_csv_import_reports_failed_rows(page: Page, web_server: WebServer, tmp_path: Path) -> None:
    await sign_up(page, web_server)
    csv_file = tmp_path / "links.csv"
    csv_file.write_text(
        "url,short_code,title\nhttps://example.com/a,imp-a,First\nnot a url,imp-b,Bad\nhttps://example.com/c,imp-c,Third\n"
    )
    await page.goto(web_server.url + "/app/links")
    await page.get_by_role("link", name="Import CSV").click()
    await page.set_input_files("#imp-file", str(csv_file))
    await page.click("button:has-text('Import')")
    await expect(page.locator("#rep-h")).to_have_text("2 of 3 links imported")
    errors = page.locator("#import-errors tbody tr")
    await expect(errors).to_have_count(1)
    assert (await errors.locator("td").first.inner_text()) == "3"
    await page.goto(web_server.url + "/app/links")
    text = await page.locator("#link-rows").inner_text()
    assert "imp-a" in text and "imp-c" in text and "imp-b" not in text


async def test_suspended_workspace_refuses_link_writes_but_lists_and_exports(
    page: Page, web_server: WebServer
) -> None:
    import asyncpg

    addr = await sign_up(page, web_server)
    await create_link(page, web_server, "https://example.com/before", short_code="before-sus")
    conn = await asyncpg.connect(web_server.settings.database_url)
    try:  # what `linkrift workspace suspend` sets
        await conn.execute(
            "UPDATE workspaces SET suspended_at = now(), suspended_reason = 'test'"
            " WHERE owner_id = (SELECT id FROM users WHERE email = $1)",
            addr,
        )
    finally:
        await conn.close()
    await page.goto(web_server.url + "/app/links/new")  # the form itself is a read
    await page.fill("#f-url", "https://example.com/during")
    await page.click("text=Create link")
    await expect(page.locator("body")).to_contain_text("this workspace is suspended")
    await page.goto(web_server.url + "/app/links")
    await expect(page.locator("#link-rows tbody tr")).to_have_count(1)
