"""Workspace pages: settings, members and roles, invitations, API keys (secret shown once), the
audit log, and plan/usage with upgrade and the billing portal. The same engine calls and permission
checks as api/workspaces.py and api/billing.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from aiohttp import web

from api.state import PG, SETTINGS
from api.workspaces import invite_by_mail
from engine.accounts import api_keys as account_keys
from engine.accounts import users, workspaces
from engine.audit import AuditFilter, list_audit_logs
from engine.auth.api_key_tokens import SCOPES
from engine.auth.permissions import Action, Role, authorize
from engine.billing.gateway import StripeGateway
from engine.billing.plans import PAID_PLANS, PLANS, parse_plan
from engine.billing.usage import usage_summary
from engine.errors import LinkRiftError, NotFound, ValidationFailed
from web.core import PREFIX, Ctx, PageRedirect, audit, form_data, page, render, see_other, with_blank_form

routes = web.RouteTableDef()
ROLES = [r.value for r in Role if r is not Role.OWNER]
SCOPE_LIST = sorted(SCOPES)


def _uuid(raw: str, field: str) -> str:
    try:
        return str(UUID(raw))
    except ValueError:
        raise NotFound("not found", field=field) from None


def _require(ctx: Ctx, action: Action) -> None:
    authorize(ctx.principal.role, None, action)


async def _overview_page(request: web.Request, ctx: Ctx, status: int = 200, **extra: Any) -> web.Response:
    """The workspace page (`extra`: a notice, or a refused form's errors and values)."""
    return render(request, "workspace/index.html", await _overview(request, ctx, **extra), status=status)


async def _overview(request: web.Request, ctx: Ctx, **extra: Any) -> dict[str, Any]:
    ws = ctx.principal.workspace_id
    async with request.app[PG].acquire() as conn:
        row = await workspaces.get_workspace(conn, ws)
        members = await workspaces.list_members(conn, ws)
        invitations = await workspaces.list_invitations(conn, ws) if ctx.can("member.invite") else []
        usage = await usage_summary(conn, ws)
    limits = PLANS[parse_plan(row["plan"])]
    meters = [
        (label, usage[key], getattr(limits, key))
        for key, label in (
            ("links_per_month", "Links this month"),
            ("clicks_per_month", "Clicks this month"),
            ("custom_domains", "Custom domains"),
            ("members", "Members"),
        )
    ]
    return {
        "workspace": workspaces.workspace_json(row, ctx.role),
        "members": members,
        "invitations": invitations,
        "roles": ROLES,
        "meters": meters,
        "plan": row["plan"],
        "paid_plans": [p.value for p in PAID_PLANS],
        "errors": {},
        **extra,
    }


@routes.get(PREFIX + "/workspace")
@page(action=Action.MEMBER_READ)
async def overview(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    notice = {"invited": "Invitation sent.", "saved": "Saved.", "removed": "Member removed."}.get(
        request.query.get("done", "")
    )
    checkout = request.query.get("checkout")
    if checkout == "success":
        notice = "Thanks! Your plan changes as soon as the payment is confirmed."
    elif checkout == "canceled":
        notice = "Checkout canceled; your plan is unchanged."
    return await _overview_page(request, ctx, notice=notice)


@routes.post(PREFIX + "/workspace")
@page(action=Action.WORKSPACE_UPDATE)
async def rename(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    form = await form_data(request)
    changes = {"name": form.get("name", "").strip()[:255]}
    try:
        if not changes["name"]:
            raise ValidationFailed("the workspace needs a name", field="name")
        async with request.app[PG].acquire() as conn:
            await workspaces.update_workspace(conn, audit(request, ctx), ctx.principal.workspace_id, changes)
    except ValidationFailed as exc:
        return await _overview_page(request, ctx, exc.status, errors={exc.field or "name": exc.message})
    return see_other(request, PREFIX + "/workspace?done=saved")


@routes.post(PREFIX + "/workspace/members/{user_id}/role")
@page(action=Action.MEMBER_CHANGE_ROLE)
async def change_role(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    user_id = _uuid(request.match_info["user_id"], "user_id")
    form = await form_data(request)
    async with request.app[PG].acquire() as conn:
        await workspaces.change_role(
            conn,
            audit(request, ctx),
            ctx.principal.workspace_id,
            Role(ctx.principal.role),
            user_id,
            form.get("role", ""),
        )
    return see_other(request, PREFIX + "/workspace?done=saved")


@routes.post(PREFIX + "/workspace/members/{user_id}/remove")
@page(action=Action.MEMBER_READ)
async def remove_member(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    """Remove a member (member.remove), or leave the workspace when it is oneself."""
    user_id = _uuid(request.match_info["user_id"], "user_id")
    if user_id != ctx.principal.user_id:
        _require(ctx, Action.MEMBER_REMOVE)
    async with request.app[PG].acquire() as conn:
        await workspaces.remove_member(
            conn, audit(request, ctx), ctx.principal.workspace_id, Role(ctx.principal.role), user_id
        )
    if user_id == ctx.principal.user_id:
        return see_other(request, PREFIX + "/links")
    return see_other(request, PREFIX + "/workspace?done=removed")


@routes.post(PREFIX + "/workspace/invitations")
@page(action=Action.MEMBER_INVITE)
async def invite(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    form = await form_data(request)
    base_url = request.app[SETTINGS].public_base_url
    inviter = ctx.user.name if ctx.user else "Someone"
    try:
        email = users.normalize_email(form.get("email", ""))
        await invite_by_mail(
            request,
            audit(request, ctx),
            ctx.principal.workspace_id,
            email,
            form.get("role", "member"),
            lambda name, token: (
                f"{inviter} invited you to the workspace {name} on LinkRift.\n\n"
                f"Accept the invitation here:\n\n{base_url}/app/invitations/accept?token={token}\n"
            ),
        )
    except LinkRiftError as exc:
        return await _overview_page(
            request, ctx, exc.status, errors={"invite": exc.message}, invite_form=form
        )
    return see_other(request, PREFIX + "/workspace?done=invited")


@routes.post(PREFIX + "/workspace/invitations/{invitation_id}/revoke")
@page(action=Action.MEMBER_INVITE)
async def revoke_invitation(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    invitation_id = _uuid(request.match_info["invitation_id"], "invitation_id")
    async with request.app[PG].acquire() as conn:
        await workspaces.revoke_invitation(
            conn, audit(request, ctx), ctx.principal.workspace_id, invitation_id
        )
    return see_other(request, PREFIX + "/workspace?done=saved")


# --- API keys --------------------------------------------------------------------------------------


def _key_actor(ctx: Ctx) -> account_keys.KeyActor:
    who = ctx.principal
    return account_keys.KeyActor(who.user_id, Role(who.role), who.plan)


async def _keys_context(request: web.Request, ctx: Ctx, **extra: Any) -> dict[str, Any]:
    async with request.app[PG].acquire() as conn:
        keys = await account_keys.list_keys(conn, ctx.principal.workspace_id, _key_actor(ctx))
    return with_blank_form({"keys": keys, "scopes": SCOPE_LIST}, **extra)


@routes.get(PREFIX + "/workspace/api-keys")
@page(action=Action.APIKEY_MANAGE)
async def api_keys(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return render(request, "workspace/api_keys.html", await _keys_context(request, ctx))


@routes.post(PREFIX + "/workspace/api-keys")
@page(action=Action.APIKEY_MANAGE)
async def create_api_key(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    """The key's secret is on this response's page only; it is never shown again."""
    form = await request.post()
    fields = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    scopes = [str(s) for s in form.getall("scopes", [])]
    try:
        name = fields.get("name", "").strip()[:255]
        if not name:
            raise ValidationFailed("give the key a name", field="name")
        expires_at = None
        if fields.get("expires_at"):
            try:
                expires_at = datetime.fromisoformat(fields["expires_at"]).replace(tzinfo=UTC)
            except ValueError:
                raise ValidationFailed("expiry must be a date", field="expires_at") from None
        async with request.app[PG].acquire() as conn:
            key, plaintext = await account_keys.create_key(
                conn, audit(request, ctx), _key_actor(ctx), workspace_id=ctx.principal.workspace_id, name=name, scopes=scopes,
                expires_at=expires_at, rate_limit=None,
            )  # fmt: skip
    except LinkRiftError as exc:
        context = await _keys_context(
            request, ctx, errors={(exc.field or "form").split("[")[0]: exc.message}, form=fields
        )
        return render(request, "workspace/api_keys.html", context, status=exc.status)
    return render(
        request,
        "workspace/api_keys.html",
        await _keys_context(request, ctx, created=key, secret=plaintext),
    )


@routes.post(PREFIX + "/workspace/api-keys/{key_id}/revoke")
@page(action=Action.APIKEY_MANAGE)
async def revoke_api_key(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    key_id = _uuid(request.match_info["key_id"], "key_id")
    async with request.app[PG].acquire() as conn:
        await account_keys.revoke_key(
            conn, audit(request, ctx), ctx.principal.workspace_id, key_id, _key_actor(ctx)
        )
    return see_other(request, PREFIX + "/workspace/api-keys")


# --- audit log -------------------------------------------------------------------------------------


def _day(raw: str, field: str) -> datetime | None:
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw).replace(tzinfo=UTC)
    except ValueError:
        raise ValidationFailed(f"{field} must be a date", field=field) from None


@routes.get(PREFIX + "/workspace/audit")
@page(action=Action.AUDIT_READ)
async def audit_log(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    q = request.query
    params = {
        k: q.get(k, "").strip()[:100] for k in ("action", "resource_type", "since", "until") if q.get(k)
    }
    until = _day(params.get("until", ""), "until")
    filters = AuditFilter(
        action=params.get("action") or None,
        resource_type=params.get("resource_type") or None,
        since=_day(params.get("since", ""), "since"),
        until=until + timedelta(days=1) if until else None,
    )
    async with request.app[PG].acquire() as conn:
        items, cursor = await list_audit_logs(
            conn, ctx.principal.workspace_id, filters, 50, (q.get("cursor") or "")[:300] or None
        )
        members = {m["user_id"]: m for m in await workspaces.list_members(conn, ctx.principal.workspace_id)}
    next_url = f"{PREFIX}/workspace/audit?{urlencode({**params, 'cursor': cursor})}" if cursor else None
    return render(
        request,
        "workspace/audit.html",
        {"items": items, "params": params, "next_url": next_url, "members": members},
    )


# --- billing ---------------------------------------------------------------------------------------


@routes.post(PREFIX + "/workspace/billing/checkout")
@page(action=Action.BILLING_MANAGE)
async def checkout(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    form = await form_data(request)
    plan = parse_plan(form.get("plan", ""))
    base = request.app[SETTINGS].public_base_url
    async with request.app[PG].acquire() as conn:
        url = await StripeGateway(request.app[SETTINGS]).checkout_url(
            conn,
            ctx.principal.workspace_id,
            plan,
            f"{base}{PREFIX}/workspace?checkout=success",
            f"{base}{PREFIX}/workspace?checkout=canceled",
        )
    raise PageRedirect(url)


@routes.post(PREFIX + "/workspace/billing/portal")
@page(action=Action.BILLING_MANAGE)
async def portal(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    base = request.app[SETTINGS].public_base_url
    async with request.app[PG].acquire() as conn:
        url = await StripeGateway(request.app[SETTINGS]).portal_url(
            conn, ctx.principal.workspace_id, f"{base}{PREFIX}/workspace"
        )
    raise PageRedirect(url)
