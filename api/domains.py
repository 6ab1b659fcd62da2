"""Management API for custom domains: add, list, read, update, verify by DNS TXT, soft delete."""

from __future__ import annotations

from datetime import UTC

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from api.audit import audit
from api.auth import principal
from api.errors import json_response
from api.http import list_response, parse_model, path_uuid, read_json
from api.state import DOMAINS, PG, SETTINGS
from engine.auth.permissions import Action
from engine.domains import repository, service
from engine.domains.hostnames import validate_hostname, validate_optional_url
from engine.domains.verification import RoutingTarget, TxtVerifier, new_token
from engine.errors import ValidationFailed
from engine.inputs import UtcDatetime
from engine.links.cache import normalize_host

routes = web.RouteTableDef()
VERIFIER = web.AppKey("dns_verifier", TxtVerifier)


class DomainCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: str
    default_redirect_url: str | None = None
    custom_404_url: str | None = None


class DomainUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_redirect_url: str | None = None
    custom_404_url: str | None = None
    ssl_status: str | None = None
    ssl_expires_at: UtcDatetime | None = None


def setup(app: web.Application) -> None:
    settings = app[SETTINGS]
    app[VERIFIER] = TxtVerifier(settings.dns_nameserver, settings.dns_timeout)
    app.add_routes(routes)


def routing_target(request: web.Request) -> RoutingTarget:
    """Where a custom domain must point: the platform host and the operator's A record, if set."""
    settings = request.app[SETTINGS]
    return RoutingTarget(normalize_host(settings.default_domain), settings.domain_a_record)


@routes.post("/api/v1/domains")
async def create_domain(request: web.Request) -> web.Response:
    who = await principal(request, Action.DOMAIN_MANAGE)
    body = parse_model(DomainCreate, await read_json(request))
    host = validate_hostname(body.domain, platform_domain=request.app[SETTINGS].default_domain)
    async with request.app[PG].acquire() as conn, conn.transaction():
        row = await service.create_domain(
            conn,
            workspace_id=who.workspace_id,
            domain=host,
            token=new_token(),
            default_redirect_url=validate_optional_url(
                body.default_redirect_url, field="default_redirect_url"
            ),
            custom_404_url=validate_optional_url(body.custom_404_url, field="custom_404_url"),
        )
        await audit(conn, request, who, "domain.created", "domain", row.id, {"domain": host})
    return json_response(row.to_json(routing_target(request)), 201)


@routes.get("/api/v1/domains")
async def list_domains(request: web.Request) -> web.Response:
    who = await principal(request, Action.DOMAIN_READ)
    async with request.app[PG].acquire() as conn:
        rows = await repository.list_domains(conn, who.workspace_id)
    target = routing_target(request)
    return list_response([r.to_json(target) for r in rows])


@routes.get("/api/v1/domains/{domain_id}")
async def get_domain(request: web.Request) -> web.Response:
    who = await principal(request, Action.DOMAIN_READ)
    async with request.app[PG].acquire() as conn:
        row = await repository.get_domain(conn, who.workspace_id, path_uuid(request, "domain_id"))
    return json_response(row.to_json(routing_target(request)))


@routes.patch("/api/v1/domains/{domain_id}")
async def update_domain(request: web.Request) -> web.Response:
    who = await principal(request, Action.DOMAIN_MANAGE)
    domain_id = path_uuid(request, "domain_id")
    body = parse_model(DomainUpdate, await read_json(request))
    changes = body.model_dump(exclude_unset=True)
    for field in ("default_redirect_url", "custom_404_url"):
        if field in changes:
            changes[field] = validate_optional_url(changes[field], field=field)
    if "ssl_status" in changes and changes["ssl_status"] is None:
        raise ValidationFailed("ssl_status cannot be null", field="ssl_status")
    if changes.get("ssl_expires_at") is not None and changes["ssl_expires_at"].tzinfo is None:
        changes["ssl_expires_at"] = changes["ssl_expires_at"].replace(tzinfo=UTC)
    async with request.app[PG].acquire() as conn, conn.transaction():
        row = await service.update_domain(conn, who.workspace_id, domain_id, changes)
        await audit(conn, request, who, "domain.updated", "domain", domain_id, changes)
    return json_response(row.to_json(routing_target(request)))


@routes.delete("/api/v1/domains/{domain_id}")
async def delete_domain(request: web.Request) -> web.Response:
    who = await principal(request, Action.DOMAIN_MANAGE)
    async with request.app[PG].acquire() as conn, conn.transaction():
        host = await repository.delete_domain(conn, who.workspace_id, path_uuid(request, "domain_id"))
        await audit(
            conn, request, who, "domain.deleted", "domain", path_uuid(request, "domain_id"), {"domain": host}
        )
    request.app[DOMAINS].pop(host)  # this replica stops routing it at once; others within 30 s
    return web.Response(status=204)


@routes.post("/api/v1/domains/{domain_id}/verify")
async def verify_domain(request: web.Request) -> web.Response:
    who = await principal(request, Action.DOMAIN_MANAGE)
    async with request.app[PG].acquire() as conn:  # no transaction held over the DNS query
        row = await repository.get_domain(conn, who.workspace_id, path_uuid(request, "domain_id"))
        row, check = await service.verify_domain(conn, request.app[VERIFIER], row)
        verdict = {"is_verified": row.is_verified, "outcome": str(check.outcome)}
        await audit(conn, request, who, "domain.verification_checked", "domain", row.id, verdict)
    if row.is_verified:
        request.app[DOMAINS].pop(row.domain)
    out = row.to_json(routing_target(request))
    out["check"] = {"outcome": str(check.outcome), "detail": check.detail, "found": list(check.found)}
    return json_response(out)
