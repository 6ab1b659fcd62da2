"""Workspaces, their members and invitations. Each mutation writes its audit row in its transaction.

Who may call what is decided before these functions run (`engine.auth.permissions.authorize`);
rules that depend on the *target* (nobody touches the owner's role, the owner cannot leave) use
the same module's `can_assign_role` / `can_remove_member`. Inviting counts members plus pending
invitations against the plan's `members` quota, joining counts members (402, field `members`).

An operator suspends a workspace (`suspend_workspace`, `linkrift workspace suspend`): its links
answer like deleted links until it is resumed, and API writes to its links are refused
(`check_links_writable`); reads stay allowed so the owner can export.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from engine.accounts.repository import create_workspace as _insert_workspace
from engine.audit import AuditContext, write_audit
from engine.auth.permissions import Action, Role, can_assign_role, can_remove_member, parse_role
from engine.auth.tokens import hash_token, new_one_time_token
from engine.billing.plans import check_quota
from engine.billing.usage import lock_quota
from engine.db.sql import fetch_one
from engine.errors import (
    Conflict,
    Forbidden,
    NotFound,
    ValidationFailed,
    WorkspaceNotFound,
    WorkspaceSuspended,
)
from engine.outbox import link_change, write_outbox_many
from engine.webhooks.emit import emit_event

_SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?$")
_WS_COLUMNS = "id, name, slug, owner_id, plan, settings, created_at, updated_at, suspended_at"
SUSPENDED_REASON_MAX = 500  # the column's CHECK (migration 000013)
# What a suspended workspace refuses (403 workspace_suspended); reads and exports stay allowed.
LINK_WRITES = frozenset({Action.LINK_CREATE, Action.LINK_UPDATE, Action.LINK_DELETE})


def validate_slug(slug: str) -> str:
    if not _SLUG_RE.fullmatch(slug):
        raise ValidationFailed("slug must be 1-100 lowercase letters, digits or inner dashes", field="slug")
    return slug


def workspace_json(row: asyncpg.Record | dict[str, Any], role: str | None = None) -> dict[str, Any]:
    out = {
        "id": str(row["id"]),
        "name": row["name"],
        "slug": row["slug"],
        "owner_id": str(row["owner_id"]),
        "plan": row["plan"],
        "settings": row["settings"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "suspended_at": row["suspended_at"].isoformat() if row["suspended_at"] else None,
    }
    if role is not None:
        out["role"] = role
    return out


async def _fetch(conn: asyncpg.Connection, workspace_id: str, *, lock: bool = False) -> asyncpg.Record:
    return await fetch_one(
        conn,
        WorkspaceNotFound("workspace not found", field="workspace_id"),
        f"SELECT {_WS_COLUMNS} FROM workspaces WHERE id = $1 AND deleted_at IS NULL"
        + (" FOR UPDATE" if lock else ""),
        workspace_id,
    )


async def get_workspace(conn: asyncpg.Connection, workspace_id: str) -> asyncpg.Record:
    return await _fetch(conn, workspace_id)


async def list_workspaces(conn: asyncpg.Connection, user_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT w.id, w.name, w.slug, w.owner_id, w.plan, w.settings, w.created_at, w.updated_at,
                  w.suspended_at, m.role
           FROM workspace_members m JOIN workspaces w ON w.id = m.workspace_id AND w.deleted_at IS NULL
           WHERE m.user_id = $1 ORDER BY m.joined_at, w.id""",
        user_id,
    )
    return [workspace_json(r, r["role"]) for r in rows]


async def create_workspace(
    conn: asyncpg.Connection, ctx: AuditContext, owner_id: str, name: str, slug: str | None
) -> asyncpg.Record:
    if slug is not None:
        validate_slug(slug)
    async with conn.transaction():
        if slug is not None and await conn.fetchval("SELECT 1 FROM workspaces WHERE slug = $1", slug):
            raise Conflict("slug is taken", field="slug")
        try:
            workspace_id = await _insert_workspace(conn, owner_id, name, slug)
        except asyncpg.UniqueViolationError:
            raise Conflict("slug is taken", field="slug") from None
        row = await _fetch(conn, workspace_id)
        await write_audit(
            conn,
            ctx,
            workspace_id,
            "workspace.created",
            "workspace",
            workspace_id,
            new={"name": name, "slug": row["slug"]},
        )
    return row


