"""Editing after creation (issue 14's gaps): rules edited in place (every type), bio buttons with
their visibility fields, domains' settings, the links table's domain filter and every option of
the link form. Browser tests for what a person sees (with axe-core), plain HTTP for the 403/422
paths and the domain filter."""

from __future__ import annotations

import re
import uuid
from typing import Any

import aiohttp
import asyncpg
import pytest
from multidict import MultiDict
from playwright.async_api import Page, expect
from yarl import URL

from engine.rules.validation import validate_rule_input
from tests.web.axe import assert_accessible
from tests.web.conftest import PASSWORD, WebServer, sign_up, unique_email
from tests.web.test_links import create_link
from web.links import rule_body, rule_form_of

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("business_plan")]

# One rule of every type, as the API takes it.
RULES: list[dict[str, Any]] = [
    {
        "rule_type": "device",
        "conditions": {"device_types": ["mobile", "tablet"], "os": ["ios"], "browsers": ["safari"]},
        "destination_url": "https://example.com/device",
        "priority": 5,
    },
    {
        "rule_type": "geo",
        "conditions": {"countries": ["DE", "AT"], "regions": ["by"], "cities": ["munich"], "exclude": True},
        "destination_url": "https://example.com/geo",
        "priority": 4,
        "is_active": False,
    },
    {
        "rule_type": "time",
        "conditions": {
            "weekdays": [0, 4],
            "hours": [{"start": "09:00", "end": "17:00"}, {"start": "19:00", "end": "21:30"}],
            "timezone": "Europe/Berlin",
            "start": "2027-01-01",
            "end": "2027-06-30",
        },
        "destination_url": "https://example.com/time",
        "priority": 3,
    },
    {
        "rule_type": "referrer",
        "conditions": {"hosts": ["twitter.com", "*.google.com"], "pattern": "news", "direct": True},
        "destination_url": "https://example.com/ref",
        "priority": 2,
    },
    {
        "rule_type": "language",
        "conditions": {"languages": ["de", "fr-ca"]},
        "destination_url": "https://example.com/lang",
        "priority": 1,
    },
    {
        "rule_type": "ab_test",
        "conditions": {
            "variants": [
                {"id": "a", "url": "https://example.com/a", "weight": 70},
                {"id": "b", "url": "https://example.com/b", "weight": 30},
            ]
        },
        "priority": 0,
    },
    {  # more variants than the form's default rows: none may be lost on edit
        "rule_type": "ab_test",
        "conditions": {
            "variants": [
                {"id": f"v{i}", "url": f"https://example.com/{i}", "weight": i + 1} for i in range(7)
            ]
        },
        "priority": 0,
    },
]


@pytest.mark.parametrize("rule", RULES, ids=[f"{r['rule_type']}-{i}" for i, r in enumerate(RULES)])
def test_rule_form_round_trips_every_rule_type(rule: dict[str, Any]) -> None:
    """The edit form is filled from the stored rule so that saving it unchanged stores the same rule."""
    stored = {"is_active": True, "destination_url": None, **validate_rule_input(rule)}
    form = rule_form_of(stored)
    again = validate_rule_input(rule_body(form))
    assert again == validate_rule_input(stored)


# --- plain HTTP helpers ------------------------------------------------------------------------------


async def _csrf(s: aiohttp.ClientSession, url: str) -> str:
    async with s.get(url) as resp:
        html = await resp.text()
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert found, html[:300]
    return found.group(1)


async def _signed_up(server: WebServer, name: str) -> tuple[aiohttp.ClientSession, str, str]:
    """A signed-in HTTP session of a new account: (session, email, csrf token)."""
    s = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    addr = unique_email(name.lower())
    token = await _csrf(s, server.url + "/app/signup")
    form = {"name": name, "email": addr, "password": PASSWORD, "csrf_token": token}
    async with s.post(server.url + "/app/signup", data=form, allow_redirects=False) as resp:
        assert resp.status == 303
    return s, addr, await _csrf(s, server.url + "/app/links")


async def _post(s: aiohttp.ClientSession, url: str, data: Any) -> tuple[int, str, str]:
    async with s.post(url, data=data, allow_redirects=False) as resp:
        return resp.status, resp.headers.get("Location", ""), await resp.text()


