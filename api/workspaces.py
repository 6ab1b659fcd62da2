"""Workspaces API: workspaces, members, invitations, ownership transfer and API keys.

Every route under /api/v1/workspaces/{workspace_id} authorizes through `principal(request, action,
workspace_id)`: a workspace the caller is not in is a 404; a role or scope that falls short, a 403.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from api.accounts import send_mail
from api.audit import audit_context
from api.auth import principal, signed_in_user
from api.errors import json_response
from api.http import list_response, parse_model, parse_uuid, read_json
from api.state import PG, SETTINGS, TOPICS
from engine.accounts import api_keys, users, workspaces
from engine.accounts.repository import Principal
from engine.audit import AuditContext
from engine.auth.api_key_tokens import SCOPES
from engine.auth.permissions import Action, Role
from engine.errors import ValidationFailed
from engine.inputs import BoundedJsonObject, UtcDatetime

routes = web.RouteTableDef()
_WS = "/api/v1/workspaces/{workspace_id}"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkspaceCreate(_Body):
    name: str = Field(min_length=1, max_length=255)
    slug: str | None = Field(None, max_length=100)


class WorkspaceUpdate(_Body):
    name: str | None = Field(None, min_length=1, max_length=255)
    slug: str | None = Field(None, max_length=100)
    settings: BoundedJsonObject | None = None


class RoleChange(_Body):
    role: str


class Transfer(_Body):
    user_id: str


class InvitationCreate(_Body):
    email: str = Field(max_length=255)
    role: str = "member"


class InvitationAccept(_Body):
    token: str = Field(min_length=1, max_length=200)


# Checked by engine.auth.api_key_tokens (its error lists the valid scopes); the enum documents them.
Scope = Annotated[str, WithJsonSchema({"type": "string", "enum": sorted(SCOPES)})]


class ApiKeyCreate(_Body):
    name: str = Field(min_length=1, max_length=255)
    scopes: list[Scope] = Field(max_length=20)
    expires_at: UtcDatetime | None = None
    rate_limit: int | None = None


class ApiKeyUpdate(_Body):
    name: str | None = Field(None, min_length=1, max_length=255)
    scopes: list[Scope] | None = Field(None, max_length=20)
    expires_at: UtcDatetime | None = None
    rate_limit: int | None = None


def _ws_id(request: web.Request) -> str:
    return parse_uuid(request.match_info["workspace_id"], "workspace_id")


def _aware(value: datetime | None) -> datetime | None:
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


async def _ws_principal(request: web.Request, action: Action) -> tuple[Principal, str]:
    workspace_id = _ws_id(request)
    return await principal(request, action, workspace_id), workspace_id


@routes.get("/api/v1/workspaces")
async def list_workspaces(request: web.Request) -> web.Response:
    claims = await signed_in_user(request)
    async with request.app[PG].acquire() as conn:
        items = await workspaces.list_workspaces(conn, claims.user_id)
    return list_response(items)


@routes.post("/api/v1/workspaces")
async def create_workspace(request: web.Request) -> web.Response:
    claims = await signed_in_user(request)
    body = parse_model(WorkspaceCreate, await read_json(request))
    async with request.app[PG].acquire() as conn:
        row = await workspaces.create_workspace(
            conn, audit_context(request, user_id=claims.user_id), claims.user_id, body.name.strip(), body.slug
        )
    return json_response(workspaces.workspace_json(row, Role.OWNER.value), 201)


@routes.get(_WS)
async def get_workspace(request: web.Request) -> web.Response:
    who, ws = await _ws_principal(request, Action.MEMBER_READ)
    async with request.app[PG].acquire() as conn:
        row = await workspaces.get_workspace(conn, ws)
    return json_response(workspaces.workspace_json(row, who.role))


@routes.patch(_WS)
async def update_workspace(request: web.Request) -> web.Response:
    who, ws = await _ws_principal(request, Action.WORKSPACE_UPDATE)
    body = parse_model(WorkspaceUpdate, await read_json(request))
    changes = body.model_dump(exclude_unset=True)
    if any(v is None for k, v in changes.items() if k in ("name", "slug")):
        field = next(k for k in ("name", "slug") if k in changes and changes[k] is None)
        raise ValidationFailed(f"{field} cannot be null", field=field)
    async with request.app[PG].acquire() as conn:
        row = await workspaces.update_workspace(conn, audit_context(request, who), ws, changes)
    return json_response(workspaces.workspace_json(row, who.role))


@routes.delete(_WS)
async def delete_workspace(request: web.Request) -> web.Response:
    who, ws = await _ws_principal(request, Action.WORKSPACE_DELETE)
    async with request.app[PG].acquire() as conn:
        await workspaces.delete_workspace(
            conn, audit_context(request, who), ws, request.app[TOPICS].links_changes
        )
    return web.Response(status=204)


@routes.post(_WS + "/transfer")
async def transfer(request: web.Request) -> web.Response:
    who, ws = await _ws_principal(request, Action.WORKSPACE_TRANSFER)
    body = parse_model(Transfer, await read_json(request))
    new_owner = parse_uuid(body.user_id, "user_id")
    async with request.app[PG].acquire() as conn:
        await workspaces.transfer_ownership(conn, audit_context(request, who), ws, new_owner)
    return web.Response(status=204)


@routes.get(_WS + "/members")
async def list_members(request: web.Request) -> web.Response:
    _, ws = await _ws_principal(request, Action.MEMBER_READ)
    async with request.app[PG].acquire() as conn:
        items = await workspaces.list_members(conn, ws)
    return list_response(items)


@routes.patch(_WS + "/members/{user_id}")
async def change_member_role(request: web.Request) -> web.Response:
    who, ws = await _ws_principal(request, Action.MEMBER_CHANGE_ROLE)
    user_id = parse_uuid(request.match_info["user_id"], "user_id")
    body = parse_model(RoleChange, await read_json(request))
    async with request.app[PG].acquire() as conn:
        await workspaces.change_role(
            conn, audit_context(request, who), ws, Role(who.role), user_id, body.role
        )
    return web.Response(status=204)


@routes.delete(_WS + "/members/{user_id}")
async def remove_member(request: web.Request) -> web.Response:
    """Remove a member (member.remove), or leave the workspace when it is your own id."""
    user_id = parse_uuid(request.match_info["user_id"], "user_id")
    ws = _ws_id(request)
    probe = await principal(request, Action.MEMBER_READ, ws)
    who = probe if user_id == probe.user_id else await principal(request, Action.MEMBER_REMOVE, ws)
    async with request.app[PG].acquire() as conn:
        await workspaces.remove_member(conn, audit_context(request, who), ws, Role(who.role), user_id)
    return web.Response(status=204)


@routes.get(_WS + "/invitations")
async def list_invitations(request: web.Request) -> web.Response:
    _, ws = await _ws_principal(request, Action.MEMBER_INVITE)
    async with request.app[PG].acquire() as conn:
        items = await workspaces.list_invitations(conn, ws)
    return list_response(items)


@routes.post(_WS + "/invitations")
async def create_invitation(request: web.Request) -> web.Response:
    who, ws = await _ws_principal(request, Action.MEMBER_INVITE)
    body = parse_model(InvitationCreate, await read_json(request))
    email = users.normalize_email(body.email)
    base_url = request.app[SETTINGS].public_base_url
    invitation = await invite_by_mail(
        request,
        audit_context(request, who),
        ws,
        email,
        body.role,
        lambda name, token: (
            f"Accept by signing in and POSTing this token to /api/v1/invitations/accept:\n\n{token}\n\n"
            f"{base_url}/app/invitations/accept?token={token}\n"
        ),
    )
    return json_response(invitation, 201)


async def invite_by_mail(
    request: web.Request,
    ctx: AuditContext,
    workspace_id: str,
    email: str,
    role: str,
    compose: Callable[[str, str], str],
) -> dict[str, Any]:
    """Invite `email` to the workspace and mail them the token (the API's and the web app's
    invitations); `compose(workspace_name, token)` writes the mail's body. Returns the invitation."""
    settings = request.app[SETTINGS]
    async with request.app[PG].acquire() as conn:
        invitation, token = await workspaces.invite(
            conn, ctx, workspace_id, email, role, timedelta(days=settings.invitation_ttl_days)
        )
        name = (await workspaces.get_workspace(conn, workspace_id))["name"]
    await send_mail(request, email, f"You are invited to {name} on LinkRift", compose(name, token))
    return invitation


