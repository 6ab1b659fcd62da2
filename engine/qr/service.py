"""Use cases on QR codes: validate the fields, check the link belongs to the workspace, store
(engine/qr/repository.py) and write the audit row in one transaction; and what a QR code is as
JSON and as an image (its content and style)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg

from engine.audit import AuditContext, write_audit
from engine.errors import ValidationFailed
from engine.links.repository import get_link
from engine.qr import repository
from engine.qr.marker import dynamic_content, qr_marker
from engine.qr.render import QrStyle, decode_logo, validate_color, validate_error_correction
from engine.records import record_to_json


def columns(values: Mapping[str, Any]) -> dict[str, Any]:
    """Validated request fields → qr_codes columns (the logo becomes logo_png bytes)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key == "logo":
            out["logo_png"] = decode_logo(value) if value else None
        elif value is None:
            raise ValidationFailed(f"{key} cannot be null", field=key)
        elif key == "error_correction":
            out[key] = validate_error_correction(value)
        elif key in ("foreground_color", "background_color"):
            out[key] = validate_color(value, field=key)
        else:
            out[key] = value
    return out


def public_urls(base_url: str, qr_id: str) -> tuple[str, str]:
    base = base_url.rstrip("/")
    return f"{base}/qr/{qr_id}.png", f"{base}/qr/{qr_id}.svg"


async def list_qr(conn: asyncpg.Connection, workspace_id: str, link_id: str) -> list[asyncpg.Record]:
    await get_link(conn, workspace_id, link_id)  # LinkNotFound for another workspace's link
    return await repository.list_qr(conn, link_id)


async def create_qr(
    conn: asyncpg.Connection,
    ctx: AuditContext,
    *,
    workspace_id: str,
    link_id: str,
    base_url: str,
    values: Mapping[str, Any],
) -> asyncpg.Record:
    """A QR code for the link from request fields (see `columns`)."""
    async with conn.transaction():
        fields = columns(values)
        await get_link(conn, workspace_id, link_id)  # LinkNotFound for another workspace's link
        qr_id = str(uuid.uuid4())
        png_url, svg_url = public_urls(base_url, qr_id)
        await repository.insert_qr(conn, qr_id, link_id, png_url, svg_url, fields)
        row = await repository.get_qr(conn, qr_id, workspace_id=workspace_id)
        await write_audit(
            conn, ctx, workspace_id, "qr_code.created", "qr_code", str(row["id"]),
            new={"link_id": link_id, **fields},
        )  # fmt: skip
    return row


async def update_qr(
    conn: asyncpg.Connection,
    ctx: AuditContext,
    *,
    workspace_id: str,
    link_id: str,
    qr_id: str,
    values: Mapping[str, Any],
) -> asyncpg.Record:
    """Change the request fields given (see `columns`)."""
    async with conn.transaction():
        changes = columns(values)
        await repository.get_qr(conn, qr_id, workspace_id=workspace_id, link_id=link_id)
        if changes:
            await repository.update_qr(conn, qr_id, changes)
        row = await repository.get_qr(conn, qr_id, workspace_id=workspace_id, link_id=link_id)
        await write_audit(conn, ctx, workspace_id, "qr_code.updated", "qr_code", qr_id, new=changes)
    return row


async def delete_qr(
    conn: asyncpg.Connection, ctx: AuditContext, *, workspace_id: str, link_id: str, qr_id: str
) -> None:
    async with conn.transaction():
        await repository.get_qr(conn, qr_id, workspace_id=workspace_id, link_id=link_id)
        await repository.delete_qr(conn, qr_id)
        await write_audit(conn, ctx, workspace_id, "qr_code.deleted", "qr_code", qr_id)


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