async def _owner_with_everything(server: WebServer) -> dict[str, Any]:
    """An owner with a link (and a rule), a bio page (and a button) and a domain, made through the
    pages over HTTP."""
    s, addr, token = await _signed_up(server, "Owner")
    try:
        return await _fill(server, s, addr, token)
    except BaseException:
        await s.close()
        raise


async def _fill(server: WebServer, s: aiohttp.ClientSession, addr: str, token: str) -> dict[str, Any]:
    base = server.url + "/app"
    status, location, _ = await _post(
        s, base + "/links/new", {"csrf_token": token, "url": "https://example.com/x", "is_active": "on"}
    )
    assert status == 303, location
    link_id = location.split("/")[-1].split("?")[0]
    status, _, _ = await _post(
        s,
        f"{base}/links/{link_id}/rules",
        {
            "csrf_token": token,
            "rule_type": "language",
            "languages": "de",
            "destination_url": "https://d.example.com",
        },
    )
    assert status == 303
    async with s.get(f"{base}/links/{link_id}") as resp:
        rule_id = re.search(r"edit_rule=([0-9a-f-]{36})", await resp.text())
    assert rule_id
    status, location, _ = await _post(
        s, base + "/bio", {"csrf_token": token, "title": "Me", "slug": "me-" + uuid.uuid4().hex[:8]}
    )
    assert status == 303
    page_id = location.rsplit("/", 1)[1]
    status, _, _ = await _post(
        s,
        f"{base}/bio/{page_id}/buttons",
        {"csrf_token": token, "title": "Blog", "url": "https://example.com/blog", "is_visible": "on"},
    )
    assert status == 303
    async with s.get(f"{base}/bio/{page_id}") as resp:
        button_id = re.search(r'id="button-([0-9a-f-]{36})"', await resp.text())
    assert button_id
    status, _, _ = await _post(s, base + "/domains", {"csrf_token": token, "domain": "go.brandlinks.com"})
    assert status == 303
    async with s.get(base + "/domains") as resp:
        domain_id = re.search(r'id="dom-([0-9a-f-]{36})"', await resp.text())
    assert domain_id
    return {
        "session": s,
        "email": addr,
        "token": token,
        "link_id": link_id,
        "rule_id": rule_id.group(1),
        "page_id": page_id,
        "button_id": button_id.group(1),
        "domain_id": domain_id.group(1),
    }


async def test_links_domain_filter_lists_domain_names(web_server: WebServer) -> None:
    owner = await _owner_with_everything(web_server)
    s = owner["session"]
    try:
        async with s.get(web_server.url + "/app/links") as resp:
            html = await resp.text()
        select = re.search(r'<select id="f-domain" name="domain_id">(.*?)</select>', html, re.S)
        assert select is not None
        options = re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', select.group(1))
        assert options == [("", "All domains"), (owner["domain_id"], "go.brandlinks.com")]
    finally:
        await s.close()


async def test_viewer_sees_no_edit_forms_and_forged_edits_are_403(web_server: WebServer) -> None:
    owner = await _owner_with_everything(web_server)
    viewer, viewer_addr, _ = await _signed_up(web_server, "Viewer")
    base = web_server.url + "/app"
    try:
        conn = await asyncpg.connect(web_server.settings.database_url)
        try:
            ws = await conn.fetchval(
                "SELECT w.id FROM workspaces w JOIN users u ON u.id = w.owner_id WHERE u.email = $1",
                owner["email"],
            )
            await conn.execute(
                "INSERT INTO workspace_members (workspace_id, user_id, role)"
                " SELECT $1, id, 'viewer' FROM users WHERE email = $2",
                ws,
                viewer_addr,
            )
        finally:
            await conn.close()
        viewer.cookie_jar.update_cookies({"lr_workspace": str(ws)}, response_url=URL(base + "/"))
        async with viewer.get(f"{base}/links/{owner['link_id']}?edit_rule={owner['rule_id']}") as resp:
            assert resp.status == 200
            html = await resp.text()
            token = re.search(r'data-csrf="([0-9a-f]+)"', html)
        assert token
        assert "edit_rule=" not in html and 'id="rule-form"' not in html
        async with viewer.get(f"{base}/bio/{owner['page_id']}") as resp:
            assert "Save button" not in await resp.text()
        async with viewer.get(f"{base}/domains") as resp:
            html = await resp.text()
            assert "go.brandlinks.com" in html and "Edit settings" not in html
        csrf = token.group(1)
        forged = [
            (
                f"{base}/links/{owner['link_id']}/rules/{owner['rule_id']}",
                {"rule_type": "language", "languages": "fr", "is_active": "on"},
            ),
            (
                f"{base}/bio/{owner['page_id']}/buttons/{owner['button_id']}",
                {"title": "Hacked", "url": "https://evil.example.com"},
            ),
            (f"{base}/domains/{owner['domain_id']}", {"default_redirect_url": "https://evil.example.com"}),
        ]
        for url, data in forged:
            status, _, _ = await _post(viewer, url, {"csrf_token": csrf, **data})
            assert status == 403, url
        # Nothing changed.
        s = owner["session"]
        async with s.get(f"{base}/links/{owner['link_id']}") as resp:
            assert "languages: de" in await resp.text()
        async with s.get(f"{base}/bio/{owner['page_id']}") as resp:
            assert "Hacked" not in await resp.text()
        async with s.get(f"{base}/domains") as resp:
            assert "evil.example.com" not in await resp.text()
    finally:
        await viewer.close()
        await owner["session"].close()


