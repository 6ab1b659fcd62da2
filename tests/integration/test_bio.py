"""Bio pages through the api: CRUD, themes, reorder, the public page and its click path (emitted by
the api, counted into click_count by the worker)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer

from engine.clicks.models import RawClick
from engine.naming import Topics
from tests.pipeline_fixtures import Pipeline, wait_until

pytestmark = pytest.mark.integration


async def _page(api, **extra) -> dict:
    body = {
        "slug": "ada",
        "title": "Ada <Lovelace>",
        "bio": "Math & <b>engines</b>",
        "is_published": True,
        **extra,
    }
    resp = await api.client.post("/api/v1/bio-pages", json=body, headers=api.auth)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def _button(api, page_id: str, **body) -> dict:
    resp = await api.client.post(f"/api/v1/bio-pages/{page_id}/links", json=body, headers=api.auth)
    assert resp.status == 201, await resp.text()
    return await resp.json()


def _iso(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


async def test_public_page_escapes_schedules_and_sanitises(api) -> None:
    themes = (await (await api.client.get("/api/v1/bio-themes", headers=api.auth)).json())["data"]
    dark = next(t for t in themes if t["name"] == "Dark" and t["built_in"])
    page = await _page(
        api, theme_id=dark["id"], meta_description="Notes & things", og_image_url="https://img.example.com/o.png",
        custom_css="@import url(https://evil.example/x.css); h1 { color: red; background: url(javascript:x) }"
        " p::after { content: '</style><script>alert(1)</script>' }",
    )  # fmt: skip
    assert "@import" not in page["custom_css"] and "javascript" not in page["custom_css"]
    now = await _button(api, page["id"], title="<i>Now</i>", url="https://now.example.com/")
    await _button(
        api,
        page["id"],
        title="Future",
        url="https://future.example.com/",
        visible_from=_iso(timedelta(days=1)),
    )
    await _button(
        api, page["id"], title="Past", url="https://past.example.com/", visible_until=_iso(-timedelta(days=1))
    )
    await _button(api, page["id"], title="Hidden", url="https://hidden.example.com/", is_visible=False)
    await _button(
        api, page["id"], title="Window", url="https://window.example.com/",
        visible_from=_iso(-timedelta(hours=1)), visible_until=_iso(timedelta(hours=1)),
    )  # fmt: skip

    resp = await api.client.get("/@ada")
    html = await resp.text()
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    assert "<title>Ada &lt;Lovelace&gt;</title>" in html and "Math &amp; &lt;b&gt;engines&lt;/b&gt;" in html
    assert '<meta property="og:image" content="https://img.example.com/o.png">' in html
    assert '<meta name="description" content="Notes &amp; things">' in html
    assert "&lt;i&gt;Now&lt;/i&gt;" in html and f'href="/@ada/l/{now["id"]}"' in html
    assert "Window" in html
    for gone in ("Future", "Past", "Hidden"):
        assert gone not in html
    assert "<script" not in html and "@import" not in html and "javascript" not in html
    assert "--bg:#111827" in html  # the Dark theme


async def test_unpublished_deleted_and_unknown_pages_are_404(api) -> None:
    page = await _page(api, is_published=False)
    button = await _button(api, page["id"], title="A", url="https://a.example.com/")
    assert (await api.client.get("/@ada")).status == 404
    assert (await api.client.get(f"/@ada/l/{button['id']}", allow_redirects=False)).status == 404
    assert (await api.client.get("/@nobody")).status == 404
    await api.client.patch(f"/api/v1/bio-pages/{page['id']}", json={"is_published": True}, headers=api.auth)
    assert (await api.client.get("/@ada")).status == 200
    assert (await api.client.delete(f"/api/v1/bio-pages/{page['id']}", headers=api.auth)).status == 204
    assert (await api.client.get("/@ada")).status == 404
    await _page(api)  # the slug is free again


@pytest.mark.parametrize("column", ["suspended_at", "deleted_at"])
async def test_pages_of_suspended_or_deleted_workspaces_are_404(api, database_url: str, column: str) -> None:
    page = await _page(api)
    button = await _button(api, page["id"], title="A", url="https://a.example.com/")
    assert (await api.client.get("/@ada")).status == 200
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"UPDATE workspaces SET {column} = NOW() WHERE id = $1", api.workspace_id)
        assert (await api.client.get("/@ada")).status == 404
        assert (await api.client.get(f"/@ada/l/{button['id']}", allow_redirects=False)).status == 404
        await conn.execute(f"UPDATE workspaces SET {column} = NULL WHERE id = $1", api.workspace_id)
    finally:
        await conn.close()
    assert (await api.client.get("/@ada")).status == 200


async def test_button_click_redirects_emits_and_counts(api, pipeline: Pipeline) -> None:
    page = await _page(api)
    button = await _button(api, page["id"], title="Blog", url="https://blog.example.com/post")
    future = await _button(
        api, page["id"], title="Soon", url="https://soon.example.com/", visible_from=_iso(timedelta(days=1))
    )
    for _ in range(2):
        resp = await api.client.get(
            f"/@ada/l/{button['id']}", allow_redirects=False, headers={"User-Agent": "t/1"}
        )
        assert resp.status == 302 and resp.headers["Location"] == "https://blog.example.com/post"
    assert (await api.client.get(f"/@ada/l/{future['id']}", allow_redirects=False)).status == 404
    assert (await api.client.get("/@ada/l/not-a-uuid", allow_redirects=False)).status == 404

    consumer = AIOKafkaConsumer(
        Topics(api.settings.namespace).clicks_raw, bootstrap_servers=api.settings.kafka_bootstrap,
        auto_offset_reset="earliest",
    )  # fmt: skip
    await consumer.start()
    clicks: list[RawClick] = []
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while len(clicks) < 2 and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                clicks.extend(RawClick.loads(r.value) for r in records)
    finally:
        await consumer.stop()
    assert len(clicks) == 2
    assert {(c.kind, c.bio_link_id, c.destination, c.workspace_id) for c in clicks} == {
        ("bio", button["id"], "https://blog.example.com/post", api.workspace_id)
    }

    async def counted() -> bool:  # by the worker's click agent
        rows = await pipeline.pg(
            "SELECT id::text, click_count FROM bio_page_links WHERE bio_page_id = $1", page["id"]
        )
        return {r["id"]: r["click_count"] for r in rows} == {button["id"]: 2, future["id"]: 0}

    assert await wait_until(counted, within=60), pipeline.worker.log_tail()


async def test_reorder_update_delete_buttons(api) -> None:
    page = await _page(api)
    a, b, c = [await _button(api, page["id"], title=t, url=f"https://{t}.example.com/") for t in "abc"]
    assert [a["position"], b["position"], c["position"]] == [0, 1, 2]
    url = f"/api/v1/bio-pages/{page['id']}/links"
    resp = await api.client.post(
        f"{url}/reorder", json={"link_ids": [c["id"], a["id"], b["id"]]}, headers=api.auth
    )
    assert resp.status == 200
    assert [x["title"] for x in (await resp.json())["data"]] == ["c", "a", "b"]
    resp = await api.client.post(f"{url}/reorder", json={"link_ids": [c["id"], a["id"]]}, headers=api.auth)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "link_ids"
    html = await (await api.client.get("/@ada")).text()
    assert html.index(f"/l/{c['id']}") < html.index(f"/l/{a['id']}") < html.index(f"/l/{b['id']}")
    resp = await api.client.patch(
        f"{url}/{a['id']}",
        json={
            "title": "A!",
            "visible_until": _iso(-timedelta(hours=2)),
            "visible_from": _iso(-timedelta(hours=1)),
        },
        headers=api.auth,
    )
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "visible_until"
    resp = await api.client.patch(f"{url}/{a['id']}", json={"title": "A!"}, headers=api.auth)
    assert resp.status == 200 and (await resp.json())["title"] == "A!"
    assert (await api.client.delete(f"{url}/{a['id']}", headers=api.auth)).status == 204
    assert (await api.client.delete(f"{url}/{a['id']}", headers=api.auth)).status == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"slug": "Bad Slug!", "title": "x"}, "slug"),
        ({"slug": "-x", "title": "x"}, "slug"),
        ({"slug": "ok"}, "title"),
        ({"slug": "ok", "title": "x", "avatar_url": "javascript:alert(1)"}, "avatar_url"),
        ({"slug": "ok", "title": "x", "theme_id": "00000000-0000-0000-0000-000000000001"}, "theme_id"),
        ({"slug": "ok", "title": "x", "theme_id": "nope"}, "theme_id"),
        ({"slug": "ok", "title": "x", "meta_title": "t" * 101}, "meta_title"),
        ({"slug": "ok", "title": "x", "bogus": 1}, "bogus"),
    ],
)
async def test_invalid_page_input_names_the_field(api, body, field) -> None:
    resp = await api.client.post("/api/v1/bio-pages", json=body, headers=api.auth)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == field


async def test_button_and_theme_validation(api) -> None:
    page = await _page(api)
    url = f"/api/v1/bio-pages/{page['id']}/links"
    for body, field in [
        ({"title": "x", "url": "javascript:alert(1)"}, "url"),
        ({"url": "https://x.example.com"}, "title"),
        ({"title": "x", "url": "https://x.example.com", "position": -1}, "position"),
        ({"title": "x", "url": "https://x.example.com", "visible_from": _iso(timedelta(hours=1)),
          "visible_until": _iso(timedelta(minutes=1))}, "visible_until"),
    ]:  # fmt: skip
        resp = await api.client.post(url, json=body, headers=api.auth)
        assert resp.status == 422 and (await resp.json())["error"]["field"] == field, body
    for body, field in [
        ({"name": "x", "colors": {"background": "red"}}, "colors.background"),
        ({"name": "x", "colors": {"shadow": "#000000"}}, "colors.shadow"),
        ({"name": "x", "font": {"family": "</style>"}}, "font.family"),
        ({"colors": {}}, "name"),
    ]:
        resp = await api.client.post("/api/v1/bio-themes", json=body, headers=api.auth)
        assert resp.status == 422 and (await resp.json())["error"]["field"] == field, body


async def test_themes_and_tenant_isolation(api) -> None:
    resp = await api.client.post(
        "/api/v1/bio-themes", json={"name": "Brand", "colors": {"background": "#000000"}, "font": {"weight": 700}},
        headers=api.auth,
    )  # fmt: skip
    theme = await resp.json()
    assert resp.status == 201 and theme["built_in"] is False and theme["colors"] == {"background": "#000000"}
    assert (
        await api.client.post("/api/v1/bio-themes", json={"name": "Brand"}, headers=api.auth)
    ).status == 409
    themes = (await (await api.client.get("/api/v1/bio-themes", headers=api.auth)).json())["data"]
    built_in = next(t for t in themes if t["built_in"])
    assert (
        await api.client.patch(f"/api/v1/bio-themes/{built_in['id']}", json={"name": "X"}, headers=api.auth)
    ).status == 403
    page = await _page(api, theme_id=theme["id"])
    button = await _button(api, page["id"], title="A", url="https://a.example.com/")

    other = await api.create_principal()
    headers = {"Authorization": f"Bearer {other['api_key']}"}
    assert (await api.client.get(f"/api/v1/bio-pages/{page['id']}", headers=headers)).status == 404
    assert (
        await api.client.patch(f"/api/v1/bio-pages/{page['id']}", json={"title": "x"}, headers=headers)
    ).status == 404
    assert (await api.client.delete(f"/api/v1/bio-pages/{page['id']}", headers=headers)).status == 404
    assert (await api.client.get(f"/api/v1/bio-pages/{page['id']}/links", headers=headers)).status == 404
    assert (await api.client.patch(f"/api/v1/bio-pages/{page['id']}/links/{button['id']}", json={"title": "x"},
                                   headers=headers)).status == 404  # fmt: skip
    assert (await api.client.get(f"/api/v1/bio-themes/{theme['id']}", headers=headers)).status == 404
    assert (await api.client.delete(f"/api/v1/bio-themes/{theme['id']}", headers=headers)).status == 404
    other_themes = (await (await api.client.get("/api/v1/bio-themes", headers=headers)).json())["data"]
    assert all(t["built_in"] for t in other_themes)
    # Someone else's theme cannot be attached to a page.
    resp = await api.client.post(
        "/api/v1/bio-pages", json={"slug": "other", "title": "o", "theme_id": theme["id"]}, headers=headers
    )
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "theme_id"
    resp = await api.client.post("/api/v1/bio-pages", json={"slug": "ada", "title": "dup"}, headers=headers)
    assert resp.status == 409 and (await resp.json())["error"]["field"] == "slug"
    assert (await api.client.delete(f"/api/v1/bio-themes/{theme['id']}", headers=api.auth)).status == 204
    assert (await api.client.get("/@ada")).status == 200  # a deleted theme falls back to defaults


async def test_bio_host_form_serves_the_same_page_and_clicks(api) -> None:
    """`bio.{domain}/{slug}` is the same page as `{domain}/@{slug}`, buttons included."""
    page = await _page(api)
    button = await _button(api, page["id"], title="Blog", url="https://blog.example.com/post")
    host = {"Host": "bio.links.example.com"}
    resp = await api.client.get("/ada", headers=host)
    html = await resp.text()
    assert resp.status == 200 and "<title>Ada &lt;Lovelace&gt;</title>" in html
    assert f'href="/ada/l/{button["id"]}"' in html
    assert 'rel="canonical" href="http://bio.links.example.com/ada"' in html
    resp = await api.client.get(f"/ada/l/{button['id']}", headers=host, allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "https://blog.example.com/post"
    assert (await api.client.get("/nobody", headers=host)).status == 404
    assert (await api.client.get("/ada/l/not-a-uuid", headers=host, allow_redirects=False)).status == 404
    assert (await api.client.get("/ada/x/y/z", headers=host)).status == 404
    # The api and health paths are not bio pages on a bio host.
    # (No worker runs in this test, so the ClickHouse check fails: the health report says so.)
    resp = await api.client.get("/healthz", headers=host)
    assert resp.status == 503
    checks = (await resp.json())["checks"]
    assert checks == {"postgres": "ok", "redis": "ok", "kafka": "ok", "clickhouse": "fail"}
    resp = await api.client.get("/api/v1/bio-pages", headers={**host, **api.auth})
    assert resp.status == 200
    # Without the bio. prefix the same path is a short code (unknown here: the branded 404).
    resp = await api.client.get("/ada", headers={"Host": "links.example.com"}, allow_redirects=False)
    assert resp.status == 404 and "<title>Ada" not in await resp.text()
