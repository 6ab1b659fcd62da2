"""Webhooks and their deliveries in PostgreSQL (persistence; the use cases and JSON are in
engine/webhooks/service.py).

Secrets are sealed with SecretBox, not hashed: every delivery must be signed with the plaintext,
so it has to be recoverable. After a rotation the previous secret keeps signing for a grace period.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from engine.auth.crypto import SecretBox
from engine.db.sql import fetch_one
from engine.errors import NotFound, ValidationFailed

ROTATION_GRACE = timedelta(hours=24)
_COLUMNS = "id, workspace_id, url, events, is_active, failure_count, last_triggered_at, last_success_at, created_at, updated_at"


class WebhookNotFound(NotFound):
    code = "webhook_not_found"


class DeliveryNotFound(NotFound):
    code = "delivery_not_found"


@dataclass(frozen=True, slots=True)
class Target:
    """What the deliverer needs to know about a webhook."""

    webhook_id: str
    workspace_id: str
    url: str
    is_active: bool
    secrets: tuple[str, ...]  # current first, then the previous one during its grace period


async def insert_webhook(
    conn: asyncpg.Connection, workspace_id: str, url: str, sealed_secret: str, events: Sequence[str]
) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"INSERT INTO webhooks (workspace_id, url, secret, events) VALUES ($1, $2, $3, $4) RETURNING {_COLUMNS}",
        workspace_id,
        url,
        sealed_secret,
        list(events),
    )
    assert row is not None
    return row


async def list_webhooks(conn: asyncpg.Connection, workspace_id: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"SELECT {_COLUMNS} FROM webhooks WHERE workspace_id = $1 ORDER BY created_at, id", workspace_id
        )
    )


async def get_webhook(conn: asyncpg.Connection, workspace_id: str, webhook_id: str) -> asyncpg.Record:
    return await fetch_one(
        conn,
        WebhookNotFound("webhook not found", field="webhook_id"),
        f"SELECT {_COLUMNS} FROM webhooks WHERE id = $1 AND workspace_id = $2",
        webhook_id,
        workspace_id,
    )


async def update_webhook(
    conn: asyncpg.Connection,
    workspace_id: str,
    webhook_id: str,
    *,
    url: str | None = None,
    events: Sequence[str] | None = None,
    is_active: bool | None = None,
) -> asyncpg.Record:
    """Change url, events or the active flag. Re-enabling a hook clears its failure streak."""
    return await fetch_one(
        conn,
        WebhookNotFound("webhook not found", field="webhook_id"),
        f"""UPDATE webhooks SET
               url = COALESCE($3, url),
               events = COALESCE($4, events),
               is_active = COALESCE($5, is_active),
               failure_count = CASE WHEN $5 IS TRUE AND NOT is_active THEN 0 ELSE failure_count END,
               updated_at = now()
           WHERE id = $1 AND workspace_id = $2 RETURNING {_COLUMNS}""",
        webhook_id,
        workspace_id,
        url,
        list(events) if events is not None else None,
        is_active,
    )


async def delete_webhook(conn: asyncpg.Connection, workspace_id: str, webhook_id: str) -> None:
    deleted = await conn.fetchval(
        "DELETE FROM webhooks WHERE id = $1 AND workspace_id = $2 RETURNING id", webhook_id, workspace_id
    )
    if deleted is None:
        raise WebhookNotFound("webhook not found", field="webhook_id")


async def rotate_secret(
    conn: asyncpg.Connection, workspace_id: str, webhook_id: str, sealed_secret: str, grace: timedelta
) -> None:
    """The new (sealed) secret; the old one becomes the previous secret for `grace`."""
    updated = await conn.fetchval(
        """UPDATE webhooks SET previous_secret = secret, previous_secret_expires_at = now() + $3::interval,
               secret = $4, updated_at = now()
           WHERE id = $1 AND workspace_id = $2 RETURNING id""",
        webhook_id,
        workspace_id,
        grace,
        sealed_secret,
    )
    if updated is None:
        raise WebhookNotFound("webhook not found", field="webhook_id")


async def load_targets(
    conn: asyncpg.Connection, box: SecretBox, webhook_ids: Sequence[str]
) -> dict[str, Target]:
    rows = await conn.fetch(
        """SELECT id, workspace_id, url, is_active, secret, previous_secret,
                  previous_secret_expires_at > now() AS previous_valid
           FROM webhooks WHERE id = ANY($1::uuid[])""",
        list(webhook_ids),
    )
    targets: dict[str, Target] = {}
    for r in rows:
        secrets = [box.decrypt(r["secret"])]
        if r["previous_secret"] and r["previous_valid"]:
            secrets.append(box.decrypt(r["previous_secret"]))
        targets[str(r["id"])] = Target(
            str(r["id"]), str(r["workspace_id"]), r["url"], r["is_active"], tuple(secrets)
        )
    return targets


async def subscribed_webhooks(
    conn: asyncpg.Connection, workspace_id: str
) -> list[tuple[str, frozenset[str]]]:
    rows = await conn.fetch(
        "SELECT id, events FROM webhooks WHERE workspace_id = $1 AND is_active", workspace_id
    )
    return [(str(r["id"]), frozenset(r["events"])) for r in rows]


async def enqueue(
    conn: asyncpg.Connection,
    webhook_ids: Sequence[str],
    event_id: str,
    event_type: str,
    payload: dict[str, Any],
) -> list[str]:
    """One pending delivery per webhook, due now; an (webhook, event) pair that exists is skipped."""
    if not webhook_ids:
        return []
    rows = await conn.fetch(
        """INSERT INTO webhook_deliveries (webhook_id, event_id, event_type, payload, next_attempt_at)
           SELECT w, $2, $3, $4, now() FROM unnest($1::uuid[]) AS w
           ON CONFLICT (webhook_id, event_id) DO NOTHING RETURNING id""",
        list(webhook_ids),
        event_id,
        event_type,
        payload,
    )
    return [str(r["id"]) for r in rows]


async def claim_due(
    conn: asyncpg.Connection, limit: int, lease_seconds: float, ids: Sequence[str] | None = None
) -> list[asyncpg.Record]:
    """Lease due pending deliveries of active webhooks: their next_attempt_at moves `lease_seconds`
    ahead, so a worker that dies mid-attempt only delays them; nobody else takes them meanwhile."""
    return list(
        await conn.fetch(
            """UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval(secs => $2)
               WHERE d.id IN (
                   SELECT d2.id FROM webhook_deliveries d2 JOIN webhooks w ON w.id = d2.webhook_id
                   WHERE d2.status = 'pending' AND d2.next_attempt_at <= now() AND w.is_active
                     AND ($3::uuid[] IS NULL OR d2.id = ANY($3::uuid[]))
                   ORDER BY d2.next_attempt_at LIMIT $1 FOR UPDATE OF d2 SKIP LOCKED)
               RETURNING d.id, d.webhook_id, d.event_id, d.event_type, d.payload, d.attempt""",
            limit,
            lease_seconds,
            list(ids) if ids is not None else None,
        )
    )


async def record_success(
    conn: asyncpg.Connection, delivery_id: str, webhook_id: str, status: int, body: str
) -> None:
    async with conn.transaction():
        await conn.execute(
            """UPDATE webhook_deliveries SET status = 'succeeded', response_status = $2, response_body = $3,
                   error = NULL, delivered_at = now(), next_attempt_at = NULL WHERE id = $1""",
            delivery_id,
            status,
            body,
        )
        await conn.execute(
            """UPDATE webhooks SET failure_count = 0, last_triggered_at = now(), last_success_at = now()
               WHERE id = $1""",
            webhook_id,
        )


async def record_failure(
    conn: asyncpg.Connection,
    delivery_id: str,
    webhook_id: str,
    *,
    status: int | None,
    body: str | None,
    error: str | None,
    retry_in: float | None,
    max_failures: int,
) -> bool:
    """Store a failed attempt: pending again in `retry_in` seconds, or dead when None. Returns True
    when this failure disabled the webhook (its consecutive failures reached `max_failures`)."""
    async with conn.transaction():
        if retry_in is None:
            await conn.execute(
                """UPDATE webhook_deliveries SET status = 'dead', response_status = $2, response_body = $3,
                       error = $4, next_attempt_at = NULL WHERE id = $1""",
                delivery_id,
                status,
                body,
                error,
            )
        else:
            await conn.execute(
                """UPDATE webhook_deliveries SET attempt = attempt + 1, response_status = $2, response_body = $3,
                       error = $4, next_attempt_at = now() + make_interval(secs => $5) WHERE id = $1""",
                delivery_id,
                status,
                body,
                error,
                retry_in,
            )
        disabled = await conn.fetchval(
            """UPDATE webhooks w SET failure_count = w.failure_count + 1, last_triggered_at = now(),
                   is_active = w.is_active AND w.failure_count + 1 < $2,
                   updated_at = CASE WHEN w.is_active AND w.failure_count + 1 >= $2 THEN now() ELSE w.updated_at END
               FROM webhooks old WHERE w.id = $1 AND old.id = w.id
               RETURNING old.is_active AND NOT w.is_active""",
            webhook_id,
            max_failures,
        )
    return bool(disabled)


async def list_deliveries(
    conn: asyncpg.Connection, workspace_id: str, webhook_id: str, *, limit: int, cursor: str | None
) -> tuple[list[asyncpg.Record], str | None]:
    """A page of a webhook's deliveries, newest first; the cursor is opaque (created_at, id)."""
    await get_webhook(conn, workspace_id, webhook_id)
    after_ts, after_id = decode_cursor(cursor) if cursor else (None, None)
    rows = await conn.fetch(
        """SELECT * FROM webhook_deliveries WHERE webhook_id = $1
             AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
           ORDER BY created_at DESC, id DESC LIMIT $4""",
        webhook_id,
        after_ts,
        after_id,
        limit + 1,
    )
    page = list(rows[:limit])
    next_cursor = encode_cursor(page[-1]["created_at"], str(page[-1]["id"])) if len(rows) > limit else None
    return page, next_cursor