async def test_edit_forms_answer_the_api_422_beside_the_field(web_server: WebServer) -> None:
    owner = await _owner_with_everything(web_server)
    s, csrf, base = owner["session"], owner["token"], web_server.url + "/app"
    try:
        status, _, html = await _post(
            s,
            f"{base}/links/{owner['link_id']}/rules/{owner['rule_id']}",
            MultiDict(
                [
                    ("csrf_token", csrf),
                    ("rule_type", "geo"),
                    ("countries", "DE, XYZ"),
                    ("destination_url", "https://d.example.com"),
                    ("is_active", "on"),
                ]
            ),
        )
        assert status == 422
        assert re.search(r'<p class="field-error" id="rule-countries-error">[^<]+</p>', html)
        assert f'action="/app/links/{owner["link_id"]}/rules/{owner["rule_id"]}"' in html  # still editing
        assert 'value="DE, XYZ"' in html
        status, _, html = await _post(
            s,
            f"{base}/bio/{owner['page_id']}/buttons/{owner['button_id']}",
            {
                "csrf_token": csrf,
                "title": "Blog",
                "url": "https://example.com/blog",
                "visible_from": "2027-05-02T10:00",
                "visible_until": "2027-05-01T10:00",
            },
        )
        assert status == 422
        assert re.search(r'id="be-1-visible_until-error">visible_until must be after visible_from<', html)
        status, _, html = await _post(
            s,
            f"{base}/domains/{owner['domain_id']}",
            {"csrf_token": csrf, "custom_404_url": "ftp://x", "ssl_status": "pending"},
        )
        assert status == 422
        assert re.search(rf'id="de-{owner["domain_id"]}-custom_404_url-error">', html)
        # The valid edits are saved.
        status, _, _ = await _post(
            s,
            f"{base}/links/{owner['link_id']}/rules/{owner['rule_id']}",
            MultiDict(
                [
                    ("csrf_token", csrf),
                    ("rule_type", "geo"),
                    ("countries", "DE, AT"),
                    ("destination_url", "https://d.example.com"),
                    ("priority", "7"),
                ]
            ),
        )
        assert status == 303
        async with s.get(f"{base}/links/{owner['link_id']}") as resp:
            html = await resp.text()
        assert (
            "countries: DE, AT" in html
            and "languages: de" not in html
            and '<span class="badge">Off</span>' in html
        )
    finally:
        await s.close()


# --- in a real browser -------------------------------------------------------------------------------


