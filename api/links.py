"""Management API for links: create (one or bulk), list/search, read, update, delete/restore,
CSV import and export (analytics: api/analytics.py). Business rules live in engine.links."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import BadHttpMessage
from multidict import MultiMapping
from pydantic import BaseModel, ConfigDict, Field

from api.audit import audit_context
from api.auth import principal
from api.errors import json_response
from api.http import list_response, parse_model, parse_uuid, path_uuid, read_json
from api.state import PG, SETTINGS, TOPICS
from engine.accounts.repository import Principal
from engine.auth.permissions import Action
from engine.errors import LinkRiftError, QuotaExceeded, ValidationFailed
from engine.inputs import UtcDatetime, parse_datetime
from engine.links import repository, service
from engine.links.importers import FORMATS, ImportReport, ImportTarget, escape_cell, import_rows, parse_csv
from engine.links.metadata import MetadataJobs
from engine.links.models import StoredLink
from engine.links.search import LinkFilters, iter_links, list_links
from engine.links.tags import tags_for_links

routes = web.RouteTableDef()
M = TypeVar("M", bound=BaseModel)
METADATA = web.AppKey("metadata_jobs", MetadataJobs)
MAX_IMPORT_BYTES = 5 * 1024 * 1024


class ImportTooLarge(ValidationFailed):
    status = 413
    code = "payload_too_large"


class _LinkFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    short_code: str | None = None
    domain_id: UUID | None = None
    title: str | None = Field(None, max_length=500)
    description: str | None = Field(None, max_length=2000)
    max_clicks: int | None = Field(None, ge=1, le=2_000_000_000)
    expires_at: UtcDatetime | None = None
    password: str | None = Field(None, max_length=1024)
    redirect_type: int = 302
    forward_query: bool = False
    is_active: bool = True
    utm_source: str | None = Field(None, max_length=255)
    utm_medium: str | None = Field(None, max_length=255)
    utm_campaign: str | None = Field(None, max_length=255)
    utm_term: str | None = Field(None, max_length=255)
    utm_content: str | None = Field(None, max_length=255)
    tags: list[str] = Field(default_factory=list, max_length=20)


class LinkCreate(_LinkFields):
    url: str


class LinkPatch(_LinkFields):
    """Every field optional; only the ones sent change (`null` clears, `password: null` removes)."""

    url: str | None = None
    redirect_type: int | None = None  # type: ignore[assignment]
    forward_query: bool | None = None  # type: ignore[assignment]
    is_active: bool | None = None  # type: ignore[assignment]
    tags: list[str] | None = Field(None, max_length=20)  # type: ignore[assignment]


class BulkCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    links: list[dict[str, Any]] = Field(min_length=1, max_length=service.MAX_BULK)


async def metadata_ctx(app: web.Application) -> AsyncIterator[None]:
    """Background link-preview fetches; cancelled before the pool closes."""
    settings = app[SETTINGS]
    jobs = MetadataJobs(app[PG].acquire, app[TOPICS].links_changes, settings.metadata_fetch)
    app[METADATA] = jobs
    yield
    await jobs.close()


def link_actor(request: web.Request, who: Principal) -> service.Actor:
    """The caller as the engine's link and rule use cases take it."""
    return service.Actor(
        workspace_id=who.workspace_id,
        user_id=who.user_id,
        audit=audit_context(request, who),
        topic=request.app[TOPICS].links_changes,
        blocked_hosts=request.app[SETTINGS].blocked_hosts,
    )


