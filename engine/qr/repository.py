"""QR codes in PostgreSQL. A QR code belongs to a link; workspace scoping goes through the link."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg

from engine.db.sql import fetch_one
from engine.errors import NotFound
from engine.links.repository import get_link
from engine.qr.marker import dynamic_content, qr_marker
from engine.qr.render import QrStyle, validate_error_correction
from engine.records import record_to_json

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


def public_urls(base_url: str, qr_id: str) -> tuple[str, str]:
    base = base_url.rstrip("/")
    return f"{base}/qr/{qr_id}.png", f"{base}/qr/{qr_id}.svg"


async def create_qr(
    conn: asyncpg.Connection, *, workspace_id: str, link_id: str, base_url: str, fields: Mapping[str, Any]
) -> asyncpg.Record:
    await get_link(conn, workspace_id, link_id)  # LinkNotFound for another workspace's link
    qr_id = str(uuid.uuid4())
    png_url, svg_url = public_urls(base_url, qr_id)
    columns = ["id", "link_id", "png_url", "svg_url", *fields]
    values = [qr_id, link_id, png_url, svg_url, *fields.values()]
    placeholders = ", ".join(f"${n}" for n in range(1, len(values) + 1))
    await conn.execute(f"INSERT INTO qr_codes ({', '.join(columns)}) VALUES ({placeholders})", *values)
    return await get_qr(conn, qr_id, workspace_id=workspace_id)


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


async def list_qr(conn: asyncpg.Connection, workspace_id: str, link_id: str) -> list[asyncpg.Record]:
    await get_link(conn, workspace_id, link_id)
    return list(
        await conn.fetch(f"{_RENDER_SELECT} WHERE q.link_id = $1 ORDER BY q.created_at, q.id", link_id)
    )


async def update_qr(
    conn: asyncpg.Connection, *, workspace_id: str, link_id: str, qr_id: str, changes: Mapping[str, Any]
) -> asyncpg.Record:
    await get_qr(conn, qr_id, workspace_id=workspace_id, link_id=link_id)
    if changes:
        assert set(changes) <= set(UPDATABLE)
        sets = ", ".join(f"{column} = ${n}" for n, column in enumerate(changes, start=2))
        await conn.execute(
            f"UPDATE qr_codes SET {sets}, updated_at = NOW() WHERE id = $1", qr_id, *changes.values()
        )
    return await get_qr(conn, qr_id, workspace_id=workspace_id, link_id=link_id)


async def delete_qr(conn: asyncpg.Connection, *, workspace_id: str, link_id: str, qr_id: str) -> None:
    await get_qr(conn, qr_id, workspace_id=workspace_id, link_id=link_id)
    await conn.execute("DELETE FROM qr_codes WHERE id = $1", qr_id)


def style_of(row: Mapping[str, Any]) -> QrStyle:
    return QrStyle(
        error_correction=validate_error_correction(row["error_correction"]),
        foreground=row["foreground_color"],
        background=row["background_color"],
        scale=row["scale"],
        border=row["border"],
        logo_png=bytes(row["logo_png"]) if row["logo_png"] else None,
    )


def short_url(row: Mapping[str, Any], base_url: str) -> str:
    if row["link_domain"]:
        scheme = "https" if row["link_domain_ssl"] == "active" else "http"
        return f"{scheme}://{row['link_domain']}/{row['short_code']}"
    return f"{base_url.rstrip('/')}/{row['short_code']}"


def qr_content(row: Mapping[str, Any], base_url: str) -> str:
    """Static codes encode the destination itself; dynamic ones the short URL with a scan marker."""
    if row["qr_type"] == "static":
        return str(row["link_url"])
    return dynamic_content(short_url(row, base_url), str(row["id"]))


def qr_to_json(row: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    out = record_to_json(
        row, exclude=("link_url", "short_code", "workspace_id", "link_domain", "link_domain_ssl")
    )
    out["has_logo"] = row["logo_png"] is not None
    out["content"] = qr_content(row, base_url)
    out["scan_marker"] = qr_marker(str(row["id"])) if row["qr_type"] == "dynamic" else None
    out["effective_error_correction"] = style_of(row).effective_error
    return out