async def test_edit_rules_in_place(page: Page, web_server: WebServer) -> None:
    await sign_up(page, web_server)
    await create_link(page, web_server, "https://example.com/rules", short_code="rule-edit")
    await page.select_option("#r-rule_type", "device")
    await page.check("#r-dev-mobile")
    await page.fill("#r-destination_url", "https://m.example.com/")
    await page.click("text=Add rule")
    await page.wait_for_url(re.compile(r".*#rules$"))
    # Edit the device rule: the form opens filled in, in place of the add form.
    await page.get_by_role("link", name="Edit Device rule, priority 0").click()
    await expect(page.locator("#rule-form h3")).to_have_text("Edit rule")
    assert await page.locator("#r-dev-mobile").is_checked()
    assert await page.locator("#r-destination_url").input_value() == "https://m.example.com/"
    await assert_accessible(page)
    await page.check("#r-dev-tablet")
    await page.fill("#r-os", "iOS, Android")
    await page.fill("#r-priority", "8")
    await page.click("text=Save rule")
    await page.wait_for_url(re.compile(r".*#rules$"))
    text = await page.locator(".rules-table").inner_text()
    assert "device types: mobile, tablet" in text and "os: ios, android" in text.lower()
    assert await page.locator(".rules-table tbody tr").count() == 1
    # Change its type to an A/B test; a bad weight is the API's 422 beside that field.
    await page.get_by_role("link", name="Edit Device rule, priority 8").click()
    await page.select_option("#r-rule_type", "ab_test")
    await page.fill("#r-destination_url", "")
    for i, (vid, weight) in enumerate((("a", "60"), ("b", "-1"))):
        await page.fill(f"input[name='variants[{i}].id']", vid)
        await page.fill(f"input[name='variants[{i}].url']", f"https://example.com/{vid}")
        await page.fill(f"input[name='variants[{i}].weight']", weight)
    await page.click("text=Save rule")
    await expect(page.locator("#rule-variants-1-weight-error")).to_contain_text("weight")
    assert await page.locator("input[name='variants[1].weight']").get_attribute("aria-invalid") == "true"
    await expect(page.locator("#rule-form h3")).to_have_text("Edit rule")
    await assert_accessible(page)
    await page.fill("input[name='variants[1].weight']", "40")
    await page.click("text=Save rule")
    await page.wait_for_url(re.compile(r".*#rules$"))
    text = await page.locator(".rules-table").inner_text()
    assert "a 60% → https://example.com/a" in text and "b 40%" in text
    # Edit the weights in place.
    await page.get_by_role("link", name="Edit A/B test rule, priority 8").click()
    assert await page.locator("input[name='variants[0].weight']").input_value() == "60"
    await page.fill("input[name='variants[0].weight']", "75")
    await page.fill("input[name='variants[1].weight']", "25")
    await page.click("text=Save rule")
    await page.wait_for_url(re.compile(r".*#rules$"))
    assert "a 75%" in await page.locator(".rules-table").inner_text()
    await expect(page.locator("#rule-form h3")).to_have_text("Add a rule")


async def test_bio_button_visibility_fields_and_edit(page: Page, web_server: WebServer) -> None:
    await sign_up(page, web_server)
    await page.goto(web_server.url + "/app/bio")
    await page.fill("#b-title", "Vis")
    await page.fill("#b-slug", "vis-page")
    await page.click("text=Create page")
    await page.wait_for_url("**/app/bio/*")
    await page.fill("#bb-title", "Launch")
    await page.fill("#bb-url", "https://example.com/launch")
    await page.fill("#bb-icon", "🚀")
    await page.fill("#bb-visible_from", "2027-03-02T10:00")
    await page.fill("#bb-visible_until", "2027-03-01T10:00")
    await page.click("text=Add button")
    await expect(page.locator("#bb-visible_until-error")).to_have_text(
        "visible_until must be after visible_from"
    )
    assert await page.locator("#bb-visible_until").get_attribute("aria-invalid") == "true"
    assert await page.locator("#bb-icon").input_value() == "🚀"  # the input is kept
    await assert_accessible(page)
    await page.fill("#bb-visible_until", "2027-03-09T18:30")
    await page.click("text=Add button")
    await page.wait_for_url("**#buttons")
    item = page.locator(".button-list li").first
    await expect(item).to_contain_text("Shown from 2027-03-02 10:00 until 2027-03-09 18:30 UTC")
    await expect(item.locator("strong")).to_have_text("🚀 Launch")
    # The preview shows what the public page shows now: not a button whose window is ahead.
    preview = page.frame_locator("#bio-preview")
    await expect(preview.locator("h1")).to_have_text("Vis")
    await expect(preview.locator("a.button")).to_have_count(0)
    # Edit: clear the window and hide the button; the preview drops it.
    await item.locator("summary").click()
    await expect(item.locator("input[name=visible_from]")).to_have_value("2027-03-02T10:00")
    await item.locator("input[name=visible_from]").fill("")
    await item.locator("input[name=visible_until]").fill("")
    await item.locator("input[name=title]").fill("Launch day")
    await assert_accessible(page)
    await item.locator("text=Save button").click()
    await page.wait_for_url(re.compile(r".*#button-[0-9a-f-]{36}$"))
    item = page.locator(".button-list li").first
    await expect(item.locator(".badge")).to_have_count(0)  # no window any more: shown now
    await expect(preview.locator("a.button")).to_have_text("🚀 Launch day")
    # Hide it: the preview drops it.
    await item.locator("summary").click()
    await item.locator("input[name=is_visible]").uncheck()
    await item.locator("text=Save button").click()
    await page.wait_for_url(re.compile(r".*#button-[0-9a-f-]{36}$"))
    item = page.locator(".button-list li").first
    await expect(item.locator("strong")).to_have_text("🚀 Launch day")
    await expect(item.locator(".badge")).to_have_text("Hidden")
    await expect(page.frame_locator("#bio-preview").locator("a.button")).to_have_count(0)


