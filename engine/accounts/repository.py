"""Accounts in PostgreSQL: users, workspaces, memberships and API keys."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from engine.auth.api_key_tokens import GeneratedKey, generate_api_key, looks_like_api_key, verify_api_key
from engine.auth.permissions import Role
from engine.errors import Unauthorized


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling the API: a user, in one workspace, with a role and (for keys) scopes."""

    user_id: str
    workspace_id: str
    role: Role
    scopes: frozenset[str] | None  # None for a user session (role decides everything)
    api_key_id: str | None = None
    rate_limit: int | None = None
    session_id: str | None = None  # the sign-in session, for a user's JWT
    plan: str = "free"
    key_prefix: str | None = None  # for an API key: its display prefix (rate-limit bucket)


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:90] or "workspace"


async def create_user(conn: asyncpg.Connection, email: str, password_hash: str, name: str) -> str:
    user_id = await conn.fetchval(
        "INSERT INTO users (email, password_hash, name) VALUES ($1, $2, $3) RETURNING id",
        email.strip().lower(),
        password_hash,
        name,
    )
    return str(user_id)


async def create_workspace(
    conn: asyncpg.Connection, owner_id: str, name: str, slug: str | None = None
) -> str:
    base = slug or slugify(name)
    candidate = base
    for n in range(2, 100):
        exists = await conn.fetchval("SELECT 1 FROM workspaces WHERE slug = $1", candidate)
        if not exists:
            break
        candidate = f"{base}-{n}"
    async with conn.transaction():
        ws_id = await conn.fetchval(
            "INSERT INTO workspaces (name, slug, owner_id) VALUES ($1, $2, $3) RETURNING id",
            name,
            candidate,
            owner_id,
        )
        await conn.execute(
            "INSERT INTO workspace_members (workspace_id, user_id, role) VALUES ($1, $2, 'owner')",
            ws_id,
            owner_id,
        )
    return str(ws_id)


async def create_api_key(
    conn: asyncpg.Connection,
    *,
    user_id: str,
    workspace_id: str,
    name: str,
    scopes: list[str],
    expires_at: datetime | None = None,
    rate_limit: int | None = None,
) -> tuple[str, GeneratedKey]:
    key = generate_api_key()
    key_id = await conn.fetchval(
        """INSERT INTO api_keys (user_id, workspace_id, name, key_hash, key_prefix, scopes, expires_at, rate_limit)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id""",
        user_id,
        workspace_id,
        name,
        key.key_hash,
        key.prefix,
        scopes,
        expires_at,
        rate_limit,
    )
    return str(key_id), key


async def authenticate_api_key(conn: asyncpg.Connection, plaintext: str) -> Principal:
    """Resolve a bearer API key to its principal; any failure is the same 401."""
    if not looks_like_api_key(plaintext):
        raise Unauthorized("invalid API key")
    # Looked up by the display prefix (indexed), then the hash compared in constant time.
    rows = await conn.fetch(
        """SELECT k.id, k.user_id, k.workspace_id, k.scopes, k.expires_at, k.revoked_at, k.rate_limit,
                  k.key_hash, k.key_prefix, m.role, w.plan
           FROM api_keys k
           JOIN workspace_members m ON m.workspace_id = k.workspace_id AND m.user_id = k.user_id
           JOIN workspaces w ON w.id = k.workspace_id AND w.deleted_at IS NULL
           JOIN users u ON u.id = k.user_id AND u.deleted_at IS NULL
           WHERE k.key_prefix = $1""",
        plaintext[:12],
    )
    row = next((r for r in rows if verify_api_key(plaintext, r["key_hash"])), None)
    if row is None or row["revoked_at"] is not None:
        raise Unauthorized("invalid API key")
    if row["expires_at"] is not None and row["expires_at"] <= datetime.now(UTC):
        raise Unauthorized("API key expired")
    return Principal(
        user_id=str(row["user_id"]),
        workspace_id=str(row["workspace_id"]),
        role=Role(row["role"]),
        scopes=frozenset(row["scopes"]),
        api_key_id=str(row["id"]),
        rate_limit=row["rate_limit"],
        plan=row["plan"],
        key_prefix=row["key_prefix"],
    )


async def user_membership(
    conn: asyncpg.Connection, user_id: str, workspace_id: str | None
) -> tuple[str, Role, str] | None:
    """(workspace_id, role, plan) of the given workspace, or of the user's first one when None;
    None when the user is not a member of it (or it is deleted)."""
    row = await conn.fetchrow(
        """SELECT m.workspace_id, m.role, w.plan FROM workspace_members m
           JOIN workspaces w ON w.id = m.workspace_id AND w.deleted_at IS NULL
           WHERE m.user_id = $1 AND ($2::uuid IS NULL OR m.workspace_id = $2::uuid)
           ORDER BY m.joined_at, m.workspace_id LIMIT 1""",
        user_id,
        workspace_id,
    )
    return (str(row["workspace_id"]), Role(row["role"]), row["plan"]) if row else None
