"""Links in a real browser: create with options, rules (device and A/B, with the API's field
error beside the field), the short link working from a phone, QR download, bulk delete, export,
and the rules table readable at phone width."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Page, expect

from tests.web.axe import assert_accessible
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


async def test_rules_table_fits_a_phone(page: Page, web_server: WebServer, screenshots: Path) -> None:
    """At 390 px the rules table stacks into labelled rows: no sideways page scroll, no cell scrolled
    out of view inside the table's wrapper; at desktop width it stays a table with its header row."""
    await sign_up(page, web_server)
    detail = await create_link(page, web_server, "https://example.com/phone", short_code="phone-rules")
    await page.select_option("#r-rule_type", "device")
    await page.check("#r-dev-mobile")
    await page.fill("#r-os", "iOS, Android")
    await page.fill(
        "#r-destination_url", "https://m.example.com/a/rather/long/path/for/phones?utm_source=rules"
    )
    await page.click("text=Add rule")
    await page.wait_for_url(re.compile(r".*#rules$"))
    await page.select_option("#r-rule_type", "ab_test")
    for i, (vid, weight) in enumerate((("spring-launch", "70"), ("control", "30"))):
        await page.fill(f"input[name='variants[{i}].id']", vid)
        await page.fill(f"input[name='variants[{i}].url']", f"https://docs.example.com/landing/{vid}")
        await page.fill(f"input[name='variants[{i}].weight']", weight)
    await page.fill("#r-priority", "5")
    await page.click("text=Add rule")
    await page.wait_for_url(re.compile(r".*#rules$"))
    table = page.locator(".rules-table")
    await expect(table.locator("tbody tr")).to_have_count(2)
    assert await table.locator("thead").evaluate("e => getComputedStyle(e).display") == "table-header-group"

    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto(detail)
    page_overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert page_overflow <= 0, f"the page scrolls sideways by {page_overflow}px"
    wrap_overflow = await page.locator("#rules .table-wrap").evaluate("e => e.scrollWidth - e.clientWidth")
    assert wrap_overflow <= 0, f"the rules table scrolls sideways by {wrap_overflow}px in its wrapper"
    outside = await table.evaluate(
        """t => [t, ...t.querySelectorAll('tr, td')]
            .filter(e => { const r = e.getBoundingClientRect(); return r.left < 0 || r.right > window.innerWidth; })
            .map(e => e.tagName + ':' + e.textContent.trim().slice(0, 30))"""
    )
    assert outside == [], f"cut off on the right: {outside}"
    labels = (
        await table.locator("tbody tr")
        .first.locator("td[data-label]")
        .evaluate_all("cells => cells.map(c => getComputedStyle(c, '::before').content)")
    )
    assert labels == ['"Type"', '"When"', '"Sends to"', '"Priority"', '"State"']
    text = await table.inner_text()
    assert "https://docs.example.com/landing/spring-launch" in text
    assert "https://m.example.com/a/rather/long/path/for/phones?utm_source=rules" in text
    await assert_accessible(page, include="#rules")
    await page.locator("#rules").screenshot(path=str(screenshots / "rules-phone.png"))
