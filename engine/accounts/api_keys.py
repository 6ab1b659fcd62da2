"""API key management (create, list, update, revoke) and batched usage counting.

Usage (`last_used_at`, `request_count`) is counted in memory per process and flushed in one
UPDATE every few seconds, so an API request never costs a write. Several api replicas each add
their own counts; a crash loses at most one flush interval of counts, never a key.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from engine.accounts.repository import create_api_key as _insert_key
from engine.audit import AuditContext, write_audit
from engine.auth.api_key_tokens import validate_scopes
from engine.auth.permissions import Action, Role, can, check_grant
from engine.billing.plans import limits_for
from engine.db.sql import fetch_one
from engine.errors import Forbidden, NotFound, ValidationFailed

log = logging.getLogger(__name__)

_KEY_COLUMNS = (
    "id, user_id, workspace_id, name, key_prefix, scopes, last_used_at, request_count, rate_limit, "
    "expires_at, created_at, revoked_at"
)


@dataclass(frozen=True, slots=True)
class KeyActor:
    """Who manages keys: the signed-in user, their role in the workspace and its plan."""

    user_id: str
    role: Role
    plan: str

    @property
    def sees_all(self) -> bool:
        """Admins and the owner list every key of the workspace; others only their own."""
        return can(self.role, Action.APIKEY_MANAGE_ALL)


def key_json(row: asyncpg.Record) -> dict[str, Any]:
    def iso(v: datetime | None) -> str | None:
        return v.isoformat() if v else None

    return {
        "id": str(row["id"]),
        "user_id": str(row["user_id"]),
        "workspace_id": str(row["workspace_id"]),
        "name": row["name"],
        "prefix": row["key_prefix"],
        "scopes": list(row["scopes"]),
        "last_used_at": iso(row["last_used_at"]),
        "request_count": row["request_count"],
        "rate_limit": row["rate_limit"],
        "expires_at": iso(row["expires_at"]),
        "created_at": iso(row["created_at"]),
        "revoked_at": iso(row["revoked_at"]),
    }


def _check_limits(expires_at: datetime | None, rate_limit: int | None, plan: str) -> None:
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise ValidationFailed("expires_at must be in the future", field="expires_at")
    most = limits_for(plan).api_requests_per_minute
    if rate_limit is not None and not 1 <= rate_limit <= most:
        raise ValidationFailed(
            f"rate_limit must be between 1 and {most} requests a minute on the {plan} plan",
            field="rate_limit",
        )


async def create_key(
    conn: asyncpg.Connection,
    ctx: AuditContext,
    actor: KeyActor,
    *,
    workspace_id: str,
    name: str,
    scopes: list[str],
    expires_at: datetime | None,
    rate_limit: int | None,
) -> tuple[dict[str, Any], str]:
    """The new key's metadata and its plaintext, which is returned this once and never stored.
    The key belongs to `actor`, who may grant only scopes their role covers."""
    checked = validate_scopes(scopes)
    if not checked:
        raise ValidationFailed("at least one scope is required", field="scopes")
    check_grant(actor.role, checked)
    _check_limits(expires_at, rate_limit, actor.plan)
    async with conn.transaction():
        key_id, key = await _insert_key(
            conn,
            user_id=actor.user_id,
            workspace_id=workspace_id,
            name=name,
            scopes=checked,
            expires_at=expires_at,
            rate_limit=rate_limit,
        )
        row = await _get(conn, workspace_id, key_id)
        await write_audit(
            conn,
            ctx,
            workspace_id,
            "api_key.created",
            "api_key",
            key_id,
            new={"name": name, "scopes": checked, "prefix": key.prefix},
        )
    return key_json(row), key.plaintext


async def _get(
    conn: asyncpg.Connection, workspace_id: str, key_id: str, owner: str | None = None
) -> asyncpg.Record:
    return await fetch_one(
        conn,
        NotFound("API key not found", field="key_id"),
        f"""SELECT {_KEY_COLUMNS} FROM api_keys
            WHERE id = $1 AND workspace_id = $2 AND ($3::uuid IS NULL OR user_id = $3::uuid)""",
        key_id,
        workspace_id,
        owner,
    )


async def get_key(
    conn: asyncpg.Connection, workspace_id: str, key_id: str, actor: KeyActor
) -> dict[str, Any]:
    return key_json(await _get(conn, workspace_id, key_id, _owner_filter(actor)))


def _owner_filter(actor: KeyActor) -> str | None:
    return None if actor.sees_all else actor.user_id


async def list_keys(conn: asyncpg.Connection, workspace_id: str, actor: KeyActor) -> list[dict[str, Any]]:
    owner = _owner_filter(actor)
    rows = await conn.fetch(
        f"""SELECT {_KEY_COLUMNS} FROM api_keys
            WHERE workspace_id = $1 AND ($2::uuid IS NULL OR user_id = $2::uuid)
            ORDER BY created_at DESC, id""",
        workspace_id,
        owner,
    )
    return [key_json(r) for r in rows]


async def update_key(
    conn: asyncpg.Connection,
    ctx: AuditContext,
    workspace_id: str,
    key_id: str,
    actor: KeyActor,
    changes: dict[str, Any],
) -> dict[str, Any]:
    """Rename, re-scope, change expiry or rate limit of a key that is not revoked. Only the key's
    creator changes it, within their role's scopes: an admin cannot widen the owner's key."""
    if "scopes" in changes:
        changes["scopes"] = validate_scopes(changes["scopes"])
        if not changes["scopes"]:
            raise ValidationFailed("at least one scope is required", field="scopes")
    _check_limits(changes.get("expires_at"), changes.get("rate_limit"), actor.plan)
    async with conn.transaction():
        old = await _get(conn, workspace_id, key_id, _owner_filter(actor))
        if old["revoked_at"] is not None:
            raise NotFound("API key not found", field="key_id")
        if str(old["user_id"]) != actor.user_id:
            raise Forbidden("only the key's creator may change it; revoke it instead", field="key_id")
        if "scopes" in changes:
            check_grant(actor.role, changes["scopes"])
        merged = {f: changes.get(f, old[f]) for f in ("name", "scopes", "expires_at", "rate_limit")}
        row = await conn.fetchrow(
            f"""UPDATE api_keys SET name = $2, scopes = $3, expires_at = $4, rate_limit = $5 WHERE id = $1
                RETURNING {_KEY_COLUMNS}""",
            key_id,
            merged["name"],
            merged["scopes"],
            merged["expires_at"],
            merged["rate_limit"],
        )
        fields = [f for f in merged if f in changes]
        await write_audit(
            conn,
            ctx,
            workspace_id,
            "api_key.updated",
            "api_key",
            key_id,
            old={f: _plain(old[f]) for f in fields},
            new={f: _plain(row[f]) for f in fields},
        )
    return key_json(row)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return list(value) if isinstance(value, list | tuple) else value


async def revoke_key(
    conn: asyncpg.Connection, ctx: AuditContext, workspace_id: str, key_id: str, actor: KeyActor
) -> None:
    """The key's creator revokes it, and so does the workspace owner (a leaked key)."""
    async with conn.transaction():
        row = await _get(conn, workspace_id, key_id, _owner_filter(actor))
        if row["revoked_at"] is not None:
            raise NotFound("API key not found", field="key_id")
        if str(row["user_id"]) != actor.user_id and actor.role is not Role.OWNER:
            raise Forbidden("only the key's creator or the workspace owner may revoke it", field="key_id")
        await conn.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", key_id)
        await write_audit(
            conn,
            ctx,
            workspace_id,
            "api_key.revoked",
            "api_key",
            key_id,
            old={"name": row["name"], "prefix": row["key_prefix"]},
        )


