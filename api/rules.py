"""Redirect rules of a link: /api/v1/links/{link_id}/rules (conditions validated per rule type)."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from api.auth import principal
from api.errors import json_response
from api.http import list_response, parse_model, parse_uuid, read_json
from api.links import link_actor
from api.state import PG
from engine.auth.permissions import Action
from engine.errors import ValidationFailed
from engine.inputs import BoundedJsonObject
from engine.links import rule_service as rules

routes = web.RouteTableDef()


class RuleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule_type: str
    conditions: BoundedJsonObject = {}
    destination_url: str | None = None
    priority: int = 0
    weight: int | None = None
    is_active: bool = True


class RulePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule_type: str | None = None
    conditions: BoundedJsonObject | None = None
    destination_url: str | None = None
    priority: int | None = None
    weight: int | None = None
    is_active: bool | None = None


def _link_id(request: web.Request) -> str:
    return parse_uuid(request.match_info["link_id"], "link_id")


def _ids(request: web.Request) -> tuple[str, str]:
    """(link_id, rule_id) of a /rules/{rule_id} route, link_id checked first."""
    return _link_id(request), parse_uuid(request.match_info["rule_id"], "rule_id")


@routes.get("/api/v1/links/{link_id}/rules")
async def get_rules(request: web.Request) -> web.Response:
    who = await principal(request, Action.LINK_READ)
    link_id = _link_id(request)
    async with request.app[PG].acquire() as conn:
        rows = await rules.list_rules(conn, who.workspace_id, link_id)
    return list_response([r.to_json() for r in rows])


@routes.post("/api/v1/links/{link_id}/rules")
async def post_rule(request: web.Request) -> web.Response:
    who = await principal(request, Action.LINK_UPDATE)
    link_id = _link_id(request)
    body = parse_model(RuleCreate, await read_json(request))
    async with request.app[PG].acquire() as conn:
        row = await rules.create_rule(conn, link_actor(request, who), link_id, body.model_dump())
    return json_response(row.to_json(), 201)


@routes.get("/api/v1/links/{link_id}/rules/{rule_id}")
async def get_rule(request: web.Request) -> web.Response:
    who = await principal(request, Action.LINK_READ)
    link_id, rule_id = _ids(request)
    async with request.app[PG].acquire() as conn:
        row = await rules.get_rule(conn, who.workspace_id, link_id, rule_id)
    return json_response(row.to_json())


@routes.patch("/api/v1/links/{link_id}/rules/{rule_id}")
async def patch_rule(request: web.Request) -> web.Response:
    who = await principal(request, Action.LINK_UPDATE)
    link_id, rule_id = _ids(request)
    changes = parse_model(RulePatch, await read_json(request)).model_dump(exclude_unset=True)
    for key in ("rule_type", "conditions", "priority", "is_active"):
        if key in changes and changes[key] is None:
            raise ValidationFailed(f"{key} cannot be null", field=key)
    if not changes:
        raise ValidationFailed("nothing to change", field="body")
    async with request.app[PG].acquire() as conn:
        row = await rules.update_rule(conn, link_actor(request, who), link_id, rule_id, changes)
    return json_response(row.to_json())


@routes.delete("/api/v1/links/{link_id}/rules/{rule_id}")
async def delete_rule(request: web.Request) -> web.Response:
    who = await principal(request, Action.LINK_UPDATE)
    link_id, rule_id = _ids(request)
    async with request.app[PG].acquire() as conn:
        await rules.delete_rule(conn, link_actor(request, who), link_id, rule_id)
    return web.Response(status=204)