async def update_workspace(
    conn: asyncpg.Connection, ctx: AuditContext, workspace_id: str, changes: dict[str, Any]
) -> asyncpg.Record:
    """Apply name / slug / settings (settings are merged key by key; a null value removes a key)."""
    if "slug" in changes:
        validate_slug(changes["slug"])
    async with conn.transaction():
        old = await _fetch(conn, workspace_id, lock=True)
        settings = dict(old["settings"])
        for key, value in (changes.get("settings") or {}).items():
            if value is None:
                settings.pop(key, None)
            else:
                settings[key] = value
        try:
            row = await conn.fetchrow(
                f"""UPDATE workspaces SET name = $2, slug = $3, settings = $4, updated_at = now()
                    WHERE id = $1 RETURNING {_WS_COLUMNS}""",
                workspace_id,
                changes.get("name", old["name"]),
                changes.get("slug", old["slug"]),
                settings,
            )
        except asyncpg.UniqueViolationError:
            raise Conflict("slug is taken", field="slug") from None
        fields = ("name", "slug", "settings")
        await write_audit(
            conn,
            ctx,
            workspace_id,
            "workspace.updated",
            "workspace",
            workspace_id,
            old={f: old[f] for f in fields},
            new={f: row[f] for f in fields},
        )
    return row


async def delete_workspace(
    conn: asyncpg.Connection, ctx: AuditContext, workspace_id: str, links_topic: str
) -> None:
    """Soft-delete the workspace and revoke its keys. Its links stop resolving at once (the
    redirect's query joins live workspaces) and a `workspace_deleted` change per live link has the
    link-change agent drop them from every cache tier (it is no webhook event)."""
    async with conn.transaction():
        old = await _fetch(conn, workspace_id, lock=True)
        await conn.execute(
            "UPDATE workspaces SET deleted_at = now(), updated_at = now() WHERE id = $1", workspace_id
        )
        await _announce_links(conn, workspace_id, links_topic, "workspace_deleted")
        await conn.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE workspace_id = $1 AND revoked_at IS NULL",
            workspace_id,
        )
        await write_audit(
            conn,
            ctx,
            workspace_id,
            "workspace.deleted",
            "workspace",
            workspace_id,
            old={"name": old["name"], "slug": old["slug"]},
        )


async def _announce_links(conn: asyncpg.Connection, workspace_id: str, links_topic: str, event: str) -> int:
    """One `links.changes` event per live link of the workspace (in the caller's transaction), so
    the link-change agent drops every cached entry of them; returns how many."""
    links = await conn.fetch(
        "SELECT id, workspace_id, short_code, domain_id FROM links WHERE workspace_id = $1 AND deleted_at IS NULL",
        workspace_id,
    )
    await write_outbox_many(conn, [(links_topic, str(r["id"]), link_change(event, r)) for r in links])
    return len(links)


def validate_suspended_reason(reason: str) -> str:
    text = reason.strip()
    if not text or len(text) > SUSPENDED_REASON_MAX:
        raise ValidationFailed(f"reason must be 1-{SUSPENDED_REASON_MAX} characters", field="reason")
    return text


async def suspend_workspace(
    conn: asyncpg.Connection, ctx: AuditContext, workspace_id: str, reason: str, links_topic: str
) -> asyncpg.Record:
    """Suspend the workspace (an operator's act, e.g. for unpaid bills or abuse). Its links stop
    resolving at once (the redirect's query joins only unsuspended workspaces) and a
    `workspace_suspended` change per live link has the link-change agent drop them from every
    cache tier; API writes to its links answer 403 `workspace_suspended` until it is resumed."""
    text = validate_suspended_reason(reason)
    async with conn.transaction():
        old = await _fetch(conn, workspace_id, lock=True)
        if old["suspended_at"] is not None:
            raise Conflict("workspace is already suspended", field="workspace_id")
        row = await conn.fetchrow(
            f"""UPDATE workspaces SET suspended_at = now(), suspended_reason = $2, updated_at = now()
                WHERE id = $1 RETURNING {_WS_COLUMNS}""",
            workspace_id,
            text,
        )
        links = await _announce_links(conn, workspace_id, links_topic, "workspace_suspended")
        await write_audit(
            conn,
            ctx,
            workspace_id,
            "workspace.suspended",
            "workspace",
            workspace_id,
            new={"suspended_reason": text},
            metadata={"links": links},
        )
    return row


