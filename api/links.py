"""Management API for links: create, read, analytics."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.auth import principal
from api.errors import json_response
from api.state import ANALYTICS, KEYS, PG, REDIS, SETTINGS, TOPICS
from engine.auth.permissions import Action
from engine.errors import ValidationFailed
from engine.links import repository
from engine.links.shortcodes import validate_custom_code
from engine.links.urls import validate_destination

routes = web.RouteTableDef()
M = TypeVar("M", bound=BaseModel)


class LinkCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    short_code: str | None = None
    title: str | None = Field(None, max_length=500)
    max_clicks: int | None = Field(None, ge=1, le=2_000_000_000)
    expires_at: datetime | None = None
    redirect_type: int = 302
    forward_query: bool = False


async def read_json(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise ValidationFailed("request body must be valid JSON", field="body") from None
    if not isinstance(body, dict):
        raise ValidationFailed("request body must be a JSON object", field="body")
    return body


def parse_model(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "body"
        raise ValidationFailed(f"{field}: {err['msg']}", field=field) from None


@routes.post("/api/v1/links")
async def create_link(request: web.Request) -> web.Response:
    who = await principal(request, Action.LINK_CREATE)
    body = parse_model(LinkCreate, await read_json(request))
    settings = request.app[SETTINGS]
    url = validate_destination(body.url)
    code = validate_custom_code(body.short_code) if body.short_code else None
    if body.redirect_type not in (301, 302, 307, 308):
        raise ValidationFailed("redirect_type must be one of 301, 302, 307, 308", field="redirect_type")
    expires_at = body.expires_at
    if expires_at is not None:
        expires_at = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)
        if expires_at <= datetime.now(UTC):
            raise ValidationFailed("expires_at must be in the future", field="expires_at")
    async with request.app[PG].acquire() as conn:
        row = await repository.create_link(
            conn,
            topic=request.app[TOPICS].links_changes,
            user_id=who.user_id,
            workspace_id=who.workspace_id,
            url=url,
            short_code=code,
            title=body.title,
            max_clicks=body.max_clicks,
            expires_at=expires_at,
            redirect_type=body.redirect_type,
            forward_query=body.forward_query,
        )
    return json_response(repository.link_to_json(row, settings.public_base_url), 201)


@routes.get("/api/v1/links/{link_id}")
async def get_link(request: web.Request) -> web.Response:
    who = await principal(request, Action.LINK_READ)
    link_id = _link_id(request)
    async with request.app[PG].acquire() as conn:
        row = await repository.get_link(conn, who.workspace_id, link_id)
    return json_response(repository.link_to_json(row, request.app[SETTINGS].public_base_url))


@routes.get("/api/v1/links/{link_id}/analytics")
async def link_analytics(request: web.Request) -> web.Response:
    who = await principal(request, Action.ANALYTICS_READ)
    link_id = _link_id(request)
    async with request.app[PG].acquire() as conn:
        row = await repository.get_link(conn, who.workspace_id, link_id)
    keys = request.app[KEYS]
    live = await request.app[REDIS].mget(keys.realtime_link(link_id), keys.realtime_unique(link_id))
    q = request.query
    history = await request.app[ANALYTICS].run(
        "link_timeseries",
        {
            "link_id": link_id, "workspace_id": who.workspace_id,
            "from": q.get("from") or row["created_at"].isoformat(), "to": q.get("to"),
            "interval": q.get("interval"), "tz": q.get("tz"),
        },
    )
    # Live counters come from the worker's tables (mirrored to Redis within a second); the
    # PostgreSQL columns are the batched, durable copy used when the mirror has expired.
    total = int(live[0]) if live[0] is not None else int(row["total_clicks"])
    unique = int(live[1]) if live[1] is not None else int(row["unique_clicks"])
    return json_response({"link_id": link_id, "total_clicks": total, "unique_clicks": unique, **history})


def _link_id(request: web.Request) -> str:
    raw = request.match_info["link_id"]
    try:
        return str(UUID(raw))
    except ValueError:
        raise ValidationFailed("link id must be a UUID", field="link_id") from None