async def test_domain_settings_edit(page: Page, web_server: WebServer) -> None:
    await sign_up(page, web_server)
    await page.goto(web_server.url + "/app/domains")
    await page.fill("#d-domain", "go.editme.com")
    await page.click("text=Add domain")
    card = page.locator("section.card", has_text="go.editme.com")
    await card.locator("summary").click()
    await card.get_by_label("Send the bare domain to").fill("not a url")
    await card.locator("text=Save settings").click()
    card = page.locator("section.card", has_text="go.editme.com")
    field = card.get_by_label("Send the bare domain to")
    assert await field.get_attribute("aria-invalid") == "true"
    await expect(card.locator(".field-error")).to_have_count(1)
    await assert_accessible(page)
    await field.fill("https://example.com/home")
    await card.get_by_label("Unknown short codes go to").fill("https://example.com/404")
    await card.get_by_label("Certificate status").select_option("active")
    await card.get_by_label("Certificate expires (UTC)").fill("2027-09-01T00:00")
    await card.locator("text=Save settings").click()
    card = page.locator("section.card", has_text="go.editme.com")
    await expect(card.locator(".alert-ok")).to_have_text("Saved.")
    facts = await card.locator("dl.facts").inner_text()
    assert "https://example.com/home" in facts and "https://example.com/404" in facts
    assert "Active, expires 2027-09-01 00:00 UTC" in facts
    # Clearing a fallback sends the bare domain to LinkRift's page again.
    await card.locator("summary").click()
    await card.get_by_label("Send the bare domain to").fill("")
    await card.locator("text=Save settings").click()
    card = page.locator("section.card", has_text="go.editme.com")
    await expect(card.locator("dl.facts")).to_contain_text("LinkRift\u2019s page")


async def test_link_form_offers_every_option(page: Page, web_server: WebServer) -> None:
    await sign_up(page, web_server)
    await page.goto(web_server.url + "/app/domains")
    await page.fill("#d-domain", "go.options.com")
    await page.click("text=Add domain")
    conn = await asyncpg.connect(web_server.settings.database_url)
    try:  # DNS is not reachable here: mark it verified as the check would
        await conn.execute(
            "UPDATE domains SET is_verified = true, verified_at = now() WHERE domain = 'go.options.com'"
        )
    finally:
        await conn.close()
    await page.goto(web_server.url + "/app/links/new")
    await assert_accessible(page)
    values = {
        "url": "https://example.com/all",
        "short_code": "all-options",
        "title": "All options",
        "tags": "one, two",
        "expires_at": "2030-01-02T03:04",
        "max_clicks": "500",
        "password": "open sesame",
        "utm_source": "news",
        "utm_medium": "email",
        "utm_campaign": "spring",
        "utm_term": "shoes",
        "utm_content": "banner",
    }
    for name, value in values.items():
        await page.fill(f"#f-{name}", value)
    await page.select_option("#f-domain_id", label="go.options.com")
    await page.select_option("#f-redirect_type", "301")
    await page.check("#f-forward_query")
    await expect(page.locator("#utm-preview")).to_contain_text("utm_campaign=spring")
    await page.click("text=Create link")
    await page.wait_for_url(re.compile(r".*\?created=1"))
    for name, value in values.items():
        if name != "password":
            assert await page.locator(f"#f-{name}").input_value() == value, name
    assert await page.locator("#f-domain_id option:checked").inner_text() == "go.options.com"
    assert await page.locator("#f-redirect_type").input_value() == "301"
    assert await page.locator("#f-forward_query").is_checked()
    assert await page.locator("#f-remove_password").count() == 1  # a password is set