async def resume_workspace(
    conn: asyncpg.Connection, ctx: AuditContext, workspace_id: str, links_topic: str
) -> asyncpg.Record:
    """Lift a suspension. A `workspace_resumed` change per live link clears any negative cache
    entry, so the links resolve (and are cached) again on their next request."""
    async with conn.transaction():
        old = await fetch_one(
            conn,
            WorkspaceNotFound("workspace not found", field="workspace_id"),
            "SELECT suspended_at, suspended_reason FROM workspaces WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
            workspace_id,
        )
        if old["suspended_at"] is None:
            raise Conflict("workspace is not suspended", field="workspace_id")
        row = await conn.fetchrow(
            f"""UPDATE workspaces SET suspended_at = NULL, suspended_reason = NULL, updated_at = now()
                WHERE id = $1 RETURNING {_WS_COLUMNS}""",
            workspace_id,
        )
        links = await _announce_links(conn, workspace_id, links_topic, "workspace_resumed")
        await write_audit(
            conn,
            ctx,
            workspace_id,
            "workspace.resumed",
            "workspace",
            workspace_id,
            old={"suspended_reason": old["suspended_reason"]},
            metadata={"links": links},
        )
    return row


async def check_links_writable(conn: asyncpg.Connection, workspace_id: str) -> None:
    """403 `workspace_suspended` while the workspace is suspended (reads stay allowed)."""
    if await conn.fetchval("SELECT suspended_at IS NOT NULL FROM workspaces WHERE id = $1", workspace_id):
        raise WorkspaceSuspended(
            "this workspace is suspended: its links can be read and exported but not changed",
            field="workspace_id",
        )


# --- members ------------------------------------------------------------------------------------