def encode_cursor(created_at: datetime, delivery_id: str) -> str:
    raw = orjson.dumps([created_at.isoformat(), delivery_id])
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, delivery_id = orjson.loads(raw)
        return datetime.fromisoformat(ts).astimezone(UTC), str(delivery_id)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise ValidationFailed("cursor is not a cursor this endpoint returned", field="cursor") from None


async def redeliver(
    conn: asyncpg.Connection, workspace_id: str, webhook_id: str, delivery_id: str
) -> asyncpg.Record:
    """Queue a delivery again, now, with a fresh retry cycle (same webhook-id, so receivers can dedupe)."""
    await get_webhook(conn, workspace_id, webhook_id)
    return await fetch_one(
        conn,
        DeliveryNotFound("delivery not found", field="delivery_id"),
        """UPDATE webhook_deliveries SET status = 'pending', attempt = 1, next_attempt_at = now()
           WHERE id = $1 AND webhook_id = $2 RETURNING *""",
        delivery_id,
        webhook_id,
    )


async def admin_emails(conn: asyncpg.Connection, workspace_id: str) -> list[str]:
    rows = await conn.fetch(
        """SELECT u.email FROM workspace_members m JOIN users u ON u.id = m.user_id
           WHERE m.workspace_id = $1 AND m.role IN ('owner', 'admin') ORDER BY u.email""",
        workspace_id,
    )
    return [r["email"] for r in rows]
