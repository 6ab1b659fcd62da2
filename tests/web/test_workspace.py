"""Workspace and account pages in a real browser: invite a member who then sees only that
workspace, roles (a viewer sees no edit buttons and a forged POST is a 403), other workspaces'
ids are 404s, API keys (secret once), 2FA with the TOTP login step, sessions."""

from __future__ import annotations

import re

import aiohttp
import pyotp
import pytest
from playwright.async_api import Browser, Page, expect

from tests.web.conftest import PASSWORD, WebServer, create_link, log_in, sign_up, unique_email, verify_email

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("business_plan")]


async def test_invited_viewer_sees_only_that_workspace_and_cannot_edit(
    page: Page, web_server: WebServer, browser: Browser
) -> None:
    owner = await sign_up(page, web_server, name="Olivia Owner")
    detail = await create_link(page, web_server, "https://example.com/owned", short_code="owned-link")
    link_id = detail.rsplit("/", 1)[1]
    guest_addr = unique_email("guest")
    await page.goto(web_server.url + "/app/workspace")
    await page.fill("#inv-email", guest_addr)
    await page.select_option("#inv-role", "viewer")
    await page.click("text=Send invitation")
    await expect(page.locator(".alert-ok")).to_have_text("Invitation sent.")

    guest_ctx = await browser.new_context()
    try:
        guest = await guest_ctx.new_page()
        # The invitation link from the mail: not signed in yet → create an account from there.
        await guest.goto(web_server.url + web_server.mail_link(guest_addr, "/app/invitations/accept"))
        await guest.get_by_role("link", name="Create an account").click()
        await guest.fill("input[name=name]", "Gus Guest")
        await guest.fill("input[name=email]", guest_addr)
        await guest.fill("input[name=password]", PASSWORD)
        await guest.click("button[type=submit]")
        await guest.wait_for_url(re.compile(r".*/app/invitations/accept\?token=.*"))
        await guest.click("text=Accept invitation")
        await guest.wait_for_url(re.compile(r".*/app/links$"))
        # The switcher offers their own workspace and the owner's; the owner's is current.
        options = await guest.locator("#ws-select option").all_inner_texts()
        assert sorted(options) == sorted(["Gus Guest's workspace", "Olivia Owner's workspace"])
        assert "owned-link" in await guest.locator("#link-rows").inner_text()
        # A viewer: no edit buttons anywhere on the links and the link page.
        assert await guest.locator("text=New link").count() == 0
        assert await guest.locator("#select-all").count() == 0
        await guest.goto(detail)
        assert await guest.locator("text=Save changes").count() == 0
        assert await guest.locator("text=Add rule").count() == 0
        assert await guest.locator("text=Delete link").count() == 0
        # A forged POST with a valid CSRF token is still refused by the permission table.
        token = await guest.locator("body").get_attribute("data-csrf")
        cookies = {c["name"]: c["value"] for c in await guest_ctx.cookies()}
        async with aiohttp.ClientSession(cookies=cookies, cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            async with s.post(
                f"{web_server.url}/app/links/{link_id}/delete", data={"csrf_token": token}
            ) as r:
                assert r.status == 403
            async with s.post(
                f"{web_server.url}/app/links/new", data={"csrf_token": token, "url": "https://x.test"}
            ) as r:
                assert r.status == 403
            async with s.post(
                f"{web_server.url}/app/workspace/invitations",
                data={"csrf_token": token, "email": "x@example.test"},
            ) as r:
                assert r.status == 403
        await guest.goto(detail)
        assert await guest.locator("h1").inner_text() != ""  # still there

        # Switched to their own workspace, the owner's link is a 404 (not a 403) by URL.
        await guest.select_option("#ws-select", label="Gus Guest's workspace")
        # The switch reloads /app/links: wait for the new page, not the URL it already has.
        await expect(guest.locator("#ws-select option[selected]")).to_have_text("Gus Guest's workspace")
        assert "owned-link" not in await guest.locator("main").inner_text()
        resp = await guest.goto(detail)
        assert resp is not None and resp.status == 404
        resp = await guest.goto(detail + "/qr")
        assert resp is not None and resp.status == 404
    finally:
        await guest_ctx.close()
    # The owner sees the new member.
    await page.goto(web_server.url + "/app/workspace")
    assert guest_addr in await page.locator("main").inner_text()
    assert owner


async def test_api_key_secret_shown_once_and_revoked(page: Page, web_server: WebServer) -> None:
    await sign_up(page, web_server)
    await page.goto(web_server.url + "/app/workspace/api-keys")
    await page.fill("#k-name", "CI script")
    await page.check("input[value='links:read']")
    await page.click("text=Create key")
    secret = await page.locator("#new-secret").inner_text()
    assert secret.startswith("lr_")
    async with aiohttp.ClientSession() as s:
        async with s.get(
            web_server.url + "/api/v1/links", headers={"Authorization": f"Bearer {secret}"}
        ) as r:
            assert r.status == 200
        await page.goto(web_server.url + "/app/workspace/api-keys")
        assert secret not in await page.content()
        page.once("dialog", lambda d: d.accept())
        await page.click("text=Revoke")
        await expect(page.locator("text=Revoked")).to_be_visible()
        async with s.get(
            web_server.url + "/api/v1/links", headers={"Authorization": f"Bearer {secret}"}
        ) as r:
            assert r.status == 401


async def test_two_factor_setup_and_login_step(page: Page, web_server: WebServer) -> None:
    addr = await sign_up(page, web_server)
    await verify_email(page, web_server, addr)
    await page.goto(web_server.url + "/app/account")
    await page.click("text=Set up two-factor authentication")
    secret = (await page.locator(".tfa-setup code.secret").inner_text()).strip()
    assert await page.locator(".tfa-setup img").get_attribute("src") is not None
    await page.fill("#tfa-code", pyotp.TOTP(secret).now())
    await page.click("text=Turn on")
    codes = await page.locator("#recovery-codes code").all_inner_texts()
    assert len(codes) >= 8
    await page.goto(web_server.url + "/app/account")
    assert await page.locator("#recovery-codes").count() == 0  # shown once
    await page.click("text=Log out")
    await page.wait_for_url(re.compile(r".*/app/login$"))
    await page.fill("input[name=email]", addr)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.fill("#totp_code", "000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    await page.click("text=Verify")
    await expect(page.locator(".alert-error")).to_have_text("That code didn't work.")
    await page.click("text=Lost your device? Use a recovery code")
    await page.fill("#recovery_code", codes[0])
    await page.click("text=Verify")
    await page.wait_for_url(re.compile(r".*/app/links$"))


async def test_sessions_list_and_revoke_other(page: Page, web_server: WebServer, browser: Browser) -> None:
    addr = await sign_up(page, web_server)
    other = await browser.new_context()
    try:
        other_page = await other.new_page()
        await log_in(other_page, web_server, addr)
        await page.goto(web_server.url + "/app/account")
        rows = page.locator("#sessions tbody tr")
        await expect(rows).to_have_count(2)
        await rows.filter(has_not_text="this browser").locator("text=Revoke").click()
        await expect(rows).to_have_count(1)
        await other_page.goto(web_server.url + "/app/links")
        assert "/app/login" in other_page.url  # the revoked session's cookie no longer works
    finally:
        await other.close()
