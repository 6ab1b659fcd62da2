"""Domains (DNS instructions, verification status, fallbacks) and webhooks (events, secret shown
once, rotate, delivery log, redeliver, test): the engine calls of api/domains.py and api/webhooks.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from api import domains as api_domains
from api import webhooks as api_webhooks
from api.audit import audit as write_audit
from api.http import parse_model
from api.state import DOMAINS, PG, SETTINGS
from engine.auth.permissions import Action
from engine.domains import repository as domains_repo
from engine.domains import service as domains_service
from engine.domains.hostnames import validate_hostname, validate_optional_url
from engine.domains.verification import new_token
from engine.errors import LinkRiftError
from engine.webhooks import repository as hooks_repo
from engine.webhooks import service as hooks_service
from engine.webhooks.events import EVENT_TYPES, validate_events
from engine.webhooks.targets import validate_target
from web.core import PREFIX, Ctx, audit, form_data, page, render, see_other, uuid_param, with_blank_form

routes = web.RouteTableDef()


# --- domains ---------------------------------------------------------------------------------------


async def _domains_context(request: web.Request, ctx: Ctx, **extra: Any) -> dict[str, Any]:
    async with request.app[PG].acquire() as conn:
        rows = await domains_repo.list_domains(conn, ctx.principal.workspace_id)
    domains = [r.to_json(api_domains.routing_target(request)) for r in rows]
    context = {
        "domains": domains,
        "domain_forms": {d["id"]: domain_form_of(d) for d in domains},
        "ssl_statuses": domains_service.SSL_STATUSES,
        "editing": None,
        "edit_errors": {},
        "saved": request.query.get("saved"),
    }
    return with_blank_form(context, **extra)


@routes.get(PREFIX + "/domains")
@page(action=Action.DOMAIN_READ)
async def domains_page(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return render(request, "features/domains.html", await _domains_context(request, ctx))


@routes.post(PREFIX + "/domains")
@page(action=Action.DOMAIN_MANAGE)
async def add_domain(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    form = await form_data(request)
    try:
        host = validate_hostname(
            form.get("domain", "").strip(), platform_domain=request.app[SETTINGS].default_domain
        )
        async with request.app[PG].acquire() as conn:
            await domains_service.create_domain(
                conn,
                workspace_id=ctx.principal.workspace_id,
                domain=host,
                token=new_token(),
                default_redirect_url=validate_optional_url(
                    form.get("default_redirect_url") or None, field="default_redirect_url"
                ),
                custom_404_url=validate_optional_url(
                    form.get("custom_404_url") or None, field="custom_404_url"
                ),
            )
    except LinkRiftError as exc:
        context = await _domains_context(request, ctx, errors={exc.field or "domain": exc.message}, form=form)
        return render(request, "features/domains.html", context, status=exc.status)
    return see_other(request, PREFIX + "/domains")


def domain_changes(form: dict[str, str]) -> dict[str, Any]:
    """The edit form as the API's PATCH body, validated by the API's model and checks (a blank
    field clears it; the certificate expiry is UTC, datetime-local to the minute)."""
    raw: dict[str, Any] = {
        name: form.get(name, "").strip() or None for name in ("default_redirect_url", "custom_404_url")
    }
    raw["ssl_status"] = form.get("ssl_status", "").strip()
    expires = form.get("ssl_expires_at", "").strip()
    raw["ssl_expires_at"] = expires + ":00+00:00" if len(expires) == 16 else expires or None
    changes = parse_model(api_domains.DomainUpdate, raw).model_dump(exclude_unset=True)
    for name in ("default_redirect_url", "custom_404_url"):
        changes[name] = validate_optional_url(changes[name], field=name)
    return changes


def domain_form_of(domain: dict[str, Any]) -> dict[str, str]:
    expires = domain.get("ssl_expires_at")
    return {
        "default_redirect_url": domain.get("default_redirect_url") or "",
        "custom_404_url": domain.get("custom_404_url") or "",
        "ssl_status": domain.get("ssl_status") or "pending",
        "ssl_expires_at": datetime.fromisoformat(expires).astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
        if expires
        else "",
    }


@routes.post(PREFIX + "/domains/{domain_id}")
@page(action=Action.DOMAIN_MANAGE)
async def update_domain(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    """Edit a domain after it is added: the API's PATCH fields (fallbacks and certificate notes)."""
    domain_id = uuid_param(request, "domain_id")
    form = await form_data(request)
    try:
        changes = domain_changes(form)
        async with request.app[PG].acquire() as conn, conn.transaction():
            row = await domains_service.update_domain(conn, ctx.principal.workspace_id, domain_id, changes)
            await write_audit(conn, request, ctx.principal, "domain.updated", "domain", domain_id, changes)
    except LinkRiftError as exc:
        context = await _domains_context(
            request, ctx, editing=domain_id, edit_errors={exc.field or "form": exc.message}
        )
        context["domain_forms"][domain_id] = form
        return render(request, "features/domains.html", context, status=exc.status)
    request.app[DOMAINS].pop(row.domain)  # this replica routes with the new fallbacks at once
    return see_other(request, f"{PREFIX}/domains?saved={domain_id}#dom-{domain_id}")


