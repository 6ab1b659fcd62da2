"""A local stand-in for the handful of Stripe API endpoints LinkRift calls (tests only, no network).

Serves on 127.0.0.1, records every request (form fields flattened as Stripe sends them), and
answers with minimal Stripe-shaped objects. `sign_payload` signs webhook bodies the way Stripe does.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


def sign_payload(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A Stripe-Signature header value: t=<ts>,v1=HMAC-SHA256(secret, "<ts>.<payload>")."""
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def subscription_event(
    event_id: str,
    kind: str,
    sub_id: str,
    workspace_id: str,
    *,
    created: int,
    status: str = "active",
    price: str = "price_pro",
    cancel: bool = False,
    customer: str = "cus_1",
) -> dict[str, Any]:
    """A `customer.subscription.<kind>` event as Stripe sends it (period on the item, as in newer
    API versions), carrying our `metadata.workspace_id`."""
    now = int(time.time())
    return {
        "id": event_id,
        "object": "event",
        "type": f"customer.subscription.{kind}",
        "created": created,
        "data": {
            "object": {
                "id": sub_id,
                "object": "subscription",
                "customer": customer,
                "status": status,
                "cancel_at_period_end": cancel,
                "metadata": {"workspace_id": workspace_id},
                "items": {
                    "data": [
                        {
                            "price": {"id": price},
                            "current_period_start": now - 86400,
                            "current_period_end": now + 29 * 86400,
                        }
                    ]
                },
            }
        },
    }


@dataclass
class FakeStripe:
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    server: TestServer | None = None

    def calls(self, path: str) -> list[dict[str, str]]:
        return [form for p, form in self.requests if p == path]

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    async def _record(self, request: web.Request) -> dict[str, str]:
        if request.headers.get("Authorization", "") != "Bearer sk_test_fake":
            raise web.HTTPUnauthorized(
                text='{"error": {"message": "bad key"}}', content_type="application/json"
            )
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.requests.append((request.path, form))
        return form

    async def customers(self, request: web.Request) -> web.Response:
        form = await self._record(request)
        return web.json_response(
            {"id": f"cus_{uuid.uuid4().hex[:14]}", "object": "customer", "email": form.get("email")}
        )

    async def checkout_sessions(self, request: web.Request) -> web.Response:
        await self._record(request)
        sid = f"cs_test_{uuid.uuid4().hex[:16]}"
        return web.json_response(
            {"id": sid, "object": "checkout.session", "url": f"https://checkout.stripe.test/{sid}"}
        )

    async def portal_sessions(self, request: web.Request) -> web.Response:
        form = await self._record(request)
        sid = f"bps_{uuid.uuid4().hex[:16]}"
        return web.json_response(
            {
                "id": sid,
                "object": "billing_portal.session",
                "customer": form.get("customer"),
                "url": f"https://billing.stripe.test/p/{sid}",
            }
        )

    async def meter_events(self, request: web.Request) -> web.Response:
        form = await self._record(request)
        return web.json_response(
            {
                "object": "billing.meter_event",
                "event_name": form.get("event_name"),
                "identifier": form.get("identifier"),
                "payload": {"value": form.get("payload[value]")},
            }
        )

    async def start(self) -> FakeStripe:
        app = web.Application()
        app.router.add_post("/v1/customers", self.customers)
        app.router.add_post("/v1/checkout/sessions", self.checkout_sessions)
        app.router.add_post("/v1/billing_portal/sessions", self.portal_sessions)
        app.router.add_post("/v1/billing/meter_events", self.meter_events)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return self

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()
