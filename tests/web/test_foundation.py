"""The web app's foundation: sign-up/log-in through a real browser, the session cookie, CSRF, the
security headers and the login rate limit."""

from __future__ import annotations

import re

import aiohttp
import pytest
from playwright.async_api import Page

from tests.web.conftest import PASSWORD, WebServer, log_in, sign_up, unique_email, verify_email

pytestmark = pytest.mark.e2e


async def _csrf(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as resp:
        html = await resp.text()
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def test_sign_up_verify_log_out_and_in(page: Page, web_server: WebServer) -> None:
    addr = await sign_up(page, web_server)
    assert await page.locator("h1").inner_text() == "Links"
    assert await page.locator("#verify-banner").is_visible()
    cookie = next(c for c in await page.context.cookies() if c["name"] == "lr_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/app"
    await verify_email(page, web_server, addr)
    await page.goto(web_server.url + "/app/links")
    assert await page.locator("#verify-banner").count() == 0
    await page.click("text=Log out")
    await page.wait_for_url(re.compile(r".*/app/login$"))
    await page.goto(web_server.url + "/app/links")
    assert "/app/login?next=/app/links" in page.url  # the session is gone
    # The contract for outside checks: inputs named email and password and a submit button.
    await log_in(page, web_server, addr)
    assert page.url.endswith("/app/links")


async def test_wrong_password_is_a_message_not_a_crash(page: Page, web_server: WebServer) -> None:
    await page.goto(web_server.url + "/app/login")
    await page.fill("input[name=email]", unique_email())
    await page.fill("input[name=password]", "not the password")
    await page.click("button[type=submit]")
    await page.wait_for_selector("text=invalid email or password")


async def test_old_email_paths_land_on_the_app(web_server: WebServer) -> None:
    async with aiohttp.ClientSession() as s:
        for path in ("/verify-email", "/invitations/accept", "/reset-password"):
            async with s.get(web_server.url + path + "?token=abc", allow_redirects=False) as resp:
                assert resp.status == 302
                assert resp.headers["Location"] == f"/app{path}?token=abc"


async def test_csrf_missing_or_wrong_is_403(web_server: WebServer) -> None:
    addr = unique_email()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        token = await _csrf(s, web_server.url + "/app/signup")
        form = {"name": "Eve", "email": addr, "password": PASSWORD}
        async with s.post(web_server.url + "/app/signup", data=form) as resp:
            assert resp.status == 403  # no token
        async with s.post(web_server.url + "/app/signup", data={**form, "csrf_token": "0" * 64}) as resp:
            assert resp.status == 403
        async with s.post(
            web_server.url + "/app/signup", data={**form, "csrf_token": token}, allow_redirects=False
        ) as resp:
            assert resp.status == 303
        # Signed in now: the session's token differs from the anonymous one.
        async with s.post(web_server.url + "/app/logout", data={"csrf_token": token}) as resp:
            assert resp.status == 403
        async with s.post(web_server.url + "/app/logout", headers={"X-CSRF-Token": token}) as resp:
            assert resp.status == 403
        session_token = await _csrf(s, web_server.url + "/app/links")
        assert session_token != token
        async with s.post(
            web_server.url + "/app/logout", headers={"X-CSRF-Token": session_token}, allow_redirects=False
        ) as resp:
            assert resp.status == 303


async def test_security_headers_and_no_inline_script(web_server: WebServer) -> None:
    async with aiohttp.ClientSession() as s, s.get(web_server.url + "/app/login") as resp:
        html = await resp.text()
        csp = resp.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html) is None
    assert " style=" not in html


async def test_login_is_rate_limited(web_server: WebServer) -> None:
    limit = web_server.settings.rate_limit_auth_per_minute
    statuses = []
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        token = await _csrf(s, web_server.url + "/app/login")
        for _ in range(limit + 2):
            form = {"email": unique_email(), "password": "nope-nope-nope", "csrf_token": token}
            async with s.post(web_server.url + "/app/login", data=form) as resp:
                statuses.append(resp.status)
    assert statuses[0] == 401
    assert statuses[-1] == 429 and set(statuses) == {401, 429}
