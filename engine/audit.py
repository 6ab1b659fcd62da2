"""The audit log: who changed what in a workspace, written in the same transaction as the change.

Every mutating handler calls `write_audit(conn, ctx, ...)` on the connection that runs the change,
inside its transaction, so a change and its audit row commit or roll back together:

    async with conn.transaction():
        row = await conn.fetchrow("UPDATE links ... RETURNING *", ...)
        await write_audit(conn, ctx, workspace_id, "link.updated", "link", row["id"], old=..., new=...)

`ctx` (an AuditContext) carries the actor, IP and user agent; api code builds it with
`api.audit.audit_context(request, principal)`. Action names are `<resource>.<past-tense verb>`.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from engine.errors import ValidationFailed

MAX_PAGE_SIZE = 200


@dataclass(frozen=True, slots=True)
class AuditContext:
    """The actor and the request a change came from."""

    actor_id: str | None
    ip: str | None = None
    user_agent: str | None = None
    api_key_id: str | None = None


async def write_audit(
    conn: asyncpg.Connection,
    ctx: AuditContext,
    workspace_id: str,
    action: str,
    resource_type: str,
    resource_id: str | None = None,
    *,
    old: Mapping[str, object] | None = None,
    new: Mapping[str, object] | None = None,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Append one audit row. Call it inside the transaction of the change it records.

    `old` and `new` are stored as `audit_values` makes them; jsonb values are passed as Python
    objects (the pool's jsonb codec encodes them).
    """
    meta = dict(metadata or {})
    if ctx.api_key_id:
        meta["api_key_id"] = ctx.api_key_id
    await conn.execute(
        """INSERT INTO audit_logs (workspace_id, user_id, action, resource_type, resource_id,
                                   old_values, new_values, metadata, ip_address, user_agent)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::inet, $10)""",
        workspace_id,
        ctx.actor_id,
        action,
        resource_type,
        resource_id,
        audit_values(old),
        audit_values(new),
        meta or None,
        _valid_ip(ctx.ip),
        (ctx.user_agent or "")[:1000] or None,
    )


def audit_values(values: Mapping[str, object] | None) -> dict[str, object] | None:
    """Changed fields as an audit row stores them: datetimes and UUIDs as strings, binary values
    as their size. Idempotent: what it returns holds none of those types."""
    return None if values is None else {k: _plain(v) for k, v in values.items()}


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, UUID):
        return str(value)
    return value


def _valid_ip(ip: str | None) -> str | None:

    if not ip:
        return None
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class AuditFilter:
    action: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    user_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def encode_cursor(created_at: datetime, row_id: str) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, row_id = raw.split("|", 1)
        return datetime.fromisoformat(stamp), str(UUID(row_id))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed("cursor is not one this API returned", field="cursor") from None


async def list_audit_logs(
    conn: asyncpg.Connection, workspace_id: str, filters: AuditFilter, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, keyset-paginated on (created_at, id); returns the page and the next cursor."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValidationFailed(f"limit must be between 1 and {MAX_PAGE_SIZE}", field="limit")
    where = ["workspace_id = $1"]
    args: list[Any] = [workspace_id]

    def add(sql: str, value: Any) -> None:
        args.append(value)
        where.append(sql.replace("?", f"${len(args)}"))

    if filters.action:
        add("action = ?", filters.action)
    if filters.resource_type:
        add("resource_type = ?", filters.resource_type)
    if filters.resource_id:
        add("resource_id = ?::uuid", filters.resource_id)
    if filters.user_id:
        add("user_id = ?::uuid", filters.user_id)
    if filters.since:
        add("created_at >= ?", filters.since)
    if filters.until:
        add("created_at < ?", filters.until)
    if cursor:
        created_at, row_id = decode_cursor(cursor)
        args.extend([created_at, row_id])
        where.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)}::uuid)")
    args.append(limit + 1)
    rows = await conn.fetch(
        f"""SELECT id, user_id, action, resource_type, resource_id, old_values, new_values, metadata,
                   host(ip_address) AS ip_address, user_agent, created_at
            FROM audit_logs WHERE {" AND ".join(where)}
            ORDER BY created_at DESC, id DESC LIMIT ${len(args)}""",
        *args,
    )
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1]["created_at"], str(page[-1]["id"])) if len(rows) > limit else None
    return [_audit_json(r) for r in page], next_cursor


def _audit_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "user_id": str(row["user_id"]) if row["user_id"] else None,
        "action": row["action"],
        "resource_type": row["resource_type"],
        "resource_id": str(row["resource_id"]) if row["resource_id"] else None,
        "old_values": row["old_values"],
        "new_values": row["new_values"],
        "metadata": row["metadata"],
        "ip_address": row["ip_address"],
        "user_agent": row["user_agent"],
        "created_at": row["created_at"].isoformat(),
    }
