"""Listing links: keyset and offset pagination, filters, full-text search, `q`, sorting."""

from __future__ import annotations

import asyncpg
import pytest

pytestmark = pytest.mark.integration


async def _seed(api, n: int) -> None:
    """n links straight into PostgreSQL (created_at one second apart, clicks = i % 7)."""
    conn = await asyncpg.connect(api.settings.database_url)
    try:
        await conn.execute(
            """INSERT INTO links (user_id, workspace_id, url, short_code, title, total_clicks, created_at)
               SELECT $1, $2, 'https://seed.example/' || i, 'seed' || lpad(i::text, 4, '0'),
                      CASE WHEN i % 10 = 0 THEN NULL ELSE 'Seed ' || i END, i % 7,
                      now() - (i || ' seconds')::interval
               FROM generate_series(1, $3) AS i""",
            api.user_id,
            api.workspace_id,
            n,
        )
    finally:
        await conn.close()


async def _get(api, query: str) -> dict:
    resp = await api.client.get(f"/api/v1/links?{query}", headers=api.auth)
    assert resp.status == 200, await resp.text()
    return await resp.json()


@pytest.mark.parametrize(
    ("sort", "order"), [("created_at", "desc"), ("total_clicks", "asc"), ("title", "desc")]
)
async def test_keyset_pagination_visits_every_link_once(api, sort, order) -> None:
    await _seed(api, 250)
    seen: list[dict] = []
    cursor = ""
    pages = 0
    while True:
        body = await _get(
            api, f"limit=100&sort={sort}&order={order}" + (f"&cursor={cursor}" if cursor else "")
        )
        seen.extend(body["data"])
        pages += 1
        if not body["next_cursor"]:
            break
        cursor = body["next_cursor"]
    assert pages == 3 and len(seen) == 250 and len({x["id"] for x in seen}) == 250
    keys = {
        "created_at": lambda x: x["created_at"],
        "total_clicks": lambda x: x["total_clicks"],
        "title": lambda x: x["title"] or "",
    }[sort]
    values = [keys(x) for x in seen]
    assert values == sorted(values, reverse=order == "desc")


async def test_offset_pagination_with_total_count(api) -> None:
    await _seed(api, 25)
    body = await _get(api, "limit=10&page=3")
    assert body["total_count"] == 25 and len(body["data"]) == 5
    body = await _get(api, "limit=10&page=9")
    assert body["total_count"] == 25 and body["data"] == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("sort=url", "sort"),
        ("order=up", "order"),
        ("cursor=garbage", "cursor"),
        ("active=perhaps", "active"),
        ("created_from=yesterday", "created_from"),
        ("page=0", "page"),
        ("domain_id=x", "domain_id"),
    ],
)
async def test_bad_list_parameters_name_the_field(api, query, field) -> None:
    resp = await api.client.get(f"/api/v1/links?{query}", headers=api.auth)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == field


async def test_cursor_of_another_sort_is_rejected(api) -> None:
    await _seed(api, 5)
    cursor = (await _get(api, "limit=2"))["next_cursor"]
    resp = await api.client.get(f"/api/v1/links?limit=2&sort=title&cursor={cursor}", headers=api.auth)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "cursor"


async def test_filters_search_and_q(api) -> None:
    async def create(**body) -> dict:
        resp = await api.client.post("/api/v1/links", json=body, headers=api.auth)
        assert resp.status == 201
        return await resp.json()

    a = await create(
        url="https://shop.example/boots",
        short_code="boots-1",
        title="Winter boots",
        description="Warm running shoes for snowy mountains",
        tags=["shoes"],
    )
    b = await create(
        url="https://blog.example/recipe", short_code="cake-1", title="Chocolate cake", is_active=False
    )
    c = await create(url="https://shop.example/hat", short_code="hat-1", tags=["hats"])
    ids = lambda body: sorted(x["id"] for x in body["data"])  # noqa: E731
    assert ids(await _get(api, "search=running shoe")) == [a["id"]]  # stemming: running → run
    assert ids(await _get(api, "search=chocolate -boots")) == [b["id"]]
    assert ids(await _get(api, "q=cake")) == [b["id"]]  # short_code prefix
    assert ids(await _get(api, "q=SHOP.example")) == sorted([a["id"], c["id"]])  # url ILIKE
    assert ids(await _get(api, "q=%25")) == []  # LIKE wildcards are literal
    assert ids(await _get(api, "tag=shoes")) == [a["id"]]
    assert ids(await _get(api, f"tag={a['tags'][0]['id']}")) == [a["id"]]
    assert ids(await _get(api, "active=false")) == [b["id"]]
    assert len((await _get(api, "created_from=2000-01-01T00:00:00Z"))["data"]) == 3
    assert (await _get(api, "created_to=2000-01-01T00:00:00Z"))["data"] == []


async def test_full_text_search_uses_the_gin_index(api) -> None:
    from engine.links.search import SEARCH_VECTOR

    conn = await asyncpg.connect(api.settings.database_url)
    try:
        await conn.execute("SET enable_seqscan = off")
        vector = SEARCH_VECTOR.replace("COALESCE(", "COALESCE(l.")  # as list_links writes it
        rows = await conn.fetch(
            f"EXPLAIN SELECT l.id FROM links l WHERE {vector} @@ websearch_to_tsquery('english', 'boots')"
        )
        plan = "\n".join(r[0] for r in rows)
    finally:
        await conn.close()
    assert "idx_links_search" in plan


async def test_other_workspace_sees_none_of_the_links(api) -> None:
    await _seed(api, 3)
    other = await api.create_principal()
    resp = await api.client.get("/api/v1/links", headers={"Authorization": f"Bearer {other['api_key']}"})
    assert (await resp.json())["data"] == []
