"""Domains and webhooks pages in a real browser."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.fakes.webhook_receiver import WebhookReceiver
from tests.web.conftest import WebServer, sign_up

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("business_plan")]


async def test_domain_shows_dns_instructions_and_status(page: Page, web_server: WebServer) -> None:
    await sign_up(page, web_server)
    await page.goto(web_server.url + "/app/domains")
    await expect(page.locator(".empty")).to_contain_text("No custom domains")
    await page.fill("#d-domain", "not a domain")
    await page.click("text=Add domain")
    assert await page.locator("#d-domain").get_attribute("aria-invalid") == "true"
    await page.fill("#d-domain", "go.brandlinks.com")
    await page.fill("#d-default_redirect_url", "https://example.com/home")
    await page.click("text=Add domain")
    card = page.locator("section.card", has_text="go.brandlinks.com")
    text = await card.inner_text()
    assert "TXT" in text and "Waiting for DNS" in text
    assert "https://example.com/home" in text
    txt_value = await card.locator("td code").nth(1).inner_text()
    assert len(txt_value) > 10
    # The platform's host here is 127.0.0.1: an A record to it, no CNAME (a CNAME to an IP is invalid).
    rows = card.locator("table tbody tr")
    cells = [[c.strip() for c in row.split("\t")] for row in await rows.all_inner_texts()]
    assert [r[0] for r in cells] == ["TXT", "A"], cells
    assert cells[1][1:3] == ["go.brandlinks.com", "127.0.0.1"]
    assert "CNAME" not in text
    # A host name (what production sets) gets today's CNAME and the apex A record's hint.
    web_server.settings.default_domain = "lnk.example.org:8443"
    await page.reload()
    cells = [[c.strip() for c in row.split("\t")] for row in await rows.all_inner_texts()]
    assert [r[0] for r in cells] == ["TXT", "CNAME", "A (apex domains, instead of CNAME)"], cells
    assert cells[1][1:3] == ["go.brandlinks.com", "lnk.example.org"]
    assert cells[2][2] == "The IP address of your LinkRift server"


async def test_webhook_secret_once_test_event_log_and_redeliver(
    page: Page, web_server: WebServer, receiver: WebhookReceiver
) -> None:
    await sign_up(page, web_server)
    await page.goto(web_server.url + "/app/webhooks")
    await page.fill("#w-url", receiver.url)
    await page.click("text=Add endpoint")  # no event chosen: the API's error beside the events
    await expect(page.locator("#events-error")).to_contain_text("at least one event")
    await page.check("input[value='link.created']")
    await page.click("text=Add endpoint")
    secret = await page.locator("#new-secret").inner_text()
    assert secret
    await page.get_by_role("link", name=receiver.url).click()
    await page.wait_for_url("**/app/webhooks/*")
    assert secret not in await page.content()
    await page.click("text=Send a test event")
    await expect(page.locator("#delivery-outcome")).to_contain_text("Delivered")
    assert len(receiver.received) == 1
    headers, body = receiver.received[0]
    assert b"webhook.test" in body and any("signature" in k for k in headers)
    await expect(page.locator("#deliveries tbody tr")).to_have_count(1)
    receiver.default = 500
    await page.click("text=Redeliver")
    await expect(page.locator("#delivery-outcome")).to_contain_text("Not delivered")
    assert len(receiver.received) == 2
    page.once("dialog", lambda d: d.accept())
    await page.click("text=Rotate secret")
    new_secret = await page.locator("#new-secret").inner_text()
    assert new_secret and new_secret != secret


async def test_bio_page_editor_live_preview_and_publish(page: Page, web_server: WebServer) -> None:
    await sign_up(page, web_server)
    await page.goto(web_server.url + "/app/bio")
    await page.fill("#b-title", "Ada's links")
    await page.fill("#b-slug", "ada-links")
    await page.click("text=Create page")
    await page.wait_for_url("**/app/bio/*")
    await page.fill("#bb-title", "My blog")
    await page.fill("#bb-url", "not a url")
    await page.click("text=Add button")
    assert await page.locator("#bb-url").get_attribute("aria-invalid") == "true"
    await page.fill("#bb-url", "https://example.com/blog")
    await page.click("text=Add button")
    await page.wait_for_url("**#buttons")
    preview = page.frame_locator("#bio-preview")
    await expect(preview.locator("a.button")).to_have_text("My blog")
    # Unsaved edits show in the preview as they are typed.
    await page.fill("#bp-title", "Ada <Lovelace>")
    await expect(preview.locator("h1")).to_have_text("Ada <Lovelace>")
    themes = await page.locator("#bp-theme_id option").count()
    if themes > 1:
        await page.select_option("#bp-theme_id", index=1)
    await page.check("#bp-pub")
    await page.click("text=Save page")
    await expect(page.locator(".alert-ok")).to_have_text("Saved.")
    public = await page.context.new_page()
    await public.goto(web_server.url + "/@ada-links")
    await expect(public.locator("h1")).to_have_text("Ada <Lovelace>")
    await expect(public.locator("a.button")).to_have_text("My blog")