async def list_members(conn: asyncpg.Connection, workspace_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT m.user_id, u.email, u.name, m.role, m.invited_by, m.joined_at
           FROM workspace_members m JOIN users u ON u.id = m.user_id AND u.deleted_at IS NULL
           WHERE m.workspace_id = $1 ORDER BY m.joined_at, m.user_id""",
        workspace_id,
    )
    return [_member_json(r) for r in rows]


def _member_json(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "user_id": str(r["user_id"]),
        "email": r["email"],
        "name": r["name"],
        "role": r["role"],
        "invited_by": str(r["invited_by"]) if r["invited_by"] else None,
        "joined_at": r["joined_at"].isoformat(),
    }


async def _member_role(conn: asyncpg.Connection, workspace_id: str, user_id: str) -> Role:
    role = await conn.fetchval(
        "SELECT role FROM workspace_members WHERE workspace_id = $1 AND user_id = $2 FOR UPDATE",
        workspace_id,
        user_id,
    )
    if role is None:
        raise NotFound("member not found", field="user_id")
    return Role(role)


async def change_role(
    conn: asyncpg.Connection,
    ctx: AuditContext,
    workspace_id: str,
    actor_role: Role,
    user_id: str,
    new_role: str,
) -> None:
    role = parse_role(new_role)
    async with conn.transaction():
        current = await _member_role(conn, workspace_id, user_id)
        if not can_assign_role(actor_role, current, role):
            raise Forbidden("this role change is not allowed; ownership moves only by transfer", field="role")
        await conn.execute(
            "UPDATE workspace_members SET role = $3 WHERE workspace_id = $1 AND user_id = $2",
            workspace_id,
            user_id,
            role.value,
        )
        await write_audit(
            conn,
            ctx,
            workspace_id,
            "member.role_changed",
            "user",
            user_id,
            old={"role": current.value},
            new={"role": role.value},
        )


async def remove_member(
    conn: asyncpg.Connection, ctx: AuditContext, workspace_id: str, actor_role: Role, user_id: str
) -> None:
    """Remove someone (admins and the owner), or leave when `user_id` is the actor.

    The owner can neither leave nor be removed: ownership must be transferred first, so a
    workspace never loses its last owner."""
    leaving = user_id == ctx.actor_id
    async with conn.transaction():
        target = await _member_role(conn, workspace_id, user_id)
        if target is Role.OWNER:
            raise Conflict("the owner cannot leave or be removed; transfer ownership first", field="user_id")
        if not leaving and not can_remove_member(actor_role, target):
            raise Forbidden("you may not remove this member", field="user_id")
        await conn.execute(
            "DELETE FROM workspace_members WHERE workspace_id = $1 AND user_id = $2", workspace_id, user_id
        )
        # Their keys act with their role in this workspace; without a role they must stop working.
        await conn.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE workspace_id = $1 AND user_id = $2 AND revoked_at IS NULL",
            workspace_id,
            user_id,
        )
        await write_audit(
            conn,
            ctx,
            workspace_id,
            "member.left" if leaving else "member.removed",
            "user",
            user_id,
            old={"role": target.value},
        )


async def transfer_ownership(
    conn: asyncpg.Connection, ctx: AuditContext, workspace_id: str, new_owner: str
) -> None:
    """The new owner must already be a member; the previous owner stays on as admin."""
    if new_owner == ctx.actor_id:
        raise ValidationFailed("you already own this workspace", field="user_id")
    async with conn.transaction():
        ws = await _fetch(conn, workspace_id, lock=True)
        await _member_role(conn, workspace_id, new_owner)
        old_owner = str(ws["owner_id"])
        await conn.execute(
            "UPDATE workspace_members SET role = 'admin' WHERE workspace_id = $1 AND user_id = $2",
            workspace_id,
            old_owner,
        )
        await conn.execute(
            "UPDATE workspace_members SET role = 'owner' WHERE workspace_id = $1 AND user_id = $2",
            workspace_id,
            new_owner,
        )
        await conn.execute(
            "UPDATE workspaces SET owner_id = $2, updated_at = now() WHERE id = $1", workspace_id, new_owner
        )
        await write_audit(
            conn,
            ctx,
            workspace_id,
            "workspace.transferred",
            "workspace",
            workspace_id,
            old={"owner_id": old_owner},
            new={"owner_id": new_owner},
        )


# --- invitations --------------------------------------------------------------------------------


def _invitation_json(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(r["id"]),
        "workspace_id": str(r["workspace_id"]),
        "email": r["email"],
        "role": r["role"],
        "invited_by": str(r["invited_by"]) if r["invited_by"] else None,
        "expires_at": r["expires_at"].isoformat(),
        "accepted_at": r["accepted_at"].isoformat() if r["accepted_at"] else None,
        "created_at": r["created_at"].isoformat(),
    }


async def invite(
    conn: asyncpg.Connection, ctx: AuditContext, workspace_id: str, email: str, role: str, ttl: timedelta
) -> tuple[dict[str, Any], str]:
    """Returns the invitation and its plaintext token (for the email only)."""
    parsed = parse_role(role)
    if parsed is Role.OWNER:
        raise ValidationFailed("ownership is transferred, not granted by invitation", field="role")
    token = new_one_time_token()
    async with conn.transaction():
        if await conn.fetchval(
            """SELECT 1 FROM workspace_members m JOIN users u ON u.id = m.user_id
               WHERE m.workspace_id = $1 AND u.email = $2""",
            workspace_id,
            email,
        ):
            raise Conflict("this person is already a member", field="email")
        plan = await lock_quota(conn, workspace_id, "members")
        seats = await conn.fetchval(
            """SELECT (SELECT count(*) FROM workspace_members WHERE workspace_id = $1)
                    + (SELECT count(*) FROM workspace_invitations
                       WHERE workspace_id = $1 AND accepted_at IS NULL AND expires_at > now())""",
            workspace_id,
        )
        check_quota(plan, "members", int(seats))
        row = await conn.fetchrow(
            """INSERT INTO workspace_invitations (workspace_id, email, role, token_hash, invited_by, expires_at)
               VALUES ($1, $2, $3, $4, $5, $6) RETURNING *""",
            workspace_id,
            email,
            parsed.value,
            hash_token(token),
            ctx.actor_id,
            datetime.now(UTC) + ttl,
        )
        await write_audit(
            conn,
            ctx,
            workspace_id,
            "member.invited",
            "invitation",
            str(row["id"]),
            new={"email": email, "role": parsed.value},
        )
        invitation = _invitation_json(row)
        await emit_event(
            conn,
            workspace_id,
            "member.invited",
            subject_id=invitation["id"],
            at=row["created_at"],
            data={
                "invitation_id": invitation["id"],
                "workspace_id": workspace_id,
                "email": email,
                "role": parsed.value,
                "invited_by": invitation["invited_by"],
                "expires_at": invitation["expires_at"],
            },
        )
    return invitation, token


async def list_invitations(conn: asyncpg.Connection, workspace_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT * FROM workspace_invitations
           WHERE workspace_id = $1 AND accepted_at IS NULL AND expires_at > now() ORDER BY created_at""",
        workspace_id,
    )
    return [_invitation_json(r) for r in rows]


