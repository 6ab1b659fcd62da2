"""The webhook event catalogue and the envelope every delivery carries (pure functions)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from engine.errors import ValidationFailed

EVENT_TYPES: frozenset[str] = frozenset(
    {
        "link.created",
        "link.updated",
        "link.deleted",
        "link.clicked",
        "link.expired",
        "link.exhausted",
        "qr.scanned",
        "bio.clicked",
        "domain.verified",
        "member.invited",
    }
)
TEST_EVENT = "webhook.test"
CLICKED = "link.clicked"
QR_SCANNED = "qr.scanned"
BIO_CLICKED = "bio.clicked"


def validate_events(events: Iterable[str]) -> list[str]:
    """Deduplicated, sorted event types; ValidationFailed(field="events") on an unknown or empty list."""
    chosen = sorted(set(events))
    if not chosen:
        raise ValidationFailed("events must name at least one event type", field="events")
    unknown = [e for e in chosen if e not in EVENT_TYPES]
    if unknown:
        raise ValidationFailed(f"unknown event type(s): {', '.join(unknown)}", field="events")
    return chosen


def envelope(event_type: str, data: Mapping[str, Any], at: datetime | None = None) -> dict[str, Any]:
    """The JSON body of a delivery (Standard Webhooks shape: type, timestamp, data)."""
    return {
        "type": event_type,
        "timestamp": (at or datetime.now(UTC)).isoformat(),
        "data": dict(data),
    }


def event_id(event_type: str, subject_id: str, at: str) -> str:
    """The webhook-id of an event: derived from (type, subject, time), so producing the same event
    twice maps onto the same deliveries (they are unique per webhook and event id)."""
    return "evt_" + uuid.uuid5(uuid.NAMESPACE_URL, f"{event_type}/{subject_id}/{at}").hex


def from_link_change(change: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]] | None:
    """(event_id, event_type, data) for a `links.changes` record, or None if no webhook event matches.

    The id is derived from (event, link, at), so a re-consumed change maps onto the same deliveries.
    """
    event_type = f"link.{change.get('event', '')}"
    link_id = change.get("link_id")
    if event_type not in EVENT_TYPES or not link_id or not change.get("workspace_id"):
        return None
    data = {k: change[k] for k in ("link_id", "workspace_id", "short_code", "domain_id", "at") if k in change}
    return event_id(event_type, str(link_id), str(change.get("at", ""))), event_type, data
