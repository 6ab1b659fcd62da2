"""The audit log endpoint (admin-only) and `audit_context`, which handlers pass to `write_audit`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import asyncpg
from aiohttp import web

from api.auth import principal
from api.http import list_response, parse_uuid
from api.state import PG
from engine.accounts.repository import Principal
from engine.audit import AuditContext, AuditFilter, list_audit_logs, write_audit
from engine.auth.permissions import Action
from engine.errors import ValidationFailed
from engine.inputs import parse_datetime

routes = web.RouteTableDef()


async def audit(
    conn: asyncpg.Connection,
    request: web.Request,
    who: Principal,
    action: str,
    resource_type: str,
    resource_id: object,
    new: Mapping[str, object] | None = None,
) -> None:
    """One audit row for a change made by `who`, on the connection (and inside the transaction)
    that made it; `new` holds the changed fields (stored as engine.audit.audit_values makes them)."""
    await write_audit(
        conn,
        audit_context(request, who),
        who.workspace_id,
        action,
        resource_type,
        str(resource_id),
        new=new,
    )


def audit_context(
    request: web.Request, who: Principal | None = None, user_id: str | None = None
) -> AuditContext:
    """Actor, IP and user agent of this request, for `engine.audit.write_audit`."""
    return AuditContext(
        actor_id=who.user_id if who else user_id,
        ip=request.remote,
        user_agent=request.headers.get("User-Agent"),
        api_key_id=who.api_key_id if who else None,
    )


def _time(raw: str | None, field: str) -> datetime | None:
    if not raw:
        return None
    try:
        return parse_datetime(raw)
    except ValueError as exc:
        raise ValidationFailed(f"{field} {exc}", field=field) from None


@routes.get("/api/v1/audit-logs")
async def get_audit_logs(request: web.Request) -> web.Response:
    """Filters: action, resource_type, resource_id, user_id, from, to; `limit` (1-200, default 50)
    and `cursor` (from the previous page's `next_cursor`). Newest first."""
    who = await principal(request, Action.AUDIT_READ)
    q = request.query
    try:
        limit = int(q.get("limit", "50"))
    except ValueError:
        raise ValidationFailed("limit must be an integer", field="limit") from None
    filters = AuditFilter(
        action=q.get("action") or None,
        resource_type=q.get("resource_type") or None,
        resource_id=parse_uuid(q["resource_id"], "resource_id") if q.get("resource_id") else None,
        user_id=parse_uuid(q["user_id"], "user_id") if q.get("user_id") else None,
        since=_time(q.get("from"), "from"),
        until=_time(q.get("to"), "to"),
    )
    async with request.app[PG].acquire() as conn:
        items, next_cursor = await list_audit_logs(
            conn, who.workspace_id, filters, limit, q.get("cursor") or None
        )
    return list_response(items, next_cursor)
