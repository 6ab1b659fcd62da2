"""Inputs found by probing that used to answer 500 or drop the connection: datetimes out of range,
deeply nested JSON, URLs with control characters, NUL in a CSV row. Each is a 422 naming the field
(or a per-row error) now, and a redirect always sends a Location header."""

from __future__ import annotations

import csv
import io
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.integration.helpers import bearer, signup

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("business_plan")]

EXTREMES = ("9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+05:00", "1969-12-31T23:59:59Z")
CONTROLS = ("\x01", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\u2028")


async def _status_field(resp: Any) -> tuple[int, str | None]:
    body = await resp.json()
    return resp.status, (body.get("error") or {}).get("field")


async def _button(api: Any) -> tuple[str, str]:
    page = await api.client.post("/api/v1/bio-pages", json={"slug": "bounds", "title": "B"}, headers=api.auth)
    page_id = (await page.json())["id"]
    button = await api.client.post(
        f"/api/v1/bio-pages/{page_id}/links", json={"title": "x", "url": "https://e.com"}, headers=api.auth
    )
    return page_id, (await button.json())["id"]


@pytest.mark.parametrize("when", EXTREMES)
async def test_datetimes_out_of_range_are_422_everywhere(api: Any, when: str) -> None:
    c, h = api.client, api.auth
    link_id = (await (await c.post("/api/v1/links", json={"url": "https://e.com/d"}, headers=h)).json())["id"]
    page_id, button_id = await _button(api)
    domain = await c.post("/api/v1/domains", json={"domain": "bounds.example.com"}, headers=h)
    domain_id = (await domain.json())["id"]
    user = await signup(api)
    uh, ws = bearer(user["access_token"]), user["workspace_id"]
    cases = [
        (c.post("/api/v1/links", json={"url": "https://e.com", "expires_at": when}, headers=h), "expires_at"),
        (c.patch(f"/api/v1/links/{link_id}", json={"expires_at": when}, headers=h), "expires_at"),
        (
            c.post(f"/api/v1/bio-pages/{page_id}/links", json={"title": "t", "url": "https://e.com", "visible_from": when}, headers=h),
            "visible_from",
        ),
        (
            c.patch(f"/api/v1/bio-pages/{page_id}/links/{button_id}", json={"visible_until": when}, headers=h),
            "visible_until",
        ),
        (c.patch(f"/api/v1/domains/{domain_id}", json={"ssl_expires_at": when}, headers=h), "ssl_expires_at"),
        (
            c.post(f"/api/v1/workspaces/{ws}/api-keys", json={"name": "k", "scopes": ["links:read"], "expires_at": when}, headers=uh),
            "expires_at",
        ),
        (c.get(f"/api/v1/links?created_from={when.replace('+', '%2B')}", headers=h), "created_from"),
    ]  # fmt: skip
    for request, field in cases:
        assert await _status_field(await request) == (422, field), (field, when)
    # Bulk: the bad item fails on its own, the good one is created.
    resp = await c.post(
        "/api/v1/links/bulk",
        json={"links": [{"url": "https://e.com/ok"}, {"url": "https://e.com/bad", "expires_at": when}]},
        headers=h,
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert (body["created"], body["failed"]) == (1, 1)
    assert body["results"][1]["error"]["field"] == "links[1].expires_at"


async def test_deeply_nested_json_is_422_naming_the_field(api: Any) -> None:
    user = await signup(api)
    uh, ws = bearer(user["access_token"]), user["workspace_id"]
    deep: Any = 1
    for _ in range(300):
        deep = {"a": deep}
    link = await api.client.post("/api/v1/links", json={"url": "https://e.com/n"}, headers=api.auth)
    link_id = (await link.json())["id"]
    nine: Any = "x"
    for _ in range(9):
        nine = {"a": nine}
    cases = [
        (api.client.patch(f"/api/v1/workspaces/{ws}", json={"settings": deep}, headers=uh), "settings"),
        (api.client.patch(f"/api/v1/workspaces/{ws}", json={"settings": nine}, headers=uh), "settings"),
        (
            api.client.patch(
                f"/api/v1/workspaces/{ws}", json={"settings": {"big": "x" * 20_000}}, headers=uh
            ),
            "settings",
        ),
        (
            api.client.post("/api/v1/bio-themes", json={"name": "t", "colors": deep}, headers=api.auth),
            "colors",
        ),
        (
            api.client.post(
                f"/api/v1/links/{link_id}/rules",
                json={"rule_type": "device", "conditions": deep, "destination_url": "https://e.com"},
                headers=api.auth,
            ),
            "conditions",
        ),
        (api.client.post("/api/v1/links/bulk", json={"links": [deep]}, headers=api.auth), "links"),
    ]
    for request, field in cases:
        assert await _status_field(await request) == (422, field), field
    # A reasonable settings object still goes through.
    ok = await api.client.patch(
        f"/api/v1/workspaces/{ws}", json={"settings": {"a": {"b": [1, 2]}}}, headers=uh
    )
    assert ok.status == 200


@pytest.mark.parametrize("char", CONTROLS)
async def test_urls_with_control_characters_are_refused_on_write(api: Any, char: str) -> None:
    c, h = api.client, api.auth
    bad = f"https://e.com/a{char}b"
    page_id, button_id = await _button(api)
    cases = [
        (c.post("/api/v1/links", json={"url": bad}, headers=h), "url"),
        (c.post(f"/api/v1/bio-pages/{page_id}/links", json={"title": "t", "url": bad}, headers=h), "url"),
        (c.patch(f"/api/v1/bio-pages/{page_id}/links/{button_id}", json={"url": bad}, headers=h), "url"),
        (c.post("/api/v1/domains", json={"domain": "ctl.example.com", "custom_404_url": bad}, headers=h), "custom_404_url"),
    ]  # fmt: skip
    for request, field in cases:
        assert await _status_field(await request) == (422, field), field
    text = f'url,short_code\nhttps://e.com/good,good-row\n"{bad}",bad-row\n'
    report = await (await c.post("/api/v1/links/import", data=text.encode(), headers=h)).json()
    assert (report["imported"], report["failed"]) == (1, 1)
    assert [(e["row"], e["field"]) for e in report["errors"]] == [(3, "url")]


async def test_a_nul_in_a_csv_row_fails_that_row_only(api: Any) -> None:
    text = "url,short_code,title\nhttps://e.com/1,nul-1,fine\nhttps://e.com/2,nul-2,a\x00b\nhttps://e.com/3,nul-3,\n"
    resp = await api.client.post("/api/v1/links/import", data=text.encode(), headers=api.auth)
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    assert (report["imported"], report["failed"]) == (2, 1)
    assert [(e["row"], e["field"]) for e in report["errors"]] == [(3, "title")]


async def test_location_is_always_sendable(api: Any, database_url: str) -> None:
    """Rows written before the write-time check (or by other tools) still redirect: non-ASCII and
    control characters are percent-encoded as UTF-8, existing escapes are kept."""
    conn = await asyncpg.connect(database_url)
    try:
        for code, url in (
            ("ctl", "https://e.com/a\x01b\x7fc d"),
            ("utf", "https://e.com/café?q=ü%20x"),
        ):
            await conn.execute(
                "INSERT INTO links (user_id, workspace_id, short_code, url) VALUES ($1, $2, $3, $4)",
                api.user_id,
                api.workspace_id,
                code,
                url,
            )
    finally:
        await conn.close()
    resp = await api.client.get("/ctl", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "https://e.com/a%01b%7Fc%20d"
    resp = await api.client.get("/utf", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "https://e.com/caf%C3%A9?q=%C3%BC%20x"


async def test_export_writes_no_quote_into_empty_cells_and_round_trips(api: Any) -> None:
    c, h = api.client, api.auth
    links = [
        {"url": "https://rt.example/1", "short_code": "rt-1"},
        {"url": "https://rt.example/2", "short_code": "rt-2", "title": "=SUM(A1)", "tags": ["+plus", "@at"]},
        {"url": "https://rt.example/3", "short_code": "rt-3", "title": "'quoted", "tags": ["plain"]},
        {"url": "https://rt.example/4", "short_code": "rt-4", "title": "'=already"},
    ]
    for link in links:
        assert (await c.post("/api/v1/links", json=link, headers=h)).status == 201
    first = await (await c.get("/api/v1/links/export.csv", headers=h)).text()
    rows = list(csv.DictReader(io.StringIO(first)))
    empty = next(r for r in rows if r["short_code"] == "rt-1")
    assert empty["title"] == empty["tags"] == empty["description"] == empty["expires_at"] == ""
    # Delete them (freeing the codes), import the export and export again: the same values come out.
    listed = (await (await c.get("/api/v1/links", headers=h)).json())["data"]
    for link in listed:
        assert (await c.delete(f"/api/v1/links/{link['id']}", headers=h)).status == 204
    form = aiohttp.FormData()
    form.add_field("file", first.encode(), filename="links.csv", content_type="text/csv")
    report = await (await c.post("/api/v1/links/import", data=form, headers=h)).json()
    assert (report["imported"], report["failed"]) == (4, 0), report
    second = await (await c.get("/api/v1/links/export.csv", headers=h)).text()
    kept = ("short_code", "url", "title", "tags", "created_at", "total_clicks", "description", "expires_at")

    def values(text: str) -> list[tuple[str, ...]]:
        return sorted(tuple(r[k] for k in kept) for r in csv.DictReader(io.StringIO(text)))

    assert values(second) == values(first)
    listed = {x["short_code"]: x for x in (await (await c.get("/api/v1/links", headers=h)).json())["data"]}
    assert listed["rt-2"]["title"] == "=SUM(A1)" and listed["rt-3"]["title"] == "'quoted"
    assert listed["rt-4"]["title"] == "'=already" and listed["rt-1"]["title"] is None
    assert sorted(t["name"] for t in listed["rt-2"]["tags"]) == ["+plus", "@at"]
