"""`domain.verified` and `member.invited` webhooks (delivery rows written with the change, then sent
by the dispatcher) and the worker's periodic domain DNS re-check (streams/agents/maintenance.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import orjson
import pytest
import pytest_asyncio

from engine.auth.crypto import SecretBox
from engine.domains.verification import TxtVerifier
from engine.webhooks.delivery import DeliveryPolicy, WebhookDispatcher
from streams.agents.maintenance import recheck_custom_domains
from tests.conftest import ApiHarness
from tests.fakes.api import serve_api
from tests.integration.helpers import bearer, signup, verify_webhook

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("business_plan")]


@pytest_asyncio.fixture
async def hooks_api(
    dns_server: Any,
    make_settings: Any,
    database_url: str,
    broker: Any,
    redis_client: Any,
) -> AsyncIterator[ApiHarness]:
    async with serve_api(make_settings, database_url, broker, webhook_allow_private=True) as harness:
        yield harness


async def _hook(api: ApiHarness, url: str, events: list[str], headers: dict[str, str] | None = None) -> dict:
    resp = await api.client.post(
        "/api/v1/webhooks", json={"url": url, "events": events}, headers=headers or api.auth
    )
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def _deliveries(pool: asyncpg.Pool, event_type: str) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT webhook_id, event_id, event_type, payload, status FROM webhook_deliveries"
            " WHERE event_type = $1 ORDER BY created_at",
            event_type,
        )
    )


async def test_domain_verified_creates_one_delivery_and_is_sent_signed(
    hooks_api: ApiHarness,
    dns_server: Any,
    receiver: Any,
    pool: asyncpg.Pool,
) -> None:
    api = hooks_api
    hook = await _hook(api, receiver.url, ["domain.verified", "member.invited"])
    await _hook(api, receiver.url, ["link.created"])  # not subscribed: no delivery
    resp = await api.client.post("/api/v1/domains", json={"domain": "go.acme-corp.com"}, headers=api.auth)
    domain = await resp.json()
    verify = f"/api/v1/domains/{domain['id']}/verify"

    assert (await (await api.client.post(verify, headers=api.auth)).json())["is_verified"] is False
    assert await _deliveries(pool, "domain.verified") == []

    dns_server.records[domain["verification"]["name"]] = [domain["verification"]["value"]]
    verified = await (await api.client.post(verify, headers=api.auth)).json()
    assert verified["is_verified"] is True
    rows = await _deliveries(pool, "domain.verified")
    assert len(rows) == 1 and str(rows[0]["webhook_id"]) == hook["id"] and rows[0]["status"] == "pending"
    assert rows[0]["payload"]["data"] == {
        "domain_id": domain["id"],
        "workspace_id": api.workspace_id,
        "domain": "go.acme-corp.com",
        "verified_at": rows[0]["payload"]["data"]["verified_at"],
    }
    # Checking an already verified domain again is no new event.
    await api.client.post(verify, headers=api.auth)
    assert len(await _deliveries(pool, "domain.verified")) == 1

    # The worker's scan (the same dispatcher) sends it, signed.
    dispatcher = WebhookDispatcher(
        pool, SecretBox(api.settings.secret_key), DeliveryPolicy.from_settings(api.settings)
    )
    try:
        assert await dispatcher.deliver_due() == 1
    finally:
        await dispatcher.close()
    headers, body = receiver.received[-1]
    assert verify_webhook(hook["secret"], headers, body)
    assert headers["webhook-id"] == rows[0]["event_id"]
    assert orjson.loads(body)["type"] == "domain.verified"
    assert (await _deliveries(pool, "domain.verified"))[0]["status"] == "succeeded"


async def test_member_invited_creates_a_delivery(
    hooks_api: ApiHarness,
    receiver: Any,
    pool: asyncpg.Pool,
) -> None:
    api = hooks_api
    owner = await signup(api)
    ws, headers = owner["workspace_id"], bearer(owner["access_token"])
    hook = await _hook(api, receiver.url, ["member.invited"], headers)
    resp = await api.client.post(
        f"/api/v1/workspaces/{ws}/invitations",
        json={"email": "new@example.test", "role": "admin"},
        headers=headers,
    )
    assert resp.status == 201, await resp.text()
    invitation = await resp.json()
    rows = await _deliveries(pool, "member.invited")
    assert len(rows) == 1 and str(rows[0]["webhook_id"]) == hook["id"]
    data = rows[0]["payload"]["data"]
    assert data["workspace_id"] == ws and data["email"] == "new@example.test" and data["role"] == "admin"
    assert data["invitation_id"] == invitation["id"]
    assert data["invited_by"] == owner["user"]["id"]


async def test_worker_recheck_verifies_due_domains_in_batches(
    hooks_api: ApiHarness,
    dns_server: Any,
    receiver: Any,
    pool: asyncpg.Pool,
) -> None:
    api = hooks_api
    await _hook(api, receiver.url, ["domain.verified"])
    domains = []
    for name in ("a.acme-corp.com", "b.acme-corp.com", "c.acme-corp.com"):
        resp = await api.client.post("/api/v1/domains", json={"domain": name}, headers=api.auth)
        domains.append(await resp.json())
    dns_server.records[domains[1]["verification"]["name"]] = [domains[1]["verification"]["value"]]
    verifier = TxtVerifier(api.settings.dns_nameserver, 2.0)

    assert await recheck_custom_domains(pool, verifier, timedelta(hours=1), batch=2) == 3
    rows = await pool.fetch("SELECT domain, is_verified, last_dns_check_at FROM domains ORDER BY domain")
    assert [(r["domain"], r["is_verified"]) for r in rows] == [
        ("a.acme-corp.com", False),
        ("b.acme-corp.com", True),
        ("c.acme-corp.com", False),
    ]
    assert all(r["last_dns_check_at"] is not None for r in rows)
    deliveries = await _deliveries(pool, "domain.verified")
    assert [d["payload"]["data"]["domain"] for d in deliveries] == ["b.acme-corp.com"]
    # Nothing is due again within the interval.
    assert await recheck_custom_domains(pool, verifier, timedelta(hours=1), batch=2) == 0
