"""Authenticate API requests into a Principal; authorization is engine's (`authorize`).

`Authorization: Bearer <token>` carries either an API key (`lr_...`: acts in the key's workspace
with its scopes) or a JWT access token from `/api/v1/auth/login` (acts as the user, scopes=None, in
the workspace named by the `X-Workspace-Id` header, else the user's first workspace). A workspace
the caller does not belong to is a 404, never a 403, so ids of other tenants stay unconfirmed.
"""

from __future__ import annotations

from uuid import UUID

from aiohttp import web

from api.http import parse_uuid
from api.ratelimit import enforce_key_limit
from api.state import PG, SETTINGS
from engine.accounts.repository import Principal, authenticate_api_key, user_membership
from engine.accounts.sessions import session_is_live
from engine.accounts.workspaces import LINK_WRITES, check_links_writable
from engine.auth.api_key_tokens import API_KEY_PREFIX
from engine.auth.permissions import Action, authorize
from engine.auth.tokens import REFRESH_TOKEN_PREFIX, AccessClaims, decode_access_token
from engine.errors import Forbidden, Unauthorized, WorkspaceNotFound

PRINCIPAL = web.RequestKey("principal", Principal) if hasattr(web, "RequestKey") else "principal"
WORKSPACE_HEADER = "X-Workspace-Id"


def _bearer(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token (Authorization: Bearer <api key or access token>)")
    return token.strip()


def _is_api_key(token: str) -> bool:
    return token.startswith(API_KEY_PREFIX) and not token.startswith(REFRESH_TOKEN_PREFIX)


async def _session_claims(request: web.Request, token: str) -> AccessClaims:
    claims = decode_access_token(request.app[SETTINGS].secret_key, token)
    try:
        UUID(claims.user_id), UUID(claims.session_id)
    except ValueError:
        raise Unauthorized("access token has malformed ids") from None
    async with request.app[PG].acquire() as conn:
        if not await session_is_live(conn, claims.user_id, claims.session_id):
            raise Unauthorized("session has ended; sign in again")
    return claims


async def signed_in_user(request: web.Request) -> AccessClaims:
    """The user of a JWT session. API keys are refused: account actions need a person."""
    token = _bearer(request)
    if _is_api_key(token):
        raise Forbidden("this endpoint needs a signed-in session; API keys cannot use it")
    return await _session_claims(request, token)


async def principal(request: web.Request, action: Action, workspace_id: str | None = None) -> Principal:
    """The caller, checked against `action` (role and, for API keys, scopes).

    `workspace_id` (e.g. from the URL) pins the workspace; otherwise a user's comes from the
    X-Workspace-Id header or their first workspace, and a key's is its own.
    """
    token = _bearer(request)
    if _is_api_key(token):
        async with request.app[PG].acquire() as conn:
            who = await authenticate_api_key(conn, token)
        await enforce_key_limit(request, who)
        if workspace_id is not None and workspace_id != who.workspace_id:
            raise WorkspaceNotFound("workspace not found", field="workspace_id")
    else:
        claims = await _session_claims(request, token)
        wanted = workspace_id
        if wanted is None and (header := request.headers.get(WORKSPACE_HEADER)):
            wanted = parse_uuid(header, WORKSPACE_HEADER)
        async with request.app[PG].acquire() as conn:
            membership = await user_membership(conn, claims.user_id, wanted)
        if membership is None:
            raise WorkspaceNotFound("workspace not found", field="workspace_id")
        ws, role, plan = membership
        who = Principal(claims.user_id, ws, role, None, session_id=claims.session_id, plan=plan)
    authorize(who.role, who.scopes, action)
    if action in LINK_WRITES:  # a suspended workspace's links are read-only (403 workspace_suspended)
        async with request.app[PG].acquire() as conn:
            await check_links_writable(conn, who.workspace_id)
    request[PRINCIPAL] = who
    return who
