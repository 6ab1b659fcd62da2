"""Authenticate API requests (Bearer API key) into a Principal; authorization is engine's."""

from __future__ import annotations

from aiohttp import web

from api.state import PG
from engine.accounts.repository import Principal, authenticate_api_key
from engine.auth.permissions import Action, authorize
from engine.errors import Unauthorized

PRINCIPAL = web.RequestKey("principal", Principal) if hasattr(web, "RequestKey") else "principal"


async def principal(request: web.Request, action: Action) -> Principal:
    """The caller, checked against `action` (role and, for API keys, scopes)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token (Authorization: Bearer <api key>)")
    async with request.app[PG].acquire() as conn:
        who = await authenticate_api_key(conn, token.strip())
    authorize(who.role, who.scopes, action)
    return who
