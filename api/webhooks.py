"""Management API for outgoing webhooks: CRUD, secret rotation, test delivery, delivery log, redelivery."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from api.audit import audit_context
from api.auth import principal
from api.errors import json_response
from api.http import list_response, parse_model, parse_uuid, read_json
from api.state import PG, SETTINGS
from engine.auth.crypto import SecretBox
from engine.auth.permissions import Action
from engine.errors import ValidationFailed
from engine.webhooks import repository, service
from engine.webhooks.delivery import DeliveryPolicy, WebhookDispatcher
from engine.webhooks.events import validate_events
from engine.webhooks.targets import validate_target

routes = web.RouteTableDef()
MAX_PAGE = 100


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048)
    events: list[str] = Field(min_length=1, max_length=50)


class WebhookUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, max_length=2048)
    events: list[str] | None = Field(None, min_length=1, max_length=50)
    is_active: bool | None = None


def _box(request: web.Request) -> SecretBox:
    return SecretBox(request.app[SETTINGS].secret_key)


def _hook_id(request: web.Request) -> str:
    return parse_uuid(request.match_info["webhook_id"], "webhook_id")


@routes.get("/api/v1/webhooks")
async def list_webhooks(request: web.Request) -> web.Response:
    who = await principal(request, Action.WEBHOOK_READ)
    async with request.app[PG].acquire() as conn:
        rows = await repository.list_webhooks(conn, who.workspace_id)
    return list_response([service.webhook_json(r) for r in rows])


@routes.post("/api/v1/webhooks")
async def create_webhook(request: web.Request) -> web.Response:
    who = await principal(request, Action.WEBHOOK_MANAGE)
    body = parse_model(WebhookCreate, await read_json(request))
    events = validate_events(body.events)
    url = await validate_target(body.url, allow_private=request.app[SETTINGS].webhook_allow_private)
    async with request.app[PG].acquire() as conn:
        row, secret = await service.create_webhook(
            conn, audit_context(request, who), _box(request), who.workspace_id, url, events
        )
    # The secret is shown once, here; later reads never include it.
    return json_response({**service.webhook_json(row), "secret": secret}, 201)


@routes.get("/api/v1/webhooks/{webhook_id}")
async def get_webhook(request: web.Request) -> web.Response:
    who = await principal(request, Action.WEBHOOK_READ)
    async with request.app[PG].acquire() as conn:
        row = await repository.get_webhook(conn, who.workspace_id, _hook_id(request))
    return json_response(service.webhook_json(row))


@routes.patch("/api/v1/webhooks/{webhook_id}")
async def update_webhook(request: web.Request) -> web.Response:
    who = await principal(request, Action.WEBHOOK_MANAGE)
    hook_id = _hook_id(request)
    body = parse_model(WebhookUpdate, await read_json(request))
    url = None
    if body.url is not None:
        url = await validate_target(body.url, allow_private=request.app[SETTINGS].webhook_allow_private)
    events = validate_events(body.events) if body.events is not None else None
    async with request.app[PG].acquire() as conn:
        row = await service.update_webhook(
            conn,
            audit_context(request, who),
            who.workspace_id,
            hook_id,
            url=url,
            events=events,
            is_active=body.is_active,
        )
    return json_response(service.webhook_json(row))


@routes.delete("/api/v1/webhooks/{webhook_id}")
async def delete_webhook(request: web.Request) -> web.Response:
    who = await principal(request, Action.WEBHOOK_MANAGE)
    async with request.app[PG].acquire() as conn:
        await service.delete_webhook(conn, audit_context(request, who), who.workspace_id, _hook_id(request))
    return web.Response(status=204)


@routes.post("/api/v1/webhooks/{webhook_id}/rotate-secret")
async def rotate_secret(request: web.Request) -> web.Response:
    who = await principal(request, Action.WEBHOOK_MANAGE)
    async with request.app[PG].acquire() as conn:
        secret = await service.rotate_secret(
            conn, audit_context(request, who), _box(request), who.workspace_id, _hook_id(request)
        )
    grace = int(service.ROTATION_GRACE.total_seconds())
    return json_response({"secret": secret, "previous_secret_valid_seconds": grace})


async def _deliver_now(request: web.Request, delivery_id: str) -> dict[str, Any]:
    """Attempt one delivery from the api (test and redeliver answer with the outcome)."""
    dispatcher = WebhookDispatcher(
        request.app[PG], _box(request), DeliveryPolicy.from_settings(request.app[SETTINGS])
    )
    try:
        await dispatcher.deliver_due(limit=1, ids=[delivery_id])
    finally:
        await dispatcher.close()
    async with request.app[PG].acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM webhook_deliveries WHERE id = $1", delivery_id)
    assert row is not None
    return service.delivery_json(row)


@routes.post("/api/v1/webhooks/{webhook_id}/test")
async def test_webhook(request: web.Request) -> web.Response:
    who = await principal(request, Action.WEBHOOK_MANAGE)
    hook_id = _hook_id(request)
    event_id = "evt_test_" + uuid.uuid4().hex
    async with request.app[PG].acquire() as conn:
        delivery_id = await service.queue_test(conn, who.workspace_id, hook_id, event_id)
    return json_response(await _deliver_now(request, delivery_id))


@routes.get("/api/v1/webhooks/{webhook_id}/deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    who = await principal(request, Action.WEBHOOK_READ)
    hook_id = _hook_id(request)
    raw_limit = request.query.get("limit", "50")
    if not (raw_limit.isascii() and raw_limit.isdigit()) or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise ValidationFailed(f"limit must be an integer from 1 to {MAX_PAGE}", field="limit")
    async with request.app[PG].acquire() as conn:
        rows, cursor = await repository.list_deliveries(
            conn, who.workspace_id, hook_id, limit=int(raw_limit), cursor=request.query.get("cursor")
        )
    return list_response([service.delivery_json(r) for r in rows], cursor)


@routes.post("/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver")
async def redeliver(request: web.Request) -> web.Response:
    who = await principal(request, Action.WEBHOOK_MANAGE)
    hook_id = _hook_id(request)
    delivery_id = parse_uuid(request.match_info["delivery_id"], "delivery_id")
    async with request.app[PG].acquire() as conn:
        await repository.redeliver(conn, who.workspace_id, hook_id, delivery_id)
    return json_response(await _deliver_now(request, delivery_id), 202)