def _new_link(body: LinkCreate, blocked_hosts: list[str], prefix: str = "") -> service.NewLink:
    draft = service.NewLink(
        url=body.url,
        short_code=body.short_code,
        domain_id=str(body.domain_id) if body.domain_id else None,
        title=body.title,
        description=body.description,
        max_clicks=body.max_clicks,
        expires_at=body.expires_at,
        password=body.password,
        redirect_type=body.redirect_type,
        forward_query=body.forward_query,
        is_active=body.is_active,
        utm={k: v for k in service.UTM_FIELDS if (v := getattr(body, k))},
        tags=body.tags,
    )
    try:
        return service.validate_new_link(draft, blocked_hosts=blocked_hosts)
    except ValidationFailed as exc:
        raise ValidationFailed(exc.message, field=f"{prefix}{exc.field}" if exc.field else None) from None


async def _one_json(request: web.Request, conn: Any, row: StoredLink) -> dict[str, Any]:
    return (await service.links_json(conn, [row], request.app[SETTINGS].public_base_url))[0]


def _link_id(request: web.Request) -> str:
    return path_uuid(request, "link_id")


# --- list, search, export ------------------------------------------------------------------------


def _bool_param(query: MultiMapping[str], name: str) -> bool | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise ValidationFailed(f"{name} must be true or false", field=name)


def _time_param(query: MultiMapping[str], name: str) -> datetime | None:
    raw = query.get(name)
    if not raw:
        return None
    try:
        return parse_datetime(raw)
    except ValueError as exc:
        raise ValidationFailed(f"{name} {exc}", field=name) from None


def _int_param(query: MultiMapping[str], name: str, default: int | None) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValidationFailed(f"{name} must be an integer", field=name) from None


def _filters(query: MultiMapping[str]) -> LinkFilters:
    domain_id = query.get("domain_id") or None
    if domain_id:
        domain_id = parse_uuid(domain_id, "domain_id")
    for name in ("q", "search", "tag"):
        if len(query.get(name, "")) > 200:
            raise ValidationFailed(f"{name} must be at most 200 characters", field=name)
    return LinkFilters(
        tag=query.get("tag") or None,
        domain_id=domain_id,
        active=_bool_param(query, "active"),
        created_from=_time_param(query, "created_from"),
        created_to=_time_param(query, "created_to"),
        search=query.get("search") or None,
        q=query.get("q") or None,
        deleted=bool(_bool_param(query, "deleted")),
    )


@routes.get("/api/v1/links")
async def list_workspace_links(request: web.Request) -> web.Response:
    who = await principal(request, Action.LINK_READ)
    q = request.query
    filters = _filters(q)
    limit = _int_param(q, "limit", 20)
    assert limit is not None
    async with request.app[PG].acquire() as conn:
        page = await list_links(
            conn,
            who.workspace_id,
            filters,
            sort=q.get("sort", "created_at"),
            order=q.get("order", "desc"),
            limit=limit,
            cursor=q.get("cursor") or None,
            page=_int_param(q, "page", None),
        )
        items = await service.links_json(conn, page.rows, request.app[SETTINGS].public_base_url)
    extra = {"total_count": page.total_count} if page.total_count is not None else {}
    return list_response(items, page.next_cursor, **extra)


EXPORT_COLUMNS = (
    "id",
    "short_code",
    "short_url",
    "domain_id",
    "url",
    "title",
    "description",
    "tags",
    "is_active",
    "created_at",
    "expires_at",
    "max_clicks",
    "total_clicks",
    "unique_clicks",
    "imported_clicks",
)


@routes.get("/api/v1/links/export.csv")
async def export_links(request: web.Request) -> web.StreamResponse:
    who = await principal(request, Action.LINK_READ)
    return await stream_export(request, who.workspace_id, _filters(request.query))


async def stream_export(request: web.Request, workspace_id: str, filters: LinkFilters) -> web.StreamResponse:
    """The workspace's links matching `filters` as a streamed CSV (also the web app's export)."""
    base_url = request.app[SETTINGS].public_base_url.rstrip("/")
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": 'attachment; filename="links.csv"',
            "Cache-Control": "no-store",
        }
    )
    async with request.app[PG].acquire() as conn:
        batches = iter_links(conn, workspace_id, filters)
        first = await anext(batches, None)  # errors surface as JSON before the CSV starts
        await response.prepare(request)
        await response.write(_csv_lines([EXPORT_COLUMNS]))
        batch = first
        while batch is not None:
            tags = await tags_for_links(conn, [link.id for link in batch])
            await response.write(_csv_lines(_export_row(r, tags, base_url) for r in batch))
            batch = await anext(batches, None)
    await response.write_eof()
    return response


