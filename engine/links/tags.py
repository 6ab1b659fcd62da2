"""Workspace tags (name + #RRGGBB color) and their attachment to links in PostgreSQL, with the
rules of tag names and colours and their JSON form. The use cases (audit, `links.changes`) are in
engine/links/tag_service.py."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

from engine.db.sql import fetch_one
from engine.errors import Conflict, NotFound, ValidationFailed

MAX_TAG_NAME = 50
MAX_TAGS_PER_LINK = 20
DEFAULT_COLOR = "#6366f1"
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


class TagNotFound(NotFound):
    code = "tag_not_found"


class TagNameTaken(Conflict):
    code = "tag_name_taken"


def validate_tag_name(name: object, field: str = "name") -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationFailed(f"{field} must be a non-empty string", field=field)
    name = " ".join(name.split())
    if len(name) > MAX_TAG_NAME:
        raise ValidationFailed(f"{field} must be at most {MAX_TAG_NAME} characters", field=field)
    return name


def validate_color(color: object, field: str = "color") -> str:
    if not isinstance(color, str) or not _COLOR.match(color):
        raise ValidationFailed(f"{field} must be a #RRGGBB hex color", field=field)
    return color.lower()


def validate_tag_names(names: Iterable[object], field: str = "tags") -> list[str]:
    """Distinct, normalized tag names in input order."""
    out: list[str] = []
    for i, name in enumerate(names):
        clean = validate_tag_name(name, f"{field}[{i}]")
        if clean not in out:
            out.append(clean)
    if len(out) > MAX_TAGS_PER_LINK:
        raise ValidationFailed(f"a link can have at most {MAX_TAGS_PER_LINK} tags", field=field)
    return out


def tag_json(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    out = {"id": str(row["id"]), "name": row["name"], "color": row["color"]}
    if "link_count" in row:
        out["link_count"] = row["link_count"]
    if "created_at" in row:
        out["created_at"] = row["created_at"].isoformat()
    return out


async def list_tags(conn: asyncpg.Connection, workspace_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT t.id, t.name, t.color, t.created_at,
                  (SELECT count(*) FROM link_tags lt JOIN links l ON l.id = lt.link_id
                   WHERE lt.tag_id = t.id AND l.deleted_at IS NULL) AS link_count
           FROM tags t WHERE t.workspace_id = $1 ORDER BY t.name""",
        workspace_id,
    )
    return [tag_json(r) for r in rows]


async def get_tag(conn: asyncpg.Connection, workspace_id: str, tag_id: str) -> asyncpg.Record:
    return await fetch_one(
        conn,
        TagNotFound("tag not found"),
        "SELECT id, name, color, created_at FROM tags WHERE id = $1 AND workspace_id = $2",
        tag_id,
        workspace_id,
    )


async def insert_tag(conn: asyncpg.Connection, workspace_id: str, name: str, color: str) -> asyncpg.Record:
    try:
        row = await conn.fetchrow(
            "INSERT INTO tags (workspace_id, name, color) VALUES ($1, $2, $3) RETURNING id, name, color, created_at",
            workspace_id,
            name,
            color,
        )
    except asyncpg.UniqueViolationError:
        raise TagNameTaken(f"a tag named {name!r} already exists", field="name") from None
    assert row is not None
    return row


async def update_tag(
    conn: asyncpg.Connection, workspace_id: str, tag_id: str, changes: dict[str, str]
) -> asyncpg.Record:
    """Set `name` and/or `color`."""
    try:
        row = await conn.fetchrow(
            "UPDATE tags SET name = COALESCE($3, name), color = COALESCE($4, color)"
            " WHERE id = $1 AND workspace_id = $2 RETURNING id, name, color, created_at",
            tag_id,
            workspace_id,
            changes.get("name"),
            changes.get("color"),
        )
    except asyncpg.UniqueViolationError:
        raise TagNameTaken(f"a tag named {changes.get('name')!r} already exists", field="name") from None
    assert row is not None
    return row


async def delete_tag(conn: asyncpg.Connection, tag_id: str) -> None:
    await conn.execute("DELETE FROM tags WHERE id = $1", tag_id)


async def ensure_tags(conn: asyncpg.Connection, workspace_id: str, names: Sequence[str]) -> dict[str, str]:
    """Ids of the named tags, creating the missing ones with the default color: {name: id}."""
    if not names:
        return {}
    await conn.execute(
        "INSERT INTO tags (workspace_id, name) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING",
        workspace_id,
        list(names),
    )
    rows = await conn.fetch(
        "SELECT id, name FROM tags WHERE workspace_id = $1 AND name = ANY($2::text[])",
        workspace_id,
        list(names),
    )
    return {r["name"]: str(r["id"]) for r in rows}


async def set_link_tags(
    conn: asyncpg.Connection, workspace_id: str, link_id: str, names: Sequence[str]
) -> None:
    """Replace a link's tags with the named ones (created if missing)."""
    ids = await ensure_tags(conn, workspace_id, names)
    await conn.execute(
        "DELETE FROM link_tags WHERE link_id = $1 AND NOT (tag_id = ANY($2::uuid[]))",
        link_id,
        list(ids.values()),
    )
    await conn.execute(
        "INSERT INTO link_tags (link_id, tag_id) SELECT $1, unnest($2::uuid[]) ON CONFLICT DO NOTHING",
        link_id,
        list(ids.values()),
    )


async def attach_tag(conn: asyncpg.Connection, link_id: str, tag_id: str) -> bool:
    """Attach; False if it was attached already."""
    count = await conn.fetchval("SELECT count(*) FROM link_tags WHERE link_id = $1", link_id)
    if count >= MAX_TAGS_PER_LINK:
        raise ValidationFailed(f"a link can have at most {MAX_TAGS_PER_LINK} tags", field="tag_id")
    status = await conn.execute(
        "INSERT INTO link_tags (link_id, tag_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", link_id, tag_id
    )
    return bool(status.endswith(" 1"))


async def detach_tag(conn: asyncpg.Connection, link_id: str, tag_id: str) -> bool:
    status = await conn.execute("DELETE FROM link_tags WHERE link_id = $1 AND tag_id = $2", link_id, tag_id)
    return bool(status.endswith(" 1"))


async def tags_for_links(
    conn: asyncpg.Connection, link_ids: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """{link id: [tag, ...]} for a page of links (one query)."""
    out: dict[str, list[dict[str, Any]]] = {str(i): [] for i in link_ids}
    if not link_ids:
        return out
    rows = await conn.fetch(
        """SELECT lt.link_id, t.id, t.name, t.color FROM link_tags lt JOIN tags t ON t.id = lt.tag_id
           WHERE lt.link_id = ANY($1::uuid[]) ORDER BY t.name""",
        list(link_ids),
    )
    for r in rows:
        out[str(r["link_id"])].append(tag_json(r))
    return out
