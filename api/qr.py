"""QR codes for links: CRUD under /api/v1/links/{link_id}/qr-codes, images by stable URLs.

Images: `GET /api/v1/qr/{id}.png|.svg` (authenticated) and `GET /qr/{id}.png|.svg` (public; the
random UUID is the capability). Dynamic codes encode the short URL with a `?qr=` scan marker;
the redirect emits such clicks with kind "qr", and the worker's click agent counts them into
scan_count.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Literal

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from api.audit import audit_context
from api.auth import principal
from api.errors import json_response
from api.http import list_response, parse_model, path_uuid, read_json
from api.state import PG, SETTINGS
from engine.auth.permissions import Action
from engine.links.cache import TTLCache
from engine.qr import repository, service
from engine.qr.render import render_png, render_svg

routes = web.RouteTableDef()
IMAGES = web.AppKey("qr_images", TTLCache[str, bytes])
_UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
PUBLIC_CACHE = "public, max-age=3600, stale-while-revalidate=86400"
PRIVATE_CACHE = "private, max-age=60"
CONTENT_TYPES = {"png": "image/png", "svg": "image/svg+xml"}


class QrFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    qr_type: Literal["dynamic", "static"] = "dynamic"
    error_correction: str = "M"
    foreground_color: str = "#000000"
    background_color: str = "#FFFFFF"
    scale: int = Field(10, ge=1, le=40)
    border: int = Field(4, ge=0, le=20)
    logo: str | None = None


def setup(app: web.Application) -> None:
    app[IMAGES] = TTLCache(512, 600.0)
    app.add_routes(routes)


@routes.post("/api/v1/links/{link_id}/qr-codes")
async def create_qr(request: web.Request) -> web.Response:
    who = await principal(request, Action.QR_MANAGE)
    link_id = path_uuid(request, "link_id")
    body = parse_model(QrFields, await read_json(request))
    base = request.app[SETTINGS].public_base_url
    async with request.app[PG].acquire() as conn:
        row = await service.create_qr(
            conn,
            audit_context(request, who),
            workspace_id=who.workspace_id,
            link_id=link_id,
            base_url=base,
            values=body.model_dump(),
        )
    return json_response(service.qr_to_json(row, base), 201)


@routes.get("/api/v1/links/{link_id}/qr-codes")
async def list_qr(request: web.Request) -> web.Response:
    who = await principal(request, Action.LINK_READ)
    base = request.app[SETTINGS].public_base_url
    async with request.app[PG].acquire() as conn:
        rows = await service.list_qr(conn, who.workspace_id, path_uuid(request, "link_id"))
    return list_response([service.qr_to_json(r, base) for r in rows])


@routes.get("/api/v1/links/{link_id}/qr-codes/{qr_id}")
async def get_qr(request: web.Request) -> web.Response:
    who = await principal(request, Action.LINK_READ)
    async with request.app[PG].acquire() as conn:
        row = await repository.get_qr(
            conn,
            path_uuid(request, "qr_id"),
            workspace_id=who.workspace_id,
            link_id=path_uuid(request, "link_id"),
        )
    return json_response(service.qr_to_json(row, request.app[SETTINGS].public_base_url))


@routes.patch("/api/v1/links/{link_id}/qr-codes/{qr_id}")
async def update_qr(request: web.Request) -> web.Response:
    who = await principal(request, Action.QR_MANAGE)
    link_id, qr_id = path_uuid(request, "link_id"), path_uuid(request, "qr_id")
    body = parse_model(QrFields, await read_json(request))
    async with request.app[PG].acquire() as conn:
        row = await service.update_qr(
            conn,
            audit_context(request, who),
            workspace_id=who.workspace_id,
            link_id=link_id,
            qr_id=qr_id,
            values=body.model_dump(exclude_unset=True),
        )
    return json_response(service.qr_to_json(row, request.app[SETTINGS].public_base_url))


@routes.delete("/api/v1/links/{link_id}/qr-codes/{qr_id}")
async def delete_qr(request: web.Request) -> web.Response:
    who = await principal(request, Action.QR_MANAGE)
    async with request.app[PG].acquire() as conn:
        await service.delete_qr(
            conn,
            audit_context(request, who),
            workspace_id=who.workspace_id,
            link_id=path_uuid(request, "link_id"),
            qr_id=path_uuid(request, "qr_id"),
        )
    return web.Response(status=204)


async def _image(request: web.Request, row: asyncpg.Record, fmt: str, cache_control: str) -> web.Response:
    base = request.app[SETTINGS].public_base_url
    content = service.qr_content(row, base)
    etag = hashlib.sha256(
        f"{row['id']}|{row['updated_at'].isoformat()}|{content}|{fmt}".encode()
    ).hexdigest()[:32]
    headers = {"Cache-Control": cache_control, "ETag": f'"{etag}"', "X-Content-Type-Options": "nosniff"}
    if request.headers.get("If-None-Match", "").strip() == f'"{etag}"':
        return web.Response(status=304, headers=headers)
    found, body = request.app[IMAGES].lookup(etag)
    if not found or body is None:
        render = render_png if fmt == "png" else render_svg
        body = await asyncio.get_running_loop().run_in_executor(None, render, content, service.style_of(row))
        request.app[IMAGES].set(etag, body)
    return web.Response(body=body, content_type=CONTENT_TYPES[fmt], headers=headers)


@routes.get(f"/api/v1/qr/{{qr_id:{_UUID}}}.{{fmt:png|svg}}")
async def qr_image(request: web.Request) -> web.Response:
    who = await principal(request, Action.LINK_READ)
    async with request.app[PG].acquire() as conn:
        row = await repository.get_qr(conn, path_uuid(request, "qr_id"), workspace_id=who.workspace_id)
    return await _image(request, row, request.match_info["fmt"], PRIVATE_CACHE)


@routes.get(f"/qr/{{qr_id:{_UUID}}}.{{fmt:png|svg}}")
async def public_qr_image(request: web.Request) -> web.Response:
    async with request.app[PG].acquire() as conn:
        row = await repository.get_qr(conn, path_uuid(request, "qr_id"), workspace_id=None)
    return await _image(request, row, request.match_info["fmt"], PUBLIC_CACHE)
