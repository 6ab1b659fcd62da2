"""Listing and searching a workspace's links: filters, full-text search, sorting and pagination.

Two pagination modes: keyset (`cursor`, opaque base64 of the last row's sort key and id; stable
and cheap at any depth) and offset (`page`, with `total_count`, as the spec's
ListLinksForWorkspace does; only for shallow pages). Full-text search uses exactly the expression
of the GIN index `idx_links_search`, so PostgreSQL can use it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

import asyncpg
import orjson

from engine.errors import ValidationFailed
from engine.links.models import StoredLink
from engine.links.repository import LINK_COLUMNS
from engine.records import uuid_or_none

SortKey = Literal["created_at", "total_clicks", "title"]
SORT_KEYS: tuple[SortKey, ...] = ("created_at", "total_clicks", "title")
MAX_LIMIT = 100
MAX_OFFSET = 10_000
# Must match idx_links_search (migrations/postgres/000002) character for character.
SEARCH_VECTOR = "to_tsvector('english', COALESCE(title, '') || ' ' || COALESCE(description, ''))"
_SORT_SQL: dict[str, str] = {
    "created_at": "l.created_at",
    "total_clicks": "(l.total_clicks + l.imported_clicks)",  # as LINK_COLUMNS reports it
    "title": "COALESCE(l.title, '')",
}


@dataclass(frozen=True, slots=True)
class LinkFilters:
    tag: str | None = None  # tag name or id
    domain_id: str | None = None
    active: bool | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    search: str | None = None  # full-text over title and description
    q: str | None = None  # short_code prefix or URL substring
    deleted: bool = False  # the trash instead of live links


@dataclass(frozen=True, slots=True)
class LinkPage:
    rows: list[StoredLink]
    next_cursor: str | None = None
    total_count: int | None = None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _where(workspace_id: str, f: LinkFilters) -> tuple[list[str], list[Any]]:
    where = ["l.workspace_id = $1", "l.deleted_at IS NOT NULL" if f.deleted else "l.deleted_at IS NULL"]
    args: list[Any] = [workspace_id]

    def add(sql: str, *values: Any) -> None:
        for value in values:
            args.append(value)
            sql = sql.replace("?", f"${len(args)}", 1)
        where.append(sql)

    if f.tag:
        tag_id = uuid_or_none(f.tag)
        column = "t.id = ?::uuid" if tag_id else "t.name = ?"
        add(
            "EXISTS (SELECT 1 FROM link_tags lt JOIN tags t ON t.id = lt.tag_id"
            f" WHERE lt.link_id = l.id AND t.workspace_id = l.workspace_id AND {column})",
            tag_id or f.tag,
        )
    if f.domain_id:
        add("l.domain_id = ?::uuid", f.domain_id)
    if f.active is not None:
        add("l.is_active = ?", f.active)
    if f.created_from:
        add("l.created_at >= ?", f.created_from)
    if f.created_to:
        add("l.created_at < ?", f.created_to)
    if f.search:
        add(
            f"{SEARCH_VECTOR.replace('COALESCE(', 'COALESCE(l.')} @@ websearch_to_tsquery('english', ?)",
            f.search,
        )
    if f.q:
        pattern = _escape_like(f.q)
        add("(l.short_code LIKE ? || '%' OR l.url ILIKE '%' || ? || '%')", pattern, pattern)
    return where, args


def encode_cursor(sort: str, link: StoredLink) -> str:
    value = link.title or "" if sort == "title" else getattr(link, sort)
    if isinstance(value, datetime):
        value = value.isoformat()
    raw = orjson.dumps([sort, value, link.id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[Any, str]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        cursor_sort, value, row_id = data
        row_id = str(UUID(row_id))
        if cursor_sort != sort:
            raise ValueError("sort changed")
        if sort == "created_at":
            value = datetime.fromisoformat(value)
        elif sort == "total_clicks":
            value = int(value)
        elif not isinstance(value, str):
            raise ValueError("bad title key")
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise ValidationFailed("cursor is not one this API returned for this sort", field="cursor") from None
    return value, row_id


async def list_links(
    conn: asyncpg.Connection,
    workspace_id: str,
    filters: LinkFilters,
    *,
    sort: str = "created_at",
    order: str = "desc",
    limit: int = 20,
    cursor: str | None = None,
    page: int | None = None,
) -> LinkPage:
    if sort not in SORT_KEYS:
        raise ValidationFailed(f"sort must be one of {', '.join(SORT_KEYS)}", field="sort")
    if order not in ("asc", "desc"):
        raise ValidationFailed("order must be asc or desc", field="order")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    if cursor and page is not None:
        raise ValidationFailed("use either cursor or page, not both", field="cursor")
    where, args = _where(workspace_id, filters)
    key = _SORT_SQL[sort]
    direction = "DESC" if order == "desc" else "ASC"
    order_by = f"{key} {direction}, l.id {direction}"
    if page is not None:
        if page < 1 or (page - 1) * limit > MAX_OFFSET:
            raise ValidationFailed(f"page must be between 1 and {MAX_OFFSET // limit + 1}", field="page")
        args.extend([limit, (page - 1) * limit])
        rows = await conn.fetch(
            f"""SELECT {LINK_COLUMNS}, COUNT(*) OVER() AS total_count FROM links l
                WHERE {" AND ".join(where)} ORDER BY {order_by}
                LIMIT ${len(args) - 1} OFFSET ${len(args)}""",
            *args,
        )
        total = int(rows[0]["total_count"]) if rows else await _count(conn, where, args[:-2])
        return LinkPage([StoredLink.from_row(r) for r in rows], total_count=total)
    if cursor:
        value, row_id = decode_cursor(cursor, sort)
        args.extend([value, row_id])
        op = "<" if order == "desc" else ">"
        where.append(f"({key}, l.id) {op} (${len(args) - 1}, ${len(args)}::uuid)")
    args.append(limit + 1)
    rows = await conn.fetch(
        f"""SELECT {LINK_COLUMNS} FROM links l WHERE {" AND ".join(where)}
            ORDER BY {order_by} LIMIT ${len(args)}""",
        *args,
    )
    page_rows = [StoredLink.from_row(r) for r in rows[:limit]]
    next_cursor = encode_cursor(sort, page_rows[-1]) if len(rows) > limit else None
    return LinkPage(page_rows, next_cursor=next_cursor)


async def _count(conn: asyncpg.Connection, where: list[str], args: list[Any]) -> int:
    value = await conn.fetchval(f"SELECT count(*) FROM links l WHERE {' AND '.join(where)}", *args)
    return int(value) if isinstance(value, int | Decimal) else 0


async def iter_links(
    conn: asyncpg.Connection, workspace_id: str, filters: LinkFilters, *, batch: int = 500
) -> AsyncIterator[list[StoredLink]]:
    """Every matching link, oldest first, in batches (keyset, so memory stays flat)."""
    cursor: str | None = None
    while True:
        page = await list_links(
            conn,
            workspace_id,
            filters,
            sort="created_at",
            order="asc",
            limit=min(batch, MAX_LIMIT),
            cursor=cursor,
        )
        if page.rows:
            yield page.rows
        if page.next_cursor is None:
            return
        cursor = page.next_cursor
