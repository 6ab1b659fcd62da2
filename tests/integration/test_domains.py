"""Custom domains through the api: CRUD, validation, tenant isolation, DNS TXT verification
against a tiny local DNS responder (dnspython message parsing on a UDP socket)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.db.pool import create_pool
from engine.domains.service import recheck_domains
from engine.domains.verification import CheckOutcome, TxtVerifier

# The free plan allows no custom domain and no second member; quotas: test_quotas.py.
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("business_plan")]


async def _add(api, domain: str = "links.acme-corp.com", **extra) -> dict:
    resp = await api.client.post("/api/v1/domains", json={"domain": domain, **extra}, headers=api.auth)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def test_add_domain_returns_the_txt_record_to_publish(dns_server, api) -> None:
    body = await _add(api, "Links.ACME-corp.com.", default_redirect_url="https://acme-corp.com/")
    assert body["domain"] == "links.acme-corp.com" and body["is_verified"] is False
    assert body["ssl_status"] == "pending" and body["default_redirect_url"] == "https://acme-corp.com/"
    record = body["verification"]
    assert record["type"] == "TXT" and record["name"] == "_linkrift-verify.links.acme-corp.com"
    assert record["value"].startswith("linkrift-verify=") and len(record["value"]) > 30
    assert body["dns_records"][0]["value"] == record["value"]
    listed = await (await api.client.get("/api/v1/domains", headers=api.auth)).json()
    assert [d["id"] for d in listed["data"]] == [body["id"]]
    resp = await api.client.get(f"/api/v1/domains/{body['id']}", headers=api.auth)
    assert resp.status == 200 and (await resp.json())["verification"] == record


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"domain": "not a host"}, "domain"),
        ({"domain": "localhost"}, "domain"),
        ({"domain": "127.0.0.1"}, "domain"),
        ({"domain": "-bad-.example.com"}, "domain"),
        ({"domain": "a." + "b" * 64 + ".com"}, "domain"),
        ({"domain": "links.example.com:8080"}, "domain"),
        ({"domain": "go.localhost"}, "domain"),
        ({}, "domain"),
        ({"domain": "ok.example.com", "custom_404_url": "javascript:alert(1)"}, "custom_404_url"),
        ({"domain": "ok.example.com", "default_redirect_url": "ftp://x.example.com"}, "default_redirect_url"),
        ({"domain": "ok.example.com", "is_verified": True}, "is_verified"),
    ],
)
async def test_invalid_domain_input_names_the_field(dns_server, api, body, field) -> None:
    resp = await api.client.post("/api/v1/domains", json=body, headers=api.auth)
    assert resp.status == 422, await resp.text()
    assert (await resp.json())["error"]["field"] == field


async def test_duplicate_domain_conflicts_across_workspaces(dns_server, api) -> None:
    await _add(api)
    other = await api.create_principal()
    resp = await api.client.post(
        "/api/v1/domains",
        json={"domain": "links.acme-corp.com"},
        headers={"Authorization": f"Bearer {other['api_key']}"},
    )
    assert resp.status == 409 and (await resp.json())["error"]["field"] == "domain"


async def test_update_and_soft_delete(dns_server, api) -> None:
    body = await _add(api)
    url = f"/api/v1/domains/{body['id']}"
    resp = await api.client.patch(
        url, json={"custom_404_url": "https://acme-corp.com/404", "ssl_status": "active"}, headers=api.auth
    )
    updated = await resp.json()
    assert resp.status == 200 and updated["custom_404_url"] == "https://acme-corp.com/404"
    assert updated["ssl_status"] == "active"
    resp = await api.client.patch(url, json={"ssl_status": "issued"}, headers=api.auth)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "ssl_status"
    resp = await api.client.patch(url, json={"default_redirect_url": "nope"}, headers=api.auth)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "default_redirect_url"
    resp = await api.client.patch(url, json={"custom_404_url": None}, headers=api.auth)
    assert (await resp.json())["custom_404_url"] is None
    assert (await api.client.delete(url, headers=api.auth)).status == 204
    assert (await api.client.get(url, headers=api.auth)).status == 404
    assert (await api.client.delete(url, headers=api.auth)).status == 404
    assert (await (await api.client.get("/api/v1/domains", headers=api.auth)).json())["data"] == []
    again = await _add(api)  # a soft-deleted domain frees its name
    assert again["id"] != body["id"]


async def test_other_workspace_gets_404_everywhere(dns_server, api) -> None:
    body = await _add(api)
    other = await api.create_principal()
    headers = {"Authorization": f"Bearer {other['api_key']}"}
    url = f"/api/v1/domains/{body['id']}"
    assert (await api.client.get(url, headers=headers)).status == 404
    assert (await api.client.patch(url, json={"ssl_status": "active"}, headers=headers)).status == 404
    assert (await api.client.post(f"{url}/verify", headers=headers)).status == 404
    assert (await api.client.delete(url, headers=headers)).status == 404
    assert (await (await api.client.get("/api/v1/domains", headers=headers)).json())["data"] == []
    assert (await api.client.get(url, headers=api.auth)).status == 200


async def test_auth_scope_and_bad_id(dns_server, api) -> None:
    assert (await api.client.get("/api/v1/domains")).status == 401
    reader = await api.create_principal(scopes=["domains:read"])
    headers = {"Authorization": f"Bearer {reader['api_key']}"}
    assert (await api.client.get("/api/v1/domains", headers=headers)).status == 200
    resp = await api.client.post("/api/v1/domains", json={"domain": "x.acme-corp.com"}, headers=headers)
    assert resp.status == 403
    resp = await api.client.get("/api/v1/domains/not-a-uuid", headers=api.auth)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "domain_id"


async def test_verification_success_mismatch_and_nxdomain(dns_server, api) -> None:
    body = await _add(api)
    verify = f"/api/v1/domains/{body['id']}/verify"
    name = body["verification"]["name"]

    result = await (await api.client.post(verify, headers=api.auth)).json()
    assert result["check"]["outcome"] == "not_found" and "NXDOMAIN" in result["check"]["detail"]
    assert result["is_verified"] is False and result["last_dns_check_at"] is not None

    dns_server.records[name] = ["linkrift-verify=wrong-token", "v=spf1 -all"]
    result = await (await api.client.post(verify, headers=api.auth)).json()
    assert result["check"]["outcome"] == "mismatch" and result["is_verified"] is False
    assert set(result["check"]["found"]) == {"linkrift-verify=wrong-token", "v=spf1 -all"}
    assert result["dns_records"][0]["last_check"]["outcome"] == "mismatch"

    dns_server.records[name] = ["v=spf1 -all", body["verification"]["value"]]
    result = await (await api.client.post(verify, headers=api.auth)).json()
    assert result["check"]["outcome"] == "verified"
    assert result["is_verified"] is True and result["verified_at"] is not None
    first_verified_at = result["verified_at"]

    # The record disappearing later is recorded, but the domain stays verified.
    del dns_server.records[name]
    result = await (await api.client.post(verify, headers=api.auth)).json()
    assert result["check"]["outcome"] == "not_found"
    assert result["is_verified"] is True and result["verified_at"] == first_verified_at


async def test_periodic_recheck_verifies_due_domains(dns_server, api) -> None:
    body = await _add(api)
    dns_server.records[body["verification"]["name"]] = [body["verification"]["value"]]
    pool = await create_pool(api.settings.database_url)
    try:
        verifier = TxtVerifier(api.settings.dns_nameserver, 2.0)
        results = await recheck_domains(pool, verifier, interval=timedelta(hours=1))
        assert [(d, c.outcome) for d, c in results] == [("links.acme-corp.com", CheckOutcome.VERIFIED)]
        # Just checked: not due again within the interval.
        assert await recheck_domains(pool, verifier, interval=timedelta(hours=1)) == []
    finally:
        await pool.close()
    got = await (await api.client.get(f"/api/v1/domains/{body['id']}", headers=api.auth)).json()
    assert got["is_verified"] is True


async def test_unreachable_nameserver_is_an_error_outcome() -> None:
    check = await TxtVerifier("127.0.0.1:9", timeout=0.5).check("links.acme-corp.com", "t")
    assert check.outcome is CheckOutcome.ERROR
