"""Every list the API returns has one shape: `{"data": [...], "next_cursor": str | null}`."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes.api import serve_api
from tests.integration.helpers import bearer, seed_resources, signup

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("business_plan")]


def _assert_envelope(body: Any, what: str) -> list[Any]:
    assert isinstance(body, dict), what
    assert isinstance(body.get("data"), list) and "next_cursor" in body, (what, sorted(body))
    assert set(body) <= {"data", "next_cursor", "total_count"}, (what, sorted(body))
    assert body["next_cursor"] is None or isinstance(body["next_cursor"], str), what
    return list(body["data"])


async def test_every_list_endpoint_answers_the_one_envelope(
    make_settings: Any, database_url: str, broker: Any, redis_client: Any
) -> None:
    async with serve_api(make_settings, database_url, broker, webhook_allow_private=True) as api:
        await _check_every_list(api)


async def _check_every_list(api: Any) -> None:
    seeds = await seed_resources(api)
    hook = await api.client.post(
        "/api/v1/webhooks",
        json={"url": "http://127.0.0.1:9/in", "events": ["link.created"]},
        headers=api.auth,
    )
    assert hook.status == 201, await hook.text()
    hook_id = (await hook.json())["id"]
    link, page = seeds["link_id"], seeds["page_id"]
    key_paths = [
        "/api/v1/links",
        "/api/v1/links?page=1",
        "/api/v1/tags",
        f"/api/v1/links/{link}/rules",
        f"/api/v1/links/{link}/qr-codes",
        "/api/v1/audit-logs?limit=1",
        "/api/v1/domains",
        "/api/v1/bio-pages",
        f"/api/v1/bio-pages/{page}/links",
        "/api/v1/bio-themes",
        "/api/v1/webhooks",
    ]
    for path in key_paths:
        resp = await api.client.get(path, headers=api.auth)
        assert resp.status == 200, (path, await resp.text())
        assert _assert_envelope(await resp.json(), path), f"{path}: the seeded resource is listed"
    deliveries = await api.client.get(f"/api/v1/webhooks/{hook_id}/deliveries", headers=api.auth)
    assert _assert_envelope(await deliveries.json(), "deliveries") == []
    # Paged lists carry the cursor of the next page.
    first = await (await api.client.get("/api/v1/audit-logs?limit=1", headers=api.auth)).json()
    assert isinstance(first["next_cursor"], str)
    reordered = await api.client.post(
        f"/api/v1/bio-pages/{page}/links/reorder", json={"link_ids": [seeds["bio_link_id"]]}, headers=api.auth
    )
    assert _assert_envelope(await reordered.json(), "reorder")

    user = await signup(api)
    ws, h = user["workspace_id"], bearer(user["access_token"])
    await api.client.post(
        f"/api/v1/workspaces/{ws}/invitations", json={"email": "later@example.test"}, headers=h
    )
    await api.client.post(
        f"/api/v1/workspaces/{ws}/api-keys", json={"name": "k", "scopes": ["links:read"]}, headers=h
    )
    for path in (
        "/api/v1/sessions",
        "/api/v1/workspaces",
        f"/api/v1/workspaces/{ws}/members",
        f"/api/v1/workspaces/{ws}/invitations",
        f"/api/v1/workspaces/{ws}/api-keys",
    ):
        resp = await api.client.get(path, headers=h)
        assert resp.status == 200, (path, await resp.text())
        assert _assert_envelope(await resp.json(), path), path
