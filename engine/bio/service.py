"""Use cases on bio pages, their buttons and themes: check what the tables cannot (the theme is
one the workspace may use, a button's visibility window, a reorder names every button once,
built-in themes stay as they are), store (engine/bio/repository.py) and write the audit row, in
one transaction; and a page as JSON. Request fields are validated into column values by the
caller (api/bio.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from engine.audit import AuditContext, write_audit
from engine.bio import repository
from engine.bio.validation import validate_window
from engine.errors import Forbidden, ValidationFailed
from engine.records import record_to_json


def page_json(row: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    return {**record_to_json(row), "url": f"{base_url.rstrip('/')}/@{row['slug']}"}


async def _check_theme(conn: asyncpg.Connection, workspace_id: str, theme_id: object) -> None:
    if theme_id is not None and not await repository.theme_usable(conn, workspace_id, theme_id):
        raise ValidationFailed("theme_id names no theme of this workspace", field="theme_id")


# Pages -----------------------------------------------------------------------------------------


async def create_page(
    conn: asyncpg.Connection, ctx: AuditContext, workspace_id: str, fields: Mapping[str, Any]
) -> asyncpg.Record:
    async with conn.transaction():
        await _check_theme(conn, workspace_id, fields.get("theme_id"))
        row = await repository.insert_page(conn, workspace_id, fields)
        await write_audit(conn, ctx, workspace_id, "bio_page.created", "bio_page", str(row["id"]), new=fields)
    return row


async def update_page(
    conn: asyncpg.Connection,
    ctx: AuditContext,
    workspace_id: str,
    page_id: str,
    changes: Mapping[str, Any],
) -> asyncpg.Record:
    async with conn.transaction():
        await repository.get_page(conn, workspace_id, page_id)
        if "theme_id" in changes:
            await _check_theme(conn, workspace_id, changes["theme_id"])
        if changes:
            await repository.update_page(conn, workspace_id, page_id, changes)
        row = await repository.get_page(conn, workspace_id, page_id)
        await write_audit(conn, ctx, workspace_id, "bio_page.updated", "bio_page", page_id, new=changes)
    return row


async def delete_page(conn: asyncpg.Connection, ctx: AuditContext, workspace_id: str, page_id: str) -> None:
    """Soft delete (the slug can be taken again)."""
    async with conn.transaction():
        await repository.delete_page(conn, workspace_id, page_id)
        await write_audit(conn, ctx, workspace_id, "bio_page.deleted", "bio_page", page_id)


# Buttons ---------------------------------------------------------------------------------------


async def list_links(conn: asyncpg.Connection, workspace_id: str, page_id: str) -> list[asyncpg.Record]:
    await repository.get_page(conn, workspace_id, page_id)
    return await repository.list_links(conn, page_id)


async def create_link(
    conn: asyncpg.Connection,
    ctx: AuditContext,
    workspace_id: str,
    page_id: str,
    fields: Mapping[str, Any],
) -> asyncpg.Record:
    async with conn.transaction():
        await repository.get_page(conn, workspace_id, page_id)
        row = await repository.insert_link(conn, page_id, fields)
        await write_audit(
            conn, ctx, workspace_id, "bio_link.created", "bio_link", str(row["id"]),
            new={"page_id": page_id, **fields},
        )  # fmt: skip
    return row


async def update_link(
    conn: asyncpg.Connection,
    ctx: AuditContext,
    workspace_id: str,
    page_id: str,
    link_id: str,
    changes: Mapping[str, Any],
) -> asyncpg.Record:
    """The visibility window is checked as it will be after the change."""
    async with conn.transaction():
        await repository.get_page(conn, workspace_id, page_id)
        current = await repository.get_link(conn, page_id, link_id)
        validate_window(
            changes.get("visible_from", current["visible_from"]),
            changes.get("visible_until", current["visible_until"]),
        )
        row = await repository.update_link(conn, link_id, changes) if changes else current
        await write_audit(conn, ctx, workspace_id, "bio_link.updated", "bio_link", link_id, new=changes)
    return row


async def delete_link(
    conn: asyncpg.Connection, ctx: AuditContext, workspace_id: str, page_id: str, link_id: str
) -> None:
    async with conn.transaction():
        await repository.get_page(conn, workspace_id, page_id)
        await repository.delete_link(conn, page_id, link_id)
        await write_audit(conn, ctx, workspace_id, "bio_link.deleted", "bio_link", link_id)


async def reorder_links(
    conn: asyncpg.Connection, ctx: AuditContext, workspace_id: str, page_id: str, link_ids: Sequence[str]
) -> list[asyncpg.Record]:
    """Positions 0..n-1 in the given order; the list must name every button of the page once."""
    async with conn.transaction():
        existing = {str(r["id"]) for r in await list_links(conn, workspace_id, page_id)}
        if len(set(link_ids)) != len(link_ids) or set(link_ids) != existing:
            raise ValidationFailed("link_ids must list every link of the page exactly once", field="link_ids")
        await repository.set_positions(conn, page_id, link_ids)
        rows = await repository.list_links(conn, page_id)
        await write_audit(
            conn,
            ctx,
            workspace_id,
            "bio_page.links_reordered",
            "bio_page",
            page_id,
            new={"link_ids": list(link_ids)},
        )
    return rows


# Themes ----------------------------------------------------------------------------------------


async def _own_theme(conn: asyncpg.Connection, workspace_id: str, theme_id: str) -> asyncpg.Record:
    row = await repository.get_theme(conn, workspace_id, theme_id)
    if row["built_in"]:
        raise Forbidden("built-in themes cannot be changed; create a workspace theme instead")
    return row


async def create_theme(
    conn: asyncpg.Connection, ctx: AuditContext, workspace_id: str, fields: Mapping[str, Any]
) -> asyncpg.Record:
    async with conn.transaction():
        row = await repository.insert_theme(conn, workspace_id, fields)
        await write_audit(
            conn, ctx, workspace_id, "bio_theme.created", "bio_theme", str(row["id"]), new=fields
        )
    return row


async def update_theme(
    conn: asyncpg.Connection,
    ctx: AuditContext,
    workspace_id: str,
    theme_id: str,
    changes: Mapping[str, Any],
) -> asyncpg.Record:
    async with conn.transaction():
        await _own_theme(conn, workspace_id, theme_id)
        if changes:
            await repository.update_theme(conn, theme_id, changes)
        row = await repository.get_theme(conn, workspace_id, theme_id)
        await write_audit(conn, ctx, workspace_id, "bio_theme.updated", "bio_theme", theme_id, new=changes)
    return row


async def delete_theme(conn: asyncpg.Connection, ctx: AuditContext, workspace_id: str, theme_id: str) -> None:
    async with conn.transaction():
        await _own_theme(conn, workspace_id, theme_id)
        await repository.delete_theme(conn, theme_id)
        await write_audit(conn, ctx, workspace_id, "bio_theme.deleted", "bio_theme", theme_id)
