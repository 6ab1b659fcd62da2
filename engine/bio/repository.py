"""Bio pages, their buttons and themes in PostgreSQL (persistence only; the use cases are in
engine/bio/service.py). Pages and themes are scoped by workspace, buttons by their page."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from engine.db.sql import fetch_one, set_clause
from engine.errors import Conflict, NotFound
from engine.records import uuid_or_none

PAGE_COLUMNS = (
    "p.id, p.workspace_id, p.slug, p.title, p.bio, p.avatar_url, p.theme_id, p.custom_css, p.meta_title, "
    "p.meta_description, p.og_image_url, p.is_published, p.created_at, p.updated_at"
)
LINK_COLUMNS = (
    "id, bio_page_id, title, url, icon, position, is_visible, visible_from, visible_until, click_count, "
    "created_at, updated_at"
)
THEME_COLUMNS = (
    "id, workspace_id, name, colors, font, created_at, updated_at, (workspace_id IS NULL) AS built_in"
)
PAGE_FIELDS = (
    "slug", "title", "bio", "avatar_url", "theme_id", "custom_css", "meta_title", "meta_description",
    "og_image_url", "is_published",
)  # fmt: skip
LINK_FIELDS = ("title", "url", "icon", "position", "is_visible", "visible_from", "visible_until")
THEME_FIELDS = ("name", "colors", "font")


def _sets(changes: Mapping[str, Any], allowed: Sequence[str], start: int) -> str:
    assert set(changes) <= set(allowed), set(changes) - set(allowed)
    return set_clause(changes, start)


async def theme_usable(conn: asyncpg.Connection, workspace_id: str, theme_id: object) -> bool:
    """Whether the theme is a built-in one or one of the workspace's."""
    found = await conn.fetchval(
        "SELECT 1 FROM bio_page_themes WHERE id = $1 AND (workspace_id IS NULL OR workspace_id = $2)",
        theme_id,
        workspace_id,
    )
    return bool(found)


async def insert_page(
    conn: asyncpg.Connection, workspace_id: str, fields: Mapping[str, Any]
) -> asyncpg.Record:
    columns = ["workspace_id", *fields]
    placeholders = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
    try:
        page_id = await conn.fetchval(
            f"INSERT INTO bio_pages ({', '.join(columns)}) VALUES ({placeholders}) RETURNING id",
            workspace_id,
            *fields.values(),
        )
    except asyncpg.UniqueViolationError:
        raise Conflict(f"slug {fields['slug']!r} is already taken", field="slug") from None
    return await get_page(conn, workspace_id, str(page_id))


async def list_pages(conn: asyncpg.Connection, workspace_id: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"SELECT {PAGE_COLUMNS} FROM bio_pages p WHERE p.workspace_id = $1 AND p.deleted_at IS NULL"
            " ORDER BY p.created_at, p.id",
            workspace_id,
        )
    )


async def get_page(conn: asyncpg.Connection, workspace_id: str, page_id: str) -> asyncpg.Record:
    return await fetch_one(
        conn,
        NotFound("bio page not found", field="page_id"),
        f"SELECT {PAGE_COLUMNS} FROM bio_pages p WHERE p.id = $1 AND p.workspace_id = $2 AND p.deleted_at IS NULL",
        page_id,
        workspace_id,
    )


async def update_page(
    conn: asyncpg.Connection, workspace_id: str, page_id: str, changes: Mapping[str, Any]
) -> None:
    try:
        await conn.execute(
            f"UPDATE bio_pages SET {_sets(changes, PAGE_FIELDS, 3)}, updated_at = NOW()"
            " WHERE id = $1 AND workspace_id = $2",
            page_id,
            workspace_id,
            *changes.values(),
        )
    except asyncpg.UniqueViolationError:
        raise Conflict(f"slug {changes['slug']!r} is already taken", field="slug") from None


