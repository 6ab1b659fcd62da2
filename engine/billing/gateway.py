"""The Stripe calls LinkRift makes, through the official `stripe` library.

`Settings.stripe_api_base` points the client elsewhere (the tests' local fake Stripe). The library
is synchronous here and runs in a thread: these calls are rare (checkout, portal, hourly usage).
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import stripe

from engine.billing.plans import PAID_PLANS, Plan
from engine.config import Settings
from engine.errors import LinkRiftError, ServiceUnavailable, ValidationFailed

SIGNATURE_TOLERANCE = 300


class StripeSignatureInvalid(LinkRiftError):
    status = 400
    code = "invalid_signature"


def price_ids(settings: Settings) -> dict[Plan, str]:
    return {
        Plan.PRO: settings.stripe_price_pro,
        Plan.BUSINESS: settings.stripe_price_business,
        Plan.ENTERPRISE: settings.stripe_price_enterprise,
    }


def plans_by_price(settings: Settings) -> dict[str, Plan]:
    return {price: plan for plan, price in price_ids(settings).items()}


def verify_stripe_event(payload: bytes, signature: str | None, secret: str) -> None:
    """Check the Stripe-Signature header (t=…,v1=HMAC-SHA256(secret, "t.payload"), 300 s tolerance)."""
    if not secret:
        raise ServiceUnavailable("stripe webhooks are not configured (LINKRIFT_STRIPE_WEBHOOK_SECRET)")
    try:
        stripe.Webhook.construct_event(payload, signature, secret, tolerance=SIGNATURE_TOLERANCE)
    except stripe.SignatureVerificationError:
        raise StripeSignatureInvalid("Stripe-Signature does not match", field="Stripe-Signature") from None
    except ValueError:
        raise StripeSignatureInvalid("payload is not a Stripe event", field="body") from None


class StripeGateway:
    def __init__(self, settings: Settings) -> None:
        if not settings.stripe_secret_key:
            raise ServiceUnavailable("billing is not configured (LINKRIFT_STRIPE_SECRET_KEY)")
        self.settings = settings
        self.client = stripe.StripeClient(
            settings.stripe_secret_key,
            base_addresses={"api": settings.stripe_api_base},
            max_network_retries=1,
        )

    async def _call(self, fn: Any, params: dict[str, Any]) -> Any:
        try:
            return await asyncio.to_thread(fn, params=params)
        except stripe.StripeError as exc:
            raise ServiceUnavailable(f"stripe: {exc.user_message or type(exc).__name__}") from exc

    async def ensure_customer(self, conn: asyncpg.Connection, workspace_id: str) -> str:
        """The workspace's Stripe customer, created (and remembered) on first use."""
        existing = await conn.fetchval(
            "SELECT stripe_customer_id FROM billing_customers WHERE workspace_id = $1", workspace_id
        )
        if existing:
            return str(existing)
        ws = await conn.fetchrow(
            """SELECT w.name, u.email FROM workspaces w JOIN users u ON u.id = w.owner_id WHERE w.id = $1""",
            workspace_id,
        )
        if ws is None:
            raise ValidationFailed("workspace not found", field="workspace_id")
        customer = await self._call(
            self.client.v1.customers.create,
            {"email": ws["email"], "name": ws["name"], "metadata": {"workspace_id": workspace_id}},
        )
        stored = await conn.fetchval(
            """INSERT INTO billing_customers (workspace_id, stripe_customer_id) VALUES ($1, $2)
               ON CONFLICT (workspace_id) DO UPDATE SET workspace_id = EXCLUDED.workspace_id
               RETURNING stripe_customer_id""",
            workspace_id,
            customer.id,
        )
        return str(stored)

    async def checkout_url(
        self, conn: asyncpg.Connection, workspace_id: str, plan: Plan, success_url: str, cancel_url: str
    ) -> str:
        if plan not in PAID_PLANS:
            raise ValidationFailed("plan must be one of pro, business, enterprise", field="plan")
        customer = await self.ensure_customer(conn, workspace_id)
        metadata = {"workspace_id": workspace_id, "plan": plan.value}
        session = await self._call(
            self.client.v1.checkout.sessions.create,
            {
                "mode": "subscription",
                "customer": customer,
                "client_reference_id": workspace_id,
                "line_items": [{"price": price_ids(self.settings)[plan], "quantity": 1}],
                "success_url": success_url,
                "cancel_url": cancel_url,
                "metadata": metadata,
                "subscription_data": {"metadata": metadata},
            },
        )
        return str(session.url)

    async def portal_url(self, conn: asyncpg.Connection, workspace_id: str, return_url: str) -> str:
        customer = await self.ensure_customer(conn, workspace_id)
        session = await self._call(
            self.client.v1.billing_portal.sessions.create, {"customer": customer, "return_url": return_url}
        )
        return str(session.url)

    async def report_clicks(self, customer_id: str, clicks: int, identifier: str) -> None:
        """A meter event: Stripe sums the values; `identifier` makes a resend after a crash a no-op."""
        await self._call(
            self.client.v1.billing.meter_events.create,
            {
                "event_name": self.settings.stripe_meter_event_name,
                "identifier": identifier,
                "payload": {"stripe_customer_id": customer_id, "value": str(clicks)},
            },
        )
