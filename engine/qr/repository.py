"""QR codes in PostgreSQL (persistence only; the use cases are in engine/qr/service.py). A QR
code belongs to a link; workspace scoping goes through the link."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from engine.db.sql import fetch_one
from engine.errors import NotFound

QR_COLUMNS = (
    "q.id, q.link_id, q.qr_type, q.error_correction, q.foreground_color, q.background_color, q.logo_url, "
    "q.png_url, q.svg_url, q.scan_count, q.scale, q.border, q.logo_png, q.created_at, q.updated_at"
)
# What rendering needs besides the QR row: the link's code, destination and domain.
_RENDER_SELECT = f"""
SELECT {QR_COLUMNS}, l.short_code, l.url AS link_url, l.workspace_id, d.domain AS link_domain,
       d.ssl_status AS link_domain_ssl
FROM qr_codes q
JOIN links l ON l.id = q.link_id AND l.deleted_at IS NULL
LEFT JOIN domains d ON d.id = l.domain_id AND d.deleted_at IS NULL
"""
UPDATABLE = (
    "qr_type",
    "error_correction",
    "foreground_color",
    "background_color",
    "scale",
    "border",
    "logo_png",
)


async def insert_qr(
    conn: asyncpg.Connection, qr_id: str, link_id: str, png_url: str, svg_url: str, fields: Mapping[str, Any]
) -> None:
    columns = ["id", "link_id", "png_url", "svg_url", *fields]
    values = [qr_id, link_id, png_url, svg_url, *fields.values()]
    placeholders = ", ".join(f"${n}" for n in range(1, len(values) + 1))
    await conn.execute(f"INSERT INTO qr_codes ({', '.join(columns)}) VALUES ({placeholders})", *values)


async def get_qr(
    conn: asyncpg.Connection, qr_id: str, *, workspace_id: str | None, link_id: str | None = None
) -> asyncpg.Record:
    """One QR code with its link; `workspace_id=None` is the public (unguessable id) lookup."""
    return await fetch_one(
        conn,
        NotFound("QR code not found", field="qr_id"),
        f"{_RENDER_SELECT} WHERE q.id = $1 AND ($2::uuid IS NULL OR l.workspace_id = $2)"
        " AND ($3::uuid IS NULL OR q.link_id = $3)",
        qr_id,
        workspace_id,
        link_id,
    )


async def list_qr(conn: asyncpg.Connection, link_id: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(f"{_RENDER_SELECT} WHERE q.link_id = $1 ORDER BY q.created_at, q.id", link_id)
    )


async def update_qr(conn: asyncpg.Connection, qr_id: str, changes: Mapping[str, Any]) -> None:
    assert set(changes) <= set(UPDATABLE)
    sets = ", ".join(f"{column} = ${n}" for n, column in enumerate(changes, start=2))
    await conn.execute(
        f"UPDATE qr_codes SET {sets}, updated_at = NOW() WHERE id = $1", qr_id, *changes.values()
    )


async def delete_qr(conn: asyncpg.Connection, qr_id: str) -> None:
    await conn.execute("DELETE FROM qr_codes WHERE id = $1", qr_id)