async def delete_page(conn: asyncpg.Connection, workspace_id: str, page_id: str) -> None:
    """Soft delete. The slug becomes `~{id}` (not a valid slug) so it can be taken again."""
    done = await conn.fetchval(
        """UPDATE bio_pages SET deleted_at = NOW(), updated_at = NOW(), is_published = FALSE,
                  slug = '~' || id::text
           WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL RETURNING id""",
        page_id,
        workspace_id,
    )
    if done is None:
        raise NotFound("bio page not found", field="page_id")


async def published_page(
    conn: asyncpg.Connection, slug: str, workspace_id: str | None
) -> asyncpg.Record | None:
    """A published page with its theme, of a live (not deleted or suspended) workspace;
    `workspace_id` restricts it to a custom domain's owner."""
    return await conn.fetchrow(
        f"""SELECT {PAGE_COLUMNS}, t.colors AS theme_colors, t.font AS theme_font
            FROM bio_pages p
            JOIN workspaces w ON w.id = p.workspace_id AND w.deleted_at IS NULL AND w.suspended_at IS NULL
            LEFT JOIN bio_page_themes t ON t.id = p.theme_id
            WHERE p.slug = $1 AND p.is_published AND p.deleted_at IS NULL
              AND ($2::uuid IS NULL OR p.workspace_id = $2)""",
        slug,
        workspace_id,
    )


# Buttons ---------------------------------------------------------------------------------------


async def insert_link(conn: asyncpg.Connection, page_id: str, fields: Mapping[str, Any]) -> asyncpg.Record:
    """A button; without a position it goes last."""
    values = dict(fields)
    if values.get("position") is None:
        values["position"] = await conn.fetchval(
            "SELECT COALESCE(MAX(position) + 1, 0) FROM bio_page_links WHERE bio_page_id = $1", page_id
        )
    columns = ["bio_page_id", *values]
    placeholders = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
    row = await conn.fetchrow(
        f"INSERT INTO bio_page_links ({', '.join(columns)}) VALUES ({placeholders}) RETURNING {LINK_COLUMNS}",
        page_id,
        *values.values(),
    )
    assert row is not None
    return row


async def list_links(conn: asyncpg.Connection, page_id: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"SELECT {LINK_COLUMNS} FROM bio_page_links WHERE bio_page_id = $1 ORDER BY position, created_at, id",
            page_id,
        )
    )


async def get_link(conn: asyncpg.Connection, page_id: str, link_id: str) -> asyncpg.Record:
    return await fetch_one(
        conn,
        NotFound("bio link not found", field="link_id"),
        f"SELECT {LINK_COLUMNS} FROM bio_page_links WHERE id = $1 AND bio_page_id = $2",
        link_id,
        page_id,
    )


async def update_link(conn: asyncpg.Connection, link_id: str, changes: Mapping[str, Any]) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"UPDATE bio_page_links SET {_sets(changes, LINK_FIELDS, 2)}, updated_at = NOW() WHERE id = $1"
        f" RETURNING {LINK_COLUMNS}",
        link_id,
        *changes.values(),
    )
    assert row is not None
    return row


async def delete_link(conn: asyncpg.Connection, page_id: str, link_id: str) -> None:
    done = await conn.fetchval(
        "DELETE FROM bio_page_links WHERE id = $1 AND bio_page_id = $2 RETURNING id", link_id, page_id
    )
    if done is None:
        raise NotFound("bio link not found", field="link_id")


async def set_positions(conn: asyncpg.Connection, page_id: str, link_ids: Sequence[str]) -> None:
    """Positions 0..n-1 in the given order."""
    await conn.execute(
        """UPDATE bio_page_links l SET position = o.pos - 1, updated_at = NOW()
               FROM unnest($1::uuid[]) WITH ORDINALITY AS o(id, pos)
               WHERE l.id = o.id AND l.bio_page_id = $2""",
        list(link_ids),
        page_id,
    )


