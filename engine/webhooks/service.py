"""Use cases on webhooks: create one with a new secret (shown once), change it, delete it, rotate
its secret (the old one keeps signing for a grace period), queue a test delivery, each with its
audit row in the same transaction; and webhooks and deliveries as JSON. The url and events are
validated by the caller with engine.webhooks.targets / engine.webhooks.events before this (the
target check resolves DNS, which must not hold a database connection). Storage:
engine/webhooks/repository.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from engine.audit import AuditContext, write_audit
from engine.auth.crypto import SecretBox
from engine.auth.webhook_signing import generate_webhook_secret
from engine.webhooks import repository
from engine.webhooks.events import TEST_EVENT, envelope

ROTATION_GRACE = repository.ROTATION_GRACE


def webhook_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "workspace_id": str(row["workspace_id"]),
        "url": row["url"],
        "events": list(row["events"]),
        "is_active": row["is_active"],
        "failure_count": row["failure_count"],
        "last_triggered_at": _iso(row["last_triggered_at"]),
        "last_success_at": _iso(row["last_success_at"]),
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


def delivery_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "webhook_id": str(row["webhook_id"]),
        "event_id": row["event_id"],
        "event_type": row["event_type"],
        "status": row["status"],
        "attempt": row["attempt"],
        "response_status": row["response_status"],
        "response_body": row["response_body"],
        "error": row["error"],
        "next_attempt_at": _iso(row["next_attempt_at"]) if row["status"] == "pending" else None,
        "created_at": _iso(row["created_at"]),
        "delivered_at": _iso(row["delivered_at"]),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def create_webhook(
    conn: asyncpg.Connection,
    ctx: AuditContext,
    box: SecretBox,
    workspace_id: str,
    url: str,
    events: Sequence[str],
) -> tuple[asyncpg.Record, str]:
    """A webhook with a new secret; returns the row and the plaintext secret (shown to the caller
    once: secrets are sealed, not hashed, as every delivery is signed with the plaintext)."""
    secret = generate_webhook_secret()
    async with conn.transaction():
        row = await repository.insert_webhook(conn, workspace_id, url, box.encrypt(secret), events)
        await write_audit(
            conn, ctx, workspace_id, "webhook.created", "webhook", str(row["id"]),
            new={"url": url, "events": events},
        )  # fmt: skip
    return row, secret


async def update_webhook(
    conn: asyncpg.Connection,
    ctx: AuditContext,
    workspace_id: str,
    webhook_id: str,
    *,
    url: str | None = None,
    events: Sequence[str] | None = None,
    is_active: bool | None = None,
) -> asyncpg.Record:
    """Change url, events or the active flag (None: unchanged). Re-enabling a hook clears its
    failure streak."""
    async with conn.transaction():
        row = await repository.update_webhook(
            conn, workspace_id, webhook_id, url=url, events=events, is_active=is_active
        )
        changes = {"url": url, "events": events, "is_active": is_active}
        changed = {k: v for k, v in changes.items() if v is not None}
        await write_audit(conn, ctx, workspace_id, "webhook.updated", "webhook", webhook_id, new=changed)
    return row


async def delete_webhook(
    conn: asyncpg.Connection, ctx: AuditContext, workspace_id: str, webhook_id: str
) -> None:
    async with conn.transaction():
        await repository.delete_webhook(conn, workspace_id, webhook_id)
        await write_audit(conn, ctx, workspace_id, "webhook.deleted", "webhook", webhook_id)


async def rotate_secret(
    conn: asyncpg.Connection,
    ctx: AuditContext,
    box: SecretBox,
    workspace_id: str,
    webhook_id: str,
    grace: timedelta = ROTATION_GRACE,
) -> str:
    """A new secret; the old one keeps signing (as a second signature) for `grace`."""
    secret = generate_webhook_secret()
    async with conn.transaction():
        await repository.rotate_secret(conn, workspace_id, webhook_id, box.encrypt(secret), grace)
        await write_audit(conn, ctx, workspace_id, "webhook.secret_rotated", "webhook", webhook_id)
    return secret


async def queue_test(conn: asyncpg.Connection, workspace_id: str, webhook_id: str, event_id: str) -> str:
    """Queue a `webhook.test` delivery to the webhook; returns the delivery's id."""
    await repository.get_webhook(conn, workspace_id, webhook_id)
    payload = envelope(TEST_EVENT, {"webhook_id": webhook_id, "workspace_id": workspace_id})
    [delivery_id] = await repository.enqueue(conn, [webhook_id], event_id, TEST_EVENT, payload)
    return delivery_id
