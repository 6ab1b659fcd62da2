"""Use cases on tags: create, rename or recolour, delete (each validated and audited in one
transaction), and tag or untag a link (the link's change announced on `links.changes` and
audited in the same transaction). Storage and the tag names' rules: engine/links/tags.py."""

from __future__ import annotations

import asyncpg

from engine.audit import AuditContext, write_audit
from engine.errors import ValidationFailed
from engine.links import tags
from engine.links.repository import get_link
from engine.outbox import link_change, write_outbox


async def create_tag(
    conn: asyncpg.Connection, ctx: AuditContext, workspace_id: str, name: str, color: str
) -> asyncpg.Record:
    name, color = tags.validate_tag_name(name), tags.validate_color(color)
    async with conn.transaction():
        row = await tags.insert_tag(conn, workspace_id, name, color)
        await write_audit(
            conn, ctx, workspace_id, "tag.created", "tag", str(row["id"]), new=tags.tag_json(row)
        )
    return row


async def update_tag(
    conn: asyncpg.Connection,
    ctx: AuditContext,
    workspace_id: str,
    tag_id: str,
    *,
    name: str | None = None,
    color: str | None = None,
) -> asyncpg.Record:
    """Rename and/or recolour (None: unchanged; at least one must change)."""
    changes = {}
    if name is not None:
        changes["name"] = tags.validate_tag_name(name)
    if color is not None:
        changes["color"] = tags.validate_color(color)
    if not changes:
        raise ValidationFailed("nothing to change", field="body")
    async with conn.transaction():
        old = await tags.get_tag(conn, workspace_id, tag_id)
        row = await tags.update_tag(conn, workspace_id, tag_id, changes)
        await write_audit(
            conn,
            ctx,
            workspace_id,
            "tag.updated",
            "tag",
            tag_id,
            old=tags.tag_json(old),
            new=tags.tag_json(row),
        )
    return row


async def delete_tag(conn: asyncpg.Connection, ctx: AuditContext, workspace_id: str, tag_id: str) -> None:
    async with conn.transaction():
        old = await tags.get_tag(conn, workspace_id, tag_id)
        await tags.delete_tag(conn, tag_id)
        await write_audit(conn, ctx, workspace_id, "tag.deleted", "tag", tag_id, old=tags.tag_json(old))


async def tag_link(
    conn: asyncpg.Connection,
    ctx: AuditContext,
    topic: str,
    workspace_id: str,
    link_id: str,
    tag_id: str,
    *,
    attach: bool,
) -> None:
    """Attach the tag to the link (or detach it); a change is announced and audited."""
    async with conn.transaction():
        link = await get_link(conn, workspace_id, link_id, lock=True)
        tag = await tags.get_tag(conn, workspace_id, tag_id)
        changed = (
            await tags.attach_tag(conn, link_id, tag_id)
            if attach
            else await tags.detach_tag(conn, link_id, tag_id)
        )
        if changed:
            await write_outbox(conn, topic, link_id, link_change("updated", link))
            await write_audit(
                conn,
                ctx,
                workspace_id,
                "link.tagged" if attach else "link.untagged",
                "link",
                link_id,
                metadata={"tag": tag["name"]},
            )
