"""Probing and newcomer findings (issue 13): API paths, scopes, domains, webhooks, documented limits."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import orjson
import pytest

from engine.auth.api_key_tokens import SCOPES
from engine.naming import RedisKeys
from engine.webhooks.events import from_link_change
from streams.agents.links import invalidate_link_caches
from tests.fakes.api import serve_api
from tests.integration.helpers import bearer, join_workspace, signup

pytestmark = pytest.mark.integration


async def test_api_root_and_unknown_api_paths_answer_json_404(api: Any) -> None:
    for method, path in (
        ("GET", "/api"),
        ("GET", "/api/"),
        ("POST", "/api/"),
        ("GET", "/api/v1"),
        ("GET", "/api/v1/"),
        ("GET", "/api/nope"),
        ("GET", "/api/v2/links/x/y"),
        ("HEAD", "/api/"),
    ):
        resp = await api.client.request(method, path, headers=api.auth, allow_redirects=False)
        assert resp.status == 404, (method, path)
        assert resp.content_type == "application/json", (method, path)
        if method != "HEAD":
            assert (await resp.json())["error"]["code"] == "not_found", (method, path)
    # A short code that merely starts with "api" is still a link.
    created = await api.client.post(
        "/api/v1/links", json={"url": "https://e.com/apix", "short_code": "apix"}, headers=api.auth
    )
    assert created.status == 201
    resp = await api.client.get("/apix", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "https://e.com/apix"


async def _key(api: Any, ws: str, token: str, **body: Any) -> Any:
    return await api.client.post(
        f"/api/v1/workspaces/{ws}/api-keys", json={"name": "k", **body}, headers=bearer(token, ws)
    )


@pytest.mark.usefixtures("business_plan")
async def test_nobody_widens_a_key_beyond_their_role_or_changes_anothers_key(api: Any) -> None:
    owner = await signup(api)
    ws, ot = owner["workspace_id"], owner["access_token"]
    admin, member, viewer = [
        (await join_workspace(api, owner, role))["access_token"] for role in ("admin", "member", "viewer")
    ]
    owners_key = await (await _key(api, ws, ot, scopes=["links:read"])).json()
    url = f"/api/v1/workspaces/{ws}/api-keys/{owners_key['id']}"
    # The admin sees the owner's key but can neither widen it nor revoke it.
    for body in (
        {"scopes": ["workspace:admin", "billing:admin"]},
        {"rate_limit": 1000},
        {"name": "mine now"},
    ):
        resp = await api.client.patch(url, json=body, headers=bearer(admin, ws))
        assert (resp.status, (await resp.json())["error"]["field"]) == (403, "key_id"), body
    assert (await api.client.delete(url, headers=bearer(admin, ws))).status == 403
    kept = await (await api.client.get(url, headers=bearer(ot, ws))).json()
    assert (kept["scopes"], kept["rate_limit"], kept["name"], kept["revoked_at"]) == (
        ["links:read"],
        None,
        "k",
        None,
    )
    key = bearer(owners_key["key"])
    assert (await api.client.post("/api/v1/links", json={"url": "https://e.com"}, headers=key)).status == 403
    assert (await api.client.post("/api/v1/billing/portal", headers=key)).status == 403

    # Grants stop at the creator's role; billing:admin only from the owner.
    for token, scopes, status in (
        (viewer, ["links:read", "workspace:read", "analytics:read"], 201),
        (viewer, ["links:write"], 403),
        (member, ["links:write"], 201),
        (member, ["domains:write"], 403),
        (member, ["webhooks:read"], 403),
        (admin, ["workspace:admin"], 201),
        (admin, ["billing:admin"], 403),
        (ot, ["billing:admin"], 201),
    ):
        resp = await _key(api, ws, token, scopes=scopes)
        assert resp.status == status, (scopes, await resp.text())
        if status == 403:
            assert (await resp.json())["error"]["field"] == "scopes"
    # Nor can a creator widen their own key later.
    members_key = await (await _key(api, ws, member, scopes=["links:read"])).json()
    resp = await api.client.patch(
        f"/api/v1/workspaces/{ws}/api-keys/{members_key['id']}",
        json={"scopes": ["links:write", "domains:write"]},
        headers=bearer(member, ws),
    )
    assert (resp.status, (await resp.json())["error"]["field"]) == (403, "scopes")
    # The owner revokes anyone's key (a leaked one); the creator their own.
    assert (
        await api.client.delete(
            f"/api/v1/workspaces/{ws}/api-keys/{members_key['id']}", headers=bearer(ot, ws)
        )
    ).status == 204
    assert (await api.client.delete(url, headers=bearer(ot, ws))).status == 204


async def test_unknown_scope_error_lists_the_valid_scopes_and_openapi_has_the_enum(api: Any) -> None:
    user = await signup(api)
    resp = await _key(api, user["workspace_id"], user["access_token"], scopes=["links:read", "root"])
    error = (await resp.json())["error"]
    assert (resp.status, error["field"]) == (422, "scopes")
    assert "root" in error["message"] and all(scope in error["message"] for scope in SCOPES)
    spec = await (await api.client.get("/openapi.json")).json()
    for model in ("ApiKeyCreate", "ApiKeyUpdate"):
        text = str(spec["components"]["schemas"][model]["properties"]["scopes"])
        assert all(repr(scope) in text for scope in SCOPES), model


async def test_key_rate_limit_is_bounded_by_the_plan(api: Any, database_url: str) -> None:
    user = await signup(api)  # the free plan: 60 requests a minute per key
    ws, token = user["workspace_id"], user["access_token"]
    resp = await _key(api, ws, token, scopes=["links:read"], rate_limit=1_000_000)
    error = (await resp.json())["error"]
    assert (resp.status, error["field"]) == (422, "rate_limit") and "60" in error["message"]
    created = await (await _key(api, ws, token, scopes=["links:read"], rate_limit=60)).json()
    resp = await api.client.patch(
        f"/api/v1/workspaces/{ws}/api-keys/{created['id']}",
        json={"rate_limit": 61},
        headers=bearer(token, ws),
    )
    assert (resp.status, (await resp.json())["error"]["field"]) == (422, "rate_limit")
    # A key made with a business-plan limit gets the free plan's once the workspace is on it.
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE workspaces SET plan = 'business' WHERE id = $1", ws)
        big = await (await _key(api, ws, token, scopes=["links:read"], rate_limit=3000)).json()
        await conn.execute("UPDATE workspaces SET plan = 'free' WHERE id = $1", ws)
    finally:
        await conn.close()
    resp = await api.client.get("/api/v1/links", headers=bearer(big["key"]))
    assert resp.status == 200 and resp.headers["RateLimit-Limit"] == "60"


async def test_a_deleted_workspaces_links_answer_like_deleted_links_in_every_tier(
    api: Any, database_url: str, redis_client: Any
) -> None:
    user = await signup(api)
    ws, h = user["workspace_id"], bearer(user["access_token"], user["workspace_id"])
    for code in ("ws-hot", "ws-cold"):
        resp = await api.client.post(
            "/api/v1/links", json={"url": f"https://e.com/{code}", "short_code": code}, headers=h
        )
        assert resp.status == 201
    assert (await api.client.get("/ws-hot", allow_redirects=False)).status == 302  # in the LRU and Redis
    keys = RedisKeys(api.settings.namespace)
    assert await redis_client.exists(keys.link("ws-hot"))

    assert (await api.client.delete(f"/api/v1/workspaces/{ws}", headers=h)).status == 204
    # Never requested before: the redirect's query itself refuses a deleted workspace's link.
    assert (await api.client.get("/ws-cold", allow_redirects=False)).status == 404
    # Cached: one change per live link, which the link-change agent turns into invalidations.
    conn = await asyncpg.connect(database_url)
    try:
        changes = await conn.fetch(
            "SELECT payload FROM outbox WHERE payload->>'event' = 'workspace_deleted' ORDER BY id"
        )
    finally:
        await conn.close()
    payloads = [orjson.loads(r["payload"]) for r in changes]
    assert sorted(p["short_code"] for p in payloads) == ["ws-cold", "ws-hot"]
    assert all(from_link_change(p) is None for p in payloads)  # no link.deleted webhooks for them
    for payload in payloads:
        await invalidate_link_caches(redis_client, keys, payload)
    assert not await redis_client.exists(keys.link("ws-hot"))
    for _ in range(50):
        if (await api.client.get("/ws-hot", allow_redirects=False)).status == 404:
            break
        await asyncio.sleep(0.02)
    assert (await api.client.get("/ws-hot", allow_redirects=False)).status == 404


@pytest.mark.parametrize(
    "url", ["http://[2002:7f00:1::]/", "http://[::ffff:127.0.0.1]/", "http://[64:ff9b::7f00:1]/"]
)
async def test_webhook_to_an_internal_address_is_refused_naming_the_dev_setting(api: Any, url: str) -> None:
    resp = await api.client.post(
        "/api/v1/webhooks", json={"url": url, "events": ["link.created"]}, headers=api.auth
    )
    error = (await resp.json())["error"]
    assert (resp.status, error["field"]) == (422, "url")
    assert "LINKRIFT_WEBHOOK_ALLOW_PRIVATE" in error["message"]


async def test_audit_log_covers_domains_webhooks_bio_qr_and_themes(
    make_settings: Any, database_url: str, broker: Any, redis_client: Any
) -> None:
    async with serve_api(make_settings, database_url, broker, webhook_allow_private=True) as api:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("UPDATE workspaces SET plan = 'business' WHERE id = $1", api.workspace_id)
        finally:
            await conn.close()
        c, h = api.client, api.auth

        async def call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
            resp = await c.request(method, path, json=body, headers=h)
            assert resp.status < 300, (method, path, await resp.text())
            return await resp.json() if resp.status != 204 else None

        domain = await call("POST", "/api/v1/domains", {"domain": "audit.example.com"})
        await call("PATCH", f"/api/v1/domains/{domain['id']}", {"custom_404_url": "https://e.com/404"})
        await call("POST", f"/api/v1/domains/{domain['id']}/verify")
        await call("DELETE", f"/api/v1/domains/{domain['id']}")
        hook = await call(
            "POST", "/api/v1/webhooks", {"url": "http://127.0.0.1:9/h", "events": ["link.created"]}
        )
        await call("PATCH", f"/api/v1/webhooks/{hook['id']}", {"is_active": False})
        await call("POST", f"/api/v1/webhooks/{hook['id']}/rotate-secret")
        await call("DELETE", f"/api/v1/webhooks/{hook['id']}")
        theme = await call("POST", "/api/v1/bio-themes", {"name": "t"})
        await call("PATCH", f"/api/v1/bio-themes/{theme['id']}", {"name": "t2"})
        page = await call("POST", "/api/v1/bio-pages", {"slug": "audited", "title": "A"})
        await call("PATCH", f"/api/v1/bio-pages/{page['id']}", {"title": "B", "theme_id": theme["id"]})
        button = await call(
            "POST",
            f"/api/v1/bio-pages/{page['id']}/links",
            {"title": "x", "url": "https://e.com", "visible_from": "2030-01-01T00:00:00Z"},
        )
        await call("PATCH", f"/api/v1/bio-pages/{page['id']}/links/{button['id']}", {"title": "y"})
        await call("POST", f"/api/v1/bio-pages/{page['id']}/links/reorder", {"link_ids": [button["id"]]})
        await call("DELETE", f"/api/v1/bio-pages/{page['id']}/links/{button['id']}")
        await call("DELETE", f"/api/v1/bio-pages/{page['id']}")
        await call("DELETE", f"/api/v1/bio-themes/{theme['id']}")
        link = await call("POST", "/api/v1/links", {"url": "https://e.com/qr"})
        qr = await call("POST", f"/api/v1/links/{link['id']}/qr-codes", {})
        await call(
            "PATCH", f"/api/v1/links/{link['id']}/qr-codes/{qr['id']}", {"foreground_color": "#112233"}
        )
        await call("DELETE", f"/api/v1/links/{link['id']}/qr-codes/{qr['id']}")

        entries = (await call("GET", "/api/v1/audit-logs?limit=200"))["data"]
        actions = {(e["action"], e["resource_id"]) for e in entries}
        expected = {
            *(
                (f"domain.{v}", domain["id"])
                for v in ("created", "updated", "verification_checked", "deleted")
            ),
            *((f"webhook.{v}", hook["id"]) for v in ("created", "updated", "secret_rotated", "deleted")),
            *((f"bio_theme.{v}", theme["id"]) for v in ("created", "updated", "deleted")),
            *((f"bio_page.{v}", page["id"]) for v in ("created", "updated", "links_reordered", "deleted")),
            *((f"bio_link.{v}", button["id"]) for v in ("created", "updated", "deleted")),
            *((f"qr_code.{v}", qr["id"]) for v in ("created", "updated", "deleted")),
        }
        assert expected <= actions, sorted(expected - actions)
        rotated = next(e for e in entries if e["action"] == "webhook.secret_rotated")
        assert rotated["user_id"] == api.user_id and "secret" not in str(rotated["new_values"])


async def test_domains_take_a_pasted_origin_and_say_where_to_point(
    make_settings: Any, database_url: str, broker: Any, redis_client: Any
) -> None:
    async with serve_api(
        make_settings,
        database_url,
        broker,
        default_domain="lnk.example.org:8443",
        domain_a_record="203.0.113.7",
    ) as api:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("UPDATE workspaces SET plan = 'business' WHERE id = $1", api.workspace_id)
        finally:
            await conn.close()
        resp = await api.client.post(
            "/api/v1/domains", json={"domain": "https://Go.Acme-Corp.com/"}, headers=api.auth
        )
        assert resp.status == 201, await resp.text()
        body = await resp.json()
        assert body["domain"] == "go.acme-corp.com"
        assert body["verification"]["type"] == "TXT" and body["verification"]["value"]
        assert body["routing"] == [
            {"type": "CNAME", "name": "go.acme-corp.com", "value": "lnk.example.org"},
            {"type": "A", "name": "go.acme-corp.com", "value": "203.0.113.7"},
        ]
        for bad in (
            "https://x.acme-corp.com/path",
            "https://x.acme-corp.com:8443/",
            "ftp://x.acme-corp.com/",
        ):
            resp = await api.client.post("/api/v1/domains", json={"domain": bad}, headers=api.auth)
            assert (resp.status, (await resp.json())["error"]["field"]) == (422, "domain"), bad