@routes.delete(_WS + "/invitations/{invitation_id}")
async def revoke_invitation(request: web.Request) -> web.Response:
    who, ws = await _ws_principal(request, Action.MEMBER_INVITE)
    invitation_id = parse_uuid(request.match_info["invitation_id"], "invitation_id")
    async with request.app[PG].acquire() as conn:
        await workspaces.revoke_invitation(conn, audit_context(request, who), ws, invitation_id)
    return web.Response(status=204)


@routes.post("/api/v1/invitations/accept")
async def accept_invitation(request: web.Request) -> web.Response:
    claims = await signed_in_user(request)
    body = parse_model(InvitationAccept, await read_json(request))
    async with request.app[PG].acquire() as conn:
        user = await users.get_user(conn, claims.user_id)
        ws = await workspaces.accept_invitation(
            conn, audit_context(request, user_id=user.id), user.email, body.token
        )
    return json_response({"workspace_id": ws})


# --- API keys: anyone manages their own (apikey.manage); admins see every key (apikey.manage_all);
# only a key's creator changes it, the creator or the owner revokes it (engine.accounts.api_keys) --


def _key_actor(who: Principal) -> api_keys.KeyActor:
    return api_keys.KeyActor(who.user_id, Role(who.role), who.plan)


@routes.get(_WS + "/api-keys")
async def list_api_keys(request: web.Request) -> web.Response:
    who, ws = await _ws_principal(request, Action.APIKEY_MANAGE)
    async with request.app[PG].acquire() as conn:
        items = await api_keys.list_keys(conn, ws, _key_actor(who))
    return list_response(items)