async def visible_links(conn: asyncpg.Connection, page_id: str, now: datetime) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"""SELECT {LINK_COLUMNS} FROM bio_page_links
                WHERE bio_page_id = $1 AND is_visible
                  AND (visible_from IS NULL OR visible_from <= $2) AND (visible_until IS NULL OR visible_until > $2)
                ORDER BY position, created_at, id""",
            page_id,
            now,
        )
    )


async def public_link(
    conn: asyncpg.Connection, slug: str, link_id: str, now: datetime
) -> asyncpg.Record | None:
    """A button of a published page that is visible right now, with its page's workspace."""
    return await conn.fetchrow(
        """SELECT l.id, l.url, p.workspace_id, p.slug FROM bio_page_links l
           JOIN bio_pages p ON p.id = l.bio_page_id AND p.is_published AND p.deleted_at IS NULL
           JOIN workspaces w ON w.id = p.workspace_id AND w.deleted_at IS NULL AND w.suspended_at IS NULL
           WHERE l.id = $1 AND p.slug = $2 AND l.is_visible
             AND (l.visible_from IS NULL OR l.visible_from <= $3) AND (l.visible_until IS NULL OR l.visible_until > $3)""",
        link_id,
        slug,
        now,
    )


async def page_ids_of_links(conn: asyncpg.Connection, link_ids: Sequence[str]) -> dict[str, str]:
    """bio_link_id -> bio_page_id of the given buttons that exist; ids that are not UUIDs (they may
    come from click events) are left out."""
    ids = sorted({i for i in map(uuid_or_none, link_ids) if i is not None})
    if not ids:
        return {}
    rows = await conn.fetch(
        "SELECT id::text, bio_page_id::text FROM bio_page_links WHERE id = ANY($1::uuid[])", ids
    )
    return {r["id"]: r["bio_page_id"] for r in rows}


# Themes ----------------------------------------------------------------------------------------


async def list_themes(conn: asyncpg.Connection, workspace_id: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"""SELECT {THEME_COLUMNS} FROM bio_page_themes WHERE workspace_id IS NULL OR workspace_id = $1
                ORDER BY workspace_id NULLS FIRST, name""",
            workspace_id,
        )
    )


async def get_theme(conn: asyncpg.Connection, workspace_id: str, theme_id: str) -> asyncpg.Record:
    return await fetch_one(
        conn,
        NotFound("theme not found", field="theme_id"),
        f"SELECT {THEME_COLUMNS} FROM bio_page_themes WHERE id = $1 AND (workspace_id IS NULL OR workspace_id = $2)",
        theme_id,
        workspace_id,
    )


async def insert_theme(
    conn: asyncpg.Connection, workspace_id: str, fields: Mapping[str, Any]
) -> asyncpg.Record:
    try:
        row = await conn.fetchrow(
            f"INSERT INTO bio_page_themes (workspace_id, name, colors, font) VALUES ($1, $2, $3, $4)"
            f" RETURNING {THEME_COLUMNS}",
            workspace_id,
            fields["name"],
            fields.get("colors") or {},
            fields.get("font") or {},
        )
    except asyncpg.UniqueViolationError:
        raise Conflict(f"a theme named {fields['name']!r} already exists", field="name") from None
    assert row is not None
    return row


async def update_theme(conn: asyncpg.Connection, theme_id: str, changes: Mapping[str, Any]) -> None:
    try:
        await conn.execute(
            f"UPDATE bio_page_themes SET {_sets(changes, THEME_FIELDS, 2)}, updated_at = NOW() WHERE id = $1",
            theme_id,
            *changes.values(),
        )
    except asyncpg.UniqueViolationError:
        raise Conflict(f"a theme named {changes['name']!r} already exists", field="name") from None


async def delete_theme(conn: asyncpg.Connection, theme_id: str) -> None:
    await conn.execute("DELETE FROM bio_page_themes WHERE id = $1", theme_id)