async def revoke_invitation(
    conn: asyncpg.Connection, ctx: AuditContext, workspace_id: str, invitation_id: str
) -> None:
    async with conn.transaction():
        row = await fetch_one(
            conn,
            NotFound("invitation not found", field="invitation_id"),
            "DELETE FROM workspace_invitations WHERE id = $1 AND workspace_id = $2 AND accepted_at IS NULL "
            "RETURNING email, role",
            invitation_id,
            workspace_id,
        )
        await write_audit(
            conn,
            ctx,
            workspace_id,
            "invitation.revoked",
            "invitation",
            invitation_id,
            old={"email": row["email"], "role": row["role"]},
        )


async def accept_invitation(conn: asyncpg.Connection, ctx: AuditContext, user_email: str, token: str) -> str:
    """Join the workspace; the invitation must be addressed to the signed-in user's email."""
    assert ctx.actor_id is not None
    async with conn.transaction():
        row = await conn.fetchrow(
            """SELECT i.* FROM workspace_invitations i
               JOIN workspaces w ON w.id = i.workspace_id AND w.deleted_at IS NULL
               WHERE i.token_hash = $1 AND i.accepted_at IS NULL AND i.expires_at > now() FOR UPDATE OF i""",
            hash_token(token),
        )
        if row is None or row["email"] != user_email:
            raise NotFound("invitation not found: invalid, used, expired or for another email", field="token")
        workspace_id = str(row["workspace_id"])
        plan = await lock_quota(conn, workspace_id, "members")
        counts = await conn.fetchrow(
            "SELECT count(*) AS members, count(*) FILTER (WHERE user_id = $2) AS me"
            " FROM workspace_members WHERE workspace_id = $1",
            workspace_id,
            ctx.actor_id,
        )
        assert counts is not None
        if not counts["me"]:  # an existing member gets the 409 below, not a quota error
            check_quota(plan, "members", int(counts["members"]))
        inserted = await conn.fetchval(
            """INSERT INTO workspace_members (workspace_id, user_id, role, invited_by) VALUES ($1, $2, $3, $4)
               ON CONFLICT (workspace_id, user_id) DO NOTHING RETURNING 1""",
            workspace_id,
            ctx.actor_id,
            row["role"],
            row["invited_by"],
        )
        if not inserted:
            raise Conflict("you are already a member of this workspace", field="token")
        await conn.execute("UPDATE workspace_invitations SET accepted_at = now() WHERE id = $1", row["id"])
        await write_audit(
            conn,
            ctx,
            workspace_id,
            "member.joined",
            "user",
            ctx.actor_id,
            new={"role": row["role"]},
            metadata={"invitation_id": str(row["id"])},
        )
    return workspace_id