@routes.post(_WS + "/api-keys")
async def create_api_key(request: web.Request) -> web.Response:
    """The plaintext `key` is in this response only; it is never shown again."""
    who, ws = await _ws_principal(request, Action.APIKEY_MANAGE)
    body = parse_model(ApiKeyCreate, await read_json(request))
    async with request.app[PG].acquire() as conn:
        key, plaintext = await api_keys.create_key(
            conn,
            audit_context(request, who),
            _key_actor(who),
            workspace_id=ws,
            name=body.name,
            scopes=body.scopes,
            expires_at=_aware(body.expires_at),
            rate_limit=body.rate_limit,
        )
    return json_response({**key, "key": plaintext}, 201)


@routes.get(_WS + "/api-keys/{key_id}")
async def get_api_key(request: web.Request) -> web.Response:
    who, ws = await _ws_principal(request, Action.APIKEY_MANAGE)
    key_id = parse_uuid(request.match_info["key_id"], "key_id")
    async with request.app[PG].acquire() as conn:
        key = await api_keys.get_key(conn, ws, key_id, _key_actor(who))
    return json_response(key)


@routes.patch(_WS + "/api-keys/{key_id}")
async def update_api_key(request: web.Request) -> web.Response:
    who, ws = await _ws_principal(request, Action.APIKEY_MANAGE)
    key_id = parse_uuid(request.match_info["key_id"], "key_id")
    changes = parse_model(ApiKeyUpdate, await read_json(request)).model_dump(exclude_unset=True)
    for field in ("name", "scopes"):
        if field in changes and changes[field] is None:
            raise ValidationFailed(f"{field} cannot be null", field=field)
    if "expires_at" in changes:
        changes["expires_at"] = _aware(changes["expires_at"])
    async with request.app[PG].acquire() as conn:
        key = await api_keys.update_key(
            conn, audit_context(request, who), ws, key_id, _key_actor(who), changes
        )
    return json_response(key)


@routes.delete(_WS + "/api-keys/{key_id}")
async def revoke_api_key(request: web.Request) -> web.Response:
    who, ws = await _ws_principal(request, Action.APIKEY_MANAGE)
    key_id = parse_uuid(request.match_info["key_id"], "key_id")
    async with request.app[PG].acquire() as conn:
        await api_keys.revoke_key(conn, audit_context(request, who), ws, key_id, _key_actor(who))
    return web.Response(status=204)
