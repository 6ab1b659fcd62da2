"""Every main page, as an owner with some data, at desktop and phone width: answers 200, logs no
console error (a CSP violation from an inline script or style would be one) and has no element
wider than the viewport. With LINKRIFT_SCREENSHOT_DIR set, each page is also saved as a PNG there
(how docs/screenshots/ is made)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.async_api import Page

from tests.web.conftest import WebServer, create_link, sign_up, verify_email

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("business_plan")]
OPEN = {"domains": ["section.card summary"], "bio-editor": [".button-list li:last-child summary"]}


async def _seed(page: Page, server: WebServer) -> dict[str, str]:
    addr = await sign_up(page, server, name="Grace Hopper")
    await verify_email(page, server, addr)
    detail = ""
    for code, url, tags in (
        ("launch-week", "https://example.com/blog/launch-week", "launch, blog"),
        ("pro-plan", "https://example.com/pricing?plan=pro", "site"),
        ("get-started", "https://docs.example.com/getting-started", "docs"),
    ):
        detail = await create_link(
            page, server, url, short_code=code, title=code.title() + " page", tags=tags
        )
    await page.select_option("#r-rule_type", "ab_test")
    for i, (vid, weight) in enumerate((("a", "50"), ("b", "50"))):
        await page.fill(f"input[name='variants[{i}].id']", vid)
        await page.fill(f"input[name='variants[{i}].url']", f"https://docs.example.com/{vid}")
        await page.fill(f"input[name='variants[{i}].weight']", weight)
    await page.click("text=Add rule")
    await page.wait_for_url(re.compile(r".*#rules$"))
    await page.goto(server.url + "/app/bio")
    await page.fill("#b-title", "Grace Hopper")
    await page.fill("#b-slug", "grace")
    await page.click("text=Create page")
    await page.wait_for_url("**/app/bio/*")
    bio = page.url
    for title in ("My talks", "Newsletter", "Conference ticket"):
        await page.fill("#bb-title", title)
        await page.fill("#bb-url", "https://example.com/" + title.lower().replace(" ", "-"))
        if title == "Conference ticket":
            await page.fill("#bb-icon", "★")
            await page.fill("#bb-visible_from", "2027-05-01T09:00")
            await page.fill("#bb-visible_until", "2027-05-20T18:00")
        await page.click("text=Add button")
        await page.wait_for_url("**#buttons")
    await page.goto(server.url + "/app/domains")
    await page.fill("#d-domain", "go.example.org")
    await page.fill("#d-default_redirect_url", "https://example.org/")
    await page.click("text=Add domain")
    await page.goto(detail)
    edit = await page.locator("a[href*='edit_rule=']").first.get_attribute("href")
    assert edit is not None
    return {"detail": detail, "bio": bio.split("#")[0], "rule_edit": edit.split("#")[0]}


async def test_main_pages_render_cleanly(page: Page, web_server: WebServer) -> None:
    seeded = await _seed(page, web_server)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    out = os.environ.get("LINKRIFT_SCREENSHOT_DIR")
    pages = {
        "links": "/app/links",
        "link-detail": seeded["detail"].removeprefix(web_server.url),
        "qr-designer": seeded["detail"].removeprefix(web_server.url) + "/qr",
        "new-link": "/app/links/new",
        "rule-edit": seeded["rule_edit"] + "#rule-form",
        "bio-editor": seeded["bio"].removeprefix(web_server.url),
        "domains": "/app/domains",
        "webhooks": "/app/webhooks",
        "workspace": "/app/workspace",
        "api-keys": "/app/workspace/api-keys",
        "audit-log": "/app/workspace/audit",
        "account": "/app/account",
    }
    for width, suffix in ((1280, ""), (390, "-phone")):
        await page.set_viewport_size({"width": width, "height": 860})
        for name, path in pages.items():
            resp = await page.goto(web_server.url + path)
            assert resp is not None and resp.status == 200, (name, resp and resp.status)
            for opened in OPEN.get(name, ()):  # edit forms shown open on their screenshot
                await page.locator(opened).first.click()
            overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            wide = await page.evaluate(
                "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1"
                " && !(e.parentElement && e.parentElement.closest('.table-wrap'))).slice(0, 5).map(e => e.tagName + '.' + e.className + '#' + e.id)"
            )
            assert overflow <= 0, f"{name}{suffix} is {overflow}px wider than the viewport: {wide}"
            if out and not suffix and name == "rule-edit":  # the rules card alone, readable
                await page.locator("#rules").screenshot(path=str(Path(out) / "rule-edit.png"))
            elif out and (not suffix or name in ("links", "link-detail")):
                await page.screenshot(path=str(Path(out) / f"{name}{suffix}.png"), full_page=True)
    await page.context.clear_cookies()
    await page.set_viewport_size({"width": 1280, "height": 860})
    for name, path in (("login", "/app/login"), ("signup", "/app/signup")):
        resp = await page.goto(web_server.url + path)
        assert resp is not None and resp.status == 200
        if out:
            await page.screenshot(path=str(Path(out) / f"{name}.png"))
    assert errors == []