def _export_row(link: StoredLink, tags: dict[str, list[dict[str, Any]]], base_url: str) -> list[object]:
    values: dict[str, object] = {
        **{c: getattr(link, c) for c in EXPORT_COLUMNS if c not in ("short_url", "tags")},
        "short_url": f"{base_url}/{link.short_code}",
        "tags": "|".join(t["name"] for t in tags.get(link.id, [])),
    }
    out: list[object] = []
    for col in EXPORT_COLUMNS:
        value = values.get(col)
        out.append(value.isoformat() if isinstance(value, datetime) else "" if value is None else value)
    return out


def _csv_lines(rows: Any) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    for row in rows:
        writer.writerow([escape_cell(v) if isinstance(v, str) else v for v in row])
    return buf.getvalue().encode()


# --- import ----------------------------------------------------------------------------------------


async def _read_limited(stream: Any, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = (
            await stream.read_chunk(65536) if isinstance(stream, BodyPartReader) else await stream.read(65536)
        )
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise ImportTooLarge(f"the file is larger than {limit // (1024 * 1024)} MiB", field="file")
        chunks.append(chunk)


async def _import_payload(request: web.Request) -> tuple[bytes, str | None]:
    fmt = request.query.get("format") or None
    if request.content_type.startswith("multipart/"):
        data: bytes | None = None
        reader = await request.multipart()
        try:
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    continue
                if part.name == "file":
                    data = await _read_limited(part, MAX_IMPORT_BYTES)
                elif part.name == "format":
                    fmt = (await part.text()).strip() or fmt
        except (BadHttpMessage, ValueError):
            raise ValidationFailed("malformed multipart body", field="file") from None
        if data is None:
            raise ValidationFailed("multipart body needs a 'file' part", field="file")
        return data, fmt
    return await _read_limited(request.content, MAX_IMPORT_BYTES), fmt


@routes.post("/api/v1/links/import")
async def import_links(request: web.Request) -> web.Response:
    who = await principal(request, Action.LINK_CREATE)
    data, fmt = await _import_payload(request)
    report = await run_import(request, who, data, fmt)
    return json_response(report.as_dict(), 200)


async def run_import(request: web.Request, who: Principal, data: bytes, fmt: str | None) -> ImportReport:
    """Parse a CSV export (one of FORMATS, or detected) and create its valid rows (also the web
    app's import)."""
    if fmt is not None and fmt not in FORMATS:
        raise ValidationFailed(f"format must be one of {', '.join(FORMATS)}", field="format")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationFailed("the file must be UTF-8 text", field="file") from None
    settings = request.app[SETTINGS]
    parsed = await asyncio.to_thread(parse_csv, text, fmt, blocked_hosts=settings.blocked_hosts)
    target = ImportTarget(
        workspace_id=who.workspace_id,
        user_id=who.user_id,
        topic=request.app[TOPICS].links_changes,
        audit=audit_context(request, who),
    )
    async with request.app[PG].acquire() as conn:
        return await import_rows(conn, target, parsed)


# --- create, read, update, delete ----------------------------------------------------------------


@routes.post("/api/v1/links")
async def create_link(request: web.Request) -> web.Response:
    who = await principal(request, Action.LINK_CREATE)
    body = parse_model(LinkCreate, await read_json(request))
    link = _new_link(body, request.app[SETTINGS].blocked_hosts)
    async with request.app[PG].acquire() as conn:
        row = await service.create_link(conn, link_actor(request, who), link)
        out = await _one_json(request, conn, row)
    request.app[METADATA].schedule(out["id"], out["url"])
    return json_response(out, 201)


@routes.post("/api/v1/links/bulk")
async def bulk_create_links(request: web.Request) -> web.Response:
    """Per-item: valid items are created even when others fail; each result says which."""
    who = await principal(request, Action.LINK_CREATE)
    body = parse_model(BulkCreate, await read_json(request))
    blocked = request.app[SETTINGS].blocked_hosts
    items: list[service.NewLink | LinkRiftError] = []
    for i, raw in enumerate(body.links):
        try:
            items.append(_new_link(parse_model(LinkCreate, raw, f"links[{i}]."), blocked, f"links[{i}]."))
        except ValidationFailed as exc:
            items.append(exc)
    async with request.app[PG].acquire() as conn:
        results = await service.create_links_bulk(conn, link_actor(request, who), items)
        created = [r.row for r in results if r.row is not None]
        rendered = iter(await service.links_json(conn, created, request.app[SETTINGS].public_base_url))
    out = []
    for result in results:
        if result.row is not None:
            link = next(rendered)
            request.app[METADATA].schedule(link["id"], link["url"])
            out.append({"index": result.index, "status": 201, "link": link})
        else:
            assert result.error is not None
            err = result.error
            # A quota names the plan's resource (links_per_month), not an input of the item.
            field = (
                err.field
                if not err.field or err.field.startswith("links[") or isinstance(err, QuotaExceeded)
                else f"links[{result.index}].{err.field}"
            )
            out.append(
                {
                    "index": result.index,
                    "status": err.status,
                    "error": {"code": err.code, "message": err.message, "field": field},
                }
            )
    created_count = len(created)
    return json_response({"created": created_count, "failed": len(results) - created_count, "results": out})


@routes.get("/api/v1/links/{link_id}")
async def get_link(request: web.Request) -> web.Response:
    who = await principal(request, Action.LINK_READ)
    link_id = _link_id(request)
    async with request.app[PG].acquire() as conn:
        row = await repository.get_link(conn, who.workspace_id, link_id)
        out = await _one_json(request, conn, row)
    return json_response(out)


@routes.patch("/api/v1/links/{link_id}")
async def update_link(request: web.Request) -> web.Response:
    who = await principal(request, Action.LINK_UPDATE)
    link_id = _link_id(request)
    body = parse_model(LinkPatch, await read_json(request))
    changes = body.model_dump(exclude_unset=True)
    if "domain_id" in changes and changes["domain_id"] is not None:
        changes["domain_id"] = str(changes["domain_id"])
    for key in ("url", "redirect_type", "forward_query", "is_active", "short_code"):
        if key in changes and changes[key] is None:
            raise ValidationFailed(f"{key} cannot be null", field=key)
    if not changes:
        raise ValidationFailed("nothing to change", field="body")
    async with request.app[PG].acquire() as conn:
        row = await service.update_link(conn, link_actor(request, who), link_id, changes)
        out = await _one_json(request, conn, row)
    if "url" in changes:
        request.app[METADATA].schedule(out["id"], out["url"])
    return json_response(out)


@routes.delete("/api/v1/links/{link_id}")
async def delete_link(request: web.Request) -> web.Response:
    who = await principal(request, Action.LINK_DELETE)
    link_id = _link_id(request)
    async with request.app[PG].acquire() as conn:
        await service.delete_link(conn, link_actor(request, who), link_id)
    return web.Response(status=204)


@routes.post("/api/v1/links/{link_id}/restore")
async def restore_link(request: web.Request) -> web.Response:
    who = await principal(request, Action.LINK_DELETE)
    link_id = _link_id(request)
    async with request.app[PG].acquire() as conn:
        row = await service.restore_link(conn, link_actor(request, who), link_id)
        out = await _one_json(request, conn, row)
    return json_response(out)