@routes.post(PREFIX + "/domains/{domain_id}/verify")
@page(action=Action.DOMAIN_MANAGE)
async def verify_domain(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    domain_id = uuid_param(request, "domain_id")
    async with request.app[PG].acquire() as conn:
        row = await domains_repo.get_domain(conn, ctx.principal.workspace_id, domain_id)
        row, check = await domains_service.verify_domain(conn, request.app[api_domains.VERIFIER], row)
    if row.is_verified:
        request.app[DOMAINS].pop(row.domain)
    result = {"domain_id": domain_id, "verified": row.is_verified, "detail": check.detail}
    return render(request, "features/domains.html", await _domains_context(request, ctx, check=result))


@routes.post(PREFIX + "/domains/{domain_id}/delete")
@page(action=Action.DOMAIN_MANAGE)
async def delete_domain(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    domain_id = uuid_param(request, "domain_id")
    async with request.app[PG].acquire() as conn:
        host = await domains_repo.delete_domain(conn, ctx.principal.workspace_id, domain_id)
    request.app[DOMAINS].pop(host)
    return see_other(request, PREFIX + "/domains")


# --- webhooks --------------------------------------------------------------------------------------


async def _hooks_context(request: web.Request, ctx: Ctx, **extra: Any) -> dict[str, Any]:
    async with request.app[PG].acquire() as conn:
        rows = await hooks_repo.list_webhooks(conn, ctx.principal.workspace_id)
    hooks = [hooks_service.webhook_json(r) for r in rows]
    return with_blank_form({"hooks": hooks, "event_types": sorted(EVENT_TYPES)}, **extra)


@routes.get(PREFIX + "/webhooks")
@page(action=Action.WEBHOOK_READ)
async def webhooks_page(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return render(request, "features/webhooks.html", await _hooks_context(request, ctx))


@routes.post(PREFIX + "/webhooks")
@page(action=Action.WEBHOOK_MANAGE)
async def create_webhook(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    form = await request.post()
    url_raw = str(form.get("url") or "").strip()[:2048]
    try:
        events = validate_events([str(e) for e in form.getall("events", [])])
        url = await validate_target(url_raw, allow_private=request.app[SETTINGS].webhook_allow_private)
        async with request.app[PG].acquire() as conn:
            row, secret = await hooks_service.create_webhook(
                conn, audit(request, ctx), api_webhooks._box(request), ctx.principal.workspace_id, url, events
            )
    except LinkRiftError as exc:
        context = await _hooks_context(
            request, ctx, errors={exc.field or "url": exc.message}, form={"url": url_raw}
        )
        return render(request, "features/webhooks.html", context, status=exc.status)
    return render(
        request,
        "features/webhooks.html",
        await _hooks_context(request, ctx, secret=secret, secret_for=row["url"]),
    )


async def _hook_page(request: web.Request, ctx: Ctx, hook_id: str, **extra: Any) -> web.Response:
    async with request.app[PG].acquire() as conn:
        row = await hooks_repo.get_webhook(conn, ctx.principal.workspace_id, hook_id)
        deliveries, _ = await hooks_repo.list_deliveries(
            conn, ctx.principal.workspace_id, hook_id, limit=50, cursor=None
        )
    return render(
        request,
        "features/webhook.html",
        {
            "hook": hooks_service.webhook_json(row),
            "deliveries": [hooks_service.delivery_json(d) for d in deliveries],
            **extra,
        },
    )


@routes.get(PREFIX + "/webhooks/{webhook_id}")
@page(action=Action.WEBHOOK_READ)
async def webhook_page(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return await _hook_page(request, ctx, uuid_param(request, "webhook_id"))


@routes.post(PREFIX + "/webhooks/{webhook_id}/rotate")
@page(action=Action.WEBHOOK_MANAGE)
async def rotate(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    hook_id = uuid_param(request, "webhook_id")
    async with request.app[PG].acquire() as conn:
        secret = await hooks_service.rotate_secret(
            conn, audit(request, ctx), api_webhooks._box(request), ctx.principal.workspace_id, hook_id
        )
    grace = int(hooks_service.ROTATION_GRACE.total_seconds() // 3600)
    return await _hook_page(request, ctx, hook_id, secret=secret, grace_hours=grace)


@routes.post(PREFIX + "/webhooks/{webhook_id}/test")
@page(action=Action.WEBHOOK_MANAGE)
async def send_test(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    hook_id = uuid_param(request, "webhook_id")
    ws = ctx.principal.workspace_id
    async with request.app[PG].acquire() as conn:
        delivery_id = await hooks_service.queue_test(conn, ws, hook_id, "evt_test_" + uuid.uuid4().hex)
    outcome = await api_webhooks._deliver_now(request, delivery_id)
    return await _hook_page(request, ctx, hook_id, outcome=outcome)


@routes.post(PREFIX + "/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver")
@page(action=Action.WEBHOOK_MANAGE)
async def redeliver(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    hook_id = uuid_param(request, "webhook_id")
    delivery_id = uuid_param(request, "delivery_id")
    async with request.app[PG].acquire() as conn:
        await hooks_repo.redeliver(conn, ctx.principal.workspace_id, hook_id, delivery_id)
    outcome = await api_webhooks._deliver_now(request, delivery_id)
    return await _hook_page(request, ctx, hook_id, outcome=outcome)


@routes.post(PREFIX + "/webhooks/{webhook_id}/toggle")
@page(action=Action.WEBHOOK_MANAGE)
async def toggle(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    hook_id = uuid_param(request, "webhook_id")
    form = await form_data(request)
    async with request.app[PG].acquire() as conn:
        await hooks_service.update_webhook(
            conn,
            audit(request, ctx),
            ctx.principal.workspace_id,
            hook_id,
            url=None,
            events=None,
            is_active=form.get("active") == "on",
        )
    return see_other(request, f"{PREFIX}/webhooks/{hook_id}")


@routes.post(PREFIX + "/webhooks/{webhook_id}/delete")
@page(action=Action.WEBHOOK_MANAGE)
async def delete_webhook(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    hook_id = uuid_param(request, "webhook_id")
    async with request.app[PG].acquire() as conn:
        await hooks_service.delete_webhook(conn, audit(request, ctx), ctx.principal.workspace_id, hook_id)
    return see_other(request, PREFIX + "/webhooks")
