"""Bio pages: management API (pages, buttons, themes) and the public pages at `/@{slug}`.

A button links to `/@{slug}/l/{bio_link_id}`, which redirects to its URL and emits a RawClick of
kind "bio" through the click pipeline; the worker's click agent counts it into click_count.
On a verified custom domain only that domain's workspace's pages are served.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel, ConfigDict, Field

from api.audit import audit_context
from api.auth import principal
from api.errors import json_response
from api.http import list_response, parse_model, path_uuid, read_json
from api.state import EMITTER, PG, SETTINGS, VISITORS
from engine.auth.permissions import Action
from engine.bio import repository, service
from engine.bio.css import sanitize_css
from engine.bio.render import PageButton, render_bio_page
from engine.bio.validation import aware, validate_colors, validate_font, validate_slug, validate_window
from engine.clicks.models import RawClick
from engine.domains.hostnames import validate_optional_url
from engine.domains.repository import workspace_for_host
from engine.errors import ValidationFailed
from engine.inputs import BoundedJsonObject, UtcDatetime
from engine.links.urls import location_header, validate_destination
from engine.observability import REQUEST_ID
from engine.records import record_to_json, uuid_or_none

routes = web.RouteTableDef()
public_routes = web.RouteTableDef()
PAGE_CACHE = "public, max-age=30"
# The page needs inline styles and images only; nothing may run, frame it or post anywhere.
PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class PageUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: str | None = None
    title: str | None = Field(None, min_length=1, max_length=255)
    bio: str | None = Field(None, max_length=2000)
    avatar_url: str | None = Field(None, max_length=500)
    theme_id: UUID | None = None
    custom_css: str | None = None
    meta_title: str | None = Field(None, max_length=100)
    meta_description: str | None = Field(None, max_length=300)
    og_image_url: str | None = Field(None, max_length=500)
    is_published: bool | None = None


class PageCreate(PageUpdate):
    slug: str
    title: str = Field(min_length=1, max_length=255)


class LinkUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(None, min_length=1, max_length=255)
    url: str | None = None
    icon: str | None = Field(None, max_length=50)
    position: int | None = Field(None, ge=0, le=100_000)
    is_visible: bool | None = None
    visible_from: UtcDatetime | None = None
    visible_until: UtcDatetime | None = None


class LinkCreate(LinkUpdate):
    title: str = Field(min_length=1, max_length=255)
    url: str


class Reorder(BaseModel):
    model_config = ConfigDict(extra="forbid")

    link_ids: list[UUID] = Field(max_length=1000)


class ThemeUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=100)
    colors: BoundedJsonObject | None = None
    font: BoundedJsonObject | None = None


class ThemeCreate(ThemeUpdate):
    name: str = Field(min_length=1, max_length=100)


def setup(app: web.Application) -> None:
    app.add_routes(routes)
    app.add_routes(public_routes)


_NOT_NULL = ("slug", "title", "is_published", "url", "is_visible", "position", "name", "colors", "font")


def _clean(changes: dict[str, Any], settings_blocklist: list[str]) -> dict[str, Any]:
    """Validate and normalise the set fields of any bio request model into column values."""
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if value is None and key in _NOT_NULL:
            raise ValidationFailed(f"{key} cannot be null", field=key)
        if key == "slug":
            value = validate_slug(value)
        elif key in ("avatar_url", "og_image_url"):
            value = validate_optional_url(value, field=key)
        elif key == "url":
            value = validate_destination(value, field="url", blocklist=settings_blocklist)
        elif key == "custom_css":
            value = sanitize_css(value)
        elif key == "theme_id" and value is not None:
            value = str(value)
        elif key in ("visible_from", "visible_until"):
            value = aware(value)
        elif key == "colors":
            value = validate_colors(value)
        elif key == "font":
            value = validate_font(value)
        out[key] = value
    if "visible_from" in out or "visible_until" in out:
        validate_window(out.get("visible_from"), out.get("visible_until"))
    return out


async def _fields(request: web.Request, model: type[BaseModel]) -> dict[str, Any]:
    """The request's JSON body read as `model`: its set fields as column values (`_clean`; a URL
    field is checked against the configured blocklist, themes have none)."""
    body = parse_model(model, await read_json(request))
    return _clean(body.model_dump(exclude_unset=True), request.app[SETTINGS].blocked_hosts)


# Pages -----------------------------------------------------------------------------------------


@routes.post("/api/v1/bio-pages")
async def create_page(request: web.Request) -> web.Response:
    who = await principal(request, Action.BIO_MANAGE)
    settings = request.app[SETTINGS]
    fields = await _fields(request, PageCreate)
    async with request.app[PG].acquire() as conn:
        row = await service.create_page(conn, audit_context(request, who), who.workspace_id, fields)
    return json_response(service.page_json(row, settings.public_base_url), 201)


@routes.get("/api/v1/bio-pages")
async def list_pages(request: web.Request) -> web.Response:
    who = await principal(request, Action.LINK_READ)
    async with request.app[PG].acquire() as conn:
        rows = await repository.list_pages(conn, who.workspace_id)
    base = request.app[SETTINGS].public_base_url
    return list_response([service.page_json(r, base) for r in rows])


@routes.get("/api/v1/bio-pages/{page_id}")
async def get_page(request: web.Request) -> web.Response:
    who = await principal(request, Action.LINK_READ)
    async with request.app[PG].acquire() as conn:
        row = await repository.get_page(conn, who.workspace_id, path_uuid(request, "page_id"))
    return json_response(service.page_json(row, request.app[SETTINGS].public_base_url))


@routes.patch("/api/v1/bio-pages/{page_id}")
async def update_page(request: web.Request) -> web.Response:
    who = await principal(request, Action.BIO_MANAGE)
    settings = request.app[SETTINGS]
    page_id = path_uuid(request, "page_id")
    changes = await _fields(request, PageUpdate)
    async with request.app[PG].acquire() as conn:
        row = await service.update_page(conn, audit_context(request, who), who.workspace_id, page_id, changes)
    return json_response(service.page_json(row, settings.public_base_url))


@routes.delete("/api/v1/bio-pages/{page_id}")
async def delete_page(request: web.Request) -> web.Response:
    who = await principal(request, Action.BIO_MANAGE)
    async with request.app[PG].acquire() as conn:
        await service.delete_page(
            conn, audit_context(request, who), who.workspace_id, path_uuid(request, "page_id")
        )
    return web.Response(status=204)


# Buttons ---------------------------------------------------------------------------------------


@routes.post("/api/v1/bio-pages/{page_id}/links")
async def create_link(request: web.Request) -> web.Response:
    who = await principal(request, Action.BIO_MANAGE)
    page_id = path_uuid(request, "page_id")
    fields = await _fields(request, LinkCreate)
    async with request.app[PG].acquire() as conn:
        row = await service.create_link(conn, audit_context(request, who), who.workspace_id, page_id, fields)
    return json_response(record_to_json(row), 201)


@routes.get("/api/v1/bio-pages/{page_id}/links")
async def list_links(request: web.Request) -> web.Response:
    who = await principal(request, Action.LINK_READ)
    async with request.app[PG].acquire() as conn:
        rows = await service.list_links(conn, who.workspace_id, path_uuid(request, "page_id"))
    return list_response([record_to_json(r) for r in rows])


@routes.post("/api/v1/bio-pages/{page_id}/links/reorder")
async def reorder_links(request: web.Request) -> web.Response:
    who = await principal(request, Action.BIO_MANAGE)
    page_id = path_uuid(request, "page_id")
    body = parse_model(Reorder, await read_json(request))
    order = [str(i) for i in body.link_ids]
    async with request.app[PG].acquire() as conn:
        rows = await service.reorder_links(
            conn, audit_context(request, who), who.workspace_id, page_id, order
        )
    return list_response([record_to_json(r) for r in rows])


@routes.patch("/api/v1/bio-pages/{page_id}/links/{link_id}")
async def update_link(request: web.Request) -> web.Response:
    who = await principal(request, Action.BIO_MANAGE)
    page_id, link_id = path_uuid(request, "page_id"), path_uuid(request, "link_id")
    changes = await _fields(request, LinkUpdate)
    async with request.app[PG].acquire() as conn:
        row = await service.update_link(
            conn, audit_context(request, who), who.workspace_id, page_id, link_id, changes
        )
    return json_response(record_to_json(row))


@routes.delete("/api/v1/bio-pages/{page_id}/links/{link_id}")
async def delete_link(request: web.Request) -> web.Response:
    who = await principal(request, Action.BIO_MANAGE)
    async with request.app[PG].acquire() as conn:
        await service.delete_link(
            conn,
            audit_context(request, who),
            who.workspace_id,
            path_uuid(request, "page_id"),
            path_uuid(request, "link_id"),
        )
    return web.Response(status=204)


# Themes ----------------------------------------------------------------------------------------


@routes.get("/api/v1/bio-themes")
async def list_themes(request: web.Request) -> web.Response:
    who = await principal(request, Action.LINK_READ)
    async with request.app[PG].acquire() as conn:
        rows = await repository.list_themes(conn, who.workspace_id)
    return list_response([record_to_json(r) for r in rows])


@routes.post("/api/v1/bio-themes")
async def create_theme(request: web.Request) -> web.Response:
    who = await principal(request, Action.BIO_MANAGE)
    fields = await _fields(request, ThemeCreate)
    async with request.app[PG].acquire() as conn:
        row = await service.create_theme(conn, audit_context(request, who), who.workspace_id, fields)
    return json_response(record_to_json(row), 201)


@routes.get("/api/v1/bio-themes/{theme_id}")
async def get_theme(request: web.Request) -> web.Response:
    who = await principal(request, Action.LINK_READ)
    async with request.app[PG].acquire() as conn:
        row = await repository.get_theme(conn, who.workspace_id, path_uuid(request, "theme_id"))
    return json_response(record_to_json(row))


@routes.patch("/api/v1/bio-themes/{theme_id}")
async def update_theme(request: web.Request) -> web.Response:
    who = await principal(request, Action.BIO_MANAGE)
    theme_id = path_uuid(request, "theme_id")
    changes = await _fields(request, ThemeUpdate)
    async with request.app[PG].acquire() as conn:
        row = await service.update_theme(
            conn, audit_context(request, who), who.workspace_id, theme_id, changes
        )
    return json_response(record_to_json(row))


@routes.delete("/api/v1/bio-themes/{theme_id}")
async def delete_theme(request: web.Request) -> web.Response:
    who = await principal(request, Action.BIO_MANAGE)
    async with request.app[PG].acquire() as conn:
        await service.delete_theme(
            conn, audit_context(request, who), who.workspace_id, path_uuid(request, "theme_id")
        )
    return web.Response(status=204)


# Public pages ----------------------------------------------------------------------------------


BIO_HOST_PREFIX = "bio."
_NOT_BIO_PATHS = ("/api/", "/healthz", "/metrics", "/webhooks/", "/qr/", "/openapi.json", "/docs", "/@")


def _host(request: web.Request) -> str:
    host = (request.host or "").lower()
    return host.rsplit(":", 1)[0] if not host.startswith("[") else host


def _not_found() -> web.Response:
    body = (
        "<!doctype html><html lang=en><meta charset=utf-8><title>Page not found</title>"
        "<body><h1>Page not found</h1><p>This page does not exist or is not published.</p></body></html>"
    )
    return web.Response(
        status=404, text=body, content_type="text/html", headers={"Cache-Control": "no-store"}
    )


def is_bio_host(host: str | None) -> bool:
    """Cheap first test of the `bio.{domain}` host form (every redirect asks it)."""
    return host is not None and host[:4].lower() == BIO_HOST_PREFIX


def bio_host_domain(host: str) -> str | None:
    """`example.com` for a request to `bio.example.com` (any port): the host form of bio pages."""
    host = host.lower()
    host = host.rsplit(":", 1)[0] if not host.startswith("[") else host
    domain = host.removeprefix(BIO_HOST_PREFIX)
    return domain if domain != host and ("." in domain or domain == "localhost") else None


async def _host_workspace(
    request: web.Request, conn: asyncpg.Connection, host: str | None = None
) -> tuple[str | None, str]:
    """(workspace restriction, public base URL) for the Host the page was requested on (or for
    `host`, the domain a `bio.` host names)."""
    host = _host(request) if host is None else host
    workspace_id = await workspace_for_host(conn, host) if host else None
    if workspace_id is None:
        return None, request.app[SETTINGS].public_base_url.rstrip("/")
    return workspace_id, f"https://{host}"


@public_routes.get("/@{slug}")
async def public_page(request: web.Request) -> web.Response:
    return await _serve_page(request, request.match_info["slug"].lower(), bio_domain=None)


@public_routes.get("/@{slug}/l/{link_id}")
async def public_click(request: web.Request) -> web.Response:
    return await _serve_click(
        request, request.match_info["slug"].lower(), request.match_info["link_id"], bio_domain=None
    )


@web.middleware
async def bio_host_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """`bio.{domain}/{slug}` (and its buttons at `/{slug}/l/{id}`) serve the same pages as
    `{domain}/@{slug}`; the api, health and metrics paths stay what they are on any host."""
    host = request.host
    if not is_bio_host(host):
        return await handler(request)
    domain = bio_host_domain(host)
    if domain is None or request.method not in ("GET", "HEAD") or request.path.startswith(_NOT_BIO_PATHS):
        return await handler(request)
    parts = [part for part in request.path.split("/") if part]
    if len(parts) == 1:
        return await _serve_page(request, parts[0].lower(), bio_domain=domain)
    if len(parts) == 3 and parts[1] == "l":
        return await _serve_click(request, parts[0].lower(), parts[2], bio_domain=domain)
    return await handler(request) if not parts else _not_found()


async def _serve_page(request: web.Request, slug: str, *, bio_domain: str | None) -> web.Response:
    now = datetime.now(UTC)
    async with request.app[PG].acquire() as conn:
        workspace_id, base = await _host_workspace(request, conn, bio_domain)
        page = await repository.published_page(conn, slug, workspace_id)
        links = await repository.visible_links(conn, str(page["id"]), now) if page else []
    if page is None:
        return _not_found()
    if bio_domain is None:
        page_path, canonical = f"/@{slug}", f"{base}/@{slug}"
    else:
        page_path, canonical = f"/{slug}", f"{request.scheme}://{_host(request)}/{slug}"
    buttons = [PageButton(title=r["title"], href=f"{page_path}/l/{r['id']}", icon=r["icon"]) for r in links]
    html = render_bio_page(
        page, buttons, canonical_url=canonical, colors=page["theme_colors"], font=page["theme_font"]
    )
    headers = {
        "Cache-Control": PAGE_CACHE,
        "Content-Security-Policy": PAGE_CSP,
        "X-Content-Type-Options": "nosniff",
    }
    return web.Response(text=html, content_type="text/html", charset="utf-8", headers=headers)


async def _serve_click(
    request: web.Request, slug: str, raw_link_id: str, *, bio_domain: str | None
) -> web.Response:
    if (link_id := uuid_or_none(raw_link_id)) is None:
        return _not_found()
    now = time.time()
    async with request.app[PG].acquire() as conn:
        workspace_id, _ = await _host_workspace(request, conn, bio_domain)
        row = await repository.public_link(conn, slug, link_id, datetime.fromtimestamp(now, UTC))
    if row is None or (workspace_id is not None and str(row["workspace_id"]) != workspace_id):
        return _not_found()
    ip, ua = request.remote or "", request.headers.get("User-Agent", "")
    # Bio clicks have no link row: the button's id stands in as link_id (the click pipeline
    # keys and partitions by it), and bio_link_id names it explicitly.
    request.app[EMITTER].emit(
        RawClick(
            event_id=uuid.uuid4().hex, ts=now, link_id=link_id, workspace_id=str(row["workspace_id"]),
            domain=request.host or "", short_code=f"@{row['slug']}", destination=row["url"], kind="bio",
            method=request.method, ip=ip, user_agent=ua, referer=request.headers.get("Referer", ""),
            accept_language=request.headers.get("Accept-Language", ""),
            visitor_id=request.app[VISITORS].at(ip, ua, now), bio_link_id=link_id,
            request_id=REQUEST_ID.get(),
        )
    )  # fmt: skip
    return web.Response(
        status=302, headers={"Location": location_header(row["url"]), "Cache-Control": "private, no-store"}
    )
