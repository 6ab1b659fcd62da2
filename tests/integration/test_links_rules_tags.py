"""Rules and tags APIs: CRUD, validation with field names, outbox events, tenant isolation."""

from __future__ import annotations

import asyncpg
import orjson
import pytest

pytestmark = pytest.mark.integration

AB_RULE = {
    "rule_type": "ab_test",
    "conditions": {
        "variants": [
            {"id": "a", "url": "https://a.example/", "weight": 70},
            {"id": "b", "url": "https://b.example/", "weight": 30},
        ]
    },
}


async def _link(api, **body) -> dict:
    resp = await api.client.post(
        "/api/v1/links", json={"url": "https://example.test/r", **body}, headers=api.auth
    )
    assert resp.status == 201
    return await resp.json()


async def _events(api) -> list[dict]:
    conn = await asyncpg.connect(api.settings.database_url)
    try:
        return [orjson.loads(r[0]) for r in await conn.fetch("SELECT payload FROM outbox ORDER BY id")]
    finally:
        await conn.close()


async def test_rules_crud_and_redirect(api) -> None:
    link = await _link(api, short_code="ruled")
    base = f"/api/v1/links/{link['id']}/rules"
    resp = await api.client.post(
        base,
        json={
            "rule_type": "geo",
            "priority": 5,
            "conditions": {"countries": ["de"]},
            "destination_url": "https://de.example/",
        },
        headers=api.auth,
    )
    assert resp.status == 201, await resp.text()
    geo = await resp.json()
    assert geo["conditions"]["countries"] == ["DE"]  # normalized by validate_rule
    ab = await (await api.client.post(base, json=AB_RULE, headers=api.auth)).json()
    listed = await (await api.client.get(base, headers=api.auth)).json()
    assert [r["id"] for r in listed["data"]] == [geo["id"], ab["id"]]  # priority desc
    resp = await api.client.patch(
        f"{base}/{geo['id']}", json={"conditions": {"countries": ["FR"]}}, headers=api.auth
    )
    assert resp.status == 200 and (await resp.json())["conditions"]["countries"] == ["FR"]
    resp = await api.client.patch(f"{base}/{geo['id']}", json={"is_active": False}, headers=api.auth)
    assert (await resp.json())["is_active"] is False
    assert (await api.client.get(f"{base}/{geo['id']}", headers=api.auth)).status == 200
    assert (await api.client.delete(f"{base}/{geo['id']}", headers=api.auth)).status == 204
    assert (await api.client.get(f"{base}/{geo['id']}", headers=api.auth)).status == 404
    rule_events = [e for e in await _events(api) if e["event"] == "rules"]
    assert len(rule_events) == 5 and all(e["short_code"] == "ruled" for e in rule_events)
    # The A/B rule is live: the redirect goes to one of its variants.
    resp = await api.client.get("/ruled", allow_redirects=False)
    assert resp.headers["Location"] in ("https://a.example/", "https://b.example/")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rule_type": "weather", "destination_url": "https://x.example"}, "rule_type"),
        (
            {"rule_type": "geo", "conditions": {"countries": ["ZZ"]}, "destination_url": "https://x.example"},
            "conditions.countries[0]",
        ),
        (
            {"rule_type": "geo", "conditions": {"planets": ["mars"]}, "destination_url": "https://x.example"},
            "conditions.planets",
        ),
        ({"rule_type": "device", "conditions": {"device_types": ["mobile"]}}, "destination_url"),
        (
            {
                "rule_type": "ab_test",
                "conditions": {"variants": [{"id": "a", "url": "https://a.example", "weight": 0}]},
            },
            "conditions.variants",
        ),
        (
            {
                "rule_type": "ab_test",
                "conditions": {"variants": [{"id": "a", "url": "https://a.example", "weight": -1}]},
            },
            "conditions.variants[0].weight",
        ),
        ({**AB_RULE, "weight": -3}, "weight"),
        ({**AB_RULE, "priority": "high"}, "priority"),
    ],
)
async def test_rule_validation_names_the_field(api, body, field) -> None:
    link = await _link(api)
    resp = await api.client.post(f"/api/v1/links/{link['id']}/rules", json=body, headers=api.auth)
    assert resp.status == 422, await resp.text()
    assert (await resp.json())["error"]["field"] == field


