"""Billing against a local fake Stripe: checkout/portal, signed Stripe webhooks, idempotent and
order-tolerant subscription state, usage counting, metered reporting and quota enforcement."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest
import pytest_asyncio

from engine.billing.events import apply_event
from engine.billing.gateway import StripeGateway, plans_by_price
from engine.billing.usage import (
    NOTICE_KEY,
    enforce_link_quota,
    refresh_usage,
    report_usage,
    update_click_notices,
)
from engine.errors import QuotaExceeded
from tests.conftest import ApiHarness, _make_principal
from tests.fakes.api import serve_api
from tests.fakes.stripe_server import FakeStripe, sign_payload
from tests.fakes.stripe_server import subscription_event as sub_event

pytestmark = pytest.mark.integration
WHSEC = "whsec_test_stripe"


@pytest_asyncio.fixture
async def fake_stripe() -> AsyncIterator[FakeStripe]:
    fake = await FakeStripe().start()
    yield fake
    await fake.close()


@pytest_asyncio.fixture
async def billing_api(
    make_settings: Any, database_url: str, broker: Any, redis_client: Any, fake_stripe: FakeStripe
) -> AsyncIterator[ApiHarness]:
    async with serve_api(
        make_settings,
        database_url,
        broker,
        stripe_secret_key="sk_test_fake",
        stripe_webhook_secret=WHSEC,
        stripe_api_base=fake_stripe.url,
    ) as harness:
        yield harness


async def test_checkout_and_portal_through_stripe(billing_api: ApiHarness, fake_stripe: FakeStripe) -> None:
    resp = await billing_api.client.post(
        "/api/v1/billing/checkout", json={"plan": "business"}, headers=billing_api.auth
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["url"].startswith("https://checkout.stripe.test/cs_test_")
    [session] = fake_stripe.calls("/v1/checkout/sessions")
    assert session["line_items[0][price]"] == "price_business" and session["mode"] == "subscription"
    assert session["metadata[workspace_id]"] == billing_api.workspace_id
    assert session["subscription_data[metadata][plan]"] == "business"
    resp = await billing_api.client.post("/api/v1/billing/portal", headers=billing_api.auth)
    assert (await resp.json())["url"].startswith("https://billing.stripe.test/p/")
    [portal] = fake_stripe.calls("/v1/billing_portal/sessions")
    assert portal["customer"] == session["customer"]
    assert len(fake_stripe.calls("/v1/customers")) == 1  # the customer is created once and reused


@pytest.mark.parametrize(
    ("body", "field"), [({"plan": "gold"}, "plan"), ({"plan": "free"}, "plan"), ({}, "plan")]
)
async def test_checkout_rejects_bad_plans(billing_api: ApiHarness, body: dict[str, Any], field: str) -> None:
    resp = await billing_api.client.post("/api/v1/billing/checkout", json=body, headers=billing_api.auth)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == field


async def test_billing_needs_the_billing_scope(billing_api: ApiHarness) -> None:
    other = await _make_principal(billing_api.settings.database_url, scopes=["links:write"])
    resp = await billing_api.client.post(
        "/api/v1/billing/portal", headers={"Authorization": f"Bearer {other['api_key']}"}
    )
    assert resp.status == 403


async def test_stripe_webhook_signature(billing_api: ApiHarness) -> None:
    event = {
        "id": "evt_sig_1",
        "type": "checkout.session.completed",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": "cs_1",
                "customer": "cus_9",
                "client_reference_id": billing_api.workspace_id,
                "metadata": {"workspace_id": billing_api.workspace_id, "plan": "pro"},
            }
        },
    }
    payload = orjson.dumps(event)
    for bad in (
        sign_payload(payload, "whsec_wrong"),
        sign_payload(payload, WHSEC, int(time.time()) - 600),
        "",
    ):
        resp = await billing_api.client.post(
            "/webhooks/stripe", data=payload, headers={"Stripe-Signature": bad}
        )
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "invalid_signature"
    resp = await billing_api.client.post(
        "/webhooks/stripe", data=payload, headers={"Stripe-Signature": sign_payload(payload, WHSEC)}
    )
    assert resp.status == 200
    conn = await asyncpg.connect(billing_api.settings.database_url)
    try:
        rows = await conn.fetch("SELECT topic, key FROM outbox WHERE topic LIKE '%billing.events'")
    finally:
        await conn.close()
    assert [(r["topic"], r["key"]) for r in rows] == [
        (f"{billing_api.settings.namespace}.billing.events", billing_api.workspace_id)
    ]


async def test_subscription_lifecycle_idempotent_and_order_tolerant(
    billing_api: ApiHarness, pool: asyncpg.Pool
) -> None:
    ws = billing_api.workspace_id
    prices = plans_by_price(billing_api.settings)
    t0 = int(time.time())

    async def plan_and_status() -> tuple[str, str | None]:
        async with pool.acquire() as conn:
            plan = await conn.fetchval("SELECT plan FROM workspaces WHERE id = $1", ws)
            status = await conn.fetchval(
                "SELECT status FROM subscriptions WHERE stripe_subscription_id = 'sub_1'"
            )
        return plan, status

    async with pool.acquire() as conn:
        checkout = {
            "id": "evt_c",
            "type": "checkout.session.completed",
            "created": t0,
            "data": {"object": {"customer": "cus_1", "metadata": {"workspace_id": ws, "plan": "pro"}}},
        }
        assert await apply_event(conn, checkout, prices)
        assert await apply_event(conn, sub_event("evt_1", "created", "sub_1", ws, created=t0), prices)
        assert not await apply_event(conn, sub_event("evt_1", "created", "sub_1", ws, created=t0), prices)
        assert await conn.fetchval("SELECT count(*) FROM billing_events_processed WHERE id = 'evt_1'") == 1
        assert await plan_and_status() == ("pro", "active")
        upgrade = sub_event(
            "evt_2", "updated", "sub_1", ws, created=t0 + 10, price="price_business", cancel=True
        )
        assert await apply_event(conn, upgrade, prices)
        assert await plan_and_status() == ("business", "active")
        assert await conn.fetchval("SELECT cancel_at_period_end FROM subscriptions") is True
        failed = {
            "id": "evt_3",
            "type": "invoice.payment_failed",
            "created": t0 + 20,
            "data": {"object": {"subscription": "sub_1", "customer": "cus_1"}},
        }
        assert await apply_event(conn, failed, prices)
        assert await plan_and_status() == ("business", "past_due")
        assert await apply_event(
            conn, sub_event("evt_4", "deleted", "sub_1", ws, created=t0 + 40, status="canceled"), prices
        )
        assert await plan_and_status() == ("free", "canceled")
        # An older update delivered after the deletion must not bring the plan back.
        late = sub_event("evt_5", "updated", "sub_1", ws, created=t0 + 30, price="price_business")
        await apply_event(conn, late, prices)
        assert await plan_and_status() == ("free", "canceled")
        # An older update arriving after a newer one is ignored too.
        assert await apply_event(conn, sub_event("evt_6", "created", "sub_2", ws, created=t0 + 50), prices)
        assert await apply_event(
            conn, sub_event("evt_7", "updated", "sub_2", ws, created=t0 + 60, price="price_business"), prices
        )
        await apply_event(conn, sub_event("evt_8", "updated", "sub_2", ws, created=t0 + 55), prices)
        assert (
            await conn.fetchval("SELECT plan FROM subscriptions WHERE stripe_subscription_id = 'sub_2'")
            == "business"
        )
        assert await conn.fetchval("SELECT plan FROM workspaces WHERE id = $1", ws) == "business"


async def test_usage_counted_reported_and_enforced(
    billing_api: ApiHarness, pool: asyncpg.Pool, fake_stripe: FakeStripe
) -> None:
    ws, user = billing_api.workspace_id, billing_api.user_id
    async with pool.acquire() as conn:
        await apply_event(
            conn,
            sub_event("evt_u1", "created", "sub_u", ws, created=int(time.time())),
            plans_by_price(billing_api.settings),
        )
        link_id = await conn.fetchval(
            "INSERT INTO links (user_id, workspace_id, url, short_code) VALUES ($1, $2, 'https://e.example', 'u1') "
            "RETURNING id",
            user,
            ws,
        )
        await conn.execute(
            "INSERT INTO clicks (link_id, workspace_id, is_bot) SELECT $1, $2, g > 40 FROM generate_series(1, 45) g",
            link_id,
            ws,
        )
        assert await refresh_usage(conn) == 1
        row = await conn.fetchrow("SELECT usage_link_count, usage_click_count FROM subscriptions")
        assert (row["usage_link_count"], row["usage_click_count"]) == (1, 40)
        gateway = StripeGateway(billing_api.settings)
        assert await report_usage(conn, gateway) == 1
        assert await report_usage(conn, gateway) == 0  # nothing new since the last report
        await conn.execute(
            "INSERT INTO clicks (link_id, workspace_id) SELECT $1, $2 FROM generate_series(1, 5)", link_id, ws
        )
        await refresh_usage(conn)
        await report_usage(conn, gateway)
        meter = fake_stripe.calls("/v1/billing/meter_events")
        assert [m["payload[value]"] for m in meter] == ["40", "5"]
        assert (
            meter[0]["payload[stripe_customer_id]"] == "cus_1" and meter[0]["event_name"] == "linkrift_clicks"
        )
        assert len({m["identifier"] for m in meter}) == 2

        # A free workspace: 50 links per month, and a soft notice past 5,000 clicks.
        free = await _make_principal(billing_api.settings.database_url)
        free_ws, free_user = free["workspace_id"], free["user_id"]
        await conn.execute(
            "INSERT INTO links (user_id, workspace_id, url, short_code) "
            "SELECT $1, $2, 'https://e.example', 'f' || g FROM generate_series(1, 49) g",
            free_user,
            free_ws,
        )
        await enforce_link_quota(conn, free_ws)
        await conn.execute(
            "INSERT INTO links (user_id, workspace_id, url, short_code) VALUES ($1, $2, 'https://e.example', 'f50')",
            free_user,
            free_ws,
        )
        with pytest.raises(QuotaExceeded) as exc:
            await enforce_link_quota(conn, free_ws)
        assert exc.value.field == "links_per_month"
        await enforce_link_quota(conn, ws)  # pro allows 1,000
        free_link = await conn.fetchval("SELECT id FROM links WHERE short_code = 'f1'")
        await conn.execute(
            "INSERT INTO clicks (link_id, workspace_id) SELECT $1, $2 FROM generate_series(1, 5001)",
            free_link,
            free_ws,
        )
        assert await update_click_notices(conn) == [free_ws]
        settings = await conn.fetchval("SELECT settings FROM workspaces WHERE id = $1", free_ws)
        assert settings[NOTICE_KEY]["clicks_over_limit"] is True and settings[NOTICE_KEY]["limit"] == 5000
        await conn.execute("DELETE FROM clicks WHERE workspace_id = $1", free_ws)
        assert await update_click_notices(conn) == []
        assert NOTICE_KEY not in await conn.fetchval("SELECT settings FROM workspaces WHERE id = $1", free_ws)
    assert uuid.UUID(free_ws)
