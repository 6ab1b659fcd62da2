"""Billing endpoints: Stripe checkout and portal sessions, and the Stripe webhook receiver.

The receiver only verifies and records: the event goes into the outbox (topic billing.events,
keyed by workspace) in one statement, the relay publishes it, and the worker's billing agent
applies it. Stripe gets its 200 as soon as the event is durable.
"""

from __future__ import annotations

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from api.auth import principal
from api.errors import json_response
from api.http import parse_model, read_json
from api.state import PG, SETTINGS, TOPICS
from engine.auth.permissions import Action
from engine.billing.events import workspace_for_event
from engine.billing.gateway import StripeGateway, StripeSignatureInvalid, verify_stripe_event
from engine.billing.plans import parse_plan
from engine.outbox import write_outbox

routes = web.RouteTableDef()


class CheckoutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan: str
    success_url: str | None = Field(None, max_length=2048)
    cancel_url: str | None = Field(None, max_length=2048)


def _return_url(request: web.Request, path: str) -> str:
    return f"{request.app[SETTINGS].public_base_url}{path}"


@routes.post("/api/v1/billing/checkout")
async def checkout(request: web.Request) -> web.Response:
    who = await principal(request, Action.BILLING_MANAGE)
    body = parse_model(CheckoutRequest, await read_json(request))
    plan = parse_plan(body.plan)
    gateway = StripeGateway(request.app[SETTINGS])
    async with request.app[PG].acquire() as conn:
        url = await gateway.checkout_url(
            conn,
            who.workspace_id,
            plan,
            body.success_url or _return_url(request, "/billing?checkout=success"),
            body.cancel_url or _return_url(request, "/billing?checkout=canceled"),
        )
    return json_response({"url": url})


@routes.post("/api/v1/billing/portal")
async def portal(request: web.Request) -> web.Response:
    who = await principal(request, Action.BILLING_MANAGE)
    gateway = StripeGateway(request.app[SETTINGS])
    async with request.app[PG].acquire() as conn:
        url = await gateway.portal_url(conn, who.workspace_id, _return_url(request, "/billing"))
    return json_response({"url": url})


@routes.post("/webhooks/stripe")
async def stripe_webhook(request: web.Request) -> web.Response:
    payload = await request.read()
    verify_stripe_event(
        payload, request.headers.get("Stripe-Signature"), request.app[SETTINGS].stripe_webhook_secret
    )
    event = orjson.loads(payload)
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        raise StripeSignatureInvalid("payload is not a Stripe event", field="body")
    async with request.app[PG].acquire() as conn:
        workspace_id = await workspace_for_event(conn, event)
        await write_outbox(conn, request.app[TOPICS].billing_events, workspace_id or event["id"], event)
    return json_response({"received": True})