async def test_tags_crud_attach_detach_and_filter(api) -> None:
    resp = await api.client.post(
        "/api/v1/tags", json={"name": "Launch", "color": "#FF8800"}, headers=api.auth
    )
    assert resp.status == 201
    tag = await resp.json()
    assert tag["color"] == "#ff8800"
    dup = await api.client.post("/api/v1/tags", json={"name": "Launch"}, headers=api.auth)
    assert dup.status == 409 and (await dup.json())["error"]["field"] == "name"
    bad = await api.client.post("/api/v1/tags", json={"name": "x", "color": "red"}, headers=api.auth)
    assert bad.status == 422 and (await bad.json())["error"]["field"] == "color"
    link = await _link(api)
    attach = f"/api/v1/links/{link['id']}/tags/{tag['id']}"
    assert (await api.client.put(attach, headers=api.auth)).status == 204
    listing = await (await api.client.get("/api/v1/links?tag=Launch", headers=api.auth)).json()
    assert [x["id"] for x in listing["data"]] == [link["id"]]
    tags = await (await api.client.get("/api/v1/tags", headers=api.auth)).json()
    assert [(t["name"], t["link_count"]) for t in tags["data"]] == [("Launch", 1)]
    resp = await api.client.patch(f"/api/v1/tags/{tag['id']}", json={"name": "Go-live"}, headers=api.auth)
    assert (await resp.json())["name"] == "Go-live"
    assert (await api.client.delete(attach, headers=api.auth)).status == 204
    assert (await (await api.client.get("/api/v1/links?tag=Go-live", headers=api.auth)).json())["data"] == []
    assert (await api.client.delete(f"/api/v1/tags/{tag['id']}", headers=api.auth)).status == 204
    assert (await (await api.client.get("/api/v1/tags", headers=api.auth)).json())["data"] == []
    assert [e["event"] for e in await _events(api)] == ["created", "updated", "updated"]


async def test_tenant_isolation_for_rules_and_tags(api) -> None:
    link = await _link(api)
    rule = await (
        await api.client.post(f"/api/v1/links/{link['id']}/rules", json=AB_RULE, headers=api.auth)
    ).json()
    tag = await (await api.client.post("/api/v1/tags", json={"name": "mine"}, headers=api.auth)).json()
    other = await api.create_principal()
    h = {"Authorization": f"Bearer {other['api_key']}"}
    rules = f"/api/v1/links/{link['id']}/rules"
    assert (await api.client.get(rules, headers=h)).status == 404
    assert (await api.client.post(rules, json=AB_RULE, headers=h)).status == 404
    assert (await api.client.get(f"{rules}/{rule['id']}", headers=h)).status == 404
    assert (await api.client.patch(f"{rules}/{rule['id']}", json={"priority": 1}, headers=h)).status == 404
    assert (await api.client.delete(f"{rules}/{rule['id']}", headers=h)).status == 404
    assert (await api.client.patch(f"/api/v1/tags/{tag['id']}", json={"name": "x"}, headers=h)).status == 404
    assert (await api.client.delete(f"/api/v1/tags/{tag['id']}", headers=h)).status == 404
    assert (await (await api.client.get("/api/v1/tags", headers=h)).json())["data"] == []
    # B's own link cannot take A's tag.
    theirs = await (await api.client.post("/api/v1/links", json={"url": "https://b.test"}, headers=h)).json()
    assert (await api.client.put(f"/api/v1/links/{theirs['id']}/tags/{tag['id']}", headers=h)).status == 404
    assert (await api.client.get(rules, headers=api.auth)).status == 200
