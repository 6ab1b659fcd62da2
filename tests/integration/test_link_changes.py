"""Link PATCHes and the redirect caches: a changed code stops resolving under its old name once the
link-change agent's invalidation runs, and raising or removing max_clicks un-exhausts a link
with the admission counter kept (100 → 150 admits exactly 50 more)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from engine.links.enforcement import mark_exhausted
from engine.naming import RedisKeys, Topics
from streams.agents.links import invalidate_link_caches

pytestmark = pytest.mark.integration


async def _get(api, path: str) -> Any:
    return await api.client.get(path, allow_redirects=False)


async def _run_link_change_agent(api, pool, redis_client, link_id: str) -> dict[str, Any]:
    """What the link-change agent does with the newest links.changes row the service wrote."""
    change = await pool.fetchval(
        "SELECT payload FROM outbox WHERE key = $1 ORDER BY id DESC LIMIT 1", link_id
    )
    assert isinstance(change, dict)
    await invalidate_link_caches(redis_client, RedisKeys(api.settings.namespace), change)
    return change


async def test_old_code_is_404_within_a_second_of_the_change(api, pool, redis_client) -> None:
    resp = await api.client.post(
        "/api/v1/links", json={"url": "https://dest.example/x", "short_code": "old-code"}, headers=api.auth
    )
    link_id = (await resp.json())["id"]
    assert (await _get(api, "/old-code")).status == 302  # now in the LRU and in Redis
    keys = RedisKeys(api.settings.namespace)
    assert await redis_client.exists(keys.link("old-code"))

    resp = await api.client.patch(
        f"/api/v1/links/{link_id}", json={"short_code": "new-code"}, headers=api.auth
    )
    assert resp.status == 200
    # Without the agent the old name is still served from the caches.
    assert (await _get(api, "/old-code")).status == 302

    change = await _run_link_change_agent(api, pool, redis_client, link_id)
    assert (change["old_short_code"], change["short_code"]) == ("old-code", "new-code")
    assert not await redis_client.exists(keys.link("old-code"))
    started = time.monotonic()
    for _ in range(50):
        if (await _get(api, "/old-code")).status == 404:
            break
        await asyncio.sleep(0.02)
    assert (await _get(api, "/old-code")).status == 404
    assert time.monotonic() - started < 1.0
    resp = await _get(api, "/new-code")
    assert resp.status == 302 and resp.headers["Location"] == "https://dest.example/x"


async def _redirects(api, path: str, n: int) -> list[int]:
    return [(await _get(api, path)).status for _ in range(n)]


async def test_raising_max_clicks_unexhausts_and_admits_exactly_the_difference(
    api, pool, redis_client
) -> None:
    async def exhausted_at() -> Any:
        return await pool.fetchval("SELECT exhausted_at FROM links WHERE id = $1", link_id)

    async def worker_marks_exhausted() -> bool:
        async with pool.acquire() as conn:
            return await mark_exhausted(conn, Topics(api.settings.namespace).links_changes, link_id)

    async def patch_max(value: int | None) -> None:
        resp = await api.client.patch(
            f"/api/v1/links/{link_id}", json={"max_clicks": value}, headers=api.auth
        )
        assert resp.status == 200 and (await resp.json())["max_clicks"] == value
        await _run_link_change_agent(api, pool, redis_client, link_id)
        await asyncio.sleep(0.1)  # the api's invalidation listener drops its LRU entry

    resp = await api.client.post(
        "/api/v1/links",
        json={"url": "https://dest.example/c", "short_code": "capped", "max_clicks": 3},
        headers=api.auth,
    )
    link_id = (await resp.json())["id"]
    assert await _redirects(api, "/capped", 6) == [302] * 3 + [410] * 3
    admitted = RedisKeys(api.settings.namespace).link_admitted(link_id)
    assert int(await redis_client.get(admitted)) == 3  # refusals are not counted
    assert await worker_marks_exhausted()
    assert await exhausted_at() is not None

    await patch_max(5)
    assert await exhausted_at() is None
    assert await _redirects(api, "/capped", 4) == [302, 302, 410, 410]
    assert int(await redis_client.get(admitted)) == 5
    assert await worker_marks_exhausted()  # announced again at the new cap

    # Lowering keeps the link exhausted; removing the cap brings it back for good.
    await patch_max(4)
    assert await exhausted_at() is not None
    assert await _redirects(api, "/capped", 1) == [410]
    await patch_max(None)
    assert await exhausted_at() is None
    assert await _redirects(api, "/capped", 3) == [302] * 3
