"""Workspace tags: CRUD, and attaching/detaching tags to links (filter links with ?tag=)."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from api.audit import audit_context
from api.auth import principal
from api.errors import json_response
from api.http import list_response, parse_model, parse_uuid, read_json
from api.state import PG, TOPICS
from engine.auth.permissions import Action
from engine.links import tag_service
from engine.links.tags import DEFAULT_COLOR, list_tags, tag_json

routes = web.RouteTableDef()


class TagCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    color: str = DEFAULT_COLOR


class TagPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    color: str | None = None


@routes.get("/api/v1/tags")
async def get_tags(request: web.Request) -> web.Response:
    who = await principal(request, Action.LINK_READ)
    async with request.app[PG].acquire() as conn:
        return list_response(await list_tags(conn, who.workspace_id))


@routes.post("/api/v1/tags")
async def post_tag(request: web.Request) -> web.Response:
    who = await principal(request, Action.TAG_MANAGE)
    body = parse_model(TagCreate, await read_json(request))
    async with request.app[PG].acquire() as conn:
        row = await tag_service.create_tag(
            conn, audit_context(request, who), who.workspace_id, body.name, body.color
        )
    return json_response(tag_json(row), 201)


@routes.patch("/api/v1/tags/{tag_id}")
async def patch_tag(request: web.Request) -> web.Response:
    who = await principal(request, Action.TAG_MANAGE)
    tag_id = parse_uuid(request.match_info["tag_id"], "tag_id")
    body = parse_model(TagPatch, await read_json(request))
    async with request.app[PG].acquire() as conn:
        row = await tag_service.update_tag(
            conn, audit_context(request, who), who.workspace_id, tag_id, name=body.name, color=body.color
        )
    return json_response(tag_json(row))


@routes.delete("/api/v1/tags/{tag_id}")
async def remove_tag(request: web.Request) -> web.Response:
    who = await principal(request, Action.TAG_MANAGE)
    tag_id = parse_uuid(request.match_info["tag_id"], "tag_id")
    async with request.app[PG].acquire() as conn:
        await tag_service.delete_tag(conn, audit_context(request, who), who.workspace_id, tag_id)
    return web.Response(status=204)


async def _link_tag(request: web.Request, attach: bool) -> web.Response:
    who = await principal(request, Action.LINK_UPDATE)
    link_id = parse_uuid(request.match_info["link_id"], "link_id")
    tag_id = parse_uuid(request.match_info["tag_id"], "tag_id")
    async with request.app[PG].acquire() as conn:
        await tag_service.tag_link(
            conn,
            audit_context(request, who),
            request.app[TOPICS].links_changes,
            who.workspace_id,
            link_id,
            tag_id,
            attach=attach,
        )
    return web.Response(status=204)


@routes.put("/api/v1/links/{link_id}/tags/{tag_id}")
async def put_link_tag(request: web.Request) -> web.Response:
    return await _link_tag(request, attach=True)


@routes.delete("/api/v1/links/{link_id}/tags/{tag_id}")
async def delete_link_tag(request: web.Request) -> web.Response:
    return await _link_tag(request, attach=False)