@dataclass(slots=True)
class _Usage:
    count: int
    last_used_at: datetime


class UsageRecorder:
    """Counts API key requests in memory; `flush` writes them all in one statement."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._pending: dict[str, _Usage] = {}

    def record(self, key_id: str, at: datetime | None = None) -> None:
        now = at or datetime.now(UTC)
        usage = self._pending.get(key_id)
        if usage is None:
            self._pending[key_id] = _Usage(1, now)
        else:
            usage.count += 1
            usage.last_used_at = max(usage.last_used_at, now)

    async def flush(self) -> int:
        """Write pending counts; on failure they are merged back for the next attempt."""
        if not self._pending:
            return 0
        batch, self._pending = self._pending, {}
        ids = list(batch)
        try:
            await self._pool.execute(
                """UPDATE api_keys k SET request_count = k.request_count + u.n,
                          last_used_at = GREATEST(k.last_used_at, u.at)
                   FROM unnest($1::uuid[], $2::bigint[], $3::timestamptz[]) AS u(id, n, at)
                   WHERE k.id = u.id""",
                ids,
                [batch[i].count for i in ids],
                [batch[i].last_used_at for i in ids],
            )
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("api key usage flush failed error=%s keys=%d", exc, len(ids))
            for key_id, usage in batch.items():
                merged = self._pending.setdefault(key_id, _Usage(0, usage.last_used_at))
                merged.count += usage.count
                merged.last_used_at = max(merged.last_used_at, usage.last_used_at)
            return 0
        return len(ids)

    async def run(self, interval: float) -> None:
        """Flush every `interval` seconds until cancelled; the final flush is the caller's."""
        while True:
            await asyncio.sleep(interval)
            await self.flush()
